//! What existed before objectives became lists of terms still behaves as it did: the same CPU losses
//! (within 1e-6 since issue 16, below; bit for bit before it), and a checkpoint written by that version
//! loads and resumes.
//!
//! The literals below were printed by the binary of commit 6974a14 (the last one before the change) with
//! the commands next to them; metrics.csv keeps every digit of an f64, so equality is bit-for-bit.
//!
//! Issue 16 changed the CPU backend's f32 arithmetic on purpose: exp and ln became vectorizing polynomials
//! (within 2 ulp of libm), loss and convolution bias-gradient sums run in 8 lanes, and Gaussian corruption
//! draws its normals in f32. The losses moved in the seventh significant digit. Each test now pins this
//! version's losses bit for bit (the regression check) and holds them within 1e-6 of 6974a14's (the
//! figures users had).

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gpu-ae");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-compat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts `got` is `pinned` bit for bit, and within `1e-6` (relative) of `before_issue_16`.
fn assert_losses(
    got: &[(usize, f64, f64)],
    pinned: &[(usize, f64, f64)],
    before_issue_16: &[(usize, f64, f64)],
) {
    assert_eq!(got, pinned);
    for (g, b) in got.iter().zip(before_issue_16) {
        for (x, y) in [(g.1, b.1), (g.2, b.2)] {
            assert!((x - y).abs() <= 1e-6 * y.abs(), "{x} vs 6974a14's {y}");
        }
    }
}

/// Runs the binary with `args` and `--out DIR --quiet`, then returns (epoch, train loss, test loss) from
/// DIR/metrics.csv.
fn train(args: &[&str], out: &Path) -> Vec<(usize, f64, f64)> {
    let o = Command::new(BIN)
        .args(args)
        .args(["--out", out.to_str().unwrap(), "--quiet"])
        .output()
        .expect("the binary runs");
    assert!(
        o.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (train, test) = (col("train_loss"), col("test_loss"));
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[train].parse().unwrap(),
                f[test].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_dense_autoencoders_cpu_losses_are_pinned_and_within_1e6_of_the_previous_version() {
    // gpu-ae train --variant ae --backend cpu --limit 2000 --epochs 2
    let got = train(
        &[
            "train",
            "--variant",
            "ae",
            "--backend",
            "cpu",
            "--limit",
            "2000",
            "--epochs",
            "2",
        ],
        &temp_dir("ae"),
    );
    assert_losses(
        &got,
        &[
            (1, 0.5272592873086734, 0.3163382493622449),
            (2, 0.29521107700892857, 0.27449491788903063),
        ],
        &[
            (1, 0.5272592873086734, 0.3163382493622449),
            (2, 0.29521107700892857, 0.2744949577487245),
        ],
    );
}

#[test]
fn the_conv_denoising_autoencoders_cpu_losses_are_pinned_and_within_1e6_of_the_previous_version() {
    // gpu-ae train --variant conv-dae --backend cpu --limit 600 --epochs 2
    let got = train(
        &[
            "train",
            "--variant",
            "conv-dae",
            "--backend",
            "cpu",
            "--limit",
            "600",
            "--epochs",
            "2",
        ],
        &temp_dir("conv-dae"),
    );
    assert_losses(
        &got,
        &[
            (1, 0.7483459555697279, 0.7215070285926871),
            (2, 0.6942435294430273, 0.6368848984906462),
        ],
        &[
            (1, 0.7483459555697279, 0.7215070285926871),
            (2, 0.6942435958758504, 0.6368848320578231),
        ],
    );
}

#[test]
fn a_checkpoint_of_the_previous_version_loads_and_resumes_to_the_same_losses() {
    // tests/fixtures/v0-ae-mask-epoch1.safetensors is DIR/checkpoint.safetensors of
    //   gpu-ae train --variant ae --hidden 24 --latent 6 --backend cpu --limit 300 --epochs 1 --seed 7
    //     --noise mask:0.25
    // and the previous version's `train --resume DIR/checkpoint.safetensors --epochs 2 --backend cpu`
    // printed epoch 2 as below.
    let out = temp_dir("fixture");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0-ae-mask-epoch1.safetensors");
    let ckpt = out.join("checkpoint.safetensors");
    std::fs::copy(&fixture, &ckpt).unwrap();
    let got = train(
        &[
            "train",
            "--resume",
            ckpt.to_str().unwrap(),
            "--epochs",
            "2",
            "--backend",
            "cpu",
        ],
        &out,
    );
    assert_eq!(got, vec![(2, 0.6932734109268708, 0.6902542384141156)]);
}
