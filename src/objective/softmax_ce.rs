//! The softmax cross-entropy of a classifier's logits against the batch's labels: the mean over the batch
//! of −ln p_y, the objective of `gpu-ae classify` (PyTorch's `nn.CrossEntropyLoss`), with the accuracy
//! reported beside it.
//!
//! The classifier's last layer is linear with `classes` outputs (its activation is left to this term, as a
//! reconstruction's is left to the loss): [`ClassifyOp::SoftmaxCrossEntropy`] writes ∂(mean loss)/∂logits
//! into the last layer's output gradient in the forward pass, as [`crate::ops::Op::Loss`] does, and the
//! layers' backward passes carry it down. The labels come from the plan's label buffers, gathered with the
//! batch ([`ClassifyOp::GatherLabels`], scheduled by the compiler).

use super::{CompiledTerm, MeterRef, MeterRole, Per, TermContext};
use crate::ops::classify::softmax_partials;
use crate::ops::{BufId, ClassifyOp, Op};
use crate::plan::{Pass, PlanError};

pub struct SoftmaxCe {
    logits: BufId,
    labels: BufId,
    grad: BufId,
    partials: BufId,
    batch: usize,
    classes: usize,
    loss: MeterRef,
    accuracy: MeterRef,
}

pub fn compile(cx: &mut TermContext<'_>, classes: usize) -> Result<SoftmaxCe, PlanError> {
    let taps = *cx.taps;
    let problem = |problem: String| PlanError::Term {
        term: "softmax cross-entropy",
        problem,
    };
    let labels = taps
        .labels
        .ok_or_else(|| problem("needs the data set's labels on the device".into()))?;
    let last = cx.layers.last().map(|l| l.describe()).unwrap_or_default();
    if classes < 2 || cx.logits_width != classes {
        return Err(problem(format!(
            "needs a last layer of {classes} outputs (at least 2), but model {} ends in {last} with {}",
            cx.model_name, cx.logits_width
        )));
    }
    if cx.layers.last().and_then(|l| l.act()) != Some(crate::ops::Act::Identity) {
        return Err(problem(format!(
            "reads logits: model {} must end in a linear layer without activation, not {last}",
            cx.model_name
        )));
    }
    let groups = ClassifyOp::groups(cx.batch);
    Ok(SoftmaxCe {
        logits: taps.logits,
        labels,
        grad: taps.logits_grad,
        partials: cx
            .b
            .scratch("softmax_ce.partials", softmax_partials::SECTIONS * groups),
        batch: cx.batch,
        classes,
        loss: cx.meters.add(cx.b, "ce", MeterRole::Term, Per::Sample),
        accuracy: cx
            .meters
            .add(cx.b, "accuracy", MeterRole::Metric, Per::Sample),
    })
}

impl CompiledTerm for SoftmaxCe {
    fn forward(&self, pass: &Pass) -> Vec<Op> {
        let groups = ClassifyOp::groups(self.batch);
        vec![
            Op::Classify(ClassifyOp::SoftmaxCrossEntropy {
                logits: self.logits,
                labels: self.labels,
                grad: self.grad,
                partials: self.partials,
                state: pass.state,
                rows: self.batch,
                classes: self.classes,
            }),
            self.loss
                .reduce(pass, self.partials, softmax_partials::LOSS * groups, groups),
            self.accuracy.reduce(
                pass,
                self.partials,
                softmax_partials::CORRECT * groups,
                groups,
            ),
        ]
    }
}
