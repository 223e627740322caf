//! `gpu-ae eval` and `gpu-ae reconstruct`: what a saved checkpoint does on the test set.

use anyhow::Context;

use std::path::Path;

use super::train::{checkpoint_file, with_executor};
use super::{BackendArg, CheckpointArgs, LossArg, ReconstructArgs};
use crate::checkpoint::{self, Checkpoint};
use crate::data::mnist::Dataset;
use crate::plan::{Plan, Summary};
use crate::report::png::save_figure;
use crate::run::{RunConfig, caption, figures, shown_meters};
use crate::train::Trainer;

/// The checkpoint, the configuration it records (with `--data` from the command line), and the data.
pub(super) fn open(a: &CheckpointArgs) -> anyhow::Result<(Checkpoint, RunConfig, Dataset)> {
    let path = checkpoint_file(&a.checkpoint, "--checkpoint")?;
    let ckpt = checkpoint::load(&path)?;
    let mut config =
        RunConfig::from_json(&ckpt.config).with_context(|| format!("{}", path.display()))?;
    if a.data.is_some() {
        config.data = a.data.clone();
    }
    let data = config.load_data()?;
    Ok((ckpt, config, data))
}

/// Every meter of `config`'s objective on the test set, with the checkpoint's parameters; and the names of
/// the meters shown.
pub(super) fn test_summary(
    ckpt: &Checkpoint,
    config: &RunConfig,
    data: &Dataset,
    a: &CheckpointArgs,
) -> anyhow::Result<(Summary, Vec<(usize, String)>)> {
    let (_, plan) = config.build(data)?;
    // The whole model's meters (not a pretraining phase's).
    let fine_tune = &plan.phases[plan.phases.len() - 1].meters;
    let names = shown_meters(&plan)
        .into_iter()
        .filter(|(i, _)| fine_tune.contains(i))
        .map(|(i, n)| (i, n.to_string()))
        .collect();
    let summary = with_checkpoint(a.backend, plan, data, config, ckpt, |trainer| {
        Ok(trainer.evaluate())
    })?;
    Ok((summary, names))
}

/// Runs `f` on a trainer of `plan` on `backend`, its data uploaded and the checkpoint's parameters and
/// statistics restored.
pub(super) fn with_checkpoint<R>(
    backend: BackendArg,
    plan: Plan,
    data: &Dataset,
    config: &RunConfig,
    ckpt: &Checkpoint,
    f: impl FnOnce(&mut Trainer) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    with_executor(backend, plan, |ex| {
        let mut trainer = Trainer::new(
            ex,
            &data.train.images.pixels,
            &data.test.images.pixels,
            config.seed,
        );
        checkpoint::restore(trainer.executor(), ckpt)?;
        // Whatever phase the checkpoint was in, the whole model is what is evaluated and used (an RBM
        // saved as its phase ended is unrolled first, as the run would have next).
        crate::run::complete_phase(trainer.executor(), &ckpt.state.position);
        trainer.position.pretraining = None;
        f(&mut trainer)
    })
}

pub fn eval(a: &CheckpointArgs) -> anyhow::Result<()> {
    let (ckpt, config, data) = open(a)?;
    let s = &ckpt.state.position;
    let phase = match s.pretraining {
        Some(p) => format!(
            "; saved during pretrain-{}, so the layers above it are not pretrained yet",
            p.saturating_add(1)
        ),
        None => String::new(),
    };
    println!(
        "checkpoint: {} (epoch {}, global step {}{phase})",
        checkpoint_file(&a.checkpoint, "--checkpoint")?.display(),
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
        LossArg::L1 => "l1",
    };
    if config.variant.is_variational() {
        // The VAE literature's figure: the objective per image (the negative ELBO for β = 1), then its
        // terms and the per-pixel reconstruction.
        println!(
            "test loss per image: {:.6} ({loss_name} summed over pixels + {} · KL; {} test images{noisy}, \
             each with a fresh ε)",
            own.total,
            config.beta,
            data.test.len()
        );
        for (i, name) in &names {
            println!("test {name}: {:.6}", own.values[*i]);
        }
    } else {
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
    }
    if config.loss != LossArg::Mse {
        let mse = RunConfig {
            loss: LossArg::Mse,
            ..config.clone()
        };
        let (mse, names) = test_summary(&ckpt, &mse, &data, a)?;
        // The reconstruction's mean per pixel: the loss itself, or its per-pixel figure per image.
        let per_pixel = names
            .iter()
            .find(|(_, name)| name == "recon_per_pixel")
            .map_or(0, |&(i, _)| i);
        println!("test mse per pixel: {:.6}", mse.values[per_pixel]);
    }
    Ok(())
}

/// The most images `reconstruct` draws: 32 lines of 16, well inside a PNG's practical size.
pub const MAX_COUNT: usize = 512;

pub fn reconstruct(a: &ReconstructArgs) -> anyhow::Result<()> {
    check_png_name(&a.out)?;
    anyhow::ensure!(
        a.count <= MAX_COUNT,
        "--count {}: one picture holds at most {MAX_COUNT} images (32 lines of 16)",
        a.count
    );
    let (ckpt, config, data) = open(&a.checkpoint)?;
    anyhow::ensure!(
        a.count <= data.test.len(),
        "--count {}: the test set holds {} images",
        a.count,
        data.test.len()
    );
    anyhow::ensure!(
        !a.denoising || config.noise.is_some(),
        "--denoising: the checkpoint's model was trained without noise, so there is no corrupted input to \
         show; leave --denoising out"
    );
    let (_, plan) = config.build(&data)?;
    let (shown, test) = with_checkpoint(
        a.checkpoint.backend,
        plan,
        &data,
        &config,
        &ckpt,
        |trainer| {
            let test = trainer.evaluate();
            Ok((trainer.reconstructions(a.count), test))
        },
    )?;
    let title = caption(&config, ckpt.state.position.epoch, test.total);
    let figures = figures(&shown, &config, &data, &title);
    let wanted = if a.denoising {
        "denoising.png"
    } else {
        "reconstructions.png"
    };
    let (_, what, figure) = figures
        .into_iter()
        .find(|(name, _, _)| *name == wanted)
        .expect("the figure exists");
    save_figure(&a.out, &figure)?;
    println!("wrote {} ({what})", a.out.display());
    Ok(())
}

/// Pictures are PNG: a name with another extension is refused before any work.
pub(super) fn check_png_name(path: &Path) -> anyhow::Result<()> {
    let png = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    anyhow::ensure!(
        png,
        "--out {}: gpu-ae writes PNG pictures only; name the file *.png",
        path.display()
    );
    Ok(())
}
