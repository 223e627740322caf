//! `gpu-ae retrieve`: scores beside the raw-pixel and PCA baselines of the same run, the same on the GPU
//! as on the CPU, every metric, the picture, and the refusals. (The full-data figures are checked in
//! tests/deep_runs.rs and tests/hash_runs.rs.)

mod common;

use common::run_cli as gpu_ae;

use common::train_into;

/// (mAP, P@k) of the table line that starts with `name`.
fn scores(said: &str, name: &str) -> (f64, f64) {
    let line = said
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} line: {said}"));
    let f: Vec<f64> = line
        .split_whitespace()
        .rev()
        .take(2)
        .map(|v| v.parse().unwrap())
        .collect();
    (f[1], f[0])
}

#[test]
fn retrieve_scores_codes_beside_its_baselines_on_every_backend() {
    let dir = train_into(
        "retrieve",
        "cpu",
        &[
            "--variant",
            "ae",
            "--hidden",
            "64",
            "--latent",
            "16",
            "--limit",
            "600",
            "--epochs",
            "2",
        ],
    );
    let d = dir.to_str().unwrap();
    let mut backends = vec!["cpu"];
    backends.extend(common::gpu_backend());
    let mut results = Vec::new();
    for backend in &backends {
        for metric in ["euclidean", "cosine", "hamming"] {
            let out = dir.join(format!("r-{backend}-{metric}.png"));
            let (ok, said) = gpu_ae(&[
                "retrieve",
                "--checkpoint",
                d,
                "--backend",
                backend,
                "--queries",
                "50",
                "--k",
                "20",
                "--metric",
                metric,
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(ok, "{said}");
            assert!(
                said.contains("50 queries") && said.contains("against 600 training images"),
                "{said}"
            );
            assert!(out.is_file());
            let code = scores(&said, "ae code");
            let raw = scores(&said, "raw pixels");
            let pca = scores(
                &said,
                if metric == "hamming" {
                    "sign of PCA-16"
                } else {
                    "PCA-16"
                },
            );
            for (map, p) in [code, raw, pca] {
                assert!(map > 0.1 && map < 1.0 && p > 0.1 && p <= 1.0, "{said}");
            }
            results.push((backend.to_string(), metric, code, raw, pca));
        }
    }
    // The GPU's products round differently from the CPU's, which may swap a near tie: within 5e-3.
    let cpu: Vec<_> = results.iter().filter(|r| r.0 == "cpu").collect();
    for gpu in results.iter().filter(|r| r.0 != "cpu") {
        let twin = cpu.iter().find(|c| c.1 == gpu.1).unwrap();
        for (a, b) in [(twin.2, gpu.2), (twin.3, gpu.3), (twin.4, gpu.4)] {
            assert!(
                (a.0 - b.0).abs() < 5e-3 && (a.1 - b.1).abs() < 5e-3,
                "{} {}: {a:?} vs {b:?}",
                gpu.0,
                gpu.1
            );
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn retrieve_refuses_what_it_cannot_do() {
    let dir = train_into(
        "retrieve-pool",
        "cpu",
        &[
            "--variant",
            "conv-ae",
            "--deck",
            "pool",
            "--channels",
            "4",
            "--limit",
            "64",
            "--epochs",
            "1",
        ],
    );
    let d = dir.to_str().unwrap();
    let (ok, said) = gpu_ae(&["retrieve", "--checkpoint", d, "--backend", "cpu"]);
    assert!(
        !ok && said.contains("encode needs") && said.contains("pool deck"),
        "{said}"
    );
    let (ok, said) = gpu_ae(&["retrieve", "--checkpoint", d, "--out", "r.jpg"]);
    assert!(!ok && said.contains("*.png"), "{said}");
    let (ok, said) = gpu_ae(&["retrieve", "--checkpoint", d, "--queries", "0"]);
    assert!(!ok && said.contains("--queries"), "{said}");
    assert!(!dir.join("retrieval.png").exists());
    std::fs::remove_dir_all(dir).ok();
}
