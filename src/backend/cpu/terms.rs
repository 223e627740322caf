//! CPU twins of `shaders/terms.wgsl` and of `loss_emphasis` in `shaders/loss.wgsl`: the objective terms'
//! ops ([`TermOp`]). Partial sums cover the same 256-element (or 256-column) groups as on the GPU, each
//! summed in a fixed order (index order, or 8 lanes where the plain loss uses them), so the CPU repeats its
//! own results bit for bit.

use super::CpuExecutor;
use super::kernels::{PARTIAL, activation_slope, lane_sum, loss_element};
use super::real::Real;
use crate::ops::terms::{KL_RHO_HAT_EPS, TapFn, emphasis};
use crate::ops::{Act, LossKind, Scalar, TermOp, state};
use rayon::prelude::*;

/// ds/dy of the slope s = act'(·) written through the output y (see [`activation_slope`]): 1 − 2y for the
/// sigmoid, −2y for tanh, 0 for the piecewise-linear activations.
pub fn slope_derivative<T: Real>(y: T, act: Act) -> T {
    match act {
        Act::Sigmoid => T::one() - T::from_f64(2.0) * y,
        Act::Tanh => -T::from_f64(2.0) * y,
        Act::Identity | Act::Relu | Act::LeakyRelu => T::zero(),
    }
}

/// partials[g] = Σ f(x) over the elements of group g (PARTIAL elements) below `valid·cols`.
pub fn tap_sum<T: Real>(x: &[T], partials: &mut [T], valid: usize, cols: usize, f: TapFn) {
    let limit = valid * cols;
    partials.par_iter_mut().enumerate().for_each(|(g, p)| {
        let start = (g * PARTIAL).min(limit);
        let end = ((g + 1) * PARTIAL).min(limit);
        let mut sum = T::zero();
        for &v in &x[start..end] {
            sum += match f {
                TapFn::Value => v,
                TapFn::Abs => v.abs(),
                TapFn::UnitDistance => (v.abs() - T::one()).abs(),
            };
        }
        *p = sum;
    });
}

fn sign<T: Real>(v: T) -> T {
    if v > T::zero() {
        T::one()
    } else if v < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

/// grad += weight/valid · sign(x) over the first `valid·cols` elements.
pub fn l1_grad<T: Real>(x: &[T], grad: &mut [T], valid: usize, cols: usize, weight: f32) {
    let scale = T::from_f32(weight) / T::from_f64(valid.max(1) as f64);
    let limit = valid * cols;
    grad[..limit]
        .par_iter_mut()
        .zip(&x[..limit])
        .for_each(|(g, &v)| *g += scale * sign(v));
}

/// grad += weight/valid · sign(|x| − 1) · sign(x) over the first `valid·cols` elements.
pub fn binarize_grad<T: Real>(x: &[T], grad: &mut [T], valid: usize, cols: usize, weight: f32) {
    let scale = T::from_f32(weight) / T::from_f64(valid.max(1) as f64);
    let limit = valid * cols;
    grad[..limit]
        .par_iter_mut()
        .zip(&x[..limit])
        .for_each(|(g, &v)| *g += scale * sign(v.abs() - T::one()) * sign(v));
}

/// The mean of column j of b [· × cols] over its first `valid` rows, summed in row order.
fn column_mean<T: Real>(b: &[T], j: usize, valid: usize, cols: usize) -> T {
    let mut sum = T::zero();
    for i in 0..valid {
        sum += b[i * cols + j];
    }
    sum / T::from_f64(valid.max(1) as f64)
}

/// means[j] = mean of column j over the valid rows; partials[g] = valid · Σ m² over the group's columns.
pub fn bit_balance<T: Real>(
    b: &[T],
    means: &mut [T],
    partials: &mut [T],
    valid: usize,
    cols: usize,
) {
    means[..cols]
        .par_iter_mut()
        .enumerate()
        .for_each(|(j, m)| *m = column_mean(b, j, valid, cols));
    let rows = T::from_f64(valid as f64);
    for (g, p) in partials.iter_mut().enumerate() {
        let mut sum = T::zero();
        for &m in means[..cols].iter().skip(g * PARTIAL).take(PARTIAL) {
            sum += m * m;
        }
        *p = rows * sum;
    }
}

/// grad[i, j] += weight · 2·mⱼ/valid on the valid rows.
pub fn bit_balance_grad<T: Real>(
    means: &[T],
    grad: &mut [T],
    valid: usize,
    cols: usize,
    weight: f32,
) {
    let scale = T::from_f64(2.0) * T::from_f32(weight) / T::from_f64(valid.max(1) as f64);
    grad[..valid * cols].par_chunks_mut(cols).for_each(|row| {
        for (g, &m) in row.iter_mut().zip(means) {
            *g += scale * m;
        }
    });
}

/// centered = x − (column mean over the valid rows) on the valid rows, 0 on the others.
pub fn center_columns<T: Real>(x: &[T], centered: &mut [T], valid: usize, cols: usize) {
    let means: Vec<T> = (0..cols).map(|j| column_mean(x, j, valid, cols)).collect();
    centered
        .par_chunks_mut(cols)
        .enumerate()
        .for_each(|(i, row)| {
            for (j, c) in row.iter_mut().enumerate() {
                *c = if i < valid {
                    x[i * cols + j] - means[j]
                } else {
                    T::zero()
                };
            }
        });
}

/// partials[g] = valid · Σ over the group's elements of S [cols × cols] off the diagonal of (S/valid)².
pub fn decorrelate<T: Real>(cov: &[T], partials: &mut [T], valid: usize, cols: usize) {
    let n = T::from_f64(valid.max(1) as f64);
    let rows = T::from_f64(valid as f64);
    for (g, p) in partials.iter_mut().enumerate() {
        let mut sum = T::zero();
        for (e, &s) in cov[..cols * cols]
            .iter()
            .enumerate()
            .skip(g * PARTIAL)
            .take(PARTIAL)
        {
            if e / cols != e % cols {
                let c = s / n;
                sum += c * c;
            }
        }
        *p = rows * sum;
    }
}

/// grad[i, j] += 4·weight/valid² · Σₖ≠ⱼ S[j, k] · centered[i, k] on the valid rows.
pub fn decorrelate_grad<T: Real>(
    centered: &[T],
    cov: &[T],
    grad: &mut [T],
    valid: usize,
    cols: usize,
    weight: f32,
) {
    let n = T::from_f64(valid.max(1) as f64);
    let scale = T::from_f64(4.0) * T::from_f32(weight) / (n * n);
    grad[..valid * cols]
        .par_chunks_mut(cols)
        .zip(centered.par_chunks(cols))
        .for_each(|(g, c)| {
            for (j, g) in g.iter_mut().enumerate() {
                let s = &cov[j * cols..(j + 1) * cols];
                let mut sum = T::zero();
                for k in (0..cols).filter(|&k| k != j) {
                    sum += s[k] * c[k];
                }
                *g += scale * sum;
            }
        });
}

fn rho_hat_clamped<T: Real>(h: &[T], j: usize, valid: usize, cols: usize) -> T {
    let mut sum = T::zero();
    for i in 0..valid {
        sum += h[i * cols + j];
    }
    let eps = T::from_f32(KL_RHO_HAT_EPS);
    (sum / T::from_f64(valid.max(1) as f64))
        .max(eps)
        .min(T::one() - eps)
}

/// KL(ρ ‖ ρ̂) for Bernoulli means.
pub fn kl_divergence<T: Real>(rho: T, rho_hat: T) -> T {
    rho * (rho / rho_hat).ln() + (T::one() - rho) * ((T::one() - rho) / (T::one() - rho_hat)).ln()
}

/// rho_hat[j] = clamped mean of column j over the valid rows; partials[g] = valid · Σ KL over the
/// group's columns.
pub fn kl_sparsity<T: Real>(
    h: &[T],
    rho_hat: &mut [T],
    partials: &mut [T],
    valid: usize,
    cols: usize,
    rho: f32,
) {
    rho_hat[..cols]
        .par_iter_mut()
        .enumerate()
        .for_each(|(j, r)| *r = rho_hat_clamped(h, j, valid, cols));
    let rho = T::from_f32(rho);
    let rows = T::from_f64(valid as f64);
    for (g, p) in partials.iter_mut().enumerate() {
        let mut sum = T::zero();
        for &r in rho_hat[..cols].iter().skip(g * PARTIAL).take(PARTIAL) {
            sum += kl_divergence(rho, r);
        }
        *p = rows * sum;
    }
}

/// grad[i, j] += weight/valid · (−ρ/ρ̂ⱼ + (1 − ρ)/(1 − ρ̂ⱼ)) on the valid rows.
pub fn kl_sparsity_grad<T: Real>(
    rho_hat: &[T],
    grad: &mut [T],
    valid: usize,
    cols: usize,
    rho: f32,
    weight: f32,
) {
    let scale = T::from_f32(weight) / T::from_f64(valid.max(1) as f64);
    let rho = T::from_f32(rho);
    grad[..valid * cols].par_chunks_mut(cols).for_each(|row| {
        for (g, &r) in row.iter_mut().zip(rho_hat) {
            *g += scale * (-rho / r + (T::one() - rho) / (T::one() - r));
        }
    });
}

/// wsq[j] = Σₖ w[j, k]², c[j] = Σ over valid rows of act'(h)², partials[g] = Σ over the group's units of
/// c·wsq.
#[allow(clippy::too_many_arguments)]
pub fn contractive<T: Real>(
    h: &[T],
    w: &[T],
    wsq: &mut [T],
    c: &mut [T],
    partials: &mut [T],
    valid: usize,
    units: usize,
    inputs: usize,
    act: Act,
) {
    wsq[..units]
        .par_iter_mut()
        .zip(c[..units].par_iter_mut())
        .enumerate()
        .for_each(|(j, (wsq, c))| {
            let mut sq = T::zero();
            for &v in &w[j * inputs..(j + 1) * inputs] {
                sq += v * v;
            }
            let mut sum = T::zero();
            for i in 0..valid {
                let s = activation_slope(h[i * units + j], act);
                sum += s * s;
            }
            (*wsq, *c) = (sq, sum);
        });
    for (g, p) in partials.iter_mut().enumerate() {
        let mut sum = T::zero();
        for j in g * PARTIAL..((g + 1) * PARTIAL).min(units) {
            sum += c[j] * wsq[j];
        }
        *p = sum;
    }
}

/// grad[i, j] += weight/valid · wsq[j] · 2·s·s'(h) on the valid rows.
#[allow(clippy::too_many_arguments)]
pub fn contractive_grad_code<T: Real>(
    h: &[T],
    wsq: &[T],
    grad: &mut [T],
    valid: usize,
    units: usize,
    act: Act,
    weight: f32,
) {
    let scale = T::from_f64(2.0) * T::from_f32(weight) / T::from_f64(valid.max(1) as f64);
    grad[..valid * units]
        .par_chunks_mut(units)
        .zip(h.par_chunks(units))
        .for_each(|(g, h)| {
            for j in 0..units {
                let s = activation_slope(h[j], act);
                g[j] += scale * wsq[j] * s * slope_derivative(h[j], act);
            }
        });
}

/// dw[j, k] += 2·weight/valid · c[j] · w[j, k].
pub fn contractive_grad_weight<T: Real>(
    w: &[T],
    c: &[T],
    dw: &mut [T],
    valid: usize,
    inputs: usize,
    weight: f32,
) {
    let scale = T::from_f64(2.0) * T::from_f32(weight) / T::from_f64(valid.max(1) as f64);
    dw.par_chunks_mut(inputs)
        .zip(w.par_chunks(inputs))
        .zip(c)
        .for_each(|((dw, w), &cj)| {
            for (d, &v) in dw.iter_mut().zip(w) {
                *d += scale * cj * v;
            }
        });
}

/// The weighted reconstruction loss of [`TermOp::EmphasisLoss`]; `partials` holds the five
/// [`emphasis`] sections of `groups` partial sums each.
#[allow(clippy::too_many_arguments)]
pub fn emphasis_loss<T: Real>(
    kind: LossKind,
    output_act: Act,
    logits: &[T],
    target: &[T],
    mask: &[T],
    grad: &mut [T],
    recon: &mut [T],
    partials: &mut [T],
    valid: usize,
    cols: usize,
    corrupted: f32,
    clean: f32,
    per_sample: bool,
) {
    let scale = super::kernels::mean_scale::<T>(valid, cols, per_sample);
    let limit = valid * cols;
    let groups = logits.len().div_ceil(PARTIAL);
    let (wc, wk) = (T::from_f32(corrupted), T::from_f32(clean));
    let sums: Vec<[T; emphasis::SECTIONS]> = grad
        .par_chunks_mut(PARTIAL)
        .zip(recon.par_chunks_mut(PARTIAL))
        .enumerate()
        .map(|(chunk, (g, r))| {
            // Each section's terms are kept per element and summed in 8 lanes, as the plain loss
            // (kernels::loss) sums: with weights 1:1 the weighted sum is the plain loss to the bit.
            let mut terms = [[T::zero(); PARTIAL]; emphasis::SECTIONS];
            let valid_here = limit.saturating_sub(chunk * PARTIAL).min(g.len());
            for (j, (g, r)) in g.iter_mut().zip(r.iter_mut()).enumerate() {
                let i = chunk * PARTIAL + j;
                let (l, dz, y) = loss_element(kind, output_act, logits[i], target[i]);
                let m = mask[i];
                let w = if m > T::zero() { wc } else { wk };
                *r = y;
                if i < limit {
                    terms[emphasis::WEIGHTED][j] = w * l;
                    terms[emphasis::CORRUPTED_LOSS][j] = m * l;
                    terms[emphasis::CLEAN_LOSS][j] = (T::one() - m) * l;
                    terms[emphasis::CORRUPTED_COUNT][j] = m;
                    terms[emphasis::CLEAN_COUNT][j] = T::one() - m;
                    *g = w * dz * scale;
                } else {
                    *g = T::zero();
                }
            }
            let mut sum = [T::zero(); emphasis::SECTIONS];
            for (s, t) in sum.iter_mut().zip(&terms) {
                *s = lane_sum(&t[..valid_here]);
            }
            sum
        })
        .collect();
    for (g, sum) in sums.iter().enumerate() {
        for (section, &s) in sum.iter().enumerate() {
            partials[section * groups + g] = s;
        }
    }
}

impl<T: Real> CpuExecutor<T> {
    /// The rows of the batch that hold samples, as the gather recorded them.
    pub(super) fn valid(&self, st: crate::ops::BufId) -> usize {
        self.words(st)[state::VALID_ROWS] as usize
    }

    /// The value of a scalar the op reads.
    pub(super) fn scalar(&self, s: Scalar) -> f32 {
        self.floats(s.buf)[s.index].to_f32()
    }

    /// Takes float buffers `outs` out of the table (so the closure can read the others), runs `f`, and puts
    /// them back.
    pub(super) fn with_outs<const N: usize>(
        &mut self,
        outs: [crate::ops::BufId; N],
        f: impl FnOnce(&Self, [&mut [T]; N]),
    ) {
        let mut taken: [Vec<T>; N] = outs.map(|id| std::mem::take(self.floats_mut(id)));
        f(self, taken.each_mut().map(|v| v.as_mut_slice()));
        for (id, v) in outs.into_iter().zip(taken) {
            *self.floats_mut(id) = v;
        }
    }

    /// Executes one objective-term op.
    pub(super) fn execute_term(&mut self, op: &TermOp) {
        match *op {
            TermOp::TapSum {
                x,
                state: st,
                partials,
                rows: _,
                cols,
                f,
            } => {
                let valid = self.valid(st);
                self.with_outs([partials], |s, [p]| tap_sum(s.floats(x), p, valid, cols, f));
            }
            TermOp::BinarizeGrad {
                x,
                grad,
                state: st,
                rows: _,
                cols,
                weight,
            } => {
                let valid = self.valid(st);
                let weight = self.scalar(weight);
                self.with_outs([grad], |s, [g]| {
                    binarize_grad(s.floats(x), g, valid, cols, weight)
                });
            }
            TermOp::BitBalance {
                b,
                means,
                partials,
                state: st,
                rows: _,
                cols,
            } => {
                let valid = self.valid(st);
                self.with_outs([means, partials], |s, [m, p]| {
                    bit_balance(s.floats(b), m, p, valid, cols)
                });
            }
            TermOp::BitBalanceGrad {
                means,
                grad,
                state: st,
                rows: _,
                cols,
                weight,
            } => {
                let valid = self.valid(st);
                let weight = self.scalar(weight);
                self.with_outs([grad], |s, [g]| {
                    bit_balance_grad(s.floats(means), g, valid, cols, weight)
                });
            }
            TermOp::CenterColumns {
                x,
                centered,
                state: st,
                rows,
                cols,
            } => {
                let valid = self.valid(st);
                self.with_outs([centered], |s, [c]| {
                    center_columns(s.floats(x), &mut c[..rows * cols], valid, cols)
                });
            }
            TermOp::Decorrelate {
                cov,
                partials,
                state: st,
                cols,
            } => {
                let valid = self.valid(st);
                self.with_outs([partials], |s, [p]| {
                    decorrelate(s.floats(cov), p, valid, cols)
                });
            }
            TermOp::DecorrelateGrad {
                centered,
                cov,
                grad,
                state: st,
                rows: _,
                cols,
                weight,
            } => {
                let valid = self.valid(st);
                let weight = self.scalar(weight);
                self.with_outs([grad], |s, [g]| {
                    decorrelate_grad(s.floats(centered), s.floats(cov), g, valid, cols, weight)
                });
            }
            TermOp::L1Grad {
                x,
                grad,
                state: st,
                rows: _,
                cols,
                weight,
            } => {
                let valid = self.valid(st);
                let weight = self.scalar(weight);
                self.with_outs([grad], |s, [g]| {
                    l1_grad(s.floats(x), g, valid, cols, weight)
                });
            }
            TermOp::KlSparsity {
                h,
                rho_hat,
                partials,
                state: st,
                rows: _,
                cols,
                rho,
            } => {
                let valid = self.valid(st);
                self.with_outs([rho_hat, partials], |s, [r, p]| {
                    kl_sparsity(s.floats(h), r, p, valid, cols, rho)
                });
            }
            TermOp::KlSparsityGrad {
                rho_hat,
                grad,
                state: st,
                rows: _,
                cols,
                rho,
                weight,
            } => {
                let valid = self.valid(st);
                let weight = self.scalar(weight);
                self.with_outs([grad], |s, [g]| {
                    kl_sparsity_grad(s.floats(rho_hat), g, valid, cols, rho, weight)
                });
            }
            TermOp::Contractive {
                h,
                w,
                wsq,
                c,
                partials,
                state: st,
                rows: _,
                units,
                inputs,
                act,
            } => {
                let valid = self.valid(st);
                self.with_outs([wsq, c, partials], |s, [wsq, c, p]| {
                    contractive(
                        s.floats(h),
                        s.floats(w),
                        wsq,
                        c,
                        p,
                        valid,
                        units,
                        inputs,
                        act,
                    )
                });
            }
            TermOp::ContractiveGradCode {
                h,
                wsq,
                grad,
                state: st,
                rows: _,
                units,
                act,
                weight,
            } => {
                let valid = self.valid(st);
                let weight = self.scalar(weight);
                self.with_outs([grad], |s, [g]| {
                    contractive_grad_code(s.floats(h), s.floats(wsq), g, valid, units, act, weight)
                });
            }
            TermOp::ContractiveGradWeight {
                w,
                c,
                dw,
                state: st,
                rows: _,
                units,
                inputs,
                weight,
            } => {
                let valid = self.valid(st);
                let weight = self.scalar(weight);
                self.with_outs([dw], |s, [dw]| {
                    contractive_grad_weight(
                        s.floats(w),
                        s.floats(c),
                        &mut dw[..units * inputs],
                        valid,
                        inputs,
                        weight,
                    )
                });
            }
            TermOp::EmphasisLoss {
                kind,
                output_act,
                logits,
                target,
                mask,
                grad,
                recon,
                partials,
                state: st,
                rows,
                cols,
                corrupted,
                clean,
                per_sample,
            } => {
                let valid = self.valid(st);
                let n = rows * cols;
                self.with_outs([grad, recon, partials], |s, [g, r, p]| {
                    emphasis_loss(
                        kind,
                        output_act,
                        &s.floats(logits)[..n],
                        s.floats(target),
                        s.floats(mask),
                        &mut g[..n],
                        &mut r[..n],
                        p,
                        valid,
                        cols,
                        corrupted,
                        clean,
                        per_sample,
                    )
                });
            }
        }
    }
}
