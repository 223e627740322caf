// Shared by matmul.wgsl and matmul_large.wgsl (prepended to both, after activation_math.wgsl): the
// parameters, the bindings and the stores every matmul kernel ends with.
//
// C[m×n] = op(A)·op(B) (+ C when accumulate), every operand row-major in memory. Transposes are never
// materialised: op(A)[i, k] is read at a[i·a_row + k·a_col], so A stored [m×k] has strides (k, 1) and A
// stored [k×m] read as Aᵀ has strides (1, m); likewise B. Backward of y = x·Wᵀ needs all three forms:
// x·Wᵀ (forward), dy·W (data gradient), dyᵀ·x (weight gradient).

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
    // Split-K (matmul.wgsl): workgroup z sums k in [z·k_slice, min(k, (z + 1)·k_slice)); `slices` is how
    // many there are. Unsplit launches have k_slice = k and one slice.
    k_slice: u32,
    slices: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
// Only the *_bias_act entry points bind it.
@group(0) @binding(4) var<storage, read> bias: array<f32>;

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

// C[i, j] = v, or C[i, j] += v when the launch accumulates; nothing outside C.
fn store_plain(i: u32, j: u32, v: f32) {
    if (i < p.m && j < p.n) {
        var x = v;
        if (p.accumulate != 0u) {
            x = x + c[i * p.n + j];
        }
        c[i * p.n + j] = x;
    }
}

// C[i, j] = act(v + bias[j]): a dense layer's output.
fn store_bias_act(i: u32, j: u32, v: f32) {
    if (i < p.m && j < p.n) {
        c[i * p.n + j] = activate(v + bias[j], p.act);
    }
}
