// The 128×128 tile shared by matmul_large.wgsl (scalar operand loads) and matmul_vec4.wgsl (vec4 operand
// loads), prepended to both after matmul_common.wgsl. Each of those files defines the slab loads
// (`fetch_slab`, `put_slab`) and its entry points; WGSL's module scope has no declaration order.
//
// A 16×16 workgroup computes a 128×128 tile, each thread an 8×8 block: rows 4·ly + {0..3} and
// 64 + 4·ly + {0..3}, columns 4·lx + {0..3} and 64 + 4·lx + {0..3}, so that a thread reads each step's
// operands as two vec4 of A and two vec4 of B from workgroup memory (64 FMAs per four 16-byte loads)
// and neighbouring threads read neighbouring vec4s. K advances 8 at a time. While the workgroup
// multiplies one 8-deep slab, each thread already holds its share of the next in registers, so the
// global loads' latency hides behind the arithmetic.
//
// Workgroup memory holds a slab of A as la[kk·33 + q] = op(A)[row0 + 4q .. 4q + 3, k0 + kk] and of B
// as lb[kk·33 + q] = op(B)[k0 + kk, col0 + 4q .. 4q + 3]: 32 vec4s per k plus one of padding, so that
// the scalar stores of a warp that walks along k land in distinct banks. 2 × 264 × 16 B = 8.25 KiB.

const LT: u32 = 128u;
const LK: u32 = 8u;
const LROW: u32 = 33u;

var<workgroup> la: array<vec4<f32>, 264>;
var<workgroup> lb: array<vec4<f32>, 264>;

// One thread's share of a slab, between its global loads and its stores to workgroup memory.
struct Slab {
    a: vec4<f32>,
    b: vec4<f32>,
}

// A thread's 8×8 block: cRH is row R (0..7 as listed above), column half H.
struct Block8 {
    c00: vec4<f32>, c01: vec4<f32>,
    c10: vec4<f32>, c11: vec4<f32>,
    c20: vec4<f32>, c21: vec4<f32>,
    c30: vec4<f32>, c31: vec4<f32>,
    c40: vec4<f32>, c41: vec4<f32>,
    c50: vec4<f32>, c51: vec4<f32>,
    c60: vec4<f32>, c61: vec4<f32>,
    c70: vec4<f32>, c71: vec4<f32>,
}

// This thread's block of op(A)·op(B) for the workgroup's tile. Every thread calls it (barriers inside).
fn block_product8(lid: vec3<u32>, wid: vec3<u32>) -> Block8 {
    let row0 = wid.y * LT;
    let col0 = wid.x * LT;
    let t = lid.y * 16u + lid.x;
    // Named accumulators rather than an array: every backend keeps them in registers.
    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0); var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0); var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0); var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0); var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0); var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0); var c71 = vec4<f32>(0.0);
    var next = fetch_slab(row0, col0, 0u, t);
    for (var k0 = 0u; k0 < p.k; k0 = k0 + LK) {
        put_slab(t, next);
        workgroupBarrier();
        // The next slab's loads are issued now and consumed after this slab's arithmetic.
        next = fetch_slab(row0, col0, k0 + LK, t);
        for (var kk = 0u; kk < LK; kk = kk + 1u) {
            let a0 = la[kk * LROW + lid.y];
            let a1 = la[kk * LROW + 16u + lid.y];
            let b0 = lb[kk * LROW + lid.x];
            let b1 = lb[kk * LROW + 16u + lid.x];
            c00 = fma(vec4<f32>(a0.x), b0, c00); c01 = fma(vec4<f32>(a0.x), b1, c01);
            c10 = fma(vec4<f32>(a0.y), b0, c10); c11 = fma(vec4<f32>(a0.y), b1, c11);
            c20 = fma(vec4<f32>(a0.z), b0, c20); c21 = fma(vec4<f32>(a0.z), b1, c21);
            c30 = fma(vec4<f32>(a0.w), b0, c30); c31 = fma(vec4<f32>(a0.w), b1, c31);
            c40 = fma(vec4<f32>(a1.x), b0, c40); c41 = fma(vec4<f32>(a1.x), b1, c41);
            c50 = fma(vec4<f32>(a1.y), b0, c50); c51 = fma(vec4<f32>(a1.y), b1, c51);
            c60 = fma(vec4<f32>(a1.z), b0, c60); c61 = fma(vec4<f32>(a1.z), b1, c61);
            c70 = fma(vec4<f32>(a1.w), b0, c70); c71 = fma(vec4<f32>(a1.w), b1, c71);
        }
        workgroupBarrier();
    }
    return Block8(c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71);
}

// Row r of the thread's block (r = 0..7) and the first column of half h.
fn block_row(wid: vec3<u32>, lid: vec3<u32>, r: u32) -> u32 {
    return wid.y * LT + (r / 4u) * 64u + 4u * lid.y + r % 4u;
}

fn block_col(wid: vec3<u32>, lid: vec3<u32>, h: u32) -> u32 {
    return wid.x * LT + h * 64u + 4u * lid.x;
}

// Stores the thread's row r (0..7): columns j0..j0 + 3 from v0 and j1..j1 + 3 from v1.
fn store_pair(i: u32, j0: u32, j1: u32, v0: vec4<f32>, v1: vec4<f32>) {
    for (var q = 0u; q < 4u; q = q + 1u) {
        store_plain(i, j0 + q, v0[q]);
        store_plain(i, j1 + q, v1[q]);
    }
}

fn store_pair_bias_act(i: u32, j0: u32, j1: u32, v0: vec4<f32>, v1: vec4<f32>) {
    for (var q = 0u; q < 4u; q = q + 1u) {
        store_bias_act(i, j0 + q, v0[q]);
        store_bias_act(i, j1 + q, v1[q]);
    }
}

// The whole block: plain (or accumulated) stores, or through bias and activation.
fn store_block8(lid: vec3<u32>, wid: vec3<u32>, b: Block8) {
    let j0 = block_col(wid, lid, 0u);
    let j1 = block_col(wid, lid, 1u);
    store_pair(block_row(wid, lid, 0u), j0, j1, b.c00, b.c01);
    store_pair(block_row(wid, lid, 1u), j0, j1, b.c10, b.c11);
    store_pair(block_row(wid, lid, 2u), j0, j1, b.c20, b.c21);
    store_pair(block_row(wid, lid, 3u), j0, j1, b.c30, b.c31);
    store_pair(block_row(wid, lid, 4u), j0, j1, b.c40, b.c41);
    store_pair(block_row(wid, lid, 5u), j0, j1, b.c50, b.c51);
    store_pair(block_row(wid, lid, 6u), j0, j1, b.c60, b.c61);
    store_pair(block_row(wid, lid, 7u), j0, j1, b.c70, b.c71);
}

fn store_block8_bias_act(lid: vec3<u32>, wid: vec3<u32>, b: Block8) {
    let j0 = block_col(wid, lid, 0u);
    let j1 = block_col(wid, lid, 1u);
    store_pair_bias_act(block_row(wid, lid, 0u), j0, j1, b.c00, b.c01);
    store_pair_bias_act(block_row(wid, lid, 1u), j0, j1, b.c10, b.c11);
    store_pair_bias_act(block_row(wid, lid, 2u), j0, j1, b.c20, b.c21);
    store_pair_bias_act(block_row(wid, lid, 3u), j0, j1, b.c30, b.c31);
    store_pair_bias_act(block_row(wid, lid, 4u), j0, j1, b.c40, b.c41);
    store_pair_bias_act(block_row(wid, lid, 5u), j0, j1, b.c50, b.c51);
    store_pair_bias_act(block_row(wid, lid, 6u), j0, j1, b.c60, b.c61);
    store_pair_bias_act(block_row(wid, lid, 7u), j0, j1, b.c70, b.c71);
}
