// C[m×n] = op(A)·op(B) in 128×128 tiles (matmul_tile128.wgsl), the operands read as scalars: any m, n,
// k and transpose form. For products with many such tiles (the 4096³ benchmark, wide layers at large
// batches) and for every product on lavapipe. matmul_common.wgsl, matmul_operands.wgsl and
// matmul_tile128.wgsl are prepended, after activation_math.wgsl; matmul_vec4.wgsl is the same tile
// with 16-byte operand loads where the sizes allow them.
//
// Slab loads: element e = t + 256·r (r = 0..3) of a slab, numbered along the operand's contiguous
// dimension (k for A stored [m×k], i for A stored [k×m]; likewise for B), so a warp's loads are
// consecutive addresses in every transpose form. Out-of-range elements load as zero.

// Slab element e as (row or column within the tile, kk).
fn slab_a_pos(e: u32) -> vec2<u32> {
    if (p.a_col == 1u) {
        return vec2<u32>(e / LK, e % LK);
    }
    return vec2<u32>(e % LT, e / LT);
}

fn slab_b_pos(e: u32) -> vec2<u32> {
    if (p.b_row == 1u) {
        return vec2<u32>(e / LK, e % LK);
    }
    return vec2<u32>(e % LT, e / LT);
}

fn fetch_slab(row0: u32, col0: u32, k0: u32, t: u32) -> Slab {
    var s = Slab(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var r = 0u; r < 4u; r = r + 1u) {
        let pa = slab_a_pos(t + 256u * r);
        s.a[r] = load_a(row0 + pa.x, k0 + pa.y, p.k);
        let pb = slab_b_pos(t + 256u * r);
        s.b[r] = load_b(k0 + pb.y, col0 + pb.x, p.k);
    }
    return s;
}

fn put_slab(t: u32, s: Slab) {
    for (var r = 0u; r < 4u; r = r + 1u) {
        let pa = slab_a_pos(t + 256u * r);
        la[pa.y * LROW + pa.x / 4u][pa.x % 4u] = s.a[r];
        let pb = slab_b_pos(t + 256u * r);
        lb[pb.y * LROW + pb.x / 4u][pb.x % 4u] = s.b[r];
    }
}

@compute @workgroup_size(16, 16)
fn matmul_large(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    store_block8(lid, wid, block_product8(lid, wid));
}

@compute @workgroup_size(16, 16)
fn matmul_large_bias_act(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    store_block8_bias_act(lid, wid, block_product8(lid, wid));
}
