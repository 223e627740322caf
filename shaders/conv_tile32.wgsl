// The 32-row tile of conv_gemm.wgsl (prepended to it for layers of up to 32 channels along the GEMM's
// rows): a 32×8 workgroup computes 32×128 of C, each thread a 4×4 block, rows lid.y + 8·r. The 64-row
// form is conv_tile64.wgsl; conv_gemm.wgsl uses only what both define.

const TM: u32 = 32u;
// Rows per thread, and A elements each thread loads per K step (TM × BK / 256).
const THREAD_ROWS: u32 = 4u;
const A_LOADS: u32 = 2u;

var<workgroup> tile_a: array<f32, 512>; // [BK][TM]: tile_a[kk * TM + row]

// A thread's block of C: rr holds row lid.y + 8·r, its components columns lid.x + 32·q.
struct Block {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

fn zero_block() -> Block {
    return Block(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
}

// Adds this thread's share of the product of the two tiles now in workgroup memory.
fn tile_product(lid: vec3<u32>, acc: Block) -> Block {
    var o = acc;
    for (var kk = 0u; kk < BK; kk = kk + 1u) {
        let ab = kk * TM + lid.y;
        let bb = kk * TN + lid.x;
        let ar = vec4<f32>(tile_a[ab], tile_a[ab + 8u], tile_a[ab + 16u], tile_a[ab + 24u]);
        let br = vec4<f32>(tile_b[bb], tile_b[bb + 32u], tile_b[bb + 64u], tile_b[bb + 96u]);
        o.r0 = fma(vec4<f32>(ar.x), br, o.r0);
        o.r1 = fma(vec4<f32>(ar.y), br, o.r1);
        o.r2 = fma(vec4<f32>(ar.z), br, o.r2);
        o.r3 = fma(vec4<f32>(ar.w), br, o.r3);
    }
    return o;
}

fn block_row(blk: Block, r: u32) -> vec4<f32> {
    switch r {
        case 0u: { return blk.r0; }
        case 1u: { return blk.r1; }
        case 2u: { return blk.r2; }
        default: { return blk.r3; }
    }
}
