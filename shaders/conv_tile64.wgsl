// The 64-row tile of conv_gemm.wgsl (prepended to it for layers of more than 32 channels along the
// GEMM's rows): a 32×8 workgroup computes 64×128 of C, each thread an 8×4 block, rows lid.y + 8·r. Each
// gathered B element then feeds twice the multiply-adds of the 32-row form (conv_tile32.wgsl), which
// halves the index arithmetic per output where the gather, not the arithmetic, is the cost.

const TM: u32 = 64u;
// Rows per thread, and A elements each thread loads per K step (TM × BK / 256).
const THREAD_ROWS: u32 = 8u;
const A_LOADS: u32 = 4u;

var<workgroup> tile_a: array<f32, 1024>; // [BK][TM]: tile_a[kk * TM + row]

// A thread's block of C: rr holds row lid.y + 8·r, its components columns lid.x + 32·q.
struct Block {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
    r4: vec4<f32>,
    r5: vec4<f32>,
    r6: vec4<f32>,
    r7: vec4<f32>,
}

fn zero_block() -> Block {
    let z = vec4<f32>(0.0);
    return Block(z, z, z, z, z, z, z, z);
}

// Adds this thread's share of the product of the two tiles now in workgroup memory.
fn tile_product(lid: vec3<u32>, acc: Block) -> Block {
    var o = acc;
    for (var kk = 0u; kk < BK; kk = kk + 1u) {
        let ab = kk * TM + lid.y;
        let bb = kk * TN + lid.x;
        let ar = vec4<f32>(tile_a[ab], tile_a[ab + 8u], tile_a[ab + 16u], tile_a[ab + 24u]);
        let ar2 = vec4<f32>(tile_a[ab + 32u], tile_a[ab + 40u], tile_a[ab + 48u], tile_a[ab + 56u]);
        let br = vec4<f32>(tile_b[bb], tile_b[bb + 32u], tile_b[bb + 64u], tile_b[bb + 96u]);
        o.r0 = fma(vec4<f32>(ar.x), br, o.r0);
        o.r1 = fma(vec4<f32>(ar.y), br, o.r1);
        o.r2 = fma(vec4<f32>(ar.z), br, o.r2);
        o.r3 = fma(vec4<f32>(ar.w), br, o.r3);
        o.r4 = fma(vec4<f32>(ar2.x), br, o.r4);
        o.r5 = fma(vec4<f32>(ar2.y), br, o.r5);
        o.r6 = fma(vec4<f32>(ar2.z), br, o.r6);
        o.r7 = fma(vec4<f32>(ar2.w), br, o.r7);
    }
    return o;
}

fn block_row(blk: Block, r: u32) -> vec4<f32> {
    switch r {
        case 0u: { return blk.r0; }
        case 1u: { return blk.r1; }
        case 2u: { return blk.r2; }
        case 3u: { return blk.r3; }
        case 4u: { return blk.r4; }
        case 5u: { return blk.r5; }
        case 6u: { return blk.r6; }
        default: { return blk.r7; }
    }
}
