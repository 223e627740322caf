//! CPU twin of `shaders/noise.wgsl`: input corruption for denoising autoencoders.
//!
//! Element i of step `step` draws uniforms u₀ = counter_uniform(seed, stream, step, i, 0) and u₁ (draw 1),
//! exactly the f32 values the GPU draws, so Mask and SaltPepper choose the same elements on both backends.
//! Gaussian: z = √(−2 ln u₀)·cos(2π(u₁ − ½)) (Box–Muller; the shifted angle stays in (−π, π), where GPU cos is
//! most accurate), y = clamp(x + σz, 0, 1). Mask: y = 0 if u₀ < ν else x. SaltPepper: if u₀ < p, y = 0 when
//! u₁ < ½ and 1 otherwise; else y = x.

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

pub fn corrupt<T: Real>(x: &[T], y: &mut [T], noise: Noise, seed: u32, stream: u32, step: u32) {
    let uniform = |i: usize, draw: u32| counter_uniform(seed, stream, step, i as u32, draw);
    y.par_iter_mut()
        .zip(x.par_iter())
        .enumerate()
        .for_each(|(i, (y, &x))| {
            *y = match noise {
                Noise::Gaussian { sigma } => {
                    let v = x + T::from_f64(
                        sigma as f64 * standard_normal(seed, stream, step, i as u32),
                    );
                    v.max(T::zero()).min(T::one())
                }
                Noise::Mask { fraction } => {
                    if uniform(i, 0) < fraction {
                        T::zero()
                    } else {
                        x
                    }
                }
                Noise::SaltPepper { fraction } => {
                    if uniform(i, 0) >= fraction {
                        x
                    } else if uniform(i, 1) < 0.5 {
                        T::zero()
                    } else {
                        T::one()
                    }
                }
            };
        });
}

/// mask[i] = 1 where [`corrupt`] with the same arguments chooses element i (masks, salts or peppers it), 0
/// elsewhere; Gaussian noise changes every element, so its mask is all ones.
pub fn corruption_mask<T: Real>(mask: &mut [T], noise: Noise, seed: u32, stream: u32, step: u32) {
    mask.par_iter_mut().enumerate().for_each(|(i, m)| {
        let chosen = match noise {
            Noise::Gaussian { .. } => true,
            Noise::Mask { fraction } | Noise::SaltPepper { fraction } => {
                counter_uniform(seed, stream, step, i as u32, 0) < fraction
            }
        };
        *m = if chosen { T::one() } else { T::zero() };
    });
}
