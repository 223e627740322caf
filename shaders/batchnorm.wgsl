// BatchNorm2d over x [batch, channels, inner] (inner = H·W), one workgroup per channel.
//
// Only the first valid = min(batch, samples − state[1]·batch) rows hold samples; with n = valid·inner values per
// channel:
// batch_norm2d, training:  μ = Σx / n, σ² = Σ(x − μ)² / n (two passes, each a fixed-order tree reduction),
//                          inv_std = 1/√(σ² + ε); mean, inv_std saved for backward;
//                          running_mean ← (1−m)·running_mean + m·μ, running_var ← (1−m)·running_var + m·σ²·n/(n−1).
// batch_norm2d, eval:      μ, σ² = running statistics; only y is written.
//                          Either way y = γ·(x − μ)·inv_std + β on every row (padded rows too: finite, ignored).
// batch_norm2d_backward:   x̂ = (x − μ)·inv_std; dβ = Σ dy, dγ = Σ dy·x̂ over the valid rows;
//                          dx = γ·inv_std/n · (n·dy − dβ − x̂·dγ) on valid rows, 0 on padded rows.
//
// Both entry points bind 8 storage buffers plus the state, so they need an adapter allowing 9 storage buffers
// per stage (every Vulkan, Metal and DX12 adapter; the WebGPU default is 8).

struct NormParams {
    batch: u32,
    channels: u32,
    inner: u32,
    samples: u32,
    momentum: f32,
    eps: f32,
    training: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> bn: NormParams;
@group(0) @binding(1) var<storage, read> bn_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> bn_y: array<f32>;
@group(0) @binding(3) var<storage, read> bn_gamma: array<f32>;
@group(0) @binding(4) var<storage, read> bn_beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> bn_mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> bn_inv_std: array<f32>;
@group(0) @binding(7) var<storage, read_write> bn_running_mean: array<f32>;
@group(0) @binding(8) var<storage, read_write> bn_running_var: array<f32>;
@group(0) @binding(9) var<storage, read> bn_state: array<u32>;

var<workgroup> scratch: array<f32, 256>;
var<workgroup> scratch2: array<f32, 256>;

// Index of term t (row-major over rows, then inner) of `channel`.
fn channel_index(t: u32, channel: u32, channels: u32, inner: u32) -> u32 {
    return ((t / inner) * channels + channel) * inner + t % inner;
}

// Tree-sums scratch (and scratch2) into element 0; every thread must call it.
fn reduce_scratch(lid: u32) {
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            scratch[lid] = scratch[lid] + scratch[lid + stride];
            scratch2[lid] = scratch2[lid] + scratch2[lid + stride];
        }
        workgroupBarrier();
    }
}

fn valid_rows(batch: u32, samples: u32, batch_index: u32) -> u32 {
    return min(batch, samples - min(samples, batch_index * batch));
}

@compute @workgroup_size(256)
fn batch_norm2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let p = bn;
    var mu: f32;
    var inv: f32;
    if (p.training != 0u) {
        let n = max(valid_rows(p.batch, p.samples, bn_state[1]) * p.inner, 1u);
        var sum = 0.0;
        for (var t = lid; t < n; t = t + 256u) {
            sum = sum + bn_x[channel_index(t, c, p.channels, p.inner)];
        }
        scratch[lid] = sum;
        scratch2[lid] = 0.0;
        reduce_scratch(lid);
        mu = scratch[0] / f32(n);
        workgroupBarrier();
        var squares = 0.0;
        for (var t = lid; t < n; t = t + 256u) {
            let d = bn_x[channel_index(t, c, p.channels, p.inner)] - mu;
            squares = squares + d * d;
        }
        scratch[lid] = squares;
        reduce_scratch(lid);
        let var_biased = scratch[0] / f32(n);
        inv = 1.0 / sqrt(var_biased + p.eps);
        if (lid == 0u) {
            bn_mean[c] = mu;
            bn_inv_std[c] = inv;
            let unbiased = scratch[0] / f32(max(n, 2u) - 1u);
            bn_running_mean[c] = (1.0 - p.momentum) * bn_running_mean[c] + p.momentum * mu;
            bn_running_var[c] = (1.0 - p.momentum) * bn_running_var[c] + p.momentum * unbiased;
        }
    } else {
        mu = bn_running_mean[c];
        inv = 1.0 / sqrt(bn_running_var[c] + p.eps);
    }
    let g = bn_gamma[c];
    let b = bn_beta[c];
    for (var t = lid; t < p.batch * p.inner; t = t + 256u) {
        let i = channel_index(t, c, p.channels, p.inner);
        bn_y[i] = g * (bn_x[i] - mu) * inv + b;
    }
}

@group(0) @binding(10) var<uniform> bnb: NormParams;
@group(0) @binding(11) var<storage, read> bnb_x: array<f32>;
@group(0) @binding(12) var<storage, read> bnb_dy: array<f32>;
@group(0) @binding(13) var<storage, read_write> bnb_dx: array<f32>;
@group(0) @binding(14) var<storage, read> bnb_gamma: array<f32>;
@group(0) @binding(15) var<storage, read_write> bnb_dgamma: array<f32>;
@group(0) @binding(16) var<storage, read_write> bnb_dbeta: array<f32>;
@group(0) @binding(17) var<storage, read> bnb_mean: array<f32>;
@group(0) @binding(18) var<storage, read> bnb_inv_std: array<f32>;
@group(0) @binding(19) var<storage, read> bnb_state: array<u32>;

@compute @workgroup_size(256)
fn batch_norm2d_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let p = bnb;
    let n = valid_rows(p.batch, p.samples, bnb_state[1]) * p.inner;
    let mu = bnb_mean[c];
    let inv = bnb_inv_std[c];
    var sum_dy = 0.0;
    var sum_dy_xhat = 0.0;
    for (var t = lid; t < n; t = t + 256u) {
        let i = channel_index(t, c, p.channels, p.inner);
        sum_dy = sum_dy + bnb_dy[i];
        sum_dy_xhat = sum_dy_xhat + bnb_dy[i] * (bnb_x[i] - mu) * inv;
    }
    scratch[lid] = sum_dy;
    scratch2[lid] = sum_dy_xhat;
    reduce_scratch(lid);
    let dbeta = scratch[0];
    let dgamma = scratch2[0];
    if (lid == 0u) {
        bnb_dbeta[c] = dbeta;
        bnb_dgamma[c] = dgamma;
    }
    let count = f32(max(n, 1u));
    let scale = bnb_gamma[c] * inv / count;
    for (var t = lid; t < p.batch * p.inner; t = t + 256u) {
        let i = channel_index(t, c, p.channels, p.inner);
        var v = 0.0;
        if (t < n) {
            v = scale * (count * bnb_dy[i] - dbeta - (bnb_x[i] - mu) * inv * dgamma);
        }
        bnb_dx[i] = v;
    }
}
