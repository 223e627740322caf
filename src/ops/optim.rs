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
//! Mixed precision (`--precision mixed`) adds dynamic loss scaling, as PyTorch's `GradScaler` does it: the
//! loss's gradient is multiplied by the scale S before it is stored in f16, so every gradient behind it
//! carries S; [`OptimOp::AmpCheck`] raises a flag when any parameter gradient is not finite (an f16
//! overflow somewhere behind it); [`OptimOp::AdamMixed`] then skips the step, or updates with g/S and
//! refreshes the parameter's f16 copy; [`OptimOp::AmpUpdate`] ends the step: S/2 after an overflow, 2S
//! after [`amp::GROWTH_INTERVAL`] clean steps in a row.
//!
//! Kernels: `shaders/optim.wgsl`, `shaders/amp.wgsl`; CPU twins: `backend::cpu::kernels` (`rmsprop`,
//! `adagrad`, `lr_scale`) and `backend::cpu::optim` (`amp_*`).

use super::{AdamHyper, BufId, Scalar};

/// The loss-scaling state: one u32 buffer of [`amp::LEN`] words.
pub mod amp {
    /// The scale S, as f32 bits.
    pub const SCALE: usize = 0;
    /// Steps since the scale last changed without an overflow.
    pub const CLEAN: usize = 1;
    /// Steps skipped so far (the run's total).
    pub const SKIPPED: usize = 2;
    /// Non-zero when this step found a non-finite gradient.
    pub const FOUND: usize = 3;
    pub const LEN: usize = 4;
    /// GradScaler's defaults: initial scale 2¹⁶, doubled after 2000 clean steps, halved on overflow.
    pub const INITIAL_SCALE: f32 = 65536.0;
    pub const GROWTH_INTERVAL: u32 = 2000;

    /// A fresh state holding `scale`.
    pub fn initial(scale: f32) -> [u32; LEN] {
        [scale.to_bits(), 0, 0, 0]
    }

    /// One step's end: the state after a step that did (`found`) or did not overflow. The kernel
    /// `amp_update` and the CPU twin both compute exactly this.
    pub fn update(state: &mut [u32]) {
        let scale = f32::from_bits(state[SCALE]);
        if state[FOUND] != 0 {
            state[SCALE] = (scale * 0.5).to_bits();
            state[CLEAN] = 0;
            state[SKIPPED] += 1;
        } else if state[CLEAN] + 1 >= GROWTH_INTERVAL {
            state[SCALE] = (scale * 2.0).to_bits();
            state[CLEAN] = 0;
        } else {
            state[CLEAN] += 1;
        }
        state[FOUND] = 0;
    }
}

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
    /// Adam on an f32 master copy whose gradient carries the loss scale (`--precision mixed`): nothing when
    /// `amp[FOUND]` is set; otherwise Adam with g = grad / amp[SCALE] and t = state[step_word] + 1 −
    /// amp[SKIPPED] (skipped steps are not Adam's steps, as with GradScaler), then (for a weight)
    /// half[i] = f16(param[i]), the copy the forward and backward passes read.
    AdamMixed {
        param: BufId,
        grad: BufId,
        half: Option<BufId>,
        m: BufId,
        v: BufId,
        state: BufId,
        step_word: usize,
        amp: BufId,
        len: usize,
        hyper: AdamHyper,
        lr_scale: Option<Scalar>,
    },
    /// amp[FOUND] ← 1 when any of grad[..len] is infinite or NaN (left as it was otherwise).
    AmpCheck { grad: BufId, amp: BufId, len: usize },
    /// The step's end: [`amp::update`] on `amp`, one thread, after every optimizer op.
    AmpUpdate { amp: BufId },
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
            OptimOp::AdamMixed { .. } => "adam_mixed",
            OptimOp::AmpCheck { .. } => "amp_check",
            OptimOp::AmpUpdate { .. } => "amp_update",
        }
    }

    pub fn float_outputs(&self) -> Vec<BufId> {
        match *self {
            OptimOp::Rmsprop {
                param, square_avg, ..
            } => vec![param, square_avg],
            OptimOp::Adagrad { param, sum, .. } => vec![param, sum],
            OptimOp::LrSchedule { scale, .. } => vec![scale.buf],
            OptimOp::AdamMixed {
                param, half, m, v, ..
            } => [param, m, v].into_iter().chain(half).collect(),
            OptimOp::AmpCheck { .. } | OptimOp::AmpUpdate { .. } => vec![],
        }
    }

    pub fn flops(&self) -> usize {
        match *self {
            OptimOp::Rmsprop { len, .. } => 9 * len,
            OptimOp::Adagrad { len, .. } => 7 * len,
            OptimOp::LrSchedule { .. } => 10,
            OptimOp::AdamMixed { len, .. } => 14 * len,
            OptimOp::AmpCheck { len, .. } => len,
            OptimOp::AmpUpdate { .. } => 4,
        }
    }

    /// Minimal traffic in 4-byte words: param, grad and the state in; param and the state out.
    pub fn words(&self) -> usize {
        match *self {
            OptimOp::Rmsprop { len, .. } | OptimOp::Adagrad { len, .. } => 5 * len,
            OptimOp::LrSchedule { .. } => 2,
            OptimOp::AdamMixed { len, .. } => 7 * len + len / 2,
            OptimOp::AmpCheck { len, .. } => len,
            OptimOp::AmpUpdate { .. } => 2 * amp::LEN,
        }
    }

    pub fn shapes(&self) -> String {
        match *self {
            OptimOp::Rmsprop { len, .. }
            | OptimOp::Adagrad { len, .. }
            | OptimOp::AdamMixed { len, .. }
            | OptimOp::AmpCheck { len, .. } => format!("{len}"),
            OptimOp::AmpUpdate { .. } => String::new(),
            OptimOp::LrSchedule { schedule, .. } => format!("{schedule:?}"),
        }
    }
}
