//! Dispatches of a classifier's ops ([`ClassifyOp`]): `shaders/classify.wgsl`. Both entry points take the
//! same uniform (`ClassifyParams`) at binding 0 and the program's state at binding 1, then their own
//! buffers.

use super::kernels::{Dispatch, Kernels, Shader, linear_groups};
use crate::ops::{BufId, ClassifyOp};

impl Kernels {
    pub fn classify(&mut self, bufs: &[wgpu::Buffer], op: &ClassifyOp) -> Dispatch {
        let b = |id: BufId| &bufs[id.0];
        // `ClassifyParams` of classify.wgsl: rows, classes, samples, padding.
        let params = |rows: usize, classes: usize, samples: usize| {
            [rows as u32, classes as u32, samples as u32, 0]
        };
        let (entry, words, bindings, buffers, rows): (_, _, &[u32], Vec<&wgpu::Buffer>, _) =
            match *op {
                ClassifyOp::GatherLabels {
                    labels,
                    perm,
                    state,
                    out,
                    rows,
                    samples,
                } => (
                    "gather_labels",
                    params(rows, 0, samples),
                    &[0, 1, 2, 3, 4],
                    vec![b(state), b(labels), b(perm), b(out)],
                    rows,
                ),
                ClassifyOp::SoftmaxCrossEntropy {
                    logits,
                    labels,
                    grad,
                    partials,
                    state,
                    rows,
                    classes,
                } => (
                    "softmax_cross_entropy",
                    params(rows, classes, 0),
                    &[0, 1, 5, 6, 7, 8],
                    vec![b(state), b(logits), b(labels), b(grad), b(partials)],
                    rows,
                ),
            };
        self.dispatch(
            Shader::Classify,
            entry,
            &words,
            bindings,
            &buffers,
            linear_groups(rows),
        )
    }
}
