// The sum of one value per invocation over a 256-invocation workgroup, in a fixed order (a tree in
// workgroup memory), shared by loss.wgsl, reduce.wgsl and terms.wgsl (prepended to each). Every
// invocation must call it (it has barriers); each gets the sum back. A caller that calls it again must put
// a barrier between the two calls: invocations still reading the first sum would otherwise see the second
// one's first writes.

var<workgroup> scratch: array<f32, 256>;

fn workgroup_sum(lid: u32, value: f32) -> f32 {
    scratch[lid] = value;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            scratch[lid] = scratch[lid] + scratch[lid + stride];
        }
        workgroupBarrier();
    }
    return scratch[0];
}
