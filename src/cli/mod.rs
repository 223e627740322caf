//! The command line: every flag defined and documented here, one file per subcommand doing the work.

pub mod bench;
pub mod eval;
pub mod info;
pub mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::backend::gpu::ApiChoice;
use crate::objective::Emphasis;
use crate::ops::Noise;
use crate::run::RunConfig;
use crate::run::config::KlSparsity;

#[derive(Parser, Debug)]
#[command(
    name = "gpu-ae",
    version,
    about = "Autoencoders on MNIST, trained by hand-written WGSL compute shaders"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train an autoencoder, print train and test loss per epoch, write metrics.csv and reconstructions.png.
    Train(TrainArgs),
    /// List every GPU adapter with its backend, type, driver and the limits that matter.
    Info(InfoArgs),
    /// Test loss (the run's own, and MSE) of a saved checkpoint.
    Eval(CheckpointArgs),
    /// Write test digits over their reconstructions by a saved checkpoint to a PNG.
    Reconstruct(ReconstructArgs),
    /// Seconds per epoch of the reference models on the GPU and the CPU, measured in the same run, their
    /// ratio, and GPU matmul GFLOP/s. See benches/README.md for what each figure means.
    #[command(args_override_self = true)]
    Bench(bench::BenchArgs),
}

/// A checkpoint and where to run it.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckpointArgs {
    /// A checkpoint written by `gpu-ae train` (DIR/checkpoint.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Directory of IDX files; default: the data set the checkpoint was trained on.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ReconstructArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// The PNG to write.
    #[arg(long)]
    pub out: PathBuf,
    /// How many test digits to show.
    #[arg(long, default_value_t = 16)]
    pub count: usize,
}

/// Where the work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// The best hardware GPU (discrete first), else the CPU backend: a software rasteriser such as
    /// lavapipe is slower than the CPU backend and runs only when named (--backend vulkan, or
    /// WGPU_ADAPTER_NAME). Honours WGPU_BACKEND.
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
    /// The multi-threaded CPU reference backend.
    Cpu,
}

/// What `--backend` comes to on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// The CPU backend; for `auto`, why no GPU adapter was taken.
    Cpu { why: Option<String> },
    /// A GPU adapter, searched among the adapters of this API (all, for `auto`).
    Gpu(Option<ApiChoice>),
}

impl BackendArg {
    /// `cpu` is the CPU backend; `vulkan`, `metal`, … that API's best adapter, software ones included;
    /// `auto` the best hardware GPU, else the CPU backend (faster than a software rasteriser), see
    /// [`crate::backend::gpu::context::choose_auto`].
    pub fn resolve(self) -> Resolved {
        match self {
            BackendArg::Cpu => Resolved::Cpu { why: None },
            BackendArg::Auto => match crate::backend::gpu::context::auto_choice() {
                crate::backend::gpu::context::AutoChoice::Gpu(_) => Resolved::Gpu(None),
                crate::backend::gpu::context::AutoChoice::Cpu { reason } => {
                    Resolved::Cpu { why: Some(reason) }
                }
            },
            api => Resolved::Gpu(api.api()),
        }
    }

    /// The graphics API to restrict the adapter search to; `None` for auto (and for the CPU).
    pub fn api(self) -> Option<ApiChoice> {
        match self {
            BackendArg::Vulkan => Some(ApiChoice::Vulkan),
            BackendArg::Metal => Some(ApiChoice::Metal),
            BackendArg::Dx12 => Some(ApiChoice::Dx12),
            BackendArg::Gl => Some(ApiChoice::Gl),
            BackendArg::Auto | BackendArg::Cpu => None,
        }
    }
}

pub use crate::run::config::{ActArg, DeckArg, LossArg, OptimizerArg, Variant, parse_noise};

/// What `--noise` chose: a corruption, or `none`. (A newtype rather than `Option<Option<Noise>>`,
/// which clap reads as a flag whose value may be left out.)
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseChoice(pub Option<Noise>);

fn parse_noise_choice(text: &str) -> Result<NoiseChoice, String> {
    parse_noise(text).map(NoiseChoice)
}

/// `--steps-per-submit`: `auto` ([`crate::train::AUTO_STEPS`]) or a positive count.
pub fn parse_steps_per_submit(text: &str) -> Result<usize, String> {
    match text {
        "auto" => Ok(crate::train::AUTO_STEPS),
        _ => match text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "expected auto or a positive number of steps, got {text:?}"
            )),
        },
    }
}

/// `--kl-sparsity ρ:β`, or `none` (no KL term, even for sparse-ae).
fn parse_kl(text: &str) -> Result<Choice<KlSparsity>, String> {
    if text == "none" {
        return Ok(Choice(None));
    }
    let (rho, beta) = parse_pair(text, "ρ:β, e.g. 0.05:0.01")?;
    if !(rho > 0.0 && rho < 1.0) {
        return Err(format!(
            "the target activation ρ must lie strictly between 0 and 1, got {rho}"
        ));
    }
    if beta < 0.0 {
        return Err(format!("the weight β must be non-negative, got {beta}"));
    }
    Ok(Choice(Some(KlSparsity { rho, beta })))
}

/// `--emphasis α:β`: weights of corrupted and untouched components.
fn parse_emphasis(text: &str) -> Result<Emphasis, String> {
    let (corrupted, clean) = parse_pair(text, "α:β, e.g. 1:0.1")?;
    if corrupted < 0.0 || clean < 0.0 {
        return Err(format!("both weights must be non-negative, got {text}"));
    }
    Ok(Emphasis { corrupted, clean })
}

/// A penalty weight: a finite number ≥ 0, or `none`.
fn parse_weight(text: &str) -> Result<Choice<f32>, String> {
    if text == "none" {
        return Ok(Choice(None));
    }
    match text.parse::<f32>() {
        Ok(w) if w.is_finite() && w >= 0.0 => Ok(Choice(Some(w))),
        _ => Err(format!(
            "expected a non-negative weight or none, got {text:?}"
        )),
    }
}

fn parse_pair(text: &str, expected: &str) -> Result<(f32, f32), String> {
    let number = |t: &str| t.trim().parse::<f32>().ok().filter(|v| v.is_finite());
    match text.split_once(':').map(|(a, b)| (number(a), number(b))) {
        Some((Some(a), Some(b))) => Ok((a, b)),
        _ => Err(format!("expected {expected}, got {text:?}")),
    }
}

/// `--hidden`: comma-separated widths, or `none` for no hidden layer (784-latent-784).
fn parse_hidden(text: &str) -> Result<Widths, String> {
    if text == "none" || text.is_empty() {
        return Ok(Widths(Vec::new()));
    }
    text.split(',')
        .map(|w| match w.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "expected positive widths like 256,128 (or none), got {text:?}"
            )),
        })
        .collect::<Result<_, _>>()
        .map(Widths)
}

/// Layer widths from `--hidden` (a newtype so clap takes the whole list as one value).
#[derive(Clone, Debug, PartialEq)]
pub struct Widths(pub Vec<usize>);

/// A flag whose value may be `none`: `Some(Choice(None))` turns off what the variant would set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice<T>(pub Option<T>);

#[derive(clap::Args, Debug, Clone)]
#[command(after_long_help = TRAIN_HELP)]
pub struct TrainArgs {
    /// Which autoencoder to train. Each variant sets its own model and objective; the flags below
    /// override them.
    #[arg(long, value_enum, default_value = "ae")]
    pub variant: Variant,
    /// Passes over the training set.
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerArg,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// L2 weight decay, added to the gradient (PyTorch's `weight_decay`).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Reconstruction loss, a mean per pixel.
    #[arg(long, value_enum, default_value = "bce")]
    pub loss: LossArg,
    /// Dense variants: hidden layer widths of the encoder, outermost first, comma-separated (or none);
    /// the decoder mirrors them. Default: 256 for ae, none for sparse-ae and cae.
    #[arg(long, value_parser = parse_hidden)]
    pub hidden: Option<Widths>,
    /// Convolutional variants: channels after each encoder stage; the decoder mirrors them.
    #[arg(long, value_delimiter = ',', default_value = "32,64")]
    pub channels: Vec<usize>,
    /// Convolutional variants: strided convolutions, or pooling + batch norm down and unpooling up.
    #[arg(long, value_enum, default_value = "strided")]
    pub deck: DeckArg,
    /// Input corruption: none, gaussian:σ (clipped to [0, 1]), mask:ν (zero a fraction), salt-pepper:p.
    /// Default: gaussian:0.5 for conv-dae, none otherwise. The loss always compares with the clean input.
    #[arg(long, value_parser = parse_noise_choice)]
    pub noise: Option<NoiseChoice>,
    /// Dense variants: width of the code. Default: 64 for ae, 1000 for sparse-ae, 256 for cae.
    #[arg(long)]
    pub latent: Option<usize>,
    /// Activation of the hidden layers and the code. Default: relu; sigmoid for sparse-ae and cae.
    #[arg(long, value_enum)]
    pub activation: Option<ActArg>,
    /// L1 penalty on the code: adds λ · (mean over the batch of Σⱼ |hⱼ|) to the loss.
    #[arg(long, value_name = "λ", value_parser = parse_weight)]
    pub l1: Option<Choice<f32>>,
    /// KL sparsity on a sigmoid code: adds β · Σⱼ KL(ρ ‖ ρ̂ⱼ), ρ̂ⱼ the mean activation of code unit j over
    /// the batch. Default for sparse-ae: 0.05:0.01; `none` turns it off.
    #[arg(long, value_name = "ρ:β", value_parser = parse_kl)]
    pub kl_sparsity: Option<Choice<KlSparsity>>,
    /// Contractive penalty on a dense code layer: adds λ · (mean over the batch of ‖∂h/∂x‖²_F). Default
    /// for cae: 1e-3; 0 keeps the model and reports ‖J‖² without penalising it; `none` turns it off.
    #[arg(long, value_name = "λ", value_parser = parse_weight)]
    pub contractive: Option<Choice<f32>>,
    /// Emphasised denoising (needs mask or salt-pepper noise): corrupted components weigh α in the loss,
    /// the others β; the test metrics then report the loss on each kind separately.
    #[arg(long, value_name = "α:β", value_parser = parse_emphasis)]
    pub emphasis: Option<Emphasis>,
    /// Seed for initialisation, shuffling and noise: the same seed repeats a run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Use only the first N training images (and at most N test images): quick runs and smoke tests.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Directory of IDX files (train-images-idx3-ubyte[.gz], …); default: the bundled MNIST.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where metrics.csv and the pictures go.
    #[arg(long, default_value = "runs/latest")]
    pub out: PathBuf,
    /// Training steps recorded into one GPU submission between loss read-backs: a number, or `auto`
    /// (as many as take about 0.2 s, learned as training goes: a whole epoch per submission on a fast GPU).
    #[arg(long, default_value = "auto", value_parser = parse_steps_per_submit)]
    pub steps_per_submit: usize,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Write DIR/checkpoint.safetensors every N epochs (and at the end, and on Ctrl-C); 0: never.
    #[arg(long, default_value_t = 1)]
    pub save_every: usize,
    /// Continue the run saved in this checkpoint: its model, objective, optimizer and data settings
    /// replace the flags; --epochs is the total to reach.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// After the first epoch, print the per-op GPU profile of one training step (each dispatch timed with
    /// GPU timestamps where the adapter supports them, else on the host, as the header says), then exit:
    /// no further epochs, no pictures. GPU backends only. With --resume, profiles the checkpoint's model
    /// from where it stopped.
    #[arg(long)]
    pub profile: bool,
    /// Slow path for hunting NaNs: run each step op by op, read every op's outputs back and stop at the
    /// first op that writes a NaN or an infinity, naming it, its shapes and the buffer.
    #[arg(long)]
    pub detect_anomaly: bool,
    /// Rows of the --profile table (the slowest ops first).
    #[arg(long, default_value_t = 25)]
    pub profile_top: usize,
}

const TRAIN_HELP: &str = "\
Variants and their objectives (every loss is the reconstruction's mean per pixel plus the penalties):
  ae         784-256-64-256-784 ReLU                    bce
  conv-ae    strided conv 32,64 / transposed back       bce
  conv-dae   conv-ae on gaussian:0.5 noise              bce against the clean input
  sparse-ae  784-1000-784, sigmoid code                 bce + 0.01 · Σ KL(0.05 ‖ ρ̂)
  cae        784-256-784, sigmoid code                  bce + 1e-3 · ‖J‖²

Examples:
  gpu-ae train --variant ae --hidden none --latent 32 --l1 1e-3      (sparse code by L1)
  gpu-ae train --variant sparse-ae --kl-sparsity 0.05:0.001          (weaker sparsity)
  gpu-ae train --variant cae --contractive 0                         (the same model, ‖J‖² only reported)
  gpu-ae train --variant ae --noise mask:0.25 --emphasis 1:0.1       (emphasised denoising)

metrics.csv gets train_/test_ columns for every term (recon, l1, kl_sparsity, contractive) and statistic
(code_mean: the code's mean activation; jacobian_sq: the mean ‖J‖²_F; recon_corrupted and recon_clean with
--emphasis).";

#[derive(clap::Args, Debug, Clone)]
pub struct InfoArgs {
    /// Restrict the listing to one graphics API.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
}

/// A `none`-able flag's value: the flag's choice when given, else the variant's default.
fn pick<T>(flag: Option<Choice<T>>, default: Option<T>) -> Option<T> {
    match flag {
        Some(Choice(chosen)) => chosen,
        None => default,
    }
}

impl TrainArgs {
    /// The run configuration these flags ask for: the variant's defaults, then every flag that was given.
    pub fn config(&self) -> RunConfig {
        let base = self.variant.defaults();
        RunConfig {
            variant: self.variant,
            hidden: self.hidden.clone().map_or(base.hidden, |w| w.0),
            latent: self.latent.unwrap_or(base.latent),
            activation: self.activation.unwrap_or(base.activation),
            channels: self.channels.clone(),
            deck: self.deck,
            loss: self.loss,
            noise: match self.noise {
                Some(NoiseChoice(chosen)) => chosen,
                None => base.noise,
            },
            l1: pick(self.l1, base.l1),
            kl_sparsity: pick(self.kl_sparsity, base.kl_sparsity),
            contractive: pick(self.contractive, base.contractive),
            emphasis: self.emphasis,
            batch_size: self.batch_size,
            optimizer: self.optimizer,
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            seed: self.seed,
            limit: self.limit,
            data: self.data.clone(),
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => train::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Eval(args) => eval::eval(&args),
        Command::Reconstruct(args) => eval::reconstruct(&args),
        Command::Bench(args) => bench::run(&args).map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_per_submit_is_auto_or_a_positive_count() {
        assert_eq!(parse_steps_per_submit("auto"), Ok(crate::train::AUTO_STEPS));
        assert_eq!(parse_steps_per_submit("7"), Ok(7));
        for bad in ["0", "-3", "many", ""] {
            let err = parse_steps_per_submit(bad).unwrap_err();
            assert!(err.contains("auto or a positive number"), "{bad}: {err}");
        }
    }
}
