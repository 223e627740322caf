//! `gpu-ae pca` and the linear autoencoder: the PCA baseline reproduces the reference figures (NumPy's
//! PCA of the same data: test squared error per image 13.87 at k = 30), the scatter on the GPU equals the
//! CPU's, and a checkpoint of another variant is refused with a clear message.

mod common;

use common::run_cli as gpu_ae;

use common::{assert_close, gpu};
use gpu_ae::apps::pca;
use gpu_ae::backend::cpu::CpuExecutor;
use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::data::mnist;

/// The reference figures (PyTorch/NumPy PCA of MNIST's 60 000 training images, test squared error per
/// image): k = 2 / 10 / 30 / 64 → 43.64 / 26.71 / 13.87 / 7.09.
#[test]
fn pca_reproduces_the_reference_errors() {
    let (ok, text) = gpu_ae(&["pca", "--latent", "2,10,30,64", "--backend", "cpu"]);
    assert!(ok, "{text}");
    let error = |k: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&k)).then(|| f[1].parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no line for k = {k}: {text}"))
    };
    for (k, want) in [("2", 43.64), ("10", 26.71), ("30", 13.87), ("64", 7.09)] {
        let got = error(k);
        assert!(
            (got - want).abs() <= 0.01,
            "k = {k}: {got} vs the reference {want}"
        );
    }
}

/// The scatter matrix accumulated chunk by chunk by the matmul op on the GPU equals the CPU's.
#[test]
fn the_scatter_on_the_gpu_equals_the_cpus() {
    let Some(ctx) = gpu() else { return };
    let data = mnist::load_bundled().unwrap();
    // Two chunks and a bit of a third (padded).
    let pixels = &data.train.images.pixels[..(2 * pca::CHUNK_ROWS + 123) * 784];
    let cpu = pca::fit(
        &mut CpuExecutor::<f32>::new(pca::scatter_plan(784)),
        pixels,
        784,
    );
    let gpu = pca::fit(
        &mut GpuExecutor::new(&ctx, pca::scatter_plan(784)).unwrap(),
        pixels,
        784,
    );
    let as_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    assert_close(
        "eigenvalues",
        &as_f32(&gpu.variances),
        &as_f32(&cpu.variances),
        1e-4,
    );
    let test = &data.test.images.pixels[..500 * 784];
    for k in [5, 30] {
        let (c, g) = (
            cpu.reconstruction_error(test, k),
            gpu.reconstruction_error(test, k),
        );
        assert!((c - g).abs() <= 1e-4 * c, "k = {k}: {g} vs {c}");
    }
}

#[test]
fn pca_refuses_a_checkpoint_that_is_not_a_linear_autoencoder() {
    let dir = std::env::temp_dir().join(format!("gpu-ae-pca-refuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let (ok, text) = gpu_ae(&[
        "train",
        "--variant",
        "ae",
        "--epochs",
        "1",
        "--limit",
        "200",
        "--backend",
        "cpu",
        "--out",
        d,
        "--quiet",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = gpu_ae(&["pca", "--checkpoint", d, "--backend", "cpu"]);
    assert!(!ok);
    assert!(
        text.contains("a ae model") && text.contains("--variant linear-ae"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
