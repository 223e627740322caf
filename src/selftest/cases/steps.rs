//! The kernels around the layers: the batch gather, the reconstruction loss and its reduction, the
//! optimizers and the step counter, the input corruption.

use super::{Case, Ops};
use crate::ops::optim::{AdagradHyper, Decay, LrSchedule, RmspropHyper};
use crate::ops::{Act, AdamHyper, LossKind, Noise, Op, OptimOp, Scalar, state};
use crate::selftest::inputs::{bytes, positive, random, state_words};

pub fn cases() -> Vec<Case> {
    let mut cases = vec![gather_batch(), loss_and_reduce(), optimizers()];
    cases.extend([loss_scaling(false), loss_scaling(true)]);
    cases.extend(noise(1_003, true));
    cases.extend(noise(100_003, false));
    cases
}

/// Batch 2 of a 23-sample set of 13-byte rows in batches of 10: rows 20–22 real, seven padded, rows
/// that start mid-word.
fn gather_batch() -> Case {
    let (samples, features, batch) = (23, 13, 10);
    let mut b = Ops::new();
    let data = b.words(
        "data",
        crate::backend::pack_bytes(&bytes(samples * features, 15)),
    );
    let perm = b.words("perm", crate::rng::epoch_permutation(samples, 3, 0));
    let st = b.words("state", state_words(0, 2, 99));
    b.compare_exactly(st);
    let out = b.out("out", batch * features);
    b.op(Op::GatherBatch {
        data,
        perm,
        state: st,
        out,
        batch,
        features,
        samples,
    });
    b.tolerance(1e-6);
    b.case(
        "data",
        format!(
            "gather_batch: batch 2 of {samples} samples × {features} bytes, 3 real rows of {batch}"
        ),
        true,
    )
}

/// Every loss kind on logits [37 × 53], batch 2 of a 90-sample set (16 valid rows of 37), then the
/// partial sums reduced into an accumulator, whole and from the second partial on.
fn loss_and_reduce() -> Case {
    let (rows, cols, samples) = (37usize, 53usize, 90);
    let partial_count = (rows * cols).div_ceil(256);
    let mut b = Ops::new();
    let logits = b.input("logits", random(rows * cols, 10, 6.0));
    let target = b.input("target", positive(rows * cols, 11, 1.0));
    let st = b.words("state", state_words(0, 2, 0));
    for (kind, act, per_sample) in [
        (LossKind::BceWithLogits, Act::Sigmoid, false),
        (LossKind::Mse, Act::Sigmoid, false),
        (LossKind::Mse, Act::Identity, false),
        (LossKind::L1, Act::Sigmoid, false),
        (LossKind::L1, Act::Identity, false),
        (LossKind::BceWithLogits, Act::Sigmoid, true),
    ] {
        let tag = format!(
            "{kind:?}_{}{}",
            act.name(),
            if per_sample { "_per_sample" } else { "" }
        );
        let grad = b.out(&format!("grad_{tag}"), rows * cols);
        let recon = b.out(&format!("recon_{tag}"), rows * cols);
        let partials = b.out(&format!("partials_{tag}"), partial_count);
        let acc = b.input(&format!("acc_{tag}"), vec![0.25, 0.5]);
        let log = b.out(&format!("log_{tag}"), 4);
        b.op(Op::Loss {
            kind,
            output_act: act,
            logits,
            target,
            grad,
            recon,
            partials,
            state: st,
            rows,
            cols,
            samples,
            per_sample,
            amp: None,
        });
        b.op(Op::ReduceSum {
            partials,
            first: 0,
            count: partial_count,
            scale: None,
            acc,
            slot: 1,
            state: st,
            log,
        });
        b.op(Op::ReduceSum {
            partials,
            first: 1,
            count: partial_count - 1,
            scale: None,
            acc,
            slot: 0,
            state: st,
            log,
        });
    }
    b.case(
        "loss",
        format!("loss (bce, mse, per image) on {rows}×{cols}, 16 valid rows; reduce_sum"),
        true,
    )
}

/// Every optimizer with weight decay over five steps of 1037 parameters, the step counter advanced after
/// each: Adam, AdamW, momentum SGD, RMSprop and Adagrad, all but SGD with their lr scaled by a cosine
/// schedule with warm-up that the first op writes from the step counter.
fn optimizers() -> Case {
    let len = 1000 + 37;
    let hyper = AdamHyper {
        lr: 1e-2,
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.01,
        decoupled: false,
    };
    let mut b = Ops::new();
    let param = b.input("param", random(len, 12, 1.0));
    let grad = b.input("grad", random(len, 13, 1.0));
    let m = b.out("m", len);
    let v = b.out("v", len);
    let st = b.words("state", vec![0; state::LEN]);
    b.compare_exactly(st);
    let sgd_param = b.input("sgd_param", random(len, 14, 1.0));
    let velocity = b.out("velocity", len);
    let w_param = b.input("adamw_param", random(len, 15, 1.0));
    let (w_m, w_v) = (b.out("adamw_m", len), b.out("adamw_v", len));
    let rms_param = b.input("rmsprop_param", random(len, 16, 1.0));
    let square_avg = b.out("square_avg", len);
    let ada_param = b.input("adagrad_param", random(len, 17, 1.0));
    let sum = b.out("adagrad_sum", len);
    let scalars = b.input("scalars", vec![0.5, 0.5]);
    let scale = Scalar {
        buf: scalars,
        index: 1,
    };
    b.op(Op::Optim(OptimOp::LrSchedule {
        scale,
        state: st,
        step_word: state::GLOBAL_STEP,
        schedule: LrSchedule {
            warmup: 2,
            decay: Decay::Cosine { total: 7 },
        },
    }));
    b.op(Op::Adam {
        param,
        grad,
        m,
        v,
        state: st,
        step_word: state::GLOBAL_STEP,
        len,
        hyper,
        lr_scale: Some(scale),
    });
    b.op(Op::Adam {
        param: w_param,
        grad,
        m: w_m,
        v: w_v,
        state: st,
        step_word: state::GLOBAL_STEP,
        len,
        hyper: AdamHyper {
            weight_decay: 0.3,
            decoupled: true,
            ..hyper
        },
        lr_scale: Some(scale),
    });
    b.op(Op::Sgd {
        param: sgd_param,
        grad,
        velocity,
        len,
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.01,
        lr_scale: None,
    });
    b.op(Op::Optim(OptimOp::Rmsprop {
        param: rms_param,
        grad,
        square_avg,
        len,
        hyper: RmspropHyper {
            weight_decay: 0.02,
            ..RmspropHyper::default()
        },
        lr_scale: Some(scale),
    }));
    b.op(Op::Optim(OptimOp::Adagrad {
        param: ada_param,
        grad,
        sum,
        state: st,
        step_word: state::GLOBAL_STEP,
        len,
        hyper: AdagradHyper {
            lr_decay: 0.1,
            weight_decay: 0.02,
            ..AdagradHyper::default()
        },
        lr_scale: Some(scale),
    }));
    b.op(Op::AdvanceStep { state: st });
    b.repeats(5);
    b.case(
        "optimizer",
        format!(
            "lr_schedule (cosine, warm-up), adam, adamw, sgd, rmsprop, adagrad and advance_step, 5 steps of \
             {len} parameters"
        ),
        true,
    )
}

/// Every corruption with its mask, at global step 17: the same elements chosen on both (the mask
/// compared like any output, so one flipped choice fails), Gaussian values within the tolerance.
fn noise(len: usize, quick: bool) -> Vec<Case> {
    let (h, w) = (9, 11);
    let image_len = (len / (h * w)).max(1) * h * w;
    [
        (Noise::Gaussian { sigma: 0.3 }, [1, len], len),
        (Noise::Mask { fraction: 0.3 }, [1, len], len),
        (Noise::SaltPepper { fraction: 0.2 }, [1, len], len),
        (Noise::Square { size: 4 }, [h, w], image_len),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (noise, image, len))| {
        let mut b = Ops::new();
        let x = b.input("x", positive(len, 31 + i as u64, 1.0));
        let y = b.out("y", len);
        let mask = b.out("mask", len);
        let st = b.words("state", state_words(17, 7, 0));
        b.op(Op::Corrupt {
            x,
            y,
            mask: Some(mask),
            state: st,
            len,
            image,
            noise,
            seed: 3,
            stream: i as u32,
        });
        b.case(
            "noise",
            format!(
                "corrupt {noise:?} on {len} values (images {}×{})",
                image[0], image[1]
            ),
            quick,
        )
    })
    .collect()
}

/// Mixed precision's step, on 1003 values: the scaled loss writing an f16 gradient, each gradient
/// checked, Adam on f32 masters (one refreshing its f16 copy), then the scale's update, from a state
/// one clean step short of doubling. With `overflow`, one gradient holds an infinity: the check raises
/// the flag, both Adams skip, the scale halves and the skip is counted.
fn loss_scaling(overflow: bool) -> Case {
    use crate::ops::optim::amp;
    let (rows, cols, len) = (17usize, 59usize, 1003usize);
    let mut b = Ops::new();
    let mut words = amp::initial(1024.0);
    words[amp::CLEAN] = amp::GROWTH_INTERVAL - 1;
    words[amp::SKIPPED] = 2;
    let amp_state = b.words("amp", words.to_vec());
    b.compare_exactly(amp_state);
    let logits = b.input("logits", random(rows * cols, 40, 4.0));
    let target = b.input("target", positive(rows * cols, 41, 1.0));
    let loss_grad = b.out("loss_grad", rows * cols);
    let recon = b.out("recon", rows * cols);
    let partials = b.out("partials", (rows * cols).div_ceil(256));
    let st = b.words("state", state_words(0, 1, 0));
    b.op(Op::Loss {
        kind: LossKind::BceWithLogits,
        output_act: Act::Sigmoid,
        logits,
        target,
        grad: loss_grad,
        recon,
        partials,
        state: st,
        rows,
        cols,
        samples: 40,
        per_sample: false,
        amp: Some(amp_state),
    });
    let mut weight_grad = random(len, 42, 3000.0);
    if overflow {
        weight_grad[len / 2] = f32::INFINITY;
    }
    let grad = b.input("grad", weight_grad);
    let bias_grad = b.input("bias_grad", random(len, 43, 3000.0));
    let param = b.input("param", random(len, 44, 1.0));
    let half = b.out("param_half", len);
    let bias = b.input("bias", random(len, 45, 1.0));
    let (m, v) = (
        b.input("m", random(len, 46, 0.1)),
        b.input("v", positive(len, 47, 0.1)),
    );
    let (bm, bv) = (b.out("bias_m", len), b.out("bias_v", len));
    let steps = b.words("steps", vec![0, 0, 0, 0, 0, 0, 0, 7]);
    for g in [grad, bias_grad] {
        b.op(Op::Optim(OptimOp::AmpCheck {
            grad: g,
            amp: amp_state,
            len,
        }));
    }
    for (param, grad, half, m, v) in [
        (param, grad, Some(half), m, v),
        (bias, bias_grad, None, bm, bv),
    ] {
        b.op(Op::Optim(OptimOp::AdamMixed {
            param,
            grad,
            half,
            m,
            v,
            state: steps,
            step_word: 7,
            amp: amp_state,
            len,
            hyper: AdamHyper::default(),
            lr_scale: None,
        }));
    }
    b.op(Op::Optim(OptimOp::AmpUpdate { amp: amp_state }));
    b.tolerance(super::F16_REL);
    let mut case = b.case(
        "optimizer",
        format!(
            "loss_scaled {rows}×{cols}, amp_check, adam_mixed(_half) and amp_update on {len} values{}",
            if overflow { ", one gradient infinite" } else { "" }
        ),
        true,
    );
    for f16 in [logits, target, loss_grad, recon, half] {
        case.plan.buffers[f16.0].elem = crate::plan::Elem::F16;
    }
    case
}
