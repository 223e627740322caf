//! Shared test fixtures: the GPU (or a loud skip), seeded random data, tolerant comparisons.
#![allow(dead_code)]

use gpu_ae::backend::Executor;
use gpu_ae::backend::Program;
use gpu_ae::backend::cpu::CpuExecutor;
use gpu_ae::backend::gpu::GpuContext;
use gpu_ae::rng::{SplitMix64, purpose};

/// The preferred GPU adapter. Under `CI=true` a missing adapter fails the test; elsewhere the test is
/// skipped with a message on stderr.
pub fn gpu() -> Option<GpuContext> {
    match GpuContext::new(None) {
        Ok(ctx) => Some(ctx),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but no GPU adapter could be opened ({e}); install mesa-vulkan-drivers for lavapipe"
            )
        }
        Err(e) => {
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

/// The `--backend` value that names the adapter [`gpu`] opens (`vulkan` for lavapipe): tests that run the
/// binary on a GPU name it, since `auto` prefers the CPU backend to a software rasteriser. `None` (with the
/// same skip-or-fail rule as [`gpu`]) where there is no adapter.
pub fn gpu_backend() -> Option<&'static str> {
    let ctx = gpu()?;
    Some(match ctx.info.backend {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        other => panic!("no --backend names the {other:?} adapter"),
    })
}

/// `len` values uniform in ±scale, none closer to zero than scale/20 (so no test passes on zeros).
pub fn random(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = SplitMix64::stream(seed, purpose::TEST_FIXTURE, len as u64);
    (0..len)
        .map(|_| {
            let u = rng.next_f64() as f32 * 2.0 - 1.0;
            let magnitude = (u.abs() * 0.95 + 0.05) * scale;
            if u < 0.0 { -magnitude } else { magnitude }
        })
        .collect()
}

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::stream(seed, purpose::TEST_FIXTURE, 1 << 40 | len as u64);
    (0..len).map(|_| (rng.next_u64() % 256) as u8).collect()
}

/// max |got − want| ≤ rel · max(max |want|, 1e-6); names the worst element otherwise.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let (worst, err) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold((0, 0f32), |(wi, we), (i, e)| {
            if e > we || e.is_nan() {
                (i, e)
            } else {
                (wi, we)
            }
        });
    assert!(
        err <= rel * scale,
        "{what}: element {worst} is {} but the reference is {} (|error| {err:e} > {rel:e} × scale {scale:e})",
        got[worst],
        want[worst]
    );
    assert!(
        want.iter().any(|v| *v != 0.0),
        "{what}: the reference is all zeros, so the comparison proves nothing"
    );
}

/// The objective's total over the current training batch of `valid` real rows, from the f64 accumulator
/// (runs the forward-backward program, so every gradient is rewritten).
pub fn batch_objective(ex: &mut CpuExecutor<f64>, valid: usize) -> f64 {
    let plan = ex.plan().clone();
    let acc = plan.io.loss_acc;
    ex.floats_mut(acc).iter_mut().for_each(|v| *v = 0.0);
    ex.run(Program::FORWARD_BACKWARD, 1);
    let sums: Vec<f64> = (0..plan.meters.len())
        .map(|i| ex.floats(acc)[2 * i])
        .collect();
    plan.summarize(&sums, valid).total
}

/// Every parameter's gradient on the current batch against central differences (step 1e-6) of
/// [`batch_objective`]: |analytic − numeric| ≤ 2e-6 · max(|analytic|, |numeric|, `floor`). Returns the
/// largest gradient, so a caller can check that the comparison had something to compare.
pub fn check_parameter_gradients(
    ex: &mut CpuExecutor<f64>,
    valid: usize,
    floor: f64,
    label: &str,
) -> f64 {
    const STEP: f64 = 1e-6;
    let plan = ex.plan().clone();
    batch_objective(ex, valid);
    let analytic: Vec<Vec<f64>> = plan
        .params
        .iter()
        .map(|p| ex.floats(p.grad).to_vec())
        .collect();
    let mut largest = 0f64;
    for (p, grads) in plan.params.iter().zip(&analytic) {
        for (e, &grad) in grads.iter().enumerate() {
            let original = ex.floats(p.buf)[e];
            ex.floats_mut(p.buf)[e] = original + STEP;
            let plus = batch_objective(ex, valid);
            ex.floats_mut(p.buf)[e] = original - STEP;
            let minus = batch_objective(ex, valid);
            ex.floats_mut(p.buf)[e] = original;
            let numeric = (plus - minus) / (2.0 * STEP);
            let scale = grad.abs().max(numeric.abs()).max(floor);
            assert!(
                (grad - numeric).abs() <= 2e-6 * scale,
                "{label}: {}[{e}]: analytic {grad:e} vs finite difference {numeric:e}",
                p.name
            );
            largest = largest.max(grad.abs());
        }
    }
    largest
}

/// Every epoch's row of DIR/metrics.csv, by column name (numeric fields only: a run that pretrains has
/// a `phase` column of names, and empty fields for the meters of other phases).
pub fn metrics_rows(dir: &std::path::Path) -> Vec<std::collections::HashMap<String, f64>> {
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).expect("metrics.csv");
    let mut lines = csv.lines();
    let header: Vec<String> = lines
        .next()
        .expect("a header")
        .split(',')
        .map(String::from)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(','))
                .filter(|(k, v)| k != "phase" && !v.is_empty())
                .map(|(k, v)| (k, v.parse::<f64>().expect("a number")))
                .collect()
        })
        .collect()
}

/// `gpu-ae train ARGS --backend BACKEND --quiet --out DIR` into a fresh DIR in the temp folder named by
/// `tag` (and the process), which is returned; panics with everything the command said when it fails.
pub fn train_into(tag: &str, backend: &str, args: &[&str]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-{tag}-{backend}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-ae"))
        .arg("train")
        .args(args)
        .args(["--backend", backend, "--quiet", "--out"])
        .arg(&dir)
        .output()
        .expect("the binary runs");
    assert!(
        o.status.success(),
        "{tag}: {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    dir
}

/// Runs `gpu-ae ARGS` and returns whether it succeeded, and everything it said (stdout, then stderr).
pub fn run_cli(args: &[&str]) -> (bool, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-ae"))
        .args(args)
        .output()
        .expect("the binary runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), said)
}
