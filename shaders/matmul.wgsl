// C[m×n] = op(A)·op(B) in 64×64 tiles, with a split-K form for products whose C has too few tiles to
// occupy a GPU. matmul_common.wgsl (parameters, bindings, loads, stores) is prepended, after
// activation_math.wgsl; the 128×128 kernel for large products is matmul_large.wgsl.
//
// Tiling: a 16×16 workgroup computes a 64×64 tile of C, each thread a 4×4 block (rows lid.y + 16·r,
// columns lid.x + 16·c, so neighbouring threads write neighbouring addresses). K advances 16 at a time
// through two 16×64 tiles in workgroup memory (8 KiB, well inside lavapipe's 32 KiB). Out-of-range
// elements load as zero, so any m, n, k works.
//
// Entry points sharing the tile loop: `matmul` stores (or adds) C; `matmul_bias_act` is a dense layer's
// whole forward pass, C = act(op(A)·op(B) + bias[column]), applied as each value is stored, which saves
// a separate bias_act dispatch and its pass over C; `matmul_partial` is split-K's first launch: workgroup
// z sums one slice of k and stores that partial product into slice z of a scratch buffer bound as C.
// `matmul_sum_slices` (and `…_bias_act`) then add the slices in a fixed order, so the result does not
// depend on scheduling, and finish as the unsplit entry points do.

// A thread's 4×4 block of C: row r in rr.
struct Block {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

const TILE: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> a_tile: array<f32, 1024>; // [BK][TILE]: a_tile[kk * TILE + i]
var<workgroup> b_tile: array<f32, 1024>; // [BK][TILE]: b_tile[kk * TILE + j]

@compute @workgroup_size(16, 16)
fn matmul(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let blk = block_product(lid, wid);
    let i = wid.y * TILE + lid.y;
    let j = wid.x * TILE + lid.x;
    store_row(i, j, blk.r0);
    store_row(i + 16u, j, blk.r1);
    store_row(i + 32u, j, blk.r2);
    store_row(i + 48u, j, blk.r3);
}

@compute @workgroup_size(16, 16)
fn matmul_bias_act(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let blk = block_product(lid, wid);
    let i = wid.y * TILE + lid.y;
    let j = wid.x * TILE + lid.x;
    store_row_bias_act(i, j, blk.r0);
    store_row_bias_act(i + 16u, j, blk.r1);
    store_row_bias_act(i + 32u, j, blk.r2);
    store_row_bias_act(i + 48u, j, blk.r3);
}

@compute @workgroup_size(16, 16)
fn matmul_partial(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let blk = block_product(lid, wid);
    let i = wid.y * TILE + lid.y;
    let j = wid.x * TILE + lid.x;
    store_row_slice(wid.z, i, j, blk.r0);
    store_row_slice(wid.z, i + 16u, j, blk.r1);
    store_row_slice(wid.z, i + 32u, j, blk.r2);
    store_row_slice(wid.z, i + 48u, j, blk.r3);
}

// Each stores columns j, j + 16, j + 32, j + 48 of row i: plain (or accumulated), through bias and
// activation, or into slice z of split-K's scratch buffer (bound as C). Three functions, not one with a
// switch, so that only the bias_act entry points use (and bind) `bias`.
fn store_row(i: u32, j: u32, v: vec4<f32>) {
    for (var q = 0u; q < 4u; q = q + 1u) {
        store_plain(i, j + 16u * q, v[q]);
    }
}

fn store_row_bias_act(i: u32, j: u32, v: vec4<f32>) {
    for (var q = 0u; q < 4u; q = q + 1u) {
        store_bias_act(i, j + 16u * q, v[q]);
    }
}

fn store_row_slice(z: u32, i: u32, j: u32, v: vec4<f32>) {
    for (var q = 0u; q < 4u; q = q + 1u) {
        let col = j + 16u * q;
        if (i < p.m && col < p.n) {
            c[z * p.m * p.n + i * p.n + col] = to_c_t(v[q]);
        }
    }
}

// This thread's block of op(A)·op(B) over k in this workgroup's slice, for the workgroup's 64×64 tile.
// Every thread of the workgroup calls it (the barriers inside need uniform control flow).
fn block_product(lid: vec3<u32>, wid: vec3<u32>) -> Block {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let t = lid.y * 16u + lid.x;
    let k_begin = wid.z * p.k_slice;
    let k_end = min(p.k, k_begin + p.k_slice);
    // Row r of this thread's 4×4 block lives in acc_r; no dynamically indexed arrays, so every backend
    // (lavapipe's LLVM included) keeps the block in registers.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = k_begin; k0 < k_end; k0 = k0 + BK) {
        for (var r = 0u; r < 4u; r = r + 1u) {
            let e = t + r * 256u;
            // A: consecutive threads take consecutive k (contiguous when A is not transposed).
            let ak = e % BK;
            let ai = e / BK;
            a_tile[ak * TILE + ai] = load_a(row0 + ai, k0 + ak, k_end);
            // B: consecutive threads take consecutive columns (contiguous when B is not transposed).
            let bj = e % TILE;
            let bk = e / TILE;
            b_tile[bk * TILE + bj] = load_b(k0 + bk, col0 + bj, k_end);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk = kk + 1u) {
            let ab = kk * TILE + lid.y;
            let bb = kk * TILE + lid.x;
            let ar = vec4<f32>(a_tile[ab], a_tile[ab + 16u], a_tile[ab + 32u], a_tile[ab + 48u]);
            let br = vec4<f32>(b_tile[bb], b_tile[bb + 16u], b_tile[bb + 32u], b_tile[bb + 48u]);
            acc0 = fma(vec4<f32>(ar.x), br, acc0);
            acc1 = fma(vec4<f32>(ar.y), br, acc1);
            acc2 = fma(vec4<f32>(ar.z), br, acc2);
            acc3 = fma(vec4<f32>(ar.w), br, acc3);
        }
        workgroupBarrier();
    }
    return Block(acc0, acc1, acc2, acc3);
}

// Split-K's second launch: C[i, j] = Σ_z slices[z][i, j], z = 0, 1, … in order, then stored as the
// unsplit entry point would (plain or accumulated, or through bias and activation). One thread per
// element of C; 16×16 workgroups like the rest of this module, indexed as linear_groups lays them out.
@group(0) @binding(5) var<storage, read> slices: array<f32>;

fn slice_sum(e: u32) -> f32 {
    var s = 0.0;
    for (var z = 0u; z < p.slices; z = z + 1u) {
        s = s + slices[z * p.m * p.n + e];
    }
    return s;
}

@compute @workgroup_size(16, 16)
fn matmul_sum_slices(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) index: u32,
) {
    let e = (wid.y * groups.x + wid.x) * 256u + index;
    if (e >= p.m * p.n) {
        return;
    }
    store_plain(e / p.n, e % p.n, slice_sum(e));
}

@compute @workgroup_size(16, 16)
fn matmul_sum_slices_bias_act(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) index: u32,
) {
    let e = (wid.y * groups.x + wid.x) * 256u + index;
    if (e >= p.m * p.n) {
        return;
    }
    store_bias_act(e / p.n, e % p.n, slice_sum(e));
}
