//! `gpu-ae complete`: occluded test digits completed by a checkpoint's autoencoder, scored by squared
//! error and by a classifier trained on the spot, beside the mean fill they start from.

use anyhow::ensure;

use super::CompleteArgs;
use super::eval::{check_png_name, open, with_checkpoint};
use super::report::add_to_report;
use super::train::{checkpoint_file, with_executor};
use crate::apps::classify::{
    Classifier, Kind, Schedule, argmax_rows, class_count, logits_buffer, plan, train,
};
use crate::apps::complete::{complete, feed, fill_hidden, squared_error_per_image};
use crate::report::png::{Figure, FigureRow, save_figure};

/// Digits the picture shows.
const SHOWN: usize = 16;

pub fn run(a: &CompleteArgs) -> anyhow::Result<()> {
    let path = checkpoint_file(&a.checkpoint.checkpoint, "--checkpoint")?;
    let out = match &a.out {
        Some(out) => out.clone(),
        None => path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("completion.png"),
    };
    check_png_name(&out)?;
    let (ckpt, config, data) = open(&a.checkpoint)?;
    let (h, w) = (data.test.images.rows, data.test.images.cols);
    a.mask.check(h, w).map_err(anyhow::Error::msg)?;
    let (ae, ae_plan) = config.build(&data)?;
    ensure!(
        !ae_plan.objective.classifies(),
        "{}: not an autoencoder",
        path.display()
    );
    let features = h * w;
    let (train_n, test_n) = (data.train.len(), data.test.len());
    // The mean training image: where every hidden pixel starts.
    let mut mean = vec![0f64; features];
    for (i, &p) in data.train.images.pixels.iter().enumerate() {
        mean[i % features] += p as f64 / 255.0;
    }
    let mean: Vec<f32> = mean.iter().map(|m| (m / train_n as f64) as f32).collect();
    let truth: Vec<f32> = data
        .test
        .images
        .pixels
        .iter()
        .map(|&p| p as f32 / 255.0)
        .collect();
    let hidden = a.mask.hidden(test_n, h, w, a.seed);
    let start = fill_hidden(&truth, &hidden, &mean);
    println!(
        "checkpoint: {} ({}, epoch {}{})",
        path.display(),
        config.variant.name(),
        ckpt.state.position.epoch,
        match config.noise {
            Some(_) => format!(
                ", trained with --noise {}",
                crate::run::config::noise_to_text(config.noise)
            ),
            None => String::new(),
        }
    );
    let hidden_share = hidden.iter().filter(|h| **h).count() as f64 / hidden.len() as f64;
    println!(
        "hiding {} of each of {test_n} test digits ({:.1}% of the pixels); the hidden part starts at the \
         mean training image; {} pass{}",
        a.mask.describe(),
        100.0 * hidden_share,
        a.passes,
        if a.passes == 1 { "" } else { "es" }
    );
    let passes = with_checkpoint(a.checkpoint.backend, ae_plan, &data, &config, &ckpt, |t| {
        Ok(complete(t.executor(), &truth, &hidden, &start, a.passes))
    })?;
    let completed = passes.last().expect("at least one pass");

    // The classifier that scores each version: a softmax head on the raw pixels, trained on the clean
    // training digits.
    let classes = class_count(&data)?;
    let head = Classifier::new(Kind::Pixels, &ae, &ckpt.tensors, classes)?;
    let schedule = Schedule {
        epochs: a.classifier_epochs,
        batch: 128,
        lr: 1e-2,
        seed: a.seed,
    };
    println!(
        "classifier: {} (Adam, lr {}, batch {}, {} epochs on the {train_n} clean training digits)",
        Kind::Pixels.describe(),
        schedule.lr,
        schedule.batch,
        schedule.epochs
    );
    let versions: Vec<&[f32]> = vec![&truth, &start, completed];
    let head_plan = plan(&head, &data, &schedule)?;
    let logits = logits_buffer(&head_plan, head.model.layers.len() - 1);
    let accuracies = with_executor(a.checkpoint.backend, head_plan, |ex| {
        train(ex, &head, &data, &schedule, &mut |_| {})?;
        Ok(versions
            .iter()
            .map(|images| {
                let predicted = argmax_rows(&feed(ex, images, logits, classes), classes);
                predicted
                    .iter()
                    .zip(&data.test.labels)
                    .filter(|(p, l)| **p == **l as usize)
                    .count() as f64
                    / test_n as f64
            })
            .collect::<Vec<f64>>())
    })?;
    println!("test digits:                 squared error per image   classifier accuracy");
    println!(
        "  clean                       {:>10}                {:.4}",
        "-", accuracies[0]
    );
    let mean_error = squared_error_per_image(&start, &truth, features);
    println!(
        "  occluded, mean fill         {mean_error:>10.3}                {:.4}",
        accuracies[1]
    );
    for (k, images) in passes.iter().enumerate() {
        let error = squared_error_per_image(images, &truth, features);
        let accuracy = if k + 1 == passes.len() {
            format!("{:.4}", accuracies[2])
        } else {
            "-".into()
        };
        println!(
            "  completed, pass {:<3}        {error:>10.3}                {accuracy}",
            k + 1
        );
    }
    let final_error = squared_error_per_image(completed, &truth, features);
    println!(
        "completion minus mean fill: squared error {:+.3} per image, accuracy {:+.2} points",
        final_error - mean_error,
        100.0 * (accuracies[2] - accuracies[1])
    );

    let shown = SHOWN.min(test_n);
    let rows_of = |images: &[f32]| -> Vec<Vec<f32>> {
        images
            .chunks(features)
            .take(shown)
            .map(<[f32]>::to_vec)
            .collect()
    };
    let (occluded, done, clean) = (rows_of(&start), rows_of(completed), rows_of(&truth));
    let figure = Figure {
        caption: vec![
            format!(
                "{} epoch {}: completion of {} ({} pass{})",
                config.variant.name(),
                ckpt.state.position.epoch,
                // The picture's font has no ×.
                a.mask.describe().replace('×', "x"),
                a.passes,
                if a.passes == 1 { "" } else { "es" }
            ),
            format!(
                "squared error per image: mean fill {mean_error:.2}, completed {final_error:.2}"
            ),
        ],
        rows: vec![
            FigureRow {
                label: "occluded (mean fill)".into(),
                images: &occluded,
            },
            FigureRow {
                label: "completed".into(),
                images: &done,
            },
            FigureRow {
                label: "truth".into(),
                images: &clean,
            },
        ],
        height: h,
        width: w,
        columns: SHOWN,
        scale: 3,
    };
    save_figure(&out, &figure)?;
    let what = "rows: occluded with the mean fill, completed, truth";
    println!("wrote {} ({what})", out.display());
    let figures = vec![
        ("mask".to_string(), a.mask.describe()),
        ("passes".to_string(), a.passes.to_string()),
        (
            "squared error per image: mean fill → completed".to_string(),
            format!("{mean_error:.3} → {final_error:.3}"),
        ),
        (
            "classifier accuracy: clean, mean fill → completed".to_string(),
            format!(
                "{:.4}; {:.4} → {:.4}",
                accuracies[0], accuracies[1], accuracies[2]
            ),
        ),
    ];
    add_to_report(&path, "complete", &figures, &[(out, what.to_string())])
}
