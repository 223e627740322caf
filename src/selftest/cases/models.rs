//! The objective's ops where a plan schedules them: penalty, emphasis and hashing terms and the
//! variational ops in whole small models (forward-backward on a last partial batch, every f32 buffer
//! compared), and the RBM and classifier ops on their own.

use std::sync::Arc;

use super::{Case, Kernels, Ops};
use crate::backend::{Executor, Program, load_initial_state};
use crate::model::Shape;
use crate::model::variants::{ConvConfig, Deck, DenseConfig, conv_ae, dense_ae, dense_vae};
use crate::objective::{Emphasis, Objective, Term};
use crate::ops::classify::{NO_LABEL, softmax_partials};
use crate::ops::{Act, AdamHyper, ClassifyOp, HiddenUnits, LossKind, Noise, Op, RbmOp};
use crate::plan::{Optimizer, Plan, PlanConfig, compile};
use crate::selftest::inputs::{bytes, positive, random, state_words};

/// Model cases compare every buffer at this tolerance, the loss accumulators at [`ACC`].
const MODEL: f32 = 2e-4;
const ACC: f32 = 1e-3;

pub fn cases() -> Vec<Case> {
    let features = 29;
    let terms = |act: Act, objective: Objective, noise: Option<Noise>| {
        let cfg = DenseConfig {
            hidden: vec![],
            latent: 300,
            act,
            code_act: act,
            output_act: Act::Sigmoid,
        };
        let model = dense_ae(Shape::flat(features), &cfg).expect("a valid model");
        plan(&model, objective, noise)
    };
    let emphasis = Objective {
        terms: vec![Term::Reconstruction {
            loss: LossKind::BceWithLogits,
            emphasis: Some(Emphasis {
                corrupted: 1.5,
                clean: 0.25,
            }),
            per_image: false,
        }],
    };
    let vae = dense_vae(
        Shape::flat(features),
        &DenseConfig {
            hidden: vec![7],
            latent: 150,
            act: Act::Relu,
            code_act: Act::Identity,
            output_act: Act::Sigmoid,
        },
    )
    .expect("a valid model");
    let vae_objective = Objective {
        terms: vec![
            Term::Reconstruction {
                loss: LossKind::BceWithLogits,
                emphasis: None,
                per_image: true,
            },
            Term::GaussianKl {
                weight: 1.5,
                warmup_epochs: 1,
            },
        ],
    };
    vec![
        model_case(
            "terms",
            "l1, kl sparsity and contractive on a 29-300 sigmoid code",
            terms(
                Act::Sigmoid,
                Objective::reconstruction(LossKind::BceWithLogits)
                    .with(Term::L1 { weight: 1e-3 })
                    .with(Term::KlSparsity {
                        rho: 0.05,
                        weight: 0.1,
                    })
                    .with(Term::Contractive { weight: 0.01 }),
                None,
            ),
            features,
            true,
        ),
        model_case(
            "terms",
            "contractive on a 29-300 tanh code, mse",
            terms(
                Act::Tanh,
                Objective::reconstruction(LossKind::Mse).with(Term::Contractive { weight: 0.01 }),
                None,
            ),
            features,
            false,
        ),
        model_case(
            "terms",
            "emphasised loss 1.5:0.25 under mask noise, relu code",
            terms(Act::Relu, emphasis, Some(Noise::Mask { fraction: 0.3 })),
            features,
            true,
        ),
        model_case(
            "hashing",
            "binarize, bit balance and decorrelate on a 29-300 tanh code",
            terms(
                Act::Tanh,
                Objective::reconstruction(LossKind::BceWithLogits)
                    .with(Term::Binarize { weight: 0.05 })
                    .with(Term::BitBalance { weight: 0.5 })
                    .with(Term::Decorrelate { weight: 20.0 }),
                None,
            ),
            features,
            true,
        ),
        model_case(
            "vae",
            "dense vae 29-7-(μ, log σ² of 150), kl warm-up",
            plan(&vae, vae_objective, None),
            features,
            true,
        ),
        rbm(true),
        classify(7, true),
        classify(10, false),
        gather_labels(),
        mixed_step(
            "dense 29-7-5-7-29, --precision mixed",
            dense_ae(
                Shape::flat(features),
                &DenseConfig {
                    hidden: vec![7],
                    latent: 5,
                    act: Act::Relu,
                    code_act: Act::Relu,
                    output_act: Act::Sigmoid,
                },
            )
            .expect("a valid model"),
            None,
        ),
        mixed_step(
            "strided conv 1×12×8 → 5 → 6 channels, gaussian noise, --precision mixed",
            conv_ae(
                "conv-dae",
                Shape { c: 1, h: 12, w: 8 },
                &ConvConfig {
                    channels: vec![5, 6],
                    deck: Deck::Strided,
                    act: Act::Relu,
                    output_act: Act::Sigmoid,
                },
            )
            .expect("a valid model"),
            Some(Noise::Gaussian { sigma: 0.5 }),
        ),
    ]
}

/// A whole training step of `model` with mixed precision on its last, partial batch: f16 activations
/// and gradients, the loss scale, Adam on the f32 masters and their f16 copies, every buffer compared
/// at the f16 tolerance (the scaler's state exactly).
fn mixed_step(name: &str, model: crate::model::Model, noise: Option<Noise>) -> Case {
    let features = model.input.numel();
    let plan = compile(
        &model,
        &PlanConfig {
            precision: crate::plan::Precision::Mixed,
            ..config(Objective::reconstruction(LossKind::BceWithLogits), noise)
        },
    )
    .expect("a valid plan");
    let amp = plan.io.amp.expect("a mixed plan has a loss scaler");
    let mut case = model_case_running("mixed", name, plan, features, true, Program::TRAIN_STEP);
    case.name = format!("{name}: a training step on a partial batch");
    case.tolerance = super::F16_REL;
    case.buffer_tolerances.clear();
    case.exact.push(amp);
    case
}

/// Batches of 37 over 60 training samples (the second holds 23 rows) and 21 test samples.
fn plan(model: &crate::model::Model, objective: Objective, noise: Option<Noise>) -> Plan {
    compile(model, &config(objective, noise)).expect("a valid plan")
}

fn config(objective: Objective, noise: Option<Noise>) -> PlanConfig {
    PlanConfig {
        batch: 37,
        objective,
        optimizer: Optimizer::Adam(AdamHyper::default()),
        train_samples: 60,
        test_samples: 21,
        noise,
        seed: 5,
        lr_schedule: None,
        precision: crate::plan::Precision::F32,
    }
}

/// The model's forward-backward on its last, partial batch from seeded data and parameters: every f32
/// buffer compared.
fn model_case(family: &'static str, name: &str, plan: Plan, features: usize, quick: bool) -> Case {
    model_case_running(
        family,
        name,
        plan,
        features,
        quick,
        Program::FORWARD_BACKWARD,
    )
}

/// As [`model_case`], running `program` on the partial batch.
fn model_case_running(
    family: &'static str,
    name: &str,
    plan: Plan,
    features: usize,
    quick: bool,
    program: Program,
) -> Case {
    let train = bytes(plan.train_samples * features, 51);
    let test = bytes(plan.test_samples * features, 52);
    let last = plan.steps_per_epoch() as u32 - 1;
    let perm = crate::rng::epoch_permutation(plan.train_samples, 9, 0);
    let io = plan.io;
    Case {
        family,
        name: format!("{name}: forward-backward on a partial batch"),
        buffer_tolerances: vec![(io.loss_acc, ACC)],
        plan,
        kernels: Kernels::default(),
        drive: Arc::new(move |ex: &mut dyn Executor| {
            load_initial_state(ex, &train, &test, 5);
            ex.write_u32(io.train_perm, &perm);
            ex.write_u32(io.train_state, &state_words(3, last, 0));
            ex.run(program, 1);
        }),
        tolerance: MODEL,
        exact: Vec::new(),
        quick,
    }
}

/// Hidden samples (Bernoulli and Gaussian), the stacked CD statistics and the visible delta on 9 rows,
/// 7 of them real, 13 hidden and 37 visible units.
fn rbm(quick: bool) -> Case {
    let (rows, hidden, visible, valid) = (9, 13, 37, 7);
    let mut b = Ops::new();
    let h0 = b.input("h0", positive(rows * hidden, 1, 1.0));
    let h1 = b.input("h1", positive(rows * hidden, 2, 1.0));
    let bernoulli = b.out("bernoulli", rows * hidden);
    let gaussian = b.out("gaussian", rows * hidden);
    let hidden_stack = b.out("hidden_stack", 2 * rows * hidden);
    let v0 = b.input("v0", random(rows * visible, 3, 1.0));
    let visible_stack = b.input("visible_stack", random(2 * rows * visible, 4, 1.0));
    let delta = b.out("delta", rows * visible);
    let partials = b.out("partials", (rows * visible).div_ceil(256));
    let st = b.words("state", state_words(123, 0, valid));
    for (sample, units) in [
        (bernoulli, HiddenUnits::Bernoulli),
        (gaussian, HiddenUnits::Gaussian),
    ] {
        b.op(Op::Rbm(RbmOp::SampleHidden {
            h: h0,
            sample,
            state: st,
            rows,
            cols: hidden,
            units,
            seed: 99,
            stream: 6,
        }));
    }
    b.op(Op::Rbm(RbmOp::CdHidden {
        h0,
        h1,
        stacked: hidden_stack,
        state: st,
        rows,
        cols: hidden,
    }));
    b.op(Op::Rbm(RbmOp::CdVisible {
        v0,
        stacked: visible_stack,
        delta,
        partials,
        state: st,
        rows,
        cols: visible,
    }));
    b.tolerance(1e-5);
    b.case(
        "rbm",
        format!("rbm sampling and CD statistics, {rows} rows ({valid} real), {hidden} hidden, {visible} visible"),
        quick,
    )
}

/// The softmax cross-entropy on 300 rows (two groups of 256), 277 real.
fn classify(classes: usize, quick: bool) -> Case {
    let (rows, valid) = (300, 277);
    let mut labels: Vec<u32> = (0..rows as u32)
        .map(|r| (r * 5 + 1) % classes as u32)
        .collect();
    labels[valid..].iter_mut().for_each(|l| *l = NO_LABEL);
    let groups = ClassifyOp::groups(rows);
    let mut b = Ops::new();
    let logits = b.input("logits", random(rows * classes, 17, 3.0));
    let labels = b.words("labels", labels);
    let grad = b.out("grad", rows * classes);
    let partials = b.out("partials", softmax_partials::SECTIONS * groups);
    let st = b.words("state", state_words(0, 0, valid as u32));
    b.op(Op::Classify(ClassifyOp::SoftmaxCrossEntropy {
        logits,
        labels,
        grad,
        partials,
        state: st,
        rows,
        classes,
    }));
    b.tolerance(1e-5);
    b.case(
        "classify",
        format!("softmax_cross_entropy, {rows} rows ({valid} real) of {classes} classes"),
        quick,
    )
}

/// The labels of batch 2 of 23 samples in batches of 10 (3 real rows, the rest NO_LABEL), compared
/// exactly; the logits' gradient of the next op checks nothing here, so a float output rides along: the
/// softmax of the gathered batch.
fn gather_labels() -> Case {
    let (samples, rows, classes) = (23, 10, 10);
    let mut b = Ops::new();
    let labels = b.words(
        "labels",
        (0..samples as u32).map(|i| (i * 7) % 10).collect(),
    );
    let perm = b.words("perm", crate::rng::epoch_permutation(samples, 3, 0));
    let st = b.words("state", state_words(0, 2, 3));
    let out = b.exact_out("out", rows);
    let logits = b.input("logits", random(rows * classes, 18, 2.0));
    let grad = b.out("grad", rows * classes);
    let partials = b.out(
        "partials",
        softmax_partials::SECTIONS * ClassifyOp::groups(rows),
    );
    b.op(Op::Classify(ClassifyOp::GatherLabels {
        labels,
        perm,
        state: st,
        out,
        rows,
        samples,
    }));
    b.op(Op::Classify(ClassifyOp::SoftmaxCrossEntropy {
        logits,
        labels: out,
        grad,
        partials,
        state: st,
        rows,
        classes,
    }));
    b.tolerance(1e-5);
    b.case(
        "classify",
        format!(
            "gather_labels: batch 2 of {samples} samples in batches of {rows}, then its softmax"
        ),
        true,
    )
}
