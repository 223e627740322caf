//! Ops of the objective terms beyond the plain reconstruction loss: penalties on an activation (L1, KL
//! sparsity, contractive, and the hashing code's binarisation, bit balance and decorrelation), the
//! statistics the run reports about them, and the emphasised reconstruction.
//!
//! Penalty weights are [`Scalar`]s: read from the plan's scalar buffer when the kernel runs.
//!
//! Every op here works on the *valid rows* of a batch, the count `state[VALID_ROWS]` that the batch gather
//! wrote ([`super::Op::GatherBatch`]): the padded rows of a last partial batch neither enter a batch
//! statistic (ρ̂) nor receive a gradient. Ops whose name ends in `Grad` **add** into a gradient buffer that
//! an earlier op of the step wrote (the compiler orders them after it); the others write what they name.
//!
//! Value ops write one partial sum per 256-element (or 256-column) group into `partials`, which a
//! [`super::Op::ReduceSum`] adds into the term's accumulator slot: the same two-stage, fixed-order sum the
//! reconstruction loss uses, so CPU results repeat bit for bit.
//!
//! Kernels: `shaders/terms.wgsl` (and `loss_emphasis` in `shaders/loss.wgsl`); CPU twins:
//! `backend::cpu::terms`.

use super::{Act, BufId, LossKind, Scalar};

/// Lower and upper clamp of ρ̂ in KL sparsity, so ln ρ̂ and 1/(1 − ρ̂) stay finite when a unit is dead or
/// saturated over a whole batch.
pub const KL_RHO_HAT_EPS: f32 = 1e-6;

/// Sections of [`TermOp::EmphasisLoss`]'s partial sums, each `⌈rows·cols/256⌉` long, in this order.
pub mod emphasis {
    /// Σ w·l: the weighted loss, the term's value.
    pub const WEIGHTED: usize = 0;
    /// Σ m·l: the loss on corrupted components.
    pub const CORRUPTED_LOSS: usize = 1;
    /// Σ (1 − m)·l: the loss on the others.
    pub const CLEAN_LOSS: usize = 2;
    /// Σ m and Σ (1 − m): how many components were corrupted, and not.
    pub const CORRUPTED_COUNT: usize = 3;
    pub const CLEAN_COUNT: usize = 4;
    pub const SECTIONS: usize = 5;
}

/// What [`TermOp::TapSum`] sums of each element x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapFn {
    /// x (the code's mean activation).
    Value,
    /// |x| (L1).
    Abs,
    /// ||x| − 1|: how far x is from the nearer of ±1 (binarisation).
    UnitDistance,
}

impl TapFn {
    /// The code `tap_sum` in terms.wgsl switches on.
    pub fn code(self) -> u32 {
        match self {
            TapFn::Value => 0,
            TapFn::Abs => 1,
            TapFn::UnitDistance => 2,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TermOp {
    /// partials[g] = Σ f(x[i]) over the elements i of group g (i in 256g..256g + 256) that lie in valid
    /// rows of x [rows × cols] ([`TapFn`]: x, |x| or ||x| − 1|).
    TapSum {
        x: BufId,
        state: BufId,
        partials: BufId,
        rows: usize,
        cols: usize,
        f: TapFn,
    },
    /// grad[i] += weight/valid · sign(x[i]) on valid rows: the gradient of weight · (mean over the valid
    /// rows of Σⱼ |xⱼ|), with sign(0) = 0 (the subgradient `torch.abs` uses).
    L1Grad {
        x: BufId,
        grad: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
        weight: Scalar,
    },
    /// grad[i] += weight/valid · sign(|x[i]| − 1) · sign(x[i]) on valid rows: the gradient of
    /// weight · (mean over the valid rows of Σⱼ ||xⱼ| − 1|), the binarisation penalty, with sign(0) = 0 at
    /// the kinks (x = 0 and |x| = 1, where a tanh code saturates in f32).
    BinarizeGrad {
        x: BufId,
        grad: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
        weight: Scalar,
    },
    /// For every column j of b [rows × cols]: mⱼ = mean of b[·, j] over the valid rows, written to
    /// `means`; partials[g] = valid · Σ over the columns 256g..256g + 256 of mⱼ² (the bit balance
    /// penalty Σⱼ mⱼ², counted once per valid row as [`TermOp::KlSparsity`]'s value is).
    BitBalance {
        b: BufId,
        means: BufId,
        partials: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
    },
    /// grad[i, j] += weight · 2·mⱼ/valid on valid rows: the gradient of weight · Σⱼ mⱼ², since
    /// ∂mⱼ/∂b[i, j] = 1/valid.
    BitBalanceGrad {
        means: BufId,
        grad: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
        weight: Scalar,
    },
    /// centered[i, j] = x[i, j] − mⱼ on valid rows (mⱼ the mean of column j over them) and 0 on padded
    /// rows, so that centeredᵀ·centered (an [`super::Op::Matmul`]) is S = valid · Cov, the summed
    /// products about the mean over the valid rows alone.
    CenterColumns {
        x: BufId,
        centered: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
    },
    /// The decorrelation penalty from S = centeredᵀ·centered [cols × cols] (see
    /// [`TermOp::CenterColumns`]): with C = S/valid the population covariance over the valid rows,
    /// partials[g] = valid · Σ over the elements 256g..256g + 256 of S with j ≠ k of C[j, k]² (the
    /// batch's Σⱼ≠ₖ Cⱼₖ², counted once per valid row).
    Decorrelate {
        cov: BufId,
        partials: BufId,
        state: BufId,
        cols: usize,
    },
    /// grad[i, j] += 4·weight/valid² · Σₖ≠ⱼ S[j, k] · centered[i, k] on valid rows: the gradient of
    /// weight · Σⱼ≠ₖ Cⱼₖ², which is (4/valid) · Σₖ≠ⱼ Cⱼₖ · (b[i, k] − mₖ) per unit of weight (the mean's
    /// own dependence on b drops out, since every column of centered sums to 0).
    DecorrelateGrad {
        centered: BufId,
        cov: BufId,
        grad: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
        weight: Scalar,
    },
    /// For every column j of h [rows × cols]: ρ̂ⱼ = mean of h[·, j] over the valid rows, clamped into
    /// [ε, 1 − ε] ([`KL_RHO_HAT_EPS`]) and written to `rho_hat`; partials[g] = valid · Σ over the columns
    /// 256g..256g + 256 of KL(ρ ‖ ρ̂ⱼ) = ρ·ln(ρ/ρ̂ⱼ) + (1 − ρ)·ln((1 − ρ)/(1 − ρ̂ⱼ)). (Multiplying by valid
    /// makes the epoch's sum over batches, divided by the samples, the batch-size-weighted mean.)
    KlSparsity {
        h: BufId,
        rho_hat: BufId,
        partials: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
        rho: f32,
    },
    /// grad[i, j] += weight/valid · (−ρ/ρ̂ⱼ + (1 − ρ)/(1 − ρ̂ⱼ)) on valid rows: the gradient of
    /// weight · Σⱼ KL(ρ ‖ ρ̂ⱼ), since ∂ρ̂ⱼ/∂h[i, j] = 1/valid.
    KlSparsityGrad {
        rho_hat: BufId,
        grad: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
        rho: f32,
        weight: Scalar,
    },
    /// The contractive penalty of a dense layer h = act(x·Wᵀ + b), h [rows × units], W [units × inputs].
    /// Its Jacobian is ∂h/∂x = diag(s)·W with s = act'(h), so ‖J‖²_F = Σⱼ sⱼ²·‖Wⱼ‖². Writes
    /// wsq[j] = Σₖ W[j, k]², c[j] = Σ over valid rows i of s[i, j]², and
    /// partials[g] = Σ over the units 256g..256g + 256 of c[j]·wsq[j]: the batch's summed ‖J‖²_F.
    Contractive {
        h: BufId,
        w: BufId,
        wsq: BufId,
        c: BufId,
        partials: BufId,
        state: BufId,
        rows: usize,
        units: usize,
        inputs: usize,
        act: Act,
    },
    /// grad[i, j] += weight/valid · wsq[j] · 2·s·s'(h) on valid rows, with s = act'(h) and s' = ds/dh
    /// (sigmoid: s = h(1 − h), s' = 1 − 2h; tanh: s = 1 − h², s' = −2h; piecewise-linear: s' = 0): the
    /// penalty's gradient through the code, which the layer's backward then carries to W, b and x.
    ContractiveGradCode {
        h: BufId,
        wsq: BufId,
        grad: BufId,
        state: BufId,
        rows: usize,
        units: usize,
        act: Act,
        weight: Scalar,
    },
    /// dw[j, k] += 2·weight/valid · c[j] · w[j, k]: the penalty's gradient through ‖Wⱼ‖² directly.
    ContractiveGradWeight {
        w: BufId,
        c: BufId,
        dw: BufId,
        state: BufId,
        rows: usize,
        units: usize,
        inputs: usize,
        weight: Scalar,
    },
    /// The reconstruction loss of [`super::Op::Loss`] with a weight per element, w = `corrupted` where
    /// mask = 1 (the corruption changed that component) and `clean` where mask = 0: grad = w·∂l/∂z / (valid·
    /// cols), recon = act(z), and partials in the [`emphasis`] sections (Σ w·l, Σ m·l, Σ (1 − m)·l, Σ m,
    /// Σ (1 − m) over valid elements, one partial per 256 elements each). With both weights 1 it computes
    /// exactly what `Loss` does; with `per_sample` the gradient is w·∂l/∂z / valid, as `Loss`'s.
    EmphasisLoss {
        kind: LossKind,
        output_act: Act,
        logits: BufId,
        target: BufId,
        mask: BufId,
        grad: BufId,
        recon: BufId,
        partials: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
        corrupted: f32,
        clean: f32,
        per_sample: bool,
    },
}

impl TermOp {
    pub fn name(&self) -> &'static str {
        match self {
            TermOp::TapSum { .. } => "tap_sum",
            TermOp::L1Grad { .. } => "l1_grad",
            TermOp::BinarizeGrad { .. } => "binarize_grad",
            TermOp::BitBalance { .. } => "bit_balance",
            TermOp::BitBalanceGrad { .. } => "bit_balance_grad",
            TermOp::CenterColumns { .. } => "center_columns",
            TermOp::Decorrelate { .. } => "decorrelate",
            TermOp::DecorrelateGrad { .. } => "decorrelate_grad",
            TermOp::KlSparsity { .. } => "kl_sparsity",
            TermOp::KlSparsityGrad { .. } => "kl_sparsity_grad",
            TermOp::Contractive { .. } => "contractive",
            TermOp::ContractiveGradCode { .. } => "contractive_grad_code",
            TermOp::ContractiveGradWeight { .. } => "contractive_grad_weight",
            TermOp::EmphasisLoss { .. } => "loss_emphasis",
        }
    }

    pub fn float_outputs(&self) -> Vec<BufId> {
        match *self {
            TermOp::TapSum { partials, .. } | TermOp::Decorrelate { partials, .. } => {
                vec![partials]
            }
            TermOp::L1Grad { grad, .. }
            | TermOp::BinarizeGrad { grad, .. }
            | TermOp::BitBalanceGrad { grad, .. }
            | TermOp::DecorrelateGrad { grad, .. }
            | TermOp::KlSparsityGrad { grad, .. }
            | TermOp::ContractiveGradCode { grad, .. } => vec![grad],
            TermOp::KlSparsity {
                rho_hat, partials, ..
            } => vec![rho_hat, partials],
            TermOp::BitBalance {
                means, partials, ..
            } => vec![means, partials],
            TermOp::CenterColumns { centered, .. } => vec![centered],
            TermOp::Contractive {
                wsq, c, partials, ..
            } => vec![wsq, c, partials],
            TermOp::ContractiveGradWeight { dw, .. } => vec![dw],
            TermOp::EmphasisLoss {
                grad,
                recon,
                partials,
                ..
            } => vec![grad, recon, partials],
        }
    }

    /// Elements of the activation the op reads: rows × columns (the covariance's cols × cols for
    /// [`TermOp::Decorrelate`]).
    fn elements(&self) -> usize {
        match *self {
            TermOp::Decorrelate { cols, .. } => cols * cols,
            TermOp::TapSum { rows, cols, .. }
            | TermOp::L1Grad { rows, cols, .. }
            | TermOp::BinarizeGrad { rows, cols, .. }
            | TermOp::BitBalance { rows, cols, .. }
            | TermOp::BitBalanceGrad { rows, cols, .. }
            | TermOp::CenterColumns { rows, cols, .. }
            | TermOp::DecorrelateGrad { rows, cols, .. }
            | TermOp::KlSparsity { rows, cols, .. }
            | TermOp::KlSparsityGrad { rows, cols, .. }
            | TermOp::EmphasisLoss { rows, cols, .. } => rows * cols,
            TermOp::Contractive { rows, units, .. }
            | TermOp::ContractiveGradCode { rows, units, .. }
            | TermOp::ContractiveGradWeight { rows, units, .. } => rows * units,
        }
    }

    pub fn flops(&self) -> usize {
        let n = self.elements();
        match *self {
            TermOp::TapSum { .. } => n,
            TermOp::L1Grad { .. } | TermOp::KlSparsityGrad { .. } => 2 * n,
            TermOp::BinarizeGrad { .. } => 4 * n,
            TermOp::BitBalance { cols, .. } => n + 2 * cols,
            TermOp::BitBalanceGrad { .. } => 2 * n,
            TermOp::CenterColumns { .. } => 2 * n,
            TermOp::Decorrelate { .. } => 3 * n,
            TermOp::DecorrelateGrad { cols, .. } => 2 * n * cols,
            TermOp::KlSparsity { cols, .. } => n + 8 * cols,
            TermOp::Contractive { units, inputs, .. } => 3 * n + 2 * units * inputs,
            TermOp::ContractiveGradCode { .. } => 6 * n,
            TermOp::ContractiveGradWeight { units, inputs, .. } => 3 * units * inputs,
            TermOp::EmphasisLoss { .. } => 14 * n,
        }
    }

    /// Minimal traffic in 4-byte words (see [`super::Op::bytes`]).
    pub fn words(&self) -> usize {
        let n = self.elements();
        match *self {
            TermOp::TapSum { .. } => n + n.div_ceil(256),
            TermOp::L1Grad { .. } | TermOp::BinarizeGrad { .. } => 3 * n,
            TermOp::BitBalance { cols, .. } => n + cols + cols.div_ceil(256),
            TermOp::BitBalanceGrad { cols, .. } => 2 * n + cols,
            TermOp::CenterColumns { .. } => 2 * n,
            TermOp::Decorrelate { .. } => n + n.div_ceil(256),
            // centered and grad in, grad out; the covariance once.
            TermOp::DecorrelateGrad { cols, .. } => 3 * n + cols * cols,
            TermOp::KlSparsity { cols, .. } => n + cols + cols.div_ceil(256),
            TermOp::KlSparsityGrad { cols, .. } => 2 * n + cols,
            TermOp::Contractive { units, inputs, .. } => n + units * inputs + 2 * units,
            TermOp::ContractiveGradCode { units, .. } => 3 * n + units,
            TermOp::ContractiveGradWeight { units, inputs, .. } => 3 * units * inputs + units,
            TermOp::EmphasisLoss { .. } => 5 * n + 5 * n.div_ceil(256),
        }
    }

    pub fn shapes(&self) -> String {
        match *self {
            TermOp::TapSum { rows, cols, .. }
            | TermOp::L1Grad { rows, cols, .. }
            | TermOp::BinarizeGrad { rows, cols, .. }
            | TermOp::BitBalance { rows, cols, .. }
            | TermOp::BitBalanceGrad { rows, cols, .. }
            | TermOp::CenterColumns { rows, cols, .. }
            | TermOp::KlSparsity { rows, cols, .. }
            | TermOp::KlSparsityGrad { rows, cols, .. } => format!("{rows}×{cols}"),
            TermOp::Decorrelate { cols, .. } => format!("cov {cols}×{cols}"),
            TermOp::DecorrelateGrad { rows, cols, .. } => {
                format!("{rows}×{cols} cov {cols}×{cols}")
            }
            TermOp::Contractive {
                rows,
                units,
                inputs,
                ..
            }
            | TermOp::ContractiveGradWeight {
                rows,
                units,
                inputs,
                ..
            } => format!("h {rows}×{units} w {units}×{inputs}"),
            TermOp::ContractiveGradCode { rows, units, .. } => format!("{rows}×{units}"),
            TermOp::EmphasisLoss {
                kind, rows, cols, ..
            } => format!("{rows}×{cols} {kind:?} weighted"),
        }
    }
}
