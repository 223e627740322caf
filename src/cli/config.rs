//! The run's configuration as JSON, stored in every checkpoint so `--resume`, `eval` and `reconstruct`
//! rebuild exactly the model and optimizer that were trained.

use anyhow::{Context, bail};
use clap::ValueEnum;
use serde_json::{Value, json};

use super::{Cli, Command, NoiseChoice, TrainArgs, parse_noise};
use crate::ops::Noise;

fn name<T: ValueEnum>(v: T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

fn noise_text(noise: Option<Noise>) -> String {
    match noise {
        None => "none".into(),
        Some(Noise::Gaussian { sigma }) => format!("gaussian:{sigma}"),
        Some(Noise::Mask { fraction }) => format!("mask:{fraction}"),
        Some(Noise::SaltPepper { fraction }) => format!("salt-pepper:{fraction}"),
    }
}

/// The settings that define what is trained and how (not where, nor for how long).
pub fn to_json(args: &TrainArgs) -> Value {
    json!({
        "variant": name(args.variant),
        "hidden": args.hidden,
        "latent": args.latent,
        "activation": name(args.activation),
        "channels": args.channels,
        "deck": name(args.deck),
        "loss": name(args.loss),
        "noise": noise_text(args.noise()),
        "batch_size": args.batch_size,
        "optimizer": name(args.optimizer),
        "lr": args.lr,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "limit": args.limit,
        "data": args.data.as_ref().map(|d| d.display().to_string()),
    })
}

/// Default training arguments, as `gpu-ae train` with no flags.
pub fn default_args() -> TrainArgs {
    use clap::Parser;
    match Cli::try_parse_from(["gpu-ae", "train"]).map(|cli| cli.command) {
        Ok(Command::Train(args)) => args,
        _ => unreachable!("`gpu-ae train` parses"),
    }
}

/// Replaces the model, optimizer and data settings of `args` with those recorded in `config`.
pub fn apply(args: &mut TrainArgs, config: &Value) -> anyhow::Result<()> {
    let field = |key: &str| {
        config
            .get(key)
            .with_context(|| format!("the checkpoint's configuration lacks {key:?}"))
    };
    let text = |key: &str| -> anyhow::Result<String> {
        field(key)?
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("configuration {key:?} is not text"))
    };
    let number = |key: &str| -> anyhow::Result<f64> {
        field(key)?
            .as_f64()
            .with_context(|| format!("configuration {key:?} is not a number"))
    };
    let count = |key: &str| -> anyhow::Result<usize> {
        field(key)?
            .as_u64()
            .map(|v| v as usize)
            .with_context(|| format!("configuration {key:?} is not a count"))
    };
    let list = |key: &str| -> anyhow::Result<Vec<usize>> {
        let items = field(key)?
            .as_array()
            .with_context(|| format!("configuration {key:?} is not a list"))?;
        items
            .iter()
            .map(|v| {
                v.as_u64()
                    .map(|v| v as usize)
                    .with_context(|| format!("configuration {key:?} holds a non-count"))
            })
            .collect()
    };
    fn choice<T: ValueEnum>(key: &str, value: &str) -> anyhow::Result<T> {
        T::from_str(value, false)
            .map_err(|_| anyhow::anyhow!("configuration {key:?} has an unknown value {value:?}"))
    }
    args.variant = choice("variant", &text("variant")?)?;
    args.hidden = list("hidden")?;
    args.latent = count("latent")?;
    args.activation = choice("activation", &text("activation")?)?;
    args.channels = list("channels")?;
    args.deck = choice("deck", &text("deck")?)?;
    args.loss = choice("loss", &text("loss")?)?;
    args.noise = Some(NoiseChoice(
        parse_noise(&text("noise")?).map_err(anyhow::Error::msg)?,
    ));
    args.batch_size = count("batch_size")?;
    args.optimizer = choice("optimizer", &text("optimizer")?)?;
    args.lr = number("lr")? as f32;
    args.momentum = number("momentum")? as f32;
    args.weight_decay = number("weight_decay")? as f32;
    args.seed = field("seed")?
        .as_u64()
        .context("configuration \"seed\" is not a count")?;
    args.limit = match field("limit")? {
        Value::Null => None,
        v => Some(
            v.as_u64()
                .context("configuration \"limit\" is not a count")? as usize,
        ),
    };
    if args.data.is_none() {
        args.data = match field("data")? {
            Value::Null => None,
            Value::String(d) => Some(d.into()),
            _ => bail!("configuration \"data\" is not a path"),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_survives_the_round_trip() {
        use clap::Parser;
        let Command::Train(args) = Cli::parse_from([
            "gpu-ae",
            "train",
            "--variant",
            "conv-dae",
            "--channels",
            "8,16",
            "--deck",
            "pool",
            "--noise",
            "mask:0.25",
            "--optimizer",
            "sgd",
            "--lr",
            "0.05",
            "--seed",
            "9",
            "--limit",
            "500",
            "--batch-size",
            "32",
        ])
        .command
        else {
            unreachable!()
        };
        let mut rebuilt = default_args();
        apply(&mut rebuilt, &to_json(&args)).unwrap();
        assert_eq!(to_json(&rebuilt), to_json(&args));
        assert_eq!(rebuilt.noise(), Some(Noise::Mask { fraction: 0.25 }));
    }

    #[test]
    fn a_damaged_configuration_is_a_clear_error() {
        let mut args = default_args();
        let mut config = to_json(&args);
        config["deck"] = json!("spiral");
        let err = apply(&mut args, &config).unwrap_err().to_string();
        assert!(err.contains("deck") && err.contains("spiral"), "{err}");
    }
}
