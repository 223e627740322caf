//! `gpu-ae eval` and `gpu-ae reconstruct`: what a saved checkpoint does on the test set.

use anyhow::Context;

use super::train::{build, load_data, with_executor};
use super::{CheckpointArgs, LossArg, ReconstructArgs, TrainArgs, config};
use crate::checkpoint::{self, Checkpoint};
use crate::data::mnist::Dataset;
use crate::report::png::save_grid;
use crate::train::{Reconstructions, Trainer};

/// The checkpoint, the training settings it records (with `--data` / `--backend` from the command line),
/// and the data set.
fn open(a: &CheckpointArgs) -> anyhow::Result<(Checkpoint, TrainArgs, Dataset)> {
    let ckpt = checkpoint::load(&a.checkpoint)?;
    let mut args = config::default_args();
    args.data = a.data.clone();
    args.backend = a.backend;
    config::apply(&mut args, &ckpt.config)
        .with_context(|| format!("{}", a.checkpoint.display()))?;
    let data = load_data(&args)?;
    Ok((ckpt, args, data))
}

/// Mean test loss per pixel of the checkpoint's model under `args.loss`.
fn test_loss(ckpt: &Checkpoint, args: &TrainArgs, data: &Dataset) -> anyhow::Result<f64> {
    let (_, plan) = build(args, data)?;
    with_executor(args.backend, plan, |ex| {
        let mut trainer = Trainer::new(
            ex,
            &data.train.images.pixels,
            &data.test.images.pixels,
            args.seed,
        );
        checkpoint::restore(trainer.executor(), ckpt)?;
        Ok(trainer.evaluate())
    })
}

pub fn eval(a: &CheckpointArgs) -> anyhow::Result<()> {
    let (ckpt, args, data) = open(a)?;
    let s = &ckpt.state;
    println!(
        "checkpoint: {} (epoch {}, global step {})",
        a.checkpoint.display(),
        s.epoch,
        s.global_step
    );
    let noisy = if args.noise().is_some() {
        ", noisy input → clean target"
    } else {
        ""
    };
    let own = test_loss(&ckpt, &args, &data)?;
    let loss_name = match args.loss {
        LossArg::Bce => "bce",
        LossArg::Mse => "mse",
    };
    println!(
        "test {loss_name} per pixel: {own:.6} ({} test images{noisy})",
        data.test.len()
    );
    if args.loss != LossArg::Mse {
        let mse = test_loss(
            &ckpt,
            &TrainArgs {
                loss: LossArg::Mse,
                ..args.clone()
            },
            &data,
        )?;
        println!("test mse per pixel: {mse:.6}");
    }
    Ok(())
}

pub fn reconstruct(a: &ReconstructArgs) -> anyhow::Result<()> {
    let (ckpt, args, data) = open(&a.checkpoint)?;
    anyhow::ensure!(a.count > 0, "--count must be at least 1");
    let (_, plan) = build(&args, &data)?;
    let shown: Reconstructions = with_executor(args.backend, plan, |ex| {
        let mut trainer = Trainer::new(
            ex,
            &data.train.images.pixels,
            &data.test.images.pixels,
            args.seed,
        );
        checkpoint::restore(trainer.executor(), &ckpt)?;
        Ok(trainer.reconstructions(a.count))
    })?;
    let img = &data.test.images;
    let mut rows = Vec::new();
    if args.noise().is_some() {
        rows.push(shown.seen.concat());
    }
    rows.push(shown.recon.concat());
    rows.push(shown.clean.concat());
    save_grid(&a.out, &rows, shown.clean.len(), img.rows, img.cols, 3)?;
    let layout = if args.noise().is_some() {
        "noisy input, reconstruction, clean"
    } else {
        "reconstruction, original"
    };
    println!("wrote {} (rows: {layout})", a.out.display());
    Ok(())
}
