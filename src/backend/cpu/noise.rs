//! CPU twin of `shaders/noise.wgsl`: input corruption for denoising autoencoders.
//!
//! Element i of step `step` draws uniforms u₀ = counter_uniform(seed, stream, step, i, 0) and u₁ (draw 1),
//! exactly the f32 values the GPU draws, so Mask and SaltPepper choose the same elements on both backends.
//! Gaussian: z = √(−2 ln u₀)·cos(2π(u₁ − ½)) in f32 ([`standard_normal_f32`]; Box–Muller; the shifted
//! angle stays in (−π, π), where GPU cos is most accurate), y = clamp(x + σz, 0, 1). Mask: y = 0 if u₀ < ν
//! else x. SaltPepper: if u₀ < p, y = 0 when u₁ < ½ and 1 otherwise; else y = x. Square: 0 inside a
//! size × size square placed per sample (see [`Key::occluded`]), x elsewhere.

use super::real::{Real, ln_one_to_two_f32};
use super::wide::wide;
use crate::ops::Noise;
use crate::rng::counter_uniform;
use rayon::prelude::*;

/// The standard normal draw of element `index` in f32, from the same uniforms as [`standard_normal`]:
/// √(−2 ln u₀)·cos(2π(u₁ − ½)) with ln and cos as branch-free polynomials (a few f32 ulp), so the
/// corruption loop vectorizes. Corruption draws with it; the f64 form stays for the RBM and VAE draws.
#[inline(always)]
pub fn standard_normal_f32(seed: u32, stream: u32, step: u32, index: u32) -> f32 {
    let u0 = counter_uniform(seed, stream, step, index, 0);
    let u1 = counter_uniform(seed, stream, step, index, 1);
    (-2.0 * ln_unit(u0)).sqrt() * cos_turn(u1 - 0.5)
}

/// ln(u) for a normal f32 u > 0: u = 2ᵉ·m with m ∈ [1, 2), ln m by [`ln_one_to_two_f32`], plus e·ln 2.
#[inline(always)]
fn ln_unit(u: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let bits = u.to_bits();
    let e = ((bits >> 23) as i32 - 127) as f32;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    ln_one_to_two_f32(m) + e * LN2_LO + e * LN2_HI
}

/// cos(2πt) for −½ < t < ½ (Cephes' sinf and cosf polynomials on |x| ≤ π/4): |t| is folded into [0, ¼]
/// by cos(2πt) = −cos(2π(½ − t)), then below ⅛ the cosine polynomial of 2πt, above it the sine
/// polynomial of 2π(¼ − t). Every fold is exact (Sterbenz); branch-free.
#[inline(always)]
fn cos_turn(t: f32) -> f32 {
    use std::f32::consts::TAU;
    let a = t.abs();
    let flip = a > 0.25;
    let b = if flip { 0.5 - a } else { a };
    let near = b <= 0.125;
    let x = if near { TAU * b } else { TAU * (0.25 - b) };
    let z = x * x;
    let cos = ((2.443_315_7e-5 * z - 1.388_731_6e-3) * z + 4.166_664_6e-2) * z * z - 0.5 * z + 1.0;
    let sin = ((-1.951_529_6e-4 * z + 8.332_161e-3) * z - 1.666_665_5e-1) * z * x + x;
    let c = if near { cos } else { sin };
    if flip { -c } else { c }
}

/// The standard normal draw of element `index`, computed in f64 from the shared f32 uniforms.
pub fn standard_normal(seed: u32, stream: u32, step: u32, index: u32) -> f64 {
    let u0 = counter_uniform(seed, stream, step, index, 0) as f64;
    let u1 = counter_uniform(seed, stream, step, index, 1) as f64;
    (-2.0 * u0.ln()).sqrt() * (std::f64::consts::TAU * (u1 - 0.5)).cos()
}

/// What a corruption's draws are keyed by, and one sample's [height, width] (square occlusion draws one
/// position per sample).
#[derive(Clone, Copy, Debug)]
pub struct Key {
    pub seed: u32,
    pub stream: u32,
    pub step: u32,
    pub image: [usize; 2],
}

impl Key {
    fn uniform(&self, index: usize, draw: u32) -> f32 {
        counter_uniform(self.seed, self.stream, self.step, index as u32, draw)
    }

    /// Whether square occlusion of side `size` hides element `i`: the square of sample i / (h·w) sits at
    /// top = ⌊u₂·(h − size + 1)⌋, left = ⌊u₃·(w − size + 1)⌋, with u₂, u₃ the sample's draws 2 and 3 (keyed
    /// by the sample's index).
    pub fn occluded(&self, i: usize, size: u32) -> bool {
        let [h, w] = self.image;
        let (sample, pixel) = (i / (h * w), i % (h * w));
        let (row, col) = (pixel / w, pixel % w);
        let size = size as usize;
        let place = |draw: u32, extent: usize| {
            let room = extent.saturating_sub(size) + 1;
            ((self.uniform(sample, draw) * room as f32) as usize).min(room - 1)
        };
        let (top, left) = (place(2, h), place(3, w));
        (top..top + size).contains(&row) && (left..left + size).contains(&col)
    }
}

pub fn corrupt<T: Real>(x: &[T], y: &mut [T], noise: Noise, key: Key) {
    if let Noise::Gaussian { sigma } = noise {
        // Pieces of PIECE elements, each loop compiled wide and free of branches.
        const PIECE: usize = 1 << 13;
        return y
            .par_chunks_mut(PIECE)
            .zip(x.par_chunks(PIECE))
            .enumerate()
            .for_each(|(piece, (y, x))| {
                wide(|| gaussian_piece(x, y, (piece * PIECE) as u32, sigma, key))
            });
    }
    y.par_iter_mut()
        .zip(x.par_iter())
        .enumerate()
        .for_each(|(i, (y, &x))| {
            *y = match noise {
                Noise::Gaussian { .. } => unreachable!("drawn above"),
                Noise::Mask { fraction } => {
                    if key.uniform(i, 0) < fraction {
                        T::zero()
                    } else {
                        x
                    }
                }
                Noise::SaltPepper { fraction } => {
                    if key.uniform(i, 0) >= fraction {
                        x
                    } else if key.uniform(i, 1) < 0.5 {
                        T::zero()
                    } else {
                        T::one()
                    }
                }
                Noise::Square { size } => {
                    if key.occluded(i, size) {
                        T::zero()
                    } else {
                        x
                    }
                }
            };
        });
}

/// Gaussian corruption of elements [first, first + len) of the batch; always inlined, so that inside [`wide`]
/// it is compiled wide.
#[inline(always)]
fn gaussian_piece<T: Real>(x: &[T], y: &mut [T], first: u32, sigma: f32, key: Key) {
    for (j, (y, &x)) in y.iter_mut().zip(x).enumerate() {
        let z = standard_normal_f32(key.seed, key.stream, key.step, first + j as u32);
        let v = x + T::from_f32(sigma * z);
        *y = v.max(T::zero()).min(T::one());
    }
}

/// mask[i] = 1 where [`corrupt`] with the same arguments chooses element i (masks, salts, peppers or
/// occludes it), 0 elsewhere; Gaussian noise changes every element, so its mask is all ones.
pub fn corruption_mask<T: Real>(mask: &mut [T], noise: Noise, key: Key) {
    mask.par_iter_mut().enumerate().for_each(|(i, m)| {
        let chosen = match noise {
            Noise::Gaussian { .. } => true,
            Noise::Mask { fraction } | Noise::SaltPepper { fraction } => {
                key.uniform(i, 0) < fraction
            }
            Noise::Square { size } => key.occluded(i, size),
        };
        *m = if chosen { T::one() } else { T::zero() };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_f32_normal_matches_the_f64_one() {
        let mut worst = 0f64;
        for i in 0..200_000 {
            let (a, b) = (
                standard_normal_f32(3, 1, 7, i) as f64,
                standard_normal(3, 1, 7, i),
            );
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
        assert!(worst < 2e-6, "worst relative difference {worst}");
    }

    #[test]
    fn ln_and_cos_of_the_draws_are_accurate() {
        for k in 0..(1u32 << 23) {
            let u = (k as f32 + 0.5) / (1u32 << 23) as f32;
            let (l, want) = (ln_unit(u) as f64, (u as f64).ln());
            assert!(
                (l - want).abs() <= 2e-7 * want.abs().max(1.0),
                "ln {u}: {l} vs {want}"
            );
            let c = cos_turn(u - 0.5) as f64;
            let want = (std::f64::consts::TAU * (u as f64 - 0.5)).cos();
            assert!((c - want).abs() <= 3e-7, "cos at {u}: {c} vs {want}");
        }
    }
}
