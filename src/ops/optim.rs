//! Optimizers beyond Adam and SGD, and the learning-rate schedule they share, with PyTorch's definitions
//! and defaults so runs compare with `torch.optim`:
//!
//! ```text
//! RMSprop:  g' = g + wd·p;  v ← α·v + (1 − α)·g'²;  p ← p − lr·g' / (√v + ε)          (α 0.99, ε 1e-8)
//! Adagrad:  t = completed steps + 1;  clr = lr / (1 + (t − 1)·lr_decay);  g' = g + wd·p;
//!           s ← s + g'²;  p ← p − clr·g' / (√s + ε)                                      (ε 1e-10)
//! ```
//!
//! (AdamW is [`super::Op::Adam`] with [`super::AdamHyper::decoupled`].) Every optimizer multiplies its lr by
//! the plan's `lr_scale` scalar when it has one: the learning-rate schedule, which [`OptimOp::LrSchedule`]
//! writes at the start of every update from the step counter, so a schedule costs no upload and a resumed
//! run finds the same value.
//!
//! Kernels: `shaders/optim.wgsl`; CPU twins: `backend::cpu::kernels` (`rmsprop`, `adagrad`, `lr_scale`).

use super::{BufId, Scalar};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmspropHyper {
    pub lr: f32,
    pub alpha: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for RmspropHyper {
    /// `torch.optim.RMSprop`'s defaults.
    fn default() -> Self {
        RmspropHyper {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdagradHyper {
    pub lr: f32,
    pub lr_decay: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdagradHyper {
    /// `torch.optim.Adagrad`'s defaults.
    fn default() -> Self {
        AdagradHyper {
            lr: 1e-2,
            lr_decay: 0.0,
            eps: 1e-10,
            weight_decay: 0.0,
        }
    }
}

/// A learning-rate multiplier as a function of the completed optimizer steps t, in steps (the run
/// converts its epochs): a linear warm-up over the first `warmup` steps, ((t + 1)/warmup), times a decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub warmup: usize,
    pub decay: Decay,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decay {
    Constant,
    /// × gamma every `every` steps (PyTorch's StepLR, counted in steps).
    Step {
        every: usize,
        gamma: f32,
    },
    /// ½(1 + cos(π·min(t − warmup, T)/T)) with T = `total` − warmup steps (CosineAnnealingLR to 0 over the
    /// steps after the warm-up).
    Cosine {
        total: usize,
    },
}

impl LrSchedule {
    /// The multiplier at completed step `t` (f64; the kernels compute the same in f32).
    pub fn scale(&self, t: usize) -> f64 {
        let warm = if t < self.warmup {
            (t + 1) as f64 / self.warmup as f64
        } else {
            1.0
        };
        let decay = match self.decay {
            Decay::Constant => 1.0,
            Decay::Step { every, gamma } => (gamma as f64).powi((t / every.max(1)) as i32),
            Decay::Cosine { total } => {
                let span = total.saturating_sub(self.warmup).max(1);
                let into = t.saturating_sub(self.warmup).min(span);
                0.5 * (1.0 + (std::f64::consts::PI * into as f64 / span as f64).cos())
            }
        };
        warm * decay
    }

    /// The code `lr_schedule` in optim.wgsl switches on, and its two numbers.
    pub fn words(&self) -> (u32, u32, f32) {
        match self.decay {
            Decay::Constant => (0, 0, 1.0),
            Decay::Step { every, gamma } => (1, every as u32, gamma),
            Decay::Cosine { total } => (2, total as u32, 0.0),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum OptimOp {
    Rmsprop {
        param: BufId,
        grad: BufId,
        square_avg: BufId,
        len: usize,
        hyper: RmspropHyper,
        lr_scale: Option<Scalar>,
    },
    /// t = state[step_word] + 1: the parameter group's completed steps, as Adam counts them.
    Adagrad {
        param: BufId,
        grad: BufId,
        sum: BufId,
        state: BufId,
        step_word: usize,
        len: usize,
        hyper: AdagradHyper,
        lr_scale: Option<Scalar>,
    },
    /// scale ← schedule(state[step_word]), one thread, before the optimizer ops of a step.
    LrSchedule {
        scale: Scalar,
        state: BufId,
        step_word: usize,
        schedule: LrSchedule,
    },
}

impl OptimOp {
    pub fn name(&self) -> &'static str {
        match self {
            OptimOp::Rmsprop { .. } => "rmsprop",
            OptimOp::Adagrad { .. } => "adagrad",
            OptimOp::LrSchedule { .. } => "lr_schedule",
        }
    }

    pub fn float_outputs(&self) -> Vec<BufId> {
        match *self {
            OptimOp::Rmsprop {
                param, square_avg, ..
            } => vec![param, square_avg],
            OptimOp::Adagrad { param, sum, .. } => vec![param, sum],
            OptimOp::LrSchedule { scale, .. } => vec![scale.buf],
        }
    }

    pub fn flops(&self) -> usize {
        match *self {
            OptimOp::Rmsprop { len, .. } => 9 * len,
            OptimOp::Adagrad { len, .. } => 7 * len,
            OptimOp::LrSchedule { .. } => 10,
        }
    }

    /// Minimal traffic in 4-byte words: param, grad and the state in; param and the state out.
    pub fn words(&self) -> usize {
        match *self {
            OptimOp::Rmsprop { len, .. } | OptimOp::Adagrad { len, .. } => 5 * len,
            OptimOp::LrSchedule { .. } => 2,
        }
    }

    pub fn shapes(&self) -> String {
        match *self {
            OptimOp::Rmsprop { len, .. } | OptimOp::Adagrad { len, .. } => format!("{len}"),
            OptimOp::LrSchedule { schedule, .. } => format!("{schedule:?}"),
        }
    }
}
