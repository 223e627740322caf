// C[m×n] = op(A)·op(B) (+ C when accumulate), every operand row-major in memory.
//
// Transposes are never materialised: op(A)[i, k] is read at a[i·a_row + k·a_col], so A stored [m×k] has
// strides (k, 1) and A stored [k×m] read as Aᵀ has strides (1, m); likewise B. Backward of y = x·Wᵀ needs
// all three forms: x·Wᵀ (forward), dy·W (data gradient), dyᵀ·x (weight gradient).
//
// Tiling: a 16×16 workgroup computes a 64×64 tile of C, each thread a 4×4 block (rows lid.y + 16·r,
// columns lid.x + 16·c, so neighbouring threads write neighbouring addresses). K advances 16 at a time
// through two 16×64 tiles in workgroup memory (8 KiB, well inside lavapipe's 32 KiB). Out-of-range
// elements load as zero, so any m, n, k works.
//
// Two entry points share the tile loop: `matmul` stores (or adds) C; `matmul_bias_act` is a dense layer's
// whole forward pass, C = act(op(A)·op(B) + bias[column]), applied as each value is stored, which saves
// the separate bias_act dispatch and its pass over C. activation_math.wgsl is prepended to this file.

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    accumulate: u32,
    a_row: u32,
    a_col: u32,
    b_row: u32,
    b_col: u32,
    act: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
// Only `matmul_bias_act` binds it.
@group(0) @binding(4) var<storage, read> bias: array<f32>;

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

// This thread's block of op(A)·op(B) for the workgroup's 64×64 tile. Every thread of the workgroup calls
// it (the barriers inside need uniform control flow).
fn block_product(lid: vec3<u32>, wid: vec3<u32>) -> Block {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let t = lid.y * 16u + lid.x;
    // Row r of this thread's 4×4 block lives in acc_r; no dynamically indexed arrays, so every backend
    // (lavapipe's LLVM included) keeps the block in registers.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 = k0 + BK) {
        for (var r = 0u; r < 4u; r = r + 1u) {
            let e = t + r * 256u;
            // A: consecutive threads take consecutive k (contiguous when A is not transposed).
            let ak = e % BK;
            let ai = e / BK;
            let gi = row0 + ai;
            let gk = k0 + ak;
            var av = 0.0;
            if (gi < p.m && gk < p.k) {
                av = a[gi * p.a_row + gk * p.a_col];
            }
            a_tile[ak * TILE + ai] = av;
            // B: consecutive threads take consecutive columns (contiguous when B is not transposed).
            let bj = e % TILE;
            let bk = e / TILE;
            let gj = col0 + bj;
            let gkb = k0 + bk;
            var bv = 0.0;
            if (gj < p.n && gkb < p.k) {
                bv = b[gkb * p.b_row + gj * p.b_col];
            }
            b_tile[bk * TILE + bj] = bv;
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

// Writes (or adds) the four values of one block row: columns j, j + 16, j + 32, j + 48 of row i.
fn store_row(i: u32, j: u32, v: vec4<f32>) {
    if (i >= p.m) {
        return;
    }
    for (var q = 0u; q < 4u; q = q + 1u) {
        let col = j + 16u * q;
        if (col < p.n) {
            var x = v[q];
            if (p.accumulate != 0u) {
                x = x + c[i * p.n + col];
            }
            c[i * p.n + col] = x;
        }
    }
}

// Stores act(v + bias[column]) for columns j, j + 16, j + 32, j + 48 of row i.
fn store_row_bias_act(i: u32, j: u32, v: vec4<f32>) {
    if (i >= p.m) {
        return;
    }
    for (var q = 0u; q < 4u; q = q + 1u) {
        let col = j + 16u * q;
        if (col < p.n) {
            c[i * p.n + col] = activate(v[q] + bias[col], p.act);
        }
    }
}
