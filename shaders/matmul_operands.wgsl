// The operands as f32 arrays, and their guarded loads: for matmul.wgsl and matmul_large.wgsl (prepended
// after matmul_common.wgsl).

@group(0) @binding(1) var<storage, read> a: array<a_t>;
@group(0) @binding(2) var<storage, read> b: array<b_t>;

// op(A)[i, kk] and op(B)[kk, j], or 0 outside the matrix (and outside [.., k_end) along k).
fn load_a(i: u32, kk: u32, k_end: u32) -> f32 {
    if (i < p.m && kk < k_end) {
        return f32(a[i * p.a_row + kk * p.a_col]);
    }
    return 0.0;
}

fn load_b(kk: u32, j: u32, k_end: u32) -> f32 {
    if (j < p.n && kk < k_end) {
        return f32(b[kk * p.b_row + j * p.b_col]);
    }
    return 0.0;
}
