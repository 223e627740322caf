//! `gpu-ae train`: data → model → plan → backend → epochs → metrics and pictures.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{BackendArg, DeckArg, LossArg, OptimizerArg, TrainArgs, Variant};
use crate::backend::Executor;
use crate::backend::cpu::CpuExecutor;
use crate::backend::gpu::profile::{TimingChoice, profile_step};
use crate::backend::gpu::{GpuContext, GpuExecutor};
use crate::data::mnist::{self, Dataset};
use crate::model::variants::{ConvConfig, Deck, DenseConfig, conv_ae, dense_ae};
use crate::model::{Model, Shape};
use crate::ops::{Act, AdamHyper, LossKind};
use crate::plan::{Optimizer, PlanConfig, compile};
use crate::report::metrics::{MetricsCsv, MetricsRow};
use crate::report::png::save_grid;
use crate::train::{EpochResult, Trainer};

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

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.epochs > 0, "--epochs must be at least 1");
    let data = load_data(args)?;
    let img = &data.train.images;
    let input = Shape {
        c: 1,
        h: img.rows,
        w: img.cols,
    };
    let model = build_model(args, input)?;
    let plan = compile(&model, &plan_config(args, &data))?;
    println!(
        "data: {} ({} training, {} test images of {}×{})",
        data.dir.display(),
        data.train.len(),
        data.test.len(),
        img.rows,
        img.cols
    );
    println!("model: {}", model.describe());
    match args.backend {
        BackendArg::Cpu => {
            anyhow::ensure!(
                !args.profile,
                "--profile times GPU dispatches; choose a GPU --backend (auto, vulkan, …)"
            );
            let mut ex = CpuExecutor::<f32>::new(plan);
            train_on(&mut ex, args, &data)
        }
        api => {
            let ctx = GpuContext::new(api.api())?;
            let mut ex = GpuExecutor::new(&ctx, plan)?;
            if args.profile {
                return profile_after_first_epoch(&mut ex, args, &data);
            }
            train_on(&mut ex, args, &data)
        }
    }
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
    let result = trainer.train_epoch(&mut |p| bar.set_position(p.steps_done as u64));
    bar.finish_and_clear();
    println!(
        "epoch   1  train loss {:.5}  {:.2} s  {:.0} samples/s",
        result.train_loss, result.seconds, result.samples_per_second
    );
    let profile = profile_step(ex, TimingChoice::Auto, PROFILE_REPEATS);
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

fn train_on(ex: &mut dyn Executor, args: &TrainArgs, data: &Dataset) -> anyhow::Result<()> {
    println!("backend: {}", ex.describe());
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output directory {}", args.out.display()))?;
    let mut metrics = MetricsCsv::create(&args.out)?;
    let mut trainer = Trainer::new(
        ex,
        &data.train.images.pixels,
        &data.test.images.pixels,
        args.seed,
    );
    trainer.steps_per_submit = args.steps_per_submit;
    let steps = trainer.executor().plan().steps_per_epoch();
    for epoch in 1..=args.epochs {
        let bar = progress_bar(args, steps, epoch);
        let result: EpochResult = trainer.train_epoch(&mut |p| {
            bar.set_position(p.steps_done as u64);
            bar.set_message(format!(
                "loss {:.5} · {:.0} samples/s",
                p.loss, p.samples_per_second
            ));
        });
        bar.finish_and_clear();
        let test_loss = trainer.evaluate();
        anyhow::ensure!(
            result.train_loss.is_finite() && test_loss.is_finite(),
            "training diverged at epoch {epoch}: train loss {}, test loss {test_loss}; try a smaller --lr",
            result.train_loss
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
