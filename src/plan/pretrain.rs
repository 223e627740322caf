//! Layer-wise pretraining of a deep autoencoder: one phase per encoder layer, each with its own training
//! and evaluation programs over the same buffers as the whole model, before the fine-tuning phase.
//!
//! A mirrored dense autoencoder of L = 2·(c + 1) linear layers (the code is layer c) pairs encoder layer k
//! with decoder layer L − 1 − k, whose input width is layer k's output width and the other way round.
//! Phase k (1-based in names: `pretrain-{k+1}`) gathers a batch, runs the frozen layers 0..k forward to
//! get layer k's input v (the pixels for k = 0, else the probabilities of the layer below), and trains:
//!
//! - **RBM** (CD-1, Hinton & Salakhutdinov 2006): the RBM whose weight is layer k's W, hidden bias its
//!   bias, visible bias the mirrored layer's bias; hidden units Bernoulli for a sigmoid layer and Gaussian
//!   for a linear one (the code). The statistics of `ops::rbm` are written into the three gradient
//!   buffers and applied by momentum SGD. When the phase ends, the mirrored layer's weight becomes Wᵀ (the
//!   unrolling).
//! - **greedy** (Bengio et al. 2007; with noise, Vincent et al.'s stacked denoising autoencoders): the
//!   shallow autoencoder layer k → mirrored layer, trained by the run's optimizer to reconstruct v (from
//!   a corrupted v when the run has noise), with the run's loss when the mirrored layer ends in a sigmoid
//!   and squared error otherwise.

use super::layers::{self, LayerBufs};
use super::{Builder, ParamDesc, Pass, PlanError, PlanIo, Segment};
use crate::model::{Layer, Model};
use crate::objective::{MeterRole, Meters, Per, partial_count};
use crate::ops::{Act, BufId, HiddenUnits, LossKind, Noise, Op, RbmOp};

/// How the layers are pretrained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PretrainKind {
    Rbm(RbmSchedule),
    /// Each layer a shallow autoencoder, trained with the run's optimizer.
    Greedy,
}

/// The RBMs' momentum SGD (the Science paper's values by default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RbmSchedule {
    pub lr: f32,
    /// The learning rate of an RBM with Gaussian hidden units (the top one, under a linear code), which
    /// needs smaller steps.
    pub top_lr: f32,
    pub momentum: f32,
    /// L2 decay of the weights (not the biases).
    pub weight_decay: f32,
}

impl Default for RbmSchedule {
    fn default() -> RbmSchedule {
        RbmSchedule {
            lr: 0.1,
            top_lr: 0.001,
            momentum: 0.9,
            weight_decay: 2e-4,
        }
    }
}

/// What the pretraining phases do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pretraining {
    pub kind: PretrainKind,
    /// Epochs per layer.
    pub epochs: usize,
    /// The phases' batch size.
    pub batch: usize,
}

/// The batch size of the pretraining phases (the Science paper's).
pub const PRETRAIN_BATCH: usize = 100;

/// Streams of the counter generator for pretraining's draws: corruption of a layer's input and hidden
/// samples, in training and in evaluation, apart from the fine-tuning's streams.
pub const CORRUPT_TRAIN_STREAM: u32 = 4;
pub const CORRUPT_EVAL_STREAM: u32 = 5;
pub const SAMPLE_TRAIN_STREAM: u32 = 6;
pub const SAMPLE_EVAL_STREAM: u32 = 7;

/// What the run's fine-tuning is trained with, which greedy phases share.
pub(super) struct Fine {
    pub loss: LossKind,
    pub noise: Option<Noise>,
    pub optimizer: super::Optimizer,
    pub seed: u32,
}

/// One pretraining phase, compiled: its segments (training step, update, evaluation batch) and what the
/// plan's [`super::Phase`] says of it.
pub(super) struct Compiled {
    pub name: String,
    pub description: String,
    pub step: Vec<Op>,
    pub update: Vec<Op>,
    pub eval: Vec<Op>,
    pub meters: Vec<usize>,
    pub unroll: Option<(usize, usize)>,
}

fn refuse(model: &Model, problem: String) -> PlanError {
    PlanError::Pretrain {
        model: model.name.clone(),
        problem,
    }
}

/// The encoder layer count c + 1 of a mirrored dense autoencoder, or why the model is not one.
pub fn encoder_layers(model: &Model) -> Result<usize, PlanError> {
    let code = model
        .code
        .ok_or_else(|| refuse(model, "has no code layer".into()))?;
    let depth = code + 1;
    if model.layers.len() != 2 * depth {
        return Err(refuse(
            model,
            format!(
                "is not a mirrored autoencoder: {} layers, code at layer {code}",
                model.layers.len()
            ),
        ));
    }
    for k in 0..depth {
        let (enc, dec) = (&model.layers[k], &model.layers[2 * depth - 1 - k]);
        match (enc, dec) {
            (
                Layer::Linear {
                    inputs, outputs, ..
                },
                Layer::Linear {
                    inputs: back_in,
                    outputs: back_out,
                    ..
                },
            ) if inputs == back_out && outputs == back_in => {}
            _ => {
                return Err(refuse(
                    model,
                    format!(
                        "pretrains dense layers mirrored around the code; layer {k} ({}) and layer {} ({}) \
                         are not a mirrored pair of linear layers",
                        enc.describe(),
                        2 * depth - 1 - k,
                        dec.describe()
                    ),
                ));
            }
        }
    }
    Ok(depth)
}

/// What RBM pretraining needs of a model: sigmoid encoder layers below the code (their outputs are the
/// next RBM's Bernoulli visible units), a sigmoid or linear code, and sigmoid decoder layers (each
/// inherits an RBM's σ(·) visible units with its bias and Wᵀ).
fn check_rbm(model: &Model, depth: usize) -> Result<(), PlanError> {
    for k in 0..depth {
        let act = model.layers[k].act().unwrap_or(Act::Identity);
        let fine = act == Act::Sigmoid || (k + 1 == depth && act == Act::Identity);
        if !fine {
            return Err(refuse(
                model,
                format!(
                    "has layer {k} ({}); RBM pretraining needs sigmoid hidden layers (Bernoulli units) and a \
                     sigmoid or linear code (Gaussian units): use --activation sigmoid, or --pretrain greedy",
                    model.layers[k].describe()
                ),
            ));
        }
    }
    for k in depth..2 * depth {
        if model.layers[k].act() != Some(Act::Sigmoid) {
            return Err(refuse(
                model,
                format!(
                    "has decoder layer {k} ({}); an RBM's visible units are sigmoid, so the decoder layers \
                     that receive its Wᵀ and visible bias must be sigmoid too: use --pretrain greedy",
                    model.layers[k].describe()
                ),
            ));
        }
    }
    Ok(())
}

/// Compiles every pretraining phase of `model`.
#[allow(clippy::too_many_arguments)] // the plan's pieces a phase reads: each is distinct
pub(super) fn compile(
    b: &mut Builder,
    meters: &mut Meters,
    model: &Model,
    bufs: &[LayerBufs],
    params: &[ParamDesc],
    io: &PlanIo,
    (train_samples, test_samples, features): (usize, usize, usize),
    fine: &Fine,
    spec: &Pretraining,
) -> Result<Vec<Compiled>, PlanError> {
    let depth = encoder_layers(model)?;
    if let PretrainKind::Rbm(_) = spec.kind {
        check_rbm(model, depth)?;
    }
    let batch = spec.batch;
    let steps = (train_samples.div_ceil(batch), test_samples.div_ceil(batch));
    let train = Pass {
        batch,
        state: io.train_state,
        samples: train_samples,
        training: true,
        seed: fine.seed,
    };
    let eval = Pass {
        batch,
        state: io.eval_state,
        samples: test_samples,
        training: false,
        seed: fine.seed,
    };
    let mut phases = Vec::new();
    for k in 0..depth {
        let phase = Layerwise {
            b: &mut *b,
            model,
            bufs,
            params,
            io,
            features,
            k,
            mirror: 2 * depth - 1 - k,
        };
        phases.push(match spec.kind {
            PretrainKind::Rbm(schedule) => phase.rbm(meters, steps, &schedule, train, eval),
            PretrainKind::Greedy => phase.greedy(meters, steps, fine, train, eval)?,
        });
    }
    Ok(phases)
}

/// The phase of encoder layer `k` and its mirror.
struct Layerwise<'a> {
    b: &'a mut Builder,
    model: &'a Model,
    bufs: &'a [LayerBufs],
    params: &'a [ParamDesc],
    io: &'a PlanIo,
    /// Values per sample of the data set.
    features: usize,
    k: usize,
    mirror: usize,
}

impl Layerwise<'_> {
    fn param(&self, layer: usize, bias: bool) -> usize {
        let l = &self.bufs[layer];
        if bias { l.bias } else { l.weight }.expect("a linear layer has a weight and a bias")
    }

    /// (visible width, hidden width) of layer k.
    fn widths(&self) -> (usize, usize) {
        (
            self.model.shapes[self.k].numel(),
            self.model.shapes[self.k + 1].numel(),
        )
    }

    /// Gathers the pass's batch (into the model's input, and into the corrupted input's buffer too when
    /// there is one and nothing corrupts it) and runs layers 0..k forward: layer k's input is then ready.
    fn below(&self, pass: Pass, gather_both: bool) -> Vec<Op> {
        let io = self.io;
        let (data, perm) = if pass.training {
            (io.train_data, io.train_perm)
        } else {
            (io.test_data, io.test_perm)
        };
        let gather = |out| Op::GatherBatch {
            data,
            perm,
            state: pass.state,
            out,
            batch: pass.batch,
            features: self.features,
            samples: pass.samples,
        };
        let mut ops = vec![gather(io.input)];
        if gather_both && io.model_input != io.input {
            ops.push(gather(io.model_input));
        }
        for i in 0..self.k {
            ops.extend(self.forward(i, &self.bufs[i], pass, false));
        }
        ops
    }

    fn forward(&self, i: usize, l: &LayerBufs, pass: Pass, is_last: bool) -> Vec<Op> {
        let m = self.model;
        layers::forward(
            &m.layers[i],
            l,
            self.bufs,
            self.params,
            m.shapes[i],
            m.shapes[i + 1],
            pass,
            is_last,
        )
    }

    fn backward(&self, i: usize, l: &LayerBufs, pass: Pass, is_last: bool) -> Vec<Op> {
        let m = self.model;
        layers::backward(
            &m.layers[i],
            l,
            self.bufs,
            self.params,
            m.shapes[i],
            m.shapes[i + 1],
            pass,
            is_last,
        )
    }

    /// Layer k's buffers reading `input`, with no input gradient (the layers below are frozen).
    fn encoder(&self, input: BufId) -> LayerBufs {
        LayerBufs {
            input,
            input_grad: None,
            ..self.bufs[self.k].clone()
        }
    }

    fn scratch(&mut self, what: &str, len: usize) -> BufId {
        let name = format!("pretrain-{}.{what}", self.k + 1);
        self.b.scratch(name, len)
    }

    /// The RBM of layer k, trained by CD-1 and momentum SGD.
    fn rbm(
        mut self,
        meters: &mut Meters,
        steps: (usize, usize),
        schedule: &RbmSchedule,
        train: Pass,
        eval: Pass,
    ) -> Compiled {
        let (visible, hidden) = self.widths();
        let rows = train.batch;
        let act = self.model.layers[self.k].act().unwrap_or(Act::Identity);
        let units = match act {
            Act::Identity => HiddenUnits::Gaussian,
            _ => HiddenUnits::Bernoulli,
        };
        let (w, c, b_vis) = (
            self.param(self.k, false),
            self.param(self.k, true),
            self.param(self.mirror, true),
        );
        let sample = self.scratch("hidden_sample", rows * hidden);
        let h1 = self.scratch("hidden_reconstructed", rows * hidden);
        let hidden_stack = self.scratch("hidden_statistics", 2 * rows * hidden);
        let visible_stack = self.scratch("visible_statistics", 2 * rows * visible);
        let visible_delta = self.scratch("visible_delta", rows * visible);
        let partials = self.scratch("error.partials", partial_count(rows * visible));
        let meter = meters.add_with_steps(self.b, "rbm_error", MeterRole::Term, Per::Sample, steps);
        let v0 = self.bufs[self.k].input;
        let h0 = self.bufs[self.k].output;
        let enc = self.encoder(v0);
        let p = self.params;
        // Positive phase, one Gibbs step, negative phase; the error of the reconstruction v₁.
        let chain = |pass: Pass, stream: u32| {
            let mut ops = self.below(pass, true);
            ops.extend(self.forward(self.k, &enc, pass, false));
            ops.push(Op::Rbm(RbmOp::SampleHidden {
                h: h0,
                sample,
                state: pass.state,
                rows,
                cols: hidden,
                units,
                seed: pass.seed,
                stream,
            }));
            // v₁[B×V] = σ(s[B×H]·W[H×V] + b)
            ops.push(Op::MatmulBiasAct {
                x: sample,
                w: p[w].buf,
                bias: p[b_vis].buf,
                y: visible_stack,
                m: rows,
                n: visible,
                k: hidden,
                trans_b: false,
                act: Act::Sigmoid,
            });
            // h₁[B×H] = act(v₁·Wᵀ + c)
            ops.push(Op::MatmulBiasAct {
                x: visible_stack,
                w: p[w].buf,
                bias: p[c].buf,
                y: h1,
                m: rows,
                n: hidden,
                k: visible,
                trans_b: true,
                act,
            });
            ops.push(Op::Rbm(RbmOp::CdHidden {
                h0,
                h1,
                stacked: hidden_stack,
                state: pass.state,
                rows,
                cols: hidden,
            }));
            ops.push(Op::Rbm(RbmOp::CdVisible {
                v0,
                stacked: visible_stack,
                delta: visible_delta,
                partials,
                state: pass.state,
                rows,
                cols: visible,
            }));
            ops.push(meter.reduce(&pass, partials, 0, partial_count(rows * visible)));
            ops
        };
        let mut step = chain(train, SAMPLE_TRAIN_STREAM);
        // dW[H×V] = [h₁; −h₀]ᵀ·[v₁; v₀] / n,  dc = Σ rows of [h₁; −h₀] / n,  db = Σ (v₁ − v₀) / n.
        step.push(Op::Matmul {
            a: hidden_stack,
            b: visible_stack,
            c: p[w].grad,
            m: hidden,
            n: visible,
            k: 2 * rows,
            trans_a: true,
            trans_b: false,
            accumulate: false,
        });
        step.push(Op::BiasGrad {
            grad: hidden_stack,
            db: p[c].grad,
            rows: 2 * rows,
            channels: hidden,
            inner: 1,
        });
        step.push(Op::BiasGrad {
            grad: visible_delta,
            db: p[b_vis].grad,
            rows,
            channels: visible,
            inner: 1,
        });
        let mut eval_ops = chain(eval, SAMPLE_EVAL_STREAM);
        eval_ops.push(Op::AdvanceStep { state: eval.state });
        // Gaussian hidden units (a linear code) take the small steps; Bernoulli ones the usual.
        let lr = match units {
            HiddenUnits::Gaussian => schedule.top_lr,
            HiddenUnits::Bernoulli => schedule.lr,
        };
        let mut update: Vec<Op> = [(w, schedule.weight_decay), (c, 0.0), (b_vis, 0.0)]
            .into_iter()
            .map(|(param, weight_decay)| {
                let sgd = super::Optimizer::Sgd {
                    lr,
                    momentum: schedule.momentum,
                    weight_decay,
                };
                let name = format!("{}.pretrain", p[param].name);
                let step = crate::ops::state::GLOBAL_STEP;
                super::optimizer_op(self.b, &p[param], sgd, &name, train.state, step, None, None)
            })
            .collect();
        update.push(Op::AdvanceStep { state: train.state });
        let units_text = match units {
            HiddenUnits::Bernoulli => "Bernoulli",
            HiddenUnits::Gaussian => "Gaussian",
        };
        Compiled {
            name: format!("pretrain-{}", self.k + 1),
            description: format!(
                "RBM {visible}→{hidden} ({units_text} hidden units), CD-1; sgd lr {lr}, momentum {}, weight \
                 decay {}; batch {rows}",
                schedule.momentum, schedule.weight_decay
            ),
            step,
            update,
            eval: eval_ops,
            meters: vec![meter.index()],
            unroll: Some((w, self.param(self.mirror, false))),
        }
    }

    /// The shallow autoencoder layer k → mirrored layer on layer k's input, trained by the run's
    /// optimizer.
    fn greedy(
        mut self,
        meters: &mut Meters,
        steps: (usize, usize),
        fine: &Fine,
        train: Pass,
        eval: Pass,
    ) -> Result<Compiled, PlanError> {
        let (visible, _) = self.widths();
        let rows = train.batch;
        let mirror_act = self.model.layers[self.mirror]
            .act()
            .unwrap_or(Act::Identity);
        let loss = match mirror_act {
            Act::Sigmoid => fine.loss,
            _ => LossKind::Mse,
        };
        // Layer k's clean input (the target) and what it sees: a corrupted copy when the run has noise.
        // The first layer's corruption goes where the model's own does.
        let clean = if self.k == 0 {
            self.io.input
        } else {
            self.bufs[self.k].input
        };
        let seen = match (fine.noise, self.k) {
            (None, _) => clean,
            (Some(_), 0) => self.io.model_input,
            (Some(_), _) => self.scratch("noisy_input", rows * visible),
        };
        let logits = self.scratch("out", rows * visible);
        let logits_grad = self.scratch("out.grad", rows * visible);
        let recon = self.scratch("recon", rows * visible);
        let partials = self.scratch("recon.partials", partial_count(rows * visible));
        let meter = meters.add_with_steps(
            self.b,
            "layer_recon",
            MeterRole::Term,
            Per::Element(visible),
            steps,
        );
        let enc = self.encoder(seen);
        let dec = LayerBufs {
            input: self.bufs[self.k].output,
            output: logits,
            output_grad: logits_grad,
            input_grad: Some(self.bufs[self.k].output_grad),
            ..self.bufs[self.mirror].clone()
        };
        let head = |pass: Pass, stream: u32| {
            // Above the first layer nothing corrupts the model's input, so it is gathered clean too.
            let mut ops = self.below(pass, fine.noise.is_none() || self.k > 0);
            if let Some(noise) = fine.noise {
                ops.push(Op::Corrupt {
                    x: clean,
                    y: seen,
                    mask: None,
                    state: pass.state,
                    len: rows * visible,
                    // The first layer's input is the image; a hidden layer's is a flat vector.
                    image: match self.k {
                        0 => [self.model.input.h, self.model.input.w],
                        _ => [1, visible],
                    },
                    noise,
                    seed: pass.seed,
                    stream,
                });
            }
            ops.extend(self.forward(self.k, &enc, pass, false));
            ops.extend(self.forward(self.mirror, &dec, pass, true));
            ops.push(Op::Loss {
                kind: loss,
                output_act: mirror_act,
                logits,
                target: clean,
                grad: logits_grad,
                recon,
                partials,
                state: pass.state,
                rows,
                cols: visible,
                samples: pass.samples,
                per_sample: false,
                amp: None,
            });
            ops.push(meter.reduce(&pass, partials, 0, partial_count(rows * visible)));
            ops
        };
        let mut step = head(train, CORRUPT_TRAIN_STREAM);
        step.extend(self.backward(self.mirror, &dec, train, true));
        step.extend(self.backward(self.k, &enc, train, false));
        let mut eval_ops = head(eval, CORRUPT_EVAL_STREAM);
        eval_ops.push(Op::AdvanceStep { state: eval.state });
        let trained = [
            self.param(self.k, false),
            self.param(self.k, true),
            self.param(self.mirror, false),
            self.param(self.mirror, true),
        ];
        let mut update: Vec<Op> = trained
            .iter()
            .map(|&param| {
                let p = &self.params[param];
                super::optimizer_op(
                    self.b,
                    p,
                    fine.optimizer,
                    &format!("{}.pretrain", p.name),
                    train.state,
                    crate::ops::state::GLOBAL_STEP,
                    None,
                    None,
                )
            })
            .collect();
        update.push(Op::AdvanceStep { state: train.state });
        let (_, hidden) = self.widths();
        let noise = match fine.noise {
            Some(_) => "denoising ",
            None => "",
        };
        Ok(Compiled {
            name: format!("pretrain-{}", self.k + 1),
            description: format!(
                "{noise}autoencoder {visible}→{hidden}→{visible} on layer {}'s input ({}); the run's \
                 optimizer; batch {rows}",
                self.k,
                match loss {
                    LossKind::BceWithLogits => "bce",
                    LossKind::Mse => "mse",
                    LossKind::L1 => "l1",
                }
            ),
            step,
            update,
            eval: eval_ops,
            meters: vec![meter.index()],
            unroll: None,
        })
    }
}

/// The segments and programs of compiled phases, appended after the plan's standard ones: per phase a
/// step segment, an update segment and an evaluation segment; a training program (step, update) and an
/// evaluation program.
pub(super) fn append(
    phases: Vec<Compiled>,
    epochs: usize,
    batch: usize,
    segments: &mut Vec<Segment>,
    programs: &mut Vec<super::ProgramDesc>,
) -> Vec<super::Phase> {
    let mut out = Vec::new();
    for c in phases {
        let first = segments.len();
        for (what, ops) in [("step", c.step), ("update", c.update), ("eval", c.eval)] {
            segments.push(Segment {
                name: format!("{}.{what}", c.name),
                ops,
            });
        }
        programs.push(super::ProgramDesc {
            name: format!("{}.train_step", c.name),
            segments: vec![first, first + 1],
        });
        programs.push(super::ProgramDesc {
            name: format!("{}.eval", c.name),
            segments: vec![first + 2],
        });
        out.push(super::Phase {
            name: c.name,
            description: c.description,
            train: super::Program(programs.len() - 2),
            eval: super::Program(programs.len() - 1),
            batch,
            meters: c.meters,
            epochs: Some(epochs),
            unroll: c.unroll,
        });
    }
    out
}

/// Rows the activation buffers need: the larger of the fine-tuning's batch and the phases'.
pub fn rows(batch: usize, pretraining: Option<&Pretraining>) -> usize {
    pretraining.map_or(batch, |p| batch.max(p.batch))
}
