//! `gpu-ae train`: flags → run configuration → backend → [`crate::run::train`], and printing what it does.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{BackendArg, Resolved, TrainArgs};
use crate::backend::Executor;
use crate::backend::cpu::CpuExecutor;
use crate::backend::gpu::profile::{TimingChoice, profile_step};
use crate::backend::gpu::{GpuContext, GpuExecutor};
use crate::checkpoint::{self, Checkpoint};
use crate::data::mnist::Dataset;
use crate::plan::{Plan, Summary};
use crate::run::{self, EpochReport, Observer, RunConfig, RunEnd, RunOptions, shown_meters};
use crate::train::{EpochOutcome, Faults, Position, Progress, Trainer};

/// Steps the profiler times (the median is reported).
const PROFILE_REPEATS: usize = 5;

/// Runs `f` on an executor of `plan` on the chosen backend.
pub fn with_executor<R>(
    backend: BackendArg,
    plan: Plan,
    f: impl FnOnce(&mut dyn Executor) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    match backend.resolve() {
        Resolved::Cpu { why } => {
            if let Some(why) = why {
                println!("--backend auto chose the CPU backend: {why}");
            }
            f(&mut CpuExecutor::<f32>::new(plan))
        }
        Resolved::Gpu(api) => {
            let ctx = GpuContext::new(api)?;
            let mut ex = GpuExecutor::new(&ctx, plan)?;
            f(&mut ex)
        }
    }
}

/// The configuration to train and the checkpoint to start from: the flags' configuration, or the one the
/// `--resume` checkpoint stores (with `--data` from the command line when given).
fn configuration(args: &TrainArgs) -> anyhow::Result<(RunConfig, Option<Checkpoint>)> {
    let Some(path) = &args.resume else {
        return Ok((args.config(), None));
    };
    let ckpt = checkpoint::load(path)?;
    let mut config =
        RunConfig::from_json(&ckpt.config).with_context(|| format!("{}", path.display()))?;
    if args.data.is_some() {
        config.data = args.data.clone();
    }
    Ok((config, Some(ckpt)))
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let (config, resume) = configuration(args)?;
    anyhow::ensure!(args.epochs > 0, "--epochs must be at least 1");
    let data = config.load_data()?;
    let (model, plan) = config.build(&data)?;
    let img = &data.train.images;
    println!(
        "data: {} ({} training, {} test images of {}×{})",
        data.dir.display(),
        data.train.len(),
        data.test.len(),
        img.rows,
        img.cols
    );
    println!("model: {}", model.describe());
    println!("objective: {}", config.describe_objective());
    if args.profile {
        let api = match args.backend.resolve() {
            Resolved::Gpu(api) => api,
            Resolved::Cpu { why } => anyhow::bail!(
                "--profile times GPU dispatches, but {}; name a GPU backend (--backend vulkan, metal, …)",
                why.unwrap_or_else(|| "--backend cpu was chosen".into())
            ),
        };
        let ctx = GpuContext::new(api)?;
        let mut ex = GpuExecutor::new(&ctx, plan)?;
        return profile_after_first_epoch(&mut ex, args, &config, &data, resume.as_ref());
    }
    let options = RunOptions {
        epochs: args.epochs,
        out: args.out.clone(),
        save_every: args.save_every,
        steps_per_submit: args.steps_per_submit,
        detect_anomaly: args.detect_anomaly,
        faults: Faults::from_env(),
    };
    let mut printer = Printer::new(args);
    let end = with_executor(args.backend, plan, |ex| {
        // Ctrl-C during device set-up and shader compilation still quits at once; from here on it stops
        // training after the submitted steps.
        let stop = stop_flag();
        run::train(
            ex,
            &config,
            &data,
            &options,
            resume.as_ref(),
            &stop,
            &mut printer,
        )
    })?;
    if let RunEnd::Interrupted {
        epoch,
        steps_done,
        steps_total,
        saved,
    } = end
    {
        match saved {
            Some(path) => println!(
                "interrupted at epoch {epoch}, step {steps_done} of {steps_total}; saved {} (continue with --resume)",
                path.display()
            ),
            None => println!(
                "interrupted at epoch {epoch}, step {steps_done} of {steps_total}; nothing saved (--save-every 0)"
            ),
        }
        std::process::exit(130);
    }
    Ok(())
}

/// What the terminal shows of a run: a progress bar per epoch, a line per finished epoch, the files.
struct Printer {
    quiet: bool,
    epochs: usize,
    bar: Option<ProgressBar>,
    /// (index, name) of the meters beyond the reconstruction that the lines show.
    extra: Vec<(usize, String)>,
}

impl Printer {
    fn new(args: &TrainArgs) -> Printer {
        Printer {
            quiet: args.quiet,
            epochs: args.epochs,
            bar: None,
            extra: Vec::new(),
        }
    }

    /// `name value` of every extra meter in `values`.
    fn meters(&self, values: &[f64]) -> String {
        self.extra
            .iter()
            .map(|(i, name)| format!("{name} {:.5}", values[*i]))
            .collect::<Vec<_>>()
            .join("  ")
    }

    /// `name train/test` of every extra meter.
    fn meters_both(&self, train: &Summary, test: &Summary) -> String {
        self.extra
            .iter()
            .map(|(i, name)| format!("{name} {:.5}/{:.5}", train.values[*i], test.values[*i]))
            .collect::<Vec<_>>()
            .join("  ")
    }
}

impl Observer for Printer {
    fn started(&mut self, plan: &Plan, backend: &str, resumed: Option<&Position>) {
        println!("backend: {backend}");
        // The reconstruction is the loss itself when it is the only term; otherwise every term shows.
        let terms = plan
            .meters
            .iter()
            .filter(|m| m.role == crate::objective::MeterRole::Term)
            .count();
        self.extra = shown_meters(plan)
            .into_iter()
            .filter(|&(i, _)| i > 0 || terms > 1)
            .map(|(i, name)| (i, name.to_string()))
            .collect();
        if let Some(p) = resumed {
            println!(
                "resumed at epoch {}, step {} of it (global step {})",
                p.epoch + 1,
                p.batch_in_epoch,
                p.global_step
            );
        }
    }

    fn epoch_started(&mut self, epoch: usize, steps: usize, done: usize) {
        let bar = ProgressBar::new(steps as u64);
        if self.quiet {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("epoch {epoch}/{}", self.epochs));
        bar.set_position(done as u64);
        self.bar = Some(bar);
    }

    fn progress(&mut self, p: &Progress) {
        let meters = self.meters(&p.meters);
        if let Some(bar) = &self.bar {
            bar.set_position(p.steps_done as u64);
            bar.set_message(format!(
                "loss {:.5} {meters} · {:.0} samples/s",
                p.loss, p.samples_per_second
            ));
        }
    }

    fn epoch_finished(&mut self, _plan: &Plan, r: &EpochReport) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let result = &r.result;
        let extra = self.meters_both(&result.train, &r.test);
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!("  [{extra}]")
        };
        println!(
            "epoch {:>3}  train loss {:.5}  test loss {:.5}{extra}  {:.2} s  {:.0} samples/s",
            result.epoch,
            result.train.total,
            r.test.total,
            result.seconds,
            result.samples_per_second
        );
    }

    fn wrote(&mut self, path: &Path, what: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!("wrote {} ({what})", path.display());
    }
}

/// `--profile`: one epoch as usual (from the checkpoint's position with `--resume`), then the per-op
/// table of one training step.
fn profile_after_first_epoch(
    ex: &mut GpuExecutor<'_>,
    args: &TrainArgs,
    config: &RunConfig,
    data: &Dataset,
    resume: Option<&Checkpoint>,
) -> anyhow::Result<()> {
    println!("backend: {}", ex.describe());
    let mut trainer = Trainer::new(
        ex,
        &data.train.images.pixels,
        &data.test.images.pixels,
        config.seed,
    );
    trainer.steps_per_submit = args.steps_per_submit;
    if let Some(ckpt) = resume {
        checkpoint::restore(trainer.executor(), ckpt)?;
        trainer.position = ckpt.state.position.clone();
        println!(
            "profiling the checkpoint's model from epoch {}, step {} of it",
            trainer.position.epoch + 1,
            trainer.position.batch_in_epoch
        );
    }
    let mut printer = Printer::new(args);
    let epoch = trainer.position.epoch + 1;
    printer.epoch_started(
        epoch,
        trainer.plan().steps_per_epoch(),
        trainer.position.batch_in_epoch,
    );
    let never = AtomicBool::new(false);
    let outcome = trainer.train_epoch(&mut |p| printer.progress(&p), &never)?;
    if let Some(bar) = printer.bar.take() {
        bar.finish_and_clear();
    }
    let EpochOutcome::Completed(result) = outcome else {
        unreachable!("nothing raises the stop flag")
    };
    println!(
        "epoch {epoch:>3}  train loss {:.5}  {:.2} s  {:.0} samples/s",
        result.train.total, result.seconds, result.samples_per_second
    );
    let profile = profile_step(ex, TimingChoice::Auto, PROFILE_REPEATS);
    if let Some(reason) = ex.fault() {
        anyhow::bail!("the GPU failed while profiling: {reason}; no table was printed");
    }
    print!("{}", profile.render(args.profile_top));
    println!("--profile: stopping after the first epoch (no further epochs, no pictures)");
    Ok(())
}

/// Raised by the first Ctrl-C: training stops after the steps already submitted. A second Ctrl-C exits at
/// once.
fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    // Installing fails only when a handler exists already (a second run in one process); keep going then.
    let _ = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current steps (Ctrl-C again to quit at once)");
    });
    flag
}
