// Dynamic loss scaling for --precision mixed, as PyTorch's GradScaler does it (src/ops/optim.rs, `amp`,
// states the scheme; the CPU twins are in src/backend/cpu/optim.rs). The state is four u32 words:
// [0] the scale S as f32 bits, [1] steps since it last changed, [2] steps skipped so far, [3] found: set
// when this step's gradients hold an infinity or a NaN.

struct AmpCheckParams {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> check: AmpCheckParams;
@group(0) @binding(1) var<storage, read> check_grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> check_amp: array<atomic<u32>>;

// found ← 1 when any gradient is not finite. Tested on the bits (an all-ones exponent), which no
// compiler may assume away as it may `x != x`.
@compute @workgroup_size(256)
fn amp_check(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= check.len) {
        return;
    }
    if ((bitcast<u32>(check_grad[i]) & 0x7f800000u) == 0x7f800000u) {
        atomicOr(&check_amp[3], 1u);
    }
}

// The step's end, one thread: S/2 and a skipped step after an overflow; 2S after `len` (the growth
// interval, 2000) clean steps in a row; found cleared.
@group(0) @binding(4) var<uniform> growth: AmpCheckParams;
@group(0) @binding(3) var<storage, read_write> update_amp: array<u32>;

@compute @workgroup_size(1)
fn amp_update() {
    let scale = bitcast<f32>(update_amp[0]);
    if (update_amp[3] != 0u) {
        update_amp[0] = bitcast<u32>(scale * 0.5);
        update_amp[1] = 0u;
        update_amp[2] = update_amp[2] + 1u;
    } else if (update_amp[1] + 1u >= growth.len) {
        update_amp[0] = bitcast<u32>(scale * 2.0);
        update_amp[1] = 0u;
    } else {
        update_amp[1] = update_amp[1] + 1u;
    }
    update_amp[3] = 0u;
}
