// Optimizers, with PyTorch's semantics so results compare with torch.optim (src/ops/optim.rs states
// RMSprop's and Adagrad's math; CPU twins in src/backend/cpu/kernels.rs).
//
// adam (step t = state[step_word] + 1: the parameter group's completed steps; L2 weight decay folded into
// the gradient, or with `decoupled` (AdamW) applied to the parameter first, p ← p·(1 − lr·wd)):
//     g' = g + wd·p;  m ← β₁m + (1−β₁)g';  v ← β₂v + (1−β₂)g'²
//     p ← p − lr/(1−β₁ᵗ) · m / (√v / √(1−β₂ᵗ) + ε)
// sgd (momentum μ, no dampening):
//     g' = g + wd·p;  buf ← μ·buf + g';  p ← p − lr·buf
// rmsprop: g' = g + wd·p;  v ← αv + (1−α)g'²;  p ← p − lr·g'/(√v + ε)
// adagrad: clr = lr/(1 + (t−1)·lr_decay);  g' = g + wd·p;  s ← s + g'²;  p ← p − clr·g'/(√s + ε)
//
// Every lr is multiplied by optim_scalars[scale_index], the learning-rate schedule's multiplier, unless
// scale_index is NO_SCALE; lr_schedule writes that multiplier from the step counter.

const NO_SCALE: u32 = 0xffffffffu;

@group(0) @binding(10) var<storage, read> optim_scalars: array<f32>;

fn lr_times_scale(lr: f32, scale_index: u32) -> f32 {
    if (scale_index == NO_SCALE) {
        return lr;
    }
    return lr * optim_scalars[scale_index];
}

struct AdamParams {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step_word: u32,
    decoupled: u32,
    scale_index: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> ap: AdamParams;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> adam_state: array<u32>;

@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= ap.len) {
        return;
    }
    let t = f32(adam_state[ap.step_word] + 1u);
    let pmv = adam_element(ap, t, param[i], grad[i], m[i], v[i]);
    param[i] = pmv.x;
    m[i] = pmv.y;
    v[i] = pmv.z;
}

// One element of Adam at step t (the update above, with h's lr times the schedule): the parameter,
// first and second moments after it, from their values before and the gradient g.
fn adam_element(h: AdamParams, t: f32, param_before: f32, g_in: f32, m_before: f32, v_before: f32) -> vec3<f32> {
    let lr = lr_times_scale(h.lr, h.scale_index);
    let step = lr / (1.0 - pow(h.beta1, t));
    let bc2_sqrt = sqrt(1.0 - pow(h.beta2, t));
    var p = param_before;
    var g = g_in;
    if (h.decoupled == 1u) {
        p = p * (1.0 - lr * h.weight_decay);
    } else {
        g = g + h.weight_decay * p;
    }
    let mi = h.beta1 * m_before + (1.0 - h.beta1) * g;
    let vi = h.beta2 * v_before + (1.0 - h.beta2) * g * g;
    return vec3<f32>(p - step * mi / (sqrt(vi) / bc2_sqrt + h.eps), mi, vi);
}

struct SgdParams {
    len: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    scale_index: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(6) var<uniform> sp: SgdParams;
@group(0) @binding(7) var<storage, read_write> sgd_param: array<f32>;
@group(0) @binding(8) var<storage, read> sgd_grad: array<f32>;
@group(0) @binding(9) var<storage, read_write> velocity: array<f32>;

@compute @workgroup_size(256)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= sp.len) {
        return;
    }
    let g = sgd_grad[i] + sp.weight_decay * sgd_param[i];
    let buf = sp.momentum * velocity[i] + g;
    velocity[i] = buf;
    sgd_param[i] = sgd_param[i] - lr_times_scale(sp.lr, sp.scale_index) * buf;
}

struct RmspropParams {
    len: u32,
    lr: f32,
    alpha: f32,
    eps: f32,
    weight_decay: f32,
    scale_index: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(11) var<uniform> rp: RmspropParams;
@group(0) @binding(12) var<storage, read_write> rms_param: array<f32>;
@group(0) @binding(13) var<storage, read> rms_grad: array<f32>;
@group(0) @binding(14) var<storage, read_write> square_avg: array<f32>;

@compute @workgroup_size(256)
fn rmsprop(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= rp.len) {
        return;
    }
    let g = rms_grad[i] + rp.weight_decay * rms_param[i];
    let avg = rp.alpha * square_avg[i] + (1.0 - rp.alpha) * g * g;
    square_avg[i] = avg;
    rms_param[i] = rms_param[i] - lr_times_scale(rp.lr, rp.scale_index) * g / (sqrt(avg) + rp.eps);
}

struct AdagradParams {
    len: u32,
    lr: f32,
    lr_decay: f32,
    eps: f32,
    weight_decay: f32,
    step_word: u32,
    scale_index: u32,
    _pad0: u32,
}

@group(0) @binding(15) var<uniform> gp: AdagradParams;
@group(0) @binding(16) var<storage, read_write> ada_param: array<f32>;
@group(0) @binding(17) var<storage, read> ada_grad: array<f32>;
@group(0) @binding(18) var<storage, read_write> ada_sum: array<f32>;
@group(0) @binding(19) var<storage, read> ada_state: array<u32>;

@compute @workgroup_size(256)
fn adagrad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= gp.len) {
        return;
    }
    let completed = f32(ada_state[gp.step_word]);
    let clr = lr_times_scale(gp.lr, gp.scale_index) / (1.0 + completed * gp.lr_decay);
    let g = ada_grad[i] + gp.weight_decay * ada_param[i];
    let s = ada_sum[i] + g * g;
    ada_sum[i] = s;
    ada_param[i] = ada_param[i] - clr * g / (sqrt(s) + gp.eps);
}

// lr_schedule: scalars[index] = warm-up × decay at completed step t = state[step_word] (src/ops/optim.rs).
struct ScheduleParams {
    index: u32,
    step_word: u32,
    warmup: u32,
    // 0 constant, 1 step (every `span` steps × gamma), 2 cosine (to 0 at step `span`)
    kind: u32,
    span: u32,
    gamma: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(20) var<uniform> lp: ScheduleParams;
@group(0) @binding(21) var<storage, read_write> schedule_scalars: array<f32>;
@group(0) @binding(22) var<storage, read> schedule_state: array<u32>;

@compute @workgroup_size(1)
fn lr_schedule() {
    let t = schedule_state[lp.step_word];
    var warm = 1.0;
    if (t < lp.warmup) {
        warm = f32(t + 1u) / f32(lp.warmup);
    }
    var decay = 1.0;
    if (lp.kind == 1u) {
        decay = pow(lp.gamma, f32(t / max(lp.span, 1u)));
    } else if (lp.kind == 2u) {
        let span = max(lp.span - min(lp.warmup, lp.span), 1u);
        let into = min(t - min(t, lp.warmup), span);
        decay = 0.5 * (1.0 + cos(3.14159265358979 * f32(into) / f32(span)));
    }
    schedule_scalars[lp.index] = warm * decay;
}

// ---- adam_mixed, adam_mixed_half: Adam on an f32 master copy under dynamic loss scaling ----------------
// (--precision mixed; src/ops/optim.rs states the scheme.) Nothing when am_amp[3] (found) is set: the
// step is skipped. Otherwise Adam as above with g = grad / S (S = am_amp[0] as f32 bits, a power of two,
// so the division is exact) and t = completed steps + 1 − am_amp[2] (skipped steps are not Adam's). The
// `_half` entry point then stores the weight's f16 copy, which the products read.
@group(0) @binding(23) var<uniform> amp_adam: AdamParams;
@group(0) @binding(24) var<storage, read_write> am_param: array<f32>;
@group(0) @binding(25) var<storage, read> am_grad: array<f32>;
@group(0) @binding(26) var<storage, read_write> am_m: array<f32>;
@group(0) @binding(27) var<storage, read_write> am_v: array<f32>;
@group(0) @binding(28) var<storage, read> am_state: array<u32>;
@group(0) @binding(29) var<storage, read> am_amp: array<u32>;
@group(0) @binding(30) var<storage, read_write> am_half: array<am_half_t>;

// Updates element i; returns whether it did (false: skipped step, or past the end).
fn adam_mixed_at(i: u32) -> bool {
    let ap = amp_adam;
    if (i >= ap.len || am_amp[3] != 0u) {
        return false;
    }
    let t = f32(am_state[ap.step_word] + 1u - am_amp[2]);
    let g = am_grad[i] * (1.0 / bitcast<f32>(am_amp[0]));
    let pmv = adam_element(ap, t, am_param[i], g, am_m[i], am_v[i]);
    am_param[i] = pmv.x;
    am_m[i] = pmv.y;
    am_v[i] = pmv.z;
    return true;
}

@compute @workgroup_size(256)
fn adam_mixed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    adam_mixed_at(gid.y * groups.x * 256u + gid.x);
}

@compute @workgroup_size(256)
fn adam_mixed_half(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (adam_mixed_at(i)) {
        am_half[i] = to_am_half_t(am_param[i]);
    }
}
