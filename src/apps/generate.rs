//! What a trained model generates: digits decoded from codes drawn from the prior (a variational model),
//! the line between two test digits' codes, and the manifold a 2-D latent spans.
//!
//! The codes are made on the host (a few numbers each); encoding and decoding run on the executor, a batch
//! at a time, through the plan's `encode` and `decode` programs ([`Codec`]).

use thiserror::Error;

use crate::backend::{Executor, Program};
use crate::ops::{Op, state};
use crate::plan::{Codec, Plan};
use crate::rng::{SplitMix64, purpose};

/// Why a model cannot do what was asked.
#[derive(Debug, Error, PartialEq)]
pub enum GenerateError {
    #[error("{what} needs a model that decodes a code alone, but the {variant} checkpoint's {why}")]
    NoDecoder {
        what: &'static str,
        variant: String,
        why: &'static str,
    },
    #[error(
        "{what} draws codes from the prior N(0, I), which only a variational model has; the checkpoint \
         holds a {variant}, a deterministic autoencoder (train --variant vae or conv-vae, or use \
         `gpu-ae interpolate`, which works on any code)"
    )]
    NotVariational { what: &'static str, variant: String },
    #[error(
        "manifold draws the plane of a 2-D latent, but the checkpoint's {variant} has a {width}-D latent \
         (train one with --latent 2)"
    )]
    NotTwoDimensional { variant: String, width: usize },
}

/// The plan's codec, or why `what` cannot run on it. `variational` asks for a Gaussian code.
pub fn codec_for(
    plan: &Plan,
    what: &'static str,
    variant: &str,
    variational: bool,
) -> Result<Codec, GenerateError> {
    // A plan has no codec when its model names no code, or when its decoder unpools.
    let unpools = plan
        .segment("forward_backward")
        .iter()
        .any(|op| matches!(op, Op::MaxUnpool2x2 { .. }));
    let codec = plan.codec.ok_or_else(|| GenerateError::NoDecoder {
        what,
        variant: variant.into(),
        why: if unpools {
            "decoder unpools through the encoder's pooling indices (the pool deck), so it needs the \
             encoder's pass over an image, not only a code"
        } else {
            "model names no code layer to start decoding from"
        },
    })?;
    if variational && !codec.variational {
        return Err(GenerateError::NotVariational {
            what,
            variant: variant.into(),
        });
    }
    Ok(codec)
}

/// `pairs` pairs of test images to interpolate between, in the test set's order: each the next test digit
/// and the first one after it with another label (fewer where the labels run out).
pub fn interpolation_pairs(labels: &[u8], pairs: usize) -> Vec<(usize, usize)> {
    let mut list = Vec::new();
    let mut start = 0;
    while list.len() < pairs && start < labels.len() {
        match (start + 1..labels.len()).find(|&j| labels[j] != labels[start]) {
            Some(end) => {
                list.push((start, end));
                start = end + 1;
            }
            None => break,
        }
    }
    list
}

/// The codes of test images `indices` (in the test set's order): μ for a variational model.
pub fn encode_test(ex: &mut dyn Executor, codec: &Codec, indices: &[usize]) -> Vec<Vec<f32>> {
    let batch = ex.plan().batch;
    let Some(&last) = indices.iter().max() else {
        return Vec::new();
    };
    let mut codes = vec![Vec::new(); indices.len()];
    ex.write_u32(ex.plan().io.eval_state, &[0; state::LEN]);
    for b in 0..=last / batch {
        // Each run gathers the next test batch (the program advances the batch index).
        ex.run(Program::ENCODE, 1);
        let wanted: Vec<usize> = (0..indices.len())
            .filter(|&k| indices[k] / batch == b)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let rows = ex.read_f32(codec.code);
        for k in wanted {
            let row = indices[k] % batch;
            let start = row * codec.stride;
            codes[k] = rows[start..start + codec.width].to_vec();
        }
    }
    codes
}

/// The codes of the first `count` test images (at most the test set), in order: `count` rows of
/// `codec.width` values (μ for a variational model), one encode batch after another.
pub fn encode_all(ex: &mut dyn Executor, codec: &Codec, count: usize) -> Vec<f32> {
    let batch = ex.plan().batch;
    let count = count.min(ex.plan().test_samples);
    let mut codes = Vec::with_capacity(count * codec.width);
    ex.write_u32(ex.plan().io.eval_state, &[0; state::LEN]);
    for b in 0..count.div_ceil(batch) {
        ex.run(Program::ENCODE, 1);
        let rows = ex.read_f32(codec.code);
        for row in 0..batch.min(count - b * batch) {
            codes.extend_from_slice(&rows[row * codec.stride..row * codec.stride + codec.width]);
        }
    }
    codes
}

/// The images (act(logits), values in [0, 1]) that the decoder makes of `codes`, each `codec.width` long.
pub fn decode(ex: &mut dyn Executor, codec: &Codec, codes: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let (batch, features) = (ex.plan().batch, ex.plan().features);
    let mut images = Vec::with_capacity(codes.len());
    for chunk in codes.chunks(batch) {
        let mut latent = vec![0.0; batch * codec.width];
        for (row, code) in chunk.iter().enumerate() {
            latent[row * codec.width..(row + 1) * codec.width].copy_from_slice(code);
        }
        ex.write_f32(codec.latent, &latent);
        ex.run(Program::DECODE, 1);
        let out = ex.read_f32(codec.decoded);
        images.extend(out.chunks(features).take(chunk.len()).map(<[f32]>::to_vec));
    }
    images
}

/// `count` codes of `width` values drawn from N(0, T²I), T = `temperature`, from the (seed, sample)
/// stream: Box–Muller on SplitMix64 uniforms, so a seed gives the same codes on every backend.
pub fn prior_codes(count: usize, width: usize, temperature: f32, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64::stream(seed, purpose::SAMPLE, 0);
    (0..count)
        .map(|_| {
            (0..width)
                .map(|_| {
                    // 1 − u lies in (0, 1], so the logarithm is finite.
                    let (u0, u1) = (1.0 - rng.next_f64(), rng.next_f64());
                    let z = (-2.0 * u0.ln()).sqrt() * (std::f64::consts::TAU * u1).cos();
                    (temperature as f64 * z) as f32
                })
                .collect()
        })
        .collect()
}

/// `steps` codes evenly along the segment from `a` to `b`, both ends included.
pub fn line(a: &[f32], b: &[f32], steps: usize) -> Vec<Vec<f32>> {
    (0..steps)
        .map(|k| {
            let t = if steps > 1 {
                k as f32 / (steps - 1) as f32
            } else {
                0.0
            };
            a.iter().zip(b).map(|(&x, &y)| x + t * (y - x)).collect()
        })
        .collect()
}

/// The quantiles Φ⁻¹((i + ½)/grid) of the standard normal, i = 0..grid, ascending: a grid that covers
/// the prior evenly in probability.
pub fn gaussian_quantiles(grid: usize) -> Vec<f32> {
    (0..grid)
        .map(|i| inverse_normal_cdf((i as f64 + 0.5) / grid as f64) as f32)
        .collect()
}

/// Φ⁻¹(p) for p in (0, 1): Acklam's rational approximation (relative error below 1.2e-9), then one
/// Halley step on erfc. Exact enough for a picture's grid and for the tests that pin a few quantiles.
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // Halley's refinement: e = Φ(x) − p, u = e·√(2π)·exp(x²/2).
    let e = 0.5 * erfc(-x / std::f64::consts::SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// The complementary error function, to about 1e-15 relative for the arguments Φ needs (W. J. Cody's
/// rational approximations would be overkill here: a continued fraction for large |x| and the Taylor
/// series of erf for small).
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.5 {
        // erf(x) = 2/√π Σ (−1)ⁿ x^(2n+1) / (n! (2n + 1))
        let mut term = x;
        let mut sum = x;
        let x2 = x * x;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum
    } else {
        // erfc(x) = exp(−x²)/√π · 1/(x + ½/(x + 1/(x + 3/2/(x + …)))), evaluated from the tail.
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (x + f);
        }
        (-x * x).exp() / std::f64::consts::PI.sqrt() / (x + f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_the_normal_table() {
        // Φ⁻¹ of 0.975, 0.95, 0.841344746 (1σ), 0.5 and their mirrors, from standard tables.
        for (p, x) in [
            (0.975, 1.959_963_984_540_054),
            (0.95, 1.644_853_626_951_472_6),
            (0.841_344_746_068_542_9, 1.0),
            (0.5, 0.0),
            (0.001, -3.090_232_306_167_813_6),
        ] {
            assert!((inverse_normal_cdf(p) - x).abs() < 1e-9, "Φ⁻¹({p})");
            assert!(
                (inverse_normal_cdf(1.0 - p) + x).abs() < 1e-9,
                "Φ⁻¹(1 − {p})"
            );
        }
        let q = gaussian_quantiles(20);
        assert_eq!(q.len(), 20);
        assert!((q[0] + 1.959_964).abs() < 1e-5 && (q[19] - 1.959_964).abs() < 1e-5);
        assert!(q.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn prior_codes_are_standard_normal_scaled_by_the_temperature() {
        let codes = prior_codes(2000, 10, 1.0, 3);
        let all: Vec<f64> = codes.iter().flatten().map(|&v| v as f64).collect();
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64;
        // 20 000 draws: standard errors 0.007 (mean), 0.01 (variance).
        assert!(
            mean.abs() < 0.04 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        let cold = prior_codes(2000, 10, 0.5, 3);
        assert_eq!(cold[7][3], 0.5 * codes[7][3]);
        assert_ne!(prior_codes(1, 10, 1.0, 4), prior_codes(1, 10, 1.0, 3));
    }

    #[test]
    fn pairs_join_digits_of_different_labels() {
        assert_eq!(
            interpolation_pairs(&[7, 2, 1, 1, 0, 4, 9], 8),
            vec![(0, 1), (2, 4), (5, 6)]
        );
        assert_eq!(
            interpolation_pairs(&[7, 2, 1, 1, 0, 4, 4], 8),
            vec![(0, 1), (2, 4)]
        );
        assert_eq!(interpolation_pairs(&[7, 2, 1, 0], 1), vec![(0, 1)]);
        assert!(interpolation_pairs(&[3, 3, 3], 2).is_empty());
    }

    #[test]
    fn a_line_runs_from_one_code_to_the_other() {
        let l = line(&[0.0, 2.0], &[1.0, -2.0], 5);
        assert_eq!(l.len(), 5);
        assert_eq!(l[0], vec![0.0, 2.0]);
        assert_eq!(l[2], vec![0.5, 0.0]);
        assert_eq!(l[4], vec![1.0, -2.0]);
    }
}
