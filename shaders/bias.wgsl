// Bias gradient: db[c] = Σ over rows r and inner positions s of grad[r, c, s].
// `bias_grad` (convolutions: inner = a plane of positions): one workgroup per channel; 256 threads stride
// over the rows·inner terms, then a tree reduction in workgroup memory. `bias_grad_columns` (dense
// layers: inner = 1, a channel is a column of grad): 32 channels per workgroup, see below. Either way the
// summation order is fixed, so the result is the same run after run.

struct BiasGradParams {
    rows: u32,
    channels: u32,
    inner: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> bgp: BiasGradParams;
@group(0) @binding(1) var<storage, read> grad: array<grad_t>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn bias_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let channel = wid.x;
    let terms = bgp.rows * bgp.inner;
    var sum = 0.0;
    for (var t = lid; t < terms; t = t + 256u) {
        let r = t / bgp.inner;
        let s = t % bgp.inner;
        sum = sum + f32(grad[(r * bgp.channels + channel) * bgp.inner + s]);
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            partial[lid] = partial[lid] + partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        db[channel] = partial[0];
    }
}

// Dense layers (inner = 1): db[c] = Σ_r grad[r, c]. A workgroup takes 32 consecutive channels; each of
// its 8 lanes of 32 threads sums every 8th row, starting at its lane (so a lane's threads read 32
// consecutive floats of a row), and lane 0 then adds the 8 partial sums of its channel in lane order.
// A channel per workgroup would leave most of its threads idle at batch 128 and spend a workgroup (and,
// on lavapipe, its launch) per channel.
@compute @workgroup_size(256)
fn bias_grad_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let channel = wid.x * 32u + lid % 32u;
    let lane = lid / 32u;
    var sum = 0.0;
    if (channel < bgp.channels) {
        for (var r = lane; r < bgp.rows; r = r + 8u) {
            sum = sum + f32(grad[r * bgp.channels + channel]);
        }
    }
    partial[lid] = sum;
    workgroupBarrier();
    if (lane == 0u && channel < bgp.channels) {
        var total = 0.0;
        for (var l = 0u; l < 8u; l = l + 1u) {
            total = total + partial[l * 32u + lid];
        }
        db[channel] = total;
    }
}
