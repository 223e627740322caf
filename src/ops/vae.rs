//! Ops of the variational autoencoder: the reparameterisation trick, the Gaussian KL term, and the ramp
//! that warms the KL weight up.
//!
//! The encoder's last layer writes `stats` [rows × 2·latent]: row i holds μᵢ (columns 0..latent), then
//! log σ²ᵢ (columns latent..2·latent), the layout a `Linear(·, 2·latent)` gives when its first `latent`
//! outputs are read as μ and the rest as log σ².
//!
//! ε is drawn on the device from [`crate::rng::counter_hash`] keyed by (seed, stream, state[GLOBAL_STEP],
//! element): the same bits on both backends and on every replay, on a stream of its own (see
//! `plan::EPS_TRAIN_STREAM`), so it is independent of the input corruption. Because the training step's
//! key is the global step, a resumed run draws exactly the ε the uninterrupted one drew, and repeating one
//! step (a finite-difference check) holds ε fixed.
//!
//! Kernels: `shaders/vae.wgsl` (after `shaders/counter_rng.wgsl` and `shaders/workgroup_sum.wgsl`); CPU
//! twins: `backend::cpu::vae`.

use super::{BufId, Scalar};

#[derive(Clone, Debug, PartialEq)]
pub enum VaeOp {
    /// z[i, j] = μ[i, j] + exp(½·log σ²[i, j])·ε[i, j] with ε[i, j] ~ N(0, 1) (Box–Muller on two counter
    /// uniforms of element i·latent + j); writes z [rows × latent] and the ε it drew, for backward.
    Reparameterize {
        stats: BufId,
        z: BufId,
        eps: BufId,
        state: BufId,
        rows: usize,
        latent: usize,
        seed: u32,
        stream: u32,
    },
    /// The gradient of [`VaeOp::Reparameterize`], written (not added) into dstats:
    /// ∂L/∂μ = ∂L/∂z and ∂L/∂log σ² = ∂L/∂z · ½·exp(½·log σ²)·ε (= ∂L/∂z · ½σε).
    ReparameterizeBackward {
        dz: BufId,
        eps: BufId,
        stats: BufId,
        dstats: BufId,
        rows: usize,
        latent: usize,
    },
    /// KL(N(μ, σ²) ‖ N(0, 1)) of every latent unit of the valid rows, −½·(1 + log σ² − μ² − σ²), summed
    /// in groups of 256 elements of the [valid rows × latent] values: partials[g] (the batch's summed KL).
    /// Computed as ½·(μ² + (σ² − 1 − log σ²)) with the bracket free of cancellation near σ = 1, where the
    /// direct form loses most of f32's digits (and the backends' exponentials would disagree in the rest).
    GaussianKl {
        stats: BufId,
        partials: BufId,
        state: BufId,
        rows: usize,
        latent: usize,
    },
    /// dstats += weight/valid · ∂KL/∂(μ, log σ²) on the valid rows: weight/valid · μ for μ and
    /// weight/valid · ½·(σ² − 1) for log σ²; the gradient of weight · (mean over the valid rows of the
    /// row's summed KL).
    GaussianKlGrad {
        stats: BufId,
        dstats: BufId,
        state: BufId,
        rows: usize,
        latent: usize,
        weight: Scalar,
    },
    /// weight ← target · min(1, state[GLOBAL_STEP] / steps), one thread: a weight warmed up linearly from 0
    /// over the first `steps` optimizer steps (`--kl-warmup`), computed where it is used so it needs no
    /// upload and a resumed run finds the same value.
    RampWeight {
        weight: Scalar,
        state: BufId,
        target: f32,
        steps: usize,
    },
}

impl VaeOp {
    pub fn name(&self) -> &'static str {
        match self {
            VaeOp::Reparameterize { .. } => "reparameterize",
            VaeOp::ReparameterizeBackward { .. } => "reparameterize_backward",
            VaeOp::GaussianKl { .. } => "gaussian_kl",
            VaeOp::GaussianKlGrad { .. } => "gaussian_kl_grad",
            VaeOp::RampWeight { .. } => "ramp_weight",
        }
    }

    pub fn float_outputs(&self) -> Vec<BufId> {
        match *self {
            VaeOp::Reparameterize { z, eps, .. } => vec![z, eps],
            VaeOp::ReparameterizeBackward { dstats, .. } | VaeOp::GaussianKlGrad { dstats, .. } => {
                vec![dstats]
            }
            VaeOp::GaussianKl { partials, .. } => vec![partials],
            VaeOp::RampWeight { weight, .. } => vec![weight.buf],
        }
    }

    /// Latent values the op touches: rows × latent (one for the ramp).
    fn elements(&self) -> usize {
        match *self {
            VaeOp::Reparameterize { rows, latent, .. }
            | VaeOp::ReparameterizeBackward { rows, latent, .. }
            | VaeOp::GaussianKl { rows, latent, .. }
            | VaeOp::GaussianKlGrad { rows, latent, .. } => rows * latent,
            VaeOp::RampWeight { .. } => 1,
        }
    }

    /// Arithmetic steps, counting a draw (hash, logarithm, cosine) as 40 and an exponential as 4.
    pub fn flops(&self) -> usize {
        let n = self.elements();
        match self {
            VaeOp::Reparameterize { .. } => 48 * n,
            VaeOp::ReparameterizeBackward { .. } => 8 * n,
            VaeOp::GaussianKl { .. } => 9 * n,
            VaeOp::GaussianKlGrad { .. } => 10 * n,
            VaeOp::RampWeight { .. } => 3,
        }
    }

    /// Minimal traffic in 4-byte words (see [`super::Op::bytes`]).
    pub fn words(&self) -> usize {
        let n = self.elements();
        match self {
            // μ and log σ² in; z and ε out.
            VaeOp::Reparameterize { .. } => 4 * n,
            // dz, ε, log σ² in; both halves of dstats out.
            VaeOp::ReparameterizeBackward { .. } => 5 * n,
            VaeOp::GaussianKl { .. } => 2 * n + n.div_ceil(256),
            VaeOp::GaussianKlGrad { .. } => 6 * n,
            VaeOp::RampWeight { .. } => 2,
        }
    }

    pub fn shapes(&self) -> String {
        match *self {
            VaeOp::Reparameterize { rows, latent, .. }
            | VaeOp::ReparameterizeBackward { rows, latent, .. }
            | VaeOp::GaussianKl { rows, latent, .. }
            | VaeOp::GaussianKlGrad { rows, latent, .. } => format!("{rows}×2·{latent}"),
            VaeOp::RampWeight { steps, .. } => format!("over {steps} steps"),
        }
    }
}
