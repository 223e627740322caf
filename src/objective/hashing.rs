//! The hashing code's three terms (the sparse binary hashing autoencoder): on a code b = tanh(·)
//! [batch × B] whose signs are the bits a search compares by Hamming distance, with n the batch's valid rows
//! and mⱼ = (1/n) Σᵣ b_rj the mean of bit j over them:
//! - **binarisation**, weight · mean over the batch of Σⱼ ||b_rj| − 1|: codes near ±1, so that sign(b)
//!   loses little. Value: Σ ||b| − 1| over the valid rows ([`TermOp::TapSum`] with
//!   [`TapFn::UnitDistance`]), a mean per sample. Gradient: ∂/∂b_rj = weight/n · sign(|b_rj| − 1)·sign(b_rj)
//!   ([`TermOp::BinarizeGrad`]).
//! - **bit balance**, weight · Σⱼ mⱼ²: each bit on for about half the images. Value and m:
//!   [`TermOp::BitBalance`]. Gradient: ∂/∂b_rj = weight · 2mⱼ/n, since ∂mⱼ/∂b_rj = 1/n
//!   ([`TermOp::BitBalanceGrad`]).
//! - **decorrelation**, weight · Σⱼ≠ₖ Cⱼₖ², C the population covariance of the code over the valid rows,
//!   Cⱼₖ = (1/n) Σᵣ (b_rj − mⱼ)(b_rk − mₖ): bits that say different things. With Bᶜ the centred code
//!   ([`TermOp::CenterColumns`], padded rows 0), S = BᶜᵀBᶜ = n·C is one [`Op::Matmul`]; the value is
//!   [`TermOp::Decorrelate`]. Gradient: ∂Cⱼₖ/∂b_rl = (1/n)(δⱼₗ·Bᶜ_rk + δₖₗ·Bᶜ_rj) (the paths through the
//!   means cancel, every column of Bᶜ summing to 0), so
//!   ∂/∂b_rl Σⱼ≠ₖ Cⱼₖ² = (2/n)(Σₖ≠ₗ Cₗₖ·Bᶜ_rk + Σⱼ≠ₗ Cⱼₗ·Bᶜ_rj) = (4/n) Σₖ≠ₗ Cₗₖ·(b_rk − mₖ) by C's symmetry
//!   ([`TermOp::DecorrelateGrad`], from S: 4·weight/n² · Σₖ≠ₗ Sₗₖ·Bᶜ_rk).
//!
//! The two batch statistics are counted once per valid row, as KL sparsity's is, so the epoch's sum over
//! samples is the batch-size-weighted mean of the per-batch value. Every gradient is added into the
//! code's gradient before the code layer's backward.
//!
//! Each term is reported unweighted (metrics `binarize`, `bit_balance`, `decorrelate`: what the code is,
//! whatever the weight, 0 included) and enters the total through a hidden weighted meter, as the VAE's KL
//! does; its weight is a scalar of the plan (`binarize.weight`, …).

use super::{
    CodeTap, CompiledTerm, GradAt, MeterRef, MeterRole, Per, TermContext, check_weight,
    partial_count,
};
use crate::ops::terms::TapFn;
use crate::ops::{Act, BufId, Op, Scalar, TermOp};
use crate::plan::{Pass, PlanError};

/// The code the hashing terms act on: deterministic, with an activation symmetric about 0 so that its
/// sign is a bit.
fn hash_code(cx: &TermContext<'_>, term: &'static str) -> Result<CodeTap, PlanError> {
    let code = cx.deterministic_code(term)?;
    if !matches!(code.act, Some(Act::Tanh | Act::Identity)) {
        return Err(cx.code_error(
            term,
            &code,
            "needs a code symmetric about 0 whose signs are the bits (tanh, or identity)",
        ));
    }
    Ok(code)
}

/// A term's weight (a scalar of the plan), its unweighted metric and its weighted meter, registered under
/// `name`.
struct Metered {
    weight: Scalar,
    value: MeterRef,
    weighted: MeterRef,
}

impl Metered {
    fn new(
        cx: &mut TermContext<'_>,
        term: &'static str,
        name: &str,
        weight: f32,
    ) -> Result<Metered, PlanError> {
        check_weight(term, weight)?;
        let value = cx.meters.add(cx.b, name, MeterRole::Metric, Per::Sample);
        let weighted = cx.meters.add(
            cx.b,
            &format!("{name}_weighted"),
            MeterRole::WeightedTerm,
            Per::Sample,
        );
        let weight = cx.scalar(&format!("{name}.weight"), weight);
        Ok(Metered {
            weight,
            value,
            weighted,
        })
    }

    /// The step's partial sums into both meters.
    fn reduce(&self, pass: &Pass, partials: BufId, count: usize) -> [Op; 2] {
        [
            self.value.reduce(pass, partials, 0, count),
            self.weighted
                .reduce_weighted(pass, partials, count, self.weight),
        ]
    }
}

pub struct Binarize {
    code: CodeTap,
    partials: BufId,
    batch: usize,
    meters: Metered,
}

pub fn binarize(cx: &mut TermContext<'_>, weight: f32) -> Result<Binarize, PlanError> {
    const TERM: &str = "binarisation";
    let code = hash_code(cx, TERM)?;
    let partials =
        cx.b.scratch("binarize.partials", partial_count(cx.batch * code.width));
    let meters = Metered::new(cx, TERM, "binarize", weight)?;
    Ok(Binarize {
        code,
        partials,
        batch: cx.batch,
        meters,
    })
}

impl CompiledTerm for Binarize {
    fn forward(&self, pass: &Pass) -> Vec<Op> {
        let mut ops = vec![Op::Term(TermOp::TapSum {
            x: self.code.value,
            state: pass.state,
            partials: self.partials,
            rows: self.batch,
            cols: self.code.width,
            f: TapFn::UnitDistance,
        })];
        ops.extend(self.meters.reduce(
            pass,
            self.partials,
            partial_count(self.batch * self.code.width),
        ));
        ops
    }

    fn backward(&self, pass: &Pass) -> Vec<(GradAt, Vec<Op>)> {
        vec![(
            GradAt::BeforeLayer(self.code.layer),
            vec![Op::Term(TermOp::BinarizeGrad {
                x: self.code.value,
                grad: self.code.grad,
                state: pass.state,
                rows: self.batch,
                cols: self.code.width,
                weight: self.meters.weight,
            })],
        )]
    }
}

pub struct BitBalance {
    code: CodeTap,
    means: BufId,
    partials: BufId,
    batch: usize,
    meters: Metered,
}

pub fn bit_balance(cx: &mut TermContext<'_>, weight: f32) -> Result<BitBalance, PlanError> {
    const TERM: &str = "bit balance";
    let code = hash_code(cx, TERM)?;
    let means = cx.b.scratch("bit_balance.means", code.width);
    let partials =
        cx.b.scratch("bit_balance.partials", partial_count(code.width));
    let meters = Metered::new(cx, TERM, "bit_balance", weight)?;
    Ok(BitBalance {
        code,
        means,
        partials,
        batch: cx.batch,
        meters,
    })
}

impl CompiledTerm for BitBalance {
    fn forward(&self, pass: &Pass) -> Vec<Op> {
        let mut ops = vec![Op::Term(TermOp::BitBalance {
            b: self.code.value,
            means: self.means,
            partials: self.partials,
            state: pass.state,
            rows: self.batch,
            cols: self.code.width,
        })];
        ops.extend(
            self.meters
                .reduce(pass, self.partials, partial_count(self.code.width)),
        );
        ops
    }

    fn backward(&self, pass: &Pass) -> Vec<(GradAt, Vec<Op>)> {
        vec![(
            GradAt::BeforeLayer(self.code.layer),
            vec![Op::Term(TermOp::BitBalanceGrad {
                means: self.means,
                grad: self.code.grad,
                state: pass.state,
                rows: self.batch,
                cols: self.code.width,
                weight: self.meters.weight,
            })],
        )]
    }
}

pub struct Decorrelate {
    code: CodeTap,
    /// [batch × B] the code less its column means over the valid rows (padded rows 0).
    centered: BufId,
    /// [B × B] S = centeredᵀ·centered = valid · Cov.
    cov: BufId,
    partials: BufId,
    batch: usize,
    meters: Metered,
}

pub fn decorrelate(cx: &mut TermContext<'_>, weight: f32) -> Result<Decorrelate, PlanError> {
    const TERM: &str = "decorrelation";
    let code = hash_code(cx, TERM)?;
    let width = code.width;
    let centered = cx.b.scratch("decorrelate.centered", cx.batch * width);
    let cov = cx.b.scratch("decorrelate.cov", width * width);
    let partials =
        cx.b.scratch("decorrelate.partials", partial_count(width * width));
    let meters = Metered::new(cx, TERM, "decorrelate", weight)?;
    Ok(Decorrelate {
        code,
        centered,
        cov,
        partials,
        batch: cx.batch,
        meters,
    })
}

impl CompiledTerm for Decorrelate {
    fn forward(&self, pass: &Pass) -> Vec<Op> {
        let width = self.code.width;
        let mut ops = vec![
            Op::Term(TermOp::CenterColumns {
                x: self.code.value,
                centered: self.centered,
                state: pass.state,
                rows: self.batch,
                cols: width,
            }),
            // S [B × B] = centeredᵀ [B × batch] · centered [batch × B].
            Op::Matmul {
                a: self.centered,
                b: self.centered,
                c: self.cov,
                m: width,
                n: width,
                k: self.batch,
                trans_a: true,
                trans_b: false,
                accumulate: false,
            },
            Op::Term(TermOp::Decorrelate {
                cov: self.cov,
                partials: self.partials,
                state: pass.state,
                cols: width,
            }),
        ];
        ops.extend(
            self.meters
                .reduce(pass, self.partials, partial_count(width * width)),
        );
        ops
    }

    fn backward(&self, pass: &Pass) -> Vec<(GradAt, Vec<Op>)> {
        vec![(
            GradAt::BeforeLayer(self.code.layer),
            vec![Op::Term(TermOp::DecorrelateGrad {
                centered: self.centered,
                cov: self.cov,
                grad: self.code.grad,
                state: pass.state,
                rows: self.batch,
                cols: self.code.width,
                weight: self.meters.weight,
            })],
        )]
    }
}
