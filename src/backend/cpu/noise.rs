//! CPU twin of `shaders/noise.wgsl`: input corruption for denoising autoencoders.
//!
//! Element i of step `step` draws uniforms u₀ = counter_uniform(seed, stream, step, i, 0) and u₁ (draw 1),
//! exactly the f32 values the GPU draws, so Mask and SaltPepper choose the same elements on both backends.
//! Gaussian: z = √(−2 ln u₀)·cos(2π(u₁ − ½)) (Box–Muller; the shifted angle stays in (−π, π), where GPU cos is
//! most accurate), y = clamp(x + σz, 0, 1). Mask: y = 0 if u₀ < ν else x. SaltPepper: if u₀ < p, y = 0 when
//! u₁ < ½ and 1 otherwise; else y = x. Square: 0 inside a size × size square placed per sample
//! (see [`Key::occluded`]), x elsewhere.

use super::real::Real;
use crate::ops::Noise;
use crate::rng::counter_uniform;
use rayon::prelude::*;

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
    y.par_iter_mut()
        .zip(x.par_iter())
        .enumerate()
        .for_each(|(i, (y, &x))| {
            *y = match noise {
                Noise::Gaussian { sigma } => {
                    let v = x + T::from_f64(
                        sigma as f64 * standard_normal(key.seed, key.stream, key.step, i as u32),
                    );
                    v.max(T::zero()).min(T::one())
                }
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
