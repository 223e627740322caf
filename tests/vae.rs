//! The variational autoencoder's ops and models: the reparameterisation and the Gaussian KL checked by
//! finite differences in f64 on their own (ε held fixed) and through whole dense and convolutional VAEs,
//! the GPU against the CPU on awkward sizes (the same ε, a last partial batch), ε's stream apart from the
//! corruption's, the KL warm-up, the encode and decode programs, and a resumed run repeating an
//! uninterrupted one exactly.

mod common;

use common::{assert_close, batch_objective, check_parameter_gradients, gpu, random, random_bytes};
use gpu_ae::backend::cpu::{CpuExecutor, kernels};
use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::backend::{Executor, Program, load_initial_state};
use gpu_ae::model::variants::{ConvConfig, Deck, DenseConfig, conv_vae, dense_vae};
use gpu_ae::model::{Model, Shape};
use gpu_ae::objective::{Objective, Term};
use gpu_ae::ops::{AdamHyper, BufId, LossKind, Noise, Op, Scalar, VaeOp, state};
use gpu_ae::plan::{BufferDesc, Elem, Optimizer, Plan, PlanConfig, compile};
use gpu_ae::rng::epoch_permutation;

const STEP: f64 = 1e-6;

/// reconstruction per image + β·KL, β warmed up over `warmup` epochs when > 0.
fn vae_objective(beta: f32, warmup: usize) -> Objective {
    Objective {
        terms: vec![
            Term::Reconstruction {
                loss: LossKind::BceWithLogits,
                emphasis: None,
                per_image: true,
            },
            Term::GaussianKl {
                weight: beta,
                warmup_epochs: warmup,
            },
        ],
    }
}

fn plan_for(model: &Model, objective: Objective, batch: usize, samples: (usize, usize)) -> Plan {
    plan_with_noise(model, objective, batch, samples, None)
}

fn plan_with_noise(
    model: &Model,
    objective: Objective,
    batch: usize,
    (train_samples, test_samples): (usize, usize),
    noise: Option<Noise>,
) -> Plan {
    compile(
        model,
        &PlanConfig {
            batch,
            objective,
            optimizer: Optimizer::Adam(AdamHyper::default()),
            train_samples,
            test_samples,
            noise,
            seed: 11,
            lr_schedule: None,
            precision: gpu_ae::plan::Precision::F32,
        },
    )
    .expect("a valid plan")
}

/// features → 7 → (μ, log σ² of `latent`) → z → 7 → features, ReLU, sigmoid output.
fn small_vae(features: usize, latent: usize) -> Model {
    dense_vae(
        Shape::flat(features),
        &DenseConfig {
            hidden: vec![7],
            latent,
            act: gpu_ae::ops::Act::Relu,
            code_act: gpu_ae::ops::Act::Identity,
            output_act: gpu_ae::ops::Act::Sigmoid,
        },
    )
    .unwrap()
}

/// 1×6×6 images, conv 1→3→4 (stride 2: 6 → 3 → 2), μ and log σ² of 2, decoded back through transposed convs.
fn small_conv_vae() -> Model {
    conv_vae(
        "conv-vae",
        Shape { c: 1, h: 6, w: 6 },
        &ConvConfig {
            channels: vec![3, 4],
            deck: Deck::Strided,
            act: gpu_ae::ops::Act::Tanh,
            output_act: gpu_ae::ops::Act::Sigmoid,
        },
        2,
    )
    .unwrap()
}

/// An f64 CPU executor of `plan` with random data and parameters, on epoch 0's order.
fn f64_executor(plan: &Plan, features: usize, seed: u64) -> CpuExecutor<f64> {
    let mut ex = CpuExecutor::<f64>::new(plan.clone());
    let train = random_bytes(plan.train_samples * features, seed);
    let test = random_bytes(plan.test_samples * features, seed + 1);
    load_initial_state(&mut ex, &train, &test, 7);
    ex.write_u32(
        plan.io.train_perm,
        &epoch_permutation(plan.train_samples, 7, 0),
    );
    ex
}

/// Every parameter's gradient against central differences of the total, on a full batch and the last,
/// partial one, at global step `step` (which keys ε, held fixed by the repeated forward passes).
fn check_whole_model(plan: &Plan, features: usize, step: u32, label: &str) {
    let mut ex = f64_executor(plan, features, 41);
    let steps = plan.steps_per_epoch() as u32;
    for batch_index in [0, steps - 1] {
        ex.write_u32(plan.io.train_state, &[step, batch_index, 0, 0]);
        let valid = kernels::valid_rows(plan.batch, plan.train_samples, batch_index as usize);
        let largest = check_parameter_gradients(
            &mut ex,
            valid,
            1e-2,
            &format!("{label}, batch {batch_index}"),
        );
        assert!(largest > 1e-2, "{label}: every gradient is tiny");
    }
}

#[test]
fn a_whole_vae_s_gradient_matches_finite_differences() {
    // 13 → 7 → (3, 3) → 7 → 13 over 12 samples in batches of 5 (the last holds 2 real rows).
    let model = small_vae(13, 3);
    check_whole_model(
        &plan_for(&model, vae_objective(0.7, 0), 5, (12, 4)),
        13,
        5,
        "dense VAE, β 0.7",
    );
    // Warmed up over 2 epochs of 3 steps: at step 5 the weight is 0.7 · 5/6, in the total and the gradient.
    check_whole_model(
        &plan_for(&model, vae_objective(0.7, 2), 5, (12, 4)),
        13,
        5,
        "dense VAE, β warming up",
    );
    check_whole_model(
        &plan_for(&small_conv_vae(), vae_objective(2.0, 0), 3, (5, 2)),
        36,
        2,
        "conv VAE, β 2",
    );
}

// Buffers of the op-level checks.
const STATS: BufId = BufId(0);
const Z: BufId = BufId(1);
const EPS: BufId = BufId(2);
const DZ: BufId = BufId(3);
const DSTATS: BufId = BufId(4);
const STATE: BufId = BufId(5);
const PARTIALS: BufId = BufId(6);
const SCALARS: BufId = BufId(7);

/// stats [rows × 2·latent] → z with ε on stream 2, its backward from dz, the KL's partials and gradient
/// (weight in scalar 0).
fn vae_op_plan(rows: usize, latent: usize) -> Plan {
    let n = rows * latent;
    let buffers = vec![
        BufferDesc::f32("stats", 2 * n),
        BufferDesc::f32("z", n),
        BufferDesc::f32("eps", n),
        BufferDesc::f32("dz", n),
        BufferDesc::f32("dstats", 2 * n),
        BufferDesc::u32("state", state::LEN),
        BufferDesc::f32("partials", n.div_ceil(256)),
        BufferDesc::f32("scalars", 1),
    ];
    let ops = vec![
        Op::Vae(VaeOp::Reparameterize {
            stats: STATS,
            z: Z,
            eps: EPS,
            state: STATE,
            rows,
            latent,
            seed: 17,
            stream: 2,
        }),
        Op::Vae(VaeOp::ReparameterizeBackward {
            dz: DZ,
            eps: EPS,
            stats: STATS,
            dstats: DSTATS,
            rows,
            latent,
        }),
        Op::Vae(VaeOp::GaussianKl {
            stats: STATS,
            partials: PARTIALS,
            state: STATE,
            rows,
            latent,
        }),
        Op::Vae(VaeOp::GaussianKlGrad {
            stats: STATS,
            dstats: DSTATS,
            state: STATE,
            rows,
            latent,
            weight: Scalar {
                buf: SCALARS,
                index: 0,
            },
        }),
    ];
    Plan::from_ops(buffers, ops)
}

/// The reparameterisation on its own: L = Σ c·z (c = dz), so ∂L/∂stats is its backward; the KL on its
/// own: L = w·(Σ over valid rows of KL)/valid, whose gradient its kernel adds. Checked together (the
/// gradients add) and apart, by central differences in f64 with ε held fixed (the step does not move).
#[test]
fn the_reparameterisation_and_the_kl_match_finite_differences() {
    let (rows, latent, valid) = (5, 3, 3);
    let n = rows * latent;
    let plan = vae_op_plan(rows, latent);
    for (weight, c) in [(0.0f32, 1.0f32), (0.8, 0.0), (0.8, 1.0)] {
        let mut ex = CpuExecutor::<f64>::new(plan.clone());
        ex.write_f32(STATS, &random(2 * n, 3, 1.2));
        let dz: Vec<f32> = random(n, 4, 1.0).iter().map(|v| v * c).collect();
        ex.write_f32(DZ, &dz);
        ex.write_f32(SCALARS, &[weight]);
        let mut words = [0u32; state::LEN];
        (words[state::GLOBAL_STEP], words[state::VALID_ROWS]) = (9, valid as u32);
        ex.write_u32(STATE, &words);
        let loss = |ex: &mut CpuExecutor<f64>| {
            ex.run(Program::FORWARD_BACKWARD, 1);
            let linear: f64 = ex
                .floats(Z)
                .iter()
                .zip(&dz)
                .map(|(z, &d)| z * d as f64)
                .sum();
            let kl: f64 = ex.floats(PARTIALS).iter().sum();
            linear + weight as f64 * kl / valid as f64
        };
        loss(&mut ex);
        let analytic = ex.floats(DSTATS).to_vec();
        let mut nonzero = 0;
        for (e, &grad) in analytic.iter().enumerate() {
            let original = ex.floats(STATS)[e];
            ex.floats_mut(STATS)[e] = original + STEP;
            let plus = loss(&mut ex);
            ex.floats_mut(STATS)[e] = original - STEP;
            let minus = loss(&mut ex);
            ex.floats_mut(STATS)[e] = original;
            let numeric = (plus - minus) / (2.0 * STEP);
            let scale = grad.abs().max(numeric.abs()).max(1e-3);
            assert!(
                (grad - numeric).abs() <= 1e-6 * scale,
                "weight {weight}, dz × {c}: stats[{e}]: analytic {grad} vs finite difference {numeric}"
            );
            nonzero += usize::from(grad != 0.0);
        }
        // Every element has a gradient, but the KL's padded rows when dz is off.
        let expected = if c == 0.0 { 2 * valid * latent } else { 2 * n };
        assert_eq!(nonzero, expected, "weight {weight}, dz × {c}");
    }
}

/// Every float buffer of a VAE's forward-backward on the last partial batch, the GPU against the CPU (the
/// same ε, drawn on both): a 29-pixel dense VAE with a 150-unit latent (μ and log σ² 300 wide, z over
/// two 256-element groups per 2 rows), batches of 37 over 60 samples, warm-up on; and the small conv VAE.
/// Then whole training steps and an evaluation, and the encode and decode programs.
#[test]
fn a_vae_step_matches_the_cpu_on_awkward_sizes_and_a_partial_batch() {
    let Some(ctx) = gpu() else { return };
    let cases = [
        (
            "dense",
            plan_for(&small_vae(29, 150), vae_objective(1.5, 1), 37, (60, 21)),
            29,
        ),
        (
            "conv",
            plan_for(&small_conv_vae(), vae_objective(1.0, 0), 7, (19, 9)),
            36,
        ),
    ];
    for (label, plan, features) in cases {
        let (train, test) = (
            random_bytes(plan.train_samples * features, 51),
            random_bytes(plan.test_samples * features, 52),
        );
        let mut cpu = CpuExecutor::<f32>::new(plan.clone());
        let mut gpu = GpuExecutor::new(&ctx, plan.clone()).unwrap();
        let last = plan.steps_per_epoch() as u32 - 1;
        for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
            load_initial_state(ex, &train, &test, 5);
            ex.write_u32(
                plan.io.train_perm,
                &epoch_permutation(plan.train_samples, 9, 0),
            );
            ex.write_u32(plan.io.train_state, &[3, last, 0, 0]);
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
        // The padded rows of the partial batch get no gradient in μ and log σ².
        let code = plan.codec.expect("a VAE has a codec").code;
        let grad = plan
            .buffers
            .iter()
            .position(|b| b.name == format!("{}.grad", plan.buffers[code.0].name))
            .unwrap();
        let valid = kernels::valid_rows(plan.batch, plan.train_samples, last as usize);
        let stride = plan.codec.unwrap().stride;
        let g = cpu.read_f32(BufId(grad));
        assert!(g[valid * stride..].iter().all(|v| *v == 0.0), "{label}");
        assert!(g[..valid * stride].iter().all(|v| *v != 0.0), "{label}");
        // Whole steps, evaluation included.
        for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
            ex.write_u32(plan.io.train_state, &[0; 4]);
            ex.write_f32(plan.io.loss_acc, &vec![0.0; 2 * plan.meters.len()]);
            ex.run(Program::TRAIN_STEP, 3);
            ex.write_u32(plan.io.eval_state, &[0; 4]);
            ex.run(Program::EVAL, 2);
        }
        let (want, got) = (
            cpu.read_f32(plan.io.loss_acc),
            gpu.read_f32(plan.io.loss_acc),
        );
        assert_close(&format!("{label}: accumulators"), &got, &want, 1e-3);
        // Encode the first test batch and decode random codes.
        let codec = plan.codec.unwrap();
        let codes = random(plan.batch * codec.width, 53, 1.5);
        for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
            ex.write_u32(plan.io.eval_state, &[0; 4]);
            ex.run(Program::ENCODE, 1);
            ex.write_f32(codec.latent, &codes);
            ex.run(Program::DECODE, 1);
        }
        for (what, buf) in [("encoded", codec.code), ("decoded", codec.decoded)] {
            let want = cpu.read_f32(buf);
            assert_close(&format!("{label}: {what}"), &gpu.read_f32(buf), &want, 2e-4);
            if what == "decoded" {
                assert!(want.iter().all(|v| (0.0..=1.0).contains(v)), "{label}");
            }
        }
    }
}

/// Pearson correlation of two equally long samples.
fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let mean = |x: &[f32]| x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa * sbb).sqrt()
}

/// A denoising VAE draws its corruption and its ε from different streams: element by element, the
/// corruption's normal draws and ε are uncorrelated (they would be equal on the same stream), and the
/// training and evaluation ε differ.
#[test]
fn a_denoising_vae_s_eps_is_independent_of_its_corruption() {
    let (features, latent, batch) = (64, 64, 128);
    let plan = plan_with_noise(
        &small_vae(features, latent),
        vae_objective(1.0, 0),
        batch,
        (batch, batch),
        Some(Noise::Gaussian { sigma: 0.1 }),
    );
    // Every pixel 128/255: σ = 0.1 noise is never clipped to [0, 1], so it is read back exactly.
    let pixels = vec![128u8; batch * features];
    let mut ex = CpuExecutor::<f32>::new(plan.clone());
    load_initial_state(&mut ex, &pixels, &pixels, 3);
    ex.write_u32(plan.io.train_perm, &epoch_permutation(batch, 3, 0));
    ex.write_u32(plan.io.train_state, &[4, 0, 0, 0]);
    ex.run(Program::FORWARD_BACKWARD, 1);
    let find = |name: &str| BufId(plan.buffers.iter().position(|b| b.name == name).unwrap());
    let eps = ex.read_f32(find("layers.2.eps"));
    let clean = ex.read_f32(plan.io.input);
    let noisy = ex.read_f32(plan.io.model_input);
    let noise: Vec<f32> = noisy
        .iter()
        .zip(&clean)
        .map(|(y, x)| (y - x) / 0.1)
        .collect();
    assert!(noisy.iter().all(|&v| v > 0.0 && v < 1.0), "no clipping");
    let r = correlation(&eps, &noise[..eps.len()]);
    // 8192 pairs: independent draws correlate within ±0.045 (4 standard errors).
    assert!(r.abs() < 0.045, "ε and the corruption correlate: {r}");
    let spread = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32;
    assert!((spread(&eps) - 1.0).abs() < 0.05 && (spread(&noise) - 1.0).abs() < 0.1);
    // Evaluation draws its own ε.
    ex.write_u32(plan.io.eval_state, &[4, 0, 0, 0]);
    ex.run(Program::EVAL, 1);
    let eval_eps = ex.read_f32(find("layers.2.eps"));
    let r = correlation(&eps, &eval_eps);
    assert!(r.abs() < 0.045, "training and evaluation ε correlate: {r}");
}

/// `--kl-warmup`: the training weight is β·min(1, step / warm-up steps) at every step on both backends,
/// the total the steps report uses it, and evaluation weighs the KL by the full β.
#[test]
fn the_kl_weight_warms_up_by_the_step_and_evaluation_uses_the_full_beta() {
    let (features, batch, samples) = (13, 5, 12);
    // 3 steps an epoch, warm-up 2 epochs: 6 steps.
    let plan = plan_for(
        &small_vae(features, 3),
        vae_objective(2.0, 2),
        batch,
        (samples, 4),
    );
    let train_weight = plan.scalar("kl.train_weight").expect("a ramped weight");
    let full = plan.scalar("kl.weight").unwrap();
    let meter = |name: &str| plan.meters.iter().position(|m| m.name == name).unwrap();
    let (kl, weighted) = (meter("kl"), meter("kl_weighted"));
    let scenario = |ex: &mut dyn Executor| {
        load_initial_state(
            ex,
            &random_bytes(samples * features, 1),
            &random_bytes(4 * features, 2),
            3,
        );
        ex.write_u32(plan.io.train_perm, &epoch_permutation(samples, 3, 0));
        for step in 0..8u32 {
            ex.write_u32(plan.io.train_state, &[step, step % 3, 0, 0]);
            ex.write_f32(plan.io.loss_acc, &vec![0.0; 2 * plan.meters.len()]);
            ex.run(Program::FORWARD_BACKWARD, 1);
            let weight = ex.read_f32(plan.io.scalars)[train_weight.index];
            let want = 2.0 * (step as f32 / 6.0).min(1.0);
            assert!(
                (weight - want).abs() <= 1e-6,
                "step {step}: {weight} vs {want}"
            );
            let acc = ex.read_f32(plan.io.loss_acc);
            let (k, w) = (acc[2 * kl], acc[2 * weighted]);
            assert!(
                (w - want * k).abs() <= 1e-5 * k.abs().max(1e-3),
                "step {step}: weighted {w} vs {want} × {k}"
            );
        }
        assert_eq!(ex.read_f32(plan.io.scalars)[full.index], 2.0);
        ex.write_u32(plan.io.eval_state, &[0; 4]);
        ex.write_f32(plan.io.loss_acc, &vec![0.0; 2 * plan.meters.len()]);
        ex.run(Program::EVAL, 1);
        let acc = ex.read_f32(plan.io.loss_acc);
        let (k, w) = (acc[2 * kl + 1], acc[2 * weighted + 1]);
        assert!(
            (w - 2.0 * k).abs() <= 1e-5 * k.abs(),
            "eval: {w} vs 2 × {k}"
        );
    };
    scenario(&mut CpuExecutor::<f32>::new(plan.clone()));
    if let Some(ctx) = gpu() {
        scenario(&mut GpuExecutor::new(&ctx, plan.clone()).unwrap());
    }
}

/// The objective's report: the reconstruction per image, its per-pixel figure, the KL unweighted; the
/// total is recon + β·KL, and no code_mean (the code is μ and log σ²).
#[test]
fn a_vae_reports_per_image_terms_and_a_per_pixel_figure() {
    let plan = plan_for(&small_vae(13, 3), vae_objective(3.0, 0), 5, (12, 4));
    let names: Vec<&str> = plan.meters.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["recon", "recon_per_pixel", "kl", "kl_weighted"]);
    let sums = [26.0, 26.0, 4.0, 12.0];
    let s = plan.summarize(&sums, 2);
    assert_eq!(s.values, [13.0, 1.0, 2.0, 6.0]);
    assert_eq!(s.total, 13.0 + 3.0 * 2.0);
}

/// A reshape aliases its input's buffers; as a first layer (whose input has no gradient) it still gives
/// the next layer an output gradient to write, and the model trains.
#[test]
fn a_reshape_as_the_first_layer_compiles_and_trains() {
    use gpu_ae::model::Layer;
    use gpu_ae::ops::Act;
    let model = Model::new(
        "flat",
        Shape { c: 1, h: 6, w: 6 },
        vec![
            Layer::Reshape {
                to: Shape::flat(36),
            },
            Layer::Linear {
                inputs: 36,
                outputs: 4,
                act: Act::Relu,
            },
            Layer::Linear {
                inputs: 4,
                outputs: 36,
                act: Act::Sigmoid,
            },
        ],
    )
    .unwrap();
    let plan = plan_for(
        &model,
        Objective::reconstruction(LossKind::BceWithLogits),
        4,
        (10, 3),
    );
    let mut ex = f64_executor(&plan, 36, 61);
    let before = batch_objective(&mut ex, 4);
    // One epoch of three steps, then the first batch again.
    ex.run(Program::TRAIN_STEP, 3);
    ex.write_u32(plan.io.train_state, &[3, 0, 0, 0]);
    assert!(batch_objective(&mut ex, 4) < before);
}
