//! Shared test fixtures: the GPU (or a loud skip), seeded random data, tolerant comparisons.
#![allow(dead_code)]

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
