//! A training run as library code: epochs, when to save, metrics rows, pictures, and what happens on
//! Ctrl-C, a non-finite loss or a lost device. The CLI builds a [`RunConfig`] and [`RunOptions`] from its
//! flags, picks a backend and prints what an [`Observer`] hears; `eval`, `bench` and later subcommands
//! build their models from the same configuration.

pub mod config;
pub mod dir;
pub mod schedule;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

pub use config::RunConfig;

use crate::apps::{generate, pictures};
use crate::backend::Executor;
use crate::checkpoint::{self, Checkpoint, TrainingState};
use crate::data::mnist::Dataset;
use crate::plan::{Plan, Summary};
use crate::report::metrics::{Done, MetricsCsv, MetricsRow};
use crate::report::png::{Figure, FigureRow, save_figure};
use crate::report::{html, plot};
use crate::run::dir::RunDir;
use crate::train::{
    EpochOutcome, EpochResult, Faults, Position, Progress, Reconstructions, TrainError, Trainer,
};

/// How many test digits the pictures show.
pub const PICTURE_DIGITS: usize = 16;

/// Where and how long a run goes (none of it is part of the model, so none of it is in a checkpoint).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The total number of epochs to reach (a resumed run continues up to it).
    pub epochs: usize,
    /// Save every N epochs (and at the end, and on an interruption); 0: never.
    pub save_every: usize,
    /// Steps per GPU submission ([`crate::train::AUTO_STEPS`]: automatic).
    pub steps_per_submit: usize,
    pub detect_anomaly: bool,
    pub faults: Faults,
    /// A resumed run writing into another directory than its checkpoint's: the directory whose
    /// metrics.csv holds the epochs so far (`None`: the run directory's own).
    pub history: Option<PathBuf>,
    /// Early stopping: end the (fine-tuning) run once the test loss has not improved for this many
    /// epochs; the best epoch is saved as best.safetensors and the pictures show it.
    pub patience: Option<usize>,
}

/// The lowest test loss so far and its epoch (of the fine-tuning).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Best {
    pub epoch: usize,
    pub test_loss: f64,
}

impl Best {
    /// The best fine-tuning epoch in a run directory's metrics.csv (the lines a resumed run keeps).
    fn from_history(metrics: &Path, fine_tune: Option<&str>) -> Option<Best> {
        let table = crate::report::metrics::MetricsTable::read(metrics).ok()?;
        let (epochs, losses) = (table.column("epoch")?, table.column("test_loss")?);
        let phases = table.phases();
        let mut best: Option<Best> = None;
        for ((epoch, loss), phase) in epochs.into_iter().zip(losses).zip(phases) {
            if phase.as_deref() != fine_tune {
                continue;
            }
            let (Some(epoch), Some(test_loss)) = (epoch, loss) else {
                continue;
            };
            if best.is_none_or(|b| test_loss < b.test_loss) {
                best = Some(Best {
                    epoch: epoch as usize,
                    test_loss,
                });
            }
        }
        best
    }
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
    /// Phase `phase` of `plan` starts or resumes (only in plans that pretrain, before the first epoch of
    /// every phase, and where a resumed run goes on).
    fn phase_started(&mut self, _plan: &Plan, _phase: usize, _epochs: usize) {}
    /// An epoch of `steps` steps starts, `done` of them already done (a resumed run).
    fn epoch_started(&mut self, _epoch: usize, _steps: usize, _done: usize) {}
    fn progress(&mut self, _progress: &Progress) {}
    fn epoch_finished(&mut self, _plan: &Plan, _report: &EpochReport) {}
    /// `--patience`: the test loss has not improved since `best` for `patience` epochs, so the run
    /// stops after epoch `epoch`.
    fn stopped_early(&mut self, _epoch: usize, _best: Best, _patience: usize) {}
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

/// The meters a run reports (terms and statistics; counts and weighted copies stay internal), with their
/// indices.
pub fn shown_meters(plan: &Plan) -> Vec<(usize, &str)> {
    plan.meters
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role.shown())
        .map(|(i, m)| (i, m.name.as_str()))
        .collect()
}

/// Trains `config`'s model on `ex` (whose plan was built from it) until `options.epochs`, from `resume`
/// when given, into the run directory `dir` (held by this process): config.json first, metrics.csv after
/// every epoch, the checkpoint as `save_every` asks, and at the end loss.png, the pictures and report.html
/// (its `train` section). A non-finite loss or a lost device ends the run with an error that names the last good
/// checkpoint; `stop` (Ctrl-C) ends it after the steps already submitted, saving that position.
#[allow(clippy::too_many_arguments)] // each is a different thing the run needs; a wrapper would only rename them
pub fn train(
    ex: &mut dyn Executor,
    config: &RunConfig,
    data: &Dataset,
    dir: &RunDir,
    options: &RunOptions,
    resume: Option<&Checkpoint>,
    stop: &AtomicBool,
    observer: &mut dyn Observer,
) -> anyhow::Result<RunEnd> {
    let backend = ex.describe();
    anyhow::ensure!(
        !(options.detect_anomaly && ex.plan().pretrains()),
        "the anomaly slow path checks the fine-tuning's step op by op, and this plan pretrains first"
    );
    anyhow::ensure!(
        !(options.detect_anomaly && ex.plan().io.amp.is_some()),
        "the anomaly slow path stops at the first infinity, which mixed precision's loss scaling makes on \
         purpose"
    );
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
        ckpt.require_training_state()?;
        checkpoint::restore(trainer.executor(), ckpt)?;
        trainer.position = ckpt.state.position.clone();
    }
    observer.started(trainer.plan(), &backend, resume.map(|c| &c.state.position));
    let out = dir.path.as_path();
    let config_path = out.join(CONFIG_FILE);
    write_config(&config_path, config)?;
    // One column pair per meter name: every pretraining phase has a meter of the same name (its
    // `rbm_error` or `layer_recon`), which the line's phase tells apart.
    let shown: Vec<(usize, String)> = shown_meters(trainer.plan())
        .into_iter()
        .map(|(i, name)| (i, name.to_string()))
        .collect();
    let mut columns: Vec<String> = Vec::new();
    for (_, name) in &shown {
        if !columns.contains(name) {
            columns.push(name.clone());
        }
    }
    // A run that pretrains names the phase of every line.
    let phases: Vec<String> = match trainer.plan().pretrains() {
        true => trainer
            .plan()
            .phases
            .iter()
            .map(|p| p.name.clone())
            .collect(),
        false => Vec::new(),
    };
    let mut metrics = match resume {
        Some(_) => MetricsCsv::resume(
            out,
            options.history.as_deref().unwrap_or(out),
            Done {
                phases: &phases,
                phase: trainer.position.phase(trainer.plan()),
                epochs: trainer.position.epoch,
            },
            &columns,
        )?,
        None => MetricsCsv::create(out, &columns, !phases.is_empty())?,
    };
    let checkpoint_path = dir.checkpoint();
    let best_path = out.join(dir::BEST_FILE);
    let save = |trainer: &mut Trainer| save_checkpoint(trainer, config, &checkpoint_path);
    let mut last_test = None;
    let mut announced = None;
    let fine_tune_phase = trainer.plan().phases.len() - 1;
    let fine_tune_name = phases.last().map(String::as_str);
    let mut best = match (options.patience, resume) {
        (Some(_), Some(_)) => Best::from_history(metrics.path(), fine_tune_name),
        _ => None,
    };
    let mut stopped_early = false;
    loop {
        let plan = trainer.plan();
        let phase = trainer.position.phase(plan);
        let epochs = plan.phases[phase].epochs.unwrap_or(options.epochs);
        if let (Some(patience), Some(b)) = (options.patience, best)
            && phase == fine_tune_phase
            && trainer.position.epoch >= b.epoch + patience
        {
            // A resumed run that had already stopped early: nothing more to train.
            stopped_early = true;
            observer.stopped_early(trainer.position.epoch, b, patience);
            break;
        }
        if trainer.position.epoch >= epochs {
            if phase + 1 == plan.phases.len() {
                break;
            }
            let done = trainer.position.clone();
            trainer.position =
                complete_phase(trainer.executor(), &done).expect("a finished pretraining phase");
            continue;
        }
        if phases.len() > 1 && announced != Some(phase) {
            observer.phase_started(plan, phase, epochs);
            announced = Some(phase);
        }
        let steps = plan.phase_steps(phase);
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
        last_test = Some(test.total);
        trainer
            .check_device(epoch, trainer.position.global_step)
            .map_err(|e| after_failure(e, &checkpoint_path))?;
        anyhow::ensure!(
            test.total.is_finite(),
            "the test loss became {} after epoch {epoch}; stopped before saving anything from this \
             state. Try a smaller --lr",
            test.total
        );
        let own = &trainer.plan().phases[phase].meters;
        metrics.append(&MetricsRow {
            epoch,
            step: result.global_step,
            train_loss: result.train.total,
            test_loss: test.total,
            seconds: result.seconds,
            samples_per_second: result.samples_per_second,
            meters: columns
                .iter()
                .map(|column| {
                    shown
                        .iter()
                        .find(|(i, name)| name == column && own.contains(i))
                        .map(|&(i, _)| (result.train.values[i], test.values[i]))
                })
                .collect(),
            phase: phases.get(phase).cloned(),
        })?;
        let test_loss = test.total;
        let report = EpochReport { result, test };
        observer.epoch_finished(trainer.plan(), &report);
        let mut stop_now = false;
        if let Some(patience) = options.patience
            && phase == fine_tune_phase
        {
            if best.is_none_or(|b| test_loss < b.test_loss) {
                best = Some(Best { epoch, test_loss });
                save_checkpoint(&mut trainer, config, &best_path)?;
            } else if let Some(b) = best
                && epoch >= b.epoch + patience
                && epoch < epochs
            {
                observer.stopped_early(epoch, b, patience);
                stopped_early = true;
                stop_now = true;
            }
        }
        if options.save_every > 0
            && (epoch.is_multiple_of(options.save_every) || epoch == epochs || stop_now)
        {
            save(&mut trainer)?;
        }
        if stop_now {
            break;
        }
    }
    observer.wrote(
        &config_path,
        "the run's configuration, as the checkpoint stores it",
    );
    observer.wrote(metrics.path(), "one line per epoch");
    drop(metrics);
    let loss = plot::write_loss_plot(
        out,
        &format!("{}: train and test loss per epoch", config.variant.name()),
        &format!("objective: {}", config.describe_objective()),
    )?;
    let loss_what = "train (solid) and test (dashed) loss per epoch, a panel per term";
    observer.wrote(&loss, loss_what);
    if options.save_every > 0 && checkpoint_path.exists() {
        observer.wrote(
            &checkpoint_path,
            "model, optimizer and position; --resume continues it",
        );
    }
    let stopped_at = trainer.position.epoch;
    // With --patience the pictures and the report show the best epoch's model.
    let best_shown = match best {
        Some(b) if options.patience.is_some() && best_path.exists() => {
            observer.wrote(
                &best_path,
                &format!(
                    "the model of epoch {} (lowest test loss, {:.5})",
                    b.epoch, b.test_loss
                ),
            );
            if b.epoch != stopped_at {
                let ckpt = checkpoint::load(&best_path)?;
                checkpoint::restore(trainer.executor(), &ckpt)?;
                trainer.position = ckpt.state.position.clone();
                last_test = Some(b.test_loss);
            }
            Some(b)
        }
        _ => None,
    };
    let last_test = last_test.unwrap_or_else(|| trainer.evaluate().total);
    let mut pictures = vec![(loss, loss_what.to_string())];
    pictures.extend(write_pictures(
        &mut trainer,
        config,
        data,
        out,
        last_test,
        observer,
    )?);
    let figures = [
        ("model".to_string(), config.variant.name().to_string()),
        ("objective".into(), config.describe_objective()),
        ("training".into(), config.describe_training()),
        ("backend".into(), backend.clone()),
        ("epochs trained".into(), stopped_at.to_string()),
        ("test loss".into(), format!("{last_test:.5}")),
    ];
    let mut figures = figures.to_vec();
    if let (Some(b), Some(patience)) = (best_shown, options.patience) {
        let how = match stopped_early {
            true => {
                format!("stopped after epoch {stopped_at}: no improvement for {patience} epochs")
            }
            false => format!("ran all {stopped_at} epochs (patience {patience})"),
        };
        figures.push(("early stopping".into(), how));
        figures.push((
            "shown model".into(),
            format!(
                "epoch {} from best.safetensors (test loss {:.5})",
                b.epoch, b.test_loss
            ),
        ));
    }
    if let Some(report) = html::add_section(out, "train", &figures, &pictures)? {
        observer.wrote(
            &report,
            "the run's report: its commands, configuration, metrics and every picture; open it in a browser",
        );
    }
    Ok(RunEnd::Completed)
}

/// At the end of a pretraining phase (its epochs done), what the phase leaves behind: an RBM's weights
/// unrolled into the decoder; returns the start of the next phase. `None` anywhere else. A run calls it
/// as a phase ends, a resumed run or a reader of a checkpoint saved just then calls it again (it is the
/// same computation on the same weights).
pub fn complete_phase(ex: &mut dyn Executor, position: &Position) -> Option<Position> {
    let plan = ex.plan();
    let phase = &plan.phases[position.pretraining?];
    if position.epoch < phase.epochs? || position.batch_in_epoch > 0 {
        return None;
    }
    let next = position.next_phase(plan);
    if let Some(pair) = phase.unroll {
        unroll(ex, pair);
    }
    Some(next)
}

/// Parameter `to` ← the transpose of parameter `from` (a [rows × cols] matrix): an RBM's weight W [H × V]
/// becomes the mirrored decoder layer's weight [V × H] when its pretraining phase ends.
fn unroll(ex: &mut dyn Executor, (from, to): (usize, usize)) {
    let plan = ex.plan();
    let (src, dst) = (&plan.params[from], &plan.params[to]);
    let (rows, cols) = (src.shape[0], src.shape[1]);
    debug_assert_eq!(dst.shape, [cols, rows]);
    let (src, dst) = (src.buf, dst.buf);
    let w = ex.read_f32(src);
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    ex.write_f32(dst, &t);
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
    trainer.check_device(position.epoch.max(1), position.global_step)?;
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
            "tensor {name} holds a non-finite value {}; {kept}. Try a smaller --lr",
            describe_position(&position),
        );
    }
    checkpoint::save(path, &ckpt)?;
    Ok(())
}

/// Where a run stands, for messages: "after epoch 2 (global step 938)" or "in epoch 3, after step 17 of
/// it (global step 955)".
pub fn describe_position(p: &Position) -> String {
    if p.batch_in_epoch == 0 {
        format!("after epoch {} (global step {})", p.epoch, p.global_step)
    } else {
        format!(
            "in epoch {}, after step {} of it (global step {})",
            p.epoch + 1,
            p.batch_in_epoch,
            p.global_step
        )
    }
}

/// The run directory's configuration file.
pub const CONFIG_FILE: &str = "config.json";

/// `config` as readable JSON, the same value the checkpoint's metadata stores; written atomically.
fn write_config(path: &Path, config: &RunConfig) -> anyhow::Result<()> {
    // Serialised from the struct, so f32 values read as typed (0.001); they parse back to the same f32s
    // as the checkpoint's copy.
    let text = serde_json::to_string_pretty(config).expect("a configuration serialises");
    Ok(crate::report::png::write_text_atomically(
        path,
        &format!("{text}\n"),
    )?)
}

/// A picture's first caption line: the model, how many epochs it trained, and its test loss.
pub fn caption(config: &RunConfig, epoch: usize, test_loss: f64) -> String {
    let loss = match config.loss {
        config::LossArg::Bce => "bce",
        config::LossArg::Mse => "mse",
        config::LossArg::L1 => "l1",
    };
    let objective = if config.variant.is_variational() {
        format!("per image: {loss} summed + {} KL", config.beta)
    } else if config.objective().terms.len() > 1 {
        format!("{loss} + penalties")
    } else {
        loss.to_string()
    };
    format!(
        "{}  epoch {epoch}  test loss {test_loss:.5} ({objective})",
        config.variant.name()
    )
}

/// Writes reconstructions.png (rows: test input, its reconstruction), for a denoising model denoising.png (rows:
/// corrupted input, the reconstruction of it, clean input), and for a variational model samples.png
/// (digits decoded from the prior). The first two draw the same test images, and for a denoising model
/// reconstructions.png shows what it makes of the clean input.
fn write_pictures(
    trainer: &mut Trainer,
    config: &RunConfig,
    data: &Dataset,
    out: &Path,
    test_loss: f64,
    observer: &mut dyn Observer,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut written = Vec::new();
    let shown = trainer.reconstructions(PICTURE_DIGITS);
    let title = caption(config, trainer.position.epoch, test_loss);
    for (path, what, figure) in figures(&shown, config, data, &title) {
        let path = out.join(path);
        save_figure(&path, &figure)?;
        observer.wrote(&path, &what);
        written.push((path, format!("{PICTURE_DIGITS} test images; {what}")));
    }
    // A variational model also shows what it generates: digits decoded from its prior.
    if let Some(codec) = trainer.plan().codec.filter(|c| c.variational) {
        let codes = generate::prior_codes(SAMPLE_DIGITS, codec.width, 1.0, config.seed);
        let images = generate::decode(trainer.executor(), &codec, &codes);
        let img = &data.test.images;
        let digits = pictures::Digits {
            height: img.rows,
            width: img.cols,
        };
        let (what, figure) = pictures::samples(&images, &title, 1.0, digits);
        let path = out.join(SAMPLES_FILE);
        save_figure(&path, &figure)?;
        observer.wrote(&path, &what);
        written.push((path, what));
    }
    Ok(written)
}

/// How many digits samples.png draws from a variational model's prior, and its name.
pub const SAMPLE_DIGITS: usize = 64;
pub const SAMPLES_FILE: &str = "samples.png";

/// The pictures of `shown`: (file name, what its rows are, the figure); denoising.png only with noise.
pub fn figures<'a>(
    shown: &'a Reconstructions,
    config: &RunConfig,
    data: &Dataset,
    title: &str,
) -> Vec<(&'static str, String, Figure<'a>)> {
    let img = &data.test.images;
    let figure = |rows: Vec<(&str, &'a [Vec<f32>])>| {
        let names: Vec<&str> = rows.iter().map(|(n, _)| *n).collect();
        let what = format!("rows: {}", names.join(", "));
        let figure = Figure {
            caption: vec![title.to_string(), what.clone()],
            rows: rows
                .into_iter()
                .map(|(label, images)| FigureRow {
                    label: label.to_string(),
                    images,
                })
                .collect(),
            height: img.rows,
            width: img.cols,
            columns: PICTURE_DIGITS,
            scale: 3,
        };
        (what, figure)
    };
    let mut list = Vec::new();
    let (what, fig) = figure(vec![
        ("input", &shown.clean),
        ("reconstruction", &shown.clean_recon),
    ]);
    list.push(("reconstructions.png", what, fig));
    if config.noise.is_some() {
        let (what, fig) = figure(vec![
            ("corrupted input", &shown.seen),
            ("reconstruction", &shown.recon),
            ("clean input", &shown.clean),
        ]);
        list.push(("denoising.png", what, fig));
    }
    list
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
