//! `gpu-ae train`: data → model → plan → backend → epochs → metrics and pictures.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{BackendArg, DeckArg, LossArg, OptimizerArg, TrainArgs, Variant, config};
use crate::backend::Executor;
use crate::backend::cpu::CpuExecutor;
use crate::backend::gpu::profile::{TimingChoice, profile_step};
use crate::backend::gpu::{GpuContext, GpuExecutor};
use crate::checkpoint::{self, Checkpoint, TrainingState};
use crate::data::mnist::{self, Dataset};
use crate::model::variants::{ConvConfig, Deck, DenseConfig, conv_ae, dense_ae};
use crate::model::{Model, Shape};
use crate::ops::{Act, AdamHyper, LossKind};
use crate::plan::{Optimizer, Plan, PlanConfig, compile};
use crate::report::metrics::{MetricsCsv, MetricsRow};
use crate::report::png::save_grid;
use crate::train::{EpochOutcome, Position, TrainError, Trainer};

/// Steps the profiler times (the median is reported).
const PROFILE_REPEATS: usize = 5;

/// How many test digits the reconstruction picture shows.
const PICTURE_DIGITS: usize = 16;

pub fn load_data(args: &TrainArgs) -> anyhow::Result<Dataset> {
    let mut data = match &args.data {
        Some(dir) => mnist::load_dir(dir, false)?,
        None => mnist::load_bundled()?,
    };
    if let Some(limit) = args.limit {
        anyhow::ensure!(limit > 0, "--limit must be at least 1");
        data.train.truncate(limit);
        data.test.truncate(limit);
    }
    Ok(data)
}

pub fn build_model(args: &TrainArgs, input: Shape) -> anyhow::Result<Model> {
    // Pixels lie in [0, 1], so reconstructions end in a sigmoid for both losses.
    let output_act = Act::Sigmoid;
    let act = args.activation.into();
    let model = match args.variant {
        Variant::Ae => {
            let cfg = DenseConfig {
                hidden: args.hidden.clone(),
                latent: args.latent,
                act,
                output_act,
            };
            dense_ae(input, &cfg)?
        }
        Variant::ConvAe | Variant::ConvDae => {
            let deck = match args.deck {
                DeckArg::Strided => Deck::Strided,
                DeckArg::Pool => Deck::Pool,
            };
            let cfg = ConvConfig {
                channels: args.channels.clone(),
                deck,
                act,
                output_act,
            };
            let name = if args.variant == Variant::ConvAe {
                "conv-ae"
            } else {
                "conv-dae"
            };
            conv_ae(name, input, &cfg)?
        }
    };
    Ok(model)
}

pub fn plan_config(args: &TrainArgs, data: &Dataset) -> PlanConfig {
    let loss = match args.loss {
        LossArg::Bce => LossKind::BceWithLogits,
        LossArg::Mse => LossKind::Mse,
    };
    let optimizer = match args.optimizer {
        OptimizerArg::Adam => Optimizer::Adam(AdamHyper {
            lr: args.lr,
            weight_decay: args.weight_decay,
            ..AdamHyper::default()
        }),
        OptimizerArg::Sgd => Optimizer::Sgd {
            lr: args.lr,
            momentum: args.momentum,
            weight_decay: args.weight_decay,
        },
    };
    PlanConfig {
        batch: args.batch_size,
        loss,
        optimizer,
        train_samples: data.train.len(),
        test_samples: data.test.len(),
        noise: args.noise(),
        seed: args.seed,
    }
}

/// The model and its compiled plan for `args` on `data`.
pub fn build(args: &TrainArgs, data: &Dataset) -> anyhow::Result<(Model, Plan)> {
    let img = &data.train.images;
    let model = build_model(
        args,
        Shape {
            c: 1,
            h: img.rows,
            w: img.cols,
        },
    )?;
    let plan = compile(&model, &plan_config(args, data))?;
    Ok((model, plan))
}

/// Runs `f` on an executor of `plan` on the chosen backend.
pub fn with_executor<R>(
    backend: BackendArg,
    plan: Plan,
    f: impl FnOnce(&mut dyn Executor) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    match backend {
        BackendArg::Cpu => f(&mut CpuExecutor::<f32>::new(plan)),
        api => {
            let ctx = GpuContext::new(api.api())?;
            let mut ex = GpuExecutor::new(&ctx, plan)?;
            f(&mut ex)
        }
    }
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let mut args = args.clone();
    let resume = match args.resume.clone() {
        Some(path) => {
            let ckpt = checkpoint::load(&path)?;
            config::apply(&mut args, &ckpt.config)
                .with_context(|| format!("{}", path.display()))?;
            Some(ckpt)
        }
        None => None,
    };
    anyhow::ensure!(args.epochs > 0, "--epochs must be at least 1");
    let data = load_data(&args)?;
    let (model, plan) = build(&args, &data)?;
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
    if args.profile {
        anyhow::ensure!(
            args.backend != BackendArg::Cpu,
            "--profile times GPU dispatches; choose a GPU --backend (auto, vulkan, …)"
        );
        let ctx = GpuContext::new(args.backend.api())?;
        let mut ex = GpuExecutor::new(&ctx, plan)?;
        return profile_after_first_epoch(&mut ex, &args, &data);
    }
    with_executor(args.backend, plan, |ex| {
        train_on(ex, &args, &data, resume.as_ref())
    })
}

/// `--profile`: one epoch as usual, then the per-op table of one training step.
fn profile_after_first_epoch(
    ex: &mut GpuExecutor<'_>,
    args: &TrainArgs,
    data: &Dataset,
) -> anyhow::Result<()> {
    println!("backend: {}", ex.describe());
    let mut trainer = Trainer::new(
        ex,
        &data.train.images.pixels,
        &data.test.images.pixels,
        args.seed,
    );
    trainer.steps_per_submit = args.steps_per_submit;
    let bar = progress_bar(args, trainer.executor().plan().steps_per_epoch(), 1);
    let never = AtomicBool::new(false);
    let outcome = trainer.train_epoch(&mut |p| bar.set_position(p.steps_done as u64), &never)?;
    bar.finish_and_clear();
    let EpochOutcome::Completed(result) = outcome else {
        unreachable!("nothing raises the stop flag")
    };
    println!(
        "epoch   1  train loss {:.5}  {:.2} s  {:.0} samples/s",
        result.train_loss, result.seconds, result.samples_per_second
    );
    let profile = profile_step(ex, TimingChoice::Auto, PROFILE_REPEATS);
    if let Some(reason) = ex.fault() {
        anyhow::bail!("the GPU failed while profiling: {reason}; no table was printed");
    }
    print!("{}", profile.render(args.profile_top));
    println!("--profile: stopping after the first epoch (no further epochs, no pictures)");
    Ok(())
}

fn progress_bar(args: &TrainArgs, steps: usize, epoch: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    if args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("epoch {epoch}/{}", args.epochs));
    bar
}

fn train_on(
    ex: &mut dyn Executor,
    args: &TrainArgs,
    data: &Dataset,
    resume: Option<&Checkpoint>,
) -> anyhow::Result<()> {
    println!("backend: {}", ex.describe());
    let mut trainer = Trainer::new(
        ex,
        &data.train.images.pixels,
        &data.test.images.pixels,
        args.seed,
    );
    trainer.steps_per_submit = args.steps_per_submit;
    trainer.detect_anomaly = args.detect_anomaly;
    let hook = |name| std::env::var(name).ok().and_then(|v| v.parse().ok());
    trainer.inject_nan_at_step = hook("GPU_AE_INJECT_NAN_AT_STEP");
    trainer.lose_device_at_step = hook("GPU_AE_LOSE_DEVICE_AT_STEP");
    if let Some(ckpt) = resume {
        checkpoint::restore(trainer.executor(), ckpt)?;
        let s = &ckpt.state;
        trainer.position = Position {
            epoch: s.epoch,
            batch_in_epoch: s.batch_in_epoch,
            global_step: s.global_step,
            epoch_loss_sum: s.train_loss_sum,
        };
        println!(
            "resumed at epoch {}, step {} of it (global step {})",
            s.epoch + 1,
            s.batch_in_epoch,
            s.global_step
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    let mut metrics = match resume {
        Some(_) => MetricsCsv::resume(&args.out, trainer.position.epoch)?,
        None => MetricsCsv::create(&args.out)?,
    };
    let checkpoint_path = args.out.join("checkpoint.safetensors");
    let save = |trainer: &mut Trainer| -> anyhow::Result<()> {
        let p = trainer.position;
        let state = TrainingState {
            epoch: p.epoch,
            batch_in_epoch: p.batch_in_epoch,
            global_step: p.global_step,
            seed: args.seed,
            train_loss_sum: p.epoch_loss_sum,
        };
        let ckpt = checkpoint::capture(trainer.executor(), config::to_json(args), state);
        trainer.check_device(p.epoch + 1, p.global_step)?;
        // Never replace a good checkpoint with a diverged one.
        if let Some((name, _, _)) = ckpt
            .tensors
            .iter()
            .find(|(_, _, v)| v.iter().any(|x| !x.is_finite()))
        {
            anyhow::bail!(
                "tensor {name} holds a non-finite value at epoch {}, step {}; not saving, so {} keeps the last good \
                 state. Try a smaller --lr",
                trainer.position.epoch + 1,
                trainer.position.global_step,
                checkpoint_path.display()
            );
        }
        checkpoint::save(&checkpoint_path, &ckpt)?;
        Ok(())
    };
    let steps = trainer.executor().plan().steps_per_epoch();
    let stop = stop_flag();
    while trainer.position.epoch < args.epochs {
        let epoch = trainer.position.epoch + 1;
        let bar = progress_bar(args, steps, epoch);
        bar.set_position(trainer.position.batch_in_epoch as u64);
        let outcome = trainer.train_epoch(
            &mut |p| {
                bar.set_position(p.steps_done as u64);
                bar.set_message(format!(
                    "loss {:.5} · {:.0} samples/s",
                    p.loss, p.samples_per_second
                ));
            },
            &stop,
        );
        bar.finish_and_clear();
        let result = match outcome.map_err(|e| after_failure(e, &checkpoint_path))? {
            EpochOutcome::Completed(result) => result,
            EpochOutcome::Interrupted { epoch, steps_done } => {
                if args.save_every > 0 {
                    save(&mut trainer)?;
                    println!(
                        "interrupted at epoch {epoch}, step {steps_done} of {steps}; saved {} (continue with --resume)",
                        checkpoint_path.display()
                    );
                } else {
                    println!(
                        "interrupted at epoch {epoch}, step {steps_done} of {steps}; nothing saved (--save-every 0)"
                    );
                }
                std::process::exit(130);
            }
        };
        let test_loss = trainer.evaluate();
        trainer
            .check_device(epoch, trainer.position.global_step)
            .map_err(|e| after_failure(e, &checkpoint_path))?;
        anyhow::ensure!(
            test_loss.is_finite(),
            "the test loss became {test_loss} after epoch {epoch}; stopped before saving anything from this \
             state. Try a smaller --lr"
        );
        println!(
            "epoch {epoch:>3}  train loss {:.5}  test loss {:.5}  {:.2} s  {:.0} samples/s",
            result.train_loss, test_loss, result.seconds, result.samples_per_second
        );
        metrics.append(&MetricsRow {
            epoch,
            step: result.global_step,
            train_loss: result.train_loss,
            test_loss,
            seconds: result.seconds,
            samples_per_second: result.samples_per_second,
        })?;
        if args.save_every > 0 && (epoch.is_multiple_of(args.save_every) || epoch == args.epochs) {
            save(&mut trainer)?;
        }
    }
    let shown = trainer.reconstructions(PICTURE_DIGITS);
    let img = &data.test.images;
    let (n, h, w) = (shown.clean.len(), img.rows, img.cols);
    let path = args.out.join("reconstructions.png");
    save_grid(
        &path,
        &[shown.clean.concat(), shown.recon.concat()],
        n,
        h,
        w,
        3,
    )?;
    println!(
        "wrote {}, {}",
        args.out.join("metrics.csv").display(),
        path.display()
    );
    if args.noise().is_some() {
        let path = args.out.join("denoising.png");
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
        println!(
            "wrote {} (rows: noisy input, reconstruction, clean digit)",
            path.display()
        );
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
