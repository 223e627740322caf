//! `gpu-ae train`: flags → run configuration → backend → [`crate::run::train`], and printing what it does.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
use crate::run::dir::{CHECKPOINT_FILE, Latest, OutChoice, RunDir};
use crate::run::{self, EpochReport, Observer, RunConfig, RunEnd, RunOptions, shown_meters};
use crate::train::{EpochOutcome, Faults, Position, Progress, Trainer};

/// Rows of the --profile table unless --profile-top says otherwise.
const PROFILE_TOP: usize = 25;

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
            warn_if_selftest_failed(&ctx);
            let mut ex = GpuExecutor::new(&ctx, plan)?;
            f(&mut ex)
        }
    }
}

/// Once per process: the warning for an adapter whose `gpu-ae selftest` failed (a result cached for
/// this adapter and driver, `crate::selftest::cache`).
fn warn_if_selftest_failed(ctx: &GpuContext) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Some(warning) = crate::selftest::cache::warning(&ctx.info) {
            eprintln!("warning: {warning}");
        }
    });
}

/// The configuration to train and the checkpoint to start from (with its path): the flags'
/// configuration, or the one the `--resume` checkpoint stores (with `--data` from the command line when
/// given), which the flags must not contradict.
fn configuration(args: &TrainArgs) -> anyhow::Result<(RunConfig, Option<(Checkpoint, PathBuf)>)> {
    let Some(path) = &args.resume else {
        return Ok((args.config()?, None));
    };
    let path = checkpoint_file(path, "--resume")?;
    let ckpt = checkpoint::load(&path)?;
    ckpt.require_training_state()?;
    let mut config =
        RunConfig::from_json(&ckpt.config).with_context(|| format!("{}", path.display()))?;
    args.check_resume(&config)?;
    if args.data.is_some() {
        config.data = args.data.clone();
    }
    config
        .validate()
        .with_context(|| format!("{}: its configuration", path.display()))?;
    Ok((config, Some((ckpt, path))))
}

/// Where the run writes: a new numbered directory under runs/, the `--out` directory (refused when it
/// holds another run, unless `--overwrite`), or with `--resume` the checkpoint's own directory, `home`.
fn out_choice(args: &TrainArgs, config: &RunConfig, home: Option<&Path>) -> OutChoice {
    match (&args.out, home) {
        (None, Some(dir)) => OutChoice::Resume { dir: dir.into() },
        (Some(out), Some(dir)) if same_dir(out, dir) => OutChoice::Resume { dir: dir.into() },
        (Some(out), _) => OutChoice::Named {
            dir: out.clone(),
            overwrite: args.overwrite,
        },
        (None, None) => OutChoice::Fresh {
            root: PathBuf::from(RUNS_ROOT),
            prefix: config.variant.name().to_string(),
        },
    }
}

/// Where runs go when no `--out` is given.
pub const RUNS_ROOT: &str = "runs";

fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        std::fs::canonicalize(p).ok()
    };
    a == b || matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

/// Flags of the run itself (not of its configuration) that mean nothing in this combination.
fn check_run_flags(args: &TrainArgs) -> anyhow::Result<()> {
    if args.profile {
        for (given, flag) in [
            (args.out.is_some(), "--out"),
            (args.overwrite, "--overwrite"),
            (args.save_every.is_some(), "--save-every"),
            (args.patience.is_some(), "--patience"),
        ] {
            anyhow::ensure!(
                !given,
                "{flag} does not apply with --profile, which trains one epoch, prints its table and writes \
                 nothing; leave {flag} out"
            );
        }
    } else {
        anyhow::ensure!(
            args.profile_top.is_none(),
            "--profile-top sets the rows of the --profile table; add --profile or leave it out"
        );
    }
    if args.overwrite && args.out.is_none() && args.resume.is_none() {
        anyhow::bail!(
            "--overwrite needs --out DIR: without --out every run gets a new directory ({RUNS_ROOT}/<variant>-<N>), \
             so there is nothing to overwrite"
        );
    }
    Ok(())
}

/// Reports `true` (and prints why) when the checkpoint has already trained the epochs asked for.
fn already_reached(ckpt: &Checkpoint, path: &Path, epochs: usize) -> bool {
    let done = ckpt.state.position.epoch;
    if done < epochs || ckpt.state.position.pretraining.is_some() {
        return false;
    }
    println!(
        "{} has trained {done} epoch{}, and --epochs {epochs} asks for no more: nothing to train, nothing \
         written (give --epochs {} or more to continue)",
        path.display(),
        if done == 1 { "" } else { "s" },
        done + 1
    );
    true
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    match run_with(args, &mut DataCache::default())? {
        Finished::Trained | Finished::AlreadyDone => Ok(()),
        Finished::Interrupted => std::process::exit(130),
    }
}

/// The data sets a process has loaded, by (`--data`, `--limit`): a sweep reads and decodes them once.
#[derive(Default)]
pub struct DataCache {
    loaded: Vec<(DataKey, Arc<Dataset>)>,
}

/// What picks a data set: `--data` and `--limit`.
type DataKey = (Option<PathBuf>, Option<usize>);

impl DataCache {
    pub fn load(&mut self, config: &RunConfig) -> anyhow::Result<Arc<Dataset>> {
        let key = (config.data.clone(), config.limit);
        if let Some((_, data)) = self.loaded.iter().find(|(k, _)| *k == key) {
            return Ok(data.clone());
        }
        let data = Arc::new(config.load_data()?);
        self.loaded.push((key, data.clone()));
        Ok(data)
    }
}

/// How [`run_with`] ended, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    Trained,
    /// The checkpoint had trained the epochs asked for already; nothing was written.
    AlreadyDone,
    /// Ctrl-C: the position was saved (unless --save-every 0) and the message printed.
    Interrupted,
}

/// `gpu-ae train` with the data taken from (or added to) `cache`.
pub fn run_with(args: &TrainArgs, cache: &mut DataCache) -> anyhow::Result<Finished> {
    check_run_flags(args)?;
    let (config, mut resume) = configuration(args)?;
    if let Some((ckpt, path)) = &resume
        && !args.profile
        && already_reached(ckpt, path, args.epochs)
    {
        return Ok(Finished::AlreadyDone);
    }
    anyhow::ensure!(
        !(args.detect_anomaly && config.pretraining().is_some()),
        "--detect-anomaly checks the fine-tuning's step op by op, and this run pretrains first; leave \
         --detect-anomaly out, or use it on a run without --pretrain"
    );
    anyhow::ensure!(
        !(args.detect_anomaly && config.precision == crate::run::config::PrecisionArg::Mixed),
        "--detect-anomaly stops at the first infinity an op writes, and --precision mixed's loss scaling \
         overflows f16 on purpose from time to time (the step is then skipped); use --detect-anomaly with \
         --precision f32"
    );
    let data = cache.load(&config)?;
    let data = data.as_ref();
    let (model, plan) = config.build(data)?;
    if args.profile {
        // Writes nothing, so takes no run directory.
        print_header(&config, data, &model.describe(), None);
        let api = match args.backend.resolve() {
            Resolved::Gpu(api) => api,
            Resolved::Cpu { why } => anyhow::bail!(
                "--profile times GPU dispatches, but {}; name a GPU backend (--backend vulkan, metal, …)",
                why.unwrap_or_else(|| "--backend cpu was chosen".into())
            ),
        };
        let ctx = GpuContext::new(api)?;
        let mut ex = GpuExecutor::new(&ctx, plan)?;
        let ckpt = resume.as_ref().map(|(c, _)| c);
        return profile_after_first_epoch(&mut ex, args, &config, data, ckpt)
            .map(|()| Finished::Trained);
    }
    let resumed_from = resume.as_ref().map(|(_, p)| p.clone());
    let home = resumed_from
        .as_ref()
        .map(|p| p.parent().unwrap_or(Path::new(".")).to_path_buf());
    let choice = out_choice(args, &config, home.as_deref());
    // Resumed into another directory: its metrics.csv continues the checkpoint's directory's lines.
    let history = match (&choice, resumed_from.is_some()) {
        (OutChoice::Named { .. }, true) => home,
        _ => None,
    };
    if args.overwrite && matches!(choice, OutChoice::Resume { .. }) {
        anyhow::bail!(
            "--overwrite would remove the run that --resume continues; leave --overwrite out (a resumed run \
             rewrites its own files)"
        );
    }
    // A named directory (or the resumed one) is locked before anything is written and before the slow
    // device set-up, so a second writer stops at once. A fresh directory is nobody else's: it is made
    // once the backend is up, so a backend that fails leaves no empty run behind and runs/latest where it
    // was.
    let early = match choice {
        OutChoice::Fresh { .. } => None,
        ref held => Some(RunDir::open(held.clone())?),
    };
    if early.is_some()
        && let Some(path) = &resumed_from
    {
        // Another run may have saved this checkpoint between reading it and taking the lock.
        let ckpt = checkpoint::load(path)?;
        if already_reached(&ckpt, path, args.epochs) {
            return Ok(Finished::AlreadyDone);
        }
        resume = Some((ckpt, path.clone()));
    }
    let resume_ckpt = resume.as_ref().map(|(c, _)| c);
    if let Some(dir) = &early {
        print_header(&config, data, &model.describe(), Some(dir));
    }
    let options = RunOptions {
        epochs: args.epochs,
        save_every: args.save_every.unwrap_or(1),
        steps_per_submit: args.steps_per_submit,
        detect_anomaly: args.detect_anomaly,
        faults: Faults::from_env(),
        history,
        patience: args.patience,
    };
    let mut printer = Printer::new(args);
    let end = with_executor(args.backend, plan, |ex| {
        let dir = match early {
            Some(dir) => dir,
            None => {
                let dir = RunDir::open(choice)?;
                print_header(&config, data, &model.describe(), Some(&dir));
                dir
            }
        };
        // Ctrl-C during device set-up and shader compilation still quits at once; from here on it stops
        // training after the submitted steps.
        let stop = stop_flag();
        run::train(
            ex,
            &config,
            data,
            &dir,
            &options,
            resume_ckpt,
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
                "interrupted at epoch {epoch}, step {steps_done} of {steps_total}; saved {} (continue with \
                 --resume {})",
                path.display(),
                path.display()
            ),
            None => println!(
                "interrupted at epoch {epoch}, step {steps_done} of {steps_total}; nothing saved (--save-every 0)"
            ),
        }
        return Ok(Finished::Interrupted);
    }
    Ok(Finished::Trained)
}

/// The first lines of a run: where it writes, the data, the model, the objective and how it trains.
fn print_header(config: &RunConfig, data: &Dataset, model: &str, dir: Option<&RunDir>) {
    if let Some(dir) = dir {
        let latest = match &dir.latest {
            Latest::Updated => format!(" ({RUNS_ROOT}/latest points here)"),
            Latest::KeptOld { path } => format!(
                " ({} is an older run's directory, so it does not point here)",
                path.display()
            ),
            Latest::Failed(e) => format!(" (could not point {RUNS_ROOT}/latest here: {e})"),
            Latest::NotFresh => String::new(),
        };
        println!("run directory: {}{latest}", dir.path.display());
    }
    println!("{}", data_line(data));
    println!("model: {model}");
    println!("objective: {}", config.describe_objective());
    println!("training: {}", config.describe_training());
}

/// "data: DIR (N training, M test images of H×W)".
pub fn data_line(data: &Dataset) -> String {
    let img = &data.train.images;
    format!(
        "data: {} ({} training, {} test images of {}×{})",
        data.dir.display(),
        data.train.len(),
        data.test.len(),
        img.rows,
        img.cols
    )
}

/// The checkpoint a `--resume` or `--checkpoint` path names: the file itself, or DIR/checkpoint.safetensors
/// for a run directory.
pub fn checkpoint_file(path: &Path, flag: &str) -> anyhow::Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let inside = path.join(CHECKPOINT_FILE);
    anyhow::ensure!(
        inside.is_file(),
        "{flag} {}: a directory without a {CHECKPOINT_FILE} (name the checkpoint file, or a run directory \
         that holds one)",
        path.display()
    );
    Ok(inside)
}

/// What the terminal shows of a run: a progress bar per epoch with its ETA and the run's (on a terminal;
/// otherwise a plain progress line every [`PROGRESS_EVERY`]), a line per finished epoch, the files written.
struct Printer {
    quiet: bool,
    /// Progress bars need a terminal; elsewhere (a log file, CI) progress comes as lines.
    terminal: bool,
    epochs: usize,
    /// The fine-tuning's epochs (--epochs); `epochs` is the current phase's.
    fine_tune_epochs: usize,
    /// In a run that pretrains, the phase under way, which prefixes the lines.
    phase: Option<String>,
    bar: Option<ProgressBar>,
    /// (index, name) of the meters beyond the reconstruction that the lines show.
    extra: Vec<(usize, String)>,
    /// Seconds of each finished epoch of this process (for the run's ETA).
    epoch_seconds: Vec<f64>,
    /// When the current epoch's progress started, and how many of its steps were done then.
    epoch_start: Option<(Instant, usize)>,
    last_line: Option<Instant>,
}

/// How often progress lines come when stdout is not a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Printer {
    fn new(args: &TrainArgs) -> Printer {
        Printer {
            quiet: args.quiet,
            terminal: std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
            epochs: args.epochs,
            fine_tune_epochs: args.epochs,
            phase: None,
            bar: None,
            extra: Vec::new(),
            epoch_seconds: Vec::new(),
            epoch_start: None,
            last_line: None,
        }
    }

    /// "pretrain-2 " in a run that pretrains.
    fn prefix(&self) -> String {
        self.phase
            .as_ref()
            .map_or_else(String::new, |p| format!("{p} "))
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

    /// Seconds left in this epoch and in the whole run, from this epoch's pace so far (and the finished
    /// epochs' times); `None` until a step has been timed.
    fn eta(&self, p: &Progress) -> Option<(f64, f64)> {
        let (start, done_then) = self.epoch_start?;
        let done = p.steps_done.checked_sub(done_then).filter(|&d| d > 0)?;
        let per_step = start.elapsed().as_secs_f64() / done as f64;
        let epoch_left = per_step * (p.steps_total - p.steps_done) as f64;
        let full_epoch = if self.epoch_seconds.is_empty() {
            per_step * p.steps_total as f64
        } else {
            self.epoch_seconds.iter().sum::<f64>() / self.epoch_seconds.len() as f64
        };
        let later_epochs = self.epochs.saturating_sub(p.epoch) as f64;
        Some((epoch_left, epoch_left + later_epochs * full_epoch))
    }
}

/// 75 s → "1m15s"; 4000 s → "1h06m".
fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl Observer for Printer {
    fn started(&mut self, plan: &Plan, backend: &str, resumed: Option<&Position>) {
        println!("backend: {backend}");
        println!("memory (MiB): {}", plan.describe_memory());
        // The reconstruction is the loss itself when it is the only term; otherwise every term shows.
        let terms = plan.meters.iter().filter(|m| m.role.enters_total()).count();
        self.extra = shown_meters(plan)
            .into_iter()
            .filter(|&(i, _)| i > 0 || terms > 1)
            .map(|(i, name)| (i, name.to_string()))
            .collect();
        if let Some(p) = resumed {
            let name = plan.phases[p.phase(plan)].name.as_str();
            let (phase, up_to) = match plan.pretrains() {
                true => (format!(" of {name}"), "fine-tuning up to epoch"),
                false => (String::new(), "training up to epoch"),
            };
            println!(
                "resumed at epoch {}{phase}, step {} of it (global step {}), {up_to} {}",
                p.epoch + 1,
                p.batch_in_epoch,
                p.global_step,
                self.fine_tune_epochs
            );
        }
    }

    fn phase_started(&mut self, plan: &Plan, phase: usize, epochs: usize) {
        let this = &plan.phases[phase];
        self.epochs = epochs;
        self.epoch_seconds.clear();
        self.phase = Some(this.name.clone());
        let count = plan.phases.len() - 1;
        if phase < count {
            // A pretraining phase's loss is its one meter.
            self.extra.clear();
            println!(
                "{} (of {count}): {}; {epochs} epoch{}",
                this.name,
                this.description,
                if epochs == 1 { "" } else { "s" }
            );
        } else {
            let terms = this
                .meters
                .iter()
                .filter(|&&i| plan.meters[i].role.enters_total())
                .count();
            self.extra = shown_meters(plan)
                .into_iter()
                .filter(|&(i, _)| this.meters.contains(&i) && (i > 0 || terms > 1))
                .map(|(i, name)| (i, name.to_string()))
                .collect();
            println!("{}: the whole model, {epochs} epochs", this.name);
        }
    }

    fn epoch_started(&mut self, epoch: usize, steps: usize, done: usize) {
        self.epoch_start = Some((Instant::now(), done));
        self.last_line = Some(Instant::now());
        let bar = ProgressBar::new(steps as u64);
        if self.quiet || !self.terminal {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{}epoch {epoch}/{}", self.prefix(), self.epochs));
        bar.set_position(done as u64);
        self.bar = Some(bar);
    }

    fn progress(&mut self, p: &Progress) {
        let meters = self.meters(&p.meters);
        let eta = match self.eta(p) {
            Some((epoch, run)) if self.epochs > p.epoch => format!(
                " · ETA {} epoch, {} run",
                duration_text(epoch),
                duration_text(run)
            ),
            Some((epoch, _)) => format!(" · ETA {}", duration_text(epoch)),
            None => String::new(),
        };
        let message = format!(
            "loss {:.5} {meters} · {:.0} samples/s{eta}",
            p.loss, p.samples_per_second
        );
        if let Some(bar) = &self.bar {
            bar.set_position(p.steps_done as u64);
            bar.set_message(message.clone());
        }
        let due = self.last_line.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
        if !self.terminal && !self.quiet && due && p.steps_done < p.steps_total {
            self.last_line = Some(Instant::now());
            println!(
                "{}epoch {}/{}: step {}/{} ({:.0}%) {message}",
                self.prefix(),
                p.epoch,
                self.epochs,
                p.steps_done,
                p.steps_total,
                100.0 * p.steps_done as f64 / p.steps_total.max(1) as f64
            );
        }
    }

    fn epoch_finished(&mut self, _plan: &Plan, r: &EpochReport) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let result = &r.result;
        // A resumed partial epoch would understate an epoch's time.
        if self.epoch_start.is_some_and(|(_, done)| done == 0) {
            self.epoch_seconds.push(result.seconds);
        }
        let extra = self.meters_both(&result.train, &r.test);
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!("  [{extra}]")
        };
        // Mixed precision: the loss scale, and how many steps its overflows skipped so far.
        let scale = match result.loss_scale {
            Some((scale, skipped)) => format!("  loss scale {scale} ({skipped} steps skipped)"),
            None => String::new(),
        };
        println!(
            "{}epoch {:>3}  train loss {:.5}  test loss {:.5}{extra}  {:.2} s  {:.0} samples/s{scale}",
            self.prefix(),
            result.epoch,
            result.train.total,
            r.test.total,
            result.seconds,
            result.samples_per_second
        );
    }

    fn stopped_early(&mut self, epoch: usize, best: run::Best, patience: usize) {
        println!(
            "early stop after epoch {epoch}: the test loss has not improved on epoch {}'s {:.5} for {patience} \
             epoch{} (--patience {patience})",
            best.epoch,
            best.test_loss,
            if patience == 1 { "" } else { "s" }
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
    // The profile times the whole model's step: a run that pretrains is profiled in its fine-tuning.
    if trainer.position.pretraining.take().is_some() {
        trainer.position = Position::default();
        println!("profiling the fine-tuning (the whole model), not the pretraining phases");
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
    print!(
        "{}",
        profile.render(args.profile_top.unwrap_or(PROFILE_TOP))
    );
    println!("--profile: stopping after the first epoch (no further epochs, no pictures)");
    Ok(())
}

/// Raised by the first Ctrl-C: training stops after the steps already submitted. A second Ctrl-C exits at
/// once. One flag per process, installed on first use, so every run of a sweep hears it.
fn stop_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = flag.clone();
        // Installing fails only when another handler exists already; keep going then.
        let _ = ctrlc::set_handler(move || {
            if handler_flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nstopping after the current steps (Ctrl-C again to quit at once)");
        });
        flag
    })
    .clone()
}
