//! CPU twin of `shaders/batchnorm.wgsl`: BatchNorm2d forward (training and eval) and its training backward.
//!
//! x is [batch, channels, inner] (inner = H·W). Only the first `valid` rows of a batch hold samples (the last
//! batch of an epoch is padded with zero rows); statistics and gradients are taken over those rows alone.

use super::real::Real;
use rayon::prelude::*;

/// Values of channel c over the first `rows` rows, in row-major order.
fn channel<T: Real>(
    x: &[T],
    c: usize,
    rows: usize,
    channels: usize,
    inner: usize,
) -> impl Iterator<Item = T> + '_ {
    (0..rows).flat_map(move |r| {
        x[(r * channels + c) * inner..(r * channels + c + 1) * inner]
            .iter()
            .copied()
    })
}

/// Training: per channel, μ = mean and σ² = biased variance (two passes) of the valid rows; inv_std = 1/√(σ²+ε);
/// running_mean ← (1−m)·running_mean + m·μ; running_var ← (1−m)·running_var + m·σ²·n/(n−1) (n values; PyTorch
/// stores the unbiased variance). Eval: μ, σ² are the running statistics and mean / inv_std are not written.
/// Either way y = γ·(x − μ)·inv_std + β for every row, padded ones included.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm2d<T: Real>(
    x: &[T],
    y: &mut [T],
    gamma: &[T],
    beta: &[T],
    mean: &mut [T],
    inv_std: &mut [T],
    running_mean: &mut [T],
    running_var: &mut [T],
    (batch, channels, inner, valid): (usize, usize, usize, usize),
    momentum: f32,
    eps: f32,
    training: bool,
) {
    let eps = T::from_f32(eps);
    let stats: Vec<(T, T)> = if training {
        let n = (valid * inner).max(1);
        let m = T::from_f32(momentum);
        (0..channels)
            .map(|c| {
                let count = T::from_f64(n as f64);
                let mut sum = T::zero();
                channel(x, c, valid, channels, inner).for_each(|v| sum += v);
                let mu = sum / count;
                let mut squares = T::zero();
                channel(x, c, valid, channels, inner).for_each(|v| squares += (v - mu) * (v - mu));
                let var = squares / count;
                let unbiased = squares / T::from_f64((n.max(2) - 1) as f64);
                mean[c] = mu;
                inv_std[c] = T::one() / (var + eps).sqrt();
                running_mean[c] = (T::one() - m) * running_mean[c] + m * mu;
                running_var[c] = (T::one() - m) * running_var[c] + m * unbiased;
                (mu, inv_std[c])
            })
            .collect()
    } else {
        (0..channels)
            .map(|c| (running_mean[c], T::one() / (running_var[c] + eps).sqrt()))
            .collect()
    };
    y[..batch * channels * inner]
        .par_chunks_mut(inner.max(1))
        .enumerate()
        .for_each(|(k, plane)| {
            let c = k % channels;
            let (mu, inv) = stats[c];
            for (v, &xv) in plane.iter_mut().zip(&x[k * inner..(k + 1) * inner]) {
                *v = gamma[c] * (xv - mu) * inv + beta[c];
            }
        });
}

/// Backward of training-mode BatchNorm2d over the valid rows, n = valid·inner values per channel, x̂ = (x − μ)·inv_std:
/// dβ = Σ dy, dγ = Σ dy·x̂, dx = γ·inv_std/n · (n·dy − dβ − x̂·dγ); padded rows get dx = 0.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm2d_backward<T: Real>(
    x: &[T],
    dy: &[T],
    dx: &mut [T],
    gamma: &[T],
    dgamma: &mut [T],
    dbeta: &mut [T],
    mean: &[T],
    inv_std: &[T],
    (batch, channels, inner, valid): (usize, usize, usize, usize),
) {
    for c in 0..channels {
        let (mut sum_dy, mut sum_dy_xhat) = (T::zero(), T::zero());
        for (d, xv) in
            channel(dy, c, valid, channels, inner).zip(channel(x, c, valid, channels, inner))
        {
            sum_dy += d;
            sum_dy_xhat += d * (xv - mean[c]) * inv_std[c];
        }
        dbeta[c] = sum_dy;
        dgamma[c] = sum_dy_xhat;
    }
    let n = T::from_f64((valid * inner).max(1) as f64);
    dx[..batch * channels * inner]
        .par_chunks_mut(inner.max(1))
        .enumerate()
        .for_each(|(k, plane)| {
            let (r, c) = (k / channels, k % channels);
            if r >= valid {
                plane.fill(T::zero());
                return;
            }
            let scale = gamma[c] * inv_std[c] / n;
            for (s, v) in plane.iter_mut().enumerate() {
                let i = k * inner + s;
                let xhat = (x[i] - mean[c]) * inv_std[c];
                *v = scale * (n * dy[i] - dbeta[c] - xhat * dgamma[c]);
            }
        });
}
