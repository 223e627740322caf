//! Convolutional autoencoders end to end: whole-step gradients against finite differences (f64 CPU), GPU
//! against CPU for whole training steps, and the CLI's denoising runs.

mod common;

use common::{assert_close, gpu, random_bytes};
use gpu_ae::backend::cpu::{CpuExecutor, kernels};
use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::backend::{Executor, Program, load_initial_state};
use gpu_ae::model::Shape;
use gpu_ae::model::variants::{ConvConfig, Deck, conv_ae};
use gpu_ae::objective::Objective;
use gpu_ae::ops::{Act, AdamHyper, LossKind, Noise};
use gpu_ae::plan::{Optimizer, Plan, PlanConfig, compile};

const SIDE: usize = 8;
const FEATURES: usize = SIDE * SIDE;
const BATCH: usize = 3;
/// 7 samples in batches of 3: batch 2 holds one real row and two padding rows.
const TRAIN_SAMPLES: usize = 7;
const TEST_SAMPLES: usize = 5;

fn small_conv_plan(deck: Deck, act: Act, noise: Option<Noise>, loss: LossKind) -> Plan {
    let cfg = ConvConfig {
        channels: vec![3, 5],
        deck,
        act,
        output_act: Act::Sigmoid,
    };
    let model = conv_ae(
        "conv",
        Shape {
            c: 1,
            h: SIDE,
            w: SIDE,
        },
        &cfg,
    )
    .expect("valid model");
    let pc = PlanConfig {
        batch: BATCH,
        objective: Objective::reconstruction(loss),
        optimizer: Optimizer::Adam(AdamHyper::default()),
        train_samples: TRAIN_SAMPLES,
        test_samples: TEST_SAMPLES,
        noise,
        seed: 11,
        lr_schedule: None,
        precision: gpu_ae::plan::Precision::F32,
    };
    compile(&model, &pc).expect("valid plan")
}

fn loaded<E: Executor>(mut ex: E, seed: u64) -> E {
    let train = random_bytes(TRAIN_SAMPLES * FEATURES, 21);
    let test = random_bytes(TEST_SAMPLES * FEATURES, 22);
    load_initial_state(&mut ex, &train, &test, seed);
    let perm = gpu_ae::rng::epoch_permutation(TRAIN_SAMPLES, seed, 0);
    let io = ex.plan().io;
    ex.write_u32(io.train_perm, &perm);
    ex
}

fn mean_loss(ex: &mut CpuExecutor<f64>, valid: usize) -> f64 {
    let acc = ex.plan().io.loss_acc;
    ex.floats_mut(acc).fill(0.0);
    ex.run(Program::FORWARD_BACKWARD, 1);
    ex.floats(acc)[0] / (valid * FEATURES) as f64
}

/// Every parameter element of batch `batch_index`: central differences (h = 1e-6) against the analytic
/// gradient of the mean loss.
fn check_gradients(plan: Plan, label: &str, batch_index: u32) {
    let mut ex = loaded(CpuExecutor::<f64>::new(plan.clone()), 3);
    ex.write_u32(plan.io.train_state, &[0, batch_index, 0, 0]);
    let valid = kernels::valid_rows(BATCH, TRAIN_SAMPLES, batch_index as usize);
    mean_loss(&mut ex, valid);
    let analytic: Vec<Vec<f64>> = plan
        .params
        .iter()
        .map(|p| ex.floats(p.grad).to_vec())
        .collect();
    let h = 1e-6;
    for (p, grads) in plan.params.iter().zip(&analytic) {
        assert!(
            grads.iter().any(|g| *g != 0.0),
            "{label}: {} has an all-zero gradient",
            p.name
        );
        for (e, &grad) in grads.iter().enumerate() {
            let original = ex.floats(p.buf)[e];
            ex.floats_mut(p.buf)[e] = original + h;
            let plus = mean_loss(&mut ex, valid);
            ex.floats_mut(p.buf)[e] = original - h;
            let minus = mean_loss(&mut ex, valid);
            ex.floats_mut(p.buf)[e] = original;
            let numeric = (plus - minus) / (2.0 * h);
            let scale = grad.abs().max(numeric.abs()).max(2e-3);
            assert!(
                (grad - numeric).abs() <= 1e-5 * scale,
                "{label}: {}[{e}] analytic {grad:e} vs finite difference {numeric:e}",
                p.name
            );
        }
    }
}

#[test]
fn strided_conv_dae_step_gradients_match_finite_difference() {
    // tanh keeps the loss smooth, so every element is checked; the mask noise is fixed by the step key.
    let noise = Some(Noise::Mask { fraction: 0.3 });
    check_gradients(
        small_conv_plan(Deck::Strided, Act::Tanh, noise, LossKind::BceWithLogits),
        "strided, full batch",
        1,
    );
    check_gradients(
        small_conv_plan(Deck::Strided, Act::Tanh, noise, LossKind::Mse),
        "strided, partial batch",
        2,
    );
}

#[test]
fn pooled_conv_ae_step_gradients_match_finite_difference() {
    // Conv-tanh-BatchNorm-MaxPool down, MaxUnpool-Conv up; random data has no ties in a pooling window.
    let plan = small_conv_plan(Deck::Pool, Act::Tanh, None, LossKind::BceWithLogits);
    check_gradients(plan.clone(), "pool deck, full batch", 0);
    check_gradients(plan, "pool deck, partial batch", 2);
}

fn gpu_matches_cpu_over_training_steps(deck: Deck, noise: Option<Noise>) {
    let Some(ctx) = gpu() else { return };
    let plan = small_conv_plan(deck, Act::Relu, noise, LossKind::BceWithLogits);
    let mut cpu = loaded(CpuExecutor::<f32>::new(plan.clone()), 4);
    let mut gpu = loaded(GpuExecutor::new(&ctx, plan.clone()).unwrap(), 4);
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        ex.run(Program::TRAIN_STEP, plan.steps_per_epoch());
        ex.run(Program::EVAL, plan.eval_steps());
    }
    for p in &plan.params {
        let label = format!(
            "{deck:?}: {} after {} steps",
            p.name,
            plan.steps_per_epoch()
        );
        assert_close(&label, &gpu.read_f32(p.buf), &cpu.read_f32(p.buf), 1e-4);
    }
    for s in &plan.stats {
        assert_close(
            &format!("{deck:?}: {}", s.name),
            &gpu.read_f32(s.buf),
            &cpu.read_f32(s.buf),
            1e-4,
        );
    }
    let io = plan.io;
    assert_close(
        "model input",
        &gpu.read_f32(io.model_input),
        &cpu.read_f32(io.model_input),
        1e-4,
    );
    assert_close(
        "loss sums",
        &gpu.read_f32(io.loss_acc),
        &cpu.read_f32(io.loss_acc),
        1e-4,
    );
}

#[test]
fn strided_conv_dae_training_matches_cpu() {
    gpu_matches_cpu_over_training_steps(Deck::Strided, Some(Noise::Gaussian { sigma: 0.5 }));
}

#[test]
fn pooled_conv_ae_training_matches_cpu() {
    gpu_matches_cpu_over_training_steps(Deck::Pool, Some(Noise::SaltPepper { fraction: 0.2 }));
}

#[test]
fn denoising_corrupts_only_the_models_input() {
    let plan = small_conv_plan(
        Deck::Strided,
        Act::Relu,
        Some(Noise::Mask { fraction: 0.5 }),
        LossKind::BceWithLogits,
    );
    let mut ex = loaded(CpuExecutor::<f32>::new(plan.clone()), 5);
    ex.run(Program::FORWARD_BACKWARD, 1);
    let (clean, seen) = (ex.read_f32(plan.io.input), ex.read_f32(plan.io.model_input));
    let zeroed = clean
        .iter()
        .zip(&seen)
        .filter(|(c, s)| **c != 0.0 && **s == 0.0)
        .count();
    assert!(
        zeroed > clean.len() / 4,
        "about half the pixels are masked, {zeroed} of {}",
        clean.len()
    );
    assert!(clean.iter().zip(&seen).all(|(c, s)| *s == 0.0 || s == c));
}
