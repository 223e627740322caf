//! The command line: every flag defined and documented here, one file per subcommand doing the work.

pub mod bench;
pub mod config;
pub mod eval;
pub mod info;
pub mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::backend::gpu::ApiChoice;
use crate::ops::{Act, Noise};

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
    /// The best GPU adapter (discrete first), honouring WGPU_BACKEND and WGPU_ADAPTER_NAME.
    Auto,
    Vulkan,
    Metal,
    Dx12,
    Gl,
    /// The multi-threaded CPU reference backend.
    Cpu,
}

impl BackendArg {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    /// Dense undercomplete autoencoder: 784-hidden-latent-hidden-784.
    Ae,
    /// Convolutional autoencoder (strided convolutions down, transposed convolutions up).
    ConvAe,
    /// Convolutional denoising autoencoder: conv-ae trained on corrupted inputs (default gaussian:0.5)
    /// against the clean ones.
    ConvDae,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeckArg {
    /// Conv(k3, stride 2)-act down, ConvTranspose(k3, stride 2) up.
    Strided,
    /// Conv-act-BatchNorm-MaxPool down, MaxUnpool-Conv-act up.
    Pool,
}

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

/// `--noise`: `none`, `gaussian:σ`, `mask:ν` or `salt-pepper:p`.
pub fn parse_noise(text: &str) -> Result<Option<Noise>, String> {
    if text == "none" {
        return Ok(None);
    }
    let (kind, amount) = text.split_once(':').ok_or_else(|| {
        format!(
            "expected KIND:AMOUNT (gaussian:0.5, mask:0.25, salt-pepper:0.1) or none, got {text:?}"
        )
    })?;
    let amount: f32 = amount
        .parse()
        .map_err(|_| format!("{amount:?} is not a number"))?;
    if !(amount.is_finite() && amount >= 0.0) {
        return Err(format!(
            "the noise amount must be a non-negative number, got {amount}"
        ));
    }
    let fraction = |f: f32| {
        if f <= 1.0 {
            Ok(f)
        } else {
            Err(format!("a fraction must lie in [0, 1], got {f}"))
        }
    };
    match kind {
        "gaussian" => Ok(Some(Noise::Gaussian { sigma: amount })),
        "mask" => Ok(Some(Noise::Mask {
            fraction: fraction(amount)?,
        })),
        "salt-pepper" => Ok(Some(Noise::SaltPepper {
            fraction: fraction(amount)?,
        })),
        other => Err(format!(
            "unknown noise {other:?}: use gaussian, mask or salt-pepper"
        )),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    Adam,
    Sgd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    /// Binary cross-entropy on the sigmoid output (computed from logits, numerically stable).
    Bce,
    /// Mean squared error.
    Mse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActArg {
    Relu,
    LeakyRelu,
    Sigmoid,
    Tanh,
    Identity,
}

impl From<ActArg> for Act {
    fn from(a: ActArg) -> Act {
        match a {
            ActArg::Relu => Act::Relu,
            ActArg::LeakyRelu => Act::LeakyRelu,
            ActArg::Sigmoid => Act::Sigmoid,
            ActArg::Tanh => Act::Tanh,
            ActArg::Identity => Act::Identity,
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Which autoencoder to train.
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
    #[arg(long, value_enum, default_value = "bce")]
    pub loss: LossArg,
    /// Hidden layer widths of the encoder, outermost first, comma-separated; the decoder mirrors them.
    #[arg(long, value_delimiter = ',', default_value = "256")]
    pub hidden: Vec<usize>,
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
    /// Width of the code.
    #[arg(long, default_value_t = 64)]
    pub latent: usize,
    /// Activation of the hidden layers.
    #[arg(long, value_enum, default_value = "relu")]
    pub activation: ActArg,
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
    /// Continue the run saved in this checkpoint: its model, optimizer and data settings replace the flags;
    /// --epochs is the total to reach.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// After the first epoch, print the per-op GPU profile of one training step (each dispatch timed with
    /// GPU timestamps where the adapter supports them, else on the host, as the header says), then exit:
    /// no further epochs, no pictures. GPU backends only.
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

#[derive(clap::Args, Debug, Clone)]
pub struct InfoArgs {
    /// Restrict the listing to one graphics API.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
}

impl TrainArgs {
    /// The corruption this run applies: `--noise`, else the variant's default.
    pub fn noise(&self) -> Option<Noise> {
        match (self.noise, self.variant) {
            (Some(NoiseChoice(chosen)), _) => chosen,
            (None, Variant::ConvDae) => Some(Noise::Gaussian { sigma: 0.5 }),
            (None, _) => None,
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
