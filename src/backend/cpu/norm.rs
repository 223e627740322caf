//! CPU twin of `shaders/batchnorm.wgsl`: BatchNorm2d forward (training and eval) and its training backward.
//!
//! x is [batch, channels, inner] (inner = H·W). Only the first `valid` rows of a batch hold samples (the last
//! batch of an epoch is padded with zero rows); statistics and gradients are taken over those rows alone.

use super::real::Real;
use super::wide::wide;
use rayon::prelude::*;

/// Lanes of the partial sums: each plane is summed in this many interleaved lanes (so the loop
/// vectorizes; the sums run compiled for the widest vectors the CPU has, through [`wide`]), the lanes then
/// added in order, then the planes in row order. A fixed order, so every run gives the same bits.
const LANES: usize = 8;

/// [Σ f(a[i], b[i])[k] for k < N] over channel c's values in the first `rows` rows (i a flat index into
/// the [batch, channels, inner] tensors a and b), each sum in the order of [`LANES`]: N sums in one pass.
#[inline(always)]
fn channel_sums<T: Real, const N: usize>(
    c: usize,
    (rows, channels, inner): (usize, usize, usize),
    (a, b): (&[T], &[T]),
    f: impl Fn(T, T) -> [T; N],
) -> [T; N] {
    let mut total = [T::zero(); N];
    let whole = inner - inner % LANES;
    for r in 0..rows {
        let at = (r * channels + c) * inner;
        let (a, b) = (&a[at..at + inner], &b[at..at + inner]);
        let mut lanes = [[T::zero(); LANES]; N];
        for (ca, cb) in a[..whole]
            .chunks_exact(LANES)
            .zip(b[..whole].chunks_exact(LANES))
        {
            for l in 0..LANES {
                let v = f(ca[l], cb[l]);
                for k in 0..N {
                    lanes[k][l] += v[k];
                }
            }
        }
        for (l, (&va, &vb)) in a[whole..].iter().zip(&b[whole..]).enumerate() {
            let v = f(va, vb);
            for k in 0..N {
                lanes[k][l] += v[k];
            }
        }
        for k in 0..N {
            for lane in lanes[k] {
                total[k] += lane;
            }
        }
    }
    total
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
        let count = T::from_f64(n as f64);
        let moments: Vec<(T, T)> = (0..channels)
            .into_par_iter()
            .map(|c| {
                let shape = (valid, channels, inner);
                wide(
                    #[inline(always)]
                    || {
                        let [sum] = channel_sums(c, shape, (x, x), |v, _| [v]);
                        let mu = sum / count;
                        let [squares] =
                            channel_sums(c, shape, (x, x), |v, _| [(v - mu) * (v - mu)]);
                        (mu, squares)
                    },
                )
            })
            .collect();
        moments
            .into_iter()
            .enumerate()
            .map(|(c, (mu, squares))| {
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
            let (g, b) = (gamma[c], beta[c]);
            for (v, &xv) in plane.iter_mut().zip(&x[k * inner..(k + 1) * inner]) {
                *v = g * (xv - mu) * inv + b;
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
    let sums: Vec<(T, T)> = (0..channels)
        .into_par_iter()
        .map(|c| {
            let (mu, inv) = (mean[c], inv_std[c]);
            let [sum_dy, sum_dy_xhat] = wide(
                #[inline(always)]
                || {
                    channel_sums(c, (valid, channels, inner), (dy, x), |d, v| {
                        [d, d * (v - mu) * inv]
                    })
                },
            );
            (sum_dy, sum_dy_xhat)
        })
        .collect();
    for (c, (sum_dy, sum_dy_xhat)) in sums.into_iter().enumerate() {
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
            let (mu, inv, db, dg) = (mean[c], inv_std[c], dbeta[c], dgamma[c]);
            let at = k * inner..(k + 1) * inner;
            for ((v, &xv), &d) in plane.iter_mut().zip(&x[at.clone()]).zip(&dy[at]) {
                let xhat = (xv - mu) * inv;
                *v = scale * (n * d - db - xhat * dg);
            }
        });
}
