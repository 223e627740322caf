//! The scheduler: turns a [`Model`] into buffers and op lists, once.
//!
//! A plan owns no memory; it lists every buffer a run needs (sizes fixed up front) and a list of programs
//! over them, each a list of op segments ([`Program`]); today's six segments:
//! - `forward_backward`: gather a shuffled training batch, corrupt it (denoising models), forward, loss,
//!   backward (every gradient written);
//! - `update`: one optimizer op per parameter, then advance the step counter;
//! - `eval`: gather a test batch (in order), corrupt it, forward (batch norm on running statistics), loss;
//! - `reconstruct`: gather a test batch straight into the model's input (never corrupted), forward, the
//!   reconstruction (no penalties);
//! - `encode`: gather a test batch the same way, forward up to the code (μ for a variational model);
//! - `decode`: the decoder alone, from codes the host wrote ([`Codec`]), to images in [0, 1].
//!
//! A training step is `forward_backward` followed by `update`; backends record many steps back to back with
//! no host round trip, since every per-step quantity (batch index, Adam's t, the noise key) lives in a
//! device-side state buffer that the last op of a step advances.

mod layers;
pub mod pretrain;
mod programs;

pub use pretrain::{PretrainKind, Pretraining, RbmSchedule};
pub use programs::{Codec, Phase, Program, ProgramDesc, Segment};
use programs::{codec, standard_programs};

use crate::model::{Model, init};
use crate::objective::Term;
use crate::objective::{
    CodeMean, CodeTap, CompiledTerm, GradAt, Meter, Meters, Objective, Per, Taps, TermContext,
    compile_term,
};
use crate::ops::optim::{AdagradHyper, LrSchedule, RmspropHyper};
use crate::ops::{AdamHyper, BufId, ClassifyOp, LossKind, Noise, Op, OptimOp, state};
use layers::LayerBufs;
use thiserror::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    U32,
    /// IEEE half precision (`--precision mixed`): the CPU backend keeps f32 values rounded to f16 after
    /// every write, the GPU stores two bytes per value.
    F16,
}

/// What the activations, their gradients and the operands of matmul and convolution are stored as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Everything f32.
    #[default]
    F32,
    /// Activations, their gradients and an f16 copy of each weight in f16; products accumulated in f32;
    /// master weights, optimizer state, losses and reductions in f32; dynamic loss scaling
    /// ([`crate::ops::optim::amp`]).
    Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Param,
    /// A parameter's gradient.
    Grad,
    Activation,
    /// The gradient of a layer's output (or of the input, where a kernel writes one).
    ActivationGrad,
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

impl BufferDesc {
    /// Bytes on the device (an f16 buffer padded to whole 4-byte words, as buffer sizes must be).
    pub fn bytes(&self) -> usize {
        match self.elem {
            Elem::F16 => self.len.div_ceil(2) * 4,
            Elem::F32 | Elem::U32 => self.len * 4,
        }
    }
}

/// How [`Plan::memory_by_role`] groups buffers: every role is in exactly one group.
pub const MEMORY_GROUPS: [(&str, &[Role]); 7] = [
    ("parameters", &[Role::Param]),
    ("gradients", &[Role::Grad]),
    ("activations", &[Role::Activation]),
    ("activation gradients", &[Role::ActivationGrad]),
    ("optimizer state", &[Role::OptimizerState]),
    ("data", &[Role::Data, Role::Index]),
    ("other", &[Role::Stat, Role::State, Role::Scratch]),
];

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
    /// The parameter group: groups train in their own phases and count their own optimizer steps.
    pub group: usize,
    /// Whether the update program changes it (a frozen layer keeps its values).
    pub trainable: bool,
    /// With mixed precision, a weight's f16 copy: what matmuls and convolutions read; the optimizer
    /// refreshes it from `buf` after every update.
    pub half: Option<BufId>,
}

impl ParamDesc {
    /// The buffer the layer's products read: the f16 copy, or the parameter itself.
    pub fn operand(&self) -> BufId {
        self.half.unwrap_or(self.buf)
    }
}

/// A number the programs read from the plan's scalar buffer ([`crate::ops::Scalar`]): a penalty's
/// weight, which a schedule may change between steps by writing the buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalarDesc {
    pub name: String,
    /// The value the buffer starts with.
    pub init: f32,
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
    Rmsprop(RmspropHyper),
    Adagrad(AdagradHyper),
}

#[derive(Clone, Debug)]
pub struct PlanConfig {
    pub batch: usize,
    /// What is minimised: the reconstruction first, then any penalties.
    pub objective: Objective,
    pub optimizer: Optimizer,
    pub train_samples: usize,
    pub test_samples: usize,
    /// Corruption of the model's input (denoising autoencoders); the loss compares with the clean input.
    pub noise: Option<Noise>,
    /// Key of the noise stream.
    pub seed: u64,
    /// The learning-rate schedule of the trained parameters (warm-up, step or cosine decay); `None`: a
    /// constant lr.
    pub lr_schedule: Option<LrSchedule>,
    pub precision: Precision,
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
    /// Every meter's sums (the objective's terms and the statistics beside them): meter i's training sum
    /// in slot 2i, its evaluation sum in slot 2i + 1 (see [`Meter`]).
    pub loss_acc: BufId,
    /// The values of [`Plan::scalars`], in order.
    pub scalars: BufId,
    /// A classifier's labels: one u32 per training and test sample, which the host uploads
    /// ([`crate::backend::load_labels`]); `None` where the objective needs none.
    pub train_labels: Option<BufId>,
    /// With mixed precision, the loss-scaling state ([`crate::ops::optim::amp`], u32 words), which the
    /// host initialises and checkpoints save.
    pub amp: Option<BufId>,
    pub test_labels: Option<BufId>,
}

/// The program that runs the model on a batch the host wrote ([`Plan::program`]).
pub const FEED: &str = "feed";

/// Random streams of the counter generator: training and evaluation draw independent corruption, and a
/// variational model's ε comes from streams of its own, independent of the corruption.
const TRAIN_STREAM: u32 = 0;
const EVAL_STREAM: u32 = 1;
pub const EPS_TRAIN_STREAM: u32 = 2;
pub const EPS_EVAL_STREAM: u32 = 3;

#[derive(Clone, Debug)]
pub struct Plan {
    pub buffers: Vec<BufferDesc>,
    pub params: Vec<ParamDesc>,
    pub stats: Vec<StatDesc>,
    /// What the accumulator sums: the reconstruction (meter 0), the other terms, then statistics.
    pub meters: Vec<Meter>,
    /// Numbers the programs read at run time rather than from uniforms: the penalties' weights.
    pub scalars: Vec<ScalarDesc>,
    pub objective: Objective,
    /// Op lists that programs are made of, in order ([`Segment`]): the standard plan has
    /// `forward_backward`, `update` and `eval`.
    pub segments: Vec<Segment>,
    /// What an executor can run: each program a list of segments ([`Program`] indexes it).
    pub programs: Vec<ProgramDesc>,
    /// What a run trains, in order: the pretraining phases, if any, then the fine-tuning (always last).
    pub phases: Vec<Phase>,
    pub io: PlanIo,
    /// The buffers of the encode and decode programs, where the model can run them.
    pub codec: Option<Codec>,
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
    #[error("the {term} term {problem}")]
    Term { term: &'static str, problem: String },
    #[error("pretraining: model {model} {problem}")]
    Pretrain { model: String, problem: String },
    #[error("--noise square:{size}: the square does not fit in the {h}×{w} images")]
    SquareTooLarge { size: u32, h: usize, w: usize },
    #[error(
        "--precision mixed does not support {what} yet: it trains dense and convolutional autoencoders \
         (Linear, Conv2d and ConvTranspose2d layers) with Adam on a reconstruction loss; use --precision f32"
    )]
    Mixed { what: String },
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

/// The buffers of a plan being built.
pub struct Builder {
    buffers: Vec<BufferDesc>,
}

/// What every op of one program shares: batch size, the program's state buffer and data-set size, and
/// the key of its random draws.
#[derive(Clone, Copy, Debug)]
pub struct Pass {
    pub batch: usize,
    pub state: BufId,
    pub samples: usize,
    pub training: bool,
    /// The run's seed, folded to 32 bits, that keys every draw on the device.
    pub seed: u32,
}

impl Pass {
    /// The stream a sampling layer draws its ε from in this pass.
    pub fn eps_stream(&self) -> u32 {
        if self.training {
            EPS_TRAIN_STREAM
        } else {
            EPS_EVAL_STREAM
        }
    }
}

impl Builder {
    /// A working buffer of `len` floats that a term or an op keeps for itself.
    pub fn scratch(&mut self, name: impl Into<String>, len: usize) -> BufId {
        self.f32(name, len, Role::Scratch)
    }
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
    /// The length of buffer `id`, in elements.
    fn len(&self, id: BufId) -> usize {
        self.buffers[id.0].len
    }
}

/// The plan of `model` trained as `cfg` says, with no pretraining.
pub fn compile(model: &Model, cfg: &PlanConfig) -> Result<Plan, PlanError> {
    compile_with(model, cfg, None)
}

/// The plan of `model` trained as `cfg` says, after the layer-wise `pretraining` phases when given.
pub fn compile_with(
    model: &Model,
    cfg: &PlanConfig,
    pretraining: Option<&Pretraining>,
) -> Result<Plan, PlanError> {
    if cfg.batch == 0 || pretraining.is_some_and(|p| p.batch == 0) {
        return Err(PlanError::EmptyBatch);
    }
    if cfg.train_samples == 0 || cfg.test_samples == 0 {
        return Err(PlanError::EmptyData {
            train: cfg.train_samples,
            test: cfg.test_samples,
        });
    }
    if let Some(crate::ops::Noise::Square { size }) = cfg.noise {
        let (h, w) = (model.input.h, model.input.w);
        if size as usize > h.min(w) {
            return Err(PlanError::SquareTooLarge { size, h, w });
        }
    }
    let mixed = cfg.precision == Precision::Mixed;
    if mixed {
        check_mixed(model, cfg, pretraining)?;
    }
    let output_act = model.output_act();
    let batch = cfg.batch;
    // The activations hold a fine-tuning batch, or a pretraining phase's when that is larger.
    let rows = pretrain::rows(batch, pretraining);
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
    // A classifier's labels: the data sets' (one word per sample) and the batch's.
    let labels = cfg.objective.classifies().then(|| {
        (
            b.add("train_labels", cfg.train_samples, Elem::U32, Role::Data),
            b.add("test_labels", cfg.test_samples, Elem::U32, Role::Data),
            b.add("labels", rows, Elem::U32, Role::Activation),
        )
    });
    let input = b.f32("input", rows * features, Role::Activation);
    let model_input = match cfg.noise {
        Some(_) => b.f32("noisy_input", rows * features, Role::Activation),
        None => input,
    };
    // Sized once every meter and scalar is known: two slots (training, evaluation) per meter.
    let loss_acc = b.f32("loss_acc", 2, Role::Scratch);
    let scalar_buf = b.f32("scalars", 1, Role::Scratch);
    let mut scalars = Vec::new();

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
                Some(b.f32("input.grad", rows * features, Role::ActivationGrad)),
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
            rows,
        );
        bufs.push(l);
    }
    // A frozen layer keeps its values: no optimizer op touches its parameters.
    for l in &bufs[..model.frozen] {
        for p in [l.weight, l.bias].into_iter().flatten() {
            params[p].trainable = false;
        }
    }
    let last = model.layers.len() - 1;
    let recon = b.f32("recon", batch * features, Role::Activation);
    let corruption_mask = match (cfg.noise, cfg.objective.reconstruction_term().1) {
        (Some(_), Some(_)) => Some(b.f32("corruption_mask", batch * features, Role::Activation)),
        _ => None,
    };
    // Mixed precision: every activation and activation gradient (the batch, the layers' outputs, the
    // reconstruction) in f16, and an f16 copy of each weight for the products to read.
    let amp = mixed.then(|| {
        for desc in &mut b.buffers {
            if matches!(desc.role, Role::Activation | Role::ActivationGrad)
                && desc.elem == Elem::F32
            {
                desc.elem = Elem::F16;
            }
        }
        for l in &bufs {
            if let Some(w) = l.weight {
                let (name, len) = (format!("{}.half", params[w].name), b.len(params[w].buf));
                params[w].half = Some(b.add(name, len, Elem::F16, Role::Param));
            }
        }
        b.add("amp", crate::ops::optim::amp::LEN, Elem::U32, Role::State)
    });

    // The objective's terms, each with its buffers and meters; the code's mean activation is reported
    // for every model that has a code.
    let taps = Taps {
        input,
        model_input,
        corruption_mask,
        logits: bufs[last].output,
        logits_grad: bufs[last].output_grad,
        recon,
        output_act,
        // The last layer's output gradient is ∂L/∂logits (its activation is fused into the loss), so a term
        // could not add ∂/∂h into it: a code must be an inner layer.
        code: model
            .code
            .filter(|&layer| layer < last)
            .map(|layer| code_tap(model, &bufs, &params, layer)),
        labels: labels.map(|(_, _, batch_labels)| batch_labels),
    };
    let mut meters = Meters::new(
        loss_acc,
        cfg.train_samples.div_ceil(batch),
        cfg.test_samples.div_ceil(batch),
    );
    let mut terms: Vec<Box<dyn CompiledTerm>> = Vec::new();
    {
        let mut cx = TermContext {
            b: &mut b,
            meters: &mut meters,
            scalars: &mut scalars,
            scalar_buf,
            taps: &taps,
            batch,
            features,
            logits_width: model.shapes[model.layers.len()].numel(),
            steps_per_epoch: cfg.train_samples.div_ceil(batch),
            noise: cfg.noise,
            amp,
            model_name: &model.name,
            layers: &model.layers,
        };
        // The loss comes first: a reconstruction, or a classifier's cross-entropy, and only one.
        let is_loss = |t: &Term| {
            matches!(
                t,
                Term::Reconstruction { .. } | Term::SoftmaxCrossEntropy { .. }
            )
        };
        let losses = cfg.objective.terms.iter().filter(|t| is_loss(t)).count();
        if losses != 1 || !cfg.objective.terms.first().is_some_and(is_loss) {
            return Err(PlanError::Term {
                term: "reconstruction",
                problem: "must be the objective's first term, and its only loss".into(),
            });
        }
        for term in &cfg.objective.terms {
            terms.push(compile_term(term, &mut cx)?);
        }
        // A variational code is [μ | log σ²]: its KL term reports on it instead.
        if let Some(code) = taps.code.filter(|c| c.gaussian.is_none()) {
            terms.push(Box::new(CodeMean::compile(&mut cx, code)));
        }
    }
    let io = PlanIo {
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
        scalars: scalar_buf,
        train_labels: labels.map(|(train, _, _)| train),
        test_labels: labels.map(|(_, test, _)| test),
        amp,
    };
    // The fine-tuning's meters come first; each pretraining phase adds its own.
    let fine_meters: Vec<usize> = (0..meters.list.len()).collect();
    let seed = (cfg.seed ^ (cfg.seed >> 32)) as u32;
    let pretrain_phases = match pretraining {
        Some(spec) => pretrain::compile(
            &mut b,
            &mut meters,
            model,
            &bufs,
            &params,
            &io,
            (cfg.train_samples, cfg.test_samples, features),
            &pretrain::Fine {
                loss: cfg.objective.reconstruction_term().0,
                noise: cfg.noise,
                optimizer: cfg.optimizer,
                seed,
            },
            spec,
        )?,
        None => Vec::new(),
    };
    b.buffers[loss_acc.0].len = 2 * meters.list.len();
    b.buffers[scalar_buf.0].len = scalars.len().max(1);

    // `seed` (above) keys every draw on the device: corruption, ε, hidden samples.
    // The forward ops of layers `range`; the last layer's activation is left to the loss unless
    // `activate_last` (the decode program, which has no loss).
    let forward_layers = |range: std::ops::Range<usize>, pass: Pass, activate_last: bool| {
        let mut ops = vec![];
        for i in range {
            let (inp, out) = (model.shapes[i], model.shapes[i + 1]);
            ops.extend(layers::forward(
                &model.layers[i],
                &bufs[i],
                &bufs,
                &params,
                inp,
                out,
                pass,
                i == last && !activate_last,
            ));
        }
        ops
    };
    let forward = |pass: Pass| forward_layers(0..model.layers.len(), pass, false);
    // gather → corrupt → forward → every term's value (the reconstruction first), for one program.
    let head = |data, perm, pass: Pass, stream| {
        let mut ops = vec![Op::GatherBatch {
            data,
            perm,
            state: pass.state,
            out: input,
            batch,
            features,
            samples: pass.samples,
        }];
        if let Some((train_labels, test_labels, out)) = labels {
            ops.push(Op::Classify(ClassifyOp::GatherLabels {
                labels: if pass.training {
                    train_labels
                } else {
                    test_labels
                },
                perm,
                state: pass.state,
                out,
                rows: batch,
                samples: pass.samples,
            }));
        }
        if let Some(noise) = cfg.noise {
            ops.push(Op::Corrupt {
                x: input,
                y: model_input,
                mask: corruption_mask,
                state: pass.state,
                len: batch * features,
                image: [model.input.h, model.input.w],
                noise,
                seed,
                stream,
            });
        }
        ops.extend(forward(pass));
        for term in &terms {
            ops.extend(term.forward(&pass));
        }
        ops
    };

    let train = Pass {
        batch,
        state: train_state,
        samples: cfg.train_samples,
        training: true,
        seed,
    };
    let mut forward_backward = head(train_data, train_perm, train, TRAIN_STREAM);
    // The loss wrote the output's gradient; each layer's backward writes its parameters' gradients and
    // its input's. Terms add into those buffers after the op that wrote them: just before the layer's
    // backward reads its output's gradient, and just after it wrote its parameters'.
    let term_grads: Vec<(GradAt, Vec<Op>)> =
        terms.iter().flat_map(|t| t.backward(&train)).collect();
    let grads_at = |at: GradAt| {
        term_grads
            .iter()
            .filter(move |(place, _)| *place == at)
            .flat_map(|(_, ops)| ops.iter().cloned())
    };
    // Below the frozen layers nothing needs a gradient: the backward pass stops above them.
    for (i, layer) in model.layers.iter().enumerate().skip(model.frozen).rev() {
        forward_backward.extend(grads_at(GradAt::BeforeLayer(i)));
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
        forward_backward.extend(grads_at(GradAt::AfterLayer(i)));
    }

    // A schedule's multiplier is written first, from the step counter; every optimizer op reads it.
    let mut update: Vec<Op> = Vec::new();
    let lr_scale = cfg.lr_schedule.map(|schedule| {
        scalars.push(ScalarDesc {
            name: "lr_scale".into(),
            init: 1.0,
        });
        let scale = crate::ops::Scalar {
            buf: scalar_buf,
            index: scalars.len() - 1,
        };
        update.push(Op::Optim(OptimOp::LrSchedule {
            scale,
            state: train_state,
            step_word: group_step_word(0),
            schedule,
        }));
        scale
    });
    b.buffers[scalar_buf.0].len = scalars.len().max(1);
    // Mixed precision: a step whose scaled gradients overflowed anywhere is skipped, so every gradient
    // is checked before any parameter changes.
    if let Some(amp) = amp {
        update.extend(params.iter().filter(|p| p.trainable).map(|p| {
            Op::Optim(OptimOp::AmpCheck {
                grad: p.grad,
                amp,
                len: b.len(p.grad),
            })
        }));
    }
    update.extend(params.iter().filter(|p| p.trainable).map(|p| {
        optimizer_op(
            &mut b,
            p,
            cfg.optimizer,
            &p.name,
            train_state,
            group_step_word(p.group),
            lr_scale,
            amp,
        )
    }));
    if let Some(amp) = amp {
        update.push(Op::Optim(OptimOp::AmpUpdate { amp }));
    }
    update.push(Op::AdvanceStep { state: train_state });

    let evaluation = Pass {
        batch,
        state: eval_state,
        samples: cfg.test_samples,
        training: false,
        seed,
    };
    let mut eval = head(test_data, test_perm, evaluation, EVAL_STREAM);
    eval.push(Op::AdvanceStep { state: eval_state });

    // The model on the clean test batch, gathered straight into its input as well: what it makes of an
    // uncorrupted image. The reconstruction term's forward computes the output (its activation is fused
    // into the loss); its meters add into the evaluation accumulator, which an evaluation clears first.
    let gather_test = |out| Op::GatherBatch {
        data: test_data,
        perm: test_perm,
        state: eval_state,
        out,
        batch,
        features,
        samples: cfg.test_samples,
    };
    let mut gather_clean = vec![gather_test(input)];
    if model_input != input {
        gather_clean.push(gather_test(model_input));
    }
    // A classifier reconstructs nothing.
    let mut reconstruct = Vec::new();
    if !cfg.objective.classifies() {
        reconstruct = gather_clean.clone();
        reconstruct.extend(forward(evaluation));
        reconstruct.extend(terms[0].forward(&evaluation));
        reconstruct.push(Op::AdvanceStep { state: eval_state });
    }

    // Encode: the clean test batch up to the code. Decode: the decoder alone, from codes the host wrote,
    // with the output's activation applied.
    let codec = codec(model, &bufs);
    let (mut encode, mut decode) = (Vec::new(), Vec::new());
    if let (Some(code), Some(start)) = (
        model.code.filter(|_| codec.is_some()),
        model.decoder_start(),
    ) {
        encode = gather_clean;
        encode.extend(forward_layers(0..code + 1, evaluation, false));
        encode.push(Op::AdvanceStep { state: eval_state });
        decode = forward_layers(start..model.layers.len(), evaluation, true);
    }

    let (mut segments, mut programs) = standard_programs([
        ("forward_backward", forward_backward),
        ("update", update),
        ("eval", eval),
        ("reconstruct", reconstruct),
        ("encode", encode),
        ("decode", decode),
    ]);
    let mut phases = pretrain::append(
        pretrain_phases,
        pretraining.map_or(0, |p| p.epochs),
        pretraining.map_or(batch, |p| p.batch),
        &mut segments,
        &mut programs,
    );
    phases.push(Phase::fine_tune(batch, fine_meters));
    // Feed: the images the host wrote into the model's input (and the clean input, the loss's target),
    // forward on the evaluation path, and an autoencoder's reconstruction: `gpu-ae complete` feeds its own
    // images back through it. No gather, no step: the host owns the batch.
    let mut feed = forward(evaluation);
    if !cfg.objective.classifies() {
        feed.extend(terms[0].forward(&evaluation));
    }
    segments.push(Segment {
        name: FEED.into(),
        ops: feed,
    });
    programs.push(ProgramDesc {
        name: FEED.into(),
        segments: vec![segments.len() - 1],
    });
    Ok(Plan {
        phases,
        buffers: b.buffers,
        params,
        stats,
        meters: meters.list,
        scalars,
        objective: cfg.objective.clone(),
        segments,
        programs,
        io,
        codec,
        batch,
        features,
        train_samples: cfg.train_samples,
        test_samples: cfg.test_samples,
    })
}

/// Refuses `--precision mixed` where a layer, term, optimizer or phase has no f16 path yet.
fn check_mixed(
    model: &Model,
    cfg: &PlanConfig,
    pretraining: Option<&Pretraining>,
) -> Result<(), PlanError> {
    use crate::model::Layer;
    let refuse = |what: String| Err(PlanError::Mixed { what });
    if pretraining.is_some() {
        return refuse("layer-wise pretraining".into());
    }
    if !matches!(cfg.optimizer, Optimizer::Adam(_)) {
        let name = match cfg.optimizer {
            Optimizer::Sgd { .. } => "sgd",
            Optimizer::Rmsprop(_) => "rmsprop",
            _ => "adagrad",
        };
        return refuse(format!("the {name} optimizer"));
    }
    for layer in &model.layers {
        if !matches!(
            layer,
            Layer::Linear { .. }
                | Layer::Conv2d { .. }
                | Layer::ConvTranspose2d { .. }
                | Layer::Reshape { .. }
        ) {
            return refuse(format!("{} layers", layer.describe()));
        }
    }
    for term in &cfg.objective.terms {
        match term {
            Term::Reconstruction {
                emphasis: None,
                per_image: false,
                ..
            } => {}
            Term::Reconstruction { .. } => {
                return refuse("an emphasised or per-image reconstruction".into());
            }
            other => return refuse(format!("the {} term", other.name())),
        }
    }
    Ok(())
}

/// The optimizer's op for parameter `p`, with its state buffers (named `{state_name}.exp_avg`, … after
/// PyTorch's slots) allocated; Adam counts its steps in word `step_word` of `state`. With mixed
/// precision's loss scaler `amp`, Adam is [`OptimOp::AdamMixed`] (the only optimizer [`check_mixed`]
/// lets through).
#[allow(clippy::too_many_arguments)]
fn optimizer_op(
    b: &mut Builder,
    p: &ParamDesc,
    optimizer: Optimizer,
    state_name: &str,
    state: BufId,
    step_word: usize,
    lr_scale: Option<crate::ops::Scalar>,
    amp: Option<BufId>,
) -> Op {
    let len = b.len(p.buf);
    let slot = |b: &mut Builder, name: &str| {
        b.f32(format!("{state_name}.{name}"), len, Role::OptimizerState)
    };
    match (optimizer, amp) {
        (Optimizer::Adam(hyper), Some(amp)) => Op::Optim(OptimOp::AdamMixed {
            param: p.buf,
            grad: p.grad,
            half: p.half,
            m: slot(b, "exp_avg"),
            v: slot(b, "exp_avg_sq"),
            state,
            step_word,
            amp,
            len,
            hyper,
            lr_scale,
        }),
        (Optimizer::Adam(hyper), None) => Op::Adam {
            param: p.buf,
            grad: p.grad,
            m: slot(b, "exp_avg"),
            v: slot(b, "exp_avg_sq"),
            state,
            step_word,
            len,
            hyper,
            lr_scale,
        },
        (
            Optimizer::Sgd {
                lr,
                momentum,
                weight_decay,
            },
            _,
        ) => Op::Sgd {
            param: p.buf,
            grad: p.grad,
            velocity: slot(b, "momentum_buffer"),
            len,
            lr,
            momentum,
            weight_decay,
            lr_scale,
        },
        (Optimizer::Rmsprop(hyper), _) => Op::Optim(OptimOp::Rmsprop {
            param: p.buf,
            grad: p.grad,
            square_avg: slot(b, "square_avg"),
            len,
            hyper,
            lr_scale,
        }),
        (Optimizer::Adagrad(hyper), _) => Op::Optim(OptimOp::Adagrad {
            param: p.buf,
            grad: p.grad,
            sum: slot(b, "sum"),
            state,
            step_word,
            len,
            hyper,
            lr_scale,
        }),
    }
}

/// The state word that counts a parameter group's completed optimizer steps (Adam's t − 1): group 0, the
/// whole model today, uses the global step; a group that starts training later gets a word of its own, so
/// its bias correction starts from t = 1.
fn group_step_word(group: usize) -> usize {
    match group {
        0 => state::GLOBAL_STEP,
        g => state::GROUP_STEPS + g - 1,
    }
}

/// The code tap of layer `layer`'s output.
fn code_tap(model: &Model, bufs: &[LayerBufs], params: &[ParamDesc], layer: usize) -> CodeTap {
    let l = &bufs[layer];
    let weight = match model.layers[layer] {
        crate::model::Layer::Linear { .. } => l.weight.map(|w| (params[w].buf, params[w].grad)),
        _ => None,
    };
    CodeTap {
        layer,
        value: l.output,
        grad: l.output_grad,
        width: model.shapes[layer + 1].numel(),
        inputs: model.shapes[layer].numel(),
        act: model.layers[layer].act(),
        gaussian: model
            .gaussian_latent()
            .filter(|_| model.code == Some(layer)),
        weight,
    }
}

/// A pass's means: every meter's value (in [`Plan::meters`] order) and the objective's total, the sum of
/// the terms' values times their weights.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub total: f64,
    pub values: Vec<f64>,
}

impl Plan {
    /// Means over `samples` samples from each meter's summed value (`sums[i]` for meter i; a term's sums
    /// carry its weight already, so its mean is what enters the total), the total of the fine-tuning's
    /// terms.
    pub fn summarize(&self, sums: &[f64], samples: usize) -> Summary {
        self.summarize_phase(self.phases.len() - 1, sums, samples)
    }

    /// As [`Plan::summarize`], the total over the terms of phase `phase`.
    pub fn summarize_phase(&self, phase: usize, sums: &[f64], samples: usize) -> Summary {
        let own = &self.phases[phase].meters;
        let values: Vec<f64> = self
            .meters
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let sum = sums.get(i).copied().unwrap_or(0.0);
                match m.per {
                    Per::Element(width) => sum / (samples * width) as f64,
                    Per::Sample => sum / samples as f64,
                    Per::SumOf(j) => sum / sums.get(j).copied().unwrap_or(0.0),
                }
            })
            .collect();
        let total = self
            .meters
            .iter()
            .zip(&values)
            .enumerate()
            .filter(|(i, (m, _))| m.role.enters_total() && own.contains(i))
            .map(|(_, pair)| pair)
            .map(|(_, v)| v)
            .sum();
        Summary { total, values }
    }

    /// The training sums (slot 2i of meter i) of an accumulator read back.
    pub fn train_sums(&self, acc: &[f32]) -> Vec<f64> {
        (0..self.meters.len())
            .map(|i| acc.get(Meter::train_slot(i)).copied().unwrap_or(0.0) as f64)
            .collect()
    }

    /// The evaluation sums (slot 2i + 1 of meter i).
    pub fn eval_sums(&self, acc: &[f32]) -> Vec<f64> {
        (0..self.meters.len())
            .map(|i| acc.get(Meter::eval_slot(i)).copied().unwrap_or(0.0) as f64)
            .collect()
    }

    /// An accumulator holding `train` in the training slots and zeros elsewhere.
    pub fn accumulator(&self, train: &[f64]) -> Vec<f32> {
        let mut acc = vec![0.0; (2 * self.meters.len()).max(1)];
        for (i, &sum) in train.iter().enumerate().take(self.meters.len()) {
            acc[Meter::train_slot(i)] = sum as f32;
        }
        acc
    }

    /// Where the scalar called `name` lives (`l1.weight`, `kl_sparsity.weight`, `contractive.weight`).
    pub fn scalar(&self, name: &str) -> Option<crate::ops::Scalar> {
        self.scalars
            .iter()
            .position(|s| s.name == name)
            .map(|index| crate::ops::Scalar {
                buf: self.io.scalars,
                index,
            })
    }

    /// The program called `name` (`feed`, a pretraining phase's, …).
    pub fn program(&self, name: &str) -> Option<Program> {
        self.programs
            .iter()
            .position(|p| p.name == name)
            .map(Program)
    }

    /// The ops `program` runs, in order.
    pub fn program_ops(&self, program: Program) -> impl Iterator<Item = &Op> {
        self.programs[program.0]
            .segments
            .iter()
            .flat_map(|&s| &self.segments[s].ops)
    }

    /// The segment called `name` (`forward_backward`, `update`, `eval`, …).
    pub fn segment(&self, name: &str) -> &[Op] {
        self.segments
            .iter()
            .find(|s| s.name == name)
            .map_or(&[], |s| &s.ops)
    }

    /// Training steps in an epoch of the fine-tuning.
    pub fn steps_per_epoch(&self) -> usize {
        self.train_samples.div_ceil(self.batch)
    }
    pub fn eval_steps(&self) -> usize {
        self.test_samples.div_ceil(self.batch)
    }
    /// Training steps in an epoch of phase `phase`.
    pub fn phase_steps(&self, phase: usize) -> usize {
        self.train_samples.div_ceil(self.phases[phase].batch)
    }
    /// Whether the plan pretrains before the fine-tuning.
    pub fn pretrains(&self) -> bool {
        self.phases.len() > 1
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
        self.buffers.iter().map(BufferDesc::bytes).sum()
    }

    /// [`Plan::memory_by_role`] as one line: each group that holds anything, then the total, in MiB.
    pub fn describe_memory(&self) -> String {
        let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
        let parts: Vec<String> = self
            .memory_by_role()
            .into_iter()
            .filter(|&(_, bytes)| bytes > 0)
            .map(|(name, bytes)| format!("{:.2} {name}", mib(bytes)))
            .collect();
        format!("{} = {:.2} MiB", parts.join(" + "), mib(self.bytes()))
    }

    /// The device memory the plan allocates, by what it holds: (name, bytes) of each group in
    /// [`MEMORY_GROUPS`] order (groups may be 0), summing to [`Plan::bytes`].
    pub fn memory_by_role(&self) -> Vec<(&'static str, usize)> {
        MEMORY_GROUPS
            .iter()
            .map(|&(name, roles)| {
                let bytes = self
                    .buffers
                    .iter()
                    .filter(|b| roles.contains(&b.role))
                    .map(BufferDesc::bytes)
                    .sum();
                (name, bytes)
            })
            .collect()
    }
}

impl Plan {
    /// A plan made of explicit buffers and one op list (run as [`Program::FORWARD_BACKWARD`]), for kernel
    /// tests and benchmarks. It reads no data set: its `io` points at buffer 0.
    pub fn from_ops(buffers: Vec<BufferDesc>, ops: Vec<Op>) -> Plan {
        let z = BufId(0);
        let (segments, programs) = standard_programs([
            ("forward_backward", ops),
            ("update", Vec::new()),
            ("eval", Vec::new()),
            ("reconstruct", Vec::new()),
            ("encode", Vec::new()),
            ("decode", Vec::new()),
        ]);
        Plan {
            phases: vec![Phase::fine_tune(1, Vec::new())],
            buffers,
            params: Vec::new(),
            stats: Vec::new(),
            meters: Vec::new(),
            scalars: Vec::new(),
            objective: Objective::reconstruction(LossKind::BceWithLogits),
            segments,
            programs,
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
                scalars: z,
                train_labels: None,
                test_labels: None,
                amp: None,
            },
            codec: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Shape;
    use crate::model::variants::{DenseConfig, dense_ae};
    use crate::ops::Act;

    /// 784-16-4-16-784 on batches of 10: every group's bytes counted by hand from the layers.
    #[test]
    fn memory_by_role_counts_each_buffer_once_by_what_it_holds() {
        let cfg = DenseConfig {
            hidden: vec![16],
            latent: 4,
            act: Act::Relu,
            code_act: Act::Relu,
            output_act: Act::Sigmoid,
        };
        let model = dense_ae(Shape { c: 1, h: 28, w: 28 }, &cfg).unwrap();
        let plan = compile(
            &model,
            &PlanConfig {
                batch: 10,
                objective: Objective::reconstruction(LossKind::BceWithLogits),
                optimizer: Optimizer::Adam(AdamHyper::default()),
                train_samples: 100,
                test_samples: 30,
                noise: None,
                seed: 0,
                lr_schedule: None,
                precision: crate::plan::Precision::F32,
            },
        )
        .unwrap();
        let memory: std::collections::HashMap<_, _> = plan.memory_by_role().into_iter().collect();
        let params = (784 * 16 + 16) + (16 * 4 + 4) + (4 * 16 + 16) + (16 * 784 + 784);
        assert_eq!(memory["parameters"], 4 * params);
        assert_eq!(memory["gradients"], 4 * params);
        assert_eq!(
            memory["optimizer state"] / 4 / params,
            2,
            "Adam's two slots"
        );
        // Each layer's output and its gradient, 10 rows: 16 + 4 + 16 + 784 values a row.
        assert_eq!(memory["activation gradients"], 4 * 10 * (16 + 4 + 16 + 784));
        assert!(memory["activations"] >= memory["activation gradients"]);
        // Pixels as packed bytes, with the shuffle orders.
        assert!(memory["data"] >= 130 * 784);
        assert_eq!(memory.values().sum::<usize>(), plan.bytes());
        for role in [
            Role::Param,
            Role::Grad,
            Role::Activation,
            Role::ActivationGrad,
            Role::OptimizerState,
            Role::Stat,
            Role::Data,
            Role::Index,
            Role::State,
            Role::Scratch,
        ] {
            let groups = MEMORY_GROUPS
                .iter()
                .filter(|(_, r)| r.contains(&role))
                .count();
            assert_eq!(groups, 1, "{role:?}");
        }
        assert!(plan.describe_memory().ends_with(" MiB"));
    }
}
