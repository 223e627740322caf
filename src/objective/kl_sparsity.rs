//! KL sparsity on a sigmoid code: weight · Σⱼ KL(ρ ‖ ρ̂ⱼ), ρ̂ⱼ the mean activation of code unit j over the
//! batch's valid rows (Ng's sparse autoencoder).
//!
//! Value and ρ̂: [`TermOp::KlSparsity`], one thread per unit; the batch's value is counted once per valid
//! row, so the epoch's sum over samples is the batch-size-weighted mean of the per-batch penalty.
//! Gradient: ∂/∂h[i, j] = weight/valid · (−ρ/ρ̂ⱼ + (1 − ρ)/(1 − ρ̂ⱼ)), added into the code's gradient
//! ([`TermOp::KlSparsityGrad`]).

use super::{
    CodeTap, CompiledTerm, GradAt, MeterRef, MeterRole, Per, TermContext, check_weight,
    partial_count,
};
use crate::ops::{Act, BufId, Op, Scalar, TermOp};
use crate::plan::{Pass, PlanError};

pub struct KlSparsity {
    code: CodeTap,
    rho: f32,
    weight: Scalar,
    rho_hat: BufId,
    partials: BufId,
    batch: usize,
    meter: MeterRef,
}

pub fn compile(cx: &mut TermContext<'_>, rho: f32, weight: f32) -> Result<KlSparsity, PlanError> {
    const TERM: &str = "KL sparsity";
    let code = cx.deterministic_code(TERM)?;
    if code.act != Some(Act::Sigmoid) {
        return Err(cx.code_error(
            TERM,
            &code,
            "needs a sigmoid code (mean activations ρ̂ must lie in (0, 1))",
        ));
    }
    check_weight(TERM, weight)?;
    if !(rho > 0.0 && rho < 1.0) {
        return Err(PlanError::Term {
            term: TERM,
            problem: format!("needs a target ρ strictly between 0 and 1, got {rho}"),
        });
    }
    let rho_hat = cx.b.scratch("kl_sparsity.rho_hat", code.width);
    let partials =
        cx.b.scratch("kl_sparsity.partials", partial_count(code.width));
    let meter = cx
        .meters
        .add(cx.b, "kl_sparsity", MeterRole::Term, Per::Sample);
    let weight = cx.scalar("kl_sparsity.weight", weight);
    Ok(KlSparsity {
        code,
        rho,
        weight,
        rho_hat,
        partials,
        batch: cx.batch,
        meter,
    })
}

impl CompiledTerm for KlSparsity {
    fn forward(&self, pass: &Pass) -> Vec<Op> {
        vec![
            Op::Term(TermOp::KlSparsity {
                h: self.code.value,
                rho_hat: self.rho_hat,
                partials: self.partials,
                state: pass.state,
                rows: self.batch,
                cols: self.code.width,
                rho: self.rho,
            }),
            self.meter.reduce_weighted(
                pass,
                self.partials,
                partial_count(self.code.width),
                self.weight,
            ),
        ]
    }

    fn backward(&self, pass: &Pass) -> Vec<(GradAt, Vec<Op>)> {
        vec![(
            GradAt::BeforeLayer(self.code.layer),
            vec![Op::Term(TermOp::KlSparsityGrad {
                rho_hat: self.rho_hat,
                grad: self.code.grad,
                state: pass.state,
                rows: self.batch,
                cols: self.code.width,
                rho: self.rho,
                weight: self.weight,
            })],
        )]
    }
}
