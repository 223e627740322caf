//! Principal component analysis of a data set, the baseline a linear autoencoder is measured against
//! (Baldi & Hornik 1989: a linear autoencoder with k code units and squared error learns the span of the
//! top k principal components).
//!
//! The scatter matrix Σᵢ (xᵢ − μ)(xᵢ − μ)ᵀ is a product of the centred data with itself: it runs on the
//! engine's own matmul op (GPU or CPU backend), chunk by chunk so that no buffer exceeds an adapter's
//! binding limit; the mean is taken on the host in f64 and the data centred before upload, so the product
//! suffers no cancellation. The symmetric eigendecomposition runs on the host ([`linalg::symmetric_eigen`]).

use super::linalg;
use crate::backend::{Executor, Program};
use crate::ops::{BufId, Op};
use crate::plan::{BufferDesc, Plan};

/// Rows of the data uploaded per matmul: 4096 MNIST images are 12.8 MB, far below any binding limit.
pub const CHUNK_ROWS: usize = 4096;

/// A fitted PCA: the training set's mean and the eigenpairs of its covariance (divided by the sample
/// count), eigenvalues descending, eigenvectors the columns of a features × features row-major matrix.
pub struct Pca {
    pub features: usize,
    pub samples: usize,
    pub mean: Vec<f64>,
    pub variances: Vec<f64>,
    pub components: Vec<f64>,
}

/// The plan that adds one chunk's scatter into the accumulator: C[f×f] += Xᵀ·X for X [CHUNK_ROWS × f].
pub fn scatter_plan(features: usize) -> Plan {
    let (chunk, scatter) = (BufId(0), BufId(1));
    Plan::from_ops(
        vec![
            BufferDesc::f32("pca.chunk", CHUNK_ROWS * features),
            BufferDesc::f32("pca.scatter", features * features),
        ],
        vec![Op::Matmul {
            a: chunk,
            b: chunk,
            c: scatter,
            m: features,
            n: features,
            k: CHUNK_ROWS,
            trans_a: true,
            trans_b: false,
            accumulate: true,
        }],
    )
}

/// The per-feature mean of `pixels` (rows of `features` bytes, scaled to [0, 1]).
pub fn mean(pixels: &[u8], features: usize) -> Vec<f64> {
    let samples = pixels.len() / features;
    let mut mean = vec![0f64; features];
    for row in pixels.chunks_exact(features) {
        for (m, &p) in mean.iter_mut().zip(row) {
            *m += p as f64 / 255.0;
        }
    }
    mean.iter_mut().for_each(|m| *m /= samples.max(1) as f64);
    mean
}

/// PCA of `pixels` (rows of `features` bytes, scaled to [0, 1]), its scatter accumulated on `ex`, an
/// executor of [`scatter_plan`]`(features)`.
pub fn fit(ex: &mut dyn Executor, pixels: &[u8], features: usize) -> Pca {
    let samples = pixels.len() / features;
    let mean = mean(pixels, features);
    let (chunk_buf, scatter_buf) = (BufId(0), BufId(1));
    ex.write_f32(scatter_buf, &vec![0.0; features * features]);
    let mut chunk = vec![0f32; CHUNK_ROWS * features];
    for rows in pixels.chunks(CHUNK_ROWS * features) {
        // A last, shorter chunk is padded with zero rows, which add nothing.
        chunk.fill(0.0);
        for (dst, (&p, m)) in chunk.iter_mut().zip(rows.iter().zip(mean.iter().cycle())) {
            *dst = (p as f64 / 255.0 - m) as f32;
        }
        ex.write_f32(chunk_buf, &chunk);
        ex.run(Program::FORWARD_BACKWARD, 1);
    }
    let scatter = ex.read_f32(scatter_buf);
    let covariance: Vec<f64> = scatter
        .iter()
        .map(|&s| s as f64 / samples.max(1) as f64)
        .collect();
    let (variances, components) = linalg::symmetric_eigen(&covariance, features);
    Pca {
        features,
        samples,
        mean,
        variances,
        components,
    }
}

impl Pca {
    /// The top `k` components as a features × k row-major matrix.
    pub fn top(&self, k: usize) -> Vec<f64> {
        let f = self.features;
        (0..f * k)
            .map(|e| self.components[(e / k) * f + e % k])
            .collect()
    }

    /// The fraction of the training set's variance the top `k` components keep.
    pub fn kept(&self, k: usize) -> f64 {
        let total: f64 = self.variances.iter().map(|v| v.max(0.0)).sum();
        self.variances[..k].iter().map(|v| v.max(0.0)).sum::<f64>() / total
    }

    /// The coordinates of every row of `pixels` along the top `k` components, Uᵀ(x − μ): `k` values a
    /// row (the PCA code of the same width as a model's, for baselines).
    pub fn project(&self, pixels: &[u8], k: usize) -> Vec<f32> {
        let f = self.features;
        let u = self.top(k);
        pixels
            .chunks_exact(f)
            .flat_map(|row| {
                let centred: Vec<f64> = row
                    .iter()
                    .zip(&self.mean)
                    .map(|(&p, m)| p as f64 / 255.0 - m)
                    .collect();
                let u = &u;
                (0..k).map(move |j| {
                    centred
                        .iter()
                        .enumerate()
                        .map(|(i, c)| c * u[i * k + j])
                        .sum::<f64>() as f32
                })
            })
            .collect()
    }

    /// The squared error per image, Σ over pixels of (x − x̂)², of the rank-`k` reconstruction
    /// x̂ = μ + U Uᵀ(x − μ) of every row of `pixels`, averaged over the rows.
    pub fn reconstruction_error(&self, pixels: &[u8], k: usize) -> f64 {
        let f = self.features;
        let u = self.top(k);
        let rows = pixels.len() / f;
        let mut total = 0.0;
        let mut centred = vec![0f64; f];
        let mut code = vec![0f64; k];
        for row in pixels.chunks_exact(f) {
            for ((c, &p), m) in centred.iter_mut().zip(row).zip(&self.mean) {
                *c = p as f64 / 255.0 - m;
            }
            code.fill(0.0);
            for (i, &c) in centred.iter().enumerate() {
                for (j, code) in code.iter_mut().enumerate() {
                    *code += u[i * k + j] * c;
                }
            }
            for (i, &c) in centred.iter().enumerate() {
                let back: f64 = (0..k).map(|j| u[i * k + j] * code[j]).sum();
                total += (c - back) * (c - back);
            }
        }
        total / rows.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuExecutor;

    /// Points on a tilted plane in 3-D with a little noise: two components keep almost everything, and
    /// the chunked scatter on the engine equals the host's covariance.
    #[test]
    fn pca_finds_the_plane_its_data_lie_in() {
        let features = 3;
        let mut rng = crate::rng::SplitMix64::new(3);
        let mut pixels = Vec::new();
        // More rows than a chunk, so the scatter accumulates over two chunks, the second padded.
        for _ in 0..CHUNK_ROWS + 37 {
            let (a, b) = (rng.next_f64(), rng.next_f64());
            let noise = (rng.next_f64() - 0.5) * 0.02;
            for v in [a, b, 0.5 * a + 0.25 * b + noise] {
                pixels.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
        let mut ex = CpuExecutor::<f64>::new(scatter_plan(features));
        let pca = fit(&mut ex, &pixels, features);
        let rows = pixels.len() / features;
        let x = |r: usize, i: usize| pixels[r * features + i] as f64 / 255.0;
        for i in 0..features {
            for j in 0..features {
                let want: f64 = (0..rows)
                    .map(|r| (x(r, i) - pca.mean[i]) * (x(r, j) - pca.mean[j]))
                    .sum::<f64>()
                    / rows as f64;
                let got: f64 = (0..features)
                    .map(|c| {
                        pca.components[i * features + c]
                            * pca.variances[c]
                            * pca.components[j * features + c]
                    })
                    .sum();
                // The centred values are uploaded as f32.
                assert!((got - want).abs() < 1e-7, "cov[{i}][{j}]: {got} vs {want}");
            }
        }
        assert!(pca.kept(2) > 0.99, "{}", pca.kept(2));
        let (full, two, one) = (
            pca.reconstruction_error(&pixels, 3),
            pca.reconstruction_error(&pixels, 2),
            pca.reconstruction_error(&pixels, 1),
        );
        assert!(full < 1e-20, "all components reconstruct exactly: {full}");
        assert!(two < 1e-3 && one > 10.0 * two, "{one} {two}");
        // The mean error of rank k is the variance left over: Σ of the remaining eigenvalues.
        assert!(
            (two - pca.variances[2]).abs() < 1e-4 * two,
            "{two} vs {}",
            pca.variances[2]
        );
    }
}
