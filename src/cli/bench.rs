//! `gpu-ae bench`: seconds per epoch of the reference models on the GPU and the CPU in the same run, their
//! ratio, and GPU matmul throughput. `benches/epoch.rs` runs this same code with small defaults.
//!
//! Every figure is a wall-clock time around work recorded by the ordinary [`Trainer`] / [`Executor`] path,
//! with `finish()` before the clock stops. With `--steps` (or `--epochs-fraction`) only that many steps are
//! timed and the epoch time is extrapolated (steps per epoch × seconds per step); the report says so.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::ValueEnum;
use serde_json::{Value, json};

use super::BackendArg;
use crate::backend::cpu::CpuExecutor;
use crate::backend::gpu::{GpuContext, GpuExecutor, MatmulChoice};
use crate::backend::{Executor, Program};
use crate::data::mnist::Dataset;
use crate::ops::{BufId, Op};
use crate::plan::{BufferDesc, Plan};
use crate::run::RunConfig;
use crate::run::config::PrecisionArg;
use crate::run::config::{ActArg, DeckArg, LossArg, Variant};
use crate::train::Trainer;

/// The models of the performance targets (benches/README.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchModel {
    /// 784-256-64-256-784, ReLU, BCE, Adam: `train --variant ae`.
    DenseAe,
    /// The default conv-dae: strided 32,64 channels, gaussian:0.5 corruption, BCE, Adam.
    ConvDae,
    /// 784-1000-500-250-30 mirrored, sigmoid hidden activations, MSE, Adam.
    DeepAe,
    /// conv-ae on the pool deck: stride-1 convolutions 32,64 with batch norm and max pooling down,
    /// unpooling up, BCE, Adam: `train --variant conv-ae --deck pool`.
    ConvAePool,
}

impl BenchModel {
    pub fn name(self) -> &'static str {
        match self {
            BenchModel::DenseAe => "dense-ae",
            BenchModel::ConvDae => "conv-dae",
            BenchModel::DeepAe => "deep-ae",
            BenchModel::ConvAePool => "conv-ae-pool",
        }
    }

    /// The `gpu-ae train` flags that build this model, so the benchmark trains exactly what a user would.
    pub fn train_flags(self, batch: usize) -> Vec<String> {
        let flags: &[&str] = match self {
            BenchModel::DenseAe => &["--variant", "ae", "--hidden", "256", "--latent", "64"],
            BenchModel::ConvDae => &["--variant", "conv-dae"],
            BenchModel::ConvAePool => &["--variant", "conv-ae", "--deck", "pool"],
            BenchModel::DeepAe => &[
                "--variant",
                "ae",
                "--hidden",
                "1000,500,250",
                "--latent",
                "30",
                "--activation",
                "sigmoid",
                "--loss",
                "mse",
            ],
        };
        let mut v: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        v.extend(["--batch-size".to_string(), batch.to_string()]);
        v
    }

    /// The run configuration `gpu-ae train` with [`BenchModel::train_flags`] builds.
    pub fn config(self, batch: usize, data: &Option<PathBuf>) -> RunConfig {
        let base = match self {
            BenchModel::DenseAe => RunConfig {
                hidden: vec![256],
                latent: 64,
                ..Variant::Ae.defaults()
            },
            BenchModel::ConvDae => Variant::ConvDae.defaults(),
            BenchModel::ConvAePool => RunConfig {
                deck: DeckArg::Pool,
                ..Variant::ConvAe.defaults()
            },
            BenchModel::DeepAe => RunConfig {
                hidden: vec![1000, 500, 250],
                latent: 30,
                activation: ActArg::Sigmoid,
                loss: LossArg::Mse,
                ..Variant::Ae.defaults()
            },
        };
        RunConfig {
            batch_size: batch,
            data: data.clone(),
            ..base
        }
    }
}

impl EpochFigure {
    /// The model's name, with " (mixed)" in mixed precision.
    pub fn label(&self) -> String {
        match self.precision {
            PrecisionArg::F32 => self.model.name().to_string(),
            PrecisionArg::Mixed => format!("{} (mixed)", self.model.name()),
        }
    }
}

/// A matmul size `MxKxN`: C[M×N] = A[M×K]·B[K×N] (a dense layer: batch × inputs × outputs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulSize {
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

fn parse_matmul(text: &str) -> Result<MatmulSize, String> {
    let dims: Vec<usize> = text
        .split(['x', '×'])
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("expected MxKxN like 1024x784x256, got {text:?}"))?;
    match dims[..] {
        [m, k, n] if m > 0 && k > 0 && n > 0 => Ok(MatmulSize { m, k, n }),
        _ => Err(format!(
            "expected three positive sizes MxKxN like 1024x784x256, got {text:?}"
        )),
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Models to time (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "dense-ae,conv-dae,deep-ae"
    )]
    pub models: Vec<BenchModel>,
    /// Batch sizes to time each model at (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "128,1024")]
    pub batches: Vec<usize>,
    /// Time only N training steps per model and batch, and extrapolate to a full epoch (reported as
    /// extrapolated). Default: time one whole epoch.
    #[arg(long, conflicts_with = "epochs_fraction", value_parser = super::parse_count, allow_negative_numbers = true)]
    pub steps: Option<usize>,
    /// Time this fraction of an epoch (0 < f ≤ 1) and extrapolate, like --steps.
    #[arg(long, allow_negative_numbers = true)]
    pub epochs_fraction: Option<f64>,
    /// Untimed steps before each measurement (pipeline first use, caches, clocks).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Training steps recorded into one GPU submission between loss read-backs: a number or `auto` (as
    /// `train`).
    #[arg(long, default_value = "auto", value_parser = super::parse_steps_per_submit)]
    pub steps_per_submit: usize,
    /// Do not time the CPU backend (no ratios).
    #[arg(long)]
    pub skip_cpu: bool,
    /// Do not open a GPU: CPU epochs only, no ratios, no matmul figures.
    #[arg(long)]
    pub skip_gpu: bool,
    /// GPU matmul sizes MxKxN to time (comma-separated), or `none`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "128x784x256,1024x784x256,1024x1024x1024,4096x4096x4096"
    )]
    pub matmul_sizes: Vec<String>,
    /// GPU matmul kernels to time at each size (comma-separated): `auto` (the one training would use for
    /// that shape: timed on a GPU, by shape on a CPU adapter), `tune` (timed, on any adapter), `tile64`,
    /// `tile128`, `tile128v4` (vec4 operand loads), `splitk` (8 slices of K) or `splitkN`.
    #[arg(long, value_delimiter = ',', default_value = "auto", value_parser = MatmulChoice::parse)]
    pub matmul_kernels: Vec<MatmulChoice>,
    /// Seconds of repeated runs to aim for per matmul size (after one warm-up and one probe run).
    #[arg(long, default_value_t = 1.0)]
    pub matmul_seconds: f64,
    /// Write every figure, the device and how it was measured to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The GPU adapter's graphics API (`cpu` is not a GPU: use --skip-gpu).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Directory of IDX files, or of PNG images in class folders (see train --help); default: the
    /// bundled MNIST.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Seed for initialisation, shuffling and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Precisions to time each model in (comma-separated): f32, mixed (train's --precision). With both,
    /// a table of mixed against f32 follows: time, and the activation and gradient memory the plan
    /// allocates. Models mixed does not support are timed in f32 only, with a note.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "f32")]
    pub precision: Vec<PrecisionArg>,
}

/// One model at one batch size on one backend.
#[derive(Clone, Debug)]
pub struct EpochFigure {
    pub model: BenchModel,
    pub batch: usize,
    /// "gpu" or "cpu".
    pub backend: &'static str,
    pub device: String,
    pub steps_per_epoch: usize,
    pub steps_timed: usize,
    pub seconds_timed: f64,
    pub seconds_per_epoch: f64,
    /// Of `seconds_per_epoch`, the host's time recording and submitting steps (`Executor::run_and_snapshot`), overlapping the previous chunk on the device.
    pub recording_seconds_per_epoch: f64,
    pub extrapolated: bool,
    pub train_loss: f64,
    pub precision: PrecisionArg,
    /// Bytes the plan allocates in all, and for activations and their gradients.
    pub plan_bytes: usize,
    pub activation_bytes: usize,
}

#[derive(Clone, Debug)]
pub struct MatmulFigure {
    pub size: MatmulSize,
    /// The kernel as asked for (`auto`: chosen by shape) and the one that ran.
    pub kernel: MatmulChoice,
    pub ran: MatmulChoice,
    pub repeats: usize,
    pub seconds: f64,
    pub gflops: f64,
}

/// Everything one `gpu-ae bench` run measured.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub gpu: Option<Value>,
    pub cpu: Option<String>,
    pub epochs: Vec<EpochFigure>,
    pub matmuls: Vec<MatmulFigure>,
}

impl BenchArgs {
    fn steps_for(&self, steps_per_epoch: usize) -> Option<usize> {
        match (self.steps, self.epochs_fraction) {
            (Some(n), _) => Some(n.clamp(1, steps_per_epoch)),
            (None, Some(f)) => {
                Some(((f * steps_per_epoch as f64).ceil() as usize).clamp(1, steps_per_epoch))
            }
            (None, None) => None,
        }
    }

    fn matmul_sizes(&self) -> anyhow::Result<Vec<MatmulSize>> {
        if self.matmul_sizes.iter().any(|s| s == "none") {
            return Ok(Vec::new());
        }
        self.matmul_sizes
            .iter()
            .map(|s| parse_matmul(s).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()
            .context("--matmul-sizes")
    }
}

/// Runs the benchmark, prints the tables, writes `--json`, and returns what it measured.
pub fn run(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        args.backend != BackendArg::Cpu,
        "--backend picks the GPU adapter; the CPU is always timed too (unless --skip-cpu). For CPU only, use --skip-gpu"
    );
    anyhow::ensure!(
        !(args.skip_cpu && args.skip_gpu),
        "--skip-cpu and --skip-gpu together leave nothing to time"
    );
    anyhow::ensure!(
        args.batches.iter().all(|&b| b > 0),
        "--batches must be positive"
    );
    if let Some(f) = args.epochs_fraction {
        anyhow::ensure!(
            f > 0.0 && f <= 1.0,
            "--epochs-fraction must lie in (0, 1], got {f}"
        );
    }
    let matmul_sizes = args.matmul_sizes()?;
    let first = args.models.first().context("--models is empty")?;
    let data = first.config(128, &args.data).load_data()?;
    let ctx = match (args.skip_gpu, args.backend.resolve()) {
        (true, _) => None,
        (false, super::Resolved::Gpu(api)) => Some(GpuContext::new(api)?),
        (false, super::Resolved::Cpu { why }) => {
            eprintln!(
                "bench: no GPU timed ({}); name one with --backend vulkan, metal, …",
                why.unwrap_or_else(|| "--backend cpu".into())
            );
            None
        }
    };
    let mut report = BenchReport {
        gpu: ctx.as_ref().map(describe_gpu),
        cpu: None,
        epochs: Vec::new(),
        matmuls: Vec::new(),
    };
    anyhow::ensure!(!args.precision.is_empty(), "--precision is empty");
    for &model in &args.models {
        for &batch in &args.batches {
            for &precision in &args.precision {
                let config = RunConfig {
                    precision,
                    ..model.config(batch, &args.data)
                };
                let plan = match config.build(&data) {
                    Ok((_, plan)) => plan,
                    Err(e) if precision == PrecisionArg::Mixed => {
                        eprintln!(
                            "{} b{batch}: not timed in mixed precision ({e})",
                            model.name()
                        );
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let timed = |ex: &mut dyn Executor, backend| {
                    let mut figure = time_epoch(ex, args, &data, model, batch, backend)?;
                    figure.precision = precision;
                    eprintln!("{}", figure_line(&figure));
                    anyhow::Ok(figure)
                };
                if let Some(ctx) = &ctx {
                    match GpuExecutor::new(ctx, plan.clone()) {
                        Ok(mut ex) => report.epochs.push(timed(&mut ex, "gpu")?),
                        // An adapter without f16 still times f32 (and the CPU in both).
                        Err(e @ crate::backend::gpu::GpuError::NoShaderF16 { .. }) => {
                            eprintln!(
                                "{} b{batch}: not timed on the GPU in mixed precision ({e})",
                                model.name()
                            )
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                if !args.skip_cpu {
                    let mut ex = CpuExecutor::<f32>::new(plan);
                    report.cpu = Some(ex.describe());
                    report.epochs.push(timed(&mut ex, "cpu")?);
                }
            }
        }
    }
    if let Some(ctx) = &ctx {
        for size in matmul_sizes {
            for &kernel in &args.matmul_kernels {
                let figure = time_matmul(ctx, size, kernel, args.matmul_seconds)?;
                eprintln!(
                    "matmul {}x{}x{} {}: {:.1} GFLOP/s",
                    size.m,
                    size.k,
                    size.n,
                    figure.kernel_label(),
                    figure.gflops
                );
                report.matmuls.push(figure);
            }
        }
    }
    print!("{}", report.render());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json(args))?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(report)
}

/// CPU/GPU: a speed-up of the GPU above 1, a slow-down below (lavapipe), with the digits that matter.
fn format_ratio(ratio: f64) -> String {
    match ratio {
        r if r >= 10.0 => format!("{r:.0}×"),
        r if r >= 1.0 => format!("{r:.1}×"),
        r => format!("{r:.3}×"),
    }
}

fn figure_line(f: &EpochFigure) -> String {
    format!(
        "{} b{} {}: {:.3} s/epoch ({} of {} steps in {:.3} s)",
        f.label(),
        f.batch,
        f.backend,
        f.seconds_per_epoch,
        f.steps_timed,
        f.steps_per_epoch,
        f.seconds_timed
    )
}

fn describe_gpu(ctx: &GpuContext) -> Value {
    json!({
        "description": ctx.describe(),
        "name": ctx.info.name,
        "api": format!("{:?}", ctx.info.backend),
        "device_type": format!("{:?}", ctx.info.device_type),
        "driver": format!("{} {}", ctx.info.driver, ctx.info.driver_info).trim(),
        "timestamp_queries": ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY),
    })
}

/// One model at one batch size: warm-up, then a whole epoch (`Trainer::train_epoch`) or `--steps` steps
/// (`Trainer::time_steps`) extrapolated to an epoch.
fn time_epoch(
    ex: &mut dyn Executor,
    args: &BenchArgs,
    data: &Dataset,
    model: BenchModel,
    batch: usize,
    backend: &'static str,
) -> anyhow::Result<EpochFigure> {
    let device = ex.describe();
    let steps_per_epoch = ex.plan().steps_per_epoch();
    let mut trainer = Trainer::new(
        ex,
        &data.train.images.pixels,
        &data.test.images.pixels,
        args.seed,
    );
    trainer.steps_per_submit = args.steps_per_submit;
    trainer.warm_up(args.warmup);
    let (steps_timed, seconds_timed, recording, train_loss) = match args.steps_for(steps_per_epoch)
    {
        Some(steps) => {
            let t = trainer.time_steps(steps);
            (t.steps, t.seconds, t.recording_seconds, t.train_loss)
        }
        None => {
            let never = std::sync::atomic::AtomicBool::new(false);
            match trainer.train_epoch(&mut |_| {}, &never)? {
                crate::train::EpochOutcome::Completed(r) => (
                    steps_per_epoch,
                    r.seconds,
                    r.recording_seconds,
                    r.train.total,
                ),
                crate::train::EpochOutcome::Interrupted { .. } => {
                    unreachable!("nothing raises the stop flag")
                }
            }
        }
    };
    let by_role: std::collections::HashMap<&str, usize> =
        trainer.plan().memory_by_role().into_iter().collect();
    let plan_bytes = trainer.plan().bytes();
    Ok(EpochFigure {
        precision: PrecisionArg::F32,
        plan_bytes,
        activation_bytes: by_role["activations"] + by_role["activation gradients"],
        model,
        batch,
        backend,
        device,
        steps_per_epoch,
        steps_timed,
        seconds_timed,
        seconds_per_epoch: seconds_timed / steps_timed as f64 * steps_per_epoch as f64,
        recording_seconds_per_epoch: recording / steps_timed as f64 * steps_per_epoch as f64,
        extrapolated: steps_timed < steps_per_epoch,
        train_loss,
    })
}

/// GFLOP/s of the GPU matmul kernel alone: one warm-up run, one probe run to size the repeats, then
/// `repeats` back-to-back runs in one submission, waited for.
fn time_matmul(
    ctx: &GpuContext,
    size: MatmulSize,
    kernel: MatmulChoice,
    target_seconds: f64,
) -> anyhow::Result<MatmulFigure> {
    let MatmulSize { m, k, n } = size;
    let buffers = vec![
        BufferDesc::f32("a", m * k),
        BufferDesc::f32("b", k * n),
        BufferDesc::f32("c", m * n),
    ];
    let op = Op::Matmul {
        a: BufId(0),
        b: BufId(1),
        c: BufId(2),
        m,
        n,
        k,
        trans_a: false,
        trans_b: false,
        accumulate: false,
    };
    let flops = op.flops() as f64;
    let mut ex = GpuExecutor::with_matmul(ctx, Plan::from_ops(buffers, vec![op]), kernel)?;
    let fill = |len: usize, salt: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7 + salt) % 13) as f32 / 13.0 - 0.5)
            .collect()
    };
    ex.write_f32(BufId(0), &fill(m * k, 1));
    ex.write_f32(BufId(1), &fill(k * n, 5));
    let mut timed = |repeats: usize| {
        let start = Instant::now();
        ex.run(Program::FORWARD_BACKWARD, repeats);
        ex.finish();
        start.elapsed().as_secs_f64()
    };
    timed(1);
    let probe = timed(1).max(1e-6);
    let repeats = ((target_seconds / probe).ceil() as usize).clamp(1, 1000);
    let seconds = timed(repeats);
    Ok(MatmulFigure {
        size,
        kernel,
        ran: ex.matmul_kernels().first().copied().unwrap_or(kernel),
        repeats,
        seconds,
        gflops: flops * repeats as f64 / seconds.max(1e-9) / 1e9,
    })
}

impl MatmulFigure {
    /// `tile128`, or `auto (splitk6)` where the kernel was chosen by shape.
    pub fn kernel_label(&self) -> String {
        if self.kernel == self.ran {
            self.kernel.name()
        } else {
            format!("{} ({})", self.kernel.name(), self.ran.name())
        }
    }
}

impl BenchReport {
    /// CPU seconds per epoch over GPU seconds per epoch, for every (model, batch) timed on both.
    /// (model, batch, GPU s/epoch, CPU s/epoch) of every model timed on both, in f32 (and separately in
    /// mixed precision: see [`BenchReport::precision_ratios`]).
    pub fn ratios(&self) -> Vec<(BenchModel, usize, f64, f64)> {
        self.backend_ratios(PrecisionArg::F32)
    }

    fn backend_ratios(&self, precision: PrecisionArg) -> Vec<(BenchModel, usize, f64, f64)> {
        let find = |m: BenchModel, b: usize, backend: &str| {
            self.epochs
                .iter()
                .find(|f| {
                    f.model == m && f.batch == b && f.backend == backend && f.precision == precision
                })
                .map(|f| f.seconds_per_epoch)
        };
        self.epochs
            .iter()
            .filter(|f| f.backend == "gpu" && f.precision == precision)
            .filter_map(|f| {
                find(f.model, f.batch, "cpu")
                    .map(|cpu| (f.model, f.batch, f.seconds_per_epoch, cpu))
            })
            .collect()
    }

    /// (f32 figure, mixed figure) of every model, batch and backend timed in both precisions.
    pub fn precision_ratios(&self) -> Vec<(&EpochFigure, &EpochFigure)> {
        self.epochs
            .iter()
            .filter(|f| f.precision == PrecisionArg::F32)
            .filter_map(|f| {
                self.epochs
                    .iter()
                    .find(|g| {
                        g.precision == PrecisionArg::Mixed
                            && (g.model, g.batch, g.backend) == (f.model, f.batch, f.backend)
                    })
                    .map(|g| (f, g))
            })
            .collect()
    }

    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        if let Some(gpu) = &self.gpu {
            let _ = writeln!(out, "gpu: {}", gpu["description"].as_str().unwrap_or("?"));
        }
        if let Some(cpu) = &self.cpu {
            let _ = writeln!(out, "cpu: {cpu}");
        }
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>14} {:>14} {:>10} {:>16}",
            "model", "batch", "GPU s/epoch", "CPU s/epoch", "CPU/GPU", "GPU recording s"
        );
        let mut seen: Vec<(BenchModel, usize, PrecisionArg)> = Vec::new();
        let mut extrapolated = false;
        for f in &self.epochs {
            if seen.contains(&(f.model, f.batch, f.precision)) {
                continue;
            }
            seen.push((f.model, f.batch, f.precision));
            let same = |g: &&EpochFigure| {
                (g.model, g.batch, g.precision) == (f.model, f.batch, f.precision)
            };
            let cell = |backend: &str| {
                self.epochs
                    .iter()
                    .filter(same)
                    .find(|g| g.backend == backend)
                    .map(|g| {
                        format!(
                            "{:.3}{}",
                            g.seconds_per_epoch,
                            if g.extrapolated { "*" } else { "" }
                        )
                    })
                    .unwrap_or_else(|| "—".into())
            };
            extrapolated |= self.epochs.iter().filter(same).any(|g| g.extrapolated);
            let ratio = self
                .backend_ratios(f.precision)
                .iter()
                .find(|r| r.0 == f.model && r.1 == f.batch)
                .map(|r| format_ratio(r.3 / r.2))
                .unwrap_or_else(|| "—".into());
            let recording = self
                .epochs
                .iter()
                .filter(same)
                .find(|g| g.backend == "gpu")
                .map(|g| format!("{:.3}", g.recording_seconds_per_epoch))
                .unwrap_or_else(|| "—".into());
            let _ = writeln!(
                out,
                "{:<18} {:>6} {:>14} {:>14} {:>10} {:>16}",
                f.label(),
                f.batch,
                cell("gpu"),
                cell("cpu"),
                ratio,
                recording
            );
        }
        let pairs = self.precision_ratios();
        if !pairs.is_empty() {
            let _ = writeln!(
                out,
                "mixed precision against f32 (time: mixed/f32, below 1 is faster; memory: the plan's \
                 activations and their gradients, and all it allocates)"
            );
            for (f32_figure, mixed) in pairs {
                let _ = writeln!(
                    out,
                    "  {:<12} b{:<5} {}: time {:.2}×, activation memory {:.2}× ({:.1} → {:.1} MiB), all \
                     memory {:.2}×",
                    f32_figure.model.name(),
                    f32_figure.batch,
                    f32_figure.backend,
                    mixed.seconds_per_epoch / f32_figure.seconds_per_epoch,
                    mixed.activation_bytes as f64 / f32_figure.activation_bytes as f64,
                    f32_figure.activation_bytes as f64 / (1 << 20) as f64,
                    mixed.activation_bytes as f64 / (1 << 20) as f64,
                    mixed.plan_bytes as f64 / f32_figure.plan_bytes as f64,
                );
            }
        }
        if extrapolated {
            let _ = writeln!(
                out,
                "* extrapolated: a fixed number of steps timed (warm-up excluded), scaled to a full epoch"
            );
        }
        if self.epochs.iter().any(|f| f.backend == "gpu") {
            let _ = writeln!(
                out,
                "GPU recording s: of the GPU epoch, host time spent recording and submitting steps (while the previous chunk runs on the device)"
            );
        }
        if !self.matmuls.is_empty() {
            let _ = writeln!(
                out,
                "{:<22} {:<18} {:>10} {:>10}",
                "GPU matmul M×K×N", "kernel", "GFLOP/s", "runs"
            );
            for m in &self.matmuls {
                let _ = writeln!(
                    out,
                    "{:<22} {:<18} {:>10.1} {:>10}",
                    format!("{}×{}×{}", m.size.m, m.size.k, m.size.n),
                    m.kernel_label(),
                    m.gflops,
                    m.repeats
                );
            }
        }
        out
    }

    /// The machine-readable report: every figure with how it was measured.
    pub fn to_json(&self, args: &BenchArgs) -> Value {
        let epochs: Vec<Value> = self
            .epochs
            .iter()
            .map(|f| {
                let mut train = vec!["gpu-ae".to_string(), "train".to_string()];
                train.extend(f.model.train_flags(f.batch));
                if f.precision == PrecisionArg::Mixed {
                    train.extend(["--precision".to_string(), "mixed".to_string()]);
                }
                json!({
                    "model": f.model.name(),
                    "batch": f.batch,
                    "backend": f.backend,
                    "precision": f.precision.name(),
                    "plan_bytes": f.plan_bytes,
                    "activation_and_gradient_bytes": f.activation_bytes,
                    "device": f.device,
                    "steps_per_epoch": f.steps_per_epoch,
                    "steps_timed": f.steps_timed,
                    "warmup_steps": args.warmup.min(f.steps_per_epoch),
                    "seconds_timed": f.seconds_timed,
                    "seconds_per_epoch": f.seconds_per_epoch,
                    "recording_seconds_per_epoch": f.recording_seconds_per_epoch,
                    "extrapolated": f.extrapolated,
                    "train_loss": f.train_loss,
                    "equivalent_command": train.join(" "),
                })
            })
            .collect();
        let ratios: Vec<Value> = self
            .ratios()
            .iter()
            .map(|(model, batch, gpu, cpu)| {
                json!({
                    "model": model.name(),
                    "batch": batch,
                    "gpu_seconds_per_epoch": gpu,
                    "cpu_seconds_per_epoch": cpu,
                    "cpu_over_gpu": cpu / gpu,
                })
            })
            .collect();
        let matmuls: Vec<Value> = self
            .matmuls
            .iter()
            .map(|m| {
                json!({
                    "m": m.size.m, "k": m.size.k, "n": m.size.n,
                    "kernel": m.kernel.name(),
                    "kernel_ran": m.ran.name(),
                    "flops_per_run": 2 * m.size.m * m.size.n * m.size.k,
                    "runs": m.repeats,
                    "seconds": m.seconds,
                    "gflops": m.gflops,
                })
            })
            .collect();
        json!({
            "schema": "gpu-ae-bench/1",
            "build": build_info(),
            "gpu": self.gpu,
            "cpu": self.cpu,
            "method": {
                "epoch": "wall clock around the Trainer's recorded steps (chunks of steps_per_submit, the loss read \
                          back after each chunk, as in training), Executor::finish() before the clock stops; \
                          warm-up steps excluded; data upload and pipeline creation excluded",
                "extrapolation": "when steps_timed < steps_per_epoch: seconds_per_epoch = seconds_timed / steps_timed × steps_per_epoch",
                "matmul": "C[M×N] = A[M×K]·B[K×N] alone: one warm-up run, one probe run, then `runs` back-to-back \
                           runs in one submission, waited for; GFLOP/s = 2·M·N·K·runs / seconds",
                "steps": args.steps,
                "epochs_fraction": args.epochs_fraction,
                "warmup_steps": args.warmup,
                "steps_per_submit": match args.steps_per_submit {
                    crate::train::AUTO_STEPS => json!("auto"),
                    n => json!(n),
                },
                "seed": args.seed,
            },
            "epochs": epochs,
            "ratios": ratios,
            "mixed_over_f32": self.precision_ratios().iter().map(|(f, m)| json!({
                "model": f.model.name(),
                "batch": f.batch,
                "backend": f.backend,
                "time": m.seconds_per_epoch / f.seconds_per_epoch,
                "activation_memory": m.activation_bytes as f64 / f.activation_bytes as f64,
                "plan_memory": m.plan_bytes as f64 / f.plan_bytes as f64,
            })).collect::<Vec<Value>>(),
            "matmul": matmuls,
        })
    }
}

/// What built this binary, without git: the crate and wgpu versions (wgpu's read from the Cargo.lock
/// compiled in), the profile, the target.
fn build_info() -> Value {
    let lock = include_str!("../../Cargo.lock");
    let wgpu = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"wgpu\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string());
    json!({
        "gpu_ae_version": env!("CARGO_PKG_VERSION"),
        "wgpu_version": wgpu,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "target_arch": std::env::consts::ARCH,
        "target_os": std::env::consts::OS,
    })
}
