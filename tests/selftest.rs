//! `gpu-ae selftest` end to end: it passes on the CPU (f32 against f64) and on the GPU adapter present
//! (lavapipe in CI), both `--quick`; a kernel broken on purpose fails it with exit status 1, naming the
//! op, its entry point and the first mismatching element; the failure is cached for the adapter and
//! `train` warns about it; `--json` writes a report; bad flags are clear errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::gpu_backend;

/// A cache folder of the test's own, so no other test (or user) sees the results it records.
fn cache_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-selftest-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp folder");
    dir
}

fn gpu_ae(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> (Output, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpu-ae"));
    cmd.args(args)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("GPU_AE_SELFTEST_BREAK");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("the binary runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o, said)
}

#[test]
fn selftest_passes_on_the_cpu_backend_f32_against_f64() {
    let cache = cache_dir("cpu");
    let json = cache.join("report.json");
    let (o, said) = gpu_ae(
        &[
            "selftest",
            "--backend",
            "cpu",
            "--quick",
            "--json",
            json.to_str().unwrap(),
        ],
        &cache,
        &[],
    );
    assert!(o.status.success(), "{said}");
    for family in ["matmul", "conv", "batch_norm", "classify"] {
        assert!(
            said.lines()
                .any(|l| l.trim_start().starts_with(family) && l.ends_with("pass")),
            "no passing line for {family}:\n{said}"
        );
    }
    assert!(
        said.lines().any(|l| l.trim_start().starts_with("conv-dae")),
        "{said}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("--json wrote")).unwrap();
    assert_eq!(report["passed"], true);
    assert!(report["adapter"].is_null());
    assert!(report["kernels"].as_array().unwrap().len() > 20);
    // Nothing is cached for the CPU.
    assert!(!cache.join("gpu-ae").exists());
}

#[test]
fn selftest_passes_on_the_gpu_and_a_broken_kernel_fails_it_and_warns_train() {
    let Some(backend) = gpu_backend() else { return };
    let cache = cache_dir("gpu");
    let (o, said) = gpu_ae(&["selftest", "--backend", backend, "--quick"], &cache, &[]);
    assert!(o.status.success(), "{said}");
    assert!(said.contains("passed: all"), "{said}");

    let (o, said) = gpu_ae(
        &["selftest", "--backend", backend, "--quick"],
        &cache,
        &[("GPU_AE_SELFTEST_BREAK", "conv2d_backward_data")],
    );
    assert_eq!(o.status.code(), Some(1), "{said}");
    let failed: Vec<&str> = said.lines().filter(|l| l.starts_with("FAILED")).collect();
    assert!(!failed.is_empty(), "{said}");
    // Named: the op, its entry point, the first mismatching element; and only the conv family's
    // kernel cases (and models that use the op) fail.
    assert!(
        failed.iter().all(|l| l.contains("conv2d_backward_data")),
        "{said}"
    );
    assert!(
        failed[0].contains("entry point conv2d_backward_data"),
        "{said}"
    );
    assert!(failed[0].contains("element 0 is"), "{said}");
    assert!(
        said.contains("  conv ")
            && said
                .lines()
                .any(|l| l.contains("conv ") && l.ends_with("FAIL")),
        "{said}"
    );
    assert!(
        said.lines()
            .any(|l| l.trim_start().starts_with("matmul") && l.ends_with("pass")),
        "{said}"
    );

    // The failure is recorded for this adapter: train warns before training.
    let out = cache.join("run");
    let (o, said) = gpu_ae(
        &[
            "train",
            "--backend",
            backend,
            "--limit",
            "64",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
        &cache,
        &[],
    );
    assert!(o.status.success(), "{said}");
    assert!(
        said.contains("warning: `gpu-ae selftest` failed on this adapter"),
        "{said}"
    );
    // A passing run replaces the record: no warning after it.
    let (o, said) = gpu_ae(&["selftest", "--backend", backend, "--quick"], &cache, &[]);
    assert!(o.status.success(), "{said}");
    let (o, said) = gpu_ae(
        &[
            "train",
            "--backend",
            backend,
            "--limit",
            "64",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
            "--overwrite",
        ],
        &cache,
        &[],
    );
    assert!(o.status.success(), "{said}");
    assert!(!said.contains("warning: `gpu-ae selftest`"), "{said}");
}

#[test]
fn bad_selftest_flags_are_clear_errors() {
    let cache = cache_dir("flags");
    let missing = cache.join("no-such-folder").join("r.json");
    for (args, says) in [
        (
            vec![
                "selftest",
                "--backend",
                "cpu",
                "--json",
                missing.to_str().unwrap(),
            ],
            "--json",
        ),
        (
            vec![
                "selftest",
                "--backend",
                "cpu",
                "--json",
                cache.to_str().unwrap(),
            ],
            "--json",
        ),
        (vec!["selftest", "--backend", "tpu"], "--backend"),
        (vec!["selftest", "--quick=3"], "--quick"),
    ] {
        let (o, said) = gpu_ae(&args, &cache, &[]);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains(says), "{args:?}: {said}");
        assert!(!said.contains("panicked"), "{args:?}: {said}");
    }
}
