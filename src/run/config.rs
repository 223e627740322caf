//! One run's configuration: what is trained and how (model recipe, objective, optimizer, data, noise).
//!
//! The CLI maps its flags onto a [`RunConfig`] (resolving each variant's defaults), every checkpoint stores
//! it as JSON, and `--resume`, `eval`, `reconstruct` and `bench` build their models from it. Every field has
//! a default, so the configuration of a checkpoint written before a field existed still loads (the field
//! then takes the value that reproduces the old behaviour: no L1 term, no emphasis, …).

use std::path::PathBuf;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::schedule::{ScheduleArg, parse_schedule};
use crate::data::mnist::{self, Dataset};
use crate::model::variants::{
    ConvConfig, Deck, DenseConfig, conv_ae, conv_vae, dense_ae, dense_vae,
};
use crate::model::{Model, Shape};
use crate::objective::{Emphasis, Objective, Term};
use crate::ops::optim::{AdagradHyper, Decay, LrSchedule, RmspropHyper};
use crate::ops::{Act, AdamHyper, LossKind, Noise};
use crate::plan::pretrain::PRETRAIN_BATCH;
use crate::plan::{
    Optimizer, Plan, PlanConfig, PretrainKind, Pretraining, RbmSchedule, compile_with,
};

/// Which autoencoder to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Dense undercomplete autoencoder: 784-hidden-latent-hidden-784 (default 784-256-64-256-784, ReLU).
    #[default]
    Ae,
    /// Convolutional autoencoder (strided convolutions down, transposed convolutions up).
    ConvAe,
    /// Convolutional denoising autoencoder: conv-ae trained on corrupted inputs (default gaussian:0.5)
    /// against the clean ones.
    ConvDae,
    /// Overcomplete sparse autoencoder: 784-1000-784 with a sigmoid code and KL sparsity (default
    /// --kl-sparsity 0.05:0.01).
    SparseAe,
    /// Contractive autoencoder: 784-256-784 with a sigmoid code and the contractive penalty (default
    /// --contractive 1e-3).
    Cae,
    /// Variational autoencoder: 784-400-(μ, log σ² of 20)-400-784, ReLU, sigmoid output; loss per image:
    /// reconstruction summed over pixels + β · KL(q(z|x) ‖ N(0, I)) (default --beta 1).
    Vae,
    /// Convolutional variational autoencoder: the conv-ae encoder, flattened into μ, log σ² of 16, a
    /// linear layer back to the feature map, and the transposed-convolution decoder.
    ConvVae,
    /// Deep autoencoder (Hinton & Salakhutdinov 2006): 784-1000-500-250-30 mirrored, sigmoid hidden
    /// units, a linear 30-unit code, sigmoid output; `--pretrain rbm` or `greedy` pretrains it layer by
    /// layer before the fine-tuning.
    DeepAe,
    /// Linear autoencoder: 784-k-784 with identity activations and an identity output, squared error
    /// (default --latent 30): it learns the span of the top k principal components (`gpu-ae pca`).
    LinearAe,
    /// Sparse binary hashing autoencoder: 784-256-B-256-784 (B = --bits, default 32), a tanh code whose
    /// signs are the hash bits, with binarisation, bit balance and decorrelation terms (default
    /// --binarize 1e-4, --bit-balance 3.2e-3, --decorrelate 1e-4).
    HashAe,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Ae => "ae",
            Variant::ConvAe => "conv-ae",
            Variant::ConvDae => "conv-dae",
            Variant::SparseAe => "sparse-ae",
            Variant::Cae => "cae",
            Variant::Vae => "vae",
            Variant::ConvVae => "conv-vae",
            Variant::DeepAe => "deep-ae",
            Variant::LinearAe => "linear-ae",
            Variant::HashAe => "hash-ae",
        }
    }

    pub fn is_conv(self) -> bool {
        matches!(self, Variant::ConvAe | Variant::ConvDae | Variant::ConvVae)
    }

    /// Whether the model is variational: a Gaussian code sampled by the reparameterisation trick, trained
    /// on reconstruction + β·KL per image.
    pub fn is_variational(self) -> bool {
        matches!(self, Variant::Vae | Variant::ConvVae)
    }

    /// The configuration `gpu-ae train --variant V` trains with no other flag.
    pub fn defaults(self) -> RunConfig {
        let base = RunConfig {
            variant: self,
            ..RunConfig::default()
        };
        match self {
            Variant::Ae | Variant::ConvAe => base,
            Variant::ConvDae => RunConfig {
                noise: Some(Noise::Gaussian { sigma: 0.5 }),
                ..base
            },
            Variant::SparseAe => RunConfig {
                hidden: vec![],
                latent: 1000,
                activation: ActArg::Sigmoid,
                kl_sparsity: Some(KlSparsity {
                    rho: 0.05,
                    beta: 0.01,
                }),
                ..base
            },
            Variant::Cae => RunConfig {
                hidden: vec![],
                latent: 256,
                activation: ActArg::Sigmoid,
                contractive: Some(1e-3),
                ..base
            },
            Variant::Vae => RunConfig {
                hidden: vec![400],
                latent: 20,
                ..base
            },
            Variant::ConvVae => RunConfig { latent: 16, ..base },
            Variant::DeepAe => RunConfig {
                hidden: vec![1000, 500, 250],
                latent: 30,
                activation: ActArg::Sigmoid,
                code_activation: Some(ActArg::Identity),
                ..base
            },
            Variant::LinearAe => RunConfig {
                hidden: vec![],
                latent: 30,
                activation: ActArg::Identity,
                loss: LossArg::Mse,
                ..base
            },
            Variant::HashAe => RunConfig {
                latent: 32,
                code_activation: Some(ActArg::Tanh),
                binarize: Some(1e-4),
                bit_balance: Some(3.2e-3),
                decorrelate: Some(1e-4),
                ..base
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DeckArg {
    /// Conv(k3, stride 2)-act down, ConvTranspose(k3, stride 2) up.
    #[default]
    Strided,
    /// Conv-act-BatchNorm-MaxPool down, MaxUnpool-Conv-act up.
    Pool,
}

/// `--precision`: what activations, their gradients and the products' operands are stored as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PrecisionArg {
    #[default]
    F32,
    Mixed,
}

impl PrecisionArg {
    pub fn name(self) -> &'static str {
        match self {
            PrecisionArg::F32 => "f32",
            PrecisionArg::Mixed => "mixed",
        }
    }
}

impl From<PrecisionArg> for crate::plan::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => Self::F32,
            PrecisionArg::Mixed => Self::Mixed,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerArg {
    /// Adam (L2 weight decay added to the gradient).
    #[default]
    Adam,
    /// AdamW: Adam with decoupled weight decay (default --weight-decay 0.01, as torch.optim.AdamW).
    #[value(name = "adamw")]
    #[serde(rename = "adamw")]
    AdamW,
    /// SGD with momentum.
    Sgd,
    /// RMSprop (α 0.99, ε 1e-8; default --lr 0.01, as torch.optim.RMSprop).
    Rmsprop,
    /// Adagrad (ε 1e-10; default --lr 0.01, as torch.optim.Adagrad).
    Adagrad,
}

impl OptimizerArg {
    /// torch.optim's default learning rate for the optimizer, used when --lr is not given.
    pub fn default_lr(self) -> f32 {
        match self {
            OptimizerArg::Rmsprop | OptimizerArg::Adagrad => 1e-2,
            _ => 1e-3,
        }
    }

    /// torch.optim's default weight decay, used when --weight-decay is not given.
    pub fn default_weight_decay(self) -> f32 {
        match self {
            OptimizerArg::AdamW => 1e-2,
            _ => 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LossArg {
    /// Binary cross-entropy on the sigmoid output (computed from logits, numerically stable).
    #[default]
    Bce,
    /// Mean squared error.
    Mse,
    /// Mean absolute error (PyTorch's L1Loss).
    L1,
}

impl From<LossArg> for LossKind {
    fn from(l: LossArg) -> LossKind {
        match l {
            LossArg::Bce => LossKind::BceWithLogits,
            LossArg::Mse => LossKind::Mse,
            LossArg::L1 => LossKind::L1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ActArg {
    #[default]
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

/// How a deep autoencoder's layers are pretrained before the whole model is trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PretrainArg {
    /// No pretraining: the whole model from its random initialisation.
    #[default]
    None,
    /// A stack of RBMs trained by CD-1 (Bernoulli hidden units, Gaussian for a linear code), unrolled
    /// into the encoder (W) and the decoder (Wᵀ).
    Rbm,
    /// Each layer a shallow autoencoder on the codes of the layers below (denoising with --noise).
    Greedy,
}

/// KL sparsity's target mean activation ρ and weight β.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KlSparsity {
    pub rho: f32,
    pub beta: f32,
}

/// What is trained and how: everything a checkpoint needs to rebuild the model, its objective and its
/// optimizer (not where the run writes, nor for how long).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    pub variant: Variant,
    /// Dense variants: hidden widths of the encoder, outermost first; the decoder mirrors them.
    pub hidden: Vec<usize>,
    /// Dense variants: the code's width (hash-ae: the bits, `--bits`).
    pub latent: usize,
    /// The hidden layers' activation (and the code's, unless `code_activation` is set).
    pub activation: ActArg,
    /// Dense variants: the code layer's own activation; `None`: the same as `activation`.
    pub code_activation: Option<ActArg>,
    /// Convolutional variants: channels after each encoder stage.
    pub channels: Vec<usize>,
    pub deck: DeckArg,
    pub loss: LossArg,
    #[serde(with = "noise_text")]
    pub noise: Option<Noise>,
    /// λ of the L1 penalty on the code.
    pub l1: Option<f32>,
    pub kl_sparsity: Option<KlSparsity>,
    /// λ of the contractive penalty.
    pub contractive: Option<f32>,
    /// Weights of the emphasised denoising loss.
    pub emphasis: Option<Emphasis>,
    /// Variational variants: the KL term's weight β (1: the VAE; > 1: a β-VAE).
    pub beta: f32,
    /// Variational variants: epochs over which the KL weight grows linearly from 0 to β (0: none).
    pub kl_warmup: usize,
    /// Dense mirrored variants: layer-wise pretraining before the whole model trains.
    pub pretrain: PretrainArg,
    /// Epochs of each pretraining phase.
    pub pretrain_epochs: usize,
    /// hash-ae: λ of the binarisation term, mean over the batch of Σⱼ ||bⱼ| − 1|.
    pub binarize: Option<f32>,
    /// hash-ae: λ of the bit balance term, Σⱼ (mean over the batch of bⱼ)².
    pub bit_balance: Option<f32>,
    /// hash-ae: λ of the decorrelation term, Σⱼ≠ₖ Cov(b)ⱼₖ².
    pub decorrelate: Option<f32>,
    pub batch_size: usize,
    pub optimizer: OptimizerArg,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// How the learning rate changes over the (fine-tuning) epochs after the warm-up.
    #[serde(with = "super::schedule::text")]
    pub lr_schedule: ScheduleArg,
    /// Epochs over which the learning rate grows linearly to its value, step by step (0: none).
    pub lr_warmup: usize,
    /// f32, or mixed: f16 activations and gradients with loss scaling (absent in older checkpoints: f32).
    pub precision: PrecisionArg,
    pub seed: u64,
    /// Train on the first N training images and test on at most N test images.
    pub limit: Option<usize>,
    /// Directory of IDX files; `None`: the bundled MNIST.
    pub data: Option<PathBuf>,
}

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig {
            variant: Variant::Ae,
            hidden: vec![256],
            latent: 64,
            activation: ActArg::Relu,
            code_activation: None,
            channels: vec![32, 64],
            deck: DeckArg::Strided,
            loss: LossArg::Bce,
            noise: None,
            l1: None,
            kl_sparsity: None,
            contractive: None,
            emphasis: None,
            beta: 1.0,
            kl_warmup: 0,
            pretrain: PretrainArg::None,
            pretrain_epochs: 2,
            binarize: None,
            bit_balance: None,
            decorrelate: None,
            batch_size: 128,
            optimizer: OptimizerArg::Adam,
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 0.0,
            lr_schedule: ScheduleArg::Constant,
            lr_warmup: 0,
            precision: PrecisionArg::F32,
            seed: 0,
            limit: None,
            data: None,
        }
    }
}

/// `noise` as text in the JSON: `none`, `gaussian:σ`, `mask:ν`, `salt-pepper:p`.
mod noise_text {
    use crate::ops::Noise;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(noise: &Option<Noise>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::noise_to_text(*noise))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Noise>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_noise(&text).map_err(serde::de::Error::custom)
    }
}

pub fn noise_to_text(noise: Option<Noise>) -> String {
    match noise {
        None => "none".into(),
        Some(Noise::Gaussian { sigma }) => format!("gaussian:{sigma}"),
        Some(Noise::Mask { fraction }) => format!("mask:{fraction}"),
        Some(Noise::SaltPepper { fraction }) => format!("salt-pepper:{fraction}"),
        Some(Noise::Square { size }) => format!("square:{size}"),
    }
}

/// `none`, `gaussian:σ`, `mask:ν` or `salt-pepper:p`.
pub fn parse_noise(text: &str) -> Result<Option<Noise>, String> {
    if text == "none" {
        return Ok(None);
    }
    let (kind, amount) = text.split_once(':').ok_or_else(|| {
        format!(
            "expected KIND:AMOUNT (gaussian:0.5, mask:0.25, salt-pepper:0.1, square:12) or none, got \
             {text:?}"
        )
    })?;
    if kind == "square" {
        let size: u32 = amount.parse().ok().filter(|&s| s >= 1).ok_or_else(|| {
            format!("square:S needs a side S of at least 1 pixel, got {amount:?}")
        })?;
        return Ok(Some(Noise::Square { size }));
    }
    let amount: f32 = amount
        .parse()
        .map_err(|_| format!("{amount:?} is not a number"))?;
    let noise = match kind {
        "gaussian" => Noise::Gaussian { sigma: amount },
        "mask" => Noise::Mask { fraction: amount },
        "salt-pepper" => Noise::SaltPepper { fraction: amount },
        other => {
            return Err(format!(
                "unknown noise {other:?}: use gaussian, mask, salt-pepper or square"
            ));
        }
    };
    check_noise(noise)?;
    Ok(Some(noise))
}

/// σ finite and ≥ 0; a fraction in [0, 1].
pub fn check_noise(noise: Noise) -> Result<(), String> {
    match noise {
        Noise::Gaussian { sigma } if !(sigma.is_finite() && sigma >= 0.0) => {
            Err(format!("gaussian:σ needs a finite σ ≥ 0, got {sigma}"))
        }
        Noise::Mask { fraction } | Noise::SaltPepper { fraction }
            if !(fraction.is_finite() && (0.0..=1.0).contains(&fraction)) =>
        {
            Err(format!("a fraction must lie in [0, 1], got {fraction}"))
        }
        _ => Ok(()),
    }
}

/// ρ strictly between 0 and 1, β finite and ≥ 0.
pub fn check_kl(k: KlSparsity) -> Result<(), String> {
    if !(k.rho > 0.0 && k.rho < 1.0) {
        return Err(format!(
            "the target activation ρ must lie strictly between 0 and 1, got {}",
            k.rho
        ));
    }
    if !(k.beta.is_finite() && k.beta >= 0.0) {
        return Err(format!(
            "the weight β must be a finite number ≥ 0, got {}",
            k.beta
        ));
    }
    Ok(())
}

/// Both weights finite and ≥ 0, not both 0.
pub fn check_emphasis(e: Emphasis) -> Result<(), String> {
    let ok = |w: f32| w.is_finite() && w >= 0.0;
    if !(ok(e.corrupted) && ok(e.clean)) {
        return Err(format!(
            "both weights must be finite numbers ≥ 0, got {}:{}",
            e.corrupted, e.clean
        ));
    }
    if e.corrupted == 0.0 && e.clean == 0.0 {
        return Err("at least one weight must be greater than 0 (0:0 weighs nothing)".into());
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("configuration {key:?}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

/// A configuration value outside its domain, named by the flag that sets it (`--lr` for `lr`).
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("{flag} {problem}")]
pub struct InvalidValue {
    pub flag: String,
    pub problem: String,
}

/// The command-line flag that sets configuration key `key`.
fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub fn flag_of(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

impl RunConfig {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a configuration serialises")
    }

    /// The configuration stored as `value`; keys it lacks take their defaults. An error names the key
    /// whose value does not fit.
    pub fn from_json(value: &Value) -> Result<RunConfig, ConfigError> {
        serde_json::from_value(value.clone()).map_err(|e| {
            // serde names the problem, not the key: find the key whose value alone fails.
            let key = value
                .as_object()
                .and_then(|map| {
                    map.iter().find_map(|(k, v)| {
                        let single = serde_json::json!({ k.as_str(): v });
                        serde_json::from_value::<RunConfig>(single)
                            .is_err()
                            .then(|| k.clone())
                    })
                })
                .unwrap_or_else(|| "(the whole configuration)".into());
            ConfigError {
                key,
                problem: e.to_string(),
            }
        })
    }

    /// Every number checked against its domain; the first one outside names its flag and the accepted
    /// range. The flags' parsers check the same ranges, so this catches what a damaged checkpoint or a
    /// library caller brings.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        let bad = |key: &str, problem: String| {
            Err(InvalidValue {
                flag: flag_of(key),
                problem,
            })
        };
        let positive = |key: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                bad(
                    key,
                    format!("must be a finite number greater than 0, got {v}"),
                )
            }
        };
        let non_negative = |key: &str, v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                bad(key, format!("must be a finite number ≥ 0, got {v}"))
            }
        };
        positive("lr", self.lr)?;
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad(
                "momentum",
                format!("must lie in [0, 1), got {}", self.momentum),
            );
        }
        non_negative("weight_decay", self.weight_decay)?;
        match self.lr_schedule {
            ScheduleArg::Step { every: 0, .. } | ScheduleArg::Cosine { epochs: 0 } => {
                return bad("lr_schedule", "counts epochs ≥ 1, got 0".into());
            }
            ScheduleArg::Step { gamma, .. }
                if !(gamma.is_finite() && gamma > 0.0 && gamma <= 1.0) =>
            {
                return bad("lr_schedule", format!("γ must lie in (0, 1], got {gamma}"));
            }
            _ => {}
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1, got 0".into());
        }
        if self.latent == 0 {
            let key = match self.variant {
                Variant::HashAe => "bits",
                _ => "latent",
            };
            return bad(key, "must be at least 1, got 0".into());
        }
        if self.variant == Variant::HashAe && self.code_activation != Some(ActArg::Tanh) {
            return bad(
                "code_activation",
                format!(
                    "of hash-ae is tanh (its signs are the bits), got {}",
                    self.code_activation.map_or("none", |a| Act::from(a).name())
                ),
            );
        }
        if self.hidden.contains(&0) {
            return bad(
                "hidden",
                format!("widths must be at least 1, got {:?}", self.hidden),
            );
        }
        if self.channels.is_empty() || self.channels.contains(&0) {
            return bad(
                "channels",
                format!("needs one or more positive counts, got {:?}", self.channels),
            );
        }
        if self.limit == Some(0) {
            return bad("limit", "must be at least 1, got 0".into());
        }
        if let Some(noise) = self.noise {
            check_noise(noise).or_else(|problem| bad("noise", problem))?;
        }
        if let Some(l1) = self.l1 {
            non_negative("l1", l1)?;
        }
        if let Some(k) = self.kl_sparsity {
            check_kl(k).or_else(|problem| bad("kl_sparsity", problem))?;
        }
        if let Some(c) = self.contractive {
            non_negative("contractive", c)?;
        }
        if let Some(e) = self.emphasis {
            check_emphasis(e).or_else(|problem| bad("emphasis", problem))?;
        }
        non_negative("beta", self.beta)?;
        if self.pretrain != PretrainArg::None && self.pretrain_epochs == 0 {
            return bad("pretrain_epochs", "must be at least 1, got 0".into());
        }
        for (key, weight) in [
            ("binarize", self.binarize),
            ("bit_balance", self.bit_balance),
            ("decorrelate", self.decorrelate),
        ] {
            if let Some(w) = weight {
                non_negative(key, w)?;
            }
        }
        Ok(())
    }

    /// The pretraining phases this configuration asks for: the Science paper's schedule (batch 100; RBMs
    /// by momentum SGD, lr 0.1 and 0.001 for the top, momentum 0.9, weight decay 2e-4).
    pub fn pretraining(&self) -> Option<Pretraining> {
        let kind = match self.pretrain {
            PretrainArg::None => return None,
            PretrainArg::Rbm => PretrainKind::Rbm(RbmSchedule::default()),
            PretrainArg::Greedy => PretrainKind::Greedy,
        };
        Some(Pretraining {
            kind,
            epochs: self.pretrain_epochs,
            batch: PRETRAIN_BATCH,
        })
    }

    /// One line for the start of a run: what is trained and how.
    pub fn describe_training(&self) -> String {
        let optimizer = match self.optimizer {
            OptimizerArg::Adam => format!("adam, lr {}", self.lr),
            OptimizerArg::AdamW => format!("adamw, lr {}", self.lr),
            OptimizerArg::Rmsprop => format!("rmsprop, lr {}", self.lr),
            OptimizerArg::Adagrad => format!("adagrad, lr {}", self.lr),
            OptimizerArg::Sgd => format!("sgd, lr {}, momentum {}", self.lr, self.momentum),
        };
        let decay = if self.weight_decay > 0.0 {
            format!(", weight decay {}", self.weight_decay)
        } else {
            String::new()
        };
        let schedule = match (self.lr_schedule, self.lr_warmup) {
            (ScheduleArg::Constant, 0) => String::new(),
            (ScheduleArg::Constant, w) => format!(", warmed up over {w} epoch{}", plural(w)),
            (s, 0) => format!(", schedule {s}"),
            (s, w) => format!(", schedule {s} after {w} warm-up epoch{}", plural(w)),
        };
        let pretrain = match self.pretrain {
            PretrainArg::None => String::new(),
            PretrainArg::Rbm => format!(
                "; after RBM pretraining, {} epochs per layer",
                self.pretrain_epochs
            ),
            PretrainArg::Greedy => format!(
                "; after greedy layer-wise pretraining, {} epochs per layer",
                self.pretrain_epochs
            ),
        };
        let precision = match self.precision {
            PrecisionArg::F32 => "",
            PrecisionArg::Mixed => "; mixed precision (f16 activations, loss scaling)",
        };
        format!(
            "{optimizer}{decay}{schedule}; batch {}; noise {}; seed {}{pretrain}{precision}",
            self.batch_size,
            noise_to_text(self.noise),
            self.seed
        )
    }

    /// The objective: the reconstruction (emphasised when asked), then the penalties in a fixed order.
    pub fn objective(&self) -> Objective {
        let mut objective = Objective {
            terms: vec![Term::Reconstruction {
                loss: self.loss.into(),
                emphasis: self.emphasis,
                per_image: self.variant.is_variational(),
            }],
        };
        if self.variant.is_variational() {
            objective = objective.with(Term::GaussianKl {
                weight: self.beta,
                warmup_epochs: self.kl_warmup,
            });
        }
        if let Some(weight) = self.l1 {
            objective = objective.with(Term::L1 { weight });
        }
        if let Some(k) = self.kl_sparsity {
            objective = objective.with(Term::KlSparsity {
                rho: k.rho,
                weight: k.beta,
            });
        }
        if let Some(weight) = self.contractive {
            objective = objective.with(Term::Contractive { weight });
        }
        if let Some(weight) = self.binarize {
            objective = objective.with(Term::Binarize { weight });
        }
        if let Some(weight) = self.bit_balance {
            objective = objective.with(Term::BitBalance { weight });
        }
        if let Some(weight) = self.decorrelate {
            objective = objective.with(Term::Decorrelate { weight });
        }
        // The deep and the linear autoencoder report the squared error per image their literature quotes.
        if matches!(self.variant, Variant::DeepAe | Variant::LinearAe) {
            objective = objective.with(Term::SquaredError);
        }
        objective
    }

    pub fn optimizer(&self) -> Optimizer {
        match self.optimizer {
            OptimizerArg::Adam => Optimizer::Adam(AdamHyper {
                lr: self.lr,
                weight_decay: self.weight_decay,
                ..AdamHyper::default()
            }),
            OptimizerArg::Sgd => Optimizer::Sgd {
                lr: self.lr,
                momentum: self.momentum,
                weight_decay: self.weight_decay,
            },
            OptimizerArg::AdamW => Optimizer::Adam(AdamHyper {
                lr: self.lr,
                weight_decay: self.weight_decay,
                decoupled: true,
                ..AdamHyper::default()
            }),
            OptimizerArg::Rmsprop => Optimizer::Rmsprop(RmspropHyper {
                lr: self.lr,
                weight_decay: self.weight_decay,
                ..RmspropHyper::default()
            }),
            OptimizerArg::Adagrad => Optimizer::Adagrad(AdagradHyper {
                lr: self.lr,
                weight_decay: self.weight_decay,
                ..AdagradHyper::default()
            }),
        }
    }

    /// The data set: `data` (or the bundled MNIST), cut to `limit`.
    pub fn load_data(&self) -> anyhow::Result<Dataset> {
        let mut data = match &self.data {
            Some(dir) => mnist::load_dir(dir, false)?,
            None => mnist::load_bundled()?,
        };
        if let Some(limit) = self.limit {
            anyhow::ensure!(limit > 0, "--limit must be at least 1");
            data.train.truncate(limit);
            data.test.truncate(limit);
        }
        Ok(data)
    }

    /// The model for samples of shape `input`.
    pub fn build_model(&self, input: Shape) -> anyhow::Result<Model> {
        // Pixels lie in [0, 1], so reconstructions end in a sigmoid for both losses; the linear
        // autoencoder's stay linear, as PCA's do.
        let output_act = match self.variant {
            Variant::LinearAe => Act::Identity,
            _ => Act::Sigmoid,
        };
        let act = self.activation.into();
        let name = self.variant.name();
        let model = if self.variant.is_conv() {
            let cfg = ConvConfig {
                channels: self.channels.clone(),
                deck: match self.deck {
                    DeckArg::Strided => Deck::Strided,
                    DeckArg::Pool => Deck::Pool,
                },
                act,
                output_act,
            };
            match self.variant.is_variational() {
                true => conv_vae(name, input, &cfg, self.latent)?,
                false => conv_ae(name, input, &cfg)?,
            }
        } else {
            let cfg = DenseConfig {
                hidden: self.hidden.clone(),
                latent: self.latent,
                act,
                code_act: self.code_activation.map_or(act, Act::from),
                output_act,
            };
            let mut model = match self.variant.is_variational() {
                true => dense_vae(input, &cfg)?,
                false => dense_ae(input, &cfg)?,
            };
            model.name = name.into();
            model
        };
        Ok(model)
    }

    pub fn plan_config(&self, data: &Dataset) -> PlanConfig {
        PlanConfig {
            batch: self.batch_size,
            objective: self.objective(),
            optimizer: self.optimizer(),
            train_samples: data.train.len(),
            test_samples: data.test.len(),
            noise: self.noise,
            seed: self.seed,
            lr_schedule: self.lr_schedule_steps(data.train.len()),
            precision: self.precision.into(),
        }
    }

    /// The schedule in optimizer steps for `train_samples` training images; `None` for a constant rate.
    pub fn lr_schedule_steps(&self, train_samples: usize) -> Option<LrSchedule> {
        let steps = train_samples.div_ceil(self.batch_size.max(1));
        let decay = match self.lr_schedule {
            ScheduleArg::Constant if self.lr_warmup == 0 => return None,
            ScheduleArg::Constant => Decay::Constant,
            ScheduleArg::Step { every, gamma } => Decay::Step {
                every: every * steps,
                gamma,
            },
            ScheduleArg::Cosine { epochs } => Decay::Cosine {
                total: (self.lr_warmup + epochs) * steps,
            },
        };
        Some(LrSchedule {
            warmup: self.lr_warmup * steps,
            decay,
        })
    }

    /// The model and its compiled plan on `data`.
    pub fn build(&self, data: &Dataset) -> anyhow::Result<(Model, Plan)> {
        self.validate()?;
        let img = &data.train.images;
        let model = self.build_model(Shape {
            c: 1,
            h: img.rows,
            w: img.cols,
        })?;
        let plan = compile_with(&model, &self.plan_config(data), self.pretraining().as_ref())?;
        Ok((model, plan))
    }

    /// One line for the start of a run: the objective's terms with their weights.
    pub fn describe_objective(&self) -> String {
        let mut parts = vec![match self.loss {
            LossArg::Bce => "bce".to_string(),
            LossArg::Mse => "mse".to_string(),
            LossArg::L1 => "l1".to_string(),
        }];
        if let Some(e) = self.emphasis {
            parts[0] = format!("{} emphasised {}:{}", parts[0], e.corrupted, e.clean);
        }
        if self.variant.is_variational() {
            parts[0] = format!("{} summed over pixels", parts[0]);
            let warmup = match self.kl_warmup {
                0 => String::new(),
                1 => " (warmed up from 0 over the first epoch)".into(),
                n => format!(" (warmed up from 0 over the first {n} epochs)"),
            };
            parts.push(format!(
                "{} · KL(q(z|x) ‖ N(0, I)) summed over the latent{warmup}; per image",
                self.beta
            ));
        }
        if let Some(l) = self.l1 {
            parts.push(format!("{l} · l1(code)"));
        }
        if let Some(k) = self.kl_sparsity {
            parts.push(format!("{} · kl(ρ = {} ‖ ρ̂)", k.beta, k.rho));
        }
        if let Some(c) = self.contractive {
            parts.push(format!("{c} · ‖J‖²"));
        }
        if let Some(w) = self.binarize {
            parts.push(format!("{w} · Σⱼ ||bⱼ| − 1|"));
        }
        if let Some(w) = self.bit_balance {
            parts.push(format!("{w} · Σⱼ mean(bⱼ)²"));
        }
        if let Some(w) = self.decorrelate {
            parts.push(format!("{w} · Σⱼ≠ₖ Cov(b)ⱼₖ²"));
        }
        parts.join(" + ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_configuration_survives_the_round_trip() {
        let config = RunConfig {
            variant: Variant::ConvDae,
            channels: vec![8, 16],
            deck: DeckArg::Pool,
            noise: Some(Noise::Mask { fraction: 0.25 }),
            emphasis: Some(Emphasis {
                corrupted: 1.0,
                clean: 0.1,
            }),
            l1: Some(1e-3),
            optimizer: OptimizerArg::Sgd,
            lr: 0.05,
            seed: 9,
            limit: Some(500),
            batch_size: 32,
            ..RunConfig::default()
        };
        let back = RunConfig::from_json(&config.to_json()).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn the_previous_versions_configuration_loads_with_the_old_meaning() {
        // What a checkpoint of the version before objective terms stores.
        let old = json!({
            "variant": "conv-dae", "hidden": [256], "latent": 64, "activation": "leaky-relu",
            "channels": [32, 64], "deck": "strided", "loss": "bce", "noise": "gaussian:0.5",
            "batch_size": 128, "optimizer": "adam", "lr": 0.0010000000474974513, "momentum": 0.8999999761581421,
            "weight_decay": 0.0, "seed": 3, "limit": null, "data": null
        });
        let config = RunConfig::from_json(&old).unwrap();
        assert_eq!(config.variant, Variant::ConvDae);
        assert_eq!(config.activation, ActArg::LeakyRelu);
        assert_eq!(config.noise, Some(Noise::Gaussian { sigma: 0.5 }));
        assert_eq!(config.lr, 1e-3);
        assert_eq!(config.momentum, 0.9);
        assert_eq!(config.seed, 3);
        assert_eq!(
            config.objective(),
            Objective::reconstruction(LossKind::BceWithLogits)
        );
    }

    #[test]
    fn hash_ae_defaults_round_trip_and_refuse_what_does_not_fit() {
        let config = Variant::HashAe.defaults();
        assert_eq!((config.hidden.clone(), config.latent), (vec![256], 32));
        assert_eq!(config.code_activation, Some(ActArg::Tanh));
        assert_eq!(
            (config.binarize, config.bit_balance, config.decorrelate),
            (Some(1e-4), Some(3.2e-3), Some(1e-4))
        );
        config.validate().unwrap();
        let changed = RunConfig {
            latent: 48,
            bit_balance: Some(0.0),
            decorrelate: None,
            ..config.clone()
        };
        let back = RunConfig::from_json(&changed.to_json()).unwrap();
        assert_eq!(back, changed);
        assert_eq!(
            back.objective().terms[1..],
            [
                Term::Binarize { weight: 1e-4 },
                Term::BitBalance { weight: 0.0 }
            ]
        );
        let described = config.describe_objective();
        for part in [
            "0.0001 · Σⱼ ||bⱼ| − 1|",
            "0.0032 · Σⱼ mean(bⱼ)²",
            "0.0001 · Σⱼ≠ₖ Cov(b)ⱼₖ²",
        ] {
            assert!(described.contains(part), "{described}");
        }
        // A configuration stored before the hashing terms existed has none of them.
        let mut old = RunConfig::default().to_json();
        for key in ["binarize", "bit_balance", "decorrelate"] {
            old.as_object_mut().unwrap().remove(key);
        }
        let loaded = RunConfig::from_json(&old).unwrap();
        assert_eq!(
            (loaded.binarize, loaded.bit_balance, loaded.decorrelate),
            (None, None, None)
        );
        // Values outside their domain name the flag that sets them.
        let refused = |c: RunConfig| c.validate().unwrap_err().to_string();
        let err = refused(RunConfig {
            bit_balance: Some(-1.0),
            ..config.clone()
        });
        assert!(err.starts_with("--bit-balance must be"), "{err}");
        let err = refused(RunConfig {
            latent: 0,
            ..config.clone()
        });
        assert!(err.starts_with("--bits must be at least 1"), "{err}");
        let err = refused(RunConfig {
            code_activation: Some(ActArg::Relu),
            ..config
        });
        assert!(err.contains("tanh") && err.contains("relu"), "{err}");
    }

    #[test]
    fn a_damaged_configuration_names_the_key() {
        let mut config = RunConfig::default().to_json();
        config["deck"] = json!("spiral");
        let err = RunConfig::from_json(&config).unwrap_err().to_string();
        assert!(err.contains("deck") && err.contains("spiral"), "{err}");
        let mut config = RunConfig::default().to_json();
        config["noise"] = json!("fog:1");
        let err = RunConfig::from_json(&config).unwrap_err().to_string();
        assert!(err.contains("noise") && err.contains("fog"), "{err}");
    }

    #[test]
    fn each_variant_names_its_model_and_objective() {
        let input = Shape { c: 1, h: 28, w: 28 };
        let sparse = Variant::SparseAe.defaults();
        let model = sparse.build_model(input).unwrap();
        assert_eq!(model.name, "sparse-ae");
        let widths: Vec<usize> = model.shapes.iter().map(Shape::numel).collect();
        assert_eq!(widths, vec![784, 1000, 784]);
        assert_eq!(model.code, Some(0));
        assert_eq!(
            sparse.objective().terms[1],
            Term::KlSparsity {
                rho: 0.05,
                weight: 0.01
            }
        );
        let cae = Variant::Cae.defaults();
        let widths: Vec<usize> = cae
            .build_model(input)
            .unwrap()
            .shapes
            .iter()
            .map(Shape::numel)
            .collect();
        assert_eq!(widths, vec![784, 256, 784]);
        assert_eq!(cae.objective().terms[1], Term::Contractive { weight: 1e-3 });
    }
}
