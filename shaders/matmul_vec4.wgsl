// C[m×n] = op(A)·op(B) in 128×128 tiles (matmul_tile128.wgsl), each thread loading a slab's share of A
// and of B as one 16-byte vec4 apiece instead of four scalars. Only for sizes where every vec4 lies
// inside one row of its operand: A's contiguous dimension (k for A stored [m×k], m for [k×m]) and B's
// (n for B stored [k×n], k for [n×k]) multiples of 4; src/backend/gpu/matmul.rs checks, and otherwise
// runs matmul_large.wgsl. matmul_common.wgsl and matmul_tile128.wgsl are prepended, after
// activation_math.wgsl.
//
// Along the contiguous dimension a slab is 128 wide (32 vec4s at each of its 8 k) or 8 deep (2 vec4s
// for each of its 128 rows or columns). A vec4 that runs along the tile's rows or columns goes into
// workgroup memory whole; one that runs along k goes into four k rows, one component each (the padded
// rows of matmul_tile128.wgsl keep those stores in distinct banks). A vec4 starts at a multiple of 4,
// so it is inside the matrix exactly when its first element is; outside, it loads as zeros.

@group(0) @binding(1) var<storage, read> a4: array<vec4<a4_t>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<b4_t>>;

fn fetch_slab(row0: u32, col0: u32, k0: u32, t: u32) -> Slab {
    var s = Slab(vec4<f32>(0.0), vec4<f32>(0.0));
    if (p.a_col == 1u) {
        // A stored [m×k]: thread t takes row t / 2, k0 + 4·(t mod 2) .. + 3.
        let i = row0 + t / 2u;
        let kk = k0 + 4u * (t % 2u);
        if (i < p.m && kk < p.k) {
            s.a = vec4<f32>(a4[(i * p.a_row + kk) / 4u]);
        }
    } else {
        // A stored [k×m]: thread t takes k0 + t / 32, rows 4·(t mod 32) .. + 3.
        let kk = k0 + t / 32u;
        let i = row0 + 4u * (t % 32u);
        if (i < p.m && kk < p.k) {
            s.a = vec4<f32>(a4[(kk * p.a_col + i) / 4u]);
        }
    }
    if (p.b_row == 1u) {
        // B stored [n×k]: thread t takes column t / 2, k0 + 4·(t mod 2) .. + 3.
        let j = col0 + t / 2u;
        let kk = k0 + 4u * (t % 2u);
        if (j < p.n && kk < p.k) {
            s.b = vec4<f32>(b4[(j * p.b_col + kk) / 4u]);
        }
    } else {
        // B stored [k×n]: thread t takes k0 + t / 32, columns 4·(t mod 32) .. + 3.
        let kk = k0 + t / 32u;
        let j = col0 + 4u * (t % 32u);
        if (j < p.n && kk < p.k) {
            s.b = vec4<f32>(b4[(kk * p.b_row + j) / 4u]);
        }
    }
    return s;
}

fn put_slab(t: u32, s: Slab) {
    if (p.a_col == 1u) {
        let i = t / 2u;
        let kk = 4u * (t % 2u);
        for (var q = 0u; q < 4u; q = q + 1u) {
            la[(kk + q) * LROW + i / 4u][i % 4u] = s.a[q];
        }
    } else {
        la[(t / 32u) * LROW + t % 32u] = s.a;
    }
    if (p.b_row == 1u) {
        let j = t / 2u;
        let kk = 4u * (t % 2u);
        for (var q = 0u; q < 4u; q = q + 1u) {
            lb[(kk + q) * LROW + j / 4u][j % 4u] = s.b[q];
        }
    } else {
        lb[(t / 32u) * LROW + t % 32u] = s.b;
    }
}

@compute @workgroup_size(16, 16)
fn matmul_vec4(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    store_block8(lid, wid, block_product8(lid, wid));
}

@compute @workgroup_size(16, 16)
fn matmul_vec4_bias_act(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    store_block8_bias_act(lid, wid, block_product8(lid, wid));
}
