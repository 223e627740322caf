//! Interrupted runs resume exactly; failures end with a clear message, a non-zero exit and an intact
//! checkpoint.

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use gpu_ae::checkpoint;

const BIN: &str = env!("CARGO_BIN_EXE_gpu-ae");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-resume-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// (train loss, test loss) per epoch from DIR/metrics.csv.
fn losses(dir: &Path) -> Vec<(f64, f64)> {
    std::fs::read_to_string(dir.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect()
}

fn spawn<S: AsRef<OsStr>>(args: &[S]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Reads the child's stdout until a line containing `marker`; returns the lines read.
fn wait_for_line(child: &mut Child, marker: &str) -> Vec<String> {
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let found = line.contains(marker);
        lines.push(line);
        if found {
            return lines;
        }
    }
    panic!("the run ended without printing {marker:?}: {lines:?}");
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `train --resume DIR/checkpoint.safetensors` up to `epochs`, writing into DIR again.
fn resume_args(dir: &Path, epochs: usize, backend: &str) -> Vec<String> {
    let ckpt = dir.join("checkpoint.safetensors");
    [
        "train",
        "--quiet",
        "--resume",
        ckpt.to_str().unwrap(),
        "--epochs",
        &epochs.to_string(),
        "--backend",
        backend,
        "--out",
        dir.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn train_args<'a>(extra: &[&'a str], out: &'a str) -> Vec<&'a str> {
    let mut args = vec!["train", "--quiet", "--out", out];
    args.extend_from_slice(extra);
    args
}

/// conv-dae on 3000 images at batch 32: about 94 steps per epoch, a few seconds on the CPU backend.
const CONV_RUN: &[&str] = &[
    "--variant",
    "conv-dae",
    "--limit",
    "3000",
    "--batch-size",
    "32",
    "--backend",
    "cpu",
    "--steps-per-submit",
    "1",
];

#[test]
fn ctrl_c_saves_mid_epoch_and_the_resumed_run_matches_an_uninterrupted_one() {
    let whole = temp_dir("whole");
    let o = run(&train_args(
        &[CONV_RUN, &["--epochs", "2"]].concat(),
        whole.to_str().unwrap(),
    ));
    assert!(o.status.success(), "{}", text(&o.stderr));

    let cut = temp_dir("cut");
    let cut_s = cut.to_str().unwrap();
    let mut child = spawn(&train_args(&[CONV_RUN, &["--epochs", "2"]].concat(), cut_s));
    wait_for_line(&mut child, "backend:");
    std::thread::sleep(std::time::Duration::from_millis(400));
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let said = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "Ctrl-C exits with 130: {said}\n{}",
        text(&out.stderr)
    );
    assert!(
        said.contains("interrupted at epoch 1, step"),
        "stopped inside the first epoch: {said}"
    );
    let saved =
        checkpoint::load(&cut.join("checkpoint.safetensors")).expect("a loadable checkpoint");
    assert!(
        saved.state.position.batch_in_epoch > 0 && saved.state.position.epoch == 0,
        "{:?}",
        saved.state
    );

    let o = run(&resume_args(&cut, 2, "cpu"));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("resumed at epoch 1"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(
        losses(&cut),
        losses(&whole),
        "the resumed CPU run repeats the uninterrupted one exactly"
    );
}

#[test]
fn sigkill_during_saves_leaves_a_checkpoint_that_resumes_exactly() {
    // Tiny epochs with a save after each: killing the process lands in or next to a save.
    let quick: &[&str] = &[
        "--limit",
        "256",
        "--batch-size",
        "64",
        "--backend",
        "cpu",
        "--hidden",
        "64",
        "--latent",
        "16",
    ];
    let whole = temp_dir("kill-whole");
    let o = run(&train_args(
        &[quick, &["--epochs", "24"]].concat(),
        whole.to_str().unwrap(),
    ));
    assert!(o.status.success(), "{}", text(&o.stderr));

    let cut = temp_dir("kill-cut");
    let cut_s = cut.to_str().unwrap();
    let ckpt = cut.join("checkpoint.safetensors");
    let mut child = spawn(&train_args(&[quick, &["--epochs", "24"]].concat(), cut_s));
    for (round, at) in ["epoch   5", "epoch  11", "epoch  17"].iter().enumerate() {
        wait_for_line(&mut child, at);
        signal(&child, "-KILL");
        let _ = child.wait();
        let saved = checkpoint::load(&ckpt)
            .unwrap_or_else(|e| panic!("round {round}: checkpoint damaged: {e}"));
        assert!(
            saved.state.position.epoch >= 4 + 6 * round,
            "round {round}: {:?}",
            saved.state
        );
        child = spawn(&resume_args(&cut, 24, "cpu"));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        losses(&cut),
        losses(&whole),
        "three kills later, the same losses to the last digit"
    );
}

#[test]
fn gpu_resume_matches_an_uninterrupted_run() {
    let Some(backend) = common::gpu_backend() else {
        return;
    };
    let quick: &[&str] = &["--limit", "512", "--batch-size", "64", "--backend", backend];
    let whole = temp_dir("gpu-whole");
    let o = run(&train_args(
        &[quick, &["--epochs", "3"]].concat(),
        whole.to_str().unwrap(),
    ));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let cut = temp_dir("gpu-cut");
    let cut_s = cut.to_str().unwrap();
    let o = run(&train_args(&[quick, &["--epochs", "1"]].concat(), cut_s));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = run(&resume_args(&cut, 3, backend));
    assert!(o.status.success(), "{}", text(&o.stderr));
    for ((a_train, a_test), (b_train, b_test)) in losses(&cut).into_iter().zip(losses(&whole)) {
        assert!(
            (a_train - b_train).abs() <= 1e-5 * b_train,
            "train {a_train} vs {b_train}"
        );
        assert!(
            (a_test - b_test).abs() <= 1e-5 * b_test,
            "test {a_test} vs {b_test}"
        );
    }
}

#[test]
fn a_nan_stops_training_with_epoch_and_step_and_keeps_the_last_good_checkpoint() {
    let out = temp_dir("nan");
    let out_s = out.to_str().unwrap();
    // 300 images at batch 128: 3 steps per epoch; step 5 is the second batch of epoch 2.
    let o = Command::new(BIN)
        .args([
            "train",
            "--quiet",
            "--limit",
            "300",
            "--epochs",
            "3",
            "--backend",
            "cpu",
            "--out",
            out_s,
        ])
        .env("GPU_AE_INJECT_NAN_AT_STEP", "4")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("became NaN at epoch 2, step 5"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let saved = checkpoint::load(&out.join("checkpoint.safetensors"))
        .expect("the epoch-1 checkpoint survives");
    assert_eq!(saved.state.position.epoch, 1);
    let o = run(&[
        "eval",
        "--checkpoint",
        out.join("checkpoint.safetensors").to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("test bce per pixel"),
        "{}",
        text(&o.stdout)
    );
}

#[test]
fn eval_and_reconstruct_read_a_checkpoint() {
    let out = temp_dir("eval");
    let out_s = out.to_str().unwrap();
    let o = run(&[
        "train",
        "--quiet",
        "--variant",
        "conv-ae",
        "--deck",
        "pool",
        "--channels",
        "4,8",
        "--limit",
        "200",
        "--epochs",
        "1",
        "--backend",
        "cpu",
        "--out",
        out_s,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let ckpt = out.join("checkpoint.safetensors");
    let o = run(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let said = text(&o.stdout);
    let reported: f64 = said
        .lines()
        .find_map(|l| l.strip_prefix("test bce per pixel: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    let trained = losses(&out)[0].1;
    assert!(
        (reported - trained).abs() < 1e-6,
        "eval {reported} vs the run's own {trained}"
    );
    assert!(said.contains("test mse per pixel"), "{said}");
    let png = out.join("again.png");
    let o = run(&[
        "reconstruct",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--backend",
        "cpu",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(image::open(&png).is_ok());
}

#[test]
fn bad_checkpoints_are_named_and_refused() {
    let dir = temp_dir("bad");
    let foreign = dir.join("foreign.safetensors");
    std::fs::write(
        &foreign,
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":\"b\"}      ",
    )
    .unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, [200, 0, 0, 0]).unwrap();
    for file in [&foreign, &truncated] {
        let o = run(&[
            "eval",
            "--checkpoint",
            file.to_str().unwrap(),
            "--backend",
            "cpu",
        ]);
        assert_eq!(o.status.code(), Some(1));
        let err = text(&o.stderr);
        assert!(
            err.contains(file.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // A checkpoint whose tensors do not fit the model its configuration describes.
    let out = temp_dir("misfit");
    let o = run(&[
        "train",
        "--quiet",
        "--limit",
        "100",
        "--epochs",
        "1",
        "--backend",
        "cpu",
        "--hidden",
        "32",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut ckpt = checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    ckpt.config["hidden"] = serde_json::json!([48]);
    let misfit = dir.join("misfit.safetensors");
    checkpoint::save(&misfit, &ckpt).unwrap();
    let o = run(&[
        "eval",
        "--checkpoint",
        misfit.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("misfit.safetensors") && err.contains("does not fit"),
        "{err}"
    );
}

#[test]
fn a_missing_backend_says_how_to_get_one() {
    // No Metal on Linux (and no DX12): the message points at lavapipe and at --backend cpu.
    let api = if cfg!(target_os = "macos") {
        "dx12"
    } else {
        "metal"
    };
    let o = run(&[
        "train",
        "--limit",
        "10",
        "--backend",
        api,
        "--out",
        temp_dir("noapi").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("--backend cpu") && err.contains("mesa-vulkan-drivers"),
        "{err}"
    );
}

#[test]
fn a_batch_beyond_the_adapters_buffer_limit_is_refused_clearly() {
    let Some(ctx) = common::gpu() else { return };
    let backend = common::gpu_backend().expect("the adapter gpu() opened");
    let limit = ctx
        .limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size);
    let batch = (limit / (784 * 4) + 1).to_string();
    let o = run(&[
        "train",
        "--limit",
        "100",
        "--batch-size",
        &batch,
        "--backend",
        backend,
        "--out",
        temp_dir("huge").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("allows at most") && err.contains("bytes"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn detect_anomaly_names_the_first_op_that_went_non_finite() {
    let mut backends = vec!["cpu"];
    if let Some(backend) = common::gpu_backend() {
        backends.push(backend);
    }
    for backend in backends {
        let out = temp_dir(&format!("anomaly-{backend}"));
        // 300 images at batch 128: step 5 is the second batch of epoch 2; the hook poisons the output bias.
        let o = Command::new(BIN)
            .args([
                "train",
                "--quiet",
                "--limit",
                "300",
                "--epochs",
                "3",
                "--backend",
                backend,
                "--detect-anomaly",
                "--out",
                out.to_str().unwrap(),
            ])
            .env("GPU_AE_INJECT_NAN_AT_STEP", "4")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{backend}");
        let err = text(&o.stderr);
        assert!(
            err.contains(
                "matmul_bias_act (128×256·256×784ᵀ + bias, identity), wrote NaN to layers.3.out[0] at epoch 2, step 5"
            ),
            "{backend}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn the_anomaly_slow_path_trains_exactly_like_the_fast_one() {
    let args = |extra: &[&str], out: &Path| {
        let mut a = vec![
            "train".to_string(),
            "--quiet".into(),
            "--variant".into(),
            "conv-ae".into(),
            "--deck".into(),
            "pool".into(),
            "--channels".into(),
            "3,5".into(),
            "--limit".into(),
            "150".into(),
            "--batch-size".into(),
            "40".into(),
            "--epochs".into(),
            "2".into(),
            "--backend".into(),
            "cpu".into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let fast = temp_dir("fast");
    let slow = temp_dir("slow");
    for (dir, extra) in [(&fast, &[][..]), (&slow, &["--detect-anomaly"][..])] {
        let o = Command::new(BIN).args(args(extra, dir)).output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    assert_eq!(losses(&slow), losses(&fast));
}

#[test]
fn a_lost_device_stops_with_a_message_and_the_checkpoint_resumes() {
    let Some(backend) = common::gpu_backend() else {
        return;
    };
    let out = temp_dir("lost");
    let out_s = out.to_str().unwrap();
    // 300 images at batch 128: 3 steps per epoch; the device is destroyed before step 5 (epoch 2).
    let o = Command::new(BIN)
        .args([
            "train",
            "--quiet",
            "--limit",
            "300",
            "--epochs",
            "3",
            "--out",
            out_s,
            "--backend",
            backend,
        ])
        .env("GPU_AE_LOSE_DEVICE_AT_STEP", "4")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("the GPU failed during epoch 2") && err.contains("device lost"),
        "{err}"
    );
    assert!(err.contains("keeps the last good state"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let ckpt = out.join("checkpoint.safetensors");
    let saved = checkpoint::load(&ckpt).expect("the epoch-1 checkpoint is intact");
    assert_eq!(saved.state.position.epoch, 1);
    let o = run(&resume_args(&out, 3, backend));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(losses(&out).len(), 3);
}
