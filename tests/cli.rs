//! The binary as a user runs it: outputs, exit codes, messages.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gpu_ae(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-ae"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a short training and returns (stdout, metrics.csv).
fn short_training(backend: &str, out: &Path, seed: &str) -> (String, String) {
    let out_s = out.to_str().unwrap();
    let o = gpu_ae(&[
        "train",
        "--variant",
        "ae",
        "--epochs",
        "2",
        "--limit",
        "700",
        "--backend",
        backend,
        "--out",
        out_s,
        "--seed",
        seed,
        "--quiet",
    ]);
    assert!(
        o.status.success(),
        "training failed:\n{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    (
        text(&o.stdout),
        std::fs::read_to_string(out.join("metrics.csv")).unwrap(),
    )
}

fn losses(csv: &str) -> Vec<(f64, f64)> {
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect()
}

#[test]
fn cpu_training_writes_metrics_and_a_reconstruction_picture_and_repeats_exactly() {
    let out = temp_dir("cpu");
    let (stdout, csv) = short_training("cpu", &out, "3");
    assert!(stdout.contains("epoch   2"), "{stdout}");
    let rows = losses(&csv);
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[1].0 < rows[0].0, "training loss falls: {rows:?}");
    let png = image::open(out.join("reconstructions.png")).expect("a readable PNG");
    assert!(png.width() > 16 * 28 && png.height() > 2 * 28);
    // Same seed, same losses, to the last printed digit.
    let (_, again) = short_training("cpu", &temp_dir("cpu-again"), "3");
    assert_eq!(losses(&again), rows);
    let (_, other) = short_training("cpu", &temp_dir("cpu-other"), "4");
    assert_ne!(losses(&other), rows);
}

#[test]
fn gpu_training_agrees_with_cpu_training() {
    let Some(backend) = common::gpu_backend() else {
        return;
    };
    let (_, cpu) = short_training("cpu", &temp_dir("agree-cpu"), "5");
    let (stdout, gpu) = short_training(backend, &temp_dir("agree-gpu"), "5");
    assert!(stdout.contains("backend:"), "{stdout}");
    for ((ct, cv), (gt, gv)) in losses(&cpu).into_iter().zip(losses(&gpu)) {
        assert!((ct - gt).abs() <= 1e-3 * ct, "train loss cpu {ct} gpu {gt}");
        assert!((cv - gv).abs() <= 1e-3 * cv, "test loss cpu {cv} gpu {gv}");
    }
}

#[test]
fn info_lists_the_adapter() {
    if common::gpu().is_none() {
        return;
    }
    let o = gpu_ae(&["info"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = text(&o.stdout);
    assert!(
        s.contains("adapter 0") && s.contains("max storage binding"),
        "{s}"
    );
    assert!(
        s.contains("gpu-ae selftest"),
        "info points to selftest: {s}"
    );
    // The features that decide what the engine can do, each answered for every adapter.
    let adapters = s.matches("\nadapter ").count() + usize::from(s.starts_with("adapter "));
    for feature in [
        "shader f16",
        "timestamp queries",
        "subgroups",
        "cooperative matrices",
    ] {
        let answered = s
            .lines()
            .filter(|l| {
                let rest = l.trim_start().strip_prefix(feature).map(str::trim_start);
                rest.is_some_and(|r| r.starts_with("yes") || r.starts_with("no"))
            })
            .count();
        assert_eq!(answered, adapters, "{feature} per adapter: {s}");
    }
}

#[test]
fn a_missing_data_directory_is_a_clear_error_not_a_panic() {
    let o = gpu_ae(&[
        "train",
        "--data",
        "/nonexistent/idx",
        "--backend",
        "cpu",
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("/nonexistent/idx: no such directory"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_corrupt_idx_file_is_named_and_nothing_is_written() {
    let data = temp_dir("corrupt");
    let src = gpu_ae::data::mnist::bundled_dir();
    for f in [
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ] {
        std::fs::copy(src.join(f), data.join(f)).unwrap();
    }
    // An images file with the labels' magic number.
    std::fs::write(
        data.join("train-images-idx3-ubyte"),
        [0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 7],
    )
    .unwrap();
    let out = data.join("out");
    let o = gpu_ae(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--backend",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("magic"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !out.exists(),
        "no output directory for a run that never started"
    );
}

#[test]
fn bad_flags_are_rejected_with_help() {
    let o = gpu_ae(&["train", "--optimizer", "lbfgs"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("lbfgs") && err.contains("rmsprop"), "{err}");
    let o = gpu_ae(&[
        "train",
        "--batch-size",
        "0",
        "--backend",
        "cpu",
        "--limit",
        "10",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("batch"), "{}", text(&o.stderr));
}

/// The engine-core acceptance figure: 784-256-64-256-784, ReLU, sigmoid + BCE, Adam 1e-3, batch 128,
/// 4 epochs of full MNIST reach a test BCE per pixel ≤ 0.0905 (PyTorch: 0.0886). CPU backend, ~15 s.
#[test]
fn dense_ae_reaches_the_reference_test_loss_in_four_epochs_on_cpu() {
    let out = temp_dir("reference");
    let o = gpu_ae(&[
        "train",
        "--variant",
        "ae",
        "--epochs",
        "4",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows = losses(&std::fs::read_to_string(out.join("metrics.csv")).unwrap());
    let test_loss = rows[3].1;
    assert!(
        test_loss <= 0.0905,
        "test BCE per pixel after 4 epochs is {test_loss}"
    );
}

/// The convolution acceptance figure: the default conv-dae (gaussian:0.5, BCE, Adam 1e-3, batch 128), 4 epochs
/// of full MNIST reach a noisy→clean test BCE per pixel ≤ 0.105 (PyTorch: 0.1027). CPU backend, ~25 s on 2 cores.
#[test]
fn conv_dae_reaches_the_reference_test_loss_in_four_epochs_on_cpu() {
    let out = temp_dir("conv-reference");
    let o = gpu_ae(&[
        "train",
        "--variant",
        "conv-dae",
        "--epochs",
        "4",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows = losses(&std::fs::read_to_string(out.join("metrics.csv")).unwrap());
    let test_loss = rows[3].1;
    assert!(
        test_loss <= 0.105,
        "noisy→clean test BCE per pixel after 4 epochs is {test_loss}"
    );
}

/// The README's main job, in its short form: conv-dae with its default Gaussian noise writes the
/// denoising picture, on the CPU backend and on the GPU (lavapipe in CI); the CPU repeats exactly.
#[test]
fn conv_dae_short_run_writes_a_denoising_picture_and_repeats_exactly() {
    let run = |backend: &str, name: &str| {
        let out = temp_dir(name);
        let o = gpu_ae(&[
            "train",
            "--variant",
            "conv-dae",
            "--epochs",
            "1",
            "--limit",
            "300",
            "--batch-size",
            "64",
            "--backend",
            backend,
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "{}\n{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        let picture = image::open(out.join("denoising.png")).expect("a readable denoising.png");
        assert!(picture.height() > 3 * 28 * 3, "three rows of digits");
        losses(&std::fs::read_to_string(out.join("metrics.csv")).unwrap())
    };
    let cpu = run("cpu", "cdae-cpu");
    assert_eq!(
        run("cpu", "cdae-cpu-again"),
        cpu,
        "same seed, same noise, same losses"
    );
    if let Some(backend) = common::gpu_backend() {
        let gpu = run(backend, "cdae-gpu");
        assert!(
            (gpu[0].1 - cpu[0].1).abs() <= 1e-3 * cpu[0].1,
            "test loss gpu {:?} cpu {:?}",
            gpu,
            cpu
        );
    }
}

#[test]
fn a_bad_noise_spec_is_rejected_with_the_accepted_forms() {
    let o = gpu_ae(&["train", "--variant", "conv-dae", "--noise", "blur:2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("gaussian, mask, salt-pepper or square"),
        "{}",
        text(&o.stderr)
    );
    let o = gpu_ae(&["train", "--variant", "conv-dae", "--noise", "mask:1.5"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn every_noise_form_trains() {
    for noise in ["gaussian:0.3", "mask:0.25", "salt-pepper:0.1", "none"] {
        let out = temp_dir(&format!("noise-{noise}").replace(':', "-"));
        let o = gpu_ae(&[
            "train",
            "--variant",
            "conv-ae",
            "--channels",
            "4,8",
            "--noise",
            noise,
            "--limit",
            "100",
            "--epochs",
            "1",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "--noise {noise}: {}", text(&o.stderr));
        assert_eq!(
            out.join("denoising.png").exists(),
            noise != "none",
            "--noise {noise}: a denoising picture exactly when there is noise"
        );
    }
}

#[test]
fn profile_with_resume_profiles_the_checkpoints_model_from_where_it_stopped() {
    let Some(backend) = common::gpu_backend() else {
        return;
    };
    let out = temp_dir("profile-resume");
    let out_s = out.to_str().unwrap();
    let small = [
        "--variant",
        "ae",
        "--hidden",
        "16",
        "--latent",
        "4",
        "--limit",
        "300",
        "--quiet",
    ];
    let o = gpu_ae(
        &[
            &["train", "--backend", "cpu", "--epochs", "2", "--out", out_s][..],
            &small,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let first_epoch = losses(&std::fs::read_to_string(out.join("metrics.csv")).unwrap())[0].0;
    let ckpt = out.join("checkpoint.safetensors");
    let o = gpu_ae(&[
        "train",
        "--resume",
        ckpt.to_str().unwrap(),
        "--profile",
        "--backend",
        backend,
        "--epochs",
        "3",
        "--quiet",
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    assert!(
        stdout.contains("profiling the checkpoint's model from epoch 3, step 0"),
        "{stdout}"
    );
    // The profiled epoch continues the trained model: its loss is below a fresh model's first epoch.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("epoch   3  train loss"))
        .expect("the profiled epoch's line");
    let loss: f64 = line.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(
        loss < first_epoch,
        "{loss} vs a fresh model's {first_epoch}"
    );
}

/// With only a software rasteriser (lavapipe in CI), `auto` trains on the CPU backend, says why, and
/// keeps Mesa's XDG_RUNTIME_DIR message off the screen; naming the API still runs on the rasteriser.
#[test]
fn auto_prefers_the_cpu_backend_to_a_software_rasteriser() {
    let Some(ctx) = common::gpu() else { return };
    let software = ctx.info.device_type == wgpu::DeviceType::Cpu;
    let named = std::env::var("WGPU_ADAPTER_NAME").is_ok_and(|n| !n.is_empty());
    let out = temp_dir("auto-choice");
    let args = |backend: &'static str| {
        vec![
            "train",
            "--limit",
            "64",
            "--epochs",
            "1",
            "--quiet",
            "--save-every",
            "0",
            "--backend",
            backend,
            "--out",
            out.to_str().unwrap(),
            "--overwrite",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let auto = args("auto");
    let o = gpu_ae(&auto.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    if software && !named {
        assert!(
            stdout.contains("--backend auto chose the CPU backend: no hardware GPU found")
                && stdout.contains("backend: cpu"),
            "{stdout}"
        );
        let backend = common::gpu_backend().unwrap();
        let named = args(backend);
        let o = gpu_ae(&named.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(
            text(&o.stdout).contains(&ctx.info.name),
            "{}",
            text(&o.stdout)
        );
    } else {
        assert!(stdout.contains(&ctx.info.name), "{stdout}");
    }
}
