//! What a model is trained to minimise: a list of terms, each with its weight and normalisation.
//!
//! The reconstruction comes first and is a **mean per pixel** (PyTorch's and Keras's default) or, for a
//! variational autoencoder, **summed over the pixels of an image** (the VAE literature's convention, which
//! fixes how it weighs against the KL summed over the latent); every other term is its weight times a
//! **mean over the batch of a per-sample quantity** (or a batch statistic), so figures compare with a few
//! lines of PyTorch. Each term lives in its own file and compiles to:
//! - forward ops, scheduled after the model's forward pass: the term's value (one partial sum per
//!   256-element group, reduced into the term's own accumulator slot) and what its gradient needs;
//! - gradient ops placed around a layer's backward ([`GradAt`]): ops that **add** into the gradient of the
//!   activation the term reads (after the op that wrote it, before the layer's backward consumes it) and
//!   into parameter gradients (after the layer's backward wrote them).
//!
//! The plan compiler (`plan::compile`) knows none of the terms: it gives each the taps ([`Taps`]) and the
//! meters ([`Meters`]), and slots the ops it returns into the programs.

pub mod contractive;
pub mod gaussian_kl;
pub mod hashing;
pub mod kl_sparsity;
pub mod l1;
pub mod recon;
pub mod softmax_ce;
pub mod squared_error;

use crate::model::Layer;
use crate::ops::terms::TapFn;
use crate::ops::{Act, BufId, LossKind, Op, Scalar, TermOp};
use crate::plan::{Builder, Pass, PlanError, ScalarDesc};

/// Weights of the emphasised denoising loss: components the corruption changed count `corrupted` times,
/// the others `clean` times (the lectures' α and β).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Emphasis {
    pub corrupted: f32,
    pub clean: f32,
}

/// One term of an objective.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Term {
    /// The model's output against the clean input, a mean over pixels (with `per_image`, summed over an
    /// image's pixels and a mean over images); with `emphasis`, a weighted mean that needs corruption to
    /// tell corrupted components from the others.
    Reconstruction {
        loss: LossKind,
        emphasis: Option<Emphasis>,
        per_image: bool,
    },
    /// weight · mean over the batch of Σⱼ |hⱼ| on the code.
    L1 { weight: f32 },
    /// weight · Σⱼ KL(ρ ‖ ρ̂ⱼ), ρ̂ⱼ the mean of code unit j over the batch (a sigmoid code).
    KlSparsity { rho: f32, weight: f32 },
    /// weight · mean over the batch of ‖∂h/∂x‖²_F, h the code and x the code layer's input (a dense code
    /// layer).
    Contractive { weight: f32 },
    /// weight · mean over the batch of KL(q(z|x) ‖ N(0, I)), summed over the latent units: a variational
    /// code's prior term (β of a β-VAE). With `warmup_epochs` > 0 the training weight grows linearly from
    /// 0 over that many epochs' steps; evaluation always weighs it `weight`.
    GaussianKl { weight: f32, warmup_epochs: usize },
    /// Not trained on: the squared error per image, Σ over pixels of (reconstruction − input)², reported
    /// as the `sq_err` metric (the figure the deep-autoencoder and PCA literature quote).
    SquaredError,
    /// weight · mean over the batch of Σⱼ ||bⱼ| − 1| on a hashing code b (tanh or identity): codes pushed
    /// towards ±1.
    Binarize { weight: f32 },
    /// weight · Σⱼ mⱼ², mⱼ the mean of code unit j over the batch: each bit on for about half the samples.
    BitBalance { weight: f32 },
    /// weight · Σⱼ≠ₖ Cⱼₖ², C the population covariance of the code over the batch: uncorrelated bits.
    Decorrelate { weight: f32 },
    /// A classifier's loss instead of a reconstruction: the mean over the batch of −ln softmax(z)_y, z the
    /// last layer's `classes` outputs and y the sample's label; reports the accuracy beside it.
    SoftmaxCrossEntropy { classes: usize },
}

impl Term {
    /// The name of the term's columns in metrics.csv and its label in progress lines.
    pub fn name(&self) -> &'static str {
        match self {
            Term::Reconstruction { .. } => "recon",
            Term::L1 { .. } => "l1",
            Term::KlSparsity { .. } => "kl_sparsity",
            Term::Contractive { .. } => "contractive",
            Term::GaussianKl { .. } => "kl",
            Term::SquaredError => "sq_err",
            Term::Binarize { .. } => "binarize",
            Term::BitBalance { .. } => "bit_balance",
            Term::Decorrelate { .. } => "decorrelate",
            Term::SoftmaxCrossEntropy { .. } => "ce",
        }
    }
}

/// The terms a model is trained on; the reconstruction first.
#[derive(Clone, Debug, PartialEq)]
pub struct Objective {
    pub terms: Vec<Term>,
}

impl Objective {
    /// The plain autoencoder's objective: reconstruction alone.
    pub fn reconstruction(loss: LossKind) -> Objective {
        Objective {
            terms: vec![Term::Reconstruction {
                loss,
                emphasis: None,
                per_image: false,
            }],
        }
    }

    /// A classifier's objective: softmax cross-entropy over `classes` classes.
    pub fn classification(classes: usize) -> Objective {
        Objective {
            terms: vec![Term::SoftmaxCrossEntropy { classes }],
        }
    }

    /// Whether the objective trains a classifier (its loss is a softmax cross-entropy on labels).
    pub fn classifies(&self) -> bool {
        matches!(self.terms.first(), Some(Term::SoftmaxCrossEntropy { .. }))
    }

    /// This objective with `term` added after the others.
    pub fn with(mut self, term: Term) -> Objective {
        self.terms.push(term);
        self
    }

    /// The reconstruction term's loss and emphasis.
    pub fn reconstruction_term(&self) -> (LossKind, Option<Emphasis>) {
        match self.terms.first() {
            Some(&Term::Reconstruction { loss, emphasis, .. }) => (loss, emphasis),
            _ => (LossKind::BceWithLogits, None),
        }
    }
}

/// Where a term's gradient op goes in the backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradAt {
    /// Before layer i's backward: the gradient of layer i's output has been written (by layer i + 1's
    /// backward, or by the loss for the last layer) and is not consumed yet, so an op here adds into it.
    BeforeLayer(usize),
    /// After layer i's backward: its parameter gradients are written, so an op here adds into them.
    AfterLayer(usize),
}

/// A term compiled against one plan: its buffers are allocated, its ops are made per program.
pub trait CompiledTerm {
    /// Ops after the model's forward pass, in a training or evaluation program.
    fn forward(&self, pass: &Pass) -> Vec<Op>;
    /// Gradient ops of a training step, and where each group goes.
    fn backward(&self, _pass: &Pass) -> Vec<(GradAt, Vec<Op>)> {
        Vec::new()
    }
}

/// The code layer's output, as terms on the code see it.
#[derive(Clone, Copy, Debug)]
pub struct CodeTap {
    /// The index of the layer whose output is the code.
    pub layer: usize,
    /// [batch, width] activations and their gradient.
    pub value: BufId,
    pub grad: BufId,
    pub width: usize,
    /// The code layer's input width (its fan-in values per sample).
    pub inputs: usize,
    /// For a variational model, the latent width: the code is then [μ | log σ²] (width 2·latent), which
    /// the next layer samples.
    pub gaussian: Option<usize>,
    /// The activation the code layer applies (None for layers without one).
    pub act: Option<Act>,
    /// The code layer's weight and its gradient, for a Linear code layer.
    pub weight: Option<(BufId, BufId)>,
}

/// The named activations a term or a program can refer to.
#[derive(Clone, Copy, Debug)]
pub struct Taps {
    /// The clean batch [batch, features] (the reconstruction's target).
    pub input: BufId,
    /// What the model sees (the corrupted batch of a denoising model).
    pub model_input: BufId,
    /// 1 where the corruption changed a component (allocated when a term asks for it).
    pub corruption_mask: Option<BufId>,
    /// The last layer's pre-activation output and its gradient; the reconstruction act(logits).
    pub logits: BufId,
    pub logits_grad: BufId,
    pub recon: BufId,
    pub output_act: Act,
    pub code: Option<CodeTap>,
    /// The batch's labels, u32 [batch] ([`crate::ops::classify::NO_LABEL`] on padded rows), where the
    /// objective classifies.
    pub labels: Option<BufId>,
}

/// How a meter's summed value becomes a mean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Per {
    /// Divided by samples × this many values per sample.
    Element(usize),
    /// Divided by samples.
    Sample,
    /// Divided by another meter's sum (a mean over the components that meter counts).
    SumOf(usize),
}

/// What a meter measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MeterRole {
    /// A term of the objective, summed on the device with its weight applied (so a weight that changes
    /// between steps is counted as it was at each step); its mean enters the total loss.
    Term,
    /// A statistic shown beside the terms (the code's mean activation, ‖J‖²).
    Metric,
    /// A count other meters divide by; not shown.
    Count,
    /// A term's weighted sum, entering the total like a [`MeterRole::Term`], while a metric beside it
    /// shows the unweighted value (the VAE's KL, reported as the literature does whatever β); not shown.
    WeightedTerm,
}

impl MeterRole {
    /// Whether the meter's mean is part of the objective's total.
    pub fn enters_total(self) -> bool {
        matches!(self, MeterRole::Term | MeterRole::WeightedTerm)
    }

    /// Whether runs report the meter (progress lines, metrics.csv).
    pub fn shown(self) -> bool {
        matches!(self, MeterRole::Term | MeterRole::Metric)
    }
}

/// A quantity summed on the device over a pass (training epoch or test set), in its own accumulator
/// slots: training in slot 2·i, evaluation in 2·i + 1 of `Plan::io.loss_acc`.
#[derive(Clone, Debug, PartialEq)]
pub struct Meter {
    pub name: String,
    pub role: MeterRole,
    pub per: Per,
    /// The sum of each training step of the epoch, and of each evaluation step.
    pub train_log: BufId,
    pub eval_log: BufId,
}

impl Meter {
    pub fn train_slot(index: usize) -> usize {
        2 * index
    }
    pub fn eval_slot(index: usize) -> usize {
        2 * index + 1
    }
}

/// The meters of a plan being built.
pub struct Meters {
    pub list: Vec<Meter>,
    /// The accumulator every meter's sums go to (sized once all meters are known).
    pub acc: BufId,
    train_steps: usize,
    eval_steps: usize,
}

/// A meter as the ops that feed it see it.
#[derive(Clone, Copy, Debug)]
pub struct MeterRef {
    index: usize,
    acc: BufId,
    train_log: BufId,
    eval_log: BufId,
}

impl MeterRef {
    /// acc[this meter's slot for the pass] += Σ partials[first..first + count], logged per step.
    pub fn reduce(&self, pass: &Pass, partials: BufId, first: usize, count: usize) -> Op {
        let (slot, log) = if pass.training {
            (Meter::train_slot(self.index), self.train_log)
        } else {
            (Meter::eval_slot(self.index), self.eval_log)
        };
        Op::ReduceSum {
            partials,
            first,
            count,
            scale: None,
            acc: self.acc,
            slot,
            state: pass.state,
            log,
        }
    }

    /// As [`MeterRef::reduce`], each step's sum multiplied by `weight` as the step finds it.
    pub fn reduce_weighted(
        &self,
        pass: &Pass,
        partials: BufId,
        count: usize,
        weight: Scalar,
    ) -> Op {
        match self.reduce(pass, partials, 0, count) {
            Op::ReduceSum {
                partials,
                first,
                count,
                acc,
                slot,
                state,
                log,
                ..
            } => Op::ReduceSum {
                partials,
                first,
                count,
                scale: Some(weight),
                acc,
                slot,
                state,
                log,
            },
            _ => unreachable!("reduce makes a ReduceSum"),
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }
}

impl Meters {
    pub fn new(acc: BufId, train_steps: usize, eval_steps: usize) -> Meters {
        Meters {
            list: Vec::new(),
            acc,
            train_steps,
            eval_steps,
        }
    }

    /// Adds a meter with its step logs.
    pub fn add(&mut self, b: &mut Builder, name: &str, role: MeterRole, per: Per) -> MeterRef {
        let steps = (self.train_steps, self.eval_steps);
        self.add_with_steps(b, name, role, per, steps)
    }

    /// Adds a meter whose passes take `(train, eval)` steps (a pretraining phase's, with a batch of its
    /// own), which size its step logs.
    pub fn add_with_steps(
        &mut self,
        b: &mut Builder,
        name: &str,
        role: MeterRole,
        per: Per,
        (train_steps, eval_steps): (usize, usize),
    ) -> MeterRef {
        // The reconstruction's logs keep the names they had before objectives had terms.
        let (train, eval) = if self.list.is_empty() {
            (
                "train_step_losses".to_string(),
                "eval_step_losses".to_string(),
            )
        } else {
            (format!("{name}.train_steps"), format!("{name}.eval_steps"))
        };
        let train_log = b.scratch(train, train_steps);
        let eval_log = b.scratch(eval, eval_steps);
        self.list.push(Meter {
            name: name.into(),
            role,
            per,
            train_log,
            eval_log,
        });
        MeterRef {
            index: self.list.len() - 1,
            acc: self.acc,
            train_log,
            eval_log,
        }
    }
}

/// What compiling a term may use of the plan being built.
pub struct TermContext<'a> {
    pub b: &'a mut Builder,
    pub meters: &'a mut Meters,
    /// The plan's scalars so far, and the buffer that holds them.
    pub scalars: &'a mut Vec<ScalarDesc>,
    pub scalar_buf: BufId,
    pub taps: &'a Taps,
    pub batch: usize,
    pub features: usize,
    /// Values per sample of the last layer's output (the logits).
    pub logits_width: usize,
    /// Training steps in an epoch (a schedule in epochs counts steps with it).
    pub steps_per_epoch: usize,
    pub noise: Option<crate::ops::Noise>,
    /// With mixed precision, the loss-scaling state: the loss writes its gradient times the scale.
    pub amp: Option<BufId>,
    pub model_name: &'a str,
    pub layers: &'a [Layer],
}

impl TermContext<'_> {
    /// A new scalar of the plan, `init` until the host writes another value.
    pub fn scalar(&mut self, name: &str, init: f32) -> Scalar {
        self.scalars.push(ScalarDesc {
            name: name.into(),
            init,
        });
        Scalar {
            buf: self.scalar_buf,
            index: self.scalars.len() - 1,
        }
    }

    /// The code tap, or an error naming the term that needs it.
    pub fn code(&self, term: &'static str) -> Result<CodeTap, PlanError> {
        self.taps.code.ok_or_else(|| PlanError::Term {
            term,
            problem: format!("model {} has no code layer to apply it to", self.model_name),
        })
    }

    /// The code tap of a deterministic model, or an error naming the term that needs one: a variational
    /// code is [μ | log σ²], on which a penalty on activations means nothing.
    pub fn deterministic_code(&self, term: &'static str) -> Result<CodeTap, PlanError> {
        let code = self.code(term)?;
        if code.gaussian.is_some() {
            return Err(self.code_error(
                term,
                &code,
                "applies to a deterministic code (a variational model's code is the mean and log-variance \
                 its KL term regularises)",
            ));
        }
        Ok(code)
    }

    /// An error about `term` on the code layer.
    pub fn code_error(&self, term: &'static str, code: &CodeTap, needs: &str) -> PlanError {
        PlanError::Term {
            term,
            problem: format!(
                "{needs}, but the code of model {} is the output of layer {}, {}",
                self.model_name,
                code.layer,
                self.layers[code.layer].describe()
            ),
        }
    }
}

/// A penalty's weight must be finite and non-negative.
pub fn check_weight(term: &'static str, weight: f32) -> Result<(), PlanError> {
    if weight.is_finite() && weight >= 0.0 {
        Ok(())
    } else {
        Err(PlanError::Term {
            term,
            problem: format!("needs a finite, non-negative weight, got {weight}"),
        })
    }
}

/// Compiles `term` against the plan being built.
pub fn compile_term(
    term: &Term,
    cx: &mut TermContext<'_>,
) -> Result<Box<dyn CompiledTerm>, PlanError> {
    Ok(match *term {
        Term::Reconstruction {
            loss,
            emphasis,
            per_image,
        } => Box::new(recon::compile(cx, loss, emphasis, per_image)?),
        Term::L1 { weight } => Box::new(l1::compile(cx, weight)?),
        Term::KlSparsity { rho, weight } => Box::new(kl_sparsity::compile(cx, rho, weight)?),
        Term::Contractive { weight } => Box::new(contractive::compile(cx, weight)?),
        Term::GaussianKl {
            weight,
            warmup_epochs,
        } => Box::new(gaussian_kl::compile(cx, weight, warmup_epochs)?),
        Term::SquaredError => Box::new(squared_error::compile(cx)),
        Term::Binarize { weight } => Box::new(hashing::binarize(cx, weight)?),
        Term::BitBalance { weight } => Box::new(hashing::bit_balance(cx, weight)?),
        Term::Decorrelate { weight } => Box::new(hashing::decorrelate(cx, weight)?),
        Term::SoftmaxCrossEntropy { classes } => Box::new(softmax_ce::compile(cx, classes)?),
    })
}

/// Partial sums of one value over `elements` values: one per 256.
pub fn partial_count(elements: usize) -> usize {
    elements.div_ceil(256).max(1)
}

/// The code's mean activation, reported for every model that has a code: a user sees a sparsity penalty
/// act on it.
pub struct CodeMean {
    code: CodeTap,
    partials: BufId,
    meter: MeterRef,
    batch: usize,
}

impl CodeMean {
    pub fn compile(cx: &mut TermContext<'_>, code: CodeTap) -> CodeMean {
        let partials =
            cx.b.scratch("code_mean.partials", partial_count(cx.batch * code.width));
        let meter = cx.meters.add(
            cx.b,
            "code_mean",
            MeterRole::Metric,
            Per::Element(code.width),
        );
        CodeMean {
            code,
            partials,
            meter,
            batch: cx.batch,
        }
    }
}

impl CompiledTerm for CodeMean {
    fn forward(&self, pass: &Pass) -> Vec<Op> {
        let n = self.batch * self.code.width;
        vec![
            Op::Term(TermOp::TapSum {
                x: self.code.value,
                state: pass.state,
                partials: self.partials,
                rows: self.batch,
                cols: self.code.width,
                f: TapFn::Value,
            }),
            self.meter.reduce(pass, self.partials, 0, partial_count(n)),
        ]
    }
}
