//! The sparse, contractive, emphasised-denoising and hashing autoencoders as a user trains them: the figures the
//! README quotes (4 epochs on the CPU against PyTorch's, with the tolerances), and short runs on
//! the GPU that agree with the CPU.
//!
//! PyTorch reference figures (same models, same loss conventions, 4 epochs, batch 128, Adam 1e-3; seeds
//! differ, so the checks are bounds, not equalities) are in the comments beside each bound.

mod common;

use std::collections::HashMap;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gpu-ae");

/// The last epoch's row of DIR/metrics.csv, by column name.
type Row = HashMap<String, f64>;

/// `gpu-ae train ARGS --backend BACKEND --quiet` into a fresh directory; returns every epoch's row.
fn train(name: &str, backend: &str, args: &[&str]) -> Vec<Row> {
    let dir = common::train_into(&format!("variants-{name}"), backend, args);
    let rows = common::metrics_rows(&dir);
    std::fs::remove_dir_all(&dir).ok();
    rows
}

fn last(rows: &[Row]) -> &Row {
    rows.last().expect("at least one epoch")
}

/// The full figures: 4 epochs of all 60 000 training images on the CPU (about a minute on 2 cores).
#[test]
fn four_cpu_epochs_reproduce_the_pytorch_figures() {
    // L1 on a 32-unit ReLU code: BCE ≤ 0.172 [PyTorch 0.1641]; code activation ≤ 0.2 × without [0.567 vs 5.44].
    let dense32 = ["--variant", "ae", "--hidden", "none", "--latent", "32"];
    let l1 = train("l1", "cpu", &[&dense32[..], &["--l1", "1e-3"]].concat());
    let plain = train("l1-off", "cpu", &dense32);
    let (l1, plain) = (last(&l1), last(&plain));
    assert!(l1["test_recon"] <= 0.172, "{l1:?}");
    assert!(l1["test_loss"] <= 0.172, "{l1:?}");
    assert!(
        l1["test_code_mean"] <= 0.2 * plain["test_code_mean"],
        "{l1:?} vs {plain:?}"
    );

    // KL sparsity, ρ = 0.05: β = 0.01 → activation in [0.045, 0.065] [0.0526], BCE ≤ 0.135 [0.1290];
    // β = 0.001 → [0.06, 0.085] [0.0714], BCE ≤ 0.094 [0.0895].
    let sparse = train("sparse", "cpu", &["--variant", "sparse-ae"]);
    let s = last(&sparse);
    assert!((0.045..=0.065).contains(&s["test_code_mean"]), "{s:?}");
    assert!(s["test_recon"] <= 0.135, "{s:?}");
    let weak = train(
        "sparse-weak",
        "cpu",
        &["--variant", "sparse-ae", "--kl-sparsity", "0.05:0.001"],
    );
    let w = last(&weak);
    assert!((0.06..=0.085).contains(&w["test_code_mean"]), "{w:?}");
    assert!(w["test_recon"] <= 0.094, "{w:?}");

    // Contractive, λ = 1e-3: BCE ≤ 0.108 [0.1025]; ‖J‖² ≤ 0.2 × with λ = 0 [11.7 vs 97.5].
    let cae = train("cae", "cpu", &["--variant", "cae"]);
    let free = train(
        "cae-free",
        "cpu",
        &["--variant", "cae", "--contractive", "0"],
    );
    let (c, f) = (last(&cae), last(&free));
    assert!(c["test_recon"] <= 0.108, "{c:?}");
    assert!(
        c["test_jacobian_sq"] <= 0.2 * f["test_jacobian_sq"],
        "{c:?} vs {f:?}"
    );

    // Emphasis: 1:1 is the plain masked loss exactly; 1:0.1 reconstructs corrupted components better.
    let masked = ["--variant", "ae", "--noise", "mask:0.25"];
    let plain = train("mask", "cpu", &masked);
    let even = train(
        "mask-1-1",
        "cpu",
        &[&masked[..], &["--emphasis", "1:1"]].concat(),
    );
    let tilted = train(
        "mask-1-0.1",
        "cpu",
        &[&masked[..], &["--emphasis", "1:0.1"]].concat(),
    );
    for (p, e) in plain.iter().zip(&even) {
        assert_eq!(p["train_loss"], e["train_loss"]);
        assert_eq!(p["test_loss"], e["test_loss"]);
    }
    assert!(
        last(&tilted)["test_recon_corrupted"] < last(&even)["test_recon_corrupted"],
        "{:?} vs {:?}",
        last(&tilted),
        last(&even)
    );
}

/// One short epoch of each new variant on the GPU (lavapipe in CI) agrees with the CPU in every column.
#[test]
fn short_gpu_runs_of_every_new_variant_agree_with_the_cpu() {
    let Some(backend) = common::gpu_backend() else {
        return;
    };
    let short = ["--limit", "400", "--epochs", "1"];
    let runs: [(&str, &[&str]); 6] = [
        (
            "l1",
            &[
                "--variant",
                "ae",
                "--hidden",
                "none",
                "--latent",
                "32",
                "--l1",
                "1e-3",
            ],
        ),
        ("sparse", &["--variant", "sparse-ae"]),
        ("cae", &["--variant", "cae"]),
        (
            "emphasis",
            &[
                "--variant",
                "ae",
                "--noise",
                "mask:0.25",
                "--emphasis",
                "1:0.1",
            ],
        ),
        ("hash", &["--variant", "hash-ae", "--bits", "24"]),
        (
            "conv-l1",
            &[
                "--variant",
                "conv-dae",
                "--noise",
                "salt-pepper:0.2",
                "--emphasis",
                "2:1",
                "--l1",
                "1e-4",
            ],
        ),
    ];
    for (name, args) in runs {
        let args = [args, &short[..]].concat();
        let cpu = train(&format!("short-{name}"), "cpu", &args);
        let gpu = train(&format!("short-{name}"), backend, &args);
        let (c, g) = (last(&cpu), last(&gpu));
        for (column, want) in c {
            if matches!(column.as_str(), "seconds" | "samples_per_second") {
                continue;
            }
            let got = g[column];
            assert!(
                (got - want).abs() <= 2e-3 * want.abs().max(1e-3),
                "{name}: {column} cpu {want} gpu {got}"
            );
        }
    }
}

/// Flags that cannot apply to a model fail with a message naming the term and the layer.
#[test]
fn penalties_that_do_not_fit_the_variant_say_why() {
    let fails = |args: &[&str], needles: &[&str]| {
        let o = Command::new(BIN)
            .arg("train")
            .args(args)
            .args([
                "--backend",
                "cpu",
                "--limit",
                "10",
                "--quiet",
                "--save-every",
                "0",
            ])
            .args([
                "--out",
                std::env::temp_dir()
                    .join("gpu-ae-variants-refused")
                    .to_str()
                    .unwrap(),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    };
    fails(
        &["--variant", "conv-ae", "--kl-sparsity", "0.05:0.01"],
        &["KL sparsity", "sigmoid", "Conv2d"],
    );
    fails(
        &["--variant", "conv-ae", "--contractive", "1e-3"],
        &[
            "--contractive does not apply to --variant conv-ae",
            "convolutional",
        ],
    );
    fails(
        &["--variant", "ae", "--emphasis", "1:0.5"],
        &["emphasis", "no corruption"],
    );
    fails(
        &["--variant", "conv-dae", "--emphasis", "1:0.5"],
        &["emphasis", "Gaussian"],
    );
    fails(
        &["--variant", "ae", "--kl-sparsity", "1.5:0.1"],
        &["--kl-sparsity", "between 0 and 1"],
    );
}
