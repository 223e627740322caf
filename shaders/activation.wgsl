// Bias + activation forward (in place) and activation backward (in place).
//
// bias_act:     y[r, c, s] = act(y[r, c, s] + bias[c])   for y of shape [rows, channels, inner]
// act_backward: grad[i] *= act'(y[i])                     turning ∂L/∂y into ∂L/∂(pre-activation)

struct BiasActParams {
    rows: u32,
    channels: u32,
    inner: u32,
    act: u32,
}

@group(0) @binding(0) var<uniform> bias_act_params: BiasActParams;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<y_t>;

@compute @workgroup_size(256)
fn bias_act(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let pp = bias_act_params;
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= pp.rows * pp.channels * pp.inner) {
        return;
    }
    let channel = (i / pp.inner) % pp.channels;
    y[i] = to_y_t(activate(f32(y[i]) + bias[channel], pp.act));
}

struct ActBackwardParams {
    len: u32,
    act: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(3) var<uniform> act_backward_params: ActBackwardParams;
@group(0) @binding(4) var<storage, read> out: array<out_t>;
@group(0) @binding(5) var<storage, read_write> grad: array<grad_t>;

@compute @workgroup_size(256)
fn act_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= act_backward_params.len) {
        return;
    }
    grad[i] = to_grad_t(f32(grad[i]) * activation_slope(f32(out[i]), act_backward_params.act));
}
