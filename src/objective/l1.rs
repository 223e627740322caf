//! L1 sparsity on the code: weight · mean over the batch of Σⱼ |hⱼ|.
//!
//! Value: Σ|h| over the valid rows ([`TermOp::TapSum`] with `abs`), a mean per sample. Gradient:
//! weight/valid · sign(h) added into the code's gradient before the code layer's backward
//! ([`TermOp::L1Grad`]).

use super::{
    CodeTap, CompiledTerm, GradAt, MeterRef, MeterRole, Per, TermContext, check_weight,
    partial_count,
};
use crate::ops::terms::TapFn;
use crate::ops::{BufId, Op, Scalar, TermOp};
use crate::plan::{Pass, PlanError};

pub struct L1 {
    code: CodeTap,
    weight: Scalar,
    partials: BufId,
    batch: usize,
    meter: MeterRef,
}

pub fn compile(cx: &mut TermContext<'_>, weight: f32) -> Result<L1, PlanError> {
    let code = cx.deterministic_code("L1")?;
    check_weight("L1", weight)?;
    let partials =
        cx.b.scratch("l1.partials", partial_count(cx.batch * code.width));
    let meter = cx.meters.add(cx.b, "l1", MeterRole::Term, Per::Sample);
    let weight = cx.scalar("l1.weight", weight);
    Ok(L1 {
        code,
        weight,
        partials,
        batch: cx.batch,
        meter,
    })
}

impl CompiledTerm for L1 {
    fn forward(&self, pass: &Pass) -> Vec<Op> {
        vec![
            Op::Term(TermOp::TapSum {
                x: self.code.value,
                state: pass.state,
                partials: self.partials,
                rows: self.batch,
                cols: self.code.width,
                f: TapFn::Abs,
            }),
            self.meter.reduce_weighted(
                pass,
                self.partials,
                partial_count(self.batch * self.code.width),
                self.weight,
            ),
        ]
    }

    fn backward(&self, pass: &Pass) -> Vec<(GradAt, Vec<Op>)> {
        vec![(
            GradAt::BeforeLayer(self.code.layer),
            vec![Op::Term(TermOp::L1Grad {
                x: self.code.value,
                grad: self.code.grad,
                state: pass.state,
                rows: self.batch,
                cols: self.code.width,
                weight: self.weight,
            })],
        )]
    }
}
