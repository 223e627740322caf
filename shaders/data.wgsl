// Data movement that a training step needs on the device: the batch gather and the step counter.
//
// Data sets stay on the GPU as u8, packed little-endian four to a u32 word. A batch is the rows
// perm[b·batch .. b·batch + batch) of the data set, with b = state[1], converted to f32 in [0, 1].
// Rows past the end of the data set (the last, partial batch) are zero; state[2] says how many rows are
// real, and the loss, the batch statistics and the penalties ignore the others.

struct GatherParams {
    batch: u32,
    features: u32,
    samples: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> gather: GatherParams;
@group(0) @binding(1) var<storage, read> data: array<u32>;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
@group(0) @binding(3) var<storage, read_write> gather_state: array<u32>;
@group(0) @binding(4) var<storage, read_write> batch_out: array<batch_out_t>;

@compute @workgroup_size(256)
fn gather_batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= gather.batch * gather.features) {
        return;
    }
    // state[2]: the rows that hold samples, for the batch statistics and penalties after the gather.
    if (i == 0u) {
        let first = gather_state[1] * gather.batch;
        gather_state[2] = min(gather.batch, gather.samples - min(gather.samples, first));
    }
    let row = i / gather.features;
    let feature = i % gather.features;
    let position = gather_state[1] * gather.batch + row;
    var value = 0.0;
    if (position < gather.samples) {
        let byte = perm[position] * gather.features + feature;
        value = f32((data[byte / 4u] >> ((byte % 4u) * 8u)) & 0xffu) / 255.0;
    }
    batch_out[i] = to_batch_out_t(value);
}

// state[0]: completed optimizer steps; state[1]: batch index within the epoch.
@group(0) @binding(5) var<storage, read_write> step_state: array<u32>;

@compute @workgroup_size(1)
fn advance_step() {
    step_state[0] = step_state[0] + 1u;
    step_state[1] = step_state[1] + 1u;
}
