//! Finite-difference gradient checks in f64 on the CPU backend, and independent references for the
//! optimizers: the CPU twins are the reference the GPU is held to, so they are checked against the math.

mod common;

use common::random_bytes;
use gpu_ae::backend::cpu::{CpuExecutor, kernels};
use gpu_ae::backend::{Executor, Program, load_initial_state};
use gpu_ae::model::Shape;
use gpu_ae::model::variants::{DenseConfig, dense_ae};
use gpu_ae::objective::Objective;
use gpu_ae::ops::{Act, AdamHyper, LossKind, state};
use gpu_ae::plan::{Optimizer, Plan, PlanConfig, compile};
use gpu_ae::rng::{SplitMix64, epoch_permutation, purpose};

const ACTS: [Act; 5] = [
    Act::Identity,
    Act::Relu,
    Act::LeakyRelu,
    Act::Sigmoid,
    Act::Tanh,
];
/// (loss, output activation) pairs the plan accepts.
const LOSSES: [(LossKind, Act); 5] = [
    (LossKind::BceWithLogits, Act::Sigmoid),
    (LossKind::Mse, Act::Sigmoid),
    (LossKind::Mse, Act::Identity),
    (LossKind::L1, Act::Sigmoid),
    (LossKind::L1, Act::Identity),
];

const FEATURES: usize = 13;
const BATCH: usize = 5;
/// 12 samples in batches of 5: batches 0 and 1 are full, batch 2 holds 2 real rows and 3 padding rows.
const TRAIN_SAMPLES: usize = 12;
const TEST_SAMPLES: usize = 4;
const STEP: f64 = 1e-6;

/// |a − n| ≤ rel · max(|a|, |n|, floor).
fn assert_gradient_close(what: &str, analytic: f64, numeric: f64, rel: f64, floor: f64) {
    let scale = analytic.abs().max(numeric.abs()).max(floor);
    let err = (analytic - numeric).abs();
    assert!(
        err <= rel * scale && analytic.is_finite(),
        "{what}: analytic {analytic:e} vs finite difference {numeric:e} (|error| {err:e} > {rel:e} × {scale:e})"
    );
}

/// 13 → 7 → 3 → 7 → 13 with `act` on the hidden layers and the code.
fn tiny_plan(act: Act, loss: LossKind, output_act: Act) -> Plan {
    let cfg = DenseConfig {
        hidden: vec![7],
        latent: 3,
        act,
        code_act: act,
        output_act,
    };
    let model = dense_ae(Shape::flat(FEATURES), &cfg).expect("valid model");
    let pc = PlanConfig {
        batch: BATCH,
        objective: Objective::reconstruction(loss),
        optimizer: Optimizer::Adam(AdamHyper::default()),
        train_samples: TRAIN_SAMPLES,
        test_samples: TEST_SAMPLES,
        noise: None,
        seed: 0,
        lr_schedule: None,
        precision: gpu_ae::plan::Precision::F32,
    };
    compile(&model, &pc).expect("valid plan")
}

/// The mean loss of the batch at the current parameters (runs `ForwardBackward`, so gradients are rewritten).
fn mean_loss(ex: &mut CpuExecutor<f64>, valid_rows: usize) -> f64 {
    let acc = ex.plan().io.loss_acc;
    ex.floats_mut(acc).fill(0.0);
    ex.run(Program::FORWARD_BACKWARD, 1);
    ex.floats(acc)[0] / (valid_rows * FEATURES) as f64
}

/// Hidden activations (`layers.i.out` of every layer but the last), which are the kinks' witnesses.
fn hidden_signs(ex: &CpuExecutor<f64>) -> Vec<bool> {
    let plan = ex.plan();
    let last = plan.params.len() / 2 - 1;
    (0..last)
        .flat_map(|i| {
            let id = plan
                .buffers
                .iter()
                .position(|b| b.name == format!("layers.{i}.out"))
                .expect("hidden output buffer");
            ex.floats(gpu_ae::ops::BufId(id))
                .iter()
                .map(|v| *v > 0.0)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Checks every parameter element of one batch; returns (elements checked, elements skipped at a kink).
fn check_batch(
    ex: &mut CpuExecutor<f64>,
    batch_index: u32,
    label: &str,
    kinked: bool,
) -> (usize, usize) {
    let plan = ex.plan().clone();
    ex.write_u32(plan.io.train_state, &[0, batch_index, 0, 0]);
    let valid = kernels::valid_rows(BATCH, TRAIN_SAMPLES, batch_index as usize);
    mean_loss(ex, valid);
    let analytic: Vec<Vec<f64>> = plan
        .params
        .iter()
        .map(|p| ex.floats(p.grad).to_vec())
        .collect();
    assert!(
        analytic.iter().flatten().any(|g| *g != 0.0),
        "{label}: every gradient is zero"
    );
    let signs = hidden_signs(ex);
    let (mut checked, mut skipped) = (0, 0);
    for (p, grads) in plan.params.iter().zip(&analytic) {
        for (e, &grad) in grads.iter().enumerate() {
            let original = ex.floats(p.buf)[e];
            ex.floats_mut(p.buf)[e] = original + STEP;
            let plus = mean_loss(ex, valid);
            let plus_signs = hidden_signs(ex);
            ex.floats_mut(p.buf)[e] = original - STEP;
            let minus = mean_loss(ex, valid);
            let minus_signs = hidden_signs(ex);
            ex.floats_mut(p.buf)[e] = original;
            assert!(
                plus.is_finite() && minus.is_finite(),
                "{label}: non-finite loss"
            );
            if kinked && (plus_signs != signs || minus_signs != signs) {
                skipped += 1;
                continue;
            }
            let numeric = (plus - minus) / (2.0 * STEP);
            // Rounding in the loss (~1e-16 · |L| / h) limits the difference quotient to about ±5e-10 absolute
            // (measured over all 30 cases; gradients above 1e-3 agree to 2e-7 relative), hence the floor of
            // 2e-3: below it the tolerance is 2e-9 absolute.
            assert_gradient_close(
                &format!("{label}: {}[{e}]", p.name),
                grad,
                numeric,
                1e-6,
                2e-3,
            );
            checked += 1;
        }
    }
    (checked, skipped)
}

#[test]
fn dense_ae_step_gradients_match_finite_difference() {
    for act in ACTS {
        for (loss, output_act) in LOSSES {
            let plan = tiny_plan(act, loss, output_act);
            let mut ex = CpuExecutor::<f64>::new(plan.clone());
            let train = random_bytes(TRAIN_SAMPLES * FEATURES, 31);
            let test = random_bytes(TEST_SAMPLES * FEATURES, 32);
            load_initial_state(&mut ex, &train, &test, 7);
            ex.write_u32(plan.io.train_perm, &epoch_permutation(TRAIN_SAMPLES, 7, 0));
            let kinked = matches!(act, Act::Relu | Act::LeakyRelu);
            for (batch_index, kind) in [(1, "full"), (2, "partial")] {
                let label = format!(
                    "{act:?} hidden, {loss:?} with {output_act:?} output, {kind} batch {batch_index}"
                );
                let (checked, skipped) = check_batch(&mut ex, batch_index, &label, kinked);
                assert_eq!(
                    checked + skipped,
                    plan.params
                        .iter()
                        .map(|p| p.shape.iter().product::<usize>())
                        .sum::<usize>()
                );
                // With h = 1e-6 a kink is crossed only by a pre-activation within ~1e-6 of zero: the seeds are
                // chosen so that none is, so every element is really checked.
                assert_eq!(skipped, 0, "{label}: {skipped} elements crossed a kink");
            }
        }
    }
}

#[test]
fn activation_slopes_match_finite_difference() {
    let h = 1e-6;
    for act in ACTS {
        for i in 0..=160 {
            let x = -8.0 + 0.1 * i as f64 + 0.0123;
            if matches!(act, Act::Relu | Act::LeakyRelu) && x.abs() < 1e-3 {
                continue;
            }
            let y = kernels::activate(x, act);
            let analytic = kernels::activation_slope(y, act);
            let numeric =
                (kernels::activate(x + h, act) - kernels::activate(x - h, act)) / (2.0 * h);
            assert_gradient_close(&format!("{act:?}'({x})"), analytic, numeric, 1e-6, 1e-3);
        }
    }
    // ReLU's and LeakyReLU's one-sided slopes, exactly.
    assert_eq!(
        kernels::activation_slope(kernels::activate(-0.5f64, Act::Relu), Act::Relu),
        0.0
    );
    assert_eq!(
        kernels::activation_slope(kernels::activate(-0.5f64, Act::LeakyRelu), Act::LeakyRelu),
        0.01f32 as f64
    );
}

#[test]
fn loss_gradients_match_finite_difference() {
    let h = 1e-6;
    let mut zs: Vec<f64> = (0..=60).map(|i| -6.0 + 0.2 * i as f64 + 0.0071).collect();
    zs.extend([-30.0, -25.0, 25.0, 30.0]);
    let xs = [0.0, 0.1, 0.5, 0.77, 1.0];
    for (kind, output_act) in LOSSES {
        for &z in &zs {
            for &x in &xs {
                let what = format!("{kind:?}/{output_act:?} at z = {z}, x = {x}");
                let (l, dz, y) = kernels::loss_element(kind, output_act, z, x);
                assert!(
                    l.is_finite() && dz.is_finite() && y.is_finite(),
                    "{what}: ({l}, {dz}, {y})"
                );
                assert!(
                    l >= 0.0 || (kind == LossKind::BceWithLogits && l > -1e-12),
                    "{what}: negative loss {l}"
                );
                assert_eq!(
                    y,
                    kernels::activate(z, output_act),
                    "{what}: reconstruction"
                );
                let numeric = (kernels::loss_element(kind, output_act, z + h, x).0
                    - kernels::loss_element(kind, output_act, z - h, x).0)
                    / (2.0 * h);
                // At |z| = 30 the loss is ~30, so FD rounding is ~1e-16·30/1e-6 absolute.
                assert_gradient_close(&what, dz, numeric, 1e-6, 1e-3);
            }
        }
    }
    // BCE stays finite and accurate far beyond where a naive log(σ(z)) overflows, in f32 too.
    for z in [-100.0f32, -30.0, 30.0, 100.0] {
        let (l, dz, _) = kernels::loss_element(LossKind::BceWithLogits, Act::Sigmoid, z, 0.25f32);
        let want = (z.max(0.0) - 0.25 * z) as f64;
        assert!(
            (l as f64 - want).abs() <= 1e-5 * want.abs(),
            "BCE f32 at z = {z}: {l} vs {want}"
        );
        assert!(dz.is_finite(), "BCE f32 gradient at z = {z}");
    }
}

/// torch.optim.Adam's update for one scalar (weight_decay as L2, amsgrad off), written from its docs.
struct ScalarAdam {
    m: f64,
    v: f64,
    t: i32,
}

impl ScalarAdam {
    fn step(&mut self, p: f64, g: f64, h: AdamHyper) -> f64 {
        let (lr, b1, b2, eps, wd) = (
            h.lr as f64,
            h.beta1 as f64,
            h.beta2 as f64,
            h.eps as f64,
            h.weight_decay as f64,
        );
        self.t += 1;
        let g = g + wd * p;
        self.m = b1 * self.m + (1.0 - b1) * g;
        self.v = b2 * self.v + (1.0 - b2) * g * g;
        let m_hat = self.m / (1.0 - b1.powi(self.t));
        let v_hat = self.v / (1.0 - b2.powi(self.t));
        p - lr * m_hat / (v_hat.sqrt() + eps)
    }
}

fn fixture(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::stream(seed, purpose::TEST_FIXTURE, len as u64);
    (0..len).map(|_| rng.next_f64() * 2.0 - 1.0).collect()
}

#[test]
fn adam_matches_a_scalar_reference() {
    let hyper = AdamHyper {
        lr: 0.01,
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.05,
        decoupled: false,
    };
    let len = 6;
    let mut param = fixture(len, 41);
    let (mut m, mut v) = (vec![0.0; len], vec![0.0; len]);
    let mut reference: Vec<(f64, ScalarAdam)> = param
        .iter()
        .map(|&p| {
            (
                p,
                ScalarAdam {
                    m: 0.0,
                    v: 0.0,
                    t: 0,
                },
            )
        })
        .collect();
    for t in 1..=3u32 {
        let grad = fixture(len, 42 + t as u64);
        kernels::adam(&mut param, &grad, &mut m, &mut v, t, hyper);
        for ((p, adam), g) in reference.iter_mut().zip(&grad) {
            *p = adam.step(*p, *g, hyper);
        }
        for (i, ((got, (want, adam)), (m, v))) in param
            .iter()
            .zip(&reference)
            .zip(m.iter().zip(&v))
            .enumerate()
        {
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "adam step {t} param {i}: {got} vs {want}"
            );
            assert!(
                (m - adam.m).abs() <= 1e-14 && (v - adam.v).abs() <= 1e-14,
                "adam step {t} moments {i}"
            );
        }
    }
    // The first step of Adam moves every parameter by about lr, whatever the gradient's size.
    let mut p = [1.0f64];
    kernels::adam(
        &mut p,
        &[1e-3],
        &mut [0.0],
        &mut [0.0],
        1,
        AdamHyper {
            weight_decay: 0.0,
            ..hyper
        },
    );
    assert!(
        (1.0 - p[0] - 0.01).abs() < 1e-6,
        "first step {}",
        1.0 - p[0]
    );
}

#[test]
fn sgd_matches_a_scalar_reference() {
    let (lr, momentum, weight_decay) = (0.05f32, 0.9f32, 0.01f32);
    let len = 6;
    let mut param = fixture(len, 51);
    let mut velocity = vec![0.0; len];
    let mut reference: Vec<(f64, Option<f64>)> = param.iter().map(|&p| (p, None)).collect();
    for t in 1..=3u64 {
        let grad = fixture(len, 52 + t);
        kernels::sgd(&mut param, &grad, &mut velocity, lr, momentum, weight_decay);
        // torch.optim.SGD (dampening 0, nesterov off): the buffer starts as the first gradient.
        for ((p, buf), g) in reference.iter_mut().zip(&grad) {
            let g = g + weight_decay as f64 * *p;
            let b = match *buf {
                None => g,
                Some(b) => momentum as f64 * b + g,
            };
            *buf = Some(b);
            *p -= lr as f64 * b;
        }
        for (i, (got, (want, _))) in param.iter().zip(&reference).enumerate() {
            assert!(
                (got - want).abs() <= 1e-12,
                "sgd step {t} param {i}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn cpu_training_is_bit_reproducible() {
    let run = || {
        let plan = tiny_plan(Act::Relu, LossKind::BceWithLogits, Act::Sigmoid);
        let mut ex = CpuExecutor::<f32>::new(plan.clone());
        load_initial_state(
            &mut ex,
            &random_bytes(TRAIN_SAMPLES * FEATURES, 61),
            &random_bytes(TEST_SAMPLES * FEATURES, 62),
            3,
        );
        ex.write_u32(plan.io.train_perm, &epoch_permutation(TRAIN_SAMPLES, 3, 0));
        ex.run(Program::TRAIN_STEP, plan.steps_per_epoch());
        ex.write_u32(
            plan.io.train_state,
            &[plan.steps_per_epoch() as u32, 0, 0, 0],
        );
        ex.write_u32(plan.io.train_perm, &epoch_permutation(TRAIN_SAMPLES, 3, 1));
        ex.run(Program::TRAIN_STEP, 2);
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<u32>>();
        let params: Vec<Vec<u32>> = plan
            .params
            .iter()
            .map(|p| bits(ex.read_f32(p.buf)))
            .collect();
        assert_eq!(ex.read_u32(plan.io.train_state)[state::GLOBAL_STEP], 5);
        (params, bits(ex.read_f32(plan.io.loss_acc)))
    };
    let (first, second) = (run(), run());
    assert_eq!(first.1, second.1, "loss sums differ between identical runs");
    assert!(first.1[0] != 0, "no loss was accumulated");
    assert_eq!(
        first.0, second.0,
        "parameters differ between identical runs"
    );
}
