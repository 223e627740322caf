//! Ops of restricted Boltzmann machines trained by one step of contrastive divergence (CD-1), the
//! pretraining of a deep autoencoder's layers (Hinton & Salakhutdinov 2006).
//!
//! An RBM of V visible and H hidden units shares its weight W [H × V] with the encoder layer it
//! pretrains (PyTorch's Linear layout), its hidden bias c with that layer's bias and its visible bias b with
//! the bias of the mirrored decoder layer. One CD-1 step on a batch of visible probabilities v₀:
//!
//! ```text
//! h₀ = act(v₀·Wᵀ + c)            the encoder layer's forward (sigmoid; identity for Gaussian hidden units)
//! s  ~ h₀                         SampleHidden: Bernoulli(h₀), or h₀ + N(0, 1) for Gaussian units
//! v₁ = σ(s·W + b)                 a MatmulBiasAct with W untransposed: the "reconstruction"
//! h₁ = act(v₁·Wᵀ + c)             the encoder layer's forward again
//! ΔW ∝ h₀ᵀv₀ − h₁ᵀv₁,  Δc ∝ Σ h₀ − h₁,  Δb ∝ Σ v₀ − v₁      (over the valid rows, divided by their count)
//! ```
//!
//! The update is not the gradient of a loss; the plan writes its negation into the gradient buffers so
//! that the ordinary optimizer ops descend along it. [`RbmOp::CdHidden`] stacks [h₁; −h₀]/n into one
//! [2·rows × H] buffer and [`RbmOp::CdVisible`] puts v₀ under v₁ in a [2·rows × V] buffer, so that one
//! matmul gives dW = [h₁; −h₀]ᵀ·[v₁; v₀]/n and one bias reduction dc; the visible bias gets (v₁ − v₀)/n.
//!
//! Hidden samples are drawn on the device from the counter generator keyed by (seed, stream, global
//! step, element), as the corruption and a VAE's ε are: the same bits on both backends, on every replay.
//!
//! Kernels: `shaders/rbm.wgsl` (after `shaders/counter_rng.wgsl` and `shaders/workgroup_sum.wgsl`); CPU
//! twins: `backend::cpu::rbm`.

use super::BufId;

/// How hidden units are sampled from their activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HiddenUnits {
    /// Binary stochastic units: s = 1 with probability h (h = σ(·)), else 0.
    Bernoulli,
    /// Linear units with unit-variance Gaussian noise: s = h + N(0, 1) (the top RBM of the Science paper).
    Gaussian,
}

impl HiddenUnits {
    pub fn code(self) -> u32 {
        match self {
            HiddenUnits::Bernoulli => 0,
            HiddenUnits::Gaussian => 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum RbmOp {
    /// s[i] = [u_i < h[i]] (Bernoulli) or h[i] + n_i (Gaussian) for the valid rows of h [rows × cols], u_i
    /// and n_i the counter generator's uniform and normal draws of element i; padded rows get 0.
    SampleHidden {
        h: BufId,
        sample: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
        units: HiddenUnits,
        seed: u32,
        stream: u32,
    },
    /// The hidden statistics of CD-1 over the valid rows (n of them): stacked[r] = h₁[r]/n and
    /// stacked[rows + r] = −h₀[r]/n, both [cols] wide; padded rows are 0 in both halves.
    CdHidden {
        h0: BufId,
        h1: BufId,
        stacked: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
    },
    /// The visible statistics: copies v₀ [rows × cols] under v₁ in `stacked` (rows 0..rows hold v₁, written
    /// by the reconstruction; rows..2·rows receive v₀), writes delta = (v₁ − v₀)/n on the valid rows (0 on
    /// padded ones), and the squared reconstruction error Σ (v₀ − v₁)² of the valid rows in partial sums of
    /// 256 elements.
    CdVisible {
        v0: BufId,
        stacked: BufId,
        delta: BufId,
        partials: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
    },
}

impl RbmOp {
    pub fn name(&self) -> &'static str {
        match self {
            RbmOp::SampleHidden { .. } => "sample_hidden",
            RbmOp::CdHidden { .. } => "cd_hidden",
            RbmOp::CdVisible { .. } => "cd_visible",
        }
    }

    pub fn float_outputs(&self) -> Vec<BufId> {
        match *self {
            RbmOp::SampleHidden { sample, .. } => vec![sample],
            RbmOp::CdHidden { stacked, .. } => vec![stacked],
            RbmOp::CdVisible {
                stacked,
                delta,
                partials,
                ..
            } => vec![stacked, delta, partials],
        }
    }

    fn elements(&self) -> usize {
        match *self {
            RbmOp::SampleHidden { rows, cols, .. }
            | RbmOp::CdHidden { rows, cols, .. }
            | RbmOp::CdVisible { rows, cols, .. } => rows * cols,
        }
    }

    /// Arithmetic steps, counting a draw as 40.
    pub fn flops(&self) -> usize {
        let n = self.elements();
        match self {
            RbmOp::SampleHidden { .. } => 41 * n,
            RbmOp::CdHidden { .. } => 2 * n,
            RbmOp::CdVisible { .. } => 5 * n,
        }
    }

    /// Minimal traffic in 4-byte words (see [`super::Op::bytes`]).
    pub fn words(&self) -> usize {
        let n = self.elements();
        match self {
            RbmOp::SampleHidden { .. } => 2 * n,
            // h₀ and h₁ in, both halves of the stack out.
            RbmOp::CdHidden { .. } => 4 * n,
            // v₀ and v₁ in; v₀'s copy and the delta out.
            RbmOp::CdVisible { .. } => 4 * n + n.div_ceil(256),
        }
    }

    pub fn shapes(&self) -> String {
        match *self {
            RbmOp::SampleHidden {
                rows, cols, units, ..
            } => format!("{rows}×{cols} {units:?}"),
            RbmOp::CdHidden { rows, cols, .. } | RbmOp::CdVisible { rows, cols, .. } => {
                format!("{rows}×{cols}")
            }
        }
    }
}
