//! The reconstruction term: the model's output against the clean input, a mean per pixel (or, per image,
//! summed over an image's pixels and a mean over images: see the last paragraph).
//!
//! Plain: [`Op::Loss`] writes ∂(mean loss)/∂logits into the output's gradient (the op that *writes* that
//! buffer; every other term on the output adds after it) and one partial sum per 256 elements.
//!
//! Emphasised (`--emphasis α:β`, the lectures' emphasised denoising): each component's loss is weighted α
//! where the corruption changed it and β elsewhere ([`TermOp::EmphasisLoss`], which reads the mask the
//! corruption wrote); the term stays Σ w·l / (samples · pixels) (/ samples, per image), so 1:1 is exactly
//! the plain loss. Two
//! metrics report the unweighted loss on corrupted and on untouched components separately.
//!
//! Per image (`per_image`, the variational models): the loss is summed over an image's pixels and a mean
//! over images, the way the VAE literature reports it and the weight it must have beside the KL summed
//! over the latent; a `recon_per_pixel` metric gives the per-pixel figure that compares with the other
//! models.

use super::{
    CompiledTerm, Emphasis, MeterRef, MeterRole, Per, TermContext, check_weight, partial_count,
};
use crate::ops::terms::emphasis;
use crate::ops::{Act, BufId, LossKind, Noise, Op, TermOp};
use crate::plan::{Pass, PlanError};

pub struct Reconstruction {
    loss: LossKind,
    output_act: Act,
    logits: BufId,
    target: BufId,
    grad: BufId,
    recon: BufId,
    partials: BufId,
    groups: usize,
    batch: usize,
    features: usize,
    per_image: bool,
    /// The weights, the corruption's mask and the meters of each section after the first.
    emphasis: Option<(Emphasis, BufId, [MeterRef; 4])>,
    meter: MeterRef,
    /// With `per_image`: the same sum as a mean per pixel.
    per_pixel: Option<MeterRef>,
    amp: Option<BufId>,
}

pub fn compile(
    cx: &mut TermContext<'_>,
    loss: LossKind,
    weights: Option<Emphasis>,
    per_image: bool,
) -> Result<Reconstruction, PlanError> {
    let taps = *cx.taps;
    if loss == LossKind::BceWithLogits && taps.output_act != Act::Sigmoid {
        return Err(PlanError::LossNeedsSigmoid {
            loss,
            model: cx.model_name.into(),
            act: taps.output_act.name(),
        });
    }
    let groups = partial_count(cx.batch * cx.features);
    let sections = if weights.is_some() {
        emphasis::SECTIONS
    } else {
        1
    };
    let partials = cx.b.scratch("loss_partials", sections * groups);
    let per = if per_image {
        Per::Sample
    } else {
        Per::Element(cx.features)
    };
    let meter = cx.meters.add(cx.b, "recon", MeterRole::Term, per);
    let emphasis = match weights {
        None => None,
        Some(w) => {
            let problem = match (cx.noise, taps.corruption_mask) {
                (None, _) | (_, None) => Some("no corruption is applied"),
                (Some(Noise::Gaussian { .. }), _) => {
                    Some("Gaussian noise changes every component, so none is left to weight apart")
                }
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(PlanError::Term {
                    term: "emphasis",
                    problem: format!(
                        "weights the components the corruption changed, but {problem}; use mask, \
                         salt-pepper or square noise"
                    ),
                });
            }
            check_weight("emphasis", w.corrupted)?;
            check_weight("emphasis", w.clean)?;
            let first = meter.index() + 1;
            let mut add = |name: &str, role, per| cx.meters.add(cx.b, name, role, per);
            let corrupted = add("recon_corrupted", MeterRole::Metric, Per::SumOf(first + 2));
            let clean = add("recon_clean", MeterRole::Metric, Per::SumOf(first + 3));
            let corrupted_count = add("corrupted_count", MeterRole::Count, Per::Sample);
            let clean_count = add("clean_count", MeterRole::Count, Per::Sample);
            Some((
                w,
                taps.corruption_mask.expect("checked above"),
                [corrupted, clean, corrupted_count, clean_count],
            ))
        }
    };
    let per_pixel = per_image.then(|| {
        cx.meters.add(
            cx.b,
            "recon_per_pixel",
            MeterRole::Metric,
            Per::Element(cx.features),
        )
    });
    Ok(Reconstruction {
        loss,
        output_act: taps.output_act,
        logits: taps.logits,
        target: taps.input,
        grad: taps.logits_grad,
        recon: taps.recon,
        partials,
        groups,
        batch: cx.batch,
        features: cx.features,
        per_image,
        emphasis,
        meter,
        per_pixel,
        amp: cx.amp,
    })
}

impl CompiledTerm for Reconstruction {
    fn forward(&self, pass: &Pass) -> Vec<Op> {
        let (rows, cols, samples) = (self.batch, self.features, pass.samples);
        // The loss's own sum (the weighted one, when emphasised) is the term; per image, it is also
        // reported per pixel.
        let value = |first| {
            let mut ops = vec![self.meter.reduce(pass, self.partials, first, self.groups)];
            ops.extend(
                self.per_pixel
                    .map(|m| m.reduce(pass, self.partials, first, self.groups)),
            );
            ops
        };
        let Some((w, mask, meters)) = self.emphasis else {
            let mut ops = vec![Op::Loss {
                kind: self.loss,
                output_act: self.output_act,
                logits: self.logits,
                target: self.target,
                grad: self.grad,
                recon: self.recon,
                partials: self.partials,
                state: pass.state,
                rows,
                cols,
                samples,
                per_sample: self.per_image,
                amp: self.amp,
            }];
            ops.extend(value(0));
            return ops;
        };
        let mut ops = vec![Op::Term(TermOp::EmphasisLoss {
            kind: self.loss,
            output_act: self.output_act,
            logits: self.logits,
            target: self.target,
            mask,
            grad: self.grad,
            recon: self.recon,
            partials: self.partials,
            state: pass.state,
            rows,
            cols,
            corrupted: w.corrupted,
            clean: w.clean,
            per_sample: self.per_image,
        })];
        ops.extend(value(emphasis::WEIGHTED * self.groups));
        let sections = [
            emphasis::CORRUPTED_LOSS,
            emphasis::CLEAN_LOSS,
            emphasis::CORRUPTED_COUNT,
            emphasis::CLEAN_COUNT,
        ];
        for (meter, section) in meters.iter().zip(sections) {
            ops.push(meter.reduce(pass, self.partials, section * self.groups, self.groups));
        }
        ops
    }
}
