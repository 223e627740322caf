//! The objective's terms: every term's gradient checked by finite differences in f64 through a whole
//! model (the total objective of a batch against the gradients the training step writes), the GPU against
//! the CPU on awkward sizes with a last partial batch, and the promises of the emphasised loss.

mod common;

use common::{assert_close, check_parameter_gradients, gpu, random_bytes};
use gpu_ae::backend::cpu::{CpuExecutor, kernels};
use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::backend::{Executor, Program, load_initial_state};
use gpu_ae::model::Shape;
use gpu_ae::model::variants::{DenseConfig, dense_ae};
use gpu_ae::objective::{Emphasis, Objective, Term};
use gpu_ae::ops::{Act, AdamHyper, BufId, LossKind, Noise};
use gpu_ae::plan::{Elem, Optimizer, Plan, PlanConfig, compile};
use gpu_ae::rng::epoch_permutation;

const FEATURES: usize = 13;
const BATCH: usize = 5;
/// Batches 0 and 1 are full, batch 2 holds 2 real rows and 3 padded ones.
const TRAIN_SAMPLES: usize = 12;
const TEST_SAMPLES: usize = 4;

/// 13 → 7 → 6 (the code, `code_act`) → 7 → 13, sigmoid output, with `terms` after the reconstruction.
fn plan(code_act: Act, loss: LossKind, terms: &[Term], noise: Option<Noise>) -> Plan {
    let cfg = DenseConfig {
        hidden: vec![7],
        latent: 6,
        act: code_act,
        code_act,
        output_act: Act::Sigmoid,
    };
    let model = dense_ae(Shape::flat(FEATURES), &cfg).expect("valid model");
    let mut objective = Objective::reconstruction(loss);
    for t in terms {
        objective = match t {
            Term::Reconstruction { .. } => Objective { terms: vec![*t] },
            _ => objective.with(*t),
        };
    }
    let pc = PlanConfig {
        batch: BATCH,
        objective,
        optimizer: Optimizer::Adam(AdamHyper::default()),
        train_samples: TRAIN_SAMPLES,
        test_samples: TEST_SAMPLES,
        noise,
        seed: 3,
        lr_schedule: None,
        precision: gpu_ae::plan::Precision::F32,
    };
    compile(&model, &pc).expect("valid plan")
}

/// Checks every parameter's gradient on batches 1 (full) and 2 (partial) against central differences of
/// the total.
fn check(plan: &Plan, label: &str) {
    let mut ex = CpuExecutor::<f64>::new(plan.clone());
    let train = random_bytes(TRAIN_SAMPLES * FEATURES, 41);
    let test = random_bytes(TEST_SAMPLES * FEATURES, 42);
    load_initial_state(&mut ex, &train, &test, 7);
    ex.write_u32(plan.io.train_perm, &epoch_permutation(TRAIN_SAMPLES, 7, 0));
    for batch_index in [1u32, 2] {
        ex.write_u32(plan.io.train_state, &[5, batch_index, 0, 0]);
        let valid = kernels::valid_rows(BATCH, TRAIN_SAMPLES, batch_index as usize);
        let largest = check_parameter_gradients(
            &mut ex,
            valid,
            2e-3,
            &format!("{label}, batch {batch_index}"),
        );
        assert!(largest > 1e-3, "{label}: every gradient is tiny");
    }
}

/// A term's own share of the gradient must be large enough that a wrong one fails: each weight below
/// makes its term comparable to the reconstruction.
fn penalties() -> Vec<(&'static str, Term)> {
    vec![
        ("l1", Term::L1 { weight: 0.05 }),
        (
            "kl",
            Term::KlSparsity {
                rho: 0.1,
                weight: 0.3,
            },
        ),
        ("contractive", Term::Contractive { weight: 0.2 }),
    ]
}

#[test]
fn every_term_s_gradient_matches_finite_differences_through_a_whole_model() {
    for (name, term) in penalties() {
        check(
            &plan(Act::Sigmoid, LossKind::BceWithLogits, &[term], None),
            &format!("{name} on a sigmoid code"),
        );
    }
    let all: Vec<Term> = penalties().into_iter().map(|(_, t)| t).collect();
    check(
        &plan(Act::Sigmoid, LossKind::Mse, &all, None),
        "all three penalties, MSE",
    );
    // Other code activations: the contractive slope derivative of tanh (−2h) and of the identity (0);
    // L1's sign on a code of both signs.
    for act in [Act::Tanh, Act::Identity] {
        check(
            &plan(
                act,
                LossKind::BceWithLogits,
                &[Term::Contractive { weight: 0.2 }, Term::L1 { weight: 0.05 }],
                None,
            ),
            &format!("contractive and l1 on a {act:?} code"),
        );
    }
}

#[test]
fn the_emphasised_loss_gradient_matches_finite_differences() {
    for noise in [
        Noise::Mask { fraction: 0.3 },
        Noise::SaltPepper { fraction: 0.4 },
    ] {
        let emphasis = Term::Reconstruction {
            loss: LossKind::BceWithLogits,
            emphasis: Some(Emphasis {
                corrupted: 2.0,
                clean: 0.5,
            }),
            per_image: false,
        };
        check(
            &plan(
                Act::Sigmoid,
                LossKind::BceWithLogits,
                &[emphasis],
                Some(noise),
            ),
            &format!("emphasis 2:0.5 with {noise:?}"),
        );
    }
}

/// The step's every float buffer on the CPU and the GPU, after forward-backward on the last partial
/// batch, for a plan with awkward sizes: 29 inputs, a 300-unit code (two groups of 256 columns), batches
/// of 37 over 60 samples (the second has 23 rows).
#[test]
fn every_term_op_matches_the_cpu_on_awkward_sizes_and_a_partial_batch() {
    let Some(ctx) = gpu() else { return };
    let features = 29;
    let configs: Vec<(&str, Objective, Option<Noise>, Act)> = vec![
        (
            "all penalties",
            Objective::reconstruction(LossKind::BceWithLogits)
                .with(Term::L1 { weight: 1e-3 })
                .with(Term::KlSparsity {
                    rho: 0.05,
                    weight: 0.1,
                })
                .with(Term::Contractive { weight: 0.01 }),
            None,
            Act::Sigmoid,
        ),
        (
            "contractive on tanh",
            Objective::reconstruction(LossKind::Mse).with(Term::Contractive { weight: 0.01 }),
            None,
            Act::Tanh,
        ),
        (
            "emphasis",
            Objective {
                terms: vec![Term::Reconstruction {
                    loss: LossKind::BceWithLogits,
                    emphasis: Some(Emphasis {
                        corrupted: 1.5,
                        clean: 0.25,
                    }),
                    per_image: false,
                }],
            },
            Some(Noise::Mask { fraction: 0.3 }),
            Act::Relu,
        ),
    ];
    for (label, objective, noise, act) in configs {
        let cfg = DenseConfig {
            hidden: vec![],
            latent: 300,
            act,
            code_act: act,
            output_act: Act::Sigmoid,
        };
        let model = dense_ae(Shape::flat(features), &cfg).unwrap();
        let plan = compile(
            &model,
            &PlanConfig {
                batch: 37,
                objective,
                optimizer: Optimizer::Adam(AdamHyper::default()),
                train_samples: 60,
                test_samples: 21,
                noise,
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
            let got = gpu.read_f32(BufId(i));
            assert_close(&format!("{label}: {}", b.name), &got, &want, 2e-4);
        }
        // The padded rows of the partial batch get no gradient from any term.
        let code_grad = plan
            .buffers
            .iter()
            .position(|b| b.name == "layers.0.out.grad")
            .unwrap();
        let g = cpu.read_f32(BufId(code_grad));
        assert!(g[23 * 300..].iter().all(|v| *v == 0.0), "{label}");
        assert!(g[..23 * 300].iter().any(|v| *v != 0.0), "{label}");
        // And whole steps, evaluation included, agree.
        for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
            ex.write_u32(plan.io.train_state, &[0; 4]);
            ex.run(Program::TRAIN_STEP, 2);
            ex.run(Program::EVAL, 1);
        }
        let (want, got) = (
            cpu.read_f32(plan.io.loss_acc),
            gpu.read_f32(plan.io.loss_acc),
        );
        assert_close(&format!("{label}: accumulators"), &got, &want, 1e-3);
    }
}

/// The emphasised loss with weights 1:1 is the plain loss, bit for bit; with other weights the meters of
/// corrupted and untouched components add up to the unweighted loss.
#[test]
fn emphasis_one_to_one_is_the_plain_loss_and_its_meters_split_it() {
    let noise = Some(Noise::Mask { fraction: 0.25 });
    let weighted = |corrupted, clean| Term::Reconstruction {
        loss: LossKind::BceWithLogits,
        emphasis: Some(Emphasis { corrupted, clean }),
        per_image: false,
    };
    let run = |plan: &Plan| {
        let mut ex = CpuExecutor::<f32>::new(plan.clone());
        let train = random_bytes(TRAIN_SAMPLES * FEATURES, 61);
        let test = random_bytes(TEST_SAMPLES * FEATURES, 62);
        load_initial_state(&mut ex, &train, &test, 7);
        ex.write_u32(plan.io.train_perm, &epoch_permutation(TRAIN_SAMPLES, 7, 0));
        ex.run(Program::TRAIN_STEP, 3);
        let params: Vec<Vec<f32>> = plan.params.iter().map(|p| ex.read_f32(p.buf)).collect();
        (ex.read_f32(plan.io.loss_acc), params)
    };
    let plain = plan(Act::Relu, LossKind::BceWithLogits, &[], noise);
    let one = plan(
        Act::Relu,
        LossKind::BceWithLogits,
        &[weighted(1.0, 1.0)],
        noise,
    );
    let (plain_acc, plain_params) = run(&plain);
    let (one_acc, one_params) = run(&one);
    assert_eq!(plain_acc[0].to_bits(), one_acc[0].to_bits());
    assert_eq!(
        plain_params, one_params,
        "1:1 trains exactly as the plain loss"
    );

    let tilted = plan(
        Act::Relu,
        LossKind::BceWithLogits,
        &[weighted(1.0, 0.1)],
        noise,
    );
    let (acc, _) = run(&tilted);
    let slot = |name: &str| 2 * tilted.meters.iter().position(|m| m.name == name).unwrap();
    let (corrupted, clean) = (acc[slot("recon_corrupted")], acc[slot("recon_clean")]);
    let (n_corrupted, n_clean) = (acc[slot("corrupted_count")], acc[slot("clean_count")]);
    // 3 steps over 12 samples of 13 values: every valid component is counted once.
    assert_eq!(n_corrupted + n_clean, (TRAIN_SAMPLES * FEATURES) as f32);
    assert!(n_corrupted > 10.0 && n_clean > 10.0);
    let weighted_sum = acc[slot("recon")];
    assert!(
        (weighted_sum - (corrupted + 0.1 * clean)).abs() <= 1e-4 * weighted_sum,
        "Σ w·l = α Σ m·l + β Σ (1 − m)·l: {weighted_sum} vs {corrupted} + 0.1 · {clean}"
    );
}

#[test]
fn terms_that_do_not_fit_the_model_are_clear_errors() {
    let cfg = DenseConfig {
        hidden: vec![7],
        latent: 6,
        act: Act::Relu,
        code_act: Act::Relu,
        output_act: Act::Sigmoid,
    };
    let model = dense_ae(Shape::flat(FEATURES), &cfg).unwrap();
    let compile_with = |objective, noise| {
        compile(
            &model,
            &PlanConfig {
                batch: BATCH,
                objective,
                optimizer: Optimizer::Adam(AdamHyper::default()),
                train_samples: TRAIN_SAMPLES,
                test_samples: TEST_SAMPLES,
                noise,
                seed: 0,
                lr_schedule: None,
                precision: gpu_ae::plan::Precision::F32,
            },
        )
        .map(|_| ())
        .expect_err("the plan is refused")
        .to_string()
    };
    let kl = compile_with(
        Objective::reconstruction(LossKind::BceWithLogits).with(Term::KlSparsity {
            rho: 0.05,
            weight: 0.1,
        }),
        None,
    );
    assert!(
        kl.contains("KL sparsity") && kl.contains("sigmoid") && kl.contains("relu"),
        "{kl}"
    );
    let emphasis = Objective {
        terms: vec![Term::Reconstruction {
            loss: LossKind::BceWithLogits,
            emphasis: Some(Emphasis {
                corrupted: 1.0,
                clean: 0.5,
            }),
            per_image: false,
        }],
    };
    let none = compile_with(emphasis.clone(), None);
    assert!(
        none.contains("emphasis") && none.contains("no corruption"),
        "{none}"
    );
    let gaussian = compile_with(emphasis, Some(Noise::Gaussian { sigma: 0.3 }));
    assert!(gaussian.contains("Gaussian"), "{gaussian}");
}

/// A penalty's weight lives in the plan's scalar buffer: a value written between steps takes effect at
/// the next step, in the gradients and in the term's accumulated value, on both backends.
#[test]
fn a_weight_written_to_the_scalar_buffer_takes_effect_at_the_next_step() {
    let with_l1 = plan(
        Act::Sigmoid,
        LossKind::BceWithLogits,
        &[Term::L1 { weight: 0.05 }],
        None,
    );
    let without = plan(Act::Sigmoid, LossKind::BceWithLogits, &[], None);
    let weight = with_l1
        .scalar("l1.weight")
        .expect("the L1 weight is a scalar");
    let l1_slot = 2 * with_l1.meters.iter().position(|m| m.name == "l1").unwrap();
    assert_eq!(weight.buf, with_l1.io.scalars);
    fn run(ex: &mut dyn Executor, plan: &Plan, w: Option<f32>) -> (Vec<Vec<f32>>, Vec<f32>) {
        let train = random_bytes(TRAIN_SAMPLES * FEATURES, 71);
        let test = random_bytes(TEST_SAMPLES * FEATURES, 72);
        load_initial_state(ex, &train, &test, 7);
        ex.write_u32(plan.io.train_perm, &epoch_permutation(TRAIN_SAMPLES, 7, 0));
        if let Some(w) = w {
            ex.write_f32(plan.io.scalars, &[w]);
        }
        ex.run(Program::FORWARD_BACKWARD, 1);
        let grads = plan.params.iter().map(|p| ex.read_f32(p.grad)).collect();
        (grads, ex.read_f32(plan.io.loss_acc))
    }
    fn scenario<'a>(
        make: impl Fn(&Plan) -> Box<dyn Executor + 'a>,
        with_l1: &Plan,
        without: &Plan,
        l1_slot: usize,
    ) {
        let (plain, _) = run(&mut *make(without), without, None);
        let (initial, acc_initial) = run(&mut *make(with_l1), with_l1, None);
        let (off, acc_off) = run(&mut *make(with_l1), with_l1, Some(0.0));
        let (double, acc_double) = run(&mut *make(with_l1), with_l1, Some(0.1));
        assert_ne!(initial, plain, "the penalty changes the gradients");
        assert_eq!(off, plain, "weight 0 trains as the model without the term");
        assert_eq!(acc_off[l1_slot], 0.0);
        let ratio = acc_double[l1_slot] / acc_initial[l1_slot];
        assert!(
            (ratio - 2.0).abs() < 1e-5,
            "twice the weight, twice the term: {ratio}"
        );
        assert_ne!(double, initial);
    }
    scenario(
        |p| Box::new(CpuExecutor::<f32>::new(p.clone())),
        &with_l1,
        &without,
        l1_slot,
    );
    if let Some(ctx) = gpu() {
        scenario(
            |p| Box::new(GpuExecutor::new(&ctx, p.clone()).unwrap()),
            &with_l1,
            &without,
            l1_slot,
        );
    }
}
