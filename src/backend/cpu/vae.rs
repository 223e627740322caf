//! CPU twins of `shaders/vae.wgsl`: the variational autoencoder's ops ([`VaeOp`]). ε comes from the same
//! counter uniforms as on the GPU ([`standard_normal`]), so both backends draw the same noise; the KL's
//! partial sums cover the same 256-element groups as the GPU's, each summed here in index order (so the
//! CPU repeats its own results bit for bit).

use super::CpuExecutor;
use super::kernels::PARTIAL;
use super::noise::standard_normal;
use super::real::Real;
use crate::ops::{VaeOp, state};
use rayon::prelude::*;

/// (index of μ, index of log σ²) in stats [rows × 2·latent] of latent element i (row i / latent).
fn stat_indices(i: usize, latent: usize) -> (usize, usize) {
    let (row, unit) = (i / latent, i % latent);
    let mu = row * 2 * latent + unit;
    (mu, mu + latent)
}

/// z = μ + exp(½·log σ²)·ε and ε for every element of z [rows × latent], ε keyed by (seed, stream, step).
pub fn reparameterize<T: Real>(
    stats: &[T],
    z: &mut [T],
    eps: &mut [T],
    latent: usize,
    seed: u32,
    stream: u32,
    step: u32,
) {
    z.par_iter_mut()
        .zip(eps.par_iter_mut())
        .enumerate()
        .for_each(|(i, (z, e))| {
            let (mu, log_var) = stat_indices(i, latent);
            *e = T::from_f64(standard_normal(seed, stream, step, i as u32));
            *z = stats[mu] + (T::from_f64(0.5) * stats[log_var]).exp() * *e;
        });
}

/// dstats from dz: ∂/∂μ = dz, ∂/∂log σ² = dz·½·exp(½·log σ²)·ε (written, every row).
pub fn reparameterize_backward<T: Real>(
    dz: &[T],
    eps: &[T],
    stats: &[T],
    dstats: &mut [T],
    latent: usize,
) {
    dstats
        .par_chunks_mut(2 * latent)
        .zip(dz.par_chunks(latent))
        .zip(eps.par_chunks(latent))
        .zip(stats.par_chunks(2 * latent))
        .for_each(|(((d, dz), eps), stats)| {
            let half = T::from_f64(0.5);
            for j in 0..latent {
                d[j] = dz[j];
                d[latent + j] = dz[j] * half * (half * stats[latent + j]).exp() * eps[j];
            }
        });
}

/// e^x − 1 − x without the cancellation of the direct form near 0: x²/2·(1 + x/3·(1 + … (1 + x/17))) for
/// |x| < ½ (exact to the type's rounding), the direct form beyond (twin of `exp_excess` in vae.wgsl).
pub fn exp_excess<T: Real>(x: T) -> T {
    let half = T::from_f64(0.5);
    if x.abs() >= half {
        return x.exp() - T::one() - x;
    }
    let mut t = T::one();
    for k in (3..=17).rev() {
        t = T::one() + x / T::from_f64(k as f64) * t;
    }
    half * x * x * t
}

/// KL(N(μ, σ²) ‖ N(0, 1)) of one latent unit: −½·(1 + log σ² − μ² − σ²) = ½·(μ² + (σ² − 1 − log σ²)).
pub fn gaussian_kl_element<T: Real>(mu: T, log_var: T) -> T {
    T::from_f64(0.5) * (mu * mu + exp_excess(log_var))
}

/// partials[g] = Σ of the KL of the valid elements (the first valid·latent) in group g of 256.
pub fn gaussian_kl<T: Real>(stats: &[T], partials: &mut [T], valid: usize, latent: usize) {
    let limit = valid * latent;
    partials.par_iter_mut().enumerate().for_each(|(g, p)| {
        let mut sum = T::zero();
        for i in (g * PARTIAL).min(limit)..((g + 1) * PARTIAL).min(limit) {
            let (mu, log_var) = stat_indices(i, latent);
            sum += gaussian_kl_element(stats[mu], stats[log_var]);
        }
        *p = sum;
    });
}

/// dstats += weight/valid · (μ, ½·(σ² − 1)) on the valid rows.
pub fn gaussian_kl_grad<T: Real>(
    stats: &[T],
    dstats: &mut [T],
    valid: usize,
    latent: usize,
    weight: f32,
) {
    let scale = T::from_f32(weight) / T::from_f64(valid.max(1) as f64);
    let half = T::from_f64(0.5);
    dstats[..valid * 2 * latent]
        .par_chunks_mut(2 * latent)
        .zip(stats.par_chunks(2 * latent))
        .for_each(|(d, s)| {
            for j in 0..latent {
                d[j] += scale * s[j];
                // σ² − 1 = x + (e^x − 1 − x), accurate near x = 0.
                let log_var = s[latent + j];
                d[latent + j] += scale * half * (log_var + exp_excess(log_var));
            }
        });
}

/// target · min(1, step / steps), in f32 as the GPU computes it.
pub fn ramp_weight(step: u32, target: f32, steps: usize) -> f32 {
    target * (step as f32 / steps.max(1) as f32).min(1.0)
}

impl<T: Real> CpuExecutor<T> {
    /// Executes one variational-autoencoder op.
    pub(super) fn execute_vae(&mut self, op: &VaeOp) {
        match *op {
            VaeOp::Reparameterize {
                stats,
                z,
                eps,
                state: st,
                rows,
                latent,
                seed,
                stream,
            } => {
                let step = self.words(st)[state::GLOBAL_STEP];
                let n = rows * latent;
                self.with_outs([z, eps], |s, [z, e]| {
                    reparameterize(
                        s.floats(stats),
                        &mut z[..n],
                        &mut e[..n],
                        latent,
                        seed,
                        stream,
                        step,
                    )
                });
            }
            VaeOp::ReparameterizeBackward {
                dz,
                eps,
                stats,
                dstats,
                rows,
                latent,
            } => {
                let n = rows * latent;
                self.with_outs([dstats], |s, [d]| {
                    reparameterize_backward(
                        &s.floats(dz)[..n],
                        &s.floats(eps)[..n],
                        &s.floats(stats)[..2 * n],
                        &mut d[..2 * n],
                        latent,
                    )
                });
            }
            VaeOp::GaussianKl {
                stats,
                partials,
                state: st,
                rows: _,
                latent,
            } => {
                let valid = self.valid(st);
                self.with_outs([partials], |s, [p]| {
                    gaussian_kl(s.floats(stats), p, valid, latent)
                });
            }
            VaeOp::GaussianKlGrad {
                stats,
                dstats,
                state: st,
                rows: _,
                latent,
                weight,
            } => {
                let valid = self.valid(st);
                let weight = self.scalar(weight);
                self.with_outs([dstats], |s, [d]| {
                    gaussian_kl_grad(s.floats(stats), d, valid, latent, weight)
                });
            }
            VaeOp::RampWeight {
                weight,
                state: st,
                target,
                steps,
            } => {
                let value = ramp_weight(self.words(st)[state::GLOBAL_STEP], target, steps);
                self.floats_mut(weight.buf)[weight.index] = T::from_f32(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_excess_keeps_its_digits_near_zero() {
        for &x in &[
            -0.7, -0.49, -0.1, -1e-3, -1e-6, 1e-7, 1e-4, 0.03, 0.3, 0.4999, 0.5, 2.0,
        ] {
            // e^x − 1 − x as the series Σ xᵏ/k! (k ≥ 2) summed forwards in f64 for |x| < 1, where its
            // terms fall fast; from expm1 beyond.
            let want = if x.abs() < 1.0 {
                let (mut term, mut sum) = (x, 0.0);
                for k in 2..40 {
                    term *= x / k as f64;
                    sum += term;
                }
                sum
            } else {
                f64::exp_m1(x) - x
            };
            let got = exp_excess(x);
            assert!(
                (got - want).abs() <= 1e-14 * want.abs(),
                "f64 at {x}: {got} vs {want}"
            );
            let single = exp_excess(x as f32) as f64;
            assert!(
                (single - want).abs() <= 1e-6 * want.abs(),
                "f32 at {x}: {single} vs {want}"
            );
        }
        // The direct form in f32 near 0 is mostly rounding: what the series avoids.
        let x = 1e-3f32;
        let direct = (x.exp() - 1.0 - x) as f64;
        let want = exp_excess(1e-3f64);
        assert!((direct - want).abs() > 1e-3 * want);
    }
}
