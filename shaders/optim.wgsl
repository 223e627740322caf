// Optimizers, with PyTorch's semantics so results compare with torch.optim.
//
// adam (step t = state[step_word] + 1: the parameter group's completed steps; L2 weight decay folded into
// the gradient):
//     g' = g + wd·p;  m ← β₁m + (1−β₁)g';  v ← β₂v + (1−β₂)g'²
//     p ← p − lr/(1−β₁ᵗ) · m / (√v / √(1−β₂ᵗ) + ε)
// sgd (momentum μ, no dampening):
//     g' = g + wd·p;  buf ← μ·buf + g';  p ← p − lr·buf

struct AdamParams {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    step_word: u32,
    _pad1: u32,
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
    let step = ap.lr / (1.0 - pow(ap.beta1, t));
    let bc2_sqrt = sqrt(1.0 - pow(ap.beta2, t));
    let g = grad[i] + ap.weight_decay * param[i];
    let mi = ap.beta1 * m[i] + (1.0 - ap.beta1) * g;
    let vi = ap.beta2 * v[i] + (1.0 - ap.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    param[i] = param[i] - step * mi / (sqrt(vi) / bc2_sqrt + ap.eps);
}

struct SgdParams {
    len: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
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
    sgd_param[i] = sgd_param[i] - sp.lr * buf;
}
