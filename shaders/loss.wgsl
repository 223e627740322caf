// Reconstruction loss and its gradient, for the valid rows of a batch.
//
// kind 0, BCE with logits (output activation sigmoid, fused):
//     l = max(z, 0) − z·x + log(1 + e^−|z|)        ∂l/∂z = σ(z) − x
//     (never forms log σ(z) directly, so large |z| cannot overflow)
// kind 1, MSE on y = act(z):
//     l = (y − x)²                                  ∂l/∂z = 2(y − x)·act'(y)
//
// grad = ∂(mean over valid elements)/∂z; rows past valid = min(rows, samples − state[1]·rows) get zero
// gradient and contribute no loss. recon = y. partials[g] = Σ l over the 256 elements of workgroup g.

struct LossParams {
    rows: u32,
    cols: u32,
    samples: u32,
    kind: u32,
    act: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> lp: LossParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> clean: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> recon: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;
@group(0) @binding(6) var<storage, read> loss_state: array<u32>;

var<workgroup> scratch: array<f32, 256>;

@compute @workgroup_size(256)
fn loss(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.y * groups.x * 256u + gid.x;
    let first = loss_state[1] * lp.rows;
    let valid = min(lp.rows, lp.samples - min(lp.samples, first));
    let limit = valid * lp.cols;
    let scale = 1.0 / f32(max(valid, 1u) * lp.cols);
    var l = 0.0;
    if (i < lp.rows * lp.cols) {
        let z = logits[i];
        let x = clean[i];
        var y: f32;
        var dz: f32;
        if (lp.kind == 0u) {
            y = activate(z, 3u);
            l = max(z, 0.0) - z * x + log(1.0 + exp(-abs(z)));
            dz = y - x;
        } else {
            y = activate(z, lp.act);
            let d = y - x;
            l = d * d;
            dz = 2.0 * d * activation_slope(y, lp.act);
        }
        recon[i] = y;
        if (i < limit) {
            grad[i] = dz * scale;
        } else {
            grad[i] = 0.0;
            l = 0.0;
        }
    }
    scratch[lid] = l;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            scratch[lid] = scratch[lid] + scratch[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        partials[wid.y * groups.x + wid.x] = scratch[0];
    }
}
