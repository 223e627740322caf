// Restricted Boltzmann machines trained by CD-1 (src/ops/rbm.rs states each op's math; CPU twins in
// src/backend/cpu/rbm.rs). Every buffer is [rows, cols] row-major, the stacked ones [2·rows, cols]; only the
// first state[2] rows (the valid rows the batch gather counted) carry samples.
//
// counter_rng.wgsl (counter_uniform, counter_normal) and workgroup_sum.wgsl are prepended. All entry points
// share the uniform and the state; each binds its own buffers under distinct binding numbers.

struct RbmParams {
    rows: u32,
    cols: u32,
    seed: u32,
    stream: u32,
    // sample_hidden: 0 Bernoulli, 1 Gaussian
    units: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> rp: RbmParams;
@group(0) @binding(1) var<storage, read> rbm_state: array<u32>;

fn flat_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.y * groups.x * 256u + gid.x;
}

// ---- sample_hidden: s = [u < h] (Bernoulli) or h + N(0, 1) (Gaussian), keyed by the global step -------------
@group(0) @binding(2) var<storage, read> sample_h: array<f32>;
@group(0) @binding(3) var<storage, read_write> sample_s: array<f32>;

@compute @workgroup_size(256)
fn sample_hidden(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    if (i >= rp.rows * rp.cols) {
        return;
    }
    if (i >= rbm_state[2] * rp.cols) {
        sample_s[i] = 0.0;
        return;
    }
    let step = rbm_state[0];
    let h = sample_h[i];
    if (rp.units == 0u) {
        sample_s[i] = select(0.0, 1.0, counter_uniform(rp.seed, rp.stream, step, i, 0u) < h);
    } else {
        sample_s[i] = h + counter_normal(rp.seed, rp.stream, step, i);
    }
}

// ---- cd_hidden: stacked = [h₁; −h₀] / valid rows, padded rows 0 ------------------------------------------
@group(0) @binding(4) var<storage, read> cdh_h0: array<f32>;
@group(0) @binding(5) var<storage, read> cdh_h1: array<f32>;
@group(0) @binding(6) var<storage, read_write> cdh_stacked: array<f32>;

@compute @workgroup_size(256)
fn cd_hidden(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = flat_index(gid, groups);
    let n = rp.rows * rp.cols;
    if (i >= n) {
        return;
    }
    let valid = rbm_state[2];
    var positive = 0.0;
    var negative = 0.0;
    if (i < valid * rp.cols) {
        let scale = 1.0 / f32(max(valid, 1u));
        negative = cdh_h1[i] * scale;
        positive = -cdh_h0[i] * scale;
    }
    cdh_stacked[i] = negative;
    cdh_stacked[n + i] = positive;
}

// ---- cd_visible: stacked[rows..] = v₀, delta = (v₁ − v₀) / valid, partials of Σ (v₀ − v₁)² --------------
@group(0) @binding(7) var<storage, read> cdv_v0: array<f32>;
@group(0) @binding(8) var<storage, read_write> cdv_stacked: array<f32>;
@group(0) @binding(9) var<storage, read_write> cdv_delta: array<f32>;
@group(0) @binding(10) var<storage, read_write> cdv_partials: array<f32>;

@compute @workgroup_size(256)
fn cd_visible(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = flat_index(gid, groups);
    let n = rp.rows * rp.cols;
    let valid = rbm_state[2];
    var error = 0.0;
    if (i < n) {
        let v0 = cdv_v0[i];
        cdv_stacked[n + i] = v0;
        var delta = 0.0;
        if (i < valid * rp.cols) {
            let diff = cdv_stacked[i] - v0;
            delta = diff / f32(max(valid, 1u));
            error = diff * diff;
        }
        cdv_delta[i] = delta;
    }
    let sum = workgroup_sum(lid, error);
    // A 2-D launch can have more workgroups than partials; the extra ones hold nothing.
    let g = wid.y * groups.x + wid.x;
    if (lid == 0u && g < (n + 255u) / 256u) {
        cdv_partials[g] = sum;
    }
}
