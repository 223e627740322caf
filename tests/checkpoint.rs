//! Checkpoints: bit-exact round trips and resumes on the CPU backend, typed errors for every kind of bad
//! file, atomic replacement, the documented names of the default variants, and (when Python's
//! `safetensors` is installed) that PyTorch-side tools read the file.

mod common;

use std::path::{Path, PathBuf};

use clap::Parser;
use common::random_bytes;
use gpu_ae::backend::cpu::CpuExecutor;
use gpu_ae::backend::{Executor, Program, load_initial_state};
use gpu_ae::checkpoint::{
    self, Checkpoint, CheckpointError, FORMAT, TrainingState, capture, restore, save,
};
use gpu_ae::cli::{Cli, Command, OptimizerArg};
use gpu_ae::model::Shape;
use gpu_ae::model::variants::{ConvConfig, Deck, DenseConfig, conv_ae, dense_ae};
use gpu_ae::objective::Objective;
use gpu_ae::ops::{Act, AdamHyper, LossKind, Noise};
use gpu_ae::plan::{Optimizer, Plan, PlanConfig, Role, compile};
use gpu_ae::train::Position;
use serde_json::json;

const SIDE: usize = 8;
const FEATURES: usize = SIDE * SIDE;
const BATCH: usize = 3;
/// 20 samples in batches of 3: 7 steps per epoch, the last one partly padding.
const TRAIN_SAMPLES: usize = 20;
const TEST_SAMPLES: usize = 5;
const SEED: u64 = 5;

fn sgd() -> Optimizer {
    Optimizer::Sgd {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 1e-4,
    }
}

fn plan_config(optimizer: Optimizer, noise: Option<Noise>) -> PlanConfig {
    PlanConfig {
        batch: BATCH,
        objective: Objective::reconstruction(LossKind::BceWithLogits),
        optimizer,
        train_samples: TRAIN_SAMPLES,
        test_samples: TEST_SAMPLES,
        noise,
        seed: SEED,
        lr_schedule: None,
        precision: gpu_ae::plan::Precision::F32,
    }
}

fn image() -> Shape {
    Shape {
        c: 1,
        h: SIDE,
        w: SIDE,
    }
}

fn dense_plan(hidden: usize, optimizer: Optimizer) -> Plan {
    let cfg = DenseConfig {
        hidden: vec![hidden],
        latent: 4,
        act: Act::Relu,
        code_act: Act::Relu,
        output_act: Act::Sigmoid,
    };
    let model = dense_ae(image(), &cfg).expect("valid model");
    compile(&model, &plan_config(optimizer, None)).expect("valid plan")
}

/// Conv–BatchNorm–MaxPool stages, denoising: batch-norm statistics and the noise stream both carry state.
fn conv_pool_plan(optimizer: Optimizer) -> Plan {
    let cfg = ConvConfig {
        channels: vec![3, 5],
        deck: Deck::Pool,
        act: Act::Relu,
        output_act: Act::Sigmoid,
    };
    let model = conv_ae("conv-dae", image(), &cfg).expect("valid model");
    let noise = Some(Noise::Gaussian { sigma: 0.3 });
    compile(&model, &plan_config(optimizer, noise)).expect("valid plan")
}

/// A fresh executor with the data sets, the parameters for `init_seed` and epoch 0's order.
fn fresh(plan: &Plan, init_seed: u64) -> CpuExecutor<f32> {
    let mut ex = CpuExecutor::<f32>::new(plan.clone());
    let train = random_bytes(TRAIN_SAMPLES * FEATURES, 31);
    let test = random_bytes(TEST_SAMPLES * FEATURES, 32);
    load_initial_state(&mut ex, &train, &test, init_seed);
    let io = plan.io;
    ex.write_u32(
        io.train_perm,
        &gpu_ae::rng::epoch_permutation(TRAIN_SAMPLES, SEED, 0),
    );
    ex.write_u32(io.train_state, &[0; 4]);
    ex.write_f32(io.loss_acc, &[0.0, 0.0]);
    if let Some(amp) = io.amp {
        ex.write_u32(amp, &gpu_ae::ops::optim::amp::initial(16_777_216.0));
    }
    ex
}

/// Every buffer a checkpoint covers, plus the step counters and the training loss sum, as bits.
fn persistent_bits(ex: &mut dyn Executor) -> Vec<(String, Vec<u32>)> {
    let plan = ex.plan().clone();
    let mut out: Vec<(String, Vec<u32>)> = plan
        .buffers
        .iter()
        .enumerate()
        .filter(|(_, b)| matches!(b.role, Role::Param | Role::Stat | Role::OptimizerState))
        .map(|(i, b)| {
            let bits = ex
                .read_f32(gpu_ae::ops::BufId(i))
                .iter()
                .map(|v| v.to_bits())
                .collect();
            (b.name.clone(), bits)
        })
        .collect();
    // The position's words; VALID_ROWS is rewritten by every batch gather before anything reads it.
    let mut words = ex.read_u32(plan.io.train_state);
    words[gpu_ae::ops::state::VALID_ROWS] = 0;
    out.push(("train_state".into(), words));
    let loss = ex.read_f32(plan.io.loss_acc)[0].to_bits();
    out.push(("loss_acc[train]".into(), vec![loss]));
    if let Some(amp) = plan.io.amp {
        out.push(("amp".into(), ex.read_u32(amp)));
    }
    out
}

fn assert_same_bits(what: &str, got: &[(String, Vec<u32>)], want: &[(String, Vec<u32>)]) {
    assert_eq!(got.len(), want.len(), "{what}: buffer counts differ");
    for ((name, g), (_, w)) in got.iter().zip(want) {
        assert!(g == w, "{what}: buffer {name} differs");
    }
}

fn state_after(ex: &mut dyn Executor, steps: usize) -> TrainingState {
    let io = ex.plan().io;
    let acc = ex.read_f32(io.loss_acc);
    TrainingState {
        position: Position {
            epoch: 0,
            batch_in_epoch: steps,
            global_step: steps,
            epoch_sums: ex.plan().train_sums(&acc),
            pretraining: None,
        },
        seed: SEED,
    }
}

/// A directory of its own under the system temp dir, emptied first.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-ckpt-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Trains `steps`, saves, loads, restores into an executor initialised differently; every buffer matches.
fn round_trip(plan: &Plan, label: &str) {
    let dir = scratch_dir(label);
    let path = dir.join("model.safetensors");
    let mut trained = fresh(plan, 1);
    trained.run(Program::TRAIN_STEP, 2);
    let state = state_after(&mut trained, 2);
    let config = json!({"variant": label, "hidden": [6]});
    save(&path, &capture(&mut trained, config.clone(), state.clone())).expect("save");

    let loaded = checkpoint::load(&path).expect("load");
    assert_eq!(loaded.config, config);
    assert_eq!(loaded.state, state);
    assert_eq!(loaded.path.as_deref(), Some(path.as_path()));
    let mut other = fresh(plan, 99);
    assert_ne!(
        persistent_bits(&mut other),
        persistent_bits(&mut trained),
        "{label}: the fixture must start from different values"
    );
    restore(&mut other, &loaded).expect("restore");
    assert_same_bits(
        label,
        &persistent_bits(&mut other),
        &persistent_bits(&mut trained),
    );
    assert_eq!(dir_entries(&dir), ["model.safetensors"], "no .tmp left");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn dense_adam_checkpoint_round_trips_bit_identically() {
    round_trip(
        &dense_plan(6, Optimizer::Adam(AdamHyper::default())),
        "dense",
    );
}

#[test]
fn conv_batch_norm_sgd_checkpoint_round_trips_bit_identically() {
    let plan = conv_pool_plan(sgd());
    assert!(!plan.stats.is_empty(), "the pool deck has batch norm");
    round_trip(&plan, "conv-pool");
}

/// k steps, checkpoint, a fresh executor restored from the file, the rest of the epoch: the same bits as
/// one uninterrupted run.
fn resume_matches_uninterrupted(plan: &Plan, label: &str) {
    let (k, rest) = (3, plan.steps_per_epoch() - 3);
    let mut straight = fresh(plan, 1);
    straight.run(Program::TRAIN_STEP, k + rest);

    let dir = scratch_dir(label);
    let path = dir.join("resume.safetensors");
    let mut first = fresh(plan, 1);
    first.run(Program::TRAIN_STEP, k);
    let state = state_after(&mut first, k);
    save(&path, &capture(&mut first, json!({}), state)).expect("save");
    drop(first);

    // Everything a restore must set starts wrong: parameters, order, counters, loss sum.
    let mut resumed = fresh(plan, 1234);
    let io = plan.io;
    resumed.write_u32(
        io.train_perm,
        &gpu_ae::rng::epoch_permutation(TRAIN_SAMPLES, SEED, 7),
    );
    resumed.write_u32(io.train_state, &[9, 9, 0, 0]);
    resumed.write_f32(io.loss_acc, &[3.0, 4.0]);
    restore(&mut resumed, &checkpoint::load(&path).expect("load")).expect("restore");
    resumed.run(Program::TRAIN_STEP, rest);
    assert_same_bits(
        label,
        &persistent_bits(&mut resumed),
        &persistent_bits(&mut straight),
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn resumed_dense_run_matches_uninterrupted_run_bit_for_bit() {
    resume_matches_uninterrupted(
        &dense_plan(6, Optimizer::Adam(AdamHyper::default())),
        "resume-dense",
    );
}

/// Mixed precision: the f16 weight copies are rebuilt from the masters and the loss scaler's state
/// (scale, clean steps, skipped steps) comes back from `grad_scaler`. The scale starts at 2²⁴ ([`fresh`]),
/// where the first steps overflow, so skipped steps and a halved scale are part of what is restored.
#[test]
fn resumed_mixed_precision_run_matches_uninterrupted_run_bit_for_bit() {
    let mut cfg = plan_config(Optimizer::Adam(AdamHyper::default()), None);
    cfg.precision = gpu_ae::plan::Precision::Mixed;
    let model = dense_ae(
        image(),
        &DenseConfig {
            hidden: vec![6],
            latent: 4,
            act: Act::Relu,
            code_act: Act::Relu,
            output_act: Act::Sigmoid,
        },
    )
    .expect("valid model");
    let plan = compile(&model, &cfg).expect("valid plan");
    let names: Vec<String> = names_and_shapes(&plan)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"grad_scaler".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".half")), "{names:?}");
    let mut ex = fresh(&plan, 1);
    ex.run(Program::TRAIN_STEP, plan.steps_per_epoch());
    let amp = ex.read_u32(plan.io.amp.expect("a loss scaler"));
    let skipped = amp[gpu_ae::ops::optim::amp::SKIPPED] as usize;
    assert!(
        (1..plan.steps_per_epoch()).contains(&skipped),
        "{skipped} of {} steps skipped",
        plan.steps_per_epoch()
    );
    resume_matches_uninterrupted(&plan, "resume-mixed");
}

#[test]
fn resumed_denoising_batch_norm_run_matches_uninterrupted_run_bit_for_bit() {
    resume_matches_uninterrupted(
        &conv_pool_plan(Optimizer::Adam(AdamHyper::default())),
        "resume-conv",
    );
}

/// A small valid checkpoint of the dense plan, saved at `path`.
fn write_valid(path: &Path) -> Checkpoint {
    let plan = dense_plan(6, Optimizer::Adam(AdamHyper::default()));
    let mut ex = fresh(&plan, 1);
    let state = state_after(&mut ex, 0);
    let ckpt = capture(&mut ex, json!({"variant": "ae"}), state);
    save(path, &ckpt).expect("save");
    ckpt
}

fn load_err(path: &Path) -> (CheckpointError, String) {
    let err = checkpoint::load(path).expect_err("must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "message must name the file: {msg}"
    );
    (err, msg)
}

#[test]
fn truncated_garbage_and_empty_files_are_not_safetensors() {
    let dir = scratch_dir("corrupt");
    let path = dir.join("ckpt.safetensors");
    write_valid(&path);
    let bytes = std::fs::read(&path).expect("read");
    for cut in [0, 7, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).expect("write");
        let (err, msg) = load_err(&path);
        assert!(
            matches!(err, CheckpointError::NotSafetensors { .. }),
            "cut at {cut}: {msg}"
        );
    }
    std::fs::write(&path, random_bytes(4096, 7)).expect("write");
    let (err, msg) = load_err(&path);
    assert!(
        matches!(err, CheckpointError::NotSafetensors { .. }),
        "{msg}"
    );
    // A header length that claims the whole address space.
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    std::fs::write(&path, huge).expect("write");
    let (err, msg) = load_err(&path);
    assert!(
        matches!(err, CheckpointError::NotSafetensors { .. }),
        "{msg}"
    );

    let missing = dir.join("nowhere.safetensors");
    let (err, msg) = load_err(&missing);
    assert!(matches!(err, CheckpointError::Io { .. }), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A safetensors file with one F32 tensor and the given metadata.
fn foreign_file(path: &Path, metadata: Option<Vec<(&str, &str)>>) {
    let values = [1.0f32, 2.0];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &bytes)
        .expect("view");
    let metadata = metadata.map(|m| {
        m.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    let file = safetensors::serialize([("weight", view)], metadata).expect("serialize");
    std::fs::write(path, file).expect("write");
}

#[test]
fn safetensors_files_without_our_format_are_refused() {
    let dir = scratch_dir("foreign");
    let path = dir.join("foreign.safetensors");
    foreign_file(&path, None);
    let (err, msg) = load_err(&path);
    assert!(matches!(err, CheckpointError::WrongFormat { .. }), "{msg}");
    assert!(msg.contains("not a gpu-ae checkpoint"), "{msg}");

    foreign_file(&path, Some(vec![("format", "pt")]));
    let (err, msg) = load_err(&path);
    assert!(matches!(err, CheckpointError::WrongFormat { .. }), "{msg}");

    foreign_file(&path, Some(vec![("format", FORMAT), ("config", "{}")]));
    let (err, msg) = load_err(&path);
    assert!(
        matches!(err, CheckpointError::BadMetadata { key: "epoch", .. }),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_checkpoint_of_another_architecture_names_the_tensor_that_does_not_fit() {
    let dir = scratch_dir("mismatch");
    let path = dir.join("hidden6.safetensors");
    write_valid(&path);
    let ckpt = checkpoint::load(&path).expect("load");

    let wider = dense_plan(7, Optimizer::Adam(AdamHyper::default()));
    let mut ex = fresh(&wider, 1);
    let before = persistent_bits(&mut ex);
    let err = restore(&mut ex, &ckpt).expect_err("shapes differ");
    let msg = err.to_string();
    match &err {
        CheckpointError::ShapeMismatch {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, "layers.0.weight");
            assert_eq!(
                (expected.as_slice(), found.as_slice()),
                (&[7, 64][..], &[6, 64][..])
            );
        }
        other => panic!("expected a shape mismatch, got {other}"),
    }
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("layers.0.weight"), "{msg}");
    assert!(msg.contains("does not fit the chosen variant"), "{msg}");
    assert_same_bits("a failed restore", &persistent_bits(&mut ex), &before);

    let conv = conv_pool_plan(Optimizer::Adam(AdamHyper::default()));
    let err = restore(&mut fresh(&conv, 1), &ckpt).expect_err("another family");
    assert!(err.to_string().contains("layers.0.weight"), "{err}");

    let sgd_plan = dense_plan(6, sgd());
    let err = restore(&mut fresh(&sgd_plan, 1), &ckpt).expect_err("another optimizer");
    assert!(
        matches!(
            err,
            CheckpointError::OptimizerMismatch {
                chosen: "SGD",
                checkpoint: "Adam",
                ..
            }
        ),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn non_finite_values_are_refused_on_restore() {
    let dir = scratch_dir("nan");
    let path = dir.join("nan.safetensors");
    let mut ckpt = write_valid(&path);
    ckpt.tensors[1].2[0] = f32::NAN;
    let name = ckpt.tensors[1].0.clone();
    save(&path, &ckpt).expect("a diverged run can still be saved");
    let loaded = checkpoint::load(&path).expect("load");
    let plan = dense_plan(6, Optimizer::Adam(AdamHyper::default()));
    let err = restore(&mut fresh(&plan, 1), &loaded).expect_err("NaN");
    match &err {
        CheckpointError::NonFinite { name: n, index, .. } => {
            assert_eq!((n, *index), (&name, 0));
        }
        other => panic!("expected NonFinite, got {other}"),
    }
    assert!(err.to_string().contains(&path.display().to_string()));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn save_replaces_a_checkpoint_only_with_a_complete_one() {
    let dir = scratch_dir("atomic");
    let path = dir.join("ckpt.safetensors");
    let old = write_valid(&path);
    let old_bytes = std::fs::read(&path).expect("read");
    let mut newer = old.clone();
    newer.state.position.global_step = 7;

    // The temporary file cannot be created (a directory is in the way): the old checkpoint survives.
    let tmp_name = format!(".ckpt.safetensors.{}.tmp", std::process::id());
    let tmp = dir.join(&tmp_name);
    std::fs::create_dir(&tmp).expect("mkdir");
    let err = save(&path, &newer).expect_err("tmp is a directory");
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert!(err.to_string().contains(&tmp_name), "{err}");
    assert_eq!(std::fs::read(&path).expect("read"), old_bytes);
    std::fs::remove_dir(&tmp).expect("rmdir");

    // The rename fails (the target is a non-empty directory): the partial file is removed.
    let blocked = dir.join("blocked.safetensors");
    std::fs::create_dir_all(blocked.join("inside")).expect("mkdir");
    let err = save(&blocked, &newer).expect_err("target is a directory");
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert!(
        !dir.join(format!(".blocked.safetensors.{}.tmp", std::process::id()))
            .exists()
    );
    std::fs::remove_dir_all(&blocked).expect("rm");

    // A parent that is a file.
    let under_file = path.join("child.safetensors");
    assert!(save(&under_file, &newer).is_err());
    assert_eq!(std::fs::read(&path).expect("read"), old_bytes);

    // A successful save replaces the file and leaves nothing else behind.
    save(&path, &newer).expect("save");
    assert_eq!(
        checkpoint::load(&path)
            .expect("load")
            .state
            .position
            .global_step,
        7
    );
    assert_eq!(dir_entries(&dir), ["ckpt.safetensors"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// The default model of `gpu-ae train` with these flags, on 28×28 images.
fn default_plan(flags: &[&str]) -> Plan {
    let argv = ["gpu-ae", "train"].iter().chain(flags);
    let Command::Train(args) = Cli::try_parse_from(argv).expect("flags parse").command else {
        panic!("not a train command")
    };
    let input = Shape { c: 1, h: 28, w: 28 };
    let config = args.config().expect("a valid configuration");
    let model = config.build_model(input).expect("model");
    let cfg = PlanConfig {
        batch: 4,
        objective: Objective::reconstruction(LossKind::BceWithLogits),
        optimizer: match config.optimizer {
            OptimizerArg::Adam => Optimizer::Adam(AdamHyper::default()),
            OptimizerArg::Sgd => sgd(),
            _ => config.optimizer(),
        },
        train_samples: 8,
        test_samples: 4,
        noise: config.noise,
        seed: 0,
        lr_schedule: None,
        precision: gpu_ae::plan::Precision::F32,
    };
    compile(&model, &cfg).expect("plan")
}

fn names_and_shapes(plan: &Plan) -> Vec<(String, Vec<usize>)> {
    let mut ex = CpuExecutor::<f32>::new(plan.clone());
    let state = state_after(&mut ex, 0);
    capture(&mut ex, json!({}), state)
        .tensors
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect()
}

fn expect(list: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
    list.iter()
        .map(|(n, s)| (n.to_string(), s.to_vec()))
        .collect()
}

/// The table at the top of src/checkpoint.rs.
#[test]
fn default_variants_have_the_documented_tensor_names_and_shapes() {
    let params = |t: Vec<(String, Vec<usize>)>| -> Vec<(String, Vec<usize>)> {
        t.into_iter()
            .filter(|(n, _)| !n.starts_with("optimizer."))
            .collect()
    };
    let ae = names_and_shapes(&default_plan(&["--variant", "ae"]));
    assert_eq!(
        params(ae.clone()),
        expect(&[
            ("layers.0.weight", &[256, 784]),
            ("layers.0.bias", &[256]),
            ("layers.1.weight", &[64, 256]),
            ("layers.1.bias", &[64]),
            ("layers.2.weight", &[256, 64]),
            ("layers.2.bias", &[256]),
            ("layers.3.weight", &[784, 256]),
            ("layers.3.bias", &[784]),
        ])
    );
    assert!(ae.contains(&("optimizer.layers.0.weight.exp_avg".into(), vec![256, 784])));
    assert!(ae.contains(&("optimizer.layers.3.bias.exp_avg_sq".into(), vec![784])));
    assert_eq!(ae.len(), 8 * 3);

    let conv = expect(&[
        ("layers.0.weight", &[32, 1, 3, 3]),
        ("layers.0.bias", &[32]),
        ("layers.1.weight", &[64, 32, 3, 3]),
        ("layers.1.bias", &[64]),
        ("layers.2.weight", &[64, 32, 3, 3]),
        ("layers.2.bias", &[32]),
        ("layers.3.weight", &[32, 1, 3, 3]),
        ("layers.3.bias", &[1]),
    ]);
    for variant in ["conv-ae", "conv-dae"] {
        let got = names_and_shapes(&default_plan(&["--variant", variant]));
        assert_eq!(params(got), conv, "{variant}");
    }

    let pool = params(names_and_shapes(&default_plan(&[
        "--variant",
        "conv-dae",
        "--deck",
        "pool",
    ])));
    for bn in ["layers.1", "layers.4"] {
        for t in ["weight", "bias", "running_mean", "running_var"] {
            let name = format!("{bn}.{t}");
            assert!(
                pool.iter().any(|(n, _)| *n == name),
                "{name} missing from {pool:?}"
            );
        }
    }
}

/// Python's `safetensors` reads our file, and sees the plan's names, shapes and metadata. Under `CI=true`
/// (where `.ci/run` installs the package) a missing package fails the test; elsewhere it is skipped with a
/// message.
#[test]
fn python_safetensors_reads_the_checkpoint() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import safetensors, numpy"])
        .output();
    let missing = match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`import safetensors, numpy` failed ({}); pip install safetensors numpy to run it",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("no message")
        )),
        Err(e) => Some(format!("no python3 ({e})")),
    };
    if let Some(why) = missing {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python_safetensors_reads_the_checkpoint cannot run under CI: {why}"
        );
        eprintln!("skipping python_safetensors_reads_the_checkpoint: {why}");
        return;
    }
    let dir = scratch_dir("python");
    let path = dir.join("py.safetensors");
    let plan = conv_pool_plan(Optimizer::Adam(AdamHyper::default()));
    let mut ex = fresh(&plan, 1);
    ex.run(Program::TRAIN_STEP, 1);
    let state = state_after(&mut ex, 1);
    let ckpt = capture(&mut ex, json!({"variant": "conv-dae"}), state);
    save(&path, &ckpt).expect("save");
    let script = r#"
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], framework="numpy") as f:
    meta = f.metadata()
    print("format", meta["format"])
    for name in sorted(f.keys()):
        t = f.get_tensor(name)
        print(name, str(t.dtype), ",".join(map(str, t.shape)), int(t.reshape(-1).view("uint32")[0]))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("python sees:\n{stdout}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(format!("format {FORMAT}").as_str()));
    let mut want: Vec<String> = ckpt
        .tensors
        .iter()
        .map(|(name, shape, values)| {
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("{name} float32 {} {}", dims.join(","), values[0].to_bits())
        })
        .collect();
    want.sort();
    let got: Vec<String> = lines.map(str::to_string).collect();
    assert_eq!(got, want);
    std::fs::remove_dir_all(&dir).ok();
}

/// Every row of the README's tensor table (`| flags | name | [shape] |`) names a tensor that the default
/// model for those flags saves, with that shape.
#[test]
fn the_readme_tensor_table_matches_what_is_saved() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let mut rows = 0;
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // ["", "`flags`", "`name`", "[shape]", ""]
        if cells.len() != 5 || !cells[3].starts_with('[') || !cells[2].starts_with('`') {
            continue;
        }
        let mut flags = vec!["--variant"];
        flags.extend(cells[1].trim_matches('`').split_whitespace());
        let name = cells[2].trim_matches('`');
        let shape: Vec<usize> = cells[3]
            .trim_matches(['[', ']'])
            .split(',')
            .map(|d| d.trim().parse().expect("a dimension"))
            .collect();
        let got = names_and_shapes(&default_plan(&flags));
        assert!(
            got.contains(&(name.to_string(), shape.clone())),
            "README row {line:?} not in the checkpoint of {flags:?}: {got:?}"
        );
        rows += 1;
    }
    assert!(rows >= 20, "found only {rows} tensor rows in README.md");
}
