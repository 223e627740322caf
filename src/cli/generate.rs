//! `gpu-ae sample`, `interpolate` and `manifold`: what a checkpoint's decoder makes of codes, drawn as
//! labelled pictures. The model is rebuilt from the checkpoint's configuration and run on `--backend`;
//! the codes are made on the host ([`crate::apps::generate`]).

use anyhow::ensure;

use super::eval::{check_png_name, open, with_checkpoint};
use super::{CheckpointArgs, InterpolateArgs, ManifoldArgs, SampleArgs};
use crate::apps::generate::{
    codec_for, decode, encode_test, gaussian_quantiles, interpolation_pairs, line, prior_codes,
};
use crate::apps::pictures::{self, Digits};
use crate::backend::Executor;
use crate::data::mnist::Dataset;
use crate::plan::Codec;
use crate::report::png::{Figure, save_figure};
use crate::run::RunConfig;

/// Most digits `sample` draws; most rows, steps and grid side of the other two: pictures a screen shows.
const MAX_COUNT: usize = 1024;
const MAX_SIDE: usize = 64;

/// What the generating commands share: the checkpoint's configuration, the picture's title, the digits'
/// size, and the result of `work` on an executor holding the checkpoint's parameters.
struct Generated<T> {
    config: RunConfig,
    title: String,
    digits: Digits,
    result: T,
}

/// Opens the checkpoint, checks that its model can do `what` (a variational model when `variational`,
/// and whatever `check` asks of the configuration and the codec) before any device is set up, then runs
/// `work` with the codec and the data set.
fn generate<T>(
    a: &CheckpointArgs,
    what: &'static str,
    variational: bool,
    check: impl FnOnce(&RunConfig, &Codec) -> anyhow::Result<()>,
    work: impl FnOnce(&mut dyn Executor, &Codec, &Dataset) -> anyhow::Result<T>,
) -> anyhow::Result<Generated<T>> {
    let (ckpt, config, data) = open(a)?;
    let (_, plan) = config.build(&data)?;
    let codec = codec_for(&plan, what, config.variant.name(), variational)?;
    check(&config, &codec)?;
    let result = with_checkpoint(a.backend, plan, &data, &config, &ckpt, |trainer| {
        work(trainer.executor(), &codec, &data)
    })?;
    let img = &data.test.images;
    Ok(Generated {
        title: format!(
            "{}  epoch {}",
            config.variant.name(),
            ckpt.state.position.epoch
        ),
        config,
        digits: Digits {
            height: img.rows,
            width: img.cols,
        },
        result,
    })
}

fn write(out: &std::path::Path, figure: &Figure, what: &str) -> anyhow::Result<()> {
    save_figure(out, figure)?;
    println!("wrote {} ({what})", out.display());
    Ok(())
}

pub fn sample(a: &SampleArgs) -> anyhow::Result<()> {
    check_png_name(&a.out)?;
    ensure!(
        a.count <= MAX_COUNT,
        "--count {}: one picture holds at most {MAX_COUNT} digits",
        a.count
    );
    let g = generate(
        &a.checkpoint,
        "sample",
        true,
        |_, _| Ok(()),
        |ex, codec, _| {
            let codes = prior_codes(a.count, codec.width, a.temperature, a.seed);
            Ok(decode(ex, codec, &codes))
        },
    )?;
    let (what, figure) = pictures::samples(&g.result, &g.title, a.temperature, g.digits);
    write(&a.out, &figure, &what)
}

pub fn interpolate(a: &InterpolateArgs) -> anyhow::Result<()> {
    check_png_name(&a.out)?;
    ensure!(
        a.pairs <= MAX_SIDE,
        "--pairs {}: one picture holds at most {MAX_SIDE} rows",
        a.pairs
    );
    ensure!(
        (2..=MAX_SIDE).contains(&a.steps),
        "--steps {}: a line needs 2 to {MAX_SIDE} points (both ends included)",
        a.steps
    );
    let g = generate(
        &a.checkpoint,
        "interpolate",
        false,
        |_, _| Ok(()),
        |ex, codec, data| {
            let labels = &data.test.labels;
            let pairs = interpolation_pairs(labels, a.pairs);
            ensure!(
                !pairs.is_empty(),
                "the test set has no two digits with different labels to interpolate between"
            );
            let ends: Vec<usize> = pairs.iter().flat_map(|&(i, j)| [i, j]).collect();
            let codes = encode_test(ex, codec, &ends);
            let points: Vec<Vec<f32>> = codes
                .chunks(2)
                .flat_map(|ab| line(&ab[0], &ab[1], a.steps))
                .collect();
            let decoded = decode(ex, codec, &points);
            // Each row: the first digit, the line's decodings, the second digit.
            let rows: Vec<Vec<Vec<f32>>> = pairs
                .iter()
                .zip(decoded.chunks(a.steps))
                .map(|(&(i, j), line)| {
                    let mut row = vec![data.test.image(i)];
                    row.extend_from_slice(line);
                    row.push(data.test.image(j));
                    row
                })
                .collect();
            let labels: Vec<(u8, u8)> =
                pairs.iter().map(|&(i, j)| (labels[i], labels[j])).collect();
            Ok((rows, labels))
        },
    )?;
    let (rows, labels) = &g.result;
    let pairs = rows.len();
    let code = if g.config.variant.is_variational() {
        "code (mu)"
    } else {
        "code"
    };
    let (what, figure) = pictures::interpolation(rows, labels, a.steps, code, &g.title, g.digits);
    if pairs < a.pairs {
        println!(
            "the test set gives {pairs} pairs of digits with different labels, fewer than --pairs {}",
            a.pairs
        );
    }
    write(&a.out, &figure, &what)
}

pub fn manifold(a: &ManifoldArgs) -> anyhow::Result<()> {
    check_png_name(&a.out)?;
    ensure!(
        (2..=MAX_SIDE).contains(&a.grid),
        "--grid {}: the grid takes 2 to {MAX_SIDE} digits a side",
        a.grid
    );
    let quantiles = gaussian_quantiles(a.grid);
    let g = generate(
        &a.checkpoint,
        "manifold",
        true,
        |config, codec| {
            ensure!(
                codec.width == 2,
                crate::apps::generate::GenerateError::NotTwoDimensional {
                    variant: config.variant.name().into(),
                    width: codec.width,
                }
            );
            Ok(())
        },
        |ex, codec, _| {
            // Top row first: z2 descending; along a row z1 ascending.
            let codes: Vec<Vec<f32>> = quantiles
                .iter()
                .rev()
                .flat_map(|&z2| quantiles.iter().map(move |&z1| vec![z1, z2]))
                .collect();
            Ok(decode(ex, codec, &codes))
        },
    )?;
    let rows: Vec<Vec<Vec<f32>>> = g.result.chunks(a.grid).map(<[_]>::to_vec).collect();
    let (what, figure) = pictures::manifold(&rows, &quantiles, &g.title, g.digits);
    write(&a.out, &figure, &what)
}
