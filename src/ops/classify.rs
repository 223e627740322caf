//! Ops of a classifier trained on the engine: the batch's labels gathered on the device, and the softmax
//! cross-entropy of the logits against them with its gradient.
//!
//! A classifier (`gpu-ae classify`) is an encoder with a linear head of `classes` outputs; its last layer's
//! output is the logits z [rows × classes]. For a valid row with label y:
//!
//! ```text
//! p = softmax(z)                  computed as exp(z − max z) / Σ exp(z − max z), so no term overflows
//! loss = −ln p_y = logsumexp(z) − z_y
//! ∂(mean loss)/∂z = (p − onehot(y)) / valid        the gradient of the batch's mean over its valid rows
//! correct = [argmax z = y]        the first maximum wins a tie, as `torch.argmax` does
//! ```
//!
//! Padded rows of a last partial batch (label [`NO_LABEL`]) get a zero gradient and count nothing.
//!
//! Kernels: `shaders/classify.wgsl` (after `shaders/workgroup_sum.wgsl`); CPU twins:
//! `backend::cpu::classify`.

use super::BufId;

/// The label of a padded row.
pub const NO_LABEL: u32 = u32::MAX;

/// Sections of [`ClassifyOp::SoftmaxCrossEntropy`]'s partial sums, each `⌈rows/256⌉` long, in this order.
pub mod softmax_partials {
    /// Σ −ln p_y over a group of 256 rows: the loss.
    pub const LOSS: usize = 0;
    /// Σ [argmax z = y]: the rows classified correctly.
    pub const CORRECT: usize = 1;
    pub const SECTIONS: usize = 2;
}

#[derive(Clone, Debug, PartialEq)]
pub enum ClassifyOp {
    /// out[r] = labels[perm[state[BATCH]·rows + r]] for the rows that hold samples, [`NO_LABEL`] for the
    /// padded rows past the end of the data set (`labels` one u32 per sample, `out` u32 [rows]): the labels
    /// of the batch [`super::Op::GatherBatch`] gathers from the same `perm` and `state`.
    GatherLabels {
        labels: BufId,
        perm: BufId,
        state: BufId,
        out: BufId,
        rows: usize,
        samples: usize,
    },
    /// The softmax cross-entropy of `logits` [rows × classes] against `labels` (u32 [rows]) over the valid
    /// rows (state[VALID_ROWS] of them): grad = (softmax − onehot)/valid on valid rows and 0 on padded ones,
    /// and per group g of 256 rows, partials[LOSS·groups + g] = Σ −ln p_y and partials[CORRECT·groups + g] =
    /// Σ [argmax = y] ([`softmax_partials`]).
    SoftmaxCrossEntropy {
        logits: BufId,
        labels: BufId,
        grad: BufId,
        partials: BufId,
        state: BufId,
        rows: usize,
        classes: usize,
    },
}

impl ClassifyOp {
    pub fn name(&self) -> &'static str {
        match self {
            ClassifyOp::GatherLabels { .. } => "gather_labels",
            ClassifyOp::SoftmaxCrossEntropy { .. } => "softmax_cross_entropy",
        }
    }

    /// The f32 buffers the op writes (the gathered labels are u32).
    pub fn float_outputs(&self) -> Vec<BufId> {
        match *self {
            ClassifyOp::GatherLabels { .. } => Vec::new(),
            ClassifyOp::SoftmaxCrossEntropy { grad, partials, .. } => vec![grad, partials],
        }
    }

    /// Arithmetic steps, counting an exp or a log as one.
    pub fn flops(&self) -> usize {
        match *self {
            ClassifyOp::GatherLabels { .. } => 0,
            ClassifyOp::SoftmaxCrossEntropy { rows, classes, .. } => 6 * rows * classes,
        }
    }

    /// Minimal traffic in 4-byte words (see [`super::Op::bytes`]).
    pub fn words(&self) -> usize {
        match *self {
            // perm and label in, label out.
            ClassifyOp::GatherLabels { rows, .. } => 3 * rows,
            // logits and labels in, the gradient and the partial sums out.
            ClassifyOp::SoftmaxCrossEntropy { rows, classes, .. } => {
                2 * rows * classes + rows + 2 * rows.div_ceil(256)
            }
        }
    }

    pub fn shapes(&self) -> String {
        match *self {
            ClassifyOp::GatherLabels { rows, .. } => format!("{rows}"),
            ClassifyOp::SoftmaxCrossEntropy { rows, classes, .. } => format!("{rows}×{classes}"),
        }
    }

    /// Partial sums per section of a softmax cross-entropy over `rows` rows.
    pub fn groups(rows: usize) -> usize {
        rows.div_ceil(256).max(1)
    }
}
