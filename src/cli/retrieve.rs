//! `gpu-ae retrieve`: the first N test images as queries against the training set by code distance
//! (relevant = same label), mean average precision and precision@k beside raw pixels and PCA of the
//! code's width computed in the same run, and `retrieval.png`: ten queries, each followed by its top ten.
//! The scores and the picture join the checkpoint's run report.

use anyhow::ensure;

use super::RetrieveArgs;
use super::encode::Codes;
use super::eval::{check_png_name, open};
use super::report::add_to_report;
use super::train::{checkpoint_file, with_executor};
use crate::apps::pca;
use crate::apps::retrieval::{RetrievalScores, distance_retrieval};
use crate::apps::retrieve::{
    hamming_distances, normalised, pixels, product_plan, squared_distances,
};
use crate::data::mnist::Dataset;
use crate::report::png::{Figure, FigureRow, save_figure};
use crate::run::config::Variant;

/// How codes are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Metric {
    /// Squared Euclidean distance.
    Euclidean,
    /// 1 − cosine similarity (the Euclidean distance of unit vectors ranks the same).
    Cosine,
    /// Hamming distance between the codes' signs (binary codes: hash-ae).
    Hamming,
}

/// Queries shown in retrieval.png, and the matches after each.
const SHOWN: usize = 10;

pub fn run(a: &RetrieveArgs) -> anyhow::Result<()> {
    let path = checkpoint_file(&a.checkpoint.checkpoint, "--checkpoint")?;
    let out = match &a.out {
        Some(out) => out.clone(),
        None => path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("retrieval.png"),
    };
    check_png_name(&out)?;
    let (ckpt, config, data) = open(&a.checkpoint)?;
    let queries = a.queries.min(data.test.len());
    let k = a.k.min(data.train.len());
    let metric = a.metric.unwrap_or(match config.variant {
        Variant::HashAe => Metric::Hamming,
        _ => Metric::Euclidean,
    });
    let codes = Codes::of(
        &a.checkpoint,
        &ckpt,
        &config,
        &data,
        data.train.len(),
        queries,
    )?;
    let width = codes.width;
    println!(
        "{} queries (the first test images) against {} training images, relevant = same label; {metric:?} \
         distance on {width}-value codes{}",
        queries,
        data.train.len(),
        if codes.variational { " (μ)" } else { "" }
    );
    let rank = |train: &[f32], test: &[f32], width: usize, metric: Metric| {
        rank(a, &data, train, test, width, metric, k)
    };
    let (code, tops) = rank(&codes.train, &codes.test, width, metric)?;
    // Baselines in the same run: the pixels themselves, and PCA of the code's width.
    let features = data.train.pixels_per_image();
    let raw_metric = if metric == Metric::Hamming {
        Metric::Euclidean
    } else {
        metric
    };
    let (raw, _) = rank(
        &pixels(&data.train.images.pixels),
        &pixels(&data.test.images.pixels[..queries * features]),
        features,
        raw_metric,
    )?;
    let pca_width = width.min(features);
    let fitted = with_executor(a.checkpoint.backend, pca::scatter_plan(features), |ex| {
        Ok(pca::fit(ex, &data.train.images.pixels, features))
    })?;
    let (baseline, _) = rank(
        &fitted.project(&data.train.images.pixels, pca_width),
        &fitted.project(&data.test.images.pixels[..queries * features], pca_width),
        pca_width,
        metric,
    )?;
    let sign = if metric == Metric::Hamming {
        "sign of "
    } else {
        ""
    };
    println!("{:<36} {:>8} {:>8}", "codes", "mAP", format!("P@{k}"));
    let mut figures = vec![
        (
            "queries".to_string(),
            format!(
                "the first {queries} test images against {} training images; relevant = same label",
                data.train.len()
            ),
        ),
        (
            "distance".into(),
            format!(
                "{metric:?} on {width}-value codes{}",
                if codes.variational { " (μ)" } else { "" }
            ),
        ),
    ];
    for (name, s) in [
        (format!("{} code ({metric:?})", config.variant.name()), code),
        (format!("raw pixels ({raw_metric:?})"), raw),
        (format!("{sign}PCA-{pca_width} ({metric:?})"), baseline),
    ] {
        println!(
            "{name:<36} {:>8.4} {:>8.4}",
            s.mean_average_precision, s.precision_at_k
        );
        figures.push((
            format!("{name}: mAP, P@{k}"),
            format!("{:.4}, {:.4}", s.mean_average_precision, s.precision_at_k),
        ));
    }
    let what = write_picture(&out, &data, &tops, &config, metric)?;
    add_to_report(&path, "retrieve", &figures, &[(out, what)])
}

/// Queries ranked at once: their distances to the whole training set are held in memory (1000 × 60 000
/// floats, 240 MB).
const QUERY_BLOCK: usize = 1000;

/// Scores and the first ten matches of every query, ranked by `metric`, a block of queries at a time.
fn rank(
    a: &RetrieveArgs,
    data: &Dataset,
    train: &[f32],
    test: &[f32],
    width: usize,
    metric: Metric,
    k: usize,
) -> anyhow::Result<(RetrievalScores, Vec<Vec<u32>>)> {
    let unit = metric == Metric::Cosine;
    let (train, test) = match unit {
        true => (normalised(train, width), normalised(test, width)),
        false => (train.to_vec(), test.to_vec()),
    };
    let queries = test.len() / width;
    let (mut map, mut precision, mut tops) = (0.0, 0.0, Vec::with_capacity(queries));
    let mut used_k = k;
    for first in (0..queries).step_by(QUERY_BLOCK) {
        let block = QUERY_BLOCK.min(queries - first);
        let rows = &test[first * width..(first + block) * width];
        let distances = match metric {
            Metric::Hamming => hamming_distances(rows, &train, width),
            Metric::Euclidean | Metric::Cosine => {
                with_executor(a.checkpoint.backend, product_plan(block, width), |ex| {
                    Ok(squared_distances(ex, rows, &train, width))
                })?
            }
        };
        let (scores, top) = distance_retrieval(
            &distances,
            &data.test.labels[first..first + block],
            &data.train.labels,
            k,
            SHOWN,
        );
        map += scores.mean_average_precision * block as f64;
        precision += scores.precision_at_k * block as f64;
        used_k = scores.k;
        tops.extend(top);
    }
    let scores = RetrievalScores {
        mean_average_precision: map / queries as f64,
        precision_at_k: precision / queries as f64,
        queries,
        k: used_k,
    };
    Ok((scores, tops))
}

/// retrieval.png: each shown query, then its ten nearest training images; returns what it shows.
fn write_picture(
    out: &std::path::Path,
    data: &Dataset,
    tops: &[Vec<u32>],
    config: &crate::run::RunConfig,
    metric: Metric,
) -> anyhow::Result<String> {
    ensure!(!tops.is_empty(), "no query to draw");
    let rows: Vec<(String, Vec<Vec<f32>>)> = tops
        .iter()
        .take(SHOWN)
        .enumerate()
        .map(|(q, top)| {
            let label = data.test.labels[q];
            let hits = top
                .iter()
                .filter(|&&i| data.train.labels[i as usize] == label)
                .count();
            let mut images = vec![data.test.image(q)];
            images.extend(top.iter().map(|&i| data.train.image(i as usize)));
            (format!("{label}: {hits}/{}", top.len()), images)
        })
        .collect();
    let img = &data.test.images;
    let figure = Figure {
        caption: vec![
            format!("{}: retrieval by {metric:?} distance of the codes", config.variant.name()),
            "each row: a test query, then its nearest training images; the label says how many share its digit"
                .into(),
        ],
        rows: rows
            .iter()
            .map(|(label, images)| FigureRow {
                label: label.clone(),
                images,
            })
            .collect(),
        height: img.rows,
        width: img.cols,
        columns: SHOWN + 1,
        scale: 2,
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    save_figure(out, &figure)?;
    let what = format!(
        "rows: a test query, then its {SHOWN} nearest training images by {metric:?} distance of the \
         codes; each row's label: the query's digit and how many of the matches share it"
    );
    println!(
        "wrote {} (rows: a query, then its {SHOWN} nearest training images)",
        out.display()
    );
    Ok(what)
}
