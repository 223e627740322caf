//! CPU twins of `shaders/classify.wgsl`: the batch's labels and the softmax cross-entropy
//! ([`ClassifyOp`]). The partial sums cover the same 256-row groups as on the GPU, each summed here in
//! row order.

use super::CpuExecutor;
use super::kernels::PARTIAL;
use super::real::Real;
use crate::ops::classify::{NO_LABEL, softmax_partials};
use crate::ops::{ClassifyOp, state};
use rayon::prelude::*;

/// out[r] = labels[perm[batch_index·rows + r]] where that position holds a sample, [`NO_LABEL`] beyond.
pub fn gather_labels(labels: &[u32], perm: &[u32], batch_index: usize, out: &mut [u32]) {
    let first = batch_index * out.len();
    for (r, label) in out.iter_mut().enumerate() {
        *label = match perm.get(first + r) {
            Some(&sample) => labels[sample as usize],
            None => NO_LABEL,
        };
    }
}

/// The softmax cross-entropy of the first `valid` rows of `logits` [rows × classes] against `labels`:
/// grad = (softmax − onehot)/valid (0 on the other rows), and per group of 256 rows the summed loss and
/// the count of rows whose first maximum is the label, in the [`softmax_partials`] sections.
pub fn softmax_cross_entropy<T: Real>(
    logits: &[T],
    labels: &[u32],
    grad: &mut [T],
    partials: &mut [T],
    classes: usize,
    valid: usize,
) {
    let rows = grad.len() / classes;
    let scale = T::one() / T::from_f64(valid.max(1) as f64);
    // (loss, correct) of each row, 0 for padded ones.
    let mut per_row = vec![(T::zero(), T::zero()); rows];
    grad.par_chunks_mut(classes)
        .zip(per_row.par_iter_mut())
        .enumerate()
        .for_each(|(r, (g, out))| {
            let label = labels[r];
            if r >= valid || label == NO_LABEL {
                g.iter_mut().for_each(|v| *v = T::zero());
                return;
            }
            let z = &logits[r * classes..(r + 1) * classes];
            let (mut best, mut top) = (0, z[0]);
            for (j, &v) in z.iter().enumerate() {
                if v > top {
                    (best, top) = (j, v);
                }
            }
            let mut sum = T::zero();
            for &v in z {
                sum += (v - top).exp();
            }
            let label = label as usize;
            for (j, gj) in g.iter_mut().enumerate() {
                let p = (z[j] - top).exp() / sum;
                let onehot = if j == label { T::one() } else { T::zero() };
                *gj = (p - onehot) * scale;
            }
            let loss = top + sum.ln() - z[label.min(classes - 1)];
            let correct = if best == label { T::one() } else { T::zero() };
            *out = (loss, correct);
        });
    let groups = ClassifyOp::groups(rows);
    for g in 0..groups {
        let (mut loss, mut correct) = (T::zero(), T::zero());
        for &(l, c) in &per_row[(g * PARTIAL).min(rows)..((g + 1) * PARTIAL).min(rows)] {
            loss += l;
            correct += c;
        }
        partials[softmax_partials::LOSS * groups + g] = loss;
        partials[softmax_partials::CORRECT * groups + g] = correct;
    }
}

impl<T: Real> CpuExecutor<T> {
    /// Executes one classifier op.
    pub(super) fn execute_classify(&mut self, op: &ClassifyOp) {
        match *op {
            ClassifyOp::GatherLabels {
                labels,
                perm,
                state: st,
                out,
                rows,
                samples,
            } => {
                let batch_index = self.words(st)[state::BATCH] as usize;
                let perm_len = samples.min(self.words(perm).len());
                let mut taken = std::mem::take(self.words_mut(out));
                gather_labels(
                    self.words(labels),
                    &self.words(perm)[..perm_len],
                    batch_index,
                    &mut taken[..rows],
                );
                *self.words_mut(out) = taken;
            }
            ClassifyOp::SoftmaxCrossEntropy {
                logits,
                labels,
                grad,
                partials,
                state: st,
                rows,
                classes,
            } => {
                let valid = self.valid(st);
                let n = rows * classes;
                self.with_outs([grad, partials], |s, [g, p]| {
                    softmax_cross_entropy(
                        &s.floats(logits)[..n],
                        &s.words(labels)[..rows],
                        &mut g[..n],
                        p,
                        classes,
                        valid,
                    )
                });
            }
        }
    }
}
