//! A training run as library code: epochs, when to save, metrics rows, pictures, and what happens on
//! Ctrl-C, a non-finite loss or a lost device. The CLI builds a [`RunConfig`] and [`RunOptions`] from its
//! flags, picks a backend and prints what an [`Observer`] hears; `eval`, `bench` and later subcommands
//! build their models from the same configuration.

pub mod config;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::Context;

pub use config::RunConfig;

use crate::backend::Executor;
use crate::checkpoint::{self, Checkpoint, TrainingState};
use crate::data::mnist::Dataset;
use crate::objective::MeterRole;
use crate::plan::{Plan, Summary};
use crate::report::metrics::{MetricsCsv, MetricsRow};
use crate::report::png::save_grid;
use crate::train::{EpochOutcome, EpochResult, Faults, Position, Progress, TrainError, Trainer};

/// How many test digits the pictures show.
pub const PICTURE_DIGITS: usize = 16;

/// Where and how long a run goes (none of it is part of the model, so none of it is in a checkpoint).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The total number of epochs to reach (a resumed run continues up to it).
    pub epochs: usize,
    /// The run directory: metrics.csv, pictures, checkpoint.safetensors.
    pub out: PathBuf,
    /// Save every N epochs (and at the end, and on an interruption); 0: never.
    pub save_every: usize,
    /// Steps per GPU submission ([`crate::train::AUTO_STEPS`]: automatic).
    pub steps_per_submit: usize,
    pub detect_anomaly: bool,
    pub faults: Faults,
}

/// One finished epoch: the training means and the test means.
#[derive(Clone, Debug)]
pub struct EpochReport {
    pub result: EpochResult,
    pub test: Summary,
}

/// What a caller hears while a run goes on. Every method has an empty default.
pub trait Observer {
    /// Training starts (or resumes at `position`) on `plan`, whose meters the progress reports name.
    fn started(&mut self, _plan: &Plan, _backend: &str, _resumed: Option<&Position>) {}
    /// An epoch of `steps` steps starts, `done` of them already done (a resumed run).
    fn epoch_started(&mut self, _epoch: usize, _steps: usize, _done: usize) {}
    fn progress(&mut self, _progress: &Progress) {}
    fn epoch_finished(&mut self, _plan: &Plan, _report: &EpochReport) {}
    /// A file was written; `what` says what it shows.
    fn wrote(&mut self, _path: &Path, _what: &str) {}
}

/// How a run ended, when it did not fail.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEnd {
    Completed,
    /// The stop flag was raised: training stopped after the steps already submitted.
    Interrupted {
        epoch: usize,
        steps_done: usize,
        steps_total: usize,
        /// The checkpoint of that position, unless saving is off.
        saved: Option<PathBuf>,
    },
}

/// The meters a run reports (terms and statistics; counts stay internal), with their indices.
pub fn shown_meters(plan: &Plan) -> Vec<(usize, &str)> {
    plan.meters
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role != MeterRole::Count)
        .map(|(i, m)| (i, m.name.as_str()))
        .collect()
}

/// Trains `config`'s model on `ex` (whose plan was built from it) until `options.epochs`, from `resume`
/// when given; writes metrics.csv after every epoch, the checkpoint as `save_every` asks, and the pictures
/// at the end. A non-finite loss or a lost device ends the run with an error that names the last good
/// checkpoint; `stop` (Ctrl-C) ends it after the steps already submitted, saving that position.
pub fn train(
    ex: &mut dyn Executor,
    config: &RunConfig,
    data: &Dataset,
    options: &RunOptions,
    resume: Option<&Checkpoint>,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> anyhow::Result<RunEnd> {
    let backend = ex.describe();
    let mut trainer = Trainer::new(
        ex,
        &data.train.images.pixels,
        &data.test.images.pixels,
        config.seed,
    );
    trainer.steps_per_submit = options.steps_per_submit;
    trainer.detect_anomaly = options.detect_anomaly;
    trainer.faults = options.faults;
    if let Some(ckpt) = resume {
        checkpoint::restore(trainer.executor(), ckpt)?;
        trainer.position = ckpt.state.position.clone();
    }
    observer.started(trainer.plan(), &backend, resume.map(|c| &c.state.position));
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create output directory {}", options.out.display()))?;
    let (shown, columns): (Vec<usize>, Vec<String>) = shown_meters(trainer.plan())
        .into_iter()
        .map(|(i, name)| (i, name.to_string()))
        .unzip();
    let mut metrics = match resume {
        Some(_) => MetricsCsv::resume(&options.out, trainer.position.epoch, &columns)?,
        None => MetricsCsv::create(&options.out, &columns)?,
    };
    let checkpoint_path = options.out.join("checkpoint.safetensors");
    let save = |trainer: &mut Trainer| save_checkpoint(trainer, config, &checkpoint_path);
    let steps = trainer.plan().steps_per_epoch();
    while trainer.position.epoch < options.epochs {
        let epoch = trainer.position.epoch + 1;
        observer.epoch_started(epoch, steps, trainer.position.batch_in_epoch);
        let outcome = trainer.train_epoch(&mut |p| observer.progress(&p), stop);
        let result = match outcome.map_err(|e| after_failure(e, &checkpoint_path))? {
            EpochOutcome::Completed(result) => result,
            EpochOutcome::Interrupted { epoch, steps_done } => {
                let saved = if options.save_every > 0 {
                    save(&mut trainer)?;
                    Some(checkpoint_path.clone())
                } else {
                    None
                };
                return Ok(RunEnd::Interrupted {
                    epoch,
                    steps_done,
                    steps_total: steps,
                    saved,
                });
            }
        };
        let test = trainer.evaluate();
        trainer
            .check_device(epoch, trainer.position.global_step)
            .map_err(|e| after_failure(e, &checkpoint_path))?;
        anyhow::ensure!(
            test.total.is_finite(),
            "the test loss became {} after epoch {epoch}; stopped before saving anything from this \
             state. Try a smaller --lr",
            test.total
        );
        metrics.append(&MetricsRow {
            epoch,
            step: result.global_step,
            train_loss: result.train.total,
            test_loss: test.total,
            seconds: result.seconds,
            samples_per_second: result.samples_per_second,
            meters: shown
                .iter()
                .map(|&i| (result.train.values[i], test.values[i]))
                .collect(),
        })?;
        let report = EpochReport { result, test };
        observer.epoch_finished(trainer.plan(), &report);
        if options.save_every > 0
            && (epoch.is_multiple_of(options.save_every) || epoch == options.epochs)
        {
            save(&mut trainer)?;
        }
    }
    observer.wrote(metrics.path(), "one line per epoch");
    if options.save_every > 0 && checkpoint_path.exists() {
        observer.wrote(
            &checkpoint_path,
            "model, optimizer and position; --resume continues it",
        );
    }
    write_pictures(&mut trainer, config, data, &options.out, observer)?;
    Ok(RunEnd::Completed)
}

/// Writes the trainer's state to `path` (atomically), unless a tensor has gone non-finite: a good
/// checkpoint is never replaced by a diverged one.
fn save_checkpoint(trainer: &mut Trainer, config: &RunConfig, path: &Path) -> anyhow::Result<()> {
    let position = trainer.position.clone();
    let state = TrainingState {
        position: position.clone(),
        seed: config.seed,
    };
    let ckpt = checkpoint::capture(trainer.executor(), config.to_json(), state);
    trainer.check_device(position.epoch + 1, position.global_step)?;
    if let Some((name, _, _)) = ckpt
        .tensors
        .iter()
        .find(|(_, _, v)| v.iter().any(|x| !x.is_finite()))
    {
        let kept = if path.exists() {
            format!(
                "not saving, so {} keeps the last good state",
                path.display()
            )
        } else {
            "nothing was saved".to_string()
        };
        anyhow::bail!(
            "tensor {name} holds a non-finite value at epoch {}, step {}; {kept}. Try a smaller --lr",
            position.epoch + 1,
            position.global_step,
        );
    }
    checkpoint::save(path, &ckpt)?;
    Ok(())
}

/// reconstructions.png (test digits over their reconstructions) and, for a denoising model,
/// denoising.png (corrupted input, reconstruction, clean input).
fn write_pictures(
    trainer: &mut Trainer,
    config: &RunConfig,
    data: &Dataset,
    out: &Path,
    observer: &mut dyn Observer,
) -> anyhow::Result<()> {
    let shown = trainer.reconstructions(PICTURE_DIGITS);
    let img = &data.test.images;
    let (n, h, w) = (shown.clean.len(), img.rows, img.cols);
    let path = out.join("reconstructions.png");
    save_grid(
        &path,
        &[shown.clean.concat(), shown.recon.concat()],
        n,
        h,
        w,
        3,
    )?;
    observer.wrote(&path, "rows: test input, its reconstruction");
    if config.noise.is_some() {
        let path = out.join("denoising.png");
        save_grid(
            &path,
            &[
                shown.seen.concat(),
                shown.recon.concat(),
                shown.clean.concat(),
            ],
            n,
            h,
            w,
            3,
        )?;
        observer.wrote(&path, "rows: noisy input, reconstruction, clean input");
    }
    Ok(())
}

/// A training failure, with what the user still has: the last checkpoint, untouched.
fn after_failure(error: TrainError, checkpoint_path: &Path) -> anyhow::Error {
    let kept = if checkpoint_path.exists() {
        format!(
            "{} keeps the last good state (continue with --resume {})",
            checkpoint_path.display(),
            checkpoint_path.display()
        )
    } else {
        "no checkpoint had been written yet".to_string()
    };
    anyhow::anyhow!("{error}; {kept}")
}
