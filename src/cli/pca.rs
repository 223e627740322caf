//! `gpu-ae pca`: principal component analysis of the training set, the test squared error per image of
//! its rank-k reconstructions, and with `--checkpoint` a linear autoencoder measured against it: its own
//! test error and the principal angles between its decoder's columns and the top-k principal subspace.
//! With `--checkpoint` the figures join the checkpoint's run report.

use std::time::Instant;

use anyhow::Context;

use super::PcaArgs;
use super::eval::test_summary;
use super::report::add_to_report;
use super::train::{checkpoint_file, data_line, with_executor};
use crate::apps::{linalg, pca};
use crate::checkpoint;
use crate::data::mnist;
use crate::run::RunConfig;
use crate::run::config::Variant;

pub fn run(args: &PcaArgs) -> anyhow::Result<()> {
    // The checkpoint first: it names its code width and its data set, and a bad one fails before the work.
    let model = match &args.checkpoint {
        Some(path) => {
            let path = checkpoint_file(path, "--checkpoint")?;
            let ckpt = checkpoint::load(&path)?;
            let mut config = RunConfig::from_json(&ckpt.config)
                .with_context(|| format!("{}", path.display()))?;
            anyhow::ensure!(
                config.variant == Variant::LinearAe,
                "--checkpoint {}: a {} model; principal angles compare a linear autoencoder's decoder \
                 with the principal subspace (train one with --variant linear-ae)",
                path.display(),
                config.variant.name()
            );
            anyhow::ensure!(
                config.hidden.is_empty(),
                "--checkpoint {}: a linear-ae with hidden layers {:?}; principal angles read the one \
                 decoder layer of a 784-k-784 model (train it with --hidden none, the default)",
                path.display(),
                config.hidden
            );
            if args.data.is_some() {
                config.data = args.data.clone();
            }
            if let Some(limit) = config.limit.take() {
                println!(
                    "the checkpoint trained on the first {limit} images (--limit); PCA and its error use the \
                     whole data set"
                );
            }
            Some((path, ckpt, config))
        }
        None => None,
    };
    let mut widths = args.latent.clone().map(|w| w.0).unwrap_or_default();
    if let Some((_, _, config)) = &model
        && !widths.contains(&config.latent)
    {
        widths.push(config.latent);
    }
    if widths.is_empty() {
        widths.push(30);
    }
    let data = match (&args.data, &model) {
        (Some(dir), _) => mnist::load_dir(dir, false)?,
        (None, Some((_, _, config))) => config.load_data()?,
        (None, None) => mnist::load_bundled()?,
    };
    let img = &data.train.images;
    let features = img.rows * img.cols;
    if let Some(&k) = widths.iter().find(|&&k| k > features) {
        anyhow::bail!("--latent {k} exceeds the {features} pixels of an image");
    }
    println!("{}", data_line(&data));
    let start = Instant::now();
    let fitted = with_executor(args.backend, pca::scatter_plan(features), |ex| {
        let backend = ex.describe();
        let fitted = pca::fit(ex, &img.pixels, features);
        Ok((fitted, backend))
    })?;
    let (fitted, backend) = fitted;
    println!(
        "PCA of the training set: scatter on {backend}, eigendecomposition on the host, {:.1} s",
        start.elapsed().as_secs_f64()
    );
    println!(
        "{:>5}  {:>28}  {:>16}",
        "k", "test squared error per image", "variance kept"
    );
    widths.sort_unstable();
    let mut figures = Vec::new();
    for &k in &widths {
        let error = fitted.reconstruction_error(&data.test.images.pixels, k);
        println!("{k:>5}  {error:>28.4}  {:>15.2}%", 100.0 * fitted.kept(k));
        figures.push((
            format!("PCA-{k}: test squared error per image, variance kept"),
            format!("{error:.4}, {:.2}%", 100.0 * fitted.kept(k)),
        ));
    }
    let Some((path, ckpt, config)) = model else {
        return Ok(());
    };
    let k = config.latent;
    let (summary, names) = test_summary(
        &ckpt,
        &config,
        &data,
        &super::CheckpointArgs {
            checkpoint: path.clone(),
            data: args.data.clone(),
            backend: args.backend,
        },
    )?;
    let sq_err = names
        .iter()
        .find(|(_, n)| n == "sq_err")
        .map(|&(i, _)| summary.values[i])
        .context("the linear autoencoder's plan reports no sq_err")?;
    // The decoder Linear(k → features) stores its weight [features × k]: its columns span the
    // reconstructions (the bias shifts them, as the mean does PCA's).
    let decoder = ckpt
        .tensors
        .iter()
        .rfind(|(name, shape, _)| name.ends_with(".weight") && *shape == [features, k])
        .map(|(_, _, values)| values.iter().map(|&v| v as f64).collect::<Vec<f64>>())
        .context("the checkpoint holds no decoder weight of the code's width")?;
    let angles = linalg::principal_angles(&decoder, &fitted.top(k), features, k);
    let degrees: Vec<f64> = angles.iter().map(|a| a.to_degrees()).collect();
    let mean = degrees.iter().sum::<f64>() / degrees.len() as f64;
    println!(
        "linear autoencoder {} (k = {k}, epoch {}): test squared error per image {sq_err:.4} (PCA {:.4})",
        path.display(),
        ckpt.state.position.epoch,
        fitted.reconstruction_error(&data.test.images.pixels, k)
    );
    println!(
        "principal angles between its decoder's columns and the top-{k} principal subspace, degrees: \
         largest {:.2}, mean {mean:.2}, smallest {:.3}",
        degrees.last().copied().unwrap_or(0.0),
        degrees.first().copied().unwrap_or(0.0)
    );
    println!(
        "  all: {}",
        degrees
            .iter()
            .map(|d| format!("{d:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    figures.push((
        format!("linear autoencoder (k = {k}): test squared error per image"),
        format!("{sq_err:.4}"),
    ));
    figures.push((
        format!(
            "principal angles to the top-{k} principal subspace, degrees: largest, mean, smallest"
        ),
        format!(
            "{:.2}, {mean:.2}, {:.3}",
            degrees.last().copied().unwrap_or(0.0),
            degrees.first().copied().unwrap_or(0.0)
        ),
    ));
    add_to_report(&path, "pca", &figures, &[])
}
