//! Parameter initialisation, as PyTorch does it by default.
//!
//! `nn.Linear` and `nn.Conv2d` draw weights from Kaiming-uniform with a = √5, which is U(±1/√fan_in), and
//! biases from U(±1/√fan_in). Values are drawn on the host from a stream keyed by (seed, parameter index),
//! then uploaded, so the GPU and CPU backends start from identical parameters.

use crate::rng::{SplitMix64, purpose};

/// `len` values from U(−bound, bound) for parameter number `index` of a model seeded with `seed`.
pub fn uniform(seed: u64, index: usize, len: usize, bound: f32) -> Vec<f32> {
    let mut rng = SplitMix64::stream(seed, purpose::INIT, index as u64);
    (0..len)
        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound as f64) as f32)
        .collect()
}

/// The PyTorch default bound for a layer whose weight has `fan_in` inputs per output.
pub fn pytorch_bound(fan_in: usize) -> f32 {
    1.0 / (fan_in.max(1) as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_stays_inside_its_bound_and_is_reproducible() {
        let a = uniform(1, 0, 10_000, 0.05);
        assert!(a.iter().all(|v| v.abs() <= 0.05));
        let mean: f32 = a.iter().sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.002, "mean {mean}");
        assert_eq!(a, uniform(1, 0, 10_000, 0.05));
        assert_ne!(a, uniform(1, 1, 10_000, 0.05));
    }
}
