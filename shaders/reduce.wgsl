// acc[slot] += Σ partials[0..count): one workgroup, fixed order, so the step's loss stays on the device
// and is read back only when the host asks.

struct ReduceParams {
    count: u32,
    slot: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> rp: ReduceParams;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;

var<workgroup> scratch: array<f32, 256>;

@compute @workgroup_size(256)
fn reduce_sum(@builtin(local_invocation_index) lid: u32) {
    var sum = 0.0;
    for (var i = lid; i < rp.count; i = i + 256u) {
        sum = sum + partials[i];
    }
    scratch[lid] = sum;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            scratch[lid] = scratch[lid] + scratch[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        acc[rp.slot] = acc[rp.slot] + scratch[0];
    }
}
