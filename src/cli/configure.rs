//! Flags → run configuration, in one place: the variant's defaults, then each flag that was given; every
//! number checked for its domain ([`RunConfig::validate`]), every flag checked to apply to the variant, and
//! with `--resume`, every flag checked against the configuration the checkpoint holds. No flag is ever
//! dropped without a word: one that does not apply is an error.

use anyhow::bail;

use super::{Choice, NoiseChoice, ScheduleFlag, TrainArgs};
use crate::run::RunConfig;
use crate::run::config::{OptimizerArg, PretrainArg, ScheduleArg, Variant};

/// Which configurations a flag means something for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Any,
    /// The variants listed.
    Variants(&'static [Variant]),
    /// `--optimizer sgd`.
    Sgd,
}

/// The dense deterministic variants.
const DENSE: &[Variant] = &[
    Variant::Ae,
    Variant::SparseAe,
    Variant::Cae,
    Variant::DeepAe,
    Variant::LinearAe,
];
/// Every variant with `--hidden` layers.
const HIDDEN: &[Variant] = &[
    Variant::Ae,
    Variant::SparseAe,
    Variant::Cae,
    Variant::Vae,
    Variant::DeepAe,
    Variant::LinearAe,
    Variant::HashAe,
];
/// Every variant whose code width `--latent` sets.
const LATENT: &[Variant] = &[
    Variant::Ae,
    Variant::SparseAe,
    Variant::Cae,
    Variant::Vae,
    Variant::ConvVae,
    Variant::DeepAe,
    Variant::LinearAe,
];
const CONV: &[Variant] = &[Variant::ConvAe, Variant::ConvDae, Variant::ConvVae];
/// The deterministic convolutional variants (a variational decoder cannot unpool).
const DECK: &[Variant] = &[Variant::ConvAe, Variant::ConvDae];
/// Every variant whose code `--l1` and `--kl-sparsity` can act on (hash-ae's code has terms of its own).
const DETERMINISTIC: &[Variant] = &[
    Variant::Ae,
    Variant::ConvAe,
    Variant::ConvDae,
    Variant::SparseAe,
    Variant::Cae,
    Variant::DeepAe,
    Variant::LinearAe,
];
const VARIATIONAL: &[Variant] = &[Variant::Vae, Variant::ConvVae];
const HASH: &[Variant] = &[Variant::HashAe];

/// A configuration flag the user gave: its name, where it applies, and what it sets.
struct Given<'a> {
    flag: &'static str,
    scope: Scope,
    set: Box<dyn Fn(&mut RunConfig) + 'a>,
}

/// The flags that may differ from the checkpoint on `--resume` (listed in `--help`).
pub const FREE_ON_RESUME: &str = "--epochs, --patience, --backend, --out, --data, --save-every, \
                                  --steps-per-submit, --quiet, --detect-anomaly and --profile";

impl TrainArgs {
    /// Every configuration flag given, in the order of `--help` (`--variant` and `--data` apart).
    fn given(&self) -> Vec<Given<'_>> {
        let mut given: Vec<Given<'_>> = Vec::new();
        let mut add = |flag, scope, set| given.push(Given { flag, scope, set });
        use Scope::{Any, Sgd, Variants};
        if let Some(v) = self.batch_size {
            add("--batch-size", Any, Box::new(move |c| c.batch_size = v));
        }
        if let Some(v) = self.lr {
            add("--lr", Any, Box::new(move |c| c.lr = v));
        }
        if let Some(v) = self.optimizer {
            add("--optimizer", Any, Box::new(move |c| c.optimizer = v));
        }
        if let Some(v) = self.momentum {
            add("--momentum", Sgd, Box::new(move |c| c.momentum = v));
        }
        if let Some(v) = self.weight_decay {
            add("--weight-decay", Any, Box::new(move |c| c.weight_decay = v));
        }
        if let Some(v) = self.lr_schedule {
            let schedule = match v {
                ScheduleFlag::Given(s) => s,
                ScheduleFlag::CosineOverRun => ScheduleArg::Cosine {
                    epochs: self
                        .epochs
                        .saturating_sub(self.lr_warmup.unwrap_or(0))
                        .max(1),
                },
            };
            add(
                "--lr-schedule",
                Any,
                Box::new(move |c| c.lr_schedule = schedule),
            );
        }
        if let Some(v) = self.lr_warmup {
            add("--lr-warmup", Any, Box::new(move |c| c.lr_warmup = v));
        }
        if let Some(v) = self.loss {
            add("--loss", Any, Box::new(move |c| c.loss = v));
        }
        if let Some(v) = self.precision {
            add("--precision", Any, Box::new(move |c| c.precision = v));
        }
        if let Some(v) = &self.hidden {
            add(
                "--hidden",
                Variants(HIDDEN),
                Box::new(move |c| c.hidden = v.0.clone()),
            );
        }
        if let Some(v) = &self.channels {
            add(
                "--channels",
                Variants(CONV),
                Box::new(move |c| c.channels = v.0.clone()),
            );
        }
        if let Some(v) = self.deck {
            add("--deck", Variants(DECK), Box::new(move |c| c.deck = v));
        }
        if let Some(NoiseChoice(v)) = self.noise {
            add("--noise", Any, Box::new(move |c| c.noise = v));
        }
        if let Some(v) = self.latent {
            add(
                "--latent",
                Variants(LATENT),
                Box::new(move |c| c.latent = v),
            );
        }
        if let Some(v) = self.activation {
            add("--activation", Any, Box::new(move |c| c.activation = v));
        }
        if let Some(v) = self.code_activation {
            add(
                "--code-activation",
                Variants(DENSE),
                Box::new(move |c| c.code_activation = Some(v)),
            );
        }
        if let Some(Choice(v)) = self.l1 {
            add("--l1", Variants(DETERMINISTIC), Box::new(move |c| c.l1 = v));
        }
        if let Some(Choice(v)) = self.kl_sparsity {
            add(
                "--kl-sparsity",
                Variants(DETERMINISTIC),
                Box::new(move |c| c.kl_sparsity = v),
            );
        }
        if let Some(Choice(v)) = self.contractive {
            add(
                "--contractive",
                Variants(DENSE),
                Box::new(move |c| c.contractive = v),
            );
        }
        if let Some(v) = self.emphasis {
            add("--emphasis", Any, Box::new(move |c| c.emphasis = Some(v)));
        }
        if let Some(v) = self.beta {
            add(
                "--beta",
                Variants(VARIATIONAL),
                Box::new(move |c| c.beta = v),
            );
        }
        if let Some(v) = self.kl_warmup {
            add(
                "--kl-warmup",
                Variants(VARIATIONAL),
                Box::new(move |c| c.kl_warmup = v),
            );
        }
        if let Some(v) = self.pretrain {
            add(
                "--pretrain",
                Variants(DENSE),
                Box::new(move |c| c.pretrain = v),
            );
        }
        if let Some(v) = self.pretrain_epochs {
            add(
                "--pretrain-epochs",
                Variants(DENSE),
                Box::new(move |c| c.pretrain_epochs = v),
            );
        }
        if let Some(v) = self.bits {
            add("--bits", Variants(HASH), Box::new(move |c| c.latent = v));
        }
        if let Some(Choice(v)) = self.binarize {
            add(
                "--binarize",
                Variants(HASH),
                Box::new(move |c| c.binarize = v),
            );
        }
        if let Some(Choice(v)) = self.bit_balance {
            add(
                "--bit-balance",
                Variants(HASH),
                Box::new(move |c| c.bit_balance = v),
            );
        }
        if let Some(Choice(v)) = self.decorrelate {
            add(
                "--decorrelate",
                Variants(HASH),
                Box::new(move |c| c.decorrelate = v),
            );
        }
        if let Some(v) = self.seed {
            add("--seed", Any, Box::new(move |c| c.seed = v));
        }
        if let Some(v) = self.limit {
            add("--limit", Any, Box::new(move |c| c.limit = Some(v)));
        }
        given
    }

    /// The configuration of a new run: `--variant`'s defaults, then every flag given. A value outside its
    /// domain, or a flag that does not apply to the variant (or to the optimizer), is an error.
    pub fn config(&self) -> anyhow::Result<RunConfig> {
        let mut config = self.variant.unwrap_or_default().defaults();
        let given = self.given();
        for g in &given {
            (g.set)(&mut config);
        }
        // torch.optim's defaults for the chosen optimizer, where the flag was not given.
        if self.lr.is_none() {
            config.lr = config.optimizer.default_lr();
        }
        if self.weight_decay.is_none() {
            config.weight_decay = config.optimizer.default_weight_decay();
        }
        if let Some(data) = &self.data {
            config.data = Some(data.clone());
        }
        for g in &given {
            check_scope(g, &config)?;
        }
        if self.pretrain_epochs.is_some() && config.pretrain == PretrainArg::None {
            bail!(
                "--pretrain-epochs sets the epochs of each pretraining phase, and this run does not \
                 pretrain; add --pretrain rbm or --pretrain greedy, or leave --pretrain-epochs out"
            );
        }
        config.validate()?;
        Ok(config)
    }

    /// With `--resume`: the flags given must agree with the configuration the checkpoint holds, which the
    /// resumed run keeps (`--data` excepted: the files may have moved). The error names the checkpoint's
    /// value.
    pub fn check_resume(&self, stored: &RunConfig) -> anyhow::Result<()> {
        if let Some(v) = self.variant
            && v != stored.variant
        {
            bail!(
                "--variant {} differs from the checkpoint, which holds a {} model; {}",
                v.name(),
                stored.variant.name(),
                resume_advice("--variant")
            );
        }
        let held = effective(stored);
        for g in self.given() {
            check_scope(&g, stored)?;
            let mut asked = stored.clone();
            (g.set)(&mut asked);
            let asked = effective(&asked);
            if asked != held {
                let (key, theirs, ours) = first_difference(&held, &asked);
                bail!(
                    "{} asks for {key} = {ours}, but the checkpoint holds {key} = {theirs}; {}",
                    g.flag,
                    resume_advice(g.flag)
                );
            }
        }
        Ok(())
    }
}

/// `config` with every default spelled out, so that two ways of saying the same thing compare equal
/// (`--code-activation relu` on a model whose code takes `--activation relu`).
fn effective(config: &RunConfig) -> RunConfig {
    RunConfig {
        code_activation: Some(config.code_activation.unwrap_or(config.activation)),
        ..config.clone()
    }
}

fn resume_advice(flag: &str) -> String {
    format!(
        "a resumed run keeps the configuration it was trained with. Leave {flag} out to continue it, or \
         start a new run without --resume (may change on resume: {FREE_ON_RESUME})"
    )
}

/// A configuration value as a person would type it: JSON, with numbers that came from an f32 written as
/// that f32 (0.001, not 0.0010000000474974513).
fn show(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            let single = x as f32;
            if f64::from(single) == x {
                single.to_string()
            } else {
                x.to_string()
            }
        }
        serde_json::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(show).collect::<Vec<_>>().join(", ")
            )
        }
        other => other.to_string(),
    }
}

/// The first key whose value differs between two configurations, with both values as JSON.
fn first_difference(a: &RunConfig, b: &RunConfig) -> (String, String, String) {
    let (a, b) = (a.to_json(), b.to_json());
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return ("configuration".into(), a.to_string(), b.to_string());
    };
    a.iter()
        .find(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, v)| {
            let other = b.get(k).map_or_else(|| "null".into(), show);
            (k.clone(), show(v), other)
        })
        .unwrap_or_else(|| ("configuration".into(), String::new(), String::new()))
}

/// Whether `given` means something for `config`; the error names the variant, the flags that shape it
/// and the variants the flag is for.
fn check_scope(given: &Given<'_>, config: &RunConfig) -> anyhow::Result<()> {
    let variant = config.variant;
    match given.scope {
        Scope::Variants(list) if !list.contains(&variant) => {
            let names: Vec<&str> = list.iter().map(|v| v.name()).collect();
            bail!(
                "{} does not apply to --variant {}, {}; {} is for {}",
                given.flag,
                variant.name(),
                shaped_by(variant),
                given.flag,
                names.join(", ")
            )
        }
        Scope::Sgd if config.optimizer != OptimizerArg::Sgd => bail!(
            "{} applies to --optimizer sgd only (Adam keeps its own moment estimates); add --optimizer \
             sgd or leave {} out",
            given.flag,
            given.flag
        ),
        _ => Ok(()),
    }
}

/// What kind of model a variant is and which flags shape it, for messages.
fn shaped_by(variant: Variant) -> &'static str {
    match variant {
        Variant::Ae | Variant::SparseAe | Variant::Cae | Variant::DeepAe | Variant::LinearAe => {
            "a dense model: its shape is set by --hidden, --latent, --activation and --code-activation"
        }
        Variant::ConvAe | Variant::ConvDae => {
            "a convolutional model: its shape is set by --channels and --deck (and --activation)"
        }
        Variant::Vae => {
            "a variational model: its shape is set by --hidden, --latent and --activation, its KL term by \
             --beta and --kl-warmup"
        }
        Variant::ConvVae => {
            "a convolutional variational model: its shape is set by --channels, --latent and --activation, \
             its KL term by --beta and --kl-warmup"
        }
        Variant::HashAe => {
            "a hashing model: its shape is set by --hidden, --bits and --activation (the code is tanh), its \
             terms by --binarize, --bit-balance and --decorrelate"
        }
    }
}
