// Objective terms beyond the reconstruction loss (src/ops/terms.rs states each op's math; CPU twins in
// src/backend/cpu/terms.rs). Every kernel sees only the valid rows of a batch, state[2] as the batch gather
// wrote it, so the padded rows of a last partial batch never enter a batch statistic or receive a
// gradient. Kernels named *_grad add into their gradient buffer.
//
// All entry points share the uniform and the state; each binds its own buffers (distinct binding numbers,
// so every entry point's automatic layout holds just what it uses).

struct TermParams {
    rows: u32,
    cols: u32,
    // contractive: the layer's input width
    inputs: u32,
    act: u32,
    // tap_sum: what to sum of x: 0 x, 1 |x|, 2 ||x| − 1| (TapFn::code)
    tap_fn: u32,
    // the *_grad kernels: where in the scalar buffer the penalty's weight is
    weight_index: u32,
    rho: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> tp: TermParams;
@group(0) @binding(1) var<storage, read> term_state: array<u32>;
// The plan's scalars (weights the host may change between steps), for the *_grad kernels.
@group(0) @binding(22) var<storage, read> term_scalars: array<f32>;

fn penalty_weight() -> f32 {
    return term_scalars[tp.weight_index];
}

// The rows of the batch that hold samples, as the gather recorded them.
fn valid_rows() -> u32 {
    return term_state[2];
}

fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.y * groups.x * 256u + gid.x;
}

// ---- tap_sum: partials[g] = Σ f(x) over group g's valid elements --------------------------------------
@group(0) @binding(2) var<storage, read> tap_x: array<tap_x_t>;
@group(0) @binding(3) var<storage, read_write> tap_partials: array<f32>;

@compute @workgroup_size(256)
fn tap_sum(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = flat_index(gid, groups);
    var v = 0.0;
    if (i < valid_rows() * tp.cols) {
        v = f32(tap_x[i]);
        if (tp.tap_fn == 1u) {
            v = abs(v);
        } else if (tp.tap_fn == 2u) {
            v = abs(abs(v) - 1.0);
        }
    }
    let sum = workgroup_sum(lid, v);
    // A 2-D launch can have more workgroups than partials; the extra ones hold nothing.
    let g = wid.y * groups.x + wid.x;
    if (lid == 0u && g < (tp.rows * tp.cols + 255u) / 256u) {
        tap_partials[g] = sum;
    }
}

// ---- l1_grad: grad += weight/valid · sign(x) ---------------------------------------------------------
@group(0) @binding(4) var<storage, read> l1_x: array<f32>;
@group(0) @binding(5) var<storage, read_write> l1_grad_out: array<f32>;

@compute @workgroup_size(256)
fn l1_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let valid = valid_rows();
    if (i >= valid * tp.cols) {
        return;
    }
    let scale = penalty_weight() / f32(max(valid, 1u));
    l1_grad_out[i] = l1_grad_out[i] + scale * sign(l1_x[i]);
}

// ---- kl_sparsity: ρ̂ⱼ (one thread per column) and valid · Σⱼ KL(ρ ‖ ρ̂ⱼ) per 256 columns ---------------
const KL_EPS: f32 = 1e-6;

@group(0) @binding(6) var<storage, read> kl_h: array<f32>;
@group(0) @binding(7) var<storage, read_write> kl_rho_hat: array<f32>;
@group(0) @binding(8) var<storage, read_write> kl_partials: array<f32>;

@compute @workgroup_size(256)
fn kl_sparsity(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let j = flat_index(gid, groups);
    let valid = valid_rows();
    var kl = 0.0;
    if (j < tp.cols) {
        var sum = 0.0;
        for (var i = 0u; i < valid; i = i + 1u) {
            sum = sum + kl_h[i * tp.cols + j];
        }
        let r = clamp(sum / f32(max(valid, 1u)), KL_EPS, 1.0 - KL_EPS);
        kl_rho_hat[j] = r;
        let rho = tp.rho;
        kl = rho * log(rho / r) + (1.0 - rho) * log((1.0 - rho) / (1.0 - r));
    }
    let total = workgroup_sum(lid, kl);
    let g = wid.y * groups.x + wid.x;
    if (lid == 0u && g < (tp.cols + 255u) / 256u) {
        kl_partials[g] = f32(valid) * total;
    }
}

// ---- kl_sparsity_grad: grad[i, j] += weight/valid · (−ρ/ρ̂ⱼ + (1 − ρ)/(1 − ρ̂ⱼ)) -------------------------
@group(0) @binding(9) var<storage, read> klg_rho_hat: array<f32>;
@group(0) @binding(10) var<storage, read_write> klg_grad: array<f32>;

@compute @workgroup_size(256)
fn kl_sparsity_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let valid = valid_rows();
    if (i >= valid * tp.cols) {
        return;
    }
    let r = klg_rho_hat[i % tp.cols];
    let scale = penalty_weight() / f32(max(valid, 1u));
    klg_grad[i] = klg_grad[i] + scale * (-tp.rho / r + (1.0 - tp.rho) / (1.0 - r));
}

// ---- contractive: wsq[j] = ‖Wⱼ‖², c[j] = Σᵢ act'(h[i, j])², partials = Σ c·wsq per 256 units -----------
// (cols = units: the code's width)
@group(0) @binding(11) var<storage, read> ct_h: array<f32>;
@group(0) @binding(12) var<storage, read> ct_w: array<f32>;
@group(0) @binding(13) var<storage, read_write> ct_wsq: array<f32>;
@group(0) @binding(14) var<storage, read_write> ct_c: array<f32>;
@group(0) @binding(15) var<storage, read_write> ct_partials: array<f32>;

@compute @workgroup_size(256)
fn contractive(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let j = flat_index(gid, groups);
    let valid = valid_rows();
    var value = 0.0;
    if (j < tp.cols) {
        var sq = 0.0;
        for (var k = 0u; k < tp.inputs; k = k + 1u) {
            let w = ct_w[j * tp.inputs + k];
            sq = sq + w * w;
        }
        var c = 0.0;
        for (var i = 0u; i < valid; i = i + 1u) {
            let s = activation_slope(ct_h[i * tp.cols + j], tp.act);
            c = c + s * s;
        }
        ct_wsq[j] = sq;
        ct_c[j] = c;
        value = c * sq;
    }
    let total = workgroup_sum(lid, value);
    let g = wid.y * groups.x + wid.x;
    if (lid == 0u && g < (tp.cols + 255u) / 256u) {
        ct_partials[g] = total;
    }
}

// ---- contractive_grad_code: grad[i, j] += 2·weight/valid · wsq[j] · s · s'(h) ----------------------------
@group(0) @binding(16) var<storage, read> cg_h: array<f32>;
@group(0) @binding(17) var<storage, read> cg_wsq: array<f32>;
@group(0) @binding(18) var<storage, read_write> cg_grad: array<f32>;

@compute @workgroup_size(256)
fn contractive_grad_code(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let valid = valid_rows();
    if (i >= valid * tp.cols) {
        return;
    }
    let h = cg_h[i];
    let scale = 2.0 * penalty_weight() / f32(max(valid, 1u));
    let s = activation_slope(h, tp.act);
    cg_grad[i] = cg_grad[i] + scale * cg_wsq[i % tp.cols] * s * activation_slope_derivative(h, tp.act);
}

// ---- contractive_grad_weight: dw[j, k] += 2·weight/valid · c[j] · w[j, k] -------------------------------
@group(0) @binding(19) var<storage, read> cw_w: array<f32>;
@group(0) @binding(20) var<storage, read> cw_c: array<f32>;
@group(0) @binding(21) var<storage, read_write> cw_dw: array<f32>;

@compute @workgroup_size(256)
fn contractive_grad_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= tp.cols * tp.inputs) {
        return;
    }
    let scale = 2.0 * penalty_weight() / f32(max(valid_rows(), 1u));
    cw_dw[i] = cw_dw[i] + scale * cw_c[i / tp.inputs] * cw_w[i];
}

// ---- The hashing code's terms (cols = the code's width B). The means and the covariance are over the valid
// rows alone; m = column means, n = valid rows, S = centeredᵀ·centered (a matmul), C = S/n.

// ---- binarize_grad: grad += weight/valid · sign(|x| − 1) · sign(x) --------------------------------------
@group(0) @binding(23) var<storage, read> bin_x: array<f32>;
@group(0) @binding(24) var<storage, read_write> bin_grad: array<f32>;

@compute @workgroup_size(256)
fn binarize_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let valid = valid_rows();
    if (i >= valid * tp.cols) {
        return;
    }
    let x = bin_x[i];
    let scale = penalty_weight() / f32(max(valid, 1u));
    bin_grad[i] = bin_grad[i] + scale * sign(abs(x) - 1.0) * sign(x);
}

// ---- bit_balance: mⱼ (one thread per column) and valid · Σⱼ mⱼ² per 256 columns ----------------------------
@group(0) @binding(25) var<storage, read> bb_b: array<f32>;
@group(0) @binding(26) var<storage, read_write> bb_means: array<f32>;
@group(0) @binding(27) var<storage, read_write> bb_partials: array<f32>;

@compute @workgroup_size(256)
fn bit_balance(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let j = flat_index(gid, groups);
    let valid = valid_rows();
    var square = 0.0;
    if (j < tp.cols) {
        var sum = 0.0;
        for (var i = 0u; i < valid; i = i + 1u) {
            sum = sum + bb_b[i * tp.cols + j];
        }
        let m = sum / f32(max(valid, 1u));
        bb_means[j] = m;
        square = m * m;
    }
    let total = workgroup_sum(lid, square);
    let g = wid.y * groups.x + wid.x;
    if (lid == 0u && g < (tp.cols + 255u) / 256u) {
        bb_partials[g] = f32(valid) * total;
    }
}

// ---- bit_balance_grad: grad[i, j] += weight · 2·mⱼ/valid ------------------------------------------------
@group(0) @binding(28) var<storage, read> bbg_means: array<f32>;
@group(0) @binding(29) var<storage, read_write> bbg_grad: array<f32>;

@compute @workgroup_size(256)
fn bit_balance_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let valid = valid_rows();
    if (i >= valid * tp.cols) {
        return;
    }
    let scale = 2.0 * penalty_weight() / f32(max(valid, 1u));
    bbg_grad[i] = bbg_grad[i] + scale * bbg_means[i % tp.cols];
}

// ---- center_columns: centered = x − m on valid rows, 0 on padded rows (one thread per column) -------------
@group(0) @binding(30) var<storage, read> cc_x: array<f32>;
@group(0) @binding(31) var<storage, read_write> cc_centered: array<f32>;

@compute @workgroup_size(256)
fn center_columns(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let j = flat_index(gid, groups);
    if (j >= tp.cols) {
        return;
    }
    let valid = valid_rows();
    var sum = 0.0;
    for (var i = 0u; i < valid; i = i + 1u) {
        sum = sum + cc_x[i * tp.cols + j];
    }
    let m = sum / f32(max(valid, 1u));
    for (var i = 0u; i < tp.rows; i = i + 1u) {
        var v = 0.0;
        if (i < valid) {
            v = cc_x[i * tp.cols + j] - m;
        }
        cc_centered[i * tp.cols + j] = v;
    }
}

// ---- decorrelate: valid · Σ over j ≠ k of (S[j, k]/valid)², per 256 elements of S -------------------------
@group(0) @binding(32) var<storage, read> dc_cov: array<f32>;
@group(0) @binding(33) var<storage, read_write> dc_partials: array<f32>;

@compute @workgroup_size(256)
fn decorrelate(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let e = flat_index(gid, groups);
    let valid = valid_rows();
    var square = 0.0;
    if (e < tp.cols * tp.cols && e / tp.cols != e % tp.cols) {
        let c = dc_cov[e] / f32(max(valid, 1u));
        square = c * c;
    }
    let total = workgroup_sum(lid, square);
    let g = wid.y * groups.x + wid.x;
    if (lid == 0u && g < (tp.cols * tp.cols + 255u) / 256u) {
        dc_partials[g] = f32(valid) * total;
    }
}

// ---- decorrelate_grad: grad[i, j] += 4·weight/valid² · Σₖ≠ⱼ S[j, k] · centered[i, k] ----------------------
@group(0) @binding(34) var<storage, read> dg_centered: array<f32>;
@group(0) @binding(35) var<storage, read> dg_cov: array<f32>;
@group(0) @binding(36) var<storage, read_write> dg_grad: array<f32>;

@compute @workgroup_size(256)
fn decorrelate_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let valid = valid_rows();
    if (i >= valid * tp.cols) {
        return;
    }
    let row = i / tp.cols;
    let j = i % tp.cols;
    var sum = 0.0;
    for (var k = 0u; k < tp.cols; k = k + 1u) {
        if (k != j) {
            sum = sum + dg_cov[j * tp.cols + k] * dg_centered[row * tp.cols + k];
        }
    }
    let n = f32(max(valid, 1u));
    let scale = 4.0 * penalty_weight() / (n * n);
    dg_grad[i] = dg_grad[i] + scale * sum;
}
