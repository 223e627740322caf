//! The contractive penalty (Rifai et al.): weight · mean over the batch of ‖J_f(x)‖²_F, J_f = ∂h/∂x the
//! Jacobian of the code h = act(x·Wᵀ + b) with respect to the code layer's input.
//!
//! Closed form for a dense layer: J = diag(s)·W with s = act'(h), so ‖J‖²_F = Σⱼ sⱼ²·‖Wⱼ‖²
//! (for the sigmoid, Σⱼ (hⱼ(1 − hⱼ))² Σᵢ Wⱼᵢ²). [`TermOp::Contractive`] computes ‖Wⱼ‖², cⱼ = Σ over the batch
//! of sⱼ², and the batch's summed ‖J‖². Its gradient has two paths:
//! - through the code: ∂/∂h[i, j] = weight/valid · ‖Wⱼ‖² · 2sⱼ·s'(hⱼ), added into the code's gradient before
//!   the layer's backward, which carries it on to W, b and x ([`TermOp::ContractiveGradCode`]);
//! - through ‖Wⱼ‖² directly: ∂/∂W[j, k] = 2·weight/valid · cⱼ · W[j, k], added into dW after the layer's
//!   backward wrote it ([`TermOp::ContractiveGradWeight`]).
//!
//! A second meter reports the unweighted mean ‖J‖²_F, so a run with weight 0 shows what the penalty
//! would see.

use super::{
    CodeTap, CompiledTerm, GradAt, MeterRef, MeterRole, Per, TermContext, check_weight,
    partial_count,
};
use crate::ops::{Act, BufId, Op, Scalar, TermOp};
use crate::plan::{Pass, PlanError};

pub struct Contractive {
    code: CodeTap,
    act: Act,
    weight: Scalar,
    w: BufId,
    dw: BufId,
    wsq: BufId,
    c: BufId,
    partials: BufId,
    batch: usize,
    meter: MeterRef,
    jacobian: MeterRef,
}

pub fn compile(cx: &mut TermContext<'_>, weight: f32) -> Result<Contractive, PlanError> {
    const TERM: &str = "contractive";
    let code = cx.deterministic_code(TERM)?;
    let (Some((w, dw)), Some(act)) = (code.weight, code.act) else {
        return Err(cx.code_error(
            TERM,
            &code,
            "needs a dense (Linear) code layer, whose Jacobian has a closed form",
        ));
    };
    check_weight(TERM, weight)?;
    let wsq = cx.b.scratch("contractive.weight_norms", code.width);
    let c = cx.b.scratch("contractive.slope_squares", code.width);
    let partials =
        cx.b.scratch("contractive.partials", partial_count(code.width));
    let meter = cx
        .meters
        .add(cx.b, "contractive", MeterRole::Term, Per::Sample);
    let jacobian = cx
        .meters
        .add(cx.b, "jacobian_sq", MeterRole::Metric, Per::Sample);
    let weight = cx.scalar("contractive.weight", weight);
    Ok(Contractive {
        code,
        act,
        weight,
        w,
        dw,
        wsq,
        c,
        partials,
        batch: cx.batch,
        meter,
        jacobian,
    })
}

impl CompiledTerm for Contractive {
    fn forward(&self, pass: &Pass) -> Vec<Op> {
        let count = partial_count(self.code.width);
        vec![
            Op::Term(TermOp::Contractive {
                h: self.code.value,
                w: self.w,
                wsq: self.wsq,
                c: self.c,
                partials: self.partials,
                state: pass.state,
                rows: self.batch,
                units: self.code.width,
                inputs: self.code.inputs,
                act: self.act,
            }),
            self.meter
                .reduce_weighted(pass, self.partials, count, self.weight),
            self.jacobian.reduce(pass, self.partials, 0, count),
        ]
    }

    fn backward(&self, pass: &Pass) -> Vec<(GradAt, Vec<Op>)> {
        let (rows, units) = (self.batch, self.code.width);
        vec![
            (
                GradAt::BeforeLayer(self.code.layer),
                vec![Op::Term(TermOp::ContractiveGradCode {
                    h: self.code.value,
                    wsq: self.wsq,
                    grad: self.code.grad,
                    state: pass.state,
                    rows,
                    units,
                    act: self.act,
                    weight: self.weight,
                })],
            ),
            (
                GradAt::AfterLayer(self.code.layer),
                vec![Op::Term(TermOp::ContractiveGradWeight {
                    w: self.w,
                    c: self.c,
                    dw: self.dw,
                    state: pass.state,
                    rows,
                    units,
                    inputs: self.code.inputs,
                    weight: self.weight,
                })],
            ),
        ]
    }
}
