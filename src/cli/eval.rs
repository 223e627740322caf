//! `gpu-ae eval` and `gpu-ae reconstruct`: what a saved checkpoint does on the test set.

use anyhow::Context;

use super::train::with_executor;
use super::{CheckpointArgs, LossArg, ReconstructArgs};
use crate::checkpoint::{self, Checkpoint};
use crate::data::mnist::Dataset;
use crate::plan::Summary;
use crate::report::png::save_grid;
use crate::run::{RunConfig, shown_meters};
use crate::train::{Reconstructions, Trainer};

/// The checkpoint, the configuration it records (with `--data` from the command line), and the data.
fn open(a: &CheckpointArgs) -> anyhow::Result<(Checkpoint, RunConfig, Dataset)> {
    let ckpt = checkpoint::load(&a.checkpoint)?;
    let mut config = RunConfig::from_json(&ckpt.config)
        .with_context(|| format!("{}", a.checkpoint.display()))?;
    if a.data.is_some() {
        config.data = a.data.clone();
    }
    let data = config.load_data()?;
    Ok((ckpt, config, data))
}

/// Every meter of `config`'s objective on the test set, with the checkpoint's parameters; and the names of
/// the meters shown.
fn test_summary(
    ckpt: &Checkpoint,
    config: &RunConfig,
    data: &Dataset,
    a: &CheckpointArgs,
) -> anyhow::Result<(Summary, Vec<(usize, String)>)> {
    let (_, plan) = config.build(data)?;
    let names = shown_meters(&plan)
        .into_iter()
        .map(|(i, n)| (i, n.to_string()))
        .collect();
    let summary = with_executor(a.backend, plan, |ex| {
        let mut trainer = Trainer::new(
            ex,
            &data.train.images.pixels,
            &data.test.images.pixels,
            config.seed,
        );
        checkpoint::restore(trainer.executor(), ckpt)?;
        Ok(trainer.evaluate())
    })?;
    Ok((summary, names))
}

pub fn eval(a: &CheckpointArgs) -> anyhow::Result<()> {
    let (ckpt, config, data) = open(a)?;
    let s = &ckpt.state.position;
    println!(
        "checkpoint: {} (epoch {}, global step {})",
        a.checkpoint.display(),
        s.epoch,
        s.global_step
    );
    let noisy = if config.noise.is_some() {
        ", noisy input → clean target"
    } else {
        ""
    };
    let (own, names) = test_summary(&ckpt, &config, &data, a)?;
    let loss_name = match config.loss {
        LossArg::Bce => "bce",
        LossArg::Mse => "mse",
    };
    println!(
        "test {loss_name} per pixel: {:.6} ({} test images{noisy})",
        own.values[0],
        data.test.len()
    );
    if names.len() > 1 {
        println!("test objective: {:.6}", own.total);
        for (i, name) in &names[1..] {
            println!("test {name}: {:.6}", own.values[*i]);
        }
    }
    if config.loss != LossArg::Mse {
        let mse = RunConfig {
            loss: LossArg::Mse,
            ..config.clone()
        };
        let (mse, _) = test_summary(&ckpt, &mse, &data, a)?;
        println!("test mse per pixel: {:.6}", mse.values[0]);
    }
    Ok(())
}

pub fn reconstruct(a: &ReconstructArgs) -> anyhow::Result<()> {
    let (ckpt, config, data) = open(&a.checkpoint)?;
    anyhow::ensure!(a.count > 0, "--count must be at least 1");
    let (_, plan) = config.build(&data)?;
    let shown: Reconstructions = with_executor(a.checkpoint.backend, plan, |ex| {
        let mut trainer = Trainer::new(
            ex,
            &data.train.images.pixels,
            &data.test.images.pixels,
            config.seed,
        );
        checkpoint::restore(trainer.executor(), &ckpt)?;
        Ok(trainer.reconstructions(a.count))
    })?;
    let img = &data.test.images;
    let mut rows = Vec::new();
    if config.noise.is_some() {
        rows.push(shown.seen.concat());
    }
    rows.push(shown.recon.concat());
    rows.push(shown.clean.concat());
    save_grid(&a.out, &rows, shown.clean.len(), img.rows, img.cols, 3)?;
    let layout = if config.noise.is_some() {
        "noisy input, reconstruction, clean"
    } else {
        "reconstruction, original"
    };
    println!("wrote {} (rows: {layout})", a.out.display());
    Ok(())
}
