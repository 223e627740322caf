//! The scalar types the CPU backend runs in: f32 (the engine's reference) and f64 (for gradient checks).

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Real:
    Copy
    + Send
    + Sync
    + Default
    + Debug
    + PartialOrd
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    /// exp(x) for x ≤ 0. In f32 a polynomial without a libm call, so loops around it vectorize (within 2 ulp
    /// of libm; below −87.3, where exp(x) is under f32's smallest normal, it is 0); in f64 libm's exp.
    fn exp_nonpositive(self) -> Self;
    /// ln(u) for 1 ≤ u ≤ 2, as [`Real::exp_nonpositive`]: a polynomial in f32, libm in f64.
    fn ln_one_to_two(self) -> Self;
    fn cos(self) -> Self;
    fn sqrt(self) -> Self;
    fn abs(self) -> Self;
    fn tanh(self) -> Self;
    fn powi(self, n: i32) -> Self;
    fn zero() -> Self {
        Self::from_f64(0.0)
    }
    fn one() -> Self {
        Self::from_f64(1.0)
    }
    fn max(self, other: Self) -> Self {
        if self > other { self } else { other }
    }
    fn min(self, other: Self) -> Self {
        if self < other { self } else { other }
    }

    /// C ← α·A·B + β·C on strided views (element (i, j) of X at i·rs + j·cs), single-threaded.
    ///
    /// # Safety
    /// The pointers and strides must describe valid, non-overlapping m×k, k×n and m×n views.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

macro_rules! impl_real {
    ($t:ty, $gemm:path, $exp_nonpositive:expr, $ln_one_to_two:expr) => {
        impl Real for $t {
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn exp_nonpositive(self) -> Self {
                $exp_nonpositive(self)
            }
            #[inline(always)]
            fn ln_one_to_two(self) -> Self {
                $ln_one_to_two(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn powi(self, n: i32) -> Self {
                <$t>::powi(self, n)
            }
            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                // SAFETY: forwarded from the caller's contract.
                unsafe { $gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
            }
        }
    };
}

impl_real!(
    f32,
    matrixmultiply::sgemm,
    exp_nonpositive_f32,
    ln_one_to_two_f32
);
impl_real!(f64, matrixmultiply::dgemm, f64::exp, f64::ln);

/// exp(x) for x ≤ 0 (Cephes' expf): x = n·ln 2 + r with |r| ≲ ln 2 / 2, exp(r) by a degree-7 polynomial,
/// 2ⁿ put in the exponent bits. Branch-free (selects only) and without rounding instructions, so it
/// vectorizes on any x86-64.
#[inline(always)]
fn exp_nonpositive_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, the first exact in few bits, so n·LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Below this exp(x) is under f32's smallest normal (2⁻¹²⁶).
    const LOWEST: f32 = -87.336_54;
    let xc = if x < LOWEST { LOWEST } else { x };
    // n = round(x·log₂e) for x ≤ 0: truncation of (t − 0.5) rounds half away from zero.
    let n = (xc * LOG2E - 0.5) as i32;
    let nf = n as f32;
    let r = xc - nf * LN2_HI - nf * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r2 + r + 1.0;
    let scale = f32::from_bits(((n + 127) as u32) << 23);
    if x < LOWEST { 0.0 } else { y * scale }
}

/// ln(u) for 1 ≤ u ≤ 2 (Cephes' logf): u = 2ᵉ·(1 + f) with e ∈ {0, 1} and −0.29 < f < 0.42, ln(1 + f) by a
/// polynomial, plus e·ln 2 in two parts. Branch-free, so it vectorizes.
#[inline(always)]
pub(crate) fn ln_one_to_two_f32(u: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let high = u >= std::f32::consts::SQRT_2;
    // Both exact: u·0.5 is a power-of-two scaling, and u − 1 for u ∈ [1, 2] is exact (Sterbenz).
    let f = if high { u * 0.5 - 1.0 } else { u - 1.0 };
    let e = if high { 1.0f32 } else { 0.0 };
    let z = f * f;
    let p = ((((((((7.037_683_6e-2 * f - 1.151_461e-1) * f + 1.167_699_9e-1) * f
        - 1.242_014_1e-1)
        * f
        + 1.424_932_3e-1)
        * f
        - 1.666_805_8e-1)
        * f
        + 2.000_071_5e-1)
        * f
        - 2.499_999_4e-1)
        * f
        + 3.333_333e-1)
        * f
        * z;
    let y = p + e * LN2_LO - 0.5 * z;
    f + y + e * LN2_HI
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Units in the last place between a and b (both finite, same sign or zero).
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_nonpositive_is_within_two_ulp_of_libm() {
        let mut worst = 0;
        // Every 97th f32 in [−87.3, 0], plus the ends.
        let mut bits = 0u32;
        while let Some(x) = Some(-f32::from_bits(bits)).filter(|&x| x >= -87.3) {
            let want = (x as f64).exp() as f32;
            worst = worst.max(ulps(exp_nonpositive_f32(x), want));
            bits += 97;
        }
        assert!(worst <= 2, "worst {worst} ulp");
        assert_eq!(exp_nonpositive_f32(0.0), 1.0);
        assert_eq!(exp_nonpositive_f32(-1000.0), 0.0);
        assert_eq!(exp_nonpositive_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive_f32(-87.0) > 0.0);
    }

    #[test]
    fn ln_one_to_two_is_within_two_ulp_of_libm() {
        let (mut worst, mut u) = (0, 1.0f32);
        while u <= 2.0 {
            let want = (u as f64).ln() as f32;
            worst = worst.max(ulps(ln_one_to_two_f32(u), want));
            u = f32::from_bits(u.to_bits() + 7);
        }
        assert!(worst <= 2, "worst {worst} ulp");
        assert_eq!(ln_one_to_two_f32(1.0), 0.0);
    }
}
