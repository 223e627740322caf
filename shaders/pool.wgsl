// Pooling and upsampling over NCHW planes; a "plane" is one (n, c) pair, planes = batch·channels.
//
// max_pool2x2:             y[plane, i, j] = max over rows 2i, 2i+1 and columns 2j, 2j+1 of x (odd sizes floor);
//                          argmax = the flat in-plane index h·in_w + w of the max, windows read row-major with a
//                          strictly-greater test, so the first max wins on ties (as in the CPU twin).
// max_pool2x2_backward:    dx[plane, p] = dy[window(p)] if p is its window's argmax, else 0. A gather over the
//                          input: each element belongs to at most one window, so no atomics are needed.
// max_unpool2x2:           the same gather with x in place of dy (PyTorch MaxUnpool2d).
// max_unpool2x2_backward:  dx[plane, k] = dy[plane, argmax[plane, k]].
// upsample_nearest:        y[plane, h, w] = x[plane, h / f, w / f].
// upsample_nearest_backward: dx[plane, i, j] = Σ over the f×f block of dy, row by row.
//
// in_h × in_w is always the full-resolution plane (the pooling input, the unpooling output); pooled planes are
// (in_h / 2) × (in_w / 2). For upsampling, in_h × in_w is the small plane and factor the scale.

struct PoolParams {
    planes: u32,
    in_h: u32,
    in_w: u32,
    factor: u32,
}

@group(0) @binding(0) var<uniform> pool_fwd: PoolParams;
@group(0) @binding(1) var<storage, read> pool_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> pool_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> pool_argmax: array<u32>;

@compute @workgroup_size(256)
fn max_pool2x2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    let p = pool_fwd;
    let out_w = p.in_w / 2u;
    let out_plane = (p.in_h / 2u) * out_w;
    if (i >= p.planes * out_plane) {
        return;
    }
    let plane = i / out_plane;
    let k = i % out_plane;
    let base = plane * p.in_h * p.in_w;
    var best = 2u * (k / out_w) * p.in_w + 2u * (k % out_w);
    var best_value = pool_x[base + best];
    var candidates = array<u32, 3>(best + 1u, best + p.in_w, best + p.in_w + 1u);
    for (var c = 0u; c < 3u; c = c + 1u) {
        let v = pool_x[base + candidates[c]];
        if (v > best_value) {
            best = candidates[c];
            best_value = v;
        }
    }
    pool_y[i] = best_value;
    pool_argmax[i] = best;
}

// The pooled index of full-resolution element i (plane-major) if its window exists, else 0xffffffff.
fn window_of(i: u32, in_h: u32, in_w: u32) -> u32 {
    let out_h = in_h / 2u;
    let out_w = in_w / 2u;
    let plane = i / (in_h * in_w);
    let p = i % (in_h * in_w);
    let h = p / in_w;
    let w = p % in_w;
    if (h / 2u >= out_h || w / 2u >= out_w) {
        return 0xffffffffu;
    }
    return plane * out_h * out_w + (h / 2u) * out_w + w / 2u;
}

@group(0) @binding(4) var<uniform> pool_bwd: PoolParams;
@group(0) @binding(5) var<storage, read> pool_dy: array<f32>;
@group(0) @binding(6) var<storage, read> pool_bwd_argmax: array<u32>;
@group(0) @binding(7) var<storage, read_write> pool_dx: array<f32>;

@compute @workgroup_size(256)
fn max_pool2x2_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    let p = pool_bwd;
    if (i >= p.planes * p.in_h * p.in_w) {
        return;
    }
    let win = window_of(i, p.in_h, p.in_w);
    var v = 0.0;
    if (win != 0xffffffffu && pool_bwd_argmax[win] == i % (p.in_h * p.in_w)) {
        v = pool_dy[win];
    }
    pool_dx[i] = v;
}

@group(0) @binding(8) var<uniform> unpool_fwd: PoolParams;
@group(0) @binding(9) var<storage, read> unpool_x: array<f32>;
@group(0) @binding(10) var<storage, read> unpool_argmax: array<u32>;
@group(0) @binding(11) var<storage, read_write> unpool_y: array<f32>;

@compute @workgroup_size(256)
fn max_unpool2x2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    let p = unpool_fwd;
    if (i >= p.planes * p.in_h * p.in_w) {
        return;
    }
    let win = window_of(i, p.in_h, p.in_w);
    var v = 0.0;
    if (win != 0xffffffffu && unpool_argmax[win] == i % (p.in_h * p.in_w)) {
        v = unpool_x[win];
    }
    unpool_y[i] = v;
}

@group(0) @binding(12) var<uniform> unpool_bwd: PoolParams;
@group(0) @binding(13) var<storage, read> unpool_dy: array<f32>;
@group(0) @binding(14) var<storage, read> unpool_bwd_argmax: array<u32>;
@group(0) @binding(15) var<storage, read_write> unpool_dx: array<f32>;

@compute @workgroup_size(256)
fn max_unpool2x2_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    let p = unpool_bwd;
    let out_plane = (p.in_h / 2u) * (p.in_w / 2u);
    if (i >= p.planes * out_plane) {
        return;
    }
    unpool_dx[i] = unpool_dy[(i / out_plane) * p.in_h * p.in_w + unpool_bwd_argmax[i]];
}

@group(0) @binding(16) var<uniform> up_fwd: PoolParams;
@group(0) @binding(17) var<storage, read> up_x: array<f32>;
@group(0) @binding(18) var<storage, read_write> up_y: array<f32>;

@compute @workgroup_size(256)
fn upsample_nearest(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    let p = up_fwd;
    let out_w = p.in_w * p.factor;
    let out_plane = p.in_h * p.factor * out_w;
    if (i >= p.planes * out_plane) {
        return;
    }
    let k = i % out_plane;
    let h = k / out_w;
    let w = k % out_w;
    up_y[i] = up_x[(i / out_plane) * p.in_h * p.in_w + (h / p.factor) * p.in_w + w / p.factor];
}

@group(0) @binding(19) var<uniform> up_bwd: PoolParams;
@group(0) @binding(20) var<storage, read> up_dy: array<f32>;
@group(0) @binding(21) var<storage, read_write> up_dx: array<f32>;

@compute @workgroup_size(256)
fn upsample_nearest_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    let p = up_bwd;
    let in_plane = p.in_h * p.in_w;
    if (i >= p.planes * in_plane) {
        return;
    }
    let f = p.factor;
    let out_w = p.in_w * f;
    let k = i % in_plane;
    let first = (i / in_plane) * in_plane * f * f + (k / p.in_w) * f * out_w + (k % p.in_w) * f;
    var sum = 0.0;
    for (var a = 0u; a < f; a = a + 1u) {
        for (var b = 0u; b < f; b = b + 1u) {
            sum = sum + up_dy[first + a * out_w + b];
        }
    }
    up_dx[i] = sum;
}
