//! `gpu-ae classify`: a softmax classifier on a checkpoint's code, beside baselines trained in the same
//! run, with the test accuracy of each and the main classifier's confusion matrix as a picture.

use anyhow::ensure;

use super::ClassifyArgs;
use super::eval::{check_png_name, open};
use super::report::add_to_report;
use super::train::{checkpoint_file, with_executor};
use crate::apps::classify::{
    Classifier, EpochFigures, Kind, Outcome, Schedule, class_count, labels_per_class, plan, subset,
    train,
};
use crate::data::mnist::Dataset;
use crate::report::confusion;
use crate::report::png::save_rgb;

/// Epochs of a classifier when --epochs is not given: enough for a linear head to settle on the full
/// training set, and for the few steps of an epoch of a reduced one.
const EPOCHS: usize = 10;
const EPOCHS_FEW_LABELS: usize = 50;
const BATCH: usize = 128;
const BATCH_FEW_LABELS: usize = 32;
/// Adam's step for a linear head on fixed features (a convex problem, where a larger step converges in
/// the epochs above), and for networks whose every layer trains.
const LR_LINEAR: f32 = 1e-2;
const LR_NETWORK: f32 = 1e-3;

pub fn run(a: &ClassifyArgs) -> anyhow::Result<()> {
    let path = checkpoint_file(&a.checkpoint.checkpoint, "--checkpoint")?;
    let out = match &a.out {
        Some(out) => out.clone(),
        None => path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("confusion.png"),
    };
    check_png_name(&out)?;
    let lr =
        a.lr.unwrap_or(if a.fine_tune { LR_NETWORK } else { LR_LINEAR });
    ensure!(
        lr.is_finite() && lr > 0.0,
        "--lr {lr}: a learning rate is a finite number > 0"
    );
    let (ckpt, config, data) = open(&a.checkpoint)?;
    let (ae, _) = config.build(&data)?;
    let classes = class_count(&data)?;
    let labelled = match a.labels_per_class {
        Some(n) => {
            let chosen = labels_per_class(&data.train, classes, n, a.seed)?;
            Dataset {
                train: subset(&data.train, &chosen),
                ..data.clone()
            }
        }
        None => data.clone(),
    };
    let schedule = Schedule {
        epochs: a.epochs.unwrap_or(match a.labels_per_class {
            Some(_) => EPOCHS_FEW_LABELS,
            None => EPOCHS,
        }),
        batch: a.batch_size.unwrap_or(match a.labels_per_class {
            Some(_) => BATCH_FEW_LABELS,
            None => BATCH,
        }),
        lr,
        seed: a.seed,
    };
    println!(
        "checkpoint: {} ({}, epoch {})",
        path.display(),
        config.variant.name(),
        ckpt.state.position.epoch
    );
    println!(
        "labels: {} training images{} of {classes} classes; {} test images",
        labelled.train.len(),
        match a.labels_per_class {
            Some(n) => format!(" ({n} per class, a seeded choice of {})", data.train.len()),
            None => String::new(),
        },
        data.test.len()
    );
    println!(
        "training: adam, lr {}; batch {}; {} epochs; seed {}",
        lr, schedule.batch, schedule.epochs, a.seed
    );
    let main = if a.fine_tune {
        Kind::FineTune
    } else {
        Kind::Probe
    };
    let mut kinds = vec![main];
    if a.fine_tune {
        kinds.push(Kind::Scratch);
    }
    kinds.push(Kind::Pixels);
    let mut results: Vec<(Kind, Classifier, Outcome)> = Vec::new();
    for (n, &kind) in kinds.iter().enumerate() {
        let c = Classifier::new(kind, &ae, &ckpt.tensors, classes)?;
        println!(
            "[{}/{}] {}: {} ({} values in, {} trained)",
            n + 1,
            kinds.len(),
            kind.describe(),
            c.model
                .layers
                .iter()
                .map(|l| l.describe())
                .collect::<Vec<_>>()
                .join(" → "),
            c.features(),
            match kind {
                Kind::Probe => "head",
                Kind::Pixels => "head",
                _ => "every layer",
            }
        );
        let p = plan(&c, &labelled, &schedule)?;
        let every = schedule.epochs.div_ceil(10);
        let outcome = with_executor(a.checkpoint.backend, p, |ex| {
            Ok(train(
                ex,
                &c,
                &labelled,
                &schedule,
                &mut |e: &EpochFigures| {
                    if e.epoch.is_multiple_of(every) || e.epoch == schedule.epochs {
                        println!(
                            "  epoch {:3}  train ce {:.5}  accuracy {:.4}  {:.2} s",
                            e.epoch, e.loss, e.accuracy, e.seconds
                        );
                    }
                },
            )?)
        })?;
        results.push((kind, c, outcome));
    }
    println!("test accuracy ({} images):", data.test.len());
    for (kind, _, o) in &results {
        println!(
            "  {:<48} {:.4}  (ce {:.4})",
            kind.describe(),
            o.test_accuracy,
            o.test_loss
        );
    }
    let accuracy = |k: Kind| {
        results
            .iter()
            .find(|(kind, _, _)| *kind == k)
            .map(|(_, _, o)| o.test_accuracy)
    };
    let first = results[0].2.test_accuracy;
    for baseline in [Kind::Scratch, Kind::Pixels] {
        if let Some(b) = accuracy(baseline) {
            println!(
                "  {} minus {}: {:+.2} points",
                main_name(main),
                baseline_name(baseline),
                100.0 * (first - b)
            );
        }
    }
    let (kind, _, outcome) = &results[0];
    let title = format!(
        "{} epoch {}: {}",
        config.variant.name(),
        ckpt.state.position.epoch,
        main_name(*kind)
    );
    let subtitle = format!(
        "test accuracy {:.4} on {} images; rows: true class, columns: predicted; {} training labels",
        outcome.test_accuracy,
        data.test.len(),
        labelled.train.len()
    );
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    save_rgb(
        &out,
        &confusion::draw(&title, &subtitle, &outcome.confusion),
    )?;
    let what = format!(
        "test confusion matrix of the {}: rows true class, columns predicted",
        main_name(*kind)
    );
    println!("wrote {} ({what})", out.display());
    let mut figures = vec![(
        "labelled training images".to_string(),
        labelled.train.len().to_string(),
    )];
    figures.push((
        "training".to_string(),
        format!(
            "adam, lr {lr}; batch {}; {} epochs; seed {}",
            schedule.batch, schedule.epochs, a.seed
        ),
    ));
    for (kind, _, o) in &results {
        figures.push((
            format!("test accuracy: {}", kind.describe()),
            format!("{:.4} (ce {:.4})", o.test_accuracy, o.test_loss),
        ));
    }
    let section = if a.fine_tune {
        "classify --fine-tune"
    } else {
        "classify"
    };
    add_to_report(&path, section, &figures, &[(out, what)])
}

fn main_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Probe => "linear probe",
        Kind::FineTune => "fine-tuned network",
        Kind::Scratch => "network from scratch",
        Kind::Pixels => "raw-pixel head",
    }
}

fn baseline_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Scratch => "the same network from random initialisation",
        _ => "the raw-pixel head",
    }
}
