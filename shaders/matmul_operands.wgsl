// The operands as f32 arrays, and their guarded loads: for matmul.wgsl and matmul_large.wgsl (prepended
// after matmul_common.wgsl).

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;

// op(A)[i, kk] and op(B)[kk, j], or 0 outside the matrix (and outside [.., k_end) along k).
fn load_a(i: u32, kk: u32, k_end: u32) -> f32 {
    if (i < p.m && kk < k_end) {
        return a[i * p.a_row + kk * p.a_col];
    }
    return 0.0;
}

fn load_b(kk: u32, j: u32, k_end: u32) -> f32 {
    if (j < p.n && kk < k_end) {
        return b[kk * p.b_row + j * p.b_col];
    }
    return 0.0;
}
