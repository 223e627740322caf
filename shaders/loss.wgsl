// Reconstruction loss and its gradient, for the valid rows of a batch.
//
// kind 0, BCE with logits (output activation sigmoid, fused):
//     l = max(z, 0) − z·x + log(1 + e^−|z|)        ∂l/∂z = σ(z) − x
//     (never forms log σ(z) directly, so large |z| cannot overflow)
// kind 1, MSE on y = act(z):
//     l = (y − x)²                                  ∂l/∂z = 2(y − x)·act'(y)
// kind 2, L1 on y = act(z):
//     l = |y − x|                                   ∂l/∂z = sign(y − x)·act'(y), sign(0) = 0
//
// grad = ∂(mean over valid elements)/∂z (with per_sample = 1: ∂(mean over valid rows of the row's sum)/∂z,
// the VAE literature's loss per image); rows past valid = min(rows, samples − state[1]·rows) get zero
// gradient and contribute no loss. recon = y. partials[g] = Σ l over the 256 elements of workgroup g.

struct LossParams {
    rows: u32,
    cols: u32,
    samples: u32,
    kind: u32,
    act: u32,
    per_sample: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> lp: LossParams;
@group(0) @binding(1) var<storage, read> logits: array<logits_t>;
@group(0) @binding(2) var<storage, read> clean: array<clean_t>;
@group(0) @binding(3) var<storage, read_write> grad: array<grad_t>;
@group(0) @binding(4) var<storage, read_write> recon: array<recon_t>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;
@group(0) @binding(6) var<storage, read> loss_state: array<u32>;

// Rows of the batch state[1] that hold samples.
fn valid_rows(rows: u32, samples: u32) -> u32 {
    return min(rows, samples - min(samples, loss_state[1] * rows));
}

// 1/(values the loss is a mean over): valid·cols, or valid for a loss per sample.
fn mean_scale(valid: u32, cols: u32, per_sample: u32) -> f32 {
    return 1.0 / f32(max(valid, 1u) * select(cols, 1u, per_sample == 1u));
}

// (l, ∂l/∂z, y) of one element: logit z, target x.
fn element_loss(z: f32, x: f32, kind: u32, act: u32) -> vec3<f32> {
    if (kind == 0u) {
        let y = activate(z, 3u);
        return vec3<f32>(max(z, 0.0) - z * x + log(1.0 + exp(-abs(z))), y - x, y);
    }
    let y = activate(z, act);
    let d = y - x;
    if (kind == 2u) {
        return vec3<f32>(abs(d), sign(d) * activation_slope(y, act), y);
    }
    return vec3<f32>(d * d, 2.0 * d * activation_slope(y, act), y);
}

@compute @workgroup_size(256)
fn loss(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    loss_at(gid, wid, lid, groups, 1.0);
}

// Mixed precision's loss: the gradient times the loss scale S (loss_amp[0], f32 bits; see
// src/ops/optim.rs, `amp`) before it is stored in f16, so that the small gradients of a mean over a batch
// do not underflow.
@group(0) @binding(9) var<storage, read> loss_amp: array<u32>;

@compute @workgroup_size(256)
fn loss_scaled(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    loss_at(gid, wid, lid, groups, bitcast<f32>(loss_amp[0]));
}

fn loss_at(gid: vec3<u32>, wid: vec3<u32>, lid: u32, groups: vec3<u32>, grad_scale: f32) {
    let i = gid.y * groups.x * 256u + gid.x;
    let valid = valid_rows(lp.rows, lp.samples);
    let limit = valid * lp.cols;
    let scale = mean_scale(valid, lp.cols, lp.per_sample);
    var l = 0.0;
    if (i < lp.rows * lp.cols) {
        let e = element_loss(f32(logits[i]), f32(clean[i]), lp.kind, lp.act);
        l = e.x;
        recon[i] = to_recon_t(e.z);
        if (i < limit) {
            grad[i] = to_grad_t(e.y * scale * grad_scale);
        } else {
            grad[i] = to_grad_t(0.0);
            l = 0.0;
        }
    }
    let sum = workgroup_sum(lid, l);
    // A 2-D launch can have more workgroups than partials; the extra ones hold nothing.
    let g = wid.y * groups.x + wid.x;
    if (lid == 0u && g < (lp.rows * lp.cols + 255u) / 256u) {
        partials[g] = sum;
    }
}

// The emphasised reconstruction (lectures' emphasised denoising): element weight w = corrupted where the
// corruption chose the element (mask 1), clean elsewhere. grad = w·∂l/∂z / (valid·cols) (or / valid with
// per_sample); partials in five
// sections of ⌈rows·cols/256⌉ (src/ops/terms.rs, `emphasis`): Σ w·l, Σ m·l, Σ (1 − m)·l, Σ m, Σ (1 − m) over
// the valid elements (of the state[2] rows the gather found real).
struct EmphasisParams {
    rows: u32,
    cols: u32,
    kind: u32,
    act: u32,
    corrupted: f32,
    clean: f32,
    per_sample: u32,
    _pad1: u32,
}

@group(0) @binding(7) var<uniform> ep: EmphasisParams;
@group(0) @binding(8) var<storage, read> emphasis_mask: array<f32>;

@compute @workgroup_size(256)
fn loss_emphasis(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.y * groups.x * 256u + gid.x;
    // The rows that hold samples, as the batch gather recorded them.
    let valid = loss_state[2];
    let limit = valid * ep.cols;
    let scale = mean_scale(valid, ep.cols, ep.per_sample);
    // Σ w·l, Σ m·l, Σ (1 − m)·l, Σ m, Σ (1 − m) of this element.
    var v = array<f32, 5>(0.0, 0.0, 0.0, 0.0, 0.0);
    if (i < ep.rows * ep.cols) {
        let e = element_loss(f32(logits[i]), f32(clean[i]), ep.kind, ep.act);
        let m = emphasis_mask[i];
        let w = select(ep.clean, ep.corrupted, m > 0.0);
        recon[i] = to_recon_t(e.z);
        if (i < limit) {
            grad[i] = to_grad_t(w * e.y * scale);
            v = array<f32, 5>(w * e.x, m * e.x, (1.0 - m) * e.x, m, 1.0 - m);
        } else {
            grad[i] = to_grad_t(0.0);
        }
    }
    let group_count = (ep.rows * ep.cols + 255u) / 256u;
    let g = wid.y * groups.x + wid.x;
    for (var section = 0u; section < 5u; section = section + 1u) {
        let sum = workgroup_sum(lid, v[section]);
        if (lid == 0u && g < group_count) {
            partials[section * group_count + g] = sum;
        }
        workgroupBarrier();
    }
}
