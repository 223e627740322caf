//! `classify` and `complete` end to end: the CPU and the GPU agree on small runs, bad input is refused
//! with a message naming the flag, and (CPU, full MNIST, seed 0) the figures of issue 13 hold: a linear
//! probe on the sparse code beats the raw pixels by 3 points, fine-tuning from an autoencoder beats the
//! same network from scratch with 100 labels a class, and completion beats the mean fill.

mod common;

use common::{gpu_backend, run_cli, train_into};

/// The first number after `label` on the line that starts with it (after indentation).
fn figure(said: &str, label: &str) -> f64 {
    let line = said
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{said}"));
    line.trim_start()[label.len()..]
        .split_whitespace()
        .find_map(|w| w.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no number on {line:?}"))
}

fn cli_ok(args: &[&str]) -> String {
    let (ok, said) = run_cli(args);
    assert!(ok, "{args:?} failed:\n{said}");
    said
}

const PROBE: &str = "linear probe on the frozen code";
const PIXELS: &str = "the same head on the raw pixels";
const FINE: &str = "encoder + head fine-tuned from the checkpoint";
const SCRATCH: &str = "the same network from random initialisation";

#[test]
fn classify_and_complete_agree_on_the_cpu_and_the_gpu() {
    let dir = train_into(
        "apps-small",
        "cpu",
        &[
            "--variant",
            "ae",
            "--limit",
            "700",
            "--epochs",
            "1",
            "--noise",
            "square:9",
        ],
    );
    let ck = dir.to_str().unwrap();
    let mut backends = vec!["cpu"];
    backends.extend(gpu_backend());
    let mut seen = Vec::new();
    for backend in backends {
        let out = dir.join(format!("confusion-{backend}.png"));
        let classify = cli_ok(&[
            "classify",
            "--checkpoint",
            ck,
            "--backend",
            backend,
            "--epochs",
            "3",
            "--fine-tune",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(out.exists(), "{classify}");
        let completion = dir.join(format!("completion-{backend}.png"));
        let complete = cli_ok(&[
            "complete",
            "--checkpoint",
            ck,
            "--backend",
            backend,
            "--passes",
            "2",
            "--classifier-epochs",
            "2",
            "--out",
            completion.to_str().unwrap(),
        ]);
        assert!(completion.exists(), "{complete}");
        seen.push((
            [FINE, SCRATCH, PIXELS].map(|l| figure(&classify, l)),
            [
                figure(&complete, "occluded, mean fill"),
                figure(&complete, "completed, pass 1"),
                figure(&complete, "completed, pass 2"),
            ],
        ));
    }
    if let [(cpu_acc, cpu_err), (gpu_acc, gpu_err)] = &seen[..] {
        for (c, g) in cpu_acc.iter().zip(gpu_acc) {
            assert!((c - g).abs() <= 0.01, "accuracy: cpu {c} vs gpu {g}");
        }
        for (c, g) in cpu_err.iter().zip(gpu_err) {
            assert!(
                (c - g).abs() <= 1e-3 * c,
                "squared error: cpu {c} vs gpu {g}"
            );
        }
    }
}

#[test]
fn classify_and_complete_refuse_bad_input() {
    let dir = train_into(
        "apps-bad",
        "cpu",
        &["--variant", "ae", "--limit", "300", "--epochs", "1"],
    );
    let ck = dir.to_str().unwrap();
    let (ok, said) = run_cli(&[
        "classify",
        "--checkpoint",
        ck,
        "--backend",
        "cpu",
        "--labels-per-class",
        "200",
    ]);
    assert!(
        !ok && said.contains("--labels-per-class 200") && said.contains("holds only"),
        "{said}"
    );
    for (args, wanted) in [
        (vec!["classify", "--lr", "-1"], "--lr"),
        (vec!["classify", "--out", "x.jpg"], "*.png"),
        (vec!["complete", "--mask", "square:40"], "does not fit"),
        (vec!["complete", "--mask", "left-half"], "bottom-half"),
        (vec!["complete", "--passes", "0"], "--passes"),
    ] {
        let mut all = args.clone();
        all.extend(["--checkpoint", ck, "--backend", "cpu"]);
        let (ok, said) = run_cli(&all);
        assert!(!ok && said.contains(wanted), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{said}");
    }
}

/// The figures (CPU, seed 0, full MNIST, four epochs of each autoencoder).
#[test]
fn the_figures_of_the_applications_hold() {
    let sparse = train_into("apps-sparse", "cpu", &["--variant", "sparse-ae"]);
    let said = cli_ok(&[
        "classify",
        "--checkpoint",
        sparse.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let (probe, pixels) = (figure(&said, PROBE), figure(&said, PIXELS));
    assert!(
        probe >= pixels + 0.03,
        "sparse-ae probe {probe} vs raw pixels {pixels}"
    );

    let ae = train_into("apps-ae", "cpu", &["--variant", "ae"]);
    let said = cli_ok(&[
        "classify",
        "--checkpoint",
        ae.to_str().unwrap(),
        "--backend",
        "cpu",
        "--fine-tune",
        "--labels-per-class",
        "100",
    ]);
    let (fine, scratch) = (figure(&said, FINE), figure(&said, SCRATCH));
    assert!(
        fine >= 0.90 && fine > scratch,
        "fine-tuned {fine} vs from scratch {scratch}"
    );

    let dae = train_into(
        "apps-dae",
        "cpu",
        &[
            "--variant",
            "ae",
            "--hidden",
            "512",
            "--latent",
            "128",
            "--noise",
            "square:12",
        ],
    );
    let said = cli_ok(&[
        "complete",
        "--checkpoint",
        dae.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let (mean, done) = (
        figure(&said, "occluded, mean fill"),
        figure(&said, "completed, pass 1"),
    );
    assert!(
        done < mean,
        "squared error: completed {done} vs mean fill {mean}"
    );
    let accuracy = |label: &str| {
        let line = said
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap();
        line.split_whitespace()
            .last()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!(
        accuracy("completed, pass 1") > accuracy("occluded, mean fill"),
        "{said}"
    );
}
