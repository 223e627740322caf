//! A classifier on the engine: the softmax cross-entropy op against finite differences in f64 (on its own
//! and through a whole classifier), the GPU against the CPU on awkward sizes with a last partial batch
//! (the op, the label gather, whole training steps), and a frozen encoder that trains only its head.

mod common;

use common::{assert_close, check_parameter_gradients, gpu, random, random_bytes};
use gpu_ae::backend::cpu::classify::softmax_cross_entropy;
use gpu_ae::backend::cpu::{CpuExecutor, kernels};
use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::backend::{Executor, Program, load_initial_state, load_labels};
use gpu_ae::model::{Layer, Model, Shape};
use gpu_ae::objective::Objective;
use gpu_ae::ops::classify::{NO_LABEL, softmax_partials};
use gpu_ae::ops::{Act, AdamHyper, BufId, ClassifyOp, Op, state};
use gpu_ae::plan::{BufferDesc, Elem, Optimizer, Plan, PlanConfig, compile};
use gpu_ae::rng::epoch_permutation;

/// A classifier `features` → `hidden` (tanh) → `classes` logits, its first `frozen` layers not trained.
fn classifier(
    features: usize,
    hidden: usize,
    classes: usize,
    batch: usize,
    (train, test): (usize, usize),
    frozen: usize,
) -> Plan {
    let layers = vec![
        Layer::Linear {
            inputs: features,
            outputs: hidden,
            act: Act::Tanh,
        },
        Layer::Linear {
            inputs: hidden,
            outputs: classes,
            act: Act::Identity,
        },
    ];
    let model = Model::classifier("test-classifier", Shape::flat(features), layers, frozen)
        .expect("valid model");
    let pc = PlanConfig {
        batch,
        objective: Objective::classification(classes),
        optimizer: Optimizer::Adam(AdamHyper::default()),
        train_samples: train,
        test_samples: test,
        noise: None,
        seed: 3,
        lr_schedule: None,
        precision: gpu_ae::plan::Precision::F32,
    };
    compile(&model, &pc).expect("valid plan")
}

/// Labels 0..classes for `n` samples, seeded.
fn labels(n: usize, classes: usize, seed: u64) -> Vec<u8> {
    random_bytes(n, seed)
        .into_iter()
        .map(|b| b % classes as u8)
        .collect()
}

/// The summed loss of `logits` against `labels` (every row valid), by the CPU twin in f64.
fn loss_sum(logits: &[f64], labels: &[u32], classes: usize) -> f64 {
    let rows = labels.len();
    let mut grad = vec![0.0; rows * classes];
    let mut partials = vec![0.0; softmax_partials::SECTIONS * ClassifyOp::groups(rows)];
    softmax_cross_entropy(logits, labels, &mut grad, &mut partials, classes, rows);
    partials[..ClassifyOp::groups(rows)].iter().sum()
}

#[test]
fn the_op_s_gradient_is_the_finite_difference_of_its_mean_loss() {
    let (rows, classes) = (6, 5);
    let logits: Vec<f64> = random(rows * classes, 11, 4.0)
        .into_iter()
        .map(f64::from)
        .collect();
    let labels: Vec<u32> = (0..rows as u32).map(|r| (r * 3) % classes as u32).collect();
    let mut grad = vec![0.0; rows * classes];
    let mut partials = vec![0.0; 2];
    softmax_cross_entropy(&logits, &labels, &mut grad, &mut partials, classes, rows);
    const STEP: f64 = 1e-6;
    for i in 0..logits.len() {
        let mut shifted = logits.clone();
        shifted[i] += STEP;
        let plus = loss_sum(&shifted, &labels, classes);
        shifted[i] -= 2.0 * STEP;
        let minus = loss_sum(&shifted, &labels, classes);
        let numeric = (plus - minus) / (2.0 * STEP) / rows as f64;
        assert!(
            (grad[i] - numeric).abs() <= 1e-6 * grad[i].abs().max(1e-2),
            "logit {i}: analytic {} vs finite difference {numeric}",
            grad[i]
        );
    }
    // The accuracy section counts the rows whose largest logit is the label.
    let correct = (0..rows)
        .filter(|&r| {
            let z = &logits[r * classes..(r + 1) * classes];
            let best = (0..classes).fold(0, |b, j| if z[j] > z[b] { j } else { b });
            best == labels[r] as usize
        })
        .count();
    assert_eq!(partials[1], correct as f64);
}

#[test]
fn the_loss_stays_finite_for_huge_logits() {
    let logits = [1000.0f32, -1000.0, 0.0, 999.0];
    let mut grad = [0.0f32; 4];
    let mut partials = [0.0f32; 2];
    softmax_cross_entropy(&logits, &[1, 0], &mut grad, &mut partials, 2, 2);
    assert!(grad.iter().all(|g| g.is_finite()));
    // Row 0: −ln p₁ = 2000; row 1: p₀ ≈ 0 (1000 below), −ln p₀ = 999.
    assert!((partials[0] - 2999.0).abs() < 1e-2, "{partials:?}");
    assert_eq!(partials[1], 0.0, "neither row is right");
}

#[test]
fn the_cross_entropy_gradient_matches_finite_differences_through_a_whole_classifier() {
    let (features, batch, train, test) = (13, 5, 12, 4);
    let plan = classifier(features, 7, 4, batch, (train, test), 0);
    let mut ex = CpuExecutor::<f64>::new(plan.clone());
    load_initial_state(
        &mut ex,
        &random_bytes(train * features, 41),
        &random_bytes(test * features, 42),
        7,
    );
    load_labels(&mut ex, &labels(train, 4, 43), &labels(test, 4, 44));
    ex.write_u32(plan.io.train_perm, &epoch_permutation(train, 7, 0));
    // Batch 1 is full, batch 2 holds 2 real rows and 3 padded ones.
    for batch_index in [1u32, 2] {
        ex.write_u32(plan.io.train_state, &[5, batch_index, 0, 0]);
        let valid = kernels::valid_rows(batch, train, batch_index as usize);
        let largest = check_parameter_gradients(
            &mut ex,
            valid,
            2e-3,
            &format!("classifier, batch {batch_index}"),
        );
        assert!(largest > 1e-2, "every gradient is tiny");
    }
}

#[test]
fn a_frozen_encoder_keeps_its_values_and_its_head_gets_the_same_gradient() {
    let (features, batch, train, test) = (13, 5, 12, 4);
    let run = |frozen: usize| {
        let plan = classifier(features, 7, 4, batch, (train, test), frozen);
        let mut ex = CpuExecutor::<f32>::new(plan.clone());
        load_initial_state(
            &mut ex,
            &random_bytes(train * features, 41),
            &random_bytes(test * features, 42),
            7,
        );
        load_labels(&mut ex, &labels(train, 4, 43), &labels(test, 4, 44));
        ex.write_u32(plan.io.train_perm, &epoch_permutation(train, 7, 0));
        let before: Vec<Vec<f32>> = plan.params.iter().map(|p| ex.read_f32(p.buf)).collect();
        ex.run(Program::TRAIN_STEP, 1);
        let grads: Vec<Vec<f32>> = plan.params.iter().map(|p| ex.read_f32(p.grad)).collect();
        let after: Vec<Vec<f32>> = plan.params.iter().map(|p| ex.read_f32(p.buf)).collect();
        (plan, before, grads, after)
    };
    let (_, _, all_grads, _) = run(0);
    let (plan, before, grads, after) = run(1);
    // layers.0.weight and .bias are frozen; layers.1.* train with the gradient the full model gives them.
    assert_eq!(plan.params[0].name, "layers.0.weight");
    assert!(!plan.params[0].trainable && !plan.params[1].trainable);
    assert_eq!(before[..2], after[..2], "the frozen layer kept its values");
    assert_ne!(before[2..], after[2..], "the head trained");
    assert_eq!(
        grads[2..],
        all_grads[2..],
        "the head's gradient is the full model's"
    );
    // No backward op of layer 0 ran: its weight gradient was never written.
    assert!(grads[0].iter().all(|g| *g == 0.0));
    assert!(all_grads[0].iter().any(|g| *g != 0.0));
}

#[test]
fn label_gather_and_cross_entropy_match_the_cpu_on_a_partial_batch() {
    let Some(ctx) = gpu() else { return };
    // The gather: 23 samples in batches of 10, batch 2 holds 3 real rows.
    let (samples, rows) = (23, 10);
    let data: Vec<u32> = (0..samples as u32).map(|i| (i * 7) % 10).collect();
    let perm = epoch_permutation(samples, 3, 0);
    let gather = Plan::from_ops(
        vec![
            BufferDesc::u32("labels", samples),
            BufferDesc::u32("perm", samples),
            BufferDesc::u32("state", state::LEN),
            BufferDesc::u32("out", rows),
        ],
        vec![Op::Classify(ClassifyOp::GatherLabels {
            labels: BufId(0),
            perm: BufId(1),
            state: BufId(2),
            out: BufId(3),
            rows,
            samples,
        })],
    );
    let mut cpu = CpuExecutor::<f32>::new(gather.clone());
    let mut gpu = GpuExecutor::new(&ctx, gather).unwrap();
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        ex.write_u32(BufId(0), &data);
        ex.write_u32(BufId(1), &perm);
        ex.write_u32(BufId(2), &[0, 2, 0, 0]);
        ex.run(Program::FORWARD_BACKWARD, 1);
    }
    let got = gpu.read_u32(BufId(3));
    assert_eq!(got, cpu.read_u32(BufId(3)));
    assert_eq!(got[..3], [20, 21, 22].map(|p| data[perm[p] as usize]));
    assert!(got[3..].iter().all(|l| *l == NO_LABEL));

    // The loss: 300 rows (two groups of 256), 277 valid, for 7 and 10 classes.
    for classes in [7usize, 10] {
        let (rows, valid) = (300, 277);
        let mut row_labels: Vec<u32> = (0..rows as u32)
            .map(|r| (r * 5 + 1) % classes as u32)
            .collect();
        row_labels[valid..].iter_mut().for_each(|l| *l = NO_LABEL);
        let groups = ClassifyOp::groups(rows);
        let plan = Plan::from_ops(
            vec![
                BufferDesc::f32("logits", rows * classes),
                BufferDesc::u32("labels", rows),
                BufferDesc::f32("grad", rows * classes),
                BufferDesc::f32("partials", softmax_partials::SECTIONS * groups),
                BufferDesc::u32("state", state::LEN),
            ],
            vec![Op::Classify(ClassifyOp::SoftmaxCrossEntropy {
                logits: BufId(0),
                labels: BufId(1),
                grad: BufId(2),
                partials: BufId(3),
                state: BufId(4),
                rows,
                classes,
            })],
        );
        let mut cpu = CpuExecutor::<f32>::new(plan.clone());
        let mut gpu = GpuExecutor::new(&ctx, plan).unwrap();
        for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
            ex.write_f32(BufId(0), &random(rows * classes, 17, 3.0));
            ex.write_u32(BufId(1), &row_labels);
            ex.write_u32(BufId(4), &[0, 0, valid as u32, 0]);
            ex.run(Program::FORWARD_BACKWARD, 1);
        }
        let (want, got) = (cpu.read_f32(BufId(2)), gpu.read_f32(BufId(2)));
        assert_close(&format!("{classes} classes: grad"), &got, &want, 1e-5);
        assert!(want[valid * classes..].iter().all(|g| *g == 0.0));
        let (want, got) = (cpu.read_f32(BufId(3)), gpu.read_f32(BufId(3)));
        assert_close(&format!("{classes} classes: partials"), &got, &want, 1e-5);
        // Counts are exact.
        assert_eq!(got[groups..], want[groups..]);
    }
}

/// Whole steps of a classifier with awkward sizes (29 inputs, 33 hidden units, 10 classes, batches of
/// 37 over 60 samples): every float buffer after forward-backward on the partial batch, then the
/// accumulators after training steps and an evaluation.
#[test]
fn classifier_steps_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let (features, train, test) = (29, 60, 21);
    let plan = classifier(features, 33, 10, 37, (train, test), 0);
    let (train_pixels, test_pixels) = (
        random_bytes(train * features, 51),
        random_bytes(test * features, 52),
    );
    let mut cpu = CpuExecutor::<f32>::new(plan.clone());
    let mut gpu = GpuExecutor::new(&ctx, plan.clone()).unwrap();
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        load_initial_state(ex, &train_pixels, &test_pixels, 5);
        load_labels(ex, &labels(train, 10, 53), &labels(test, 10, 54));
        ex.write_u32(plan.io.train_perm, &epoch_permutation(train, 9, 0));
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
        assert_close(&b.name, &got, &want, 2e-4);
    }
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        ex.write_u32(plan.io.train_state, &[0; 4]);
        ex.run(Program::TRAIN_STEP, 2);
        ex.run(Program::EVAL, 1);
    }
    let (want, got) = (
        cpu.read_f32(plan.io.loss_acc),
        gpu.read_f32(plan.io.loss_acc),
    );
    assert_close("accumulators", &got, &want, 1e-4);
}
