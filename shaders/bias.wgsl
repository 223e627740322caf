// Bias gradient: db[c] = Σ over rows r and inner positions s of grad[r, c, s].
// One workgroup per channel; 256 threads stride over the rows·inner terms, then a tree reduction in
// workgroup memory. The summation order is fixed, so the result is the same run after run.

struct BiasGradParams {
    rows: u32,
    channels: u32,
    inner: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> bgp: BiasGradParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
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
        sum = sum + grad[(r * bgp.channels + channel) * bgp.inner + s];
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
