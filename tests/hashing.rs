//! The hashing autoencoder's ops and terms: binarisation, bit balance and decorrelation checked by
//! finite differences in f64 on their own (against the value an independent f64 computation gives) and
//! through whole models, the GPU against the CPU on awkward sizes with a last partial batch, and the
//! hash-ae variant as `gpu-ae train --variant hash-ae` builds it.

mod common;

use common::{assert_close, check_parameter_gradients, gpu, random, random_bytes};
use gpu_ae::backend::cpu::{CpuExecutor, kernels};
use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::backend::{Executor, Program, load_initial_state};
use gpu_ae::model::Shape;
use gpu_ae::model::variants::{DenseConfig, dense_ae};
use gpu_ae::objective::{Objective, Term};
use gpu_ae::ops::terms::TapFn;
use gpu_ae::ops::{Act, AdamHyper, BufId, LossKind, Op, Scalar, TermOp, state};
use gpu_ae::plan::{BufferDesc, Elem, Optimizer, Plan, PlanConfig, compile};
use gpu_ae::rng::epoch_permutation;
use gpu_ae::run::config::{RunConfig, Variant};

// Buffers of the op-level checks.
const CODE: BufId = BufId(0);
const GRAD: BufId = BufId(1);
const STATE: BufId = BufId(2);
const SCALARS: BufId = BufId(3);
const BIN_PARTIALS: BufId = BufId(4);
const MEANS: BufId = BufId(5);
const BB_PARTIALS: BufId = BufId(6);
const CENTERED: BufId = BufId(7);
const COV: BufId = BufId(8);
const DC_PARTIALS: BufId = BufId(9);

/// The three terms' value and gradient ops on a code [rows × cols], as the hashing terms schedule them:
/// weights in scalars 0 (binarisation), 1 (bit balance), 2 (decorrelation).
fn hashing_op_plan(rows: usize, cols: usize) -> Plan {
    let n = rows * cols;
    let buffers = vec![
        BufferDesc::f32("code", n),
        BufferDesc::f32("grad", n),
        BufferDesc::u32("state", state::LEN),
        BufferDesc::f32("scalars", 3),
        BufferDesc::f32("binarize.partials", n.div_ceil(256)),
        BufferDesc::f32("bit_balance.means", cols),
        BufferDesc::f32("bit_balance.partials", cols.div_ceil(256)),
        BufferDesc::f32("decorrelate.centered", n),
        BufferDesc::f32("decorrelate.cov", cols * cols),
        BufferDesc::f32("decorrelate.partials", (cols * cols).div_ceil(256)),
    ];
    let weight = |index| Scalar {
        buf: SCALARS,
        index,
    };
    let ops = vec![
        Op::Term(TermOp::TapSum {
            x: CODE,
            state: STATE,
            partials: BIN_PARTIALS,
            rows,
            cols,
            f: TapFn::UnitDistance,
        }),
        Op::Term(TermOp::BitBalance {
            b: CODE,
            means: MEANS,
            partials: BB_PARTIALS,
            state: STATE,
            rows,
            cols,
        }),
        Op::Term(TermOp::CenterColumns {
            x: CODE,
            centered: CENTERED,
            state: STATE,
            rows,
            cols,
        }),
        Op::Matmul {
            a: CENTERED,
            b: CENTERED,
            c: COV,
            m: cols,
            n: cols,
            k: rows,
            trans_a: true,
            trans_b: false,
            accumulate: false,
        },
        Op::Term(TermOp::Decorrelate {
            cov: COV,
            partials: DC_PARTIALS,
            state: STATE,
            cols,
        }),
        Op::Term(TermOp::BinarizeGrad {
            x: CODE,
            grad: GRAD,
            state: STATE,
            rows,
            cols,
            weight: weight(0),
        }),
        Op::Term(TermOp::BitBalanceGrad {
            means: MEANS,
            grad: GRAD,
            state: STATE,
            rows,
            cols,
            weight: weight(1),
        }),
        Op::Term(TermOp::DecorrelateGrad {
            centered: CENTERED,
            cov: COV,
            grad: GRAD,
            state: STATE,
            rows,
            cols,
            weight: weight(2),
        }),
    ];
    Plan::from_ops(buffers, ops)
}

fn state_words(valid: usize) -> [u32; state::LEN] {
    let mut words = [0u32; state::LEN];
    words[state::VALID_ROWS] = valid as u32;
    words
}

/// The three terms computed directly in f64 from the code's first `valid` rows [valid × cols]: mean over
/// rows of Σⱼ ||b| − 1|, Σⱼ mⱼ², Σⱼ≠ₖ Cⱼₖ² with C the population covariance.
fn reference_terms(code: &[f64], valid: usize, cols: usize) -> [f64; 3] {
    let b = |r: usize, j: usize| code[r * cols + j];
    let n = valid as f64;
    let binarize = (0..valid * cols)
        .map(|i| (code[i].abs() - 1.0).abs())
        .sum::<f64>()
        / n;
    let means: Vec<f64> = (0..cols)
        .map(|j| (0..valid).map(|r| b(r, j)).sum::<f64>() / n)
        .collect();
    let balance = means.iter().map(|m| m * m).sum();
    let mut decorrelate = 0.0;
    for j in 0..cols {
        for k in (0..cols).filter(|&k| k != j) {
            let c = (0..valid)
                .map(|r| (b(r, j) - means[j]) * (b(r, k) - means[k]))
                .sum::<f64>()
                / n;
            decorrelate += c * c;
        }
    }
    [binarize, balance, decorrelate]
}

/// Each op's value against the f64 reference, and the gradient ops against central differences of
/// L = w_b·binarisation + w_m·balance + w_c·decorrelation (each term alone, then all three), read from the
/// value ops' partial sums as the meters read them (Σ partials / valid). The padded rows neither move the
/// value nor receive a gradient.
#[test]
fn the_hashing_ops_match_an_f64_reference_and_finite_differences() {
    const STEP: f64 = 1e-6;
    let (rows, cols, valid) = (7, 5, 4);
    let plan = hashing_op_plan(rows, cols);
    // Values on both sides of ±1, none on a kink of ||b| − 1| (0 and ±1) within the step: the first
    // fixture that keeps 1e-3 away from ±1 (`random` keeps away from 0).
    let code = (21..)
        .map(|seed| random(rows * cols, seed, 1.6))
        .find(|c| c.iter().all(|v| (v.abs() - 1.0).abs() > 1e-3))
        .unwrap();
    for weights in [
        [1.0f32, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [0.7, 1.3, 2.1],
    ] {
        let mut ex = CpuExecutor::<f64>::new(plan.clone());
        ex.write_f32(CODE, &code);
        ex.write_f32(SCALARS, &weights);
        ex.write_u32(STATE, &state_words(valid));
        let objective = |ex: &mut CpuExecutor<f64>| {
            ex.floats_mut(GRAD).fill(0.0);
            ex.run(Program::FORWARD_BACKWARD, 1);
            let mean = |ex: &CpuExecutor<f64>, id| ex.floats(id).iter().sum::<f64>() / valid as f64;
            let terms = [
                mean(ex, BIN_PARTIALS),
                mean(ex, BB_PARTIALS),
                mean(ex, DC_PARTIALS),
            ];
            (
                terms,
                terms
                    .iter()
                    .zip(weights)
                    .map(|(t, w)| t * w as f64)
                    .sum::<f64>(),
            )
        };
        let (terms, _) = objective(&mut ex);
        let want = reference_terms(ex.floats(CODE), valid, cols);
        for (name, (got, want)) in ["binarisation", "bit balance", "decorrelation"]
            .iter()
            .zip(terms.iter().zip(want))
        {
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{name}: {got} vs the reference {want}"
            );
            assert!(want > 1e-3, "{name}: the reference is too small to test");
        }
        let analytic = ex.floats(GRAD).to_vec();
        for (e, &grad) in analytic.iter().enumerate() {
            let original = ex.floats(CODE)[e];
            ex.floats_mut(CODE)[e] = original + STEP;
            let (_, plus) = objective(&mut ex);
            ex.floats_mut(CODE)[e] = original - STEP;
            let (_, minus) = objective(&mut ex);
            ex.floats_mut(CODE)[e] = original;
            let numeric = (plus - minus) / (2.0 * STEP);
            let scale = grad.abs().max(numeric.abs()).max(1e-3);
            assert!(
                (grad - numeric).abs() <= 1e-6 * scale,
                "weights {weights:?}: code[{e}]: analytic {grad} vs finite difference {numeric}"
            );
            if e >= valid * cols {
                assert_eq!((grad, numeric), (0.0, 0.0), "a padded row, code[{e}]");
            } else {
                assert!(
                    grad.abs() > 1e-4,
                    "weights {weights:?}: code[{e}] has no gradient"
                );
            }
        }
    }
}

/// Every buffer the ops write, the GPU against the CPU: random never-zero codes with a last partial batch
/// (valid rows < rows), widths across the 256-column groups; one gradient at a time (the others weighted
/// 0), added onto a buffer that already holds values.
#[test]
fn the_hashing_ops_match_the_cpu_on_awkward_sizes_and_a_partial_batch() {
    let Some(ctx) = gpu() else { return };
    for (rows, valid, cols) in [(37, 23, 300), (19, 19, 33), (130, 77, 7)] {
        let plan = hashing_op_plan(rows, cols);
        let code = random(rows * cols, 31 + cols as u64, 1.3);
        let grad = random(rows * cols, 32, 1e-3);
        let mut cpu = CpuExecutor::<f32>::new(plan.clone());
        let mut gpu = GpuExecutor::new(&ctx, plan.clone()).unwrap();
        for weights in [[0.3f32, 0.0, 0.0], [0.0, 0.7, 0.0], [0.0, 0.0, 1.9]] {
            for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
                ex.write_f32(CODE, &code);
                ex.write_f32(GRAD, &grad);
                ex.write_f32(SCALARS, &weights);
                ex.write_u32(STATE, &state_words(valid));
                ex.run(Program::FORWARD_BACKWARD, 1);
            }
            let label = format!("{rows}×{cols}, {valid} valid, weights {weights:?}");
            for id in [
                BIN_PARTIALS,
                MEANS,
                BB_PARTIALS,
                CENTERED,
                COV,
                DC_PARTIALS,
                GRAD,
            ] {
                let want = cpu.read_f32(id);
                let got = gpu.read_f32(id);
                assert_close(
                    &format!("{label}: {}", plan.buffers[id.0].name),
                    &got,
                    &want,
                    2e-4,
                );
            }
            // The padded rows: centred to 0, their gradient untouched.
            let (centered, g) = (cpu.read_f32(CENTERED), gpu.read_f32(GRAD));
            assert!(
                centered[valid * cols..].iter().all(|v| *v == 0.0),
                "{label}"
            );
            assert_eq!(g[valid * cols..], grad[valid * cols..], "{label}");
            assert!(g[..valid * cols] != grad[..valid * cols], "{label}");
        }
    }
}

/// features → 7 → 6 (the code, `code_act`) → 7 → features, `code_act` throughout, sigmoid output, BCE
/// plus `terms`, over 12 samples in batches of 5 (the last holds 2 real rows).
fn small_plan(
    features: usize,
    code_act: Act,
    terms: &[Term],
    batch: usize,
    samples: (usize, usize),
) -> Plan {
    let cfg = DenseConfig {
        hidden: vec![7],
        latent: 6,
        act: code_act,
        code_act,
        output_act: Act::Sigmoid,
    };
    let model = dense_ae(Shape::flat(features), &cfg).unwrap();
    let objective = terms.iter().fold(
        Objective::reconstruction(LossKind::BceWithLogits),
        |o, t| o.with(*t),
    );
    compile(
        &model,
        &PlanConfig {
            batch,
            objective,
            optimizer: Optimizer::Adam(AdamHyper::default()),
            train_samples: samples.0,
            test_samples: samples.1,
            noise: None,
            seed: 3,
            lr_schedule: None,
            precision: gpu_ae::plan::Precision::F32,
        },
    )
    .unwrap()
}

/// Weights that make each term's share of the gradient comparable to the reconstruction's, so that a wrong
/// one fails the check below (asserted there).
fn hashing_terms() -> Vec<(&'static str, Term)> {
    vec![
        ("binarize", Term::Binarize { weight: 0.05 }),
        ("bit balance", Term::BitBalance { weight: 0.5 }),
        ("decorrelate", Term::Decorrelate { weight: 20.0 }),
    ]
}

/// Every parameter's gradient through a whole model against central differences of the total, on a full
/// batch and the last, partial one: each term alone and all three, on a tanh code and on an identity code
/// (whose values cross ±1, so both signs of |b| − 1 occur). Each term moves the gradients well beyond the
/// check's tolerance.
#[test]
fn the_hashing_terms_gradients_match_finite_differences_through_a_whole_model() {
    let (features, batch, samples) = (13, 5, (12, 4));
    let train = random_bytes(samples.0 * features, 41);
    let test = random_bytes(samples.1 * features, 42);
    let executor = |plan: &Plan| {
        let mut ex = CpuExecutor::<f64>::new(plan.clone());
        load_initial_state(&mut ex, &train, &test, 7);
        ex.write_u32(plan.io.train_perm, &epoch_permutation(samples.0, 7, 0));
        ex
    };
    let gradients = |plan: &Plan, batch_index: u32| {
        let mut ex = executor(plan);
        ex.write_u32(plan.io.train_state, &[5, batch_index, 0, 0]);
        ex.run(Program::FORWARD_BACKWARD, 1);
        plan.params
            .iter()
            .flat_map(|p| ex.floats(p.grad).to_vec())
            .collect::<Vec<f64>>()
    };
    let all: Vec<Term> = hashing_terms().into_iter().map(|(_, t)| t).collect();
    let mut cases: Vec<(String, Act, Vec<Term>)> = hashing_terms()
        .into_iter()
        .map(|(name, t)| (format!("{name} on tanh"), Act::Tanh, vec![t]))
        .collect();
    cases.push(("all three on tanh".into(), Act::Tanh, all.clone()));
    cases.push(("all three on identity".into(), Act::Identity, all));
    for (label, act, terms) in cases {
        let plan = small_plan(features, act, &terms, batch, samples);
        let without = small_plan(features, act, &[], batch, samples);
        for batch_index in [1u32, 2] {
            let shift = gradients(&plan, batch_index)
                .iter()
                .zip(gradients(&without, batch_index))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                shift > 1e-3,
                "{label}: the terms hardly move the gradient ({shift:e})"
            );
            let mut ex = executor(&plan);
            ex.write_u32(plan.io.train_state, &[5, batch_index, 0, 0]);
            let valid = kernels::valid_rows(batch, samples.0, batch_index as usize);
            check_parameter_gradients(
                &mut ex,
                valid,
                2e-3,
                &format!("{label}, batch {batch_index}"),
            );
        }
    }
}

/// A whole model's every float buffer after forward-backward on the last partial batch, the GPU against the
/// CPU: 29 inputs, a 300-unit tanh code (two groups of 256 columns, a 300×300 covariance), batches of 37
/// over 60 samples (the second holds 23); then whole training steps and an evaluation.
#[test]
fn a_hashing_model_matches_the_cpu_on_awkward_sizes_and_a_partial_batch() {
    let Some(ctx) = gpu() else { return };
    let features = 29;
    let cfg = DenseConfig {
        hidden: vec![],
        latent: 300,
        act: Act::Tanh,
        code_act: Act::Tanh,
        output_act: Act::Sigmoid,
    };
    let model = dense_ae(Shape::flat(features), &cfg).unwrap();
    let objective = Objective::reconstruction(LossKind::BceWithLogits)
        .with(Term::Binarize { weight: 1e-2 })
        .with(Term::BitBalance { weight: 0.1 })
        .with(Term::Decorrelate { weight: 0.5 });
    let plan = compile(
        &model,
        &PlanConfig {
            batch: 37,
            objective,
            optimizer: Optimizer::Adam(AdamHyper::default()),
            train_samples: 60,
            test_samples: 21,
            noise: None,
            seed: 5,
            lr_schedule: None,
            precision: gpu_ae::plan::Precision::F32,
        },
    )
    .unwrap();
    let (train, test) = (
        random_bytes(60 * features, 51),
        random_bytes(21 * features, 52),
    );
    let mut cpu = CpuExecutor::<f32>::new(plan.clone());
    let mut gpu = GpuExecutor::new(&ctx, plan.clone()).unwrap();
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        load_initial_state(ex, &train, &test, 5);
        ex.write_u32(plan.io.train_perm, &epoch_permutation(60, 9, 0));
        ex.write_u32(plan.io.train_state, &[3, 1, 0, 0]);
        ex.run(Program::FORWARD_BACKWARD, 1);
    }
    for (i, b) in plan.buffers.iter().enumerate() {
        if b.elem != Elem::F32 {
            continue;
        }
        let want = cpu.read_f32(BufId(i));
        if want.iter().all(|v| *v == 0.0) {
            continue; // buffers this program does not touch (optimizer state, eval logs)
        }
        assert_close(&b.name, &gpu.read_f32(BufId(i)), &want, 2e-4);
    }
    // The padded rows of the partial batch get no gradient from any term.
    let code_grad = plan
        .buffers
        .iter()
        .position(|b| b.name == "layers.0.out.grad")
        .unwrap();
    let g = cpu.read_f32(BufId(code_grad));
    assert!(g[23 * 300..].iter().all(|v| *v == 0.0));
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        ex.write_u32(plan.io.train_state, &[0; 4]);
        ex.run(Program::TRAIN_STEP, 2);
        ex.run(Program::EVAL, 1);
    }
    let (want, got) = (
        cpu.read_f32(plan.io.loss_acc),
        gpu.read_f32(plan.io.loss_acc),
    );
    assert_close("accumulators", &got, &want, 1e-3);
}

/// `--variant hash-ae` as the CLI builds it: 784-256-32-256-784, ReLU hidden layers, a tanh code, the
/// three terms at the weights, each reported unweighted beside its weighted share of the loss.
#[test]
fn hash_ae_is_a_tanh_code_of_32_bits_with_the_three_terms() {
    let config = Variant::HashAe.defaults();
    let model = config.build_model(Shape { c: 1, h: 28, w: 28 }).unwrap();
    assert_eq!(model.name, "hash-ae");
    let widths: Vec<usize> = model.shapes.iter().map(Shape::numel).collect();
    assert_eq!(widths, vec![784, 256, 32, 256, 784]);
    let code = model.code.expect("a code layer");
    assert_eq!(code, 1);
    assert!(
        model.layers[code].describe().contains("tanh"),
        "{}",
        model.layers[code].describe()
    );
    assert_eq!(
        config.objective().terms[1..],
        [
            Term::Binarize { weight: 1e-4 },
            Term::BitBalance { weight: 3.2e-3 },
            Term::Decorrelate { weight: 1e-4 },
        ]
    );
    let plan = compile(
        &model,
        &PlanConfig {
            batch: config.batch_size,
            objective: config.objective(),
            optimizer: config.optimizer(),
            train_samples: 300,
            test_samples: 100,
            noise: config.noise,
            seed: config.seed,
            lr_schedule: None,
            precision: gpu_ae::plan::Precision::F32,
        },
    )
    .unwrap();
    let shown: Vec<&str> = plan
        .meters
        .iter()
        .filter(|m| m.role.shown())
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        shown,
        [
            "recon",
            "binarize",
            "bit_balance",
            "decorrelate",
            "code_mean"
        ]
    );
    for name in ["binarize", "bit_balance", "decorrelate"] {
        assert!(plan.scalar(&format!("{name}.weight")).is_some(), "{name}");
    }
    let other = RunConfig {
        latent: 64,
        ..config
    };
    let widths: Vec<usize> = other
        .build_model(Shape { c: 1, h: 28, w: 28 })
        .unwrap()
        .shapes
        .iter()
        .map(Shape::numel)
        .collect();
    assert_eq!(widths, vec![784, 256, 64, 256, 784]);
}

/// A hashing term on a code whose sign is no bit (relu ≥ 0, sigmoid > 0) is refused when the plan is built,
/// naming the term, what it needs and the code layer.
#[test]
fn hashing_terms_on_a_code_without_signs_are_clear_errors() {
    for (act, term, name) in [
        (Act::Relu, Term::Binarize { weight: 1e-4 }, "binarisation"),
        (
            Act::Sigmoid,
            Term::BitBalance { weight: 1e-3 },
            "bit balance",
        ),
        (
            Act::LeakyRelu,
            Term::Decorrelate { weight: 1e-4 },
            "decorrelation",
        ),
    ] {
        let cfg = DenseConfig {
            hidden: vec![7],
            latent: 6,
            act,
            code_act: act,
            output_act: Act::Sigmoid,
        };
        let err = compile(
            &dense_ae(Shape::flat(13), &cfg).unwrap(),
            &PlanConfig {
                batch: 5,
                objective: Objective::reconstruction(LossKind::BceWithLogits).with(term),
                optimizer: Optimizer::Adam(AdamHyper::default()),
                train_samples: 12,
                test_samples: 4,
                noise: None,
                seed: 0,
                lr_schedule: None,
                precision: gpu_ae::plan::Precision::F32,
            },
        )
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(name) && err.contains("tanh") && err.contains(act.name()),
            "{err}"
        );
    }
}
