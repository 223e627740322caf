//! The deep and the linear autoencoder as a user runs them: the figures the README quotes (CPU, full MNIST,
//! against the PyTorch references and bounds) and a short pretrained run on the GPU that agrees
//! with the CPU.
//!
//! PyTorch references (CPU, seed 0, batch 128, Adam 1e-3, BCE; 2 pretraining epochs per layer, batch 100,
//! CD-1 with momentum SGD): test squared error per image 6.85 after RBM pretraining and 4 fine-tuning
//! epochs, 30.76 from random initialisation; a linear autoencoder with k = 30 after 10 epochs of MSE,
//! 13.92, against PCA's 13.87.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::metrics_rows;

const BIN: &str = env!("CARGO_BIN_EXE_gpu-ae");

/// `gpu-ae train ARGS --backend BACKEND --quiet` into a fresh directory, which is returned.
fn train(name: &str, backend: &str, args: &[&str]) -> PathBuf {
    common::train_into(&format!("deep-{name}"), backend, args)
}

/// The fine-tuning's last row of a run directory's metrics.csv.
fn last_row(dir: &std::path::Path) -> std::collections::HashMap<String, f64> {
    metrics_rows(dir).pop().expect("a row")
}

/// The full figures on the CPU backend: deep-ae with RBM pretraining (2 + 4 epochs), with greedy
/// pretraining, and without any (4 epochs), then the linear autoencoder (10 epochs); about four minutes
/// on 2 cores.
#[test]
fn cpu_runs_reproduce_the_reference_figures() {
    // RBM pretraining: test squared error per image ≤ 8.0 [PyTorch 6.85].
    let rbm_dir = train("rbm", "cpu", &["--variant", "deep-ae", "--pretrain", "rbm"]);
    let rows = metrics_rows(&rbm_dir);
    assert_eq!(
        rows.len(),
        4 * 2 + 4,
        "four RBMs of two epochs, four fine-tuning epochs"
    );
    // The first RBM's reconstruction error per sample falls over its two epochs [PyTorch 18.3 → 9.5].
    let (first, second) = (rows[0]["train_rbm_error"], rows[1]["train_rbm_error"]);
    assert!(second < 0.7 * first && second < 11.0, "{first} → {second}");
    let rbm = last_row(&rbm_dir)["test_sq_err"];
    assert!(rbm <= 8.0, "RBM-pretrained test squared error {rbm}");

    // Retrieval on its 30-d code: mAP ≥ 0.43 and above PCA-30 of the same run [PyTorch 0.443, PCA-30 0.416,
    // raw pixels 0.400; P@100 0.885].
    let o = Command::new(BIN)
        .args(["retrieve", "--backend", "cpu", "--checkpoint"])
        .arg(&rbm_dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{said}");
    let map = |name: &str| -> f64 {
        let line = said
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{said}"));
        line.split_whitespace()
            .rev()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        map("deep-ae code") >= 0.43 && map("deep-ae code") > map("PCA-30"),
        "{said}"
    );
    assert!(rbm_dir.join("retrieval.png").is_file());

    // No pretraining, the same 4 epochs: at least 3× higher [PyTorch 30.76].
    let none_dir = train("none", "cpu", &["--variant", "deep-ae"]);
    let none = last_row(&none_dir)["test_sq_err"];
    assert!(none >= 3.0 * rbm, "no pretraining {none} vs RBM {rbm}");

    // Greedy layer-wise autoencoders: lower than no pretraining.
    let greedy_dir = train(
        "greedy",
        "cpu",
        &["--variant", "deep-ae", "--pretrain", "greedy"],
    );
    let greedy = last_row(&greedy_dir)["test_sq_err"];
    assert!(greedy < none, "greedy {greedy} vs none {none}");

    // The linear autoencoder, k = 30, 10 epochs of MSE: ≤ 14.05 [PyTorch 13.92; PCA 13.87].
    let linear_dir = train(
        "linear",
        "cpu",
        &[
            "--variant",
            "linear-ae",
            "--latent",
            "30",
            "--loss",
            "mse",
            "--epochs",
            "10",
        ],
    );
    let linear = last_row(&linear_dir);
    assert!(linear["test_sq_err"] <= 14.05, "{linear:?}");
    // With squared error and no penalty, the loss per pixel is the squared error per image / 784.
    assert!((linear["test_recon"] * 784.0 - linear["test_sq_err"]).abs() < 1e-3);
    // pca compares its decoder with the principal subspace: every angle printed, most of them small.
    let o = Command::new(BIN)
        .args(["pca", "--backend", "cpu", "--checkpoint"])
        .arg(&linear_dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{said}");
    let angles: Vec<f64> = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("all: "))
        .unwrap_or_else(|| panic!("{said}"))
        .split_whitespace()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(angles.len(), 30);
    assert!(angles[..28].iter().all(|&a| a < 5.0), "{angles:?}");
    for dir in [rbm_dir, none_dir, greedy_dir, linear_dir] {
        std::fs::remove_dir_all(dir).ok();
    }
}

/// A short deep-ae run with RBM and then greedy pretraining on the GPU and on the CPU: every figure of
/// every phase within 1e-3 relative (hidden units are sampled by comparing a uniform draw with a
/// probability, and the devices' probabilities differ in the last bits, so a rare unit may flip; the
/// parity tests in tests/pretrain.rs compare the ops themselves exactly).
#[test]
fn short_gpu_runs_agree_with_the_cpu() {
    let Some(backend) = common::gpu_backend() else {
        return;
    };
    for kind in ["rbm", "greedy"] {
        let args = [
            "--variant",
            "deep-ae",
            "--hidden",
            "64,32",
            "--latent",
            "8",
            "--limit",
            "500",
            "--epochs",
            "1",
            "--pretrain",
            kind,
            "--pretrain-epochs",
            "1",
        ];
        let name = format!("short-{kind}");
        let (cpu_dir, gpu_dir) = (train(&name, "cpu", &args), train(&name, backend, &args));
        let (cpu, gpu) = (metrics_rows(&cpu_dir), metrics_rows(&gpu_dir));
        assert_eq!(cpu.len(), 4);
        for (c, g) in cpu.iter().zip(&gpu) {
            for (column, &want) in c {
                if column == "seconds" || column == "samples_per_second" {
                    continue;
                }
                let got = g[column];
                assert!(
                    (got - want).abs() <= 1e-3 * want.abs().max(1e-6),
                    "{kind}: {column} on the GPU {got} vs the CPU {want}"
                );
            }
        }
        for dir in [cpu_dir, gpu_dir] {
            std::fs::remove_dir_all(dir).ok();
        }
    }
}
