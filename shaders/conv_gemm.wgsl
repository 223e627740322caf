// Implicit-GEMM forms of conv2d.wgsl's forward, data gradient and weight gradient (the math is stated
// there), for layers with enough channels to fill a tile; src/backend/gpu/conv.rs chooses. conv_params.wgsl
// and activation_math.wgsl are prepended, then one of the tile preludes conv_tile32.wgsl / conv_tile64.wgsl
// (which use TN, BK and tile_b from this file: WGSL's module scope has no declaration order).
//
// C[row, q] = Σ_k A[row, k] · B[k, q] with B gathered from the image as the tile is loaded (no im2col
// buffer). The forward has rows = output channels o, columns q = (n, i, j), k = (c, a, b). The data
// gradient runs once per stride phase (h mod s, v mod s): within a phase the taps that reach an output are
// fixed (a ≡ h + p mod s), so k runs over (o, those taps) and no tile column is spent on the zeros a
// strided gather meets; rows = input channels c, columns q = the phase's pixels (n, h, v).
//
// The weight gradient is a GEMM too, rows = output channels o, columns = (c, a, b), summed over
// q = (n, i, j): batch × positions terms, thousands, against a few thousand outputs. So the sum is split:
// workgroup z adds up terms [z·chunk, (z + 1)·chunk) into slice z of a partial buffer, and
// conv2d_backward_weight_sum adds the slices in order (fixed order: the same result run after run).
//
// A 32×8 workgroup computes a TM×128 tile of C, each thread a THREAD_ROWS×4 block (rows lid.y + 8·r,
// columns lid.x + 32·q, so neighbouring threads store neighbouring positions); the summed index advances
// 16 at a time through a 16×TM tile of A and a 16×128 tile of B in workgroup memory (at most 12 KiB,
// inside lavapipe's 32 KiB). TM is 32 or 64, from the tile prelude the module was built with
// (conv_tile32.wgsl or conv_tile64.wgsl, which also define Block, zero_block, tile_product and
// block_row); conv.rs takes the 64-row module when the rows (channels) number more than 32. Short,
// wide tiles because channel counts are small (1 to 64 in the conv-dae) while positions number
// batch × plane. Each thread decodes the one B column it loads once, outside the K loop, and the summed
// indices of each step are decoded once per workgroup into `k_decode` (before, every thread divided
// by runtime sizes for each element it gathered; the data gradients ran 15% faster on lavapipe without
// it). No two threads write one address, and every sum runs in a fixed order.
//
// These kernels live apart from conv2d.wgsl's, and every entry point here has the same 32×8 shape: with
// both files in one module, lavapipe (Mesa 22.3) left part of the 256×1 gather forward's output unwritten,
// as if it had run that entry point in another one's workgroup shape.

@group(0) @binding(0) var<uniform> fwd: ConvParams;
@group(0) @binding(1) var<storage, read> fwd_x: array<fwd_x_t>;
@group(0) @binding(2) var<storage, read> fwd_w: array<fwd_w_t>;
@group(0) @binding(3) var<storage, read_write> fwd_y: array<fwd_y_t>;

@group(0) @binding(4) var<uniform> bwd_data: ConvParams;
@group(0) @binding(5) var<storage, read> bwd_data_dy: array<bwd_data_dy_t>;
@group(0) @binding(6) var<storage, read> bwd_data_w: array<bwd_data_w_t>;
@group(0) @binding(7) var<storage, read_write> bwd_data_dx: array<bwd_data_dx_t>;

// Only the *_bias_act entry points bind these: a layer's bias, added (then ConvParams.act applied) as
// each output is stored. The plain entry points bind the weight here as a filler, which is f16 with
// --precision mixed: hence the f16 form.
@group(0) @binding(15) var<storage, read> fwd_bias: array<fwd_bias_t>;
@group(0) @binding(16) var<storage, read> bwd_data_bias: array<bwd_data_bias_t>;

@group(0) @binding(8) var<uniform> bwd_weight: ConvParams;
@group(0) @binding(9) var<storage, read> bwd_weight_dy: array<bwd_weight_dy_t>;
@group(0) @binding(10) var<storage, read> bwd_weight_x: array<bwd_weight_x_t>;
@group(0) @binding(11) var<storage, read_write> bwd_weight_partial: array<f32>;

@group(0) @binding(12) var<uniform> weight_sum: ConvParams;
@group(0) @binding(13) var<storage, read> weight_sum_partial: array<f32>;
@group(0) @binding(14) var<storage, read_write> weight_sum_dw: array<f32>;

const TN: u32 = 128u;
const BK: u32 = 16u;

var<workgroup> tile_b: array<f32, 2048>; // [BK][TN]: tile_b[kk * TN + column]

// What every thread would otherwise work out for itself, with divisions by runtime sizes, for each of
// the BK summed indices of a step: (offset into the gathered operand, row shift, column shift, offset
// into the other operand), as each GEMM below defines them. Two halves: threads t < BK fill the next
// step's half while the workgroup multiplies (between the step's two barriers), so the table costs no
// extra barrier except the first.
var<workgroup> k_decode: array<vec4<i32>, 32>;

@compute @workgroup_size(32, 8)
fn conv2d_gemm(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    store_forward(lid, wid, groups, forward_block(lid, wid, groups), false);
}

// y = act(conv(x, w) + bias[o]): a convolution layer's whole forward pass.
@compute @workgroup_size(32, 8)
fn conv2d_gemm_bias_act(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    store_forward(lid, wid, groups, forward_block(lid, wid, groups), true);
}

// This thread's block of the forward GEMM. Every thread of the workgroup calls it (barriers inside).
fn forward_block(lid: vec3<u32>, wid: vec3<u32>, groups: vec3<u32>) -> Block {
    let g = fwd;
    let taps = g.k_h * g.k_w;
    let k_len = g.in_c * taps;
    let plane = g.out_h * g.out_w;
    let columns = g.batch * plane;
    let row0 = wid.y * TM;
    // Column tiles past 65 535 fold into wid.z (gemm_grid in conv.rs).
    let col0 = (wid.z * groups.x + wid.x) * TN;
    let t = lid.y * 32u + lid.x;
    // The B column this thread loads, the same for the whole K loop: output position (n, i, j).
    let bj = t % TN;
    let q = col0 + bj;
    let n = q / plane;
    let i = (q % plane) / g.out_w;
    let j = q % g.out_w;
    let h0 = i32(i * g.stride) - i32(g.pad);
    let v0 = i32(j * g.stride) - i32(g.pad);
    // x[n, c, h0 + a, v0 + b] = fwd_x[x_base + c·in_h·in_w + a·in_w + b].
    let x_base = i32(n * g.in_c * g.in_h * g.in_w) + h0 * i32(g.in_w) + v0;
    if (t < BK) {
        k_decode[t] = forward_decode(t);
    }
    workgroupBarrier();
    var half = 0u;
    var acc = zero_block();
    for (var k0 = 0u; k0 < k_len; k0 = k0 + BK) {
        // A = w viewed as [out_c][in_c·k_h·k_w]: consecutive threads read consecutive k.
        for (var r = 0u; r < A_LOADS; r = r + 1u) {
            let e = t + 256u * r;
            let o = row0 + e / BK;
            let k = k0 + e % BK;
            var av = 0.0;
            if (o < g.out_c && k < k_len) {
                av = f32(fwd_w[o * k_len + k]);
            }
            tile_a[(e % BK) * TM + e / BK] = av;
        }
        // B[k, q] = x[n, c, i·s − p + a, j·s − p + b] with k = (c, a, b), zero in the padding.
        for (var r = 0u; r < 8u; r = r + 1u) {
            let kk = t / TN + 2u * r;
            let d = k_decode[half + kk];
            let h = h0 + d.y;
            let v = v0 + d.z;
            var bv = 0.0;
            if (q < columns && k0 + kk < k_len && h >= 0 && h < i32(g.in_h) && v >= 0 && v < i32(g.in_w)) {
                bv = f32(fwd_x[u32(x_base + d.x)]);
            }
            tile_b[kk * TN + bj] = bv;
        }
        workgroupBarrier();
        half = BK - half;
        if (t < BK) {
            k_decode[half + t] = forward_decode(k0 + BK + t);
        }
        acc = tile_product(lid, acc);
        workgroupBarrier();
    }
    return acc;
}

// Summed index k = (c, a, b) of the forward: (c·in_h·in_w + a·in_w + b, a, b, 0).
fn forward_decode(k: u32) -> vec4<i32> {
    let g = fwd;
    let taps = g.k_h * g.k_w;
    let c = k / taps;
    let a = (k % taps) / g.k_w;
    let b = k % g.k_w;
    return vec4<i32>(i32((c * g.in_h + a) * g.in_w + b), i32(a), i32(b), 0);
}

// Stores the block at y[n, o, i, j], as act(value + bias[o]) when `bias_act` (a uniform flag: the
// bias binding exists only in the entry point that passes true).
fn store_forward(lid: vec3<u32>, wid: vec3<u32>, groups: vec3<u32>, acc: Block, bias_act: bool) {
    let g = fwd;
    let plane = g.out_h * g.out_w;
    let columns = g.batch * plane;
    let row0 = wid.y * TM;
    let col0 = (wid.z * groups.x + wid.x) * TN;
    for (var r = 0u; r < THREAD_ROWS; r = r + 1u) {
        let o = row0 + lid.y + 8u * r;
        let vals = block_row(acc, r);
        for (var cq = 0u; cq < 4u; cq = cq + 1u) {
            let col = col0 + lid.x + 32u * cq;
            if (o < g.out_c && col < columns) {
                var value = vals[cq];
                if (bias_act) {
                    value = activate(value + f32(fwd_bias[o]), g.act);
                }
                fwd_y[((col / plane) * g.out_c + o) * plane + col % plane] = to_fwd_y_t(value);
            }
        }
    }
}

// Taps along one axis that reach an output from pixels of phase `phase` (pixel ≡ phase mod s): those
// a ≡ phase + p (mod s), i.e. a = first + s·t for t < count.
struct PhaseTaps {
    first: u32,
    count: u32,
}

fn phase_taps(phase: u32, pad: u32, stride: u32, k: u32) -> PhaseTaps {
    let first = (phase + pad) % stride;
    var count = 0u;
    if (first < k) {
        count = (k - first + stride - 1u) / stride;
    }
    return PhaseTaps(first, count);
}

// How many pixels of an axis of length `len` have phase `phase`.
fn phase_len(phase: u32, stride: u32, len: u32) -> u32 {
    if (phase >= len) {
        return 0u;
    }
    return (len - phase + stride - 1u) / stride;
}

// wid.z = phase + s²·fold: the stride phase (ph, pv) = (phase / s, phase % s), and column tiles past
// 65 535 fold as in conv2d_gemm.
@compute @workgroup_size(32, 8)
fn conv2d_backward_data_gemm(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    store_data(lid, wid, groups, data_block(lid, wid, groups), false);
}

// dx = act(conv_transpose(dy, w) + bias[c]): a transposed convolution layer's whole forward pass (never
// accumulating).
@compute @workgroup_size(32, 8)
fn conv2d_backward_data_gemm_bias_act(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    store_data(lid, wid, groups, data_block(lid, wid, groups), true);
}

// This thread's block of the data-gradient GEMM for the workgroup's stride phase. Every thread of the
// workgroup calls it (barriers inside).
fn data_block(lid: vec3<u32>, wid: vec3<u32>, groups: vec3<u32>) -> Block {
    let g = bwd_data;
    let s = g.stride;
    let phase = wid.z % (s * s);
    let ph = phase / s;
    let pv = phase % s;
    let ta = phase_taps(ph, g.pad, s, g.k_h);
    let tb = phase_taps(pv, g.pad, s, g.k_w);
    let taps = ta.count * tb.count;
    let k_len = g.out_c * taps;
    // This phase's pixels h = ph + s·h2, v = pv + s·v2; tap a = ta.first + s·x reaches output row
    // i = (h + p − a) / s = i0 + h2 − x, exactly (no remainder, by the choice of ta.first).
    let rows_h = phase_len(ph, s, g.in_h);
    let cols_v = phase_len(pv, s, g.in_w);
    let i0 = i32((ph + g.pad - ta.first) / s);
    let j0 = i32((pv + g.pad - tb.first) / s);
    let plane = rows_h * cols_v;
    let columns = g.batch * plane;
    let row0 = wid.y * TM;
    let col0 = ((wid.z / (s * s)) * groups.x + wid.x) * TN;
    let t = lid.y * 32u + lid.x;
    // The B column this thread loads: pixel (n, h2, v2) of this phase.
    let bj = t % TN;
    let q = col0 + bj;
    let n = q / max(plane, 1u);
    let h2 = i32((q % max(plane, 1u)) / max(cols_v, 1u));
    let v2 = i32(q % max(cols_v, 1u));
    // dy[n, o, i0 + h2 − x, j0 + v2 − y] = bwd_data_dy[dy_base + o·out_h·out_w − x·out_w − y].
    let dy_base = i32(n * g.out_c * g.out_h * g.out_w) + (i0 + h2) * i32(g.out_w) + j0 + v2;
    let w_plane = g.k_h * g.k_w;
    if (t < BK) {
        k_decode[t] = data_decode(t, ta, tb);
    }
    workgroupBarrier();
    var half = 0u;
    var acc = zero_block();
    for (var k0 = 0u; k0 < k_len; k0 = k0 + BK) {
        // A[c, k] = w[o, c, a, b] with k = (o, x, y), a = ta.first + s·x, b = tb.first + s·y.
        for (var r = 0u; r < A_LOADS; r = r + 1u) {
            let e = t + 256u * r;
            let c = row0 + e / BK;
            var av = 0.0;
            if (c < g.in_c && k0 + e % BK < k_len) {
                av = f32(bwd_data_w[u32(k_decode[half + e % BK].w) + c * w_plane]);
            }
            tile_a[(e % BK) * TM + e / BK] = av;
        }
        // B[k, q] = dy[n, o, i0 + h2 − x, j0 + v2 − y] where that output exists, else zero.
        for (var r = 0u; r < 8u; r = r + 1u) {
            let kk = t / TN + 2u * r;
            let d = k_decode[half + kk];
            let i = i0 + h2 + d.y;
            let j = j0 + v2 + d.z;
            var bv = 0.0;
            if (q < columns && k0 + kk < k_len && i >= 0 && i < i32(g.out_h) && j >= 0 && j < i32(g.out_w)) {
                bv = f32(bwd_data_dy[u32(dy_base + d.x)]);
            }
            tile_b[kk * TN + bj] = bv;
        }
        workgroupBarrier();
        half = BK - half;
        if (t < BK) {
            k_decode[half + t] = data_decode(k0 + BK + t, ta, tb);
        }
        acc = tile_product(lid, acc);
        workgroupBarrier();
    }
    return acc;
}

// Summed index k = (o, x, y) of the data gradient in a stride phase with taps `ta` × `tb`:
// (o·out_h·out_w − x·out_w − y, −x, −y, offset of w[o, 0, a, b]) with a = ta.first + s·x,
// b = tb.first + s·y.
fn data_decode(k: u32, ta: PhaseTaps, tb: PhaseTaps) -> vec4<i32> {
    let g = bwd_data;
    let taps = max(ta.count * tb.count, 1u);
    let o = k / taps;
    let x = (k % taps) / max(tb.count, 1u);
    let y = k % max(tb.count, 1u);
    let a = ta.first + g.stride * x;
    let b = tb.first + g.stride * y;
    return vec4<i32>(
        i32(o * g.out_h * g.out_w) - i32(x * g.out_w + y),
        -i32(x),
        -i32(y),
        i32(((o * g.in_c * g.k_h) + a) * g.k_w + b),
    );
}

// Stores the block at dx[n, c, h, v] for this phase's pixels: plus dx when accumulating, or as
// act(value + bias[c]) when `bias_act` (a uniform flag, as in store_forward).
fn store_data(lid: vec3<u32>, wid: vec3<u32>, groups: vec3<u32>, acc: Block, bias_act: bool) {
    let g = bwd_data;
    let s = g.stride;
    let phase = wid.z % (s * s);
    let ph = phase / s;
    let pv = phase % s;
    let cols_v = phase_len(pv, s, g.in_w);
    let plane = phase_len(ph, s, g.in_h) * cols_v;
    let columns = g.batch * plane;
    let row0 = wid.y * TM;
    let col0 = ((wid.z / (s * s)) * groups.x + wid.x) * TN;
    for (var r = 0u; r < THREAD_ROWS; r = r + 1u) {
        let c = row0 + lid.y + 8u * r;
        let vals = block_row(acc, r);
        for (var cq = 0u; cq < 4u; cq = cq + 1u) {
            let col = col0 + lid.x + 32u * cq;
            if (c < g.in_c && col < columns) {
                let p2 = col % plane;
                let h = ph + s * (p2 / cols_v);
                let v = pv + s * (p2 % cols_v);
                let at = (((col / plane) * g.in_c + c) * g.in_h + h) * g.in_w + v;
                var value = vals[cq];
                if (bias_act) {
                    value = activate(value + f32(bwd_data_bias[c]), g.act);
                } else if (g.accumulate != 0u) {
                    value = value + f32(bwd_data_dx[at]);
                }
                bwd_data_dx[at] = to_bwd_data_dx_t(value);
            }
        }
    }
}

// Slice wid.z of dw: partial[z, o, (c, a, b)] = Σ over this slice's q = (n, i, j) of
// dy[n, o, i, j] · x[n, c, i·s − p + a, j·s − p + b].
@compute @workgroup_size(32, 8)
fn conv2d_backward_weight_gemm(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let g = bwd_weight;
    let taps = g.k_h * g.k_w;
    let columns = g.in_c * taps;
    let plane = g.out_h * g.out_w;
    let q_begin = wid.z * g.chunk;
    let q_end = min(q_begin + g.chunk, g.batch * plane);
    let row0 = wid.y * TM;
    let col0 = wid.x * TN;
    let t = lid.y * 32u + lid.x;
    // The B column this thread loads, the same for the whole loop: weight column (c, a, b).
    let bj = t % TN;
    let col = col0 + bj;
    let c = col / taps;
    let a = (col % taps) / g.k_w;
    let b = col % g.k_w;
    // x[n, c, i·s − p + a, j·s − p + b] = bwd_weight_x[x_col + (n·in_c·in_h + i·s − p)·in_w + j·s − p].
    let x_col = i32((c * g.in_h + a) * g.in_w + b);
    if (t < BK) {
        k_decode[t] = weight_decode(q_begin + t);
    }
    workgroupBarrier();
    var half = 0u;
    var acc = zero_block();
    for (var q0 = q_begin; q0 < q_end; q0 = q0 + BK) {
        // A[o, q] = dy[n, o, i, j]: consecutive threads read consecutive positions.
        for (var r = 0u; r < A_LOADS; r = r + 1u) {
            let e = t + 256u * r;
            let o = row0 + e / BK;
            var av = 0.0;
            if (o < g.out_c && q0 + e % BK < q_end) {
                av = f32(bwd_weight_dy[u32(k_decode[half + e % BK].w) + o * plane]);
            }
            tile_a[(e % BK) * TM + e / BK] = av;
        }
        // B[q, (c, a, b)] = x[n, c, i·s − p + a, j·s − p + b], zero in the padding.
        for (var r = 0u; r < 8u; r = r + 1u) {
            let kk = t / TN + 2u * r;
            let d = k_decode[half + kk];
            let h = d.y + i32(a);
            let v = d.z + i32(b);
            var bv = 0.0;
            if (col < columns && q0 + kk < q_end && h >= 0 && h < i32(g.in_h) && v >= 0 && v < i32(g.in_w)) {
                bv = f32(bwd_weight_x[u32(x_col + d.x)]);
            }
            tile_b[kk * TN + bj] = bv;
        }
        workgroupBarrier();
        half = BK - half;
        if (t < BK) {
            k_decode[half + t] = weight_decode(q0 + BK + t);
        }
        acc = tile_product(lid, acc);
        workgroupBarrier();
    }
    let slice = wid.z * g.out_c * columns;
    for (var r = 0u; r < THREAD_ROWS; r = r + 1u) {
        let o = row0 + lid.y + 8u * r;
        let vals = block_row(acc, r);
        for (var cq = 0u; cq < 4u; cq = cq + 1u) {
            let k = col0 + lid.x + 32u * cq;
            if (o < g.out_c && k < columns) {
                bwd_weight_partial[slice + o * columns + k] = vals[cq];
            }
        }
    }
}

// Summed index q = (n, i, j) of the weight gradient: (offset of x[n, 0, i·s − p, j·s − p], i·s − p,
// j·s − p, offset of dy[n, 0, i, j]); offsets may be negative (the padding), the loads add what makes
// them valid.
fn weight_decode(q: u32) -> vec4<i32> {
    let g = bwd_weight;
    let plane = g.out_h * g.out_w;
    let n = q / max(plane, 1u);
    let pos = q % max(plane, 1u);
    let h = i32((pos / g.out_w) * g.stride) - i32(g.pad);
    let v = i32((pos % g.out_w) * g.stride) - i32(g.pad);
    return vec4<i32>(
        i32(n * g.in_c * g.in_h * g.in_w) + h * i32(g.in_w) + v,
        h,
        v,
        i32(n * g.out_c * plane + pos),
    );
}

// dw[e] = Σ_z partial[z, e] in slice order (+ dw[e] when accumulating); one thread per weight element,
// 256 per workgroup in the same 32×8 shape as the other entry points (see the note at the top).
@compute @workgroup_size(32, 8)
fn conv2d_backward_weight_sum(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let g = weight_sum;
    let len = g.out_c * g.in_c * g.k_h * g.k_w;
    let e = (wid.y * groups.x + wid.x) * 256u + li;
    if (e >= len) {
        return;
    }
    let slices = (g.batch * g.out_h * g.out_w + g.chunk - 1u) / g.chunk;
    var total = 0.0;
    for (var z = 0u; z < slices; z = z + 1u) {
        total = total + weight_sum_partial[z * len + e];
    }
    if (g.accumulate != 0u) {
        total = total + weight_sum_dw[e];
    }
    weight_sum_dw[e] = total;
}
