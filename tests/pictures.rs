//! Pictures that explain themselves: one row order everywhere (input above its reconstruction; for a
//! denoising model corrupted, reconstruction, clean), a caption strip, `reconstructions.png` of a denoising
//! model showing what it makes of the clean input; and config.json beside them, the checkpoint's own
//! configuration.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use gpu_ae::backend::Executor;
use gpu_ae::backend::cpu::CpuExecutor;
use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::report::png::{INK, LINE_HEIGHT, PAPER};
use gpu_ae::run::config::Variant;
use gpu_ae::run::{RunConfig, figures};
use gpu_ae::train::Trainer;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-pictures-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gpu_ae(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_gpu-ae"))
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        o.status.success(),
        "gpu-ae {args:?}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn gray(path: &Path) -> image::GrayImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_luma8()
}

/// The caption strip (the first two text lines) holds both ink and paper: text was drawn.
fn has_caption(picture: &image::GrayImage) -> bool {
    let strip = (0..picture.width())
        .flat_map(|x| (0..2 * LINE_HEIGHT as u32).map(move |y| (x, y)))
        .map(|(x, y)| picture.get_pixel(x, y).0[0]);
    let (mut ink, mut paper) = (0, 0);
    for v in strip {
        ink += usize::from(v == INK);
        paper += usize::from(v == PAPER);
    }
    ink > 50 && paper > 50
}

#[test]
fn a_denoising_run_draws_the_clean_reconstruction_apart_from_the_denoising_rows() {
    let dir = temp_dir("conv-dae");
    let run = dir.join("run");
    let run_s = run.to_str().unwrap();
    let printed = gpu_ae(&[
        "train",
        "--variant",
        "conv-dae",
        "--limit",
        "300",
        "--epochs",
        "1",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        run_s,
    ]);
    for line in [
        "reconstructions.png (rows: input, reconstruction)",
        "denoising.png (rows: corrupted input, reconstruction, clean input)",
        "config.json",
        "checkpoint.safetensors",
        "metrics.csv",
    ] {
        assert!(printed.contains(line), "{line} not in\n{printed}");
    }
    let (recon, denoise) = (
        gray(&run.join("reconstructions.png")),
        gray(&run.join("denoising.png")),
    );
    assert!(has_caption(&recon) && has_caption(&denoise));
    // Three rows are taller than two; both are 16 images wide.
    assert!(denoise.height() > recon.height());

    // `reconstruct` draws the very same pictures from the checkpoint: same rows, same order, same caption.
    let again = dir.join("again/reconstructions.png");
    let said = gpu_ae(&[
        "reconstruct",
        "--checkpoint",
        run_s,
        "--out",
        again.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(said.contains("rows: input, reconstruction"), "{said}");
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(run.join("reconstructions.png")).unwrap()
    );
    let again = dir.join("again/denoising.png");
    gpu_ae(&[
        "reconstruct",
        "--checkpoint",
        run_s,
        "--out",
        again.to_str().unwrap(),
        "--denoising",
        "--backend",
        "cpu",
    ]);
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(run.join("denoising.png")).unwrap()
    );

    // The figures' rows: the clean input's reconstruction is not the noisy input's.
    let ckpt = gpu_ae::checkpoint::load(&run.join("checkpoint.safetensors")).unwrap();
    let config = RunConfig::from_json(&ckpt.config).unwrap();
    let data = config.load_data().unwrap();
    let (_, plan) = config.build(&data).unwrap();
    let mut ex = CpuExecutor::<f32>::new(plan);
    let mut trainer = Trainer::new(
        &mut ex,
        &data.train.images.pixels,
        &data.test.images.pixels,
        config.seed,
    );
    gpu_ae::checkpoint::restore(trainer.executor(), &ckpt).unwrap();
    // More than one batch, with a partial last one.
    let shown = trainer.reconstructions(130);
    assert_eq!(shown.clean.len(), 130);
    let figs = figures(&shown, &config, &data, "title");
    let labels = |i: usize| {
        figs[i]
            .2
            .rows
            .iter()
            .map(|r| r.label.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(figs[0].0, "reconstructions.png");
    assert_eq!(labels(0), ["input", "reconstruction"]);
    assert_eq!(figs[1].0, "denoising.png");
    assert_eq!(
        labels(1),
        ["corrupted input", "reconstruction", "clean input"]
    );
    let (clean_row, denoised_row) = (figs[0].2.rows[1].images, figs[1].2.rows[1].images);
    assert_eq!(
        figs[0].2.rows[0].images, figs[1].2.rows[2].images,
        "the same clean test images"
    );
    assert_ne!(
        figs[0].2.rows[0].images, figs[1].2.rows[0].images,
        "the corrupted row is corrupted"
    );
    let differing = clean_row
        .iter()
        .zip(denoised_row)
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        differing, 130,
        "every clean reconstruction differs from the denoising one"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn config_json_is_the_checkpoints_configuration_for_every_variant() {
    let dir = temp_dir("config");
    for variant in [
        Variant::Ae,
        Variant::ConvDae,
        Variant::SparseAe,
        Variant::Cae,
    ] {
        let run = dir.join(variant.name());
        gpu_ae(&[
            "train",
            "--variant",
            variant.name(),
            "--limit",
            "130",
            "--epochs",
            "1",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            run.to_str().unwrap(),
        ]);
        let text = std::fs::read_to_string(run.join("config.json")).unwrap();
        let written: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ckpt = gpu_ae::checkpoint::load(&run.join("checkpoint.safetensors")).unwrap();
        let stored = RunConfig::from_json(&ckpt.config).unwrap();
        assert_eq!(
            RunConfig::from_json(&written).unwrap(),
            stored,
            "{}",
            variant.name()
        );
        assert_eq!(stored.variant, variant);
        // Readable: one key a line, numbers as typed.
        assert!(text.contains("\n  \"lr\": 0.001,"), "{text}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A denoising model's reconstruction of the clean input is exactly what the same parameters make of it
/// with the noise taken away: compared over two batches (the last partial) against the noise-free plan.
#[test]
fn the_clean_reconstruction_is_the_noise_free_models_output() {
    let noisy = RunConfig {
        limit: Some(150),
        ..Variant::ConvDae.defaults()
    };
    let clean = RunConfig {
        noise: None,
        ..noisy.clone()
    };
    let data = noisy.load_data().unwrap();
    let on = |ex: &mut dyn Executor, seed| {
        let mut trainer = Trainer::new(
            ex,
            &data.train.images.pixels,
            &data.test.images.pixels,
            seed,
        );
        trainer.reconstructions(150)
    };
    let shown = |config: &RunConfig| {
        let (_, plan) = config.build(&data).unwrap();
        on(&mut CpuExecutor::<f32>::new(plan), config.seed)
    };
    // The GPU's reconstruct program agrees with the CPU's.
    if let Some(ctx) = common::gpu() {
        let (_, plan) = noisy.build(&data).unwrap();
        let gpu = on(&mut GpuExecutor::new(&ctx, plan).unwrap(), noisy.seed);
        let cpu = shown(&noisy);
        assert_eq!(gpu.clean, cpu.clean);
        common::assert_close(
            "clean reconstruction",
            &gpu.clean_recon.concat(),
            &cpu.clean_recon.concat(),
            1e-4,
        );
        common::assert_close(
            "denoised reconstruction",
            &gpu.recon.concat(),
            &cpu.recon.concat(),
            1e-4,
        );
    }
    let (noisy, clean) = (shown(&noisy), shown(&clean));
    assert_eq!(noisy.clean, clean.clean);
    assert_eq!(noisy.clean_recon, clean.recon);
    assert_eq!(clean.recon, clean.clean_recon);
    assert!(
        noisy
            .recon
            .iter()
            .zip(&noisy.clean_recon)
            .all(|(a, b)| a != b)
    );
}
