//! One training step of every variant on both executors: each variant's default model and objective
//! (`RunConfig::defaults`, what `gpu-ae train --variant V` trains) on a tiny synthetic data set of
//! 28×28 images, from the same initial state, forward-backward on the last, partial batch. The loss
//! accumulators, every parameter's gradient and every activation are compared, as a case of the table
//! is ([`super::Case`]); a variant's case runs every op its plan schedules, in the order it does.

use std::sync::Arc;

use clap::ValueEnum;

use super::cases::{Case, Kernels};
use super::inputs::{bytes, state_words};
use crate::backend::{Executor, Program, load_initial_state, load_labels};
use crate::data::idx::IdxImages;
use crate::data::mnist::{Dataset, Split};
use crate::run::config::{DeckArg, RunConfig, Variant};

/// 13 training images in batches of 8: the second batch holds 5.
const TRAIN: usize = 13;
const TEST: usize = 5;
const BATCH: usize = 8;
const SIDE: usize = 28;

/// Activations and gradients; the accumulators (sums over the batch) a little looser.
const TOLERANCE: f32 = 2e-4;
const ACC_TOLERANCE: f32 = 1e-3;

/// `count` seeded images of 28×28 with labels 0–9.
fn split(count: usize, seed: u64) -> Split {
    Split {
        images: IdxImages {
            count,
            rows: SIDE,
            cols: SIDE,
            pixels: bytes(count * SIDE * SIDE, seed),
        },
        labels: (0..count).map(|i| (i * 7 % 10) as u8).collect(),
    }
}

fn synthetic() -> Dataset {
    Dataset {
        train: split(TRAIN, 61),
        test: split(TEST, 62),
        dir: "synthetic".into(),
    }
}

/// Every variant's default configuration at batch 8, and the conv-ae's pool deck.
pub fn configurations() -> Vec<(String, RunConfig)> {
    let mut configs: Vec<(String, RunConfig)> = Variant::value_variants()
        .iter()
        .map(|&v| (v.name().to_string(), v.defaults()))
        .collect();
    configs.push((
        "conv-ae --deck pool".into(),
        RunConfig {
            deck: DeckArg::Pool,
            ..Variant::ConvAe.defaults()
        },
    ));
    for (_, c) in &mut configs {
        c.batch_size = BATCH;
    }
    configs
}

/// The one-step comparison of every variant, as cases (family "variant").
pub fn cases() -> Vec<Case> {
    let data = synthetic();
    configurations()
        .into_iter()
        .map(|(name, config)| case(&name, &config, &data))
        .collect()
}

fn case(name: &str, config: &RunConfig, data: &Dataset) -> Case {
    let (train, test) = (
        data.train.images.pixels.clone(),
        data.test.images.pixels.clone(),
    );
    let labels = (data.train.labels.clone(), data.test.labels.clone());
    let built = config.build(data);
    let plan = match &built {
        Ok((_, plan)) => plan.clone(),
        // The defaults always build; a failure here is a bug worth a clear message, not a panic.
        Err(e) => {
            let why = format!("{e:#}");
            return broken(name, why);
        }
    };
    let io = plan.io;
    let perm = crate::rng::epoch_permutation(TRAIN, 9, 0);
    let last = plan.steps_per_epoch() as u32 - 1;
    let seed = config.seed;
    Case {
        family: "variant",
        name: format!(
            "{name}: one training step ({} parameters), batch {BATCH} with {} real rows",
            plan.params
                .iter()
                .map(|p| p.shape.iter().product::<usize>())
                .sum::<usize>(),
            TRAIN - BATCH
        ),
        buffer_tolerances: vec![(io.loss_acc, ACC_TOLERANCE)],
        plan,
        kernels: Kernels::default(),
        drive: Arc::new(move |ex: &mut dyn Executor| {
            load_initial_state(ex, &train, &test, seed);
            load_labels(ex, &labels.0, &labels.1);
            ex.write_u32(io.train_perm, &perm);
            ex.write_u32(io.train_state, &state_words(0, last, 0));
            ex.run(Program::FORWARD_BACKWARD, 1);
        }),
        tolerance: TOLERANCE,
        exact: Vec::new(),
        quick: true,
    }
}

/// A case that fails at once, saying why its plan could not be built.
fn broken(name: &str, why: String) -> Case {
    Case {
        family: "variant",
        name: format!("{name}: the plan does not build: {why}"),
        plan: crate::plan::Plan::from_ops(Vec::new(), Vec::new()),
        kernels: Kernels::default(),
        drive: Arc::new(|_: &mut dyn Executor| {}),
        tolerance: TOLERANCE,
        buffer_tolerances: Vec::new(),
        exact: Vec::new(),
        quick: true,
    }
}
