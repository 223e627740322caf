//! The command line: every flag defined and documented here, one file per subcommand doing the work.

pub mod bench;
pub mod classify;
pub mod complete;
pub mod configure;
pub mod encode;
pub mod eval;
pub mod export;
pub mod generate;
pub mod info;
pub mod map;
pub mod pca;
pub mod report;
pub mod retrieve;
pub mod selftest;
pub mod sweep;
pub mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::backend::gpu::ApiChoice;
use crate::objective::Emphasis;
use crate::ops::Noise;
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
    /// A checkpoint's model (parameters and batch-norm statistics, no optimizer state) as safetensors in
    /// f32, f16 or bf16; eval, reconstruct and the other readers take the file, `train --resume` does not.
    Export(ExportArgs),
    /// Draw test images above their reconstructions by a saved checkpoint into a PNG (with --denoising:
    /// corrupted input, its reconstruction, clean input), captioned with the model, epoch and test loss.
    Reconstruct(ReconstructArgs),
    /// Digits a variational model (vae, conv-vae) generates: codes z ~ N(0, T²I) drawn from its prior,
    /// decoded into a PNG grid.
    Sample(SampleArgs),
    /// Rows from one test digit to another: the decoder's images of points on the line between their codes
    /// (μ for a variational model; any model whose decoder starts from the code), into a PNG.
    Interpolate(InterpolateArgs),
    /// The digit manifold of a variational model with a 2-D latent (--latent 2): a grid of Gaussian
    /// quantiles of z₁ and z₂ decoded into a PNG.
    Manifold(ManifoldArgs),
    /// The code (μ for a variational model) of every training and test image, with the labels, as a
    /// safetensors file for numpy or PyTorch.
    Encode(EncodeArgs),
    /// The test set's codes as a 2-D scatter coloured by label, with a legend (a wider code on its first
    /// two principal components).
    Map(MapArgs),
    /// The first test images as queries against the training set by code distance: mean average
    /// precision and precision@k beside raw pixels and PCA of the same width, and retrieval.png.
    Retrieve(RetrieveArgs),
    /// A softmax classifier on the code: a linear probe on the frozen encoder, or with --fine-tune the
    /// encoder and head trained together; beside the same head on the raw pixels (and, fine-tuning, the
    /// same network from random initialisation), trained in the same run. Test accuracy and confusion.png.
    Classify(ClassifyArgs),
    /// Completion of occluded test digits: hide part of each (--mask), start the hidden part at the mean
    /// training image, and write the autoencoder's reconstruction back into the hidden part only, --passes
    /// times. Squared error per image and a raw-pixel classifier's accuracy on the mean fill and on the
    /// completion, and completion.png (rows: occluded, completed, truth).
    Complete(CompleteArgs),
    /// Principal component analysis of the training set: the test squared error per image of rank-k
    /// reconstructions, and with --checkpoint a linear autoencoder's error and the principal angles between
    /// its decoder and the principal subspace.
    Pca(PcaArgs),
    /// The lectures' homework in one command: train the cross product of --vary lists (every other flag
    /// as train takes it), one run after another, each in its own directory; then comparison.csv,
    /// comparison.png (every run's test loss), reconstructions.png (every run's, stacked) and
    /// report.html. The same command again resumes an interrupted sweep.
    #[command(after_long_help = sweep::SWEEP_HELP)]
    Sweep(sweep::SweepArgs),
    /// The table and pictures of `sweep` for runs that already exist: what differs between their
    /// configurations, their last epoch's losses and terms, their test-loss curves and reconstructions.
    Compare(sweep::CompareArgs),
    /// Seconds per epoch of the reference models on the GPU and the CPU, measured in the same run, their
    /// ratio, and GPU matmul GFLOP/s. See benches/README.md for what each figure means.
    #[command(args_override_self = true)]
    Bench(bench::BenchArgs),
    /// Checks every kernel on this machine's GPU against the CPU backend: each op family (every matmul
    /// kernel and tile the autotuner may pick, fused activations, convolutions, losses, optimizers, …) on
    /// seeded inputs of awkward sizes at the test suite's tolerances, then one training step of every
    /// variant. Exit status 0 when all agree, 1 otherwise, naming the first mismatching kernel.
    Selftest(SelftestArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct SelftestArgs {
    /// The adapter to check: auto (the best hardware GPU), an API (vulkan, metal, dx12, gl: its best
    /// adapter, software ones included), or cpu (the CPU backend in f32 against itself in f64, a check
    /// of the check).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Each entry point and kernel choice once, on one size (seconds); without it, every size of the
    /// table as well.
    #[arg(long)]
    pub quick: bool,
    /// Also write the report as JSON to FILE, to attach to a bug report.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// A checkpoint and where to run it.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckpointArgs {
    /// A checkpoint written by `gpu-ae train`, or the run directory that holds it
    /// (DIR/checkpoint.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Directory of IDX files, or of PNG images in class folders (see train --help); default: the data
    /// set the checkpoint was trained on.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    /// A checkpoint written by `gpu-ae train`, or the run directory that holds it
    /// (DIR/checkpoint.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The element type of the written tensors: f32 (exact), f16 (IEEE half: half the bytes, about 3
    /// significant digits, values up to 65504) or bf16 (f32's range, about 2 significant digits); each
    /// value rounded to nearest even.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// The file to write, *.safetensors (its folder is created if missing); the checkpoint's metadata is
    /// kept, with contents = model and dtype added.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtypeArg {
    F32,
    F16,
    Bf16,
}

impl DtypeArg {
    pub fn name(self) -> &'static str {
        match self {
            DtypeArg::F32 => "f32",
            DtypeArg::F16 => "f16",
            DtypeArg::Bf16 => "bf16",
        }
    }
}

impl From<DtypeArg> for crate::checkpoint::ExportDtype {
    fn from(d: DtypeArg) -> Self {
        match d {
            DtypeArg::F32 => Self::F32,
            DtypeArg::F16 => Self::F16,
            DtypeArg::Bf16 => Self::Bf16,
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// The file to write, *.safetensors (its folder is created if missing): train.codes [N × width] F32,
    /// train.labels [N] U8, test.codes, test.labels.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct MapArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// The PNG to write [default: map.png beside the checkpoint].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct RetrieveArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// How many test images (the first ones) are queries.
    #[arg(long, default_value_t = 1000, value_parser = parse_count, allow_negative_numbers = true)]
    pub queries: usize,
    /// Precision is reported at this rank.
    #[arg(long, default_value_t = 100, value_parser = parse_count, allow_negative_numbers = true)]
    pub k: usize,
    /// How codes are compared [default: hamming for hash-ae, euclidean otherwise].
    #[arg(long, value_enum)]
    pub metric: Option<retrieve::Metric>,
    /// The picture of ten queries and their matches [default: retrieval.png beside the checkpoint].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Train the encoder with the head (starting from the checkpoint) instead of a linear probe on the
    /// frozen code; adds the same network from random initialisation as a baseline.
    #[arg(long)]
    pub fine_tune: bool,
    /// Keep only N labelled training images of each class (a seeded choice): the semi-supervised case,
    /// where the autoencoder was trained on every image but the classifier sees few labels.
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true)]
    pub labels_per_class: Option<usize>,
    /// Passes over the labelled training images [default: 10; 50 with --labels-per-class].
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true)]
    pub epochs: Option<usize>,
    /// Samples per training step [default: 128; 32 with --labels-per-class, so few labels still make
    /// enough steps].
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true)]
    pub batch_size: Option<usize>,
    /// Adam's learning rate, a finite number > 0 [default: 0.01 for a linear head (the probe, and the
    /// raw-pixel baseline beside it); 0.001 with --fine-tune, for every network of the run].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Seed of the head's initialisation, the shuffles and the choice of labels.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The confusion matrix's picture [default: confusion.png beside the checkpoint].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct CompleteArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// What to hide of each test digit: square:S (an S×S square at a seeded random place), bottom-half,
    /// right-half, or pixels:ν (each pixel with probability ν). A model trained with --noise square:S
    /// has learned this.
    #[arg(long, default_value = "square:12", value_parser = crate::apps::complete::Mask::parse)]
    pub mask: crate::apps::complete::Mask,
    /// Passes through the autoencoder, each writing its reconstruction into the hidden pixels.
    #[arg(long, default_value_t = 1, value_parser = parse_count, allow_negative_numbers = true)]
    pub passes: usize,
    /// Epochs of the classifier trained on the spot (the same head on the raw pixels as `classify`'s
    /// baseline: Adam, lr 0.01, batch 128, on the clean training digits) that scores each version.
    #[arg(long, default_value_t = 10, value_parser = parse_count, allow_negative_numbers = true)]
    pub classifier_epochs: usize,
    /// Seed of the hidden pixels and of the classifier.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The picture of the first 16 test digits [default: completion.png beside the checkpoint].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PcaArgs {
    /// Numbers of components k, comma-separated (e.g. 2,10,30,64) [default: 30, or the checkpoint's
    /// code width].
    #[arg(long, value_parser = parse_components)]
    pub latent: Option<Widths>,
    /// A linear autoencoder (--variant linear-ae) to compare: its test error and the principal angles
    /// between its decoder's columns and the top-k principal subspace.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Directory of IDX files, or of PNG images in class folders (see train --help); default: the
    /// bundled MNIST (or the checkpoint's data set).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where the scatter matrix is computed (the matmul op on the GPU, or the CPU backend).
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ReconstructArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// The PNG to write (its folder is created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// How many test images to show, the first ones of the test set (16 a line, at most 512).
    #[arg(long, default_value_t = 16, value_parser = parse_count, allow_negative_numbers = true)]
    pub count: usize,
    /// A denoising model's other picture: corrupted input, its reconstruction, clean input (the
    /// training run's denoising.png).
    #[arg(long)]
    pub denoising: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SampleArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// The PNG to write (its folder is created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// How many digits to draw (about square lines, at most 16 a line; at most 1024).
    #[arg(long, default_value_t = 64, value_parser = parse_count, allow_negative_numbers = true)]
    pub count: usize,
    /// The codes' standard deviation T: z ~ N(0, T²I). Below 1 the digits are more typical and
    /// cleaner, above 1 more varied and stranger; a finite number > 0.
    #[arg(long, default_value_t = 1.0, value_parser = parse_temperature, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Seed of the draws: the same seed draws the same codes, on any backend.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(clap::Args, Debug, Clone)]
pub struct InterpolateArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// The PNG to write (its folder is created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Rows: pairs of test digits, from the start of the test set, each a digit and the next one with
    /// another label (at most 64).
    #[arg(long, default_value_t = 8, value_parser = parse_count, allow_negative_numbers = true)]
    pub pairs: usize,
    /// Points decoded along each line, both ends included (2 to 64).
    #[arg(long, default_value_t = 10, value_parser = parse_count, allow_negative_numbers = true)]
    pub steps: usize,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ManifoldArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// The PNG to write (its folder is created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Digits a side: z₁ and z₂ each take the Gaussian quantiles Φ⁻¹((i + ½)/grid) (2 to 64).
    #[arg(long, default_value_t = 20, value_parser = parse_count, allow_negative_numbers = true)]
    pub grid: usize,
}

/// `--temperature`: a finite number > 0.
fn parse_temperature(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(t) if t.is_finite() && t > 0.0 => Ok(t),
        _ => Err(format!("expected a finite number > 0, got {text:?}")),
    }
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

pub use crate::run::config::{
    ActArg, DeckArg, LossArg, OptimizerArg, PretrainArg, Variant, parse_noise,
};

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
    let kl = KlSparsity { rho, beta };
    crate::run::config::check_kl(kl)?;
    Ok(Choice(Some(kl)))
}

/// `--emphasis α:β`: weights of corrupted and untouched components.
fn parse_emphasis(text: &str) -> Result<Emphasis, String> {
    let (corrupted, clean) = parse_pair(text, "α:β, e.g. 1:0.1")?;
    let emphasis = Emphasis { corrupted, clean };
    crate::run::config::check_emphasis(emphasis)?;
    Ok(emphasis)
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
    /// Which autoencoder to train (default: ae). Each variant sets its own model and objective; the
    /// flags below change them, and a flag that does not apply to the variant is an error.
    #[arg(long, value_enum)]
    pub variant: Option<Variant>,
    /// Passes over the training set; with --resume, the total to reach.
    #[arg(long, default_value_t = 4, value_parser = parse_count, allow_negative_numbers = true)]
    pub epochs: usize,
    /// Samples per training step [default: 128].
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true)]
    pub batch_size: Option<usize>,
    /// Learning rate, a finite number > 0 [default: 1e-3].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// The optimizer, with torch.optim's definitions. Without --lr, each takes PyTorch's default rate
    /// (1e-3 for adam, adamw and sgd; 1e-2 for rmsprop and adagrad) and adamw its
    /// weight decay of 1e-2 [default: adam].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// SGD momentum, in [0, 1) [default: 0.9]; --optimizer sgd only.
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f32>,
    /// L2 weight decay ≥ 0, added to the gradient (PyTorch's `weight_decay`) [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f32>,
    /// How the learning rate changes after any warm-up, step by step: constant; step:E:γ (× γ every E
    /// epochs, counted from the start, as StepLR); cosine (down to 0 along half a cosine over the
    /// epochs after the warm-up, as CosineAnnealingLR) or cosine:N (over N epochs, then 0)
    /// [default: constant].
    #[arg(long, value_name = "SCHEDULE", value_parser = parse_schedule_flag)]
    pub lr_schedule: Option<ScheduleFlag>,
    /// Epochs over which the learning rate grows linearly from lr/steps to lr, step by step, before the
    /// schedule takes over [default: 0].
    #[arg(long, value_name = "E", value_parser = parse_whole, allow_negative_numbers = true)]
    pub lr_warmup: Option<usize>,
    /// f32, or mixed: activations, their gradients and an f16 copy of each weight stored in f16, products
    /// accumulated in f32, master weights and optimizer state in f32, with dynamic loss scaling (as
    /// PyTorch's GradScaler: a step whose gradients overflow is skipped and the scale halved). Dense and
    /// convolutional (strided) autoencoders with Adam; the GPU needs SHADER_F16 (see `gpu-ae info`)
    /// [default: f32].
    #[arg(long, value_enum)]
    pub precision: Option<crate::run::config::PrecisionArg>,
    /// Early stopping: end the run once the test loss has not improved for N epochs in a row. The
    /// epoch with the lowest test loss is saved as best.safetensors, and the pictures and report show
    /// that model; checkpoint.safetensors is where training stopped.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub patience: Option<usize>,
    /// Reconstruction loss, a mean per pixel [default: bce].
    #[arg(long, value_enum)]
    pub loss: Option<LossArg>,
    /// Dense variants: hidden layer widths of the encoder, outermost first, comma-separated (or none);
    /// the decoder mirrors them. Default: 256 for ae and hash-ae, 400 for vae, 1000,500,250 for deep-ae,
    /// none for sparse-ae, cae and linear-ae.
    #[arg(long, value_parser = parse_hidden)]
    pub hidden: Option<Widths>,
    /// Convolutional variants (conv-ae, conv-dae, conv-vae): channels after each encoder stage,
    /// comma-separated; the decoder mirrors them [default: 32,64].
    #[arg(long, value_parser = parse_channels)]
    pub channels: Option<Widths>,
    /// conv-ae and conv-dae: strided convolutions, or pooling + batch norm down and unpooling up
    /// [default: strided].
    #[arg(long, value_enum)]
    pub deck: Option<DeckArg>,
    /// Input corruption: none, gaussian:σ (clipped to [0, 1]), mask:ν (zero a fraction), salt-pepper:p,
    /// square:S (zero an S×S square at a random place of each image: occlusion, see `gpu-ae complete`).
    /// Default: gaussian:0.5 for conv-dae, none otherwise. The loss always compares with the clean input.
    #[arg(long, value_parser = parse_noise_choice)]
    pub noise: Option<NoiseChoice>,
    /// Width of the code (of μ and of log σ² for the variational variants): dense variants and conv-vae
    /// (hash-ae: --bits). Default: 64 for ae, 1000 for sparse-ae, 256 for cae, 20 for vae, 16 for
    /// conv-vae, 30 for deep-ae and linear-ae.
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true)]
    pub latent: Option<usize>,
    /// Activation of the hidden layers (and of the code, unless --code-activation is given). Default:
    /// relu; sigmoid for sparse-ae, cae and deep-ae; identity for linear-ae.
    #[arg(long, value_enum)]
    pub activation: Option<ActArg>,
    /// Dense variants: the code layer's own activation, e.g. identity for a linear bottleneck or sigmoid
    /// for codes in (0, 1). Default: the same as --activation; identity for deep-ae.
    #[arg(long, value_enum)]
    pub code_activation: Option<ActArg>,
    /// L1 penalty on the code (deterministic variants): adds λ · (mean over the batch of Σⱼ |hⱼ|) to the
    /// loss.
    #[arg(long, value_name = "λ", value_parser = parse_weight, allow_negative_numbers = true)]
    pub l1: Option<Choice<f32>>,
    /// KL sparsity on a sigmoid code (deterministic variants): adds β · Σⱼ KL(ρ ‖ ρ̂ⱼ), ρ̂ⱼ the mean
    /// activation of code unit j over the batch. Default for sparse-ae: 0.05:0.01; `none` turns it off.
    #[arg(long, value_name = "ρ:β", value_parser = parse_kl, allow_hyphen_values = true)]
    pub kl_sparsity: Option<Choice<KlSparsity>>,
    /// ae, sparse-ae, cae: contractive penalty on the code layer, adds λ · (mean over the batch of
    /// ‖∂h/∂x‖²_F). Default for cae: 1e-3; 0 keeps the model and reports ‖J‖² without penalising it;
    /// `none` turns it off.
    #[arg(long, value_name = "λ", value_parser = parse_weight, allow_negative_numbers = true)]
    pub contractive: Option<Choice<f32>>,
    /// Emphasised denoising (needs mask, salt-pepper or square noise): corrupted components weigh α in the loss,
    /// the others β; the test metrics then report the loss on each kind separately.
    #[arg(long, value_name = "α:β", value_parser = parse_emphasis, allow_hyphen_values = true)]
    pub emphasis: Option<Emphasis>,
    /// Variational variants: the KL term's weight β, a finite number ≥ 0 (1: the VAE; above 1, a β-VAE,
    /// which gives up reconstruction for a code closer to the prior) [default: 1].
    #[arg(long, value_name = "β", allow_negative_numbers = true)]
    pub beta: Option<f32>,
    /// Variational variants: the KL weight grows linearly from 0 to β over the first N epochs (step by
    /// step); the test loss always weighs the KL by β [default: 0, no warm-up].
    #[arg(long, value_name = "N", value_parser = parse_whole, allow_negative_numbers = true)]
    pub kl_warmup: Option<usize>,
    /// Dense variants: pretrain the layers one at a time before the whole model trains: rbm (a stack of
    /// RBMs trained by CD-1, Bernoulli hidden units and Gaussian ones for a linear code; needs sigmoid
    /// hidden layers), greedy (each layer a shallow autoencoder on the codes below; denoising with
    /// --noise), or none. Batch 100; RBMs by momentum SGD (lr 0.1, 0.001 for the top, momentum 0.9,
    /// weight decay 2e-4), greedy layers by the run's optimizer. --epochs counts the fine-tuning
    /// [default: none].
    #[arg(long, value_enum)]
    pub pretrain: Option<PretrainArg>,
    /// Epochs of each pretraining phase (with --pretrain rbm or greedy) [default: 2].
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub pretrain_epochs: Option<usize>,
    /// hash-ae: the code's width B, the bits of each image's hash (the signs of its tanh code)
    /// [default: 32].
    #[arg(long, value_name = "B", value_parser = parse_count, allow_negative_numbers = true)]
    pub bits: Option<usize>,
    /// hash-ae: binarisation term, adds λ · (mean over the batch of Σⱼ ||bⱼ| − 1|), pushing the code b
    /// towards ±1 [default: 1e-4]; 0 reports it without training on it, `none` turns it off.
    #[arg(long, value_name = "λ", value_parser = parse_weight, allow_negative_numbers = true)]
    pub binarize: Option<Choice<f32>>,
    /// hash-ae: bit balance term, adds λ · Σⱼ (mean over the batch of bⱼ)², so each bit is set for
    /// about half the images [default: 3.2e-3]; 0 or `none` as for --binarize.
    #[arg(long, value_name = "λ", value_parser = parse_weight, allow_negative_numbers = true)]
    pub bit_balance: Option<Choice<f32>>,
    /// hash-ae: decorrelation term, adds λ · Σⱼ≠ₖ Cov(b)ⱼₖ², the population covariance of the code over
    /// the batch, so the bits say different things [default: 1e-4]; 0 or `none` as for --binarize.
    #[arg(long, value_name = "λ", value_parser = parse_weight, allow_negative_numbers = true)]
    pub decorrelate: Option<Choice<f32>>,
    /// Seed for initialisation, shuffling, noise and a VAE's ε: the same seed repeats a run [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub seed: Option<u64>,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// Use only the first N training images (and at most N test images): quick runs and smoke tests.
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true)]
    pub limit: Option<usize>,
    /// The data set; default: the bundled MNIST. Either a directory of the four MNIST IDX files
    /// (train-images-idx3-ubyte[.gz], …), or a folder of PNG images in one sub-folder per class
    /// (torchvision's ImageFolder): DIR/train/<class>/*.png and DIR/test/<class>/*.png, or DIR/<class>/*.png
    /// alone, whose every 7th image (in a fixed shuffled order) is a test image. Labels are the classes'
    /// places in their sorted folder names (at most 10 classes); all images one size; colour becomes grey.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The run directory (metrics.csv, config.json, pictures, checkpoint.safetensors). Default: a new
    /// runs/<variant>-<N>, with runs/latest pointing at it; with --resume, the checkpoint's directory. A
    /// directory that holds another run is refused unless --overwrite is given.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Let --out name a directory that holds a previous run, replacing its files.
    #[arg(long)]
    pub overwrite: bool,
    /// Training steps recorded into one GPU submission between loss read-backs: a number, or `auto`
    /// (as many as take about 0.2 s, learned as training goes: a whole epoch per submission on a fast GPU).
    #[arg(long, default_value = "auto", value_parser = parse_steps_per_submit)]
    pub steps_per_submit: usize,
    /// No progress bars or progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Write DIR/checkpoint.safetensors every N epochs (and at the end, and on Ctrl-C); 0: never
    /// [default: 1].
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Continue the run saved in this checkpoint (or in DIR/checkpoint.safetensors when given a
    /// directory), up to --epochs in total. The checkpoint fixes the model, objective, optimizer, seed and
    /// data size: a flag that sets one of them differently is an error. What may change: --epochs,
    /// --patience, --backend, --out, --data, --save-every, --steps-per-submit, --quiet, --detect-anomaly, --profile.
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
    /// Rows of the --profile table (the slowest ops first) [default: 25].
    #[arg(long, value_parser = parse_count)]
    pub profile_top: Option<usize>,
}

/// `--lr-schedule`: a schedule, or `cosine` over the run's own --epochs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScheduleFlag {
    Given(crate::run::config::ScheduleArg),
    CosineOverRun,
}

fn parse_schedule_flag(text: &str) -> Result<ScheduleFlag, String> {
    match text.trim() {
        "cosine" => Ok(ScheduleFlag::CosineOverRun),
        t => crate::run::config::parse_schedule(t).map(ScheduleFlag::Given),
    }
}

/// A whole number ≥ 1.
pub fn parse_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a whole number ≥ 1, got {text:?}")),
    }
}

/// A whole number ≥ 0.
fn parse_whole(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .map_err(|_| format!("expected a whole number ≥ 0, got {text:?}"))
}

/// `--channels`: comma-separated positive counts.
fn parse_channels(text: &str) -> Result<Widths, String> {
    positive_list(text, "positive channel counts like 32,64")
}

/// `pca --latent`: numbers of components.
fn parse_components(text: &str) -> Result<Widths, String> {
    positive_list(text, "numbers of components ≥ 1 like 2,10,30")
}

/// A comma-separated list of whole numbers ≥ 1; `expected` says what they are, for the error.
fn positive_list(text: &str, expected: &str) -> Result<Widths, String> {
    text.split(',')
        .map(|c| match c.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("expected {expected}, got {text:?}")),
        })
        .collect::<Result<_, _>>()
        .map(Widths)
}

const TRAIN_HELP: &str = "\
Variants and their objectives (the deterministic ones' loss is the reconstruction's mean per pixel plus the
penalties; the variational ones' is per image: the reconstruction summed over pixels plus β·KL):
  ae         784-256-64-256-784 ReLU                    bce
  conv-ae    strided conv 32,64 / transposed back       bce
  conv-dae   conv-ae on gaussian:0.5 noise              bce against the clean input
  sparse-ae  784-1000-784, sigmoid code                 bce + 0.01 · Σ KL(0.05 ‖ ρ̂)
  cae        784-256-784, sigmoid code                  bce + 1e-3 · ‖J‖²
  vae        784-400-(μ, log σ² of 20)-400-784 ReLU     bce summed + β · KL(q(z|x) ‖ N(0, I)), β = 1
  conv-vae   conv 32,64 → μ, log σ² of 16 → linear →    the same
             transposed convs back
  deep-ae    784-1000-500-250-30 sigmoid, linear code   bce (sq_err per image reported)
  linear-ae  784-30-784, identity throughout            mse (sq_err per image reported)
  hash-ae    784-256-32-256-784 ReLU, tanh code;        bce + 1e-4 · Σ ||b| − 1| + 3.2e-3 · Σ mean(b)²
             hash = sign(code), 32 bits                 + 1e-4 · Σⱼ≠ₖ Cov(b)ⱼₖ²

Examples:
  gpu-ae train --variant ae --hidden none --latent 32 --l1 1e-3      (sparse code by L1)
  gpu-ae train --variant sparse-ae --kl-sparsity 0.05:0.001          (weaker sparsity)
  gpu-ae train --variant cae --contractive 0                         (the same model, ‖J‖² only reported)
  gpu-ae train --variant ae --noise mask:0.25 --emphasis 1:0.1       (emphasised denoising)
  gpu-ae train --variant vae --epochs 10                             (then: gpu-ae sample --checkpoint runs/latest)
  gpu-ae train --variant vae --beta 4 --kl-warmup 2                  (a β-VAE, its KL weight warmed up)
  gpu-ae train --variant vae --latent 2                              (then: gpu-ae manifold --checkpoint runs/latest)
  gpu-ae train --variant deep-ae --pretrain rbm                      (RBMs by CD-1, 2 epochs a layer, then 4 of the whole)
  gpu-ae train --variant deep-ae --pretrain greedy --noise mask:0.25 (stacked denoising autoencoders)
  gpu-ae train --variant linear-ae --epochs 10                       (then: gpu-ae pca --checkpoint runs/latest)
  gpu-ae train --variant hash-ae --bits 64 --decorrelate 0           (64-bit hashes, correlation only reported)

Which flags apply where (any other combination is an error that lists the flags that do apply):
  ae, sparse-ae, cae, deep-ae, linear-ae --hidden --latent --activation --code-activation --contractive
                                        --pretrain --pretrain-epochs
  conv-ae, conv-dae                     --channels --deck --activation
  vae                                   --hidden --latent --activation --beta --kl-warmup
  conv-vae                              --channels --latent --activation --beta --kl-warmup
  hash-ae                               --hidden --bits --activation --binarize --bit-balance --decorrelate
  all but vae, conv-vae and hash-ae     --l1 --kl-sparsity
  every variant                         --loss --noise --emphasis, the optimizer, data
  --momentum                            --optimizer sgd only
Numbers are checked: --lr > 0, --momentum in [0, 1), --weight-decay and --beta ≥ 0, counts ≥ 1, noise
fractions in [0, 1]. Negative values are read as values (--lr -1 is rejected as a learning rate, not as a
flag).

The run directory (runs/<variant>-<N> unless --out) gets config.json, metrics.csv, checkpoint.safetensors,
reconstructions.png (rows: input, reconstruction), with noise denoising.png (rows: corrupted input,
reconstruction, clean input) and for vae and conv-vae samples.png (digits decoded from codes drawn from the
prior N(0, I)). metrics.csv gets train_/test_ columns for every term (recon, l1, kl_sparsity, contractive,
kl, binarize, bit_balance, decorrelate) and statistic (code_mean: the code's mean activation; jacobian_sq: the mean ‖J‖²_F; recon_corrupted and
recon_clean with --emphasis; recon_per_pixel for the variational variants, whose recon and kl are per
image; sq_err, the squared error per image, for deep-ae and linear-ae). A run with --pretrain trains one
phase per encoder layer first (pretrain-1 … pretrain-K, each --pretrain-epochs epochs of batch 100, its
loss the RBM's reconstruction error per image, rbm_error, or the layer's autoencoder loss, layer_recon),
then the whole model for --epochs (fine-tune); metrics.csv ends each line with the phase, epochs and steps
count within it, and --resume continues inside any phase.

--resume keeps the checkpoint's configuration; only --epochs, --patience, --backend, --out, --data, --save-every,
--steps-per-submit, --quiet, --detect-anomaly and --profile may change. A flag that sets the configuration to
something else is an error naming the checkpoint's value.";

#[derive(clap::Args, Debug, Clone)]
pub struct InfoArgs {
    /// Restrict the listing to one graphics API.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
}

/// An error and its causes on one line, each said once: a cause whose text the message already holds
/// (a library error that names its I/O error, wrapped by a context that names it again) is left out.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        // The usual repetition: a message that ends with its source's text, then the source itself.
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train(args) => train::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Eval(args) => eval::eval(&args),
        Command::Reconstruct(args) => eval::reconstruct(&args),
        Command::Export(args) => export::run(&args),
        Command::Sample(args) => generate::sample(&args),
        Command::Interpolate(args) => generate::interpolate(&args),
        Command::Manifold(args) => generate::manifold(&args),
        Command::Encode(args) => encode::run(&args),
        Command::Map(args) => map::run(&args),
        Command::Retrieve(args) => retrieve::run(&args),
        Command::Classify(args) => classify::run(&args),
        Command::Complete(args) => complete::run(&args),
        Command::Pca(args) => pca::run(&args),
        Command::Bench(args) => bench::run(&args).map(|_| ()),
        Command::Selftest(args) => selftest::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::Compare(args) => sweep::compare_runs(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(28);
        let io_text = io.to_string();
        // A typed error that names its source in its message, and carries it as its source.
        #[derive(Debug, thiserror::Error)]
        #[error("cannot write a.csv: {source}")]
        struct Write {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Write { source: io }).context("saving the run");
        let text = error_text(&e);
        assert_eq!(text.matches(&io_text).count(), 1, "{text}");
        assert!(
            text.starts_with("saving the run: cannot write a.csv: "),
            "{text}"
        );
        // Distinct causes all show.
        let e = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_text(&e), "outer: middle: inner");
    }

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
