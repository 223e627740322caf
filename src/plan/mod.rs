//! The scheduler: turns a [`Model`] into buffers and op lists, once.
//!
//! A plan owns no memory; it lists every buffer a run needs (sizes fixed up front) and three programs over
//! them:
//! - `forward_backward`: gather a shuffled training batch, corrupt it (denoising models), forward, loss,
//!   backward (every gradient written);
//! - `update`: one optimizer op per parameter, then advance the step counter;
//! - `eval`: gather a test batch (in order), corrupt it, forward (batch norm on running statistics), loss.
//!
//! A training step is `forward_backward` followed by `update`; backends record many steps back to back with
//! no host round trip, since every per-step quantity (batch index, Adam's t, the noise key) lives in a
//! device-side state buffer that the last op of a step advances.

mod layers;

use crate::model::{Model, init};
use crate::ops::{Act, AdamHyper, BufId, LossKind, Noise, Op, state};
use layers::{LayerBufs, Pass};
use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    U32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Param,
    Grad,
    Activation,
    OptimizerState,
    /// Non-learned state that evaluation uses (batch-norm running statistics).
    Stat,
    Data,
    Index,
    State,
    Scratch,
}

#[derive(Clone, Debug)]
pub struct BufferDesc {
    pub name: String,
    /// Length in 4-byte elements.
    pub len: usize,
    pub elem: Elem,
    pub role: Role,
}

/// How a parameter starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// U(−bound, bound), drawn from the parameter's seeded stream.
    Uniform(f32),
    Constant(f32),
}

/// A learnable tensor: where it lives, where its gradient goes, how it starts.
#[derive(Clone, Debug)]
pub struct ParamDesc {
    /// PyTorch-style name, e.g. `layers.0.weight`.
    pub name: String,
    /// PyTorch layout, e.g. [out, in] for a linear weight, [out, in, k, k] for a convolution.
    pub shape: Vec<usize>,
    pub buf: BufId,
    pub grad: BufId,
    pub init: Init,
}

/// A non-learned tensor that is part of the model (batch-norm running statistics).
#[derive(Clone, Debug)]
pub struct StatDesc {
    pub name: String,
    pub shape: Vec<usize>,
    pub buf: BufId,
    pub init: f32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Adam(AdamHyper),
    Sgd {
        lr: f32,
        momentum: f32,
        weight_decay: f32,
    },
}

#[derive(Clone, Debug)]
pub struct PlanConfig {
    pub batch: usize,
    pub loss: LossKind,
    pub optimizer: Optimizer,
    pub train_samples: usize,
    pub test_samples: usize,
    /// Corruption of the model's input (denoising autoencoders); the loss compares with the clean input.
    pub noise: Option<Noise>,
    /// Key of the noise stream.
    pub seed: u64,
}

/// Buffers the host reads or writes between steps.
#[derive(Clone, Copy, Debug)]
pub struct PlanIo {
    pub train_data: BufId,
    pub train_perm: BufId,
    pub train_state: BufId,
    pub test_data: BufId,
    pub test_perm: BufId,
    pub eval_state: BufId,
    /// The clean batch, [batch, features]: the loss's target.
    pub input: BufId,
    /// What the model sees: the corrupted batch for denoising models, else the same buffer as `input`.
    pub model_input: BufId,
    /// The reconstruction act(logits), [batch, features].
    pub recon: BufId,
    /// Loss sums: slot 0 training, slot 1 evaluation (sum over elements, not a mean).
    pub loss_acc: BufId,
    /// Each training step's loss sum, indexed by the step's batch index within the epoch.
    pub train_log: BufId,
}

/// Which loss accumulator slot a program adds to.
pub const TRAIN_SLOT: usize = 0;
pub const EVAL_SLOT: usize = 1;

/// Noise streams: training and evaluation draw independent corruption.
const TRAIN_STREAM: u32 = 0;
const EVAL_STREAM: u32 = 1;

#[derive(Clone, Debug)]
pub struct Plan {
    pub buffers: Vec<BufferDesc>,
    pub params: Vec<ParamDesc>,
    pub stats: Vec<StatDesc>,
    pub forward_backward: Vec<Op>,
    pub update: Vec<Op>,
    pub eval: Vec<Op>,
    pub io: PlanIo,
    pub batch: usize,
    /// Values per sample (input and reconstruction).
    pub features: usize,
    pub train_samples: usize,
    pub test_samples: usize,
}

#[derive(Debug, Error)]
pub enum PlanError {
    #[error("batch size must be at least 1")]
    EmptyBatch,
    #[error("the data set is empty (train {train} samples, test {test} samples)")]
    EmptyData { train: usize, test: usize },
    #[error("{loss:?} loss needs a sigmoid output layer, but model {model} ends in {act}")]
    LossNeedsSigmoid {
        loss: LossKind,
        model: String,
        act: &'static str,
    },
}

/// Words needed to hold `bytes` bytes packed four to a u32.
pub fn packed_words(bytes: usize) -> usize {
    bytes.div_ceil(4).max(1)
}

struct Builder {
    buffers: Vec<BufferDesc>,
}

impl Builder {
    fn add(&mut self, name: impl Into<String>, len: usize, elem: Elem, role: Role) -> BufId {
        self.buffers.push(BufferDesc {
            name: name.into(),
            len: len.max(1),
            elem,
            role,
        });
        BufId(self.buffers.len() - 1)
    }
    fn f32(&mut self, name: impl Into<String>, len: usize, role: Role) -> BufId {
        self.add(name, len, Elem::F32, role)
    }
}

pub fn compile(model: &Model, cfg: &PlanConfig) -> Result<Plan, PlanError> {
    if cfg.batch == 0 {
        return Err(PlanError::EmptyBatch);
    }
    if cfg.train_samples == 0 || cfg.test_samples == 0 {
        return Err(PlanError::EmptyData {
            train: cfg.train_samples,
            test: cfg.test_samples,
        });
    }
    let output_act = model.output_act();
    if cfg.loss == LossKind::BceWithLogits && output_act != Act::Sigmoid {
        return Err(PlanError::LossNeedsSigmoid {
            loss: cfg.loss,
            model: model.name.clone(),
            act: output_act.name(),
        });
    }
    let batch = cfg.batch;
    let features = model.input.numel();
    let mut b = Builder {
        buffers: Vec::new(),
    };

    let train_data = b.add(
        "train_data",
        packed_words(cfg.train_samples * features),
        Elem::U32,
        Role::Data,
    );
    let train_perm = b.add("train_perm", cfg.train_samples, Elem::U32, Role::Index);
    let train_state = b.add("train_state", state::LEN, Elem::U32, Role::State);
    let test_data = b.add(
        "test_data",
        packed_words(cfg.test_samples * features),
        Elem::U32,
        Role::Data,
    );
    let test_perm = b.add("test_perm", cfg.test_samples, Elem::U32, Role::Index);
    let eval_state = b.add("eval_state", state::LEN, Elem::U32, Role::State);
    let input = b.f32("input", batch * features, Role::Activation);
    let model_input = match cfg.noise {
        Some(_) => b.f32("noisy_input", batch * features, Role::Activation),
        None => input,
    };
    let loss_acc = b.f32("loss_acc", 2, Role::Scratch);
    let train_log = b.f32(
        "train_step_losses",
        cfg.train_samples.div_ceil(batch),
        Role::Scratch,
    );
    let eval_log = b.f32(
        "eval_step_losses",
        cfg.test_samples.div_ceil(batch),
        Role::Scratch,
    );

    // Every layer's parameters and activations, in order.
    let mut params = Vec::new();
    let mut stats = Vec::new();
    let mut bufs: Vec<LayerBufs> = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        let (x, dx) = match bufs.last() {
            Some(prev) => (prev.output, Some(prev.output_grad)),
            // The input needs no gradient, except where a kernel always writes one.
            None if matches!(layer, crate::model::Layer::BatchNorm2d { .. }) => (
                model_input,
                Some(b.f32("input.grad", batch * features, Role::Scratch)),
            ),
            None => (model_input, None),
        };
        let l = layers::allocate(
            &mut b,
            &mut params,
            &mut stats,
            i,
            layer,
            x,
            dx,
            model.shapes[i + 1],
            batch,
        );
        bufs.push(l);
    }
    let last = model.layers.len() - 1;
    let logits = bufs[last].output;
    let logits_grad = bufs[last].output_grad;
    let recon = b.f32("recon", batch * features, Role::Activation);
    let partial_count = (batch * features).div_ceil(256);
    let partials = b.f32("loss_partials", partial_count, Role::Scratch);

    let forward = |pass: Pass| -> Vec<Op> {
        let mut ops = vec![];
        for (i, layer) in model.layers.iter().enumerate() {
            let (inp, out) = (model.shapes[i], model.shapes[i + 1]);
            ops.extend(layers::forward(
                layer,
                &bufs[i],
                &bufs,
                &params,
                inp,
                out,
                pass,
                i == last,
            ));
        }
        ops
    };
    // gather → corrupt → forward → loss → sum, for one program.
    let head = |data, perm, pass: Pass, stream, slot| {
        let mut ops = vec![Op::GatherBatch {
            data,
            perm,
            state: pass.state,
            out: input,
            batch,
            features,
            samples: pass.samples,
        }];
        if let Some(noise) = cfg.noise {
            let seed = (cfg.seed ^ (cfg.seed >> 32)) as u32;
            ops.push(Op::Corrupt {
                x: input,
                y: model_input,
                state: pass.state,
                len: batch * features,
                noise,
                seed,
                stream,
            });
        }
        ops.extend(forward(pass));
        ops.push(Op::Loss {
            kind: cfg.loss,
            output_act,
            logits,
            target: input,
            grad: logits_grad,
            recon,
            partials,
            state: pass.state,
            rows: batch,
            cols: features,
            samples: pass.samples,
        });
        ops.push(Op::ReduceSum {
            partials,
            count: partial_count,
            acc: loss_acc,
            slot,
            state: pass.state,
            log: if slot == TRAIN_SLOT {
                train_log
            } else {
                eval_log
            },
        });
        ops
    };

    let train = Pass {
        batch,
        state: train_state,
        samples: cfg.train_samples,
        training: true,
    };
    let mut forward_backward = head(train_data, train_perm, train, TRAIN_STREAM, TRAIN_SLOT);
    for (i, layer) in model.layers.iter().enumerate().rev() {
        let (inp, out) = (model.shapes[i], model.shapes[i + 1]);
        forward_backward.extend(layers::backward(
            layer,
            &bufs[i],
            &bufs,
            &params,
            inp,
            out,
            train,
            i == last,
        ));
    }

    let mut update = Vec::new();
    for p in &params {
        let len = b.buffers[p.buf.0].len;
        match cfg.optimizer {
            Optimizer::Adam(hyper) => {
                let m = b.f32(format!("{}.adam_m", p.name), len, Role::OptimizerState);
                let v = b.f32(format!("{}.adam_v", p.name), len, Role::OptimizerState);
                update.push(Op::Adam {
                    param: p.buf,
                    grad: p.grad,
                    m,
                    v,
                    state: train_state,
                    len,
                    hyper,
                });
            }
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
            } => {
                let velocity = b.f32(format!("{}.momentum", p.name), len, Role::OptimizerState);
                update.push(Op::Sgd {
                    param: p.buf,
                    grad: p.grad,
                    velocity,
                    len,
                    lr,
                    momentum,
                    weight_decay,
                });
            }
        }
    }
    update.push(Op::AdvanceStep { state: train_state });

    let evaluation = Pass {
        batch,
        state: eval_state,
        samples: cfg.test_samples,
        training: false,
    };
    let mut eval = head(test_data, test_perm, evaluation, EVAL_STREAM, EVAL_SLOT);
    eval.push(Op::AdvanceStep { state: eval_state });

    Ok(Plan {
        buffers: b.buffers,
        params,
        stats,
        forward_backward,
        update,
        eval,
        io: PlanIo {
            train_data,
            train_perm,
            train_state,
            test_data,
            test_perm,
            eval_state,
            input,
            model_input,
            recon,
            loss_acc,
            train_log,
        },
        batch,
        features,
        train_samples: cfg.train_samples,
        test_samples: cfg.test_samples,
    })
}

impl Plan {
    pub fn steps_per_epoch(&self) -> usize {
        self.train_samples.div_ceil(self.batch)
    }
    pub fn eval_steps(&self) -> usize {
        self.test_samples.div_ceil(self.batch)
    }
    /// Initial parameter values for `seed` (identical on every backend).
    pub fn initial_params(&self, seed: u64) -> Vec<Vec<f32>> {
        self.params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let len = self.buffers[p.buf.0].len;
                match p.init {
                    Init::Uniform(bound) => init::uniform(seed, i, len, bound),
                    Init::Constant(v) => vec![v; len],
                }
            })
            .collect()
    }
    /// Total bytes of all buffers.
    pub fn bytes(&self) -> usize {
        self.buffers.iter().map(|b| b.len * 4).sum()
    }
}

impl Plan {
    /// A plan made of explicit buffers and one op list (run as [`crate::backend::Program::ForwardBackward`]),
    /// for kernel tests and benchmarks. It reads no data set: its `io` points at buffer 0.
    pub fn from_ops(buffers: Vec<BufferDesc>, ops: Vec<Op>) -> Plan {
        let z = BufId(0);
        Plan {
            buffers,
            params: Vec::new(),
            stats: Vec::new(),
            forward_backward: ops,
            update: Vec::new(),
            eval: Vec::new(),
            io: PlanIo {
                train_data: z,
                train_perm: z,
                train_state: z,
                test_data: z,
                test_perm: z,
                eval_state: z,
                input: z,
                model_input: z,
                recon: z,
                loss_acc: z,
                train_log: z,
            },
            batch: 1,
            features: 1,
            train_samples: 1,
            test_samples: 1,
        }
    }
}

impl BufferDesc {
    pub fn f32(name: &str, len: usize) -> BufferDesc {
        BufferDesc {
            name: name.into(),
            len: len.max(1),
            elem: Elem::F32,
            role: Role::Scratch,
        }
    }
    pub fn u32(name: &str, len: usize) -> BufferDesc {
        BufferDesc {
            name: name.into(),
            len: len.max(1),
            elem: Elem::U32,
            role: Role::Scratch,
        }
    }
}
