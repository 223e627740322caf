//! Classifiers on a trained autoencoder: what its code is worth as features, and as a starting point.
//!
//! A classifier is the autoencoder's encoder (its layers up to and including the code layer) followed by a
//! linear head with one output per class, trained on the engine like any model: the objective is the
//! softmax cross-entropy term, the labels are gathered on the device with each batch.
//! - **linear probe**: the encoder keeps the checkpoint's values (frozen: no optimizer op, no backward
//!   below the head); only the head trains. It measures how linearly separable the code is.
//! - **fine-tuning**: encoder and head train together, the encoder starting from the checkpoint.
//! - **from scratch**: the same network from the seeded random initialisation: what pretraining is
//!   compared with.
//! - **raw pixels**: the head alone on the input (multinomial logistic regression): the baseline of
//!   every figure.
//!
//! With few labels (`labels_per_class`) the training set is a seeded subset holding that many images of
//! each class: the semi-supervised case, where pretraining on all the unlabelled images pays.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use thiserror::Error;

use crate::backend::{Executor, Program, load_labels};
use crate::data::mnist::{Dataset, Split};
use crate::model::{Layer, Model, ModelError};
use crate::objective::Objective;
use crate::ops::{Act, AdamHyper, state};
use crate::plan::{Optimizer, Plan, PlanConfig, PlanError, compile};
use crate::rng::epoch_permutation;
use crate::train::{EpochOutcome, TrainError, Trainer};

#[derive(Debug, Error)]
pub enum ClassifyError {
    #[error("model {model} names no code layer, so it has no encoder to classify with")]
    NoCode { model: String },
    #[error(
        "--labels-per-class {asked}: the training set holds only {held} images of class {class} \
         (the fewest of any class); ask for at most {held}"
    )]
    TooFewLabels {
        asked: usize,
        class: usize,
        held: usize,
    },
    #[error("--labels-per-class must be at least 1")]
    NoLabels,
    #[error("the data set has {0} class(es) in its labels; a classifier needs at least 2")]
    OneClass(usize),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Train(#[from] TrainError),
}

/// How a classifier starts and what it trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Probe,
    FineTune,
    Scratch,
    Pixels,
}

impl Kind {
    /// What the kind is, for a person reading the figures.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Probe => "linear probe on the frozen code",
            Kind::FineTune => "encoder + head fine-tuned from the checkpoint",
            Kind::Scratch => "the same network from random initialisation",
            Kind::Pixels => "the same head on the raw pixels",
        }
    }
}

/// A classifier to train: its model, and the tensors that replace the seeded initial values.
pub struct Classifier {
    pub kind: Kind,
    pub model: Model,
    /// (name, values): the encoder's parameters and statistics from the checkpoint.
    pub start: Vec<(String, Vec<f32>)>,
}

impl Classifier {
    /// A classifier of `kind` on autoencoder `ae` (whose tensors, by PyTorch name, are `tensors`), with
    /// `classes` outputs.
    pub fn new(
        kind: Kind,
        ae: &Model,
        tensors: &[(String, Vec<usize>, Vec<f32>)],
        classes: usize,
    ) -> Result<Classifier, ClassifyError> {
        let code = ae.code.ok_or_else(|| ClassifyError::NoCode {
            model: ae.name.clone(),
        })?;
        let (mut layers, start) = match kind {
            Kind::Pixels => (Vec::new(), Vec::new()),
            Kind::Scratch => (ae.layers[..=code].to_vec(), Vec::new()),
            Kind::Probe | Kind::FineTune => {
                let encoder: Vec<String> = (0..=code).map(|i| format!("layers.{i}.")).collect();
                let start = tensors
                    .iter()
                    .filter(|(name, _, _)| encoder.iter().any(|p| name.starts_with(p)))
                    .map(|(name, _, values)| (name.clone(), values.clone()))
                    .collect();
                (ae.layers[..=code].to_vec(), start)
            }
        };
        let width = ae.shapes[layers.len()].numel();
        layers.push(Layer::Linear {
            inputs: width,
            outputs: classes,
            act: Act::Identity,
        });
        let frozen = if kind == Kind::Probe { code + 1 } else { 0 };
        let name = match kind {
            Kind::Pixels => "pixels-probe".to_string(),
            _ => format!("{}-classifier", ae.name),
        };
        let model = Model::classifier(&name, ae.input, layers, frozen)?;
        Ok(Classifier { kind, model, start })
    }

    /// Values per sample the head reads.
    pub fn features(&self) -> usize {
        self.model.shapes[self.model.layers.len() - 1].numel()
    }
}

/// How the classifiers train: Adam, a batch, a number of epochs over the (possibly reduced) training set.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
}

/// One epoch's training means.
#[derive(Clone, Copy, Debug)]
pub struct EpochFigures {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub seconds: f64,
}

/// What a trained classifier does on the test set.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub epochs: Vec<EpochFigures>,
    pub test_loss: f64,
    pub test_accuracy: f64,
    /// counts[t][p]: test samples of class t predicted as p.
    pub confusion: Vec<Vec<usize>>,
}

/// The number of classes: one more than the largest label of either split (at least 2).
pub fn class_count(data: &Dataset) -> Result<usize, ClassifyError> {
    let top = data
        .train
        .labels
        .iter()
        .chain(&data.test.labels)
        .copied()
        .max()
        .map_or(0, |m| m as usize + 1);
    if top < 2 {
        return Err(ClassifyError::OneClass(top));
    }
    Ok(top)
}

/// A seeded choice of `per_class` training images of each class (in the order of a seeded shuffle), or
/// an error naming the class that holds fewer.
pub fn labels_per_class(
    split: &Split,
    classes: usize,
    per_class: usize,
    seed: u64,
) -> Result<Vec<usize>, ClassifyError> {
    if per_class == 0 {
        return Err(ClassifyError::NoLabels);
    }
    let mut counts = vec![0usize; classes];
    for &l in &split.labels {
        counts[l as usize] += 1;
    }
    if let Some((class, &held)) = counts
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n < per_class)
        .min_by_key(|&(_, &n)| n)
    {
        return Err(ClassifyError::TooFewLabels {
            asked: per_class,
            class,
            held,
        });
    }
    let order = epoch_permutation(split.len(), seed ^ 0x1abe15, 0);
    let mut taken = vec![0usize; classes];
    let mut chosen: Vec<usize> = Vec::with_capacity(per_class * classes);
    for &i in &order {
        let class = split.labels[i as usize] as usize;
        if taken[class] < per_class {
            taken[class] += 1;
            chosen.push(i as usize);
        }
    }
    chosen.sort_unstable();
    Ok(chosen)
}

/// The samples `indices` of `split`, in that order.
pub fn subset(split: &Split, indices: &[usize]) -> Split {
    let n = split.pixels_per_image();
    let mut images = split.images.clone();
    images.pixels = indices
        .iter()
        .flat_map(|&i| split.images.pixels[i * n..(i + 1) * n].iter().copied())
        .collect();
    images.count = indices.len();
    Split {
        images,
        labels: indices.iter().map(|&i| split.labels[i]).collect(),
    }
}

/// The plan of classifier `c` trained on `data` as `schedule` says.
pub fn plan(c: &Classifier, data: &Dataset, schedule: &Schedule) -> Result<Plan, ClassifyError> {
    let classes = c.model.shapes[c.model.layers.len()].numel();
    Ok(compile(
        &c.model,
        &PlanConfig {
            batch: schedule.batch,
            objective: Objective::classification(classes),
            optimizer: Optimizer::Adam(AdamHyper {
                lr: schedule.lr,
                ..AdamHyper::default()
            }),
            train_samples: data.train.len(),
            test_samples: data.test.len(),
            noise: None,
            seed: schedule.seed,
            lr_schedule: None,
            precision: crate::plan::Precision::F32,
        },
    )?)
}

/// Trains classifier `c` on `ex` (whose plan is [`plan`]'s) for the schedule's epochs, telling `epoch_done`
/// each epoch's training figures, then measures it on the test set.
pub fn train(
    ex: &mut dyn Executor,
    c: &Classifier,
    data: &Dataset,
    schedule: &Schedule,
    epoch_done: &mut dyn FnMut(&EpochFigures),
) -> Result<Outcome, ClassifyError> {
    let mut trainer = Trainer::new(
        ex,
        &data.train.images.pixels,
        &data.test.images.pixels,
        schedule.seed,
    );
    let ex = trainer.executor();
    load_labels(ex, &data.train.labels, &data.test.labels);
    let plan = ex.plan().clone();
    for (name, values) in &c.start {
        let buf = plan
            .params
            .iter()
            .find(|p| &p.name == name)
            .map(|p| p.buf)
            .or_else(|| plan.stats.iter().find(|s| &s.name == name).map(|s| s.buf));
        if let Some(buf) = buf {
            ex.write_f32(buf, values);
        }
    }
    let meter = |name: &str| {
        plan.meters
            .iter()
            .position(|m| m.name == name)
            .expect("a classifier's meters")
    };
    let (ce, accuracy) = (meter("ce"), meter("accuracy"));
    let never = AtomicBool::new(false);
    let mut epochs = Vec::new();
    for _ in 0..schedule.epochs {
        let start = Instant::now();
        let result = match trainer.train_epoch(&mut |_| {}, &never)? {
            EpochOutcome::Completed(result) => result,
            EpochOutcome::Interrupted { .. } => unreachable!("nothing raises the stop flag"),
        };
        let figures = EpochFigures {
            epoch: result.epoch,
            loss: result.train.values[ce],
            accuracy: result.train.values[accuracy],
            seconds: start.elapsed().as_secs_f64(),
        };
        epoch_done(&figures);
        epochs.push(figures);
    }
    let test = trainer.evaluate();
    let classes = c.model.shapes[c.model.layers.len()].numel();
    let predicted = predictions(trainer.executor(), c.model.layers.len() - 1, classes);
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (&truth, &p) in data.test.labels.iter().zip(&predicted) {
        confusion[truth as usize][p] += 1;
    }
    Ok(Outcome {
        epochs,
        test_loss: test.values[ce],
        test_accuracy: test.values[accuracy],
        confusion,
    })
}

/// Where a classifier plan leaves its logits: the output of its last layer, `head`.
pub fn logits_buffer(plan: &Plan, head: usize) -> crate::ops::BufId {
    let name = format!("layers.{head}.out");
    plan.buffers
        .iter()
        .position(|b| b.name == name)
        .map(crate::ops::BufId)
        .expect("the head's output buffer")
}

/// The first maximum of each row of `logits` [rows × classes]: the class the accuracy counts.
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes)
        .map(|row| (0..classes).fold(0, |b, j| if row[j] > row[b] { j } else { b }))
        .collect()
}

/// The class each test sample's logits (the output of layer `head`) rank first.
fn predictions(ex: &mut dyn Executor, head: usize, classes: usize) -> Vec<usize> {
    let plan = ex.plan().clone();
    let logits = logits_buffer(&plan, head);
    ex.write_u32(plan.io.eval_state, &[0; state::LEN]);
    let mut out = Vec::with_capacity(plan.test_samples);
    for _ in 0..plan.eval_steps() {
        ex.run(Program::EVAL, 1);
        let values = ex.read_f32(logits);
        let rows = plan.batch.min(plan.test_samples - out.len());
        out.extend(argmax_rows(&values[..rows * classes], classes));
    }
    out
}
