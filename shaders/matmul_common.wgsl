// Shared by every matmul kernel (prepended to matmul.wgsl, matmul_large.wgsl and matmul_vec4.wgsl, after
// activation_math.wgsl): the parameters, the output bindings and the stores every matmul kernel ends
// with. The operands' bindings come from matmul_operands.wgsl (scalar) or matmul_vec4.wgsl (vec4).
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
@group(0) @binding(3) var<storage, read_write> c: array<c_t>;
// Only the *_bias_act entry points bind it.
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// C[i, j] = v, or C[i, j] += v when the launch accumulates; nothing outside C.
fn store_plain(i: u32, j: u32, v: f32) {
    if (i < p.m && j < p.n) {
        var x = v;
        if (p.accumulate != 0u) {
            x = x + f32(c[i * p.n + j]);
        }
        c[i * p.n + j] = to_c_t(x);
    }
}

// C[i, j] = act(v + bias[j]): a dense layer's output.
fn store_bias_act(i: u32, j: u32, v: f32) {
    if (i < p.m && j < p.n) {
        c[i * p.n + j] = to_c_t(activate(v + bias[j], p.act));
    }
}
