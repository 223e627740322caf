//! The squared error per image, Σ over an image's pixels of (reconstruction − input)², a mean over images:
//! a statistic reported beside the loss (not trained on), the figure the deep-autoencoder and PCA
//! literature quote (Hinton & Salakhutdinov 2006 report it for MNIST).
//!
//! It reuses [`Op::Loss`] with squared error on the model's output, writing its gradient and
//! reconstruction into buffers of its own so the trained loss's are untouched; its partial sums are the
//! squared errors of the valid elements.

use super::{CompiledTerm, MeterRef, MeterRole, Per, TermContext, partial_count};
use crate::ops::{Act, BufId, LossKind, Op};
use crate::plan::Pass;

pub struct SquaredError {
    logits: BufId,
    target: BufId,
    output_act: Act,
    grad: BufId,
    recon: BufId,
    partials: BufId,
    batch: usize,
    features: usize,
    meter: MeterRef,
}

pub fn compile(cx: &mut TermContext<'_>) -> SquaredError {
    let taps = *cx.taps;
    let n = cx.batch * cx.features;
    SquaredError {
        logits: taps.logits,
        target: taps.input,
        output_act: taps.output_act,
        grad: cx.b.scratch("sq_err.grad", n),
        recon: cx.b.scratch("sq_err.recon", n),
        partials: cx.b.scratch("sq_err.partials", partial_count(n)),
        batch: cx.batch,
        features: cx.features,
        meter: cx
            .meters
            .add(cx.b, "sq_err", MeterRole::Metric, Per::Sample),
    }
}

impl CompiledTerm for SquaredError {
    fn forward(&self, pass: &Pass) -> Vec<Op> {
        let n = self.batch * self.features;
        vec![
            Op::Loss {
                kind: LossKind::Mse,
                output_act: self.output_act,
                logits: self.logits,
                target: self.target,
                grad: self.grad,
                recon: self.recon,
                partials: self.partials,
                state: pass.state,
                rows: self.batch,
                cols: self.features,
                samples: pass.samples,
                per_sample: false,
                amp: None,
            },
            self.meter.reduce(pass, self.partials, 0, partial_count(n)),
        ]
    }
}
