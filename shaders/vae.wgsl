// The variational autoencoder's ops (src/ops/vae.rs states each op's math; CPU twins in
// src/backend/cpu/vae.rs). stats [rows, 2·latent]: row r holds μ in columns 0..latent, then log σ² in
// columns latent..2·latent. The KL kernels see only the valid rows (state[2], as the batch gather wrote
// it); the reparameterisation runs on every row (a padded row's z is finite and its gradient is zero).
//
// counter_rng.wgsl (counter_normal) and workgroup_sum.wgsl are prepended. All entry points share the
// uniform and the state; each binds its own buffers under distinct binding numbers.

struct VaeParams {
    rows: u32,
    latent: u32,
    seed: u32,
    stream: u32,
    // gaussian_kl_grad, ramp_weight: where in the scalar buffer the weight is
    weight_index: u32,
    // ramp_weight: the steps over which the weight grows from 0 to ramp_target
    ramp_steps: u32,
    ramp_target: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> vp: VaeParams;
@group(0) @binding(1) var<storage, read> vae_state: array<u32>;

fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.y * groups.x * 256u + gid.x;
}

// e^x − 1 − x, the part of σ² − 1 − log σ² (x = log σ²) that the KL keeps: near x = 0 the direct form
// loses every digit to cancellation (1 + x and e^x agree to within x²/2), so for |x| < ½ it is summed as
// x²/2·(1 + x/3·(1 + x/4·(1 + … (1 + x/17)))), exact to f32's rounding; beyond, the direct form is already
// accurate. src/backend/cpu/vae.rs `exp_excess` is the twin.
fn exp_excess(x: f32) -> f32 {
    if (abs(x) >= 0.5) {
        return exp(x) - 1.0 - x;
    }
    var t = 1.0;
    for (var k = 17u; k >= 3u; k = k - 1u) {
        t = 1.0 + x / f32(k) * t;
    }
    return 0.5 * x * x * t;
}

// Where μ and log σ² of latent element i (row i / latent, unit i % latent) live in stats.
fn mu_index(i: u32) -> u32 {
    let row = i / vp.latent;
    return row * 2u * vp.latent + (i - row * vp.latent);
}

// ---- reparameterize: z = μ + exp(½·log σ²)·ε, ε ~ N(0, 1) keyed by the global step -----------------------
@group(0) @binding(2) var<storage, read> rep_stats: array<f32>;
@group(0) @binding(3) var<storage, read_write> rep_z: array<f32>;
@group(0) @binding(4) var<storage, read_write> rep_eps: array<f32>;

@compute @workgroup_size(256)
fn reparameterize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= vp.rows * vp.latent) {
        return;
    }
    let m = mu_index(i);
    let eps = counter_normal(vp.seed, vp.stream, vae_state[0], i);
    rep_eps[i] = eps;
    rep_z[i] = rep_stats[m] + exp(0.5 * rep_stats[m + vp.latent]) * eps;
}

// ---- reparameterize_backward: dμ = dz, dlog σ² = dz·½·exp(½·log σ²)·ε (written) ------------------------
@group(0) @binding(5) var<storage, read> back_dz: array<f32>;
@group(0) @binding(6) var<storage, read> back_eps: array<f32>;
@group(0) @binding(7) var<storage, read> back_stats: array<f32>;
@group(0) @binding(8) var<storage, read_write> back_dstats: array<f32>;

@compute @workgroup_size(256)
fn reparameterize_backward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = flat_index(gid, groups);
    if (i >= vp.rows * vp.latent) {
        return;
    }
    let m = mu_index(i);
    let dz = back_dz[i];
    back_dstats[m] = dz;
    back_dstats[m + vp.latent] = dz * 0.5 * exp(0.5 * back_stats[m + vp.latent]) * back_eps[i];
}

// ---- gaussian_kl: partials[g] = Σ ½(μ² + σ² − 1 − log σ²) over group g's valid elements ----------------
@group(0) @binding(9) var<storage, read> kl_stats: array<f32>;
@group(0) @binding(10) var<storage, read_write> kl_partials: array<f32>;

@compute @workgroup_size(256)
fn gaussian_kl(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = flat_index(gid, groups);
    var v = 0.0;
    if (i < vae_state[2] * vp.latent) {
        let m = mu_index(i);
        let mu = kl_stats[m];
        let log_var = kl_stats[m + vp.latent];
        v = 0.5 * (mu * mu + exp_excess(log_var));
    }
    let sum = workgroup_sum(lid, v);
    // A 2-D launch can have more workgroups than partials; the extra ones hold nothing.
    let g = wid.y * groups.x + wid.x;
    if (lid == 0u && g < (vp.rows * vp.latent + 255u) / 256u) {
        kl_partials[g] = sum;
    }
}

// ---- gaussian_kl_grad: dstats += weight/valid · (μ, ½(σ² − 1)) on valid rows ------------------------------
@group(0) @binding(11) var<storage, read> kl_grad_stats: array<f32>;
@group(0) @binding(12) var<storage, read_write> kl_grad_dstats: array<f32>;
@group(0) @binding(13) var<storage, read> kl_grad_scalars: array<f32>;

@compute @workgroup_size(256)
fn gaussian_kl_grad(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = flat_index(gid, groups);
    let valid = vae_state[2];
    if (i >= valid * vp.latent) {
        return;
    }
    let scale = kl_grad_scalars[vp.weight_index] / f32(max(valid, 1u));
    let m = mu_index(i);
    let l = m + vp.latent;
    kl_grad_dstats[m] = kl_grad_dstats[m] + scale * kl_grad_stats[m];
    // σ² − 1 = e^x − 1 = x + (e^x − 1 − x), accurate near x = 0.
    let log_var = kl_grad_stats[l];
    kl_grad_dstats[l] = kl_grad_dstats[l] + scale * 0.5 * (log_var + exp_excess(log_var));
}

// ---- ramp_weight: weight = target · min(1, global step / steps), one thread ------------------------------
@group(0) @binding(14) var<storage, read_write> ramp_scalars: array<f32>;

@compute @workgroup_size(1)
fn ramp_weight() {
    let progress = f32(vae_state[0]) / f32(max(vp.ramp_steps, 1u));
    ramp_scalars[vp.weight_index] = vp.ramp_target * min(progress, 1.0);
}
