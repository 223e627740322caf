// s = Σ partials[first..first + count): one workgroup, fixed order. acc[slot] += s keeps the epoch's sum on
// the device until the host asks; log[state[1]] = s records each step's sum, so a non-finite loss can be
// traced to the step that produced it. reduce_sum_scaled multiplies s by a scalar of the plan first (a
// penalty's weight, which the host may change between steps).

struct ReduceParams {
    count: u32,
    slot: u32,
    log_len: u32,
    first: u32,
    // reduce_sum_scaled: the element of the scalar buffer to multiply by
    scale_index: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> rp: ReduceParams;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> acc: array<f32>;
@group(0) @binding(3) var<storage, read> reduce_state: array<u32>;
@group(0) @binding(4) var<storage, read_write> log: array<f32>;
@group(0) @binding(5) var<storage, read> reduce_scalars: array<f32>;

// The sum of the partials, for every thread: each adds every 256th, then the workgroup adds those.
fn sum_partials(lid: u32) -> f32 {
    var sum = 0.0;
    for (var i = lid; i < rp.count; i = i + 256u) {
        sum = sum + partials[rp.first + i];
    }
    return workgroup_sum(lid, sum);
}

fn record(s: f32) {
    acc[rp.slot] = acc[rp.slot] + s;
    let step = reduce_state[1];
    if (step < rp.log_len) {
        log[step] = s;
    }
}

@compute @workgroup_size(256)
fn reduce_sum(@builtin(local_invocation_index) lid: u32) {
    let s = sum_partials(lid);
    if (lid == 0u) {
        record(s);
    }
}

@compute @workgroup_size(256)
fn reduce_sum_scaled(@builtin(local_invocation_index) lid: u32) {
    let s = sum_partials(lid);
    if (lid == 0u) {
        record(s * reduce_scalars[rp.scale_index]);
    }
}
