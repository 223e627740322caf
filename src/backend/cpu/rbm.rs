//! CPU twins of `shaders/rbm.wgsl`: the restricted Boltzmann machine's ops ([`RbmOp`]). Hidden samples come
//! from the same counter uniforms as on the GPU, so both backends draw the same units; the error's partial
//! sums cover the same 256-element groups as the GPU's, each summed here in index order.

use super::CpuExecutor;
use super::kernels::PARTIAL;
use super::noise::standard_normal;
use super::real::Real;
use crate::ops::{HiddenUnits, RbmOp, state};
use crate::rng::counter_uniform;
use rayon::prelude::*;

/// s = [u < h] or h + N(0, 1) for the first `valid_len` elements of h (the valid rows), 0 beyond.
#[allow(clippy::too_many_arguments)] // the draw's key is four numbers
pub fn sample_hidden<T: Real>(
    h: &[T],
    sample: &mut [T],
    valid_len: usize,
    units: HiddenUnits,
    seed: u32,
    stream: u32,
    step: u32,
) {
    sample.par_iter_mut().enumerate().for_each(|(i, s)| {
        *s = if i >= valid_len {
            T::zero()
        } else {
            match units {
                HiddenUnits::Bernoulli => {
                    let u = T::from_f32(counter_uniform(seed, stream, step, i as u32, 0));
                    if u < h[i] { T::one() } else { T::zero() }
                }
                HiddenUnits::Gaussian => {
                    h[i] + T::from_f64(standard_normal(seed, stream, step, i as u32))
                }
            }
        }
    });
}

/// stacked [2n × cols] = [h₁; −h₀] / valid over the valid rows, 0 on padded rows (n = h₀.len() / cols).
pub fn cd_hidden<T: Real>(h0: &[T], h1: &[T], stacked: &mut [T], valid_len: usize, valid: usize) {
    let n = h0.len();
    let scale = T::one() / T::from_f64(valid.max(1) as f64);
    let (negative, positive) = stacked[..2 * n].split_at_mut(n);
    negative
        .par_iter_mut()
        .zip(positive.par_iter_mut())
        .enumerate()
        .for_each(|(i, (neg, pos))| {
            let inside = i < valid_len;
            *neg = if inside { h1[i] * scale } else { T::zero() };
            *pos = if inside { -h0[i] * scale } else { T::zero() };
        });
}

/// stacked[n..2n] = v₀; delta = (v₁ − v₀) / valid on the valid rows (0 beyond), v₁ = stacked[..n]; and
/// partials[g] = Σ (v₀ − v₁)² over group g of 256 elements' valid ones.
pub fn cd_visible<T: Real>(
    v0: &[T],
    stacked: &mut [T],
    delta: &mut [T],
    partials: &mut [T],
    valid_len: usize,
    valid: usize,
) {
    let n = v0.len();
    let scale = T::one() / T::from_f64(valid.max(1) as f64);
    let (v1, copy) = stacked[..2 * n].split_at_mut(n);
    copy.copy_from_slice(v0);
    let v1 = &*v1;
    delta[..n].par_iter_mut().enumerate().for_each(|(i, d)| {
        *d = if i < valid_len {
            (v1[i] - v0[i]) * scale
        } else {
            T::zero()
        };
    });
    partials.par_iter_mut().enumerate().for_each(|(g, p)| {
        let mut sum = T::zero();
        for i in (g * PARTIAL).min(valid_len)..((g + 1) * PARTIAL).min(valid_len) {
            let diff = v1[i] - v0[i];
            sum += diff * diff;
        }
        *p = sum;
    });
}

impl<T: Real> CpuExecutor<T> {
    /// Executes one restricted-Boltzmann-machine op.
    pub(super) fn execute_rbm(&mut self, op: &RbmOp) {
        match *op {
            RbmOp::SampleHidden {
                h,
                sample,
                state: st,
                rows,
                cols,
                units,
                seed,
                stream,
            } => {
                let step = self.words(st)[state::GLOBAL_STEP];
                let valid_len = self.valid(st) * cols;
                self.with_outs([sample], |s, [out]| {
                    sample_hidden(
                        s.floats(h),
                        &mut out[..rows * cols],
                        valid_len,
                        units,
                        seed,
                        stream,
                        step,
                    )
                });
            }
            RbmOp::CdHidden {
                h0,
                h1,
                stacked,
                state: st,
                rows,
                cols,
            } => {
                let valid = self.valid(st);
                let n = rows * cols;
                self.with_outs([stacked], |s, [out]| {
                    cd_hidden(
                        &s.floats(h0)[..n],
                        &s.floats(h1)[..n],
                        out,
                        valid * cols,
                        valid,
                    )
                });
            }
            RbmOp::CdVisible {
                v0,
                stacked,
                delta,
                partials,
                state: st,
                rows,
                cols,
            } => {
                let valid = self.valid(st);
                let n = rows * cols;
                self.with_outs([stacked, delta, partials], |s, [st_out, d, p]| {
                    cd_visible(&s.floats(v0)[..n], st_out, d, p, valid * cols, valid)
                });
            }
        }
    }
}
