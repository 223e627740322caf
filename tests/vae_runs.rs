//! The variational autoencoders as a user runs them: the figures the README quotes (CPU, full MNIST,
//! against PyTorch's with the tolerances), short runs on the GPU that agree with the CPU, the
//! sample, interpolate and manifold commands on both backends, their refusals, and a resumed run that
//! repeats an uninterrupted one exactly.
//!
//! PyTorch reference figures (the same models and loss conventions, batch 128, Adam 1e-3; the PyTorch
//! examples' VAE) are in the comments beside each bound.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};

use common::metrics_rows;

use gpu_ae::backend::cpu::CpuExecutor;
use gpu_ae::checkpoint;
use gpu_ae::run::config::Variant;
use gpu_ae::run::dir::{OutChoice, RunDir};
use gpu_ae::run::{self, Observer, RunConfig, RunEnd, RunOptions};
use gpu_ae::train::{Faults, Progress};

const BIN: &str = env!("CARGO_BIN_EXE_gpu-ae");

type Row = HashMap<String, f64>;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-vae-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn gpu_ae<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `gpu-ae train ARGS --backend BACKEND --quiet` into a fresh directory, which is returned.
fn train(name: &str, backend: &str, args: &[&str]) -> PathBuf {
    common::train_into(&format!("vae-{name}"), backend, args)
}

/// The full figures: 10 epochs of the PyTorch examples' VAE, 4 of the β-VAE and 4 of the convolutional
/// VAE, all 60 000 training images on the CPU backend (about two minutes on 2 cores).
#[test]
fn cpu_runs_reproduce_the_pytorch_figures() {
    // vae: test loss per image ≤ 106.5 after 10 epochs [PyTorch 105.5; its examples' log ≈ 105.6],
    // ≤ 110.8 after 4 [109.7].
    let dir = train("vae", "cpu", &["--variant", "vae", "--epochs", "10"]);
    let vae = metrics_rows(&dir);
    assert_eq!(vae.len(), 10);
    assert!(vae[3]["test_loss"] <= 110.8, "{:?}", vae[3]);
    assert!(vae[9]["test_loss"] <= 106.5, "{:?}", vae[9]);
    // The total is the negative ELBO: recon + KL per image, and the per-pixel figure is recon / 784.
    let last = &vae[9];
    assert!((last["test_loss"] - (last["test_recon"] + last["test_kl"])).abs() < 1e-3);
    assert!((last["test_recon_per_pixel"] * 784.0 - last["test_recon"]).abs() < 1e-2);
    assert!(dir.join("samples.png").is_file());
    std::fs::remove_dir_all(&dir).ok();

    // β = 4, 4 epochs: KL ≤ 10.0 per image [9.0], reconstruction ≤ 121 [118.1].
    let dir = train("beta4", "cpu", &["--variant", "vae", "--beta", "4"]);
    let b = &metrics_rows(&dir)[3];
    assert!(b["test_kl"] <= 10.0, "{b:?}");
    assert!(b["test_recon"] <= 121.0, "{b:?}");
    assert!((b["test_loss"] - (b["test_recon"] + 4.0 * b["test_kl"])).abs() < 1e-3);
    std::fs::remove_dir_all(&dir).ok();

    // conv-vae, 4 epochs: lower test loss per image than the dense VAE's after 4.
    let dir = train("conv-vae", "cpu", &["--variant", "conv-vae"]);
    let c = &metrics_rows(&dir)[3];
    assert!(
        c["test_loss"] < vae[3]["test_loss"],
        "{c:?} vs {:?}",
        vae[3]
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The same short runs on the GPU and the CPU (the same ε, drawn on each device from the same counter):
/// the losses within 1e-4 relative. The KL within 5e-4: a statistic of the code, which Adam's first steps
/// move by about ±lr wherever a gradient is near zero, so the devices' different rounding shows in it
/// first (as in the other variants' code_mean). Before any update the devices' KL agree to 1e-7, and with
/// equal parameters they compute the same KL (the parity test in tests/vae.rs); one step later the test
/// KL differs by about 8e-5.
#[test]
fn short_gpu_runs_agree_with_the_cpu() {
    let Some(backend) = common::gpu_backend() else {
        return;
    };
    for (name, args) in [
        (
            "vae-short",
            &["--variant", "vae", "--limit", "1000", "--epochs", "2"][..],
        ),
        (
            "conv-vae-short",
            &["--variant", "conv-vae", "--limit", "300", "--epochs", "1"][..],
        ),
    ] {
        let args = [args, &["--kl-warmup", "1"]].concat();
        let (cpu_dir, gpu_dir) = (train(name, "cpu", &args), train(name, backend, &args));
        let (cpu, gpu) = (metrics_rows(&cpu_dir), metrics_rows(&gpu_dir));
        for (c, g) in cpu.iter().zip(&gpu) {
            for (column, &want) in c {
                if column == "seconds" || column == "samples_per_second" {
                    continue;
                }
                let got = g[column];
                let tolerance = if column.ends_with("_kl") { 5e-4 } else { 1e-4 };
                assert!(
                    (got - want).abs() <= tolerance * want.abs().max(1e-6),
                    "{name}, epoch {}: {column} on the GPU {got} vs the CPU {want}",
                    c["epoch"]
                );
            }
        }
        for dir in [cpu_dir, gpu_dir] {
            std::fs::remove_dir_all(dir).ok();
        }
    }
}

/// A PNG's size and grey levels.
fn picture(path: &Path) -> image::GrayImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_luma8()
}

#[test]
fn sample_interpolate_and_manifold_draw_on_both_backends() {
    let ck = train(
        "gen",
        "cpu",
        &[
            "--variant",
            "vae",
            "--latent",
            "2",
            "--limit",
            "500",
            "--epochs",
            "1",
        ],
    );
    let mut backends = vec!["cpu"];
    backends.extend(common::gpu_backend());
    let mut drawn: HashMap<&str, Vec<image::GrayImage>> = HashMap::new();
    for backend in backends {
        for (command, extra) in [
            ("sample", &["--count", "20", "--temperature", "0.8"][..]),
            ("interpolate", &["--pairs", "3", "--steps", "5"][..]),
            ("manifold", &["--grid", "7"][..]),
        ] {
            let out = ck.join(format!("{command}-{backend}.png"));
            let o = gpu_ae(
                &[
                    &[command, "--backend", backend, "--checkpoint"][..],
                    &[ck.to_str().unwrap(), "--out", out.to_str().unwrap()],
                    extra,
                ]
                .concat(),
            );
            assert!(o.status.success(), "{command} on {backend}: {}", said(&o));
            assert!(
                said(&o).contains(&format!("wrote {}", out.display())),
                "{}",
                said(&o)
            );
            drawn.entry(command).or_default().push(picture(&out));
        }
    }
    // Decoded digits have ink and background; GPU and CPU pictures agree to a grey level.
    for (command, pictures) in &drawn {
        let first = &pictures[0];
        assert!(first.pixels().any(|p| p.0[0] > 200) && first.pixels().any(|p| p.0[0] < 50));
        for other in &pictures[1..] {
            assert_eq!(first.dimensions(), other.dimensions(), "{command}");
            let worst = first
                .pixels()
                .zip(other.pixels())
                .map(|(a, b)| a.0[0].abs_diff(b.0[0]))
                .max()
                .unwrap();
            assert!(
                worst <= 1,
                "{command}: GPU and CPU pictures differ by {worst} grey levels"
            );
        }
    }
    // The picture the train run wrote, beside its reconstructions.
    assert!(picture(&ck.join("samples.png")).width() > 0);
    std::fs::remove_dir_all(&ck).ok();
}

#[test]
fn generation_refuses_what_a_model_cannot_do() {
    let vae = train(
        "refuse-vae",
        "cpu",
        &[
            "--variant",
            "vae",
            "--latent",
            "3",
            "--limit",
            "200",
            "--epochs",
            "1",
        ],
    );
    let ae = train("refuse-ae", "cpu", &["--limit", "200", "--epochs", "1"]);
    let pool = train(
        "refuse-pool",
        "cpu",
        &[
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
        ],
    );
    let out = std::env::temp_dir().join(format!("gpu-ae-vae-refused-{}.png", std::process::id()));
    let out_s = out.to_str().unwrap();
    for (args, message) in [
        (
            vec!["manifold", "--checkpoint", vae.to_str().unwrap()],
            "has a 3-D latent (train one with --latent 2)",
        ),
        (
            vec!["sample", "--checkpoint", ae.to_str().unwrap()],
            "only a variational model has; the checkpoint holds a ae",
        ),
        (
            vec!["manifold", "--checkpoint", ae.to_str().unwrap()],
            "only a variational model has",
        ),
        (
            vec!["interpolate", "--checkpoint", pool.to_str().unwrap()],
            "unpools through the encoder's pooling indices",
        ),
        (
            vec![
                "sample",
                "--temperature",
                "0",
                "--checkpoint",
                vae.to_str().unwrap(),
            ],
            "--temperature",
        ),
        (
            vec![
                "interpolate",
                "--steps",
                "1",
                "--checkpoint",
                vae.to_str().unwrap(),
            ],
            "--steps 1: a line needs 2 to 64 points",
        ),
        (
            vec![
                "sample",
                "--count",
                "5000",
                "--checkpoint",
                vae.to_str().unwrap(),
            ],
            "at most 1024 digits",
        ),
    ] {
        let o = gpu_ae(&[&args[..], &["--backend", "cpu", "--out", out_s]].concat());
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", said(&o));
        assert!(said(&o).contains(message), "{args:?}: {}", said(&o));
        assert!(!said(&o).contains("panicked"), "{args:?}: {}", said(&o));
        assert!(!out.exists(), "{args:?} wrote {out_s}");
    }
    // interpolate works on a deterministic model's code.
    let o = gpu_ae(&[
        "interpolate",
        "--backend",
        "cpu",
        "--checkpoint",
        ae.to_str().unwrap(),
        "--out",
        out_s,
    ]);
    assert!(o.status.success(), "{}", said(&o));
    assert!(
        said(&o).contains("from its code to another"),
        "{}",
        said(&o)
    );
    for dir in [vae, ae, pool] {
        std::fs::remove_dir_all(dir).ok();
    }
    std::fs::remove_file(&out).ok();
}

/// Raises the stop flag (as Ctrl-C does) once `at` chunks of training have reported progress.
struct StopAfter<'a> {
    chunks: usize,
    at: usize,
    stop: &'a AtomicBool,
}

impl Observer for StopAfter<'_> {
    fn progress(&mut self, _: &Progress) {
        self.chunks += 1;
        if self.chunks == self.at {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// A VAE run stopped in the middle of its second epoch (inside the KL warm-up) and resumed from its
/// checkpoint ends exactly where the uninterrupted run does on the CPU: every metric of every epoch and
/// every saved tensor, bit for bit (ε is keyed by the global step, the warm-up by the same).
#[test]
fn a_resumed_vae_run_repeats_the_uninterrupted_one_exactly() {
    let config = RunConfig {
        limit: Some(600),
        batch_size: 64,
        kl_warmup: 2,
        noise: Some(gpu_ae::ops::Noise::Mask { fraction: 0.2 }),
        ..Variant::Vae.defaults()
    };
    let data = config.load_data().unwrap();
    let options = RunOptions {
        epochs: 3,
        save_every: 1,
        steps_per_submit: 1,
        detect_anomaly: false,
        faults: Faults::default(),
        history: None,
        patience: None,
    };
    let run = |dir: &Path, resume: Option<&checkpoint::Checkpoint>, stop_at: usize| {
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
        let mut observer = StopAfter {
            chunks: 0,
            at: stop_at,
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
    let whole = temp_dir("resume-whole");
    assert_eq!(run(&whole, None, usize::MAX), RunEnd::Completed);
    let cut = temp_dir("resume-cut");
    // 10 steps an epoch: stopped after 13 or 14 (the chunk in flight finishes).
    let end = run(&cut, None, 13);
    assert!(
        matches!(
            end,
            RunEnd::Interrupted {
                epoch: 2,
                steps_done: 3..=4,
                ..
            }
        ),
        "{end:?}"
    );
    let ckpt = checkpoint::load(&cut.join("checkpoint.safetensors")).unwrap();
    assert_eq!(run(&cut, Some(&ckpt), usize::MAX), RunEnd::Completed);
    let strip = |rows: Vec<Row>| -> Vec<Vec<(String, u64)>> {
        rows.into_iter()
            .map(|r| {
                let mut v: Vec<(String, u64)> = r
                    .into_iter()
                    .filter(|(k, _)| k != "seconds" && k != "samples_per_second")
                    .map(|(k, v)| (k, v.to_bits()))
                    .collect();
                v.sort();
                v
            })
            .collect()
    };
    assert_eq!(strip(metrics_rows(&cut)), strip(metrics_rows(&whole)));
    let (a, b) = (
        checkpoint::load(&cut.join("checkpoint.safetensors")).unwrap(),
        checkpoint::load(&whole.join("checkpoint.safetensors")).unwrap(),
    );
    assert_eq!(a.tensors, b.tensors, "the saved model and optimizer state");
    for dir in [whole, cut] {
        std::fs::remove_dir_all(dir).ok();
    }
}
