//! The scheduler: turns a [`Model`] into buffers and op lists, once.
//!
//! A plan owns no memory; it lists every buffer a run needs (sizes fixed up front) and three programs over
//! them:
//! - `forward_backward`: gather a shuffled training batch, forward, loss, backward (all gradients written);
//! - `update`: one optimizer op per parameter, then advance the step counter;
//! - `eval`: gather a test batch (in order), forward, loss — no gradients are used.
//!
//! A training step is `forward_backward` followed by `update`; backends record many steps back to back with
//! no host round trip, since every per-step quantity (batch index, Adam's t) lives in a device-side state
//! buffer that the last op of a step advances.

use crate::model::{Layer, Model, init};
use crate::ops::{Act, AdamHyper, BufId, LossKind, Op, state};
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

/// A learnable tensor: where it lives, where its gradient goes, how it starts.
#[derive(Clone, Debug)]
pub struct ParamDesc {
    /// PyTorch-style name, e.g. `layers.0.weight`.
    pub name: String,
    /// PyTorch layout, e.g. [out, in] for a linear weight.
    pub shape: Vec<usize>,
    pub buf: BufId,
    pub grad: BufId,
    /// Initial values are U(±init_bound).
    pub init_bound: f32,
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
    /// The batch fed to the model (clean), [batch, features].
    pub input: BufId,
    /// The reconstruction act(logits), [batch, features].
    pub recon: BufId,
    /// Loss sums: slot 0 training, slot 1 evaluation (sum over elements, not a mean).
    pub loss_acc: BufId,
}

/// Which loss accumulator slot a program adds to.
pub const TRAIN_SLOT: usize = 0;
pub const EVAL_SLOT: usize = 1;

#[derive(Clone, Debug)]
pub struct Plan {
    pub buffers: Vec<BufferDesc>,
    pub params: Vec<ParamDesc>,
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

/// What forward produced for one layer, kept for its backward.
struct Saved {
    input: BufId,
    output: BufId,
    output_grad: BufId,
    weight: usize,
    bias: usize,
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
    let loss_acc = b.f32("loss_acc", 2, Role::Scratch);

    // Parameters, PyTorch names and layouts.
    let mut params = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        match *layer {
            Layer::Linear {
                inputs, outputs, ..
            } => {
                let bound = init::pytorch_bound(inputs);
                for (suffix, shape) in [("weight", vec![outputs, inputs]), ("bias", vec![outputs])]
                {
                    let name = format!("layers.{i}.{suffix}");
                    let len = shape.iter().product();
                    let buf = b.f32(&name, len, Role::Param);
                    let grad = b.f32(format!("{name}.grad"), len, Role::Grad);
                    params.push(ParamDesc {
                        name,
                        shape,
                        buf,
                        grad,
                        init_bound: bound,
                    });
                }
            }
        }
    }

    // Forward.
    let mut forward = Vec::new();
    let mut saved = Vec::new();
    let mut x = input;
    let last = model.layers.len() - 1;
    for (i, layer) in model.layers.iter().enumerate() {
        match *layer {
            Layer::Linear {
                inputs,
                outputs,
                act,
            } => {
                let y = b.f32(format!("layers.{i}.out"), batch * outputs, Role::Activation);
                let dy = b.f32(
                    format!("layers.{i}.out.grad"),
                    batch * outputs,
                    Role::Activation,
                );
                let (weight, bias) = (2 * i, 2 * i + 1);
                // Y[B×out] = X[B×in]·Wᵀ, W stored [out×in].
                forward.push(Op::Matmul {
                    a: x,
                    b: params[weight].buf,
                    c: y,
                    m: batch,
                    n: outputs,
                    k: inputs,
                    trans_a: false,
                    trans_b: true,
                    accumulate: false,
                });
                // The output activation is applied inside the loss, which sees logits.
                let act = if i == last { Act::Identity } else { act };
                forward.push(Op::BiasAct {
                    y,
                    bias: params[bias].buf,
                    rows: batch,
                    channels: outputs,
                    inner: 1,
                    act,
                });
                saved.push(Saved {
                    input: x,
                    output: y,
                    output_grad: dy,
                    weight,
                    bias,
                });
                x = y;
            }
        }
    }
    let logits = x;
    let logits_grad = saved[last].output_grad;
    let recon = b.f32("recon", batch * features, Role::Activation);
    let partial_count = (batch * features).div_ceil(256);
    let partials = b.f32("loss_partials", partial_count, Role::Scratch);

    let gather = |data, perm, st, samples| Op::GatherBatch {
        data,
        perm,
        state: st,
        out: input,
        batch,
        features,
        samples,
    };
    let loss = |st, samples| Op::Loss {
        kind: cfg.loss,
        output_act,
        logits,
        target: input,
        grad: logits_grad,
        recon,
        partials,
        state: st,
        rows: batch,
        cols: features,
        samples,
    };

    let mut forward_backward = vec![gather(
        train_data,
        train_perm,
        train_state,
        cfg.train_samples,
    )];
    forward_backward.extend(forward.iter().cloned());
    forward_backward.push(loss(train_state, cfg.train_samples));
    forward_backward.push(Op::ReduceSum {
        partials,
        count: partial_count,
        acc: loss_acc,
        slot: TRAIN_SLOT,
    });

    // Backward, last layer first.
    for (i, layer) in model.layers.iter().enumerate().rev() {
        let s = &saved[i];
        match *layer {
            Layer::Linear {
                inputs,
                outputs,
                act,
            } => {
                if i != last && act != Act::Identity {
                    forward_backward.push(Op::ActBackward {
                        y: s.output,
                        grad: s.output_grad,
                        len: batch * outputs,
                        act,
                    });
                }
                forward_backward.push(Op::BiasGrad {
                    grad: s.output_grad,
                    db: params[s.bias].grad,
                    rows: batch,
                    channels: outputs,
                    inner: 1,
                });
                // dW[out×in] = dYᵀ·X.
                forward_backward.push(Op::Matmul {
                    a: s.output_grad,
                    b: s.input,
                    c: params[s.weight].grad,
                    m: outputs,
                    n: inputs,
                    k: batch,
                    trans_a: true,
                    trans_b: false,
                    accumulate: false,
                });
                if i > 0 {
                    // dX[B×in] = dY·W.
                    forward_backward.push(Op::Matmul {
                        a: s.output_grad,
                        b: params[s.weight].buf,
                        c: saved[i - 1].output_grad,
                        m: batch,
                        n: inputs,
                        k: outputs,
                        trans_a: false,
                        trans_b: false,
                        accumulate: false,
                    });
                }
            }
        }
    }

    // Optimizer.
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

    let mut eval = vec![gather(test_data, test_perm, eval_state, cfg.test_samples)];
    eval.extend(forward);
    eval.push(loss(eval_state, cfg.test_samples));
    eval.push(Op::ReduceSum {
        partials,
        count: partial_count,
        acc: loss_acc,
        slot: EVAL_SLOT,
    });
    eval.push(Op::AdvanceStep { state: eval_state });

    Ok(Plan {
        buffers: b.buffers,
        params,
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
            recon,
            loss_acc,
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
            .map(|(i, p)| init::uniform(seed, i, self.buffers[p.buf.0].len, p.init_bound))
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
                recon: z,
                loss_acc: z,
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
