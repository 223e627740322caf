//! CPU twins of RMSprop, Adagrad, the learning-rate schedule and mixed precision's Adam and loss scaling
//! (`shaders/optim.wgsl`, `shaders/amp.wgsl`, [`OptimOp`]).

use super::CpuExecutor;
use super::real::Real;
use crate::ops::optim::{AdagradHyper, LrSchedule, RmspropHyper, amp};
use crate::ops::{AdamHyper, OptimOp, Scalar};

/// `v` rounded to the nearest f16 (ties to even), as the GPU stores it, back in `T`.
pub fn round_to_f16<T: Real>(v: T) -> T {
    T::from_f32(round_f32_to_f16(v.to_f32()))
}

/// `x` rounded to the nearest f16, ties to even, as an f32: `half::f16::from_f32(x).to_f32()`, with a
/// fast path for f16's normal range (f32 exponents 2⁻¹⁴ to 2¹⁵), where rounding is dropping the low 13
/// bits of the significand to nearest even. `tests`: equal to `half` on every f32 in a sweep.
pub fn round_f32_to_f16(x: f32) -> f32 {
    let bits = x.to_bits();
    let exponent = (bits >> 23) & 0xff;
    if (113..=142).contains(&exponent) {
        let rounded = bits.wrapping_add(0x0fff + ((bits >> 13) & 1)) & !0x1fff;
        // A carry past 2¹⁵·(2 − 2⁻¹⁰) is f16's overflow to infinity: left to `half`.
        if (rounded >> 23) & 0xff <= 142 {
            return f32::from_bits(rounded);
        }
    }
    half::f16::from_f32(x).to_f32()
}

/// Whether any value is infinite or NaN (what `amp_check` looks for, on the f32 bits).
pub fn any_non_finite<T: Real>(values: &[T]) -> bool {
    values.iter().any(|v| !v.to_f32().is_finite())
}

/// RMSprop: g' = g + wd·p; v ← αv + (1 − α)g'²; p ← p − lr·g'/(√v + ε).
pub fn rmsprop<T: Real>(
    param: &mut [T],
    grad: &[T],
    square_avg: &mut [T],
    h: RmspropHyper,
    lr: f32,
) {
    let (lr, alpha, eps, wd) = (
        T::from_f32(lr),
        T::from_f32(h.alpha),
        T::from_f32(h.eps),
        T::from_f32(h.weight_decay),
    );
    for i in 0..param.len() {
        let g = grad[i] + wd * param[i];
        square_avg[i] = alpha * square_avg[i] + (T::one() - alpha) * g * g;
        param[i] -= lr * g / (square_avg[i].sqrt() + eps);
    }
}

/// Adagrad at step t (1-based): clr = lr/(1 + (t − 1)·lr_decay); g' = g + wd·p; s ← s + g'²;
/// p ← p − clr·g'/(√s + ε).
pub fn adagrad<T: Real>(
    param: &mut [T],
    grad: &[T],
    sum: &mut [T],
    h: AdagradHyper,
    lr: f32,
    t: u32,
) {
    let clr = T::from_f32(lr) / (T::one() + T::from_f64((t - 1) as f64) * T::from_f32(h.lr_decay));
    let (eps, wd) = (T::from_f32(h.eps), T::from_f32(h.weight_decay));
    for i in 0..param.len() {
        let g = grad[i] + wd * param[i];
        sum[i] += g * g;
        param[i] -= clr * g / (sum[i].sqrt() + eps);
    }
}

impl<T: Real> CpuExecutor<T> {
    /// The lr multiplier an optimizer op reads (1 without a schedule).
    pub(super) fn lr_scale(&self, scale: Option<Scalar>) -> f32 {
        scale.map_or(1.0, |s| self.scalar(s))
    }

    pub(super) fn execute_optim(&mut self, op: &OptimOp) {
        match *op {
            OptimOp::Rmsprop {
                param,
                grad,
                square_avg,
                len,
                hyper,
                lr_scale,
            } => {
                let lr = hyper.lr * self.lr_scale(lr_scale);
                let mut p = std::mem::take(self.floats_mut(param));
                let mut avg = std::mem::take(self.floats_mut(square_avg));
                rmsprop(
                    &mut p[..len],
                    &self.floats(grad)[..len],
                    &mut avg[..len],
                    hyper,
                    lr,
                );
                *self.floats_mut(param) = p;
                *self.floats_mut(square_avg) = avg;
            }
            OptimOp::Adagrad {
                param,
                grad,
                sum,
                state,
                step_word,
                len,
                hyper,
                lr_scale,
            } => {
                let lr = hyper.lr * self.lr_scale(lr_scale);
                let t = self.words(state)[step_word] + 1;
                let mut p = std::mem::take(self.floats_mut(param));
                let mut s = std::mem::take(self.floats_mut(sum));
                adagrad(
                    &mut p[..len],
                    &self.floats(grad)[..len],
                    &mut s[..len],
                    hyper,
                    lr,
                    t,
                );
                *self.floats_mut(param) = p;
                *self.floats_mut(sum) = s;
            }
            OptimOp::AdamMixed {
                param,
                grad,
                half,
                m,
                v,
                state,
                step_word,
                amp: amp_buf,
                len,
                hyper,
                lr_scale,
            } => {
                let words = self.words(amp_buf);
                if words[amp::FOUND] != 0 {
                    return;
                }
                // S is a power of two: g·(1/S) is exact, as on the GPU.
                let inverse = T::from_f32(1.0 / f32::from_bits(words[amp::SCALE]));
                let t = self.words(state)[step_word] + 1 - words[amp::SKIPPED];
                let unscaled: Vec<T> = self.floats(grad)[..len]
                    .iter()
                    .map(|&g| g * inverse)
                    .collect();
                let hyper = AdamHyper {
                    lr: hyper.lr * self.lr_scale(lr_scale),
                    ..hyper
                };
                let mut p = std::mem::take(self.floats_mut(param));
                let mut mm = std::mem::take(self.floats_mut(m));
                let mut vv = std::mem::take(self.floats_mut(v));
                super::kernels::adam(
                    &mut p[..len],
                    &unscaled[..len],
                    &mut mm[..len],
                    &mut vv[..len],
                    t,
                    hyper,
                );

                if let Some(half) = half {
                    for (h, &x) in self.floats_mut(half).iter_mut().zip(&p[..len]) {
                        *h = round_to_f16(x);
                    }
                }
                *self.floats_mut(param) = p;
                *self.floats_mut(m) = mm;
                *self.floats_mut(v) = vv;
            }
            OptimOp::AmpCheck {
                grad,
                amp: amp_buf,
                len,
            } => {
                if any_non_finite(&self.floats(grad)[..len]) {
                    self.words_mut(amp_buf)[amp::FOUND] = 1;
                }
            }
            OptimOp::AmpUpdate { amp: amp_buf } => amp::update(self.words_mut(amp_buf)),
            OptimOp::LrSchedule {
                scale,
                state,
                step_word,
                schedule,
            } => {
                let t = self.words(state)[step_word] as usize;
                let value = lr_scale_f32(&schedule, t);
                self.floats_mut(scale.buf)[scale.index] = T::from_f32(value);
            }
        }
    }
}

/// The schedule's multiplier in f32, as the kernel computes it.
pub fn lr_scale_f32(schedule: &LrSchedule, t: usize) -> f32 {
    schedule.scale(t) as f32
}

#[cfg(test)]
mod tests {
    use super::round_f32_to_f16;

    /// The fast path agrees with `half` everywhere: a sweep over f32 bit patterns (every 97th, both
    /// signs, normals, subnormals, infinities, NaN and the edges of f16's range).
    #[test]
    fn rounding_to_f16_matches_half_exactly() {
        let edges = [
            65504.0f32,
            65519.99,
            65520.0,
            65536.0,
            6.1035156e-5,
            6.097555e-5,
            5.9604645e-8,
            1.0,
            f32::INFINITY,
            f32::MIN_POSITIVE,
        ];
        let sweep = (0..u32::MAX / 97).map(|i| f32::from_bits(i * 97));
        for x in sweep.chain(edges).chain(edges.map(|e| -e)) {
            let want = half::f16::from_f32(x).to_f32();
            let got = round_f32_to_f16(x);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{x:e} ({:#010x}): {got:e}, half says {want:e}",
                x.to_bits()
            );
        }
    }
}
