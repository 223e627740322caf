//! The variational autoencoder's prior term: β · KL(q(z|x) ‖ N(0, I)) per image, with
//! KL = Σⱼ −½·(1 + log σ²ⱼ − μⱼ² − σ²ⱼ) over the latent units, read from the code layer's [μ | log σ²].
//!
//! Value: [`VaeOp::GaussianKl`] (partial sums over the valid rows' latent values), reduced twice: into the
//! `kl` metric unweighted (what a β-VAE reports whatever its β) and, weighted by β as the step finds it,
//! into a hidden meter that enters the total. Gradient: [`VaeOp::GaussianKlGrad`] adds β/valid · (μ, ½(σ² −
//! 1)) into the gradient of [μ | log σ²], after the sampling layer's backward wrote it.
//!
//! β lives in the plan's scalar buffer (`kl.weight`). With a warm-up, training reads its own scalar
//! (`kl.train_weight`), which [`VaeOp::RampWeight`] sets from the global step in every training step, before
//! the term's other ops read it: β·min(1, step / warm-up steps), so a resumed run finds the value it left.
//! Evaluation keeps the full β, so the test loss is the objective the warm-up leads to (the negative ELBO
//! for β = 1).

use super::{
    CodeTap, CompiledTerm, GradAt, MeterRef, MeterRole, Per, TermContext, check_weight,
    partial_count,
};
use crate::ops::{BufId, Op, Scalar, VaeOp};
use crate::plan::{Pass, PlanError};

pub struct GaussianKl {
    code: CodeTap,
    latent: usize,
    /// β, which evaluation (and training without a warm-up) reads.
    weight: Scalar,
    /// Training's ramped β, and the steps it ramps over, with a warm-up.
    warmup: Option<(Scalar, usize)>,
    target: f32,
    partials: BufId,
    batch: usize,
    kl: MeterRef,
    weighted: MeterRef,
}

pub fn compile(
    cx: &mut TermContext<'_>,
    weight: f32,
    warmup_epochs: usize,
) -> Result<GaussianKl, PlanError> {
    const TERM: &str = "Gaussian KL";
    let code = cx.code(TERM)?;
    let Some(latent) = code.gaussian else {
        return Err(cx.code_error(
            TERM,
            &code,
            "needs a variational code (a layer of μ and log σ² that the next layer samples)",
        ));
    };
    check_weight(TERM, weight)?;
    let partials =
        cx.b.scratch("kl.partials", partial_count(cx.batch * latent));
    let kl = cx.meters.add(cx.b, "kl", MeterRole::Metric, Per::Sample);
    let weighted = cx
        .meters
        .add(cx.b, "kl_weighted", MeterRole::WeightedTerm, Per::Sample);
    let beta = cx.scalar("kl.weight", weight);
    // The device counts steps in 32 bits.
    let steps = warmup_epochs
        .checked_mul(cx.steps_per_epoch)
        .filter(|&s| s <= u32::MAX as usize)
        .ok_or_else(|| PlanError::Term {
            term: TERM,
            problem: format!(
                "cannot warm up over {warmup_epochs} epochs of {} steps: that is more steps than a run \
                 counts (2³² − 1)",
                cx.steps_per_epoch
            ),
        })?;
    let warmup = (warmup_epochs > 0).then(|| (cx.scalar("kl.train_weight", 0.0), steps));
    Ok(GaussianKl {
        code,
        latent,
        weight: beta,
        warmup,
        target: weight,
        partials,
        batch: cx.batch,
        kl,
        weighted,
    })
}

impl GaussianKl {
    /// The β a pass reads: the ramped one in training with a warm-up, else the full one.
    fn weight(&self, pass: &Pass) -> Scalar {
        match self.warmup {
            Some((ramped, _)) if pass.training => ramped,
            _ => self.weight,
        }
    }
}

impl CompiledTerm for GaussianKl {
    fn forward(&self, pass: &Pass) -> Vec<Op> {
        let mut ops = Vec::new();
        if let (Some((ramped, steps)), true) = (self.warmup, pass.training) {
            ops.push(Op::Vae(VaeOp::RampWeight {
                weight: ramped,
                state: pass.state,
                target: self.target,
                steps,
            }));
        }
        let count = partial_count(self.batch * self.latent);
        ops.extend([
            Op::Vae(VaeOp::GaussianKl {
                stats: self.code.value,
                partials: self.partials,
                state: pass.state,
                rows: self.batch,
                latent: self.latent,
            }),
            self.kl.reduce(pass, self.partials, 0, count),
            self.weighted
                .reduce_weighted(pass, self.partials, count, self.weight(pass)),
        ]);
        ops
    }

    fn backward(&self, pass: &Pass) -> Vec<(GradAt, Vec<Op>)> {
        vec![(
            GradAt::BeforeLayer(self.code.layer),
            vec![Op::Vae(VaeOp::GaussianKlGrad {
                stats: self.code.value,
                dstats: self.code.grad,
                state: pass.state,
                rows: self.batch,
                latent: self.latent,
                weight: self.weight(pass),
            })],
        )]
    }
}
