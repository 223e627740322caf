//! Layer-wise pretraining: the CD-1 statistics of an RBM phase against a host computation in f64 (the same
//! hidden draws, a last partial batch, Bernoulli and Gaussian hidden units), the RBM ops and a few RBM
//! steps on the GPU against the CPU, a greedy phase's gradients against finite differences, and a run
//! stopped inside a pretraining phase resuming exactly where the uninterrupted one goes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use common::{assert_close, gpu, metrics_rows, random, random_bytes};
use gpu_ae::backend::cpu::CpuExecutor;
use gpu_ae::backend::cpu::noise::standard_normal;
use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::backend::{Executor, load_initial_state};
use gpu_ae::checkpoint;
use gpu_ae::model::variants::{DenseConfig, dense_ae};
use gpu_ae::model::{Model, Shape};
use gpu_ae::objective::Objective;
use gpu_ae::ops::{Act, AdamHyper, BufId, HiddenUnits, LossKind, Op, RbmOp, state};
use gpu_ae::plan::pretrain::SAMPLE_TRAIN_STREAM;
use gpu_ae::plan::{
    BufferDesc, Optimizer, Plan, PlanConfig, PretrainKind, Pretraining, RbmSchedule, compile_with,
};
use gpu_ae::rng::{counter_uniform, epoch_permutation};
use gpu_ae::run::config::{PretrainArg, Variant};
use gpu_ae::run::dir::{OutChoice, RunDir};
use gpu_ae::run::{self, Observer, RunConfig, RunEnd, RunOptions};
use gpu_ae::train::{Faults, Progress, Trainer};

const FEATURES: usize = 10;
const BATCH: usize = 8;
/// Three batches of 8: the last has 7 rows.
const TRAIN: usize = 23;
const TEST: usize = 13;
const SEED: u64 = 5;

/// 10 → 7 (sigmoid) → 4 (linear code) → 7 (sigmoid) → 10 (sigmoid): two RBMs, the second Gaussian.
fn small_deep_ae() -> Model {
    dense_ae(
        Shape::flat(FEATURES),
        &DenseConfig {
            hidden: vec![7],
            latent: 4,
            act: Act::Sigmoid,
            code_act: Act::Identity,
            output_act: Act::Sigmoid,
        },
    )
    .unwrap()
}

fn plan(kind: PretrainKind) -> Plan {
    plan_with_noise(kind, None)
}

fn plan_with_noise(kind: PretrainKind, noise: Option<gpu_ae::ops::Noise>) -> Plan {
    compile_with(
        &small_deep_ae(),
        &PlanConfig {
            batch: 16,
            objective: Objective::reconstruction(LossKind::BceWithLogits),
            optimizer: Optimizer::Adam(AdamHyper::default()),
            train_samples: TRAIN,
            test_samples: TEST,
            noise,
            seed: SEED,
            lr_schedule: None,
            precision: gpu_ae::plan::Precision::F32,
        },
        Some(&Pretraining {
            kind,
            epochs: 1,
            batch: BATCH,
        }),
    )
    .expect("a valid plan")
}

/// Loads random data and the seeded parameters (the biases made non-zero), and points the training state
/// at batch `batch` of epoch 0 at global step `step`.
fn prepare(ex: &mut dyn Executor, batch: usize, step: u32) {
    let train = random_bytes(TRAIN * FEATURES, 3);
    let test = random_bytes(TEST * FEATURES, 4);
    load_initial_state(ex, &train, &test, SEED);
    let params: Vec<(BufId, usize, String)> = ex
        .plan()
        .params
        .iter()
        .map(|p| (p.buf, p.shape.iter().product(), p.name.clone()))
        .collect();
    for (i, (buf, len, name)) in params.into_iter().enumerate() {
        if name.ends_with("bias") {
            ex.write_f32(buf, &random(len, 40 + i as u64, 0.5));
        }
    }
    let io = ex.plan().io;
    ex.write_u32(io.train_perm, &epoch_permutation(TRAIN, SEED, 0));
    let mut words = [0u32; state::LEN];
    words[state::GLOBAL_STEP] = step;
    words[state::BATCH] = batch as u32;
    ex.write_u32(io.train_state, &words);
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// y[o] = act(Σᵢ w[o, i]·x[i] + b[o]), w [out × in].
fn dense(w: &[f64], b: &[f64], x: &[f64], act: fn(f64) -> f64) -> Vec<f64> {
    b.iter()
        .enumerate()
        .map(|(o, &bias)| {
            act(bias
                + x.iter()
                    .enumerate()
                    .map(|(i, v)| w[o * x.len() + i] * v)
                    .sum::<f64>())
        })
        .collect()
}

/// What one CD-1 step of the RBM of layer `k` writes into the gradient buffers, computed on the host: (dW,
/// dc, db, Σ squared reconstruction error) over the valid rows of `rows`.
struct Cd {
    dw: Vec<f64>,
    dc: Vec<f64>,
    db: Vec<f64>,
    error: f64,
}

fn cd1_reference(
    rows: &[Vec<f64>],
    w: &[f64],
    c: &[f64],
    b: &[f64],
    units: HiddenUnits,
    step: u32,
) -> Cd {
    let (hidden, visible) = (c.len(), b.len());
    let n = rows.len() as f64;
    let seed = (SEED ^ (SEED >> 32)) as u32;
    let act: fn(f64) -> f64 = match units {
        HiddenUnits::Bernoulli => sigmoid,
        HiddenUnits::Gaussian => |x| x,
    };
    // Wᵀ [V × H], for the reconstruction.
    let wt: Vec<f64> = (0..visible * hidden)
        .map(|e| w[(e % hidden) * visible + e / hidden])
        .collect();
    let mut cd = Cd {
        dw: vec![0.0; hidden * visible],
        dc: vec![0.0; hidden],
        db: vec![0.0; visible],
        error: 0.0,
    };
    for (r, v0) in rows.iter().enumerate() {
        let h0 = dense(w, c, v0, act);
        let sample: Vec<f64> = h0
            .iter()
            .enumerate()
            .map(|(j, &p)| {
                let index = (r * hidden + j) as u32;
                match units {
                    HiddenUnits::Bernoulli => {
                        let u = counter_uniform(seed, SAMPLE_TRAIN_STREAM, step, index, 0) as f64;
                        if u < p { 1.0 } else { 0.0 }
                    }
                    HiddenUnits::Gaussian => {
                        p + standard_normal(seed, SAMPLE_TRAIN_STREAM, step, index)
                    }
                }
            })
            .collect();
        let v1 = dense(&wt, b, &sample, sigmoid);
        let h1 = dense(w, c, &v1, act);
        for j in 0..hidden {
            cd.dc[j] += (h1[j] - h0[j]) / n;
            for i in 0..visible {
                cd.dw[j * visible + i] += (h1[j] * v1[i] - h0[j] * v0[i]) / n;
            }
        }
        for i in 0..visible {
            cd.db[i] += (v1[i] - v0[i]) / n;
            cd.error += (v0[i] - v1[i]) * (v0[i] - v1[i]);
        }
    }
    cd
}

/// The valid rows of training batch `batch` of epoch 0, in [0, 1].
fn batch_rows(batch: usize) -> Vec<Vec<f64>> {
    let pixels = random_bytes(TRAIN * FEATURES, 3);
    let perm = epoch_permutation(TRAIN, SEED, 0);
    (batch * BATCH..((batch + 1) * BATCH).min(TRAIN))
        .map(|slot| {
            let s = perm[slot] as usize;
            pixels[s * FEATURES..(s + 1) * FEATURES]
                .iter()
                // As the gather scales them: in f32.
                .map(|&p| (p as f32 / 255.0) as f64)
                .collect()
        })
        .collect()
}

/// Parameter `name`'s values.
fn param(ex: &mut dyn Executor, name: &str) -> Vec<f64> {
    let buf = ex
        .plan()
        .params
        .iter()
        .find(|p| p.name == name)
        .unwrap()
        .buf;
    ex.read_f32(buf).iter().map(|&v| v as f64).collect()
}

fn grad(ex: &mut CpuExecutor<f64>, name: &str) -> Vec<f64> {
    let g = ex
        .plan()
        .params
        .iter()
        .find(|p| p.name == name)
        .unwrap()
        .grad;
    ex.floats(g).to_vec()
}

fn assert_close64(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: the reference is all zeros");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-10 * scale, "{what}[{i}]: {g} vs {w}");
    }
}

/// Both RBMs' CD-1 statistics, on a full batch and on the last, partial one, equal the host's f64
/// computation with the same hidden draws; so does the reconstruction error the phase reports.
#[test]
fn cd1_statistics_match_a_host_computation() {
    let plan = plan(PretrainKind::Rbm(RbmSchedule::default()));
    assert_eq!(plan.phases.len(), 3, "two RBMs, then the fine-tuning");
    for (phase, batch) in [(0, 0), (0, 2), (1, 1), (1, 2)] {
        let mut ex = CpuExecutor::<f64>::new(plan.clone());
        let step = 17 + batch as u32;
        prepare(&mut ex, batch, step);
        let mut rows = batch_rows(batch);
        let (w0, b0) = (
            param(&mut ex, "layers.0.weight"),
            param(&mut ex, "layers.0.bias"),
        );
        let units = if phase == 0 {
            HiddenUnits::Bernoulli
        } else {
            // The second RBM sees the first layer's probabilities.
            rows = rows.iter().map(|r| dense(&w0, &b0, r, sigmoid)).collect();
            HiddenUnits::Gaussian
        };
        let (w, c, b) = (
            format!("layers.{phase}.weight"),
            format!("layers.{phase}.bias"),
            format!("layers.{}.bias", 3 - phase),
        );
        let want = cd1_reference(
            &rows,
            &param(&mut ex, &w),
            &param(&mut ex, &c),
            &param(&mut ex, &b),
            units,
            step,
        );
        let acc = ex.plan().io.loss_acc;
        ex.floats_mut(acc).iter_mut().for_each(|v| *v = 0.0);
        ex.run(plan.phases[phase].train, 1);
        let label = format!("phase {phase}, batch {batch}");
        assert_close64(&format!("{label}: dW"), &grad(&mut ex, &w), &want.dw);
        assert_close64(&format!("{label}: dc"), &grad(&mut ex, &c), &want.dc);
        assert_close64(&format!("{label}: db"), &grad(&mut ex, &b), &want.db);
        let meter = plan.phases[phase].meters[0];
        assert_eq!(plan.meters[meter].name, "rbm_error");
        let error = ex.floats(acc)[2 * meter];
        assert!(
            (error - want.error).abs() <= 1e-10 * want.error,
            "{label}: error {error} vs {}",
            want.error
        );
    }
}

/// The hidden samples, the stacked statistics and the visible delta on the GPU equal the CPU's on random
/// inputs of awkward sizes with a partial batch (Bernoulli draws compared exactly).
#[test]
fn rbm_ops_agree_on_gpu_and_cpu() {
    let Some(ctx) = gpu() else { return };
    let (rows, hidden, visible, valid) = (9, 13, 37, 7);
    let buffers = vec![
        BufferDesc::f32("h0", rows * hidden),
        BufferDesc::f32("h1", rows * hidden),
        BufferDesc::f32("bernoulli", rows * hidden),
        BufferDesc::f32("gaussian", rows * hidden),
        BufferDesc::f32("hidden_stack", 2 * rows * hidden),
        BufferDesc::f32("v0", rows * visible),
        BufferDesc::f32("visible_stack", 2 * rows * visible),
        BufferDesc::f32("delta", rows * visible),
        BufferDesc::f32("partials", (rows * visible).div_ceil(256)),
        BufferDesc::u32("state", state::LEN),
    ];
    let [
        h0,
        h1,
        bernoulli,
        gaussian,
        hidden_stack,
        v0,
        visible_stack,
        delta,
        partials,
        st,
    ] = std::array::from_fn(BufId);
    let sample = |out, units| {
        Op::Rbm(RbmOp::SampleHidden {
            h: h0,
            sample: out,
            state: st,
            rows,
            cols: hidden,
            units,
            seed: 99,
            stream: 6,
        })
    };
    let ops = vec![
        sample(bernoulli, HiddenUnits::Bernoulli),
        sample(gaussian, HiddenUnits::Gaussian),
        Op::Rbm(RbmOp::CdHidden {
            h0,
            h1,
            stacked: hidden_stack,
            state: st,
            rows,
            cols: hidden,
        }),
        Op::Rbm(RbmOp::CdVisible {
            v0,
            stacked: visible_stack,
            delta,
            partials,
            state: st,
            rows,
            cols: visible,
        }),
    ];
    let plan = Plan::from_ops(buffers, ops);
    let probabilities = |seed| {
        random(rows * hidden, seed, 1.0)
            .iter()
            .map(|v| v.abs())
            .collect::<Vec<f32>>()
    };
    let inputs: Vec<(BufId, Vec<f32>)> = vec![
        (h0, probabilities(1)),
        (h1, probabilities(2)),
        (v0, random(rows * visible, 3, 1.0)),
        (visible_stack, random(2 * rows * visible, 4, 1.0)),
    ];
    let mut words = [0u32; state::LEN];
    words[state::GLOBAL_STEP] = 123;
    words[state::VALID_ROWS] = valid as u32;
    let run = |ex: &mut dyn Executor| {
        for (buf, values) in &inputs {
            ex.write_f32(*buf, values);
        }
        ex.write_u32(st, &words);
        ex.run(gpu_ae::backend::Program::FORWARD_BACKWARD, 1);
        [
            bernoulli,
            gaussian,
            hidden_stack,
            visible_stack,
            delta,
            partials,
        ]
        .map(|b| ex.read_f32(b))
    };
    let cpu = run(&mut CpuExecutor::<f32>::new(plan.clone()));
    let gpu = run(&mut GpuExecutor::new(&ctx, plan).unwrap());
    assert_eq!(cpu[0], gpu[0], "Bernoulli samples");
    assert!(cpu[0][..valid * hidden].contains(&1.0) && cpu[0][..valid * hidden].contains(&0.0));
    assert!(
        cpu[0][valid * hidden..].iter().all(|&s| s == 0.0),
        "padded rows sample 0"
    );
    for (what, c, g) in [
        ("gaussian samples", &cpu[1], &gpu[1]),
        ("hidden statistics", &cpu[2], &gpu[2]),
        ("visible statistics", &cpu[3], &gpu[3]),
        ("visible delta", &cpu[4], &gpu[4]),
        ("error partials", &cpu[5], &gpu[5]),
    ] {
        assert_close(what, g, c, 1e-5);
    }
}

/// An RBM trained for two epochs (six steps, momentum carried) on the CPU and on the GPU ends with the
/// same weights and biases, for both the Bernoulli and the Gaussian RBM.
#[test]
fn a_few_rbm_steps_agree_on_cpu_and_gpu() {
    let Some(ctx) = gpu() else { return };
    let plan = plan(PretrainKind::Rbm(RbmSchedule::default()));
    let train = random_bytes(TRAIN * FEATURES, 3);
    let test = random_bytes(TEST * FEATURES, 4);
    let never = AtomicBool::new(false);
    let train_phases = |ex: &mut dyn Executor| {
        let mut trainer = Trainer::new(ex, &train, &test, SEED);
        trainer.steps_per_submit = 2;
        let mut errors = Vec::new();
        for phase in 0..2 {
            trainer.position.pretraining = Some(phase);
            trainer.position.epoch = 0;
            for _ in 0..2 {
                trainer.train_epoch(&mut |_| {}, &never).unwrap();
            }
            errors.push(trainer.evaluate().total);
        }
        let names = [
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.weight",
            "layers.1.bias",
            "layers.2.bias",
            "layers.3.bias",
        ];
        (names.map(|n| param(trainer.executor(), n)), errors)
    };
    let (cpu, cpu_errors) = train_phases(&mut CpuExecutor::<f32>::new(plan.clone()));
    let (gpu, gpu_errors) = train_phases(&mut GpuExecutor::new(&ctx, plan).unwrap());
    for (c, g) in cpu.iter().zip(&gpu) {
        let (c, g): (Vec<f32>, Vec<f32>) = (
            c.iter().map(|&v| v as f32).collect(),
            g.iter().map(|&v| v as f32).collect(),
        );
        assert_close("RBM parameters", &g, &c, 1e-4);
    }
    for (c, g) in cpu_errors.iter().zip(&gpu_errors) {
        assert!(
            (c - g).abs() <= 1e-4 * c.abs(),
            "test reconstruction error {g} vs {c}"
        );
    }
}

/// A greedy phase trains the shallow autoencoder of its layer: its gradients are those of its loss
/// (finite differences in f64 of the phase's own meter, on a partial batch), on the second layer, whose
/// input is the first layer's output.
#[test]
fn a_greedy_phase_descends_its_layers_loss() {
    let plan = plan(PretrainKind::Greedy);
    let phase = &plan.phases[1];
    let meter = phase.meters[0];
    assert_eq!(plan.meters[meter].name, "layer_recon");
    let mut ex = CpuExecutor::<f64>::new(plan.clone());
    prepare(&mut ex, 2, 0);
    let loss = |ex: &mut CpuExecutor<f64>| {
        let acc = ex.plan().io.loss_acc;
        ex.floats_mut(acc).iter_mut().for_each(|v| *v = 0.0);
        // Each run advances the step; keep the batch where it is.
        let mut words = [0u32; state::LEN];
        words[state::BATCH] = 2;
        let st = ex.plan().io.train_state;
        ex.write_u32(st, &words);
        let before: Vec<Vec<f64>> = ex
            .plan()
            .params
            .iter()
            .map(|p| ex.floats(p.buf).to_vec())
            .collect();
        ex.run(plan.phases[1].train, 1);
        // Undo the update: only the gradients are wanted.
        let bufs: Vec<BufId> = ex.plan().params.iter().map(|p| p.buf).collect();
        for (buf, values) in bufs.iter().zip(&before) {
            ex.floats_mut(*buf).copy_from_slice(values);
        }
        ex.floats(acc)[2 * meter] / (7 * 7) as f64
    };
    loss(&mut ex);
    let trained = [
        "layers.1.weight",
        "layers.1.bias",
        "layers.2.weight",
        "layers.2.bias",
    ];
    let frozen = ["layers.0.weight", "layers.3.weight"];
    let analytic: Vec<Vec<f64>> = trained.iter().map(|n| grad(&mut ex, n)).collect();
    for (name, grads) in trained.iter().zip(&analytic) {
        let buf = ex
            .plan()
            .params
            .iter()
            .find(|p| p.name == *name)
            .unwrap()
            .buf;
        for (e, &g) in grads.iter().enumerate() {
            let original = ex.floats(buf)[e];
            ex.floats_mut(buf)[e] = original + 1e-6;
            let plus = loss(&mut ex);
            ex.floats_mut(buf)[e] = original - 1e-6;
            let minus = loss(&mut ex);
            ex.floats_mut(buf)[e] = original;
            let numeric = (plus - minus) / 2e-6;
            assert!(
                (g - numeric).abs() <= 2e-6 * g.abs().max(numeric.abs()).max(1e-4),
                "{name}[{e}]: analytic {g:e} vs finite difference {numeric:e}"
            );
        }
    }
    // The layers outside the phase keep their values through its update.
    let before: Vec<Vec<f64>> = frozen.iter().map(|n| param(&mut ex, n)).collect();
    ex.run(plan.phases[1].train, 1);
    for (name, values) in frozen.iter().zip(&before) {
        assert_eq!(
            &param(&mut ex, name),
            values,
            "{name} changed in pretrain-2"
        );
    }
}

/// A denoising greedy phase above the first layer computes its layer's input from the batch it gathers
/// (the model's own corrupted-input buffer, which only the first phase writes, is not read): whatever
/// that buffer holds, the step's gradients are the same.
#[test]
fn a_denoising_greedy_phase_reads_its_own_batch_above_the_first_layer() {
    let plan = plan_with_noise(
        PretrainKind::Greedy,
        Some(gpu_ae::ops::Noise::Mask { fraction: 0.3 }),
    );
    assert_ne!(plan.io.input, plan.io.model_input);
    let mut ex = CpuExecutor::<f64>::new(plan.clone());
    prepare(&mut ex, 1, 4);
    let params: Vec<(BufId, Vec<f64>)> = plan
        .params
        .iter()
        .map(|p| (p.buf, ex.floats(p.buf).to_vec()))
        .collect();
    let state = ex.read_u32(plan.io.train_state);
    let step = |ex: &mut CpuExecutor<f64>, stale: f32| {
        for (buf, values) in &params {
            ex.floats_mut(*buf).copy_from_slice(values);
        }
        ex.write_u32(plan.io.train_state, &state);
        let len = ex.floats(plan.io.model_input).len();
        ex.write_f32(plan.io.model_input, &vec![stale; len]);
        ex.run(plan.phases[1].train, 1);
        ["layers.1.weight", "layers.2.weight"].map(|n| grad(ex, n))
    };
    let (a, b) = (step(&mut ex, 0.0), step(&mut ex, 0.75));
    assert!(a[0].iter().any(|&g| g != 0.0));
    assert_eq!(a, b, "pretrain-2 read the model's stale input buffer");
}

/// A checkpoint naming a pretraining phase the plan does not have is refused, even an absurd one.
#[test]
fn a_checkpoint_beyond_the_plans_phases_is_refused() {
    let plan = plan(PretrainKind::Rbm(RbmSchedule::default()));
    let mut ex = CpuExecutor::<f32>::new(plan);
    prepare(&mut ex, 0, 0);
    for phase in [2, usize::MAX] {
        let mut ckpt = checkpoint::capture(
            &mut ex,
            serde_json::json!({}),
            checkpoint::TrainingState {
                position: gpu_ae::train::Position::default(),
                seed: SEED,
            },
        );
        ckpt.state.position.pretraining = Some(phase);
        let err = checkpoint::restore(&mut ex, &ckpt).unwrap_err().to_string();
        assert!(
            err.contains("pretrain_phase") && err.contains("2 pretraining phases"),
            "{err}"
        );
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-pretrain-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Raises the stop flag once `steps` steps of phase `phase` are done.
struct StopInPhase<'a> {
    phase: Option<usize>,
    at: (usize, usize),
    stop: &'a AtomicBool,
}

impl Observer for StopInPhase<'_> {
    fn phase_started(&mut self, _plan: &Plan, phase: usize, _epochs: usize) {
        self.phase = Some(phase);
    }
    fn progress(&mut self, p: &Progress) {
        if self.phase == Some(self.at.0) && p.steps_done >= self.at.1 {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// A deep autoencoder run stopped in the middle of its second RBM phase and resumed from its checkpoint
/// ends exactly where the uninterrupted run does on the CPU: every line of metrics.csv (phases included)
/// and every saved tensor, bit for bit.
#[test]
fn a_run_resumed_inside_a_pretraining_phase_repeats_the_uninterrupted_one() {
    for kind in [PretrainArg::Rbm, PretrainArg::Greedy] {
        let config = RunConfig {
            limit: Some(700),
            hidden: vec![32, 16],
            latent: 6,
            pretrain: kind,
            pretrain_epochs: 2,
            ..Variant::DeepAe.defaults()
        };
        let data = config.load_data().unwrap();
        let options = RunOptions {
            epochs: 2,
            save_every: 1,
            steps_per_submit: 1,
            detect_anomaly: false,
            faults: Faults::default(),
            history: None,
            patience: None,
        };
        let run = |dir: &Path, resume: Option<&checkpoint::Checkpoint>, at: (usize, usize)| {
            let choice = match resume {
                None => OutChoice::Named {
                    dir: dir.to_path_buf(),
                    overwrite: false,
                },
                Some(_) => OutChoice::Resume {
                    dir: dir.to_path_buf(),
                },
            };
            let run_dir = RunDir::open(choice).unwrap();
            let (_, plan) = config.build(&data).unwrap();
            let stop = AtomicBool::new(false);
            let mut observer = StopInPhase {
                phase: None,
                at,
                stop: &stop,
            };
            run::train(
                &mut CpuExecutor::<f32>::new(plan),
                &config,
                &data,
                &run_dir,
                &options,
                resume,
                &stop,
                &mut observer,
            )
            .unwrap()
        };
        let whole = temp_dir(&format!("{kind:?}-whole"));
        assert_eq!(run(&whole, None, (usize::MAX, 0)), RunEnd::Completed);
        let cut = temp_dir(&format!("{kind:?}-cut"));
        // 7 steps of 100 an epoch: stopped in the first epoch of pretrain-2, after 3 or 4 steps.
        let end = run(&cut, None, (1, 3));
        assert!(
            matches!(
                end,
                RunEnd::Interrupted {
                    epoch: 1,
                    steps_done: 3..=4,
                    steps_total: 7,
                    ..
                }
            ),
            "{kind:?}: {end:?}"
        );
        let ckpt = checkpoint::load(&cut.join("checkpoint.safetensors")).unwrap();
        assert_eq!(ckpt.state.position.pretraining, Some(1));
        assert_eq!(run(&cut, Some(&ckpt), (usize::MAX, 0)), RunEnd::Completed);
        let text = |dir: &Path| {
            std::fs::read_to_string(dir.join("metrics.csv"))
                .unwrap()
                .lines()
                .map(|l| {
                    // Drop the two timing columns.
                    let f: Vec<&str> = l.split(',').collect();
                    [&f[..4], &f[6..]].concat().join(",")
                })
                .collect::<Vec<_>>()
        };
        let lines = text(&whole);
        assert_eq!(text(&cut), lines, "{kind:?}");
        let phases: Vec<&str> = lines
            .iter()
            .skip(1)
            .map(|l| l.rsplit(',').next().unwrap())
            .collect();
        assert_eq!(
            phases,
            [
                "pretrain-1",
                "pretrain-1",
                "pretrain-2",
                "pretrain-2",
                "pretrain-3",
                "pretrain-3",
                "fine-tune",
                "fine-tune"
            ]
        );
        assert_eq!(metrics_rows(&whole).len(), 8);
        let (a, b) = (
            checkpoint::load(&cut.join("checkpoint.safetensors")).unwrap(),
            checkpoint::load(&whole.join("checkpoint.safetensors")).unwrap(),
        );
        assert_eq!(a.tensors, b.tensors, "{kind:?}: the final tensors");
        let _ = std::fs::remove_dir_all(&whole);
        let _ = std::fs::remove_dir_all(&cut);
    }
}
