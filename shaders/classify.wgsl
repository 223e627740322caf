// A classifier's ops (src/ops/classify.rs states the math; CPU twins in src/backend/cpu/classify.rs): the
// batch's labels gathered on the device, and the softmax cross-entropy of the logits [rows × classes]
// against them with its gradient.
//
// workgroup_sum.wgsl is prepended. Both entry points share the uniform and the state; each binds its own
// buffers under distinct binding numbers. Only the first state[2] rows (the valid rows the batch gather
// counted) carry samples; padded rows have the label NO_LABEL.

const NO_LABEL: u32 = 0xffffffffu;

struct ClassifyParams {
    rows: u32,
    classes: u32,
    samples: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> cp: ClassifyParams;
@group(0) @binding(1) var<storage, read> classify_state: array<u32>;

// ---- gather_labels: out[r] = labels[perm[state[1]·rows + r]], NO_LABEL past the data set's end -----------
@group(0) @binding(2) var<storage, read> gl_labels: array<u32>;
@group(0) @binding(3) var<storage, read> gl_perm: array<u32>;
@group(0) @binding(4) var<storage, read_write> gl_out: array<u32>;

@compute @workgroup_size(256)
fn gather_labels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let r = gid.y * groups.x * 256u + gid.x;
    if (r >= cp.rows) {
        return;
    }
    let position = classify_state[1] * cp.rows + r;
    var label = NO_LABEL;
    if (position < cp.samples) {
        label = gl_labels[gl_perm[position]];
    }
    gl_out[r] = label;
}

// ---- softmax_cross_entropy: one row per invocation ----------------------------------------------------------
// grad = (softmax(z) − onehot(y)) / valid on valid rows, 0 on padded ones; per workgroup g of 256 rows,
// partials[g] = Σ (logsumexp(z) − z_y) and partials[groups + g] = Σ [first argmax of z = y].
@group(0) @binding(5) var<storage, read> ce_logits: array<f32>;
@group(0) @binding(6) var<storage, read> ce_labels: array<u32>;
@group(0) @binding(7) var<storage, read_write> ce_grad: array<f32>;
@group(0) @binding(8) var<storage, read_write> ce_partials: array<f32>;

@compute @workgroup_size(256)
fn softmax_cross_entropy(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let r = gid.y * groups.x * 256u + gid.x;
    let valid = classify_state[2];
    let scale = 1.0 / f32(max(valid, 1u));
    var loss = 0.0;
    var correct = 0.0;
    if (r < cp.rows) {
        let base = r * cp.classes;
        let label = ce_labels[r];
        if (r < valid && label != NO_LABEL) {
            var best = 0u;
            var top = ce_logits[base];
            for (var j = 1u; j < cp.classes; j = j + 1u) {
                let v = ce_logits[base + j];
                if (v > top) {
                    best = j;
                    top = v;
                }
            }
            var sum = 0.0;
            for (var j = 0u; j < cp.classes; j = j + 1u) {
                sum = sum + exp(ce_logits[base + j] - top);
            }
            for (var j = 0u; j < cp.classes; j = j + 1u) {
                let p = exp(ce_logits[base + j] - top) / sum;
                ce_grad[base + j] = (p - select(0.0, 1.0, j == label)) * scale;
            }
            loss = top + log(sum) - ce_logits[base + min(label, cp.classes - 1u)];
            correct = select(0.0, 1.0, best == label);
        } else {
            for (var j = 0u; j < cp.classes; j = j + 1u) {
                ce_grad[base + j] = 0.0;
            }
        }
    }
    let partial_groups = (cp.rows + 255u) / 256u;
    let g = wid.y * groups.x + wid.x;
    let loss_sum = workgroup_sum(lid, loss);
    if (lid == 0u && g < partial_groups) {
        ce_partials[g] = loss_sum;
    }
    // workgroup_sum's contract: a barrier before calling it again.
    workgroupBarrier();
    let correct_sum = workgroup_sum(lid, correct);
    if (lid == 0u && g < partial_groups) {
        ce_partials[partial_groups + g] = correct_sum;
    }
}
