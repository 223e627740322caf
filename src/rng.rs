//! Seeded randomness that both backends share.
//!
//! Host-side draws (initialisation, shuffling) come from SplitMix64 streams derived from (seed, purpose, index),
//! so every parameter and every epoch has its own reproducible stream independent of the order of use.

/// SplitMix64: a fast 64-bit generator with good statistical quality for seeding and shuffling.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// A stream keyed by (seed, purpose, index): distinct keys give unrelated sequences.
    pub fn stream(seed: u64, purpose: u64, index: u64) -> Self {
        let mut s = SplitMix64::new(seed ^ purpose.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mixed = s.next_u64() ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        SplitMix64::new(mixed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) without modulo bias (Lemire's method).
    pub fn below(&mut self, n: u64) -> u64 {
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as u64
    }
}

/// Purposes for [`SplitMix64::stream`].
pub mod purpose {
    pub const INIT: u64 = 1;
    pub const SHUFFLE: u64 = 2;
    pub const TEST_FIXTURE: u64 = 3;
    /// Codes drawn from a variational model's prior (`gpu-ae sample`, samples.png).
    pub const SAMPLE: u64 = 4;
    /// The pixels `gpu-ae complete` hides.
    pub const OCCLUSION: u64 = 5;
}

/// The permutation of 0..n used for `epoch`: Fisher–Yates driven by the (seed, epoch) stream.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..n as u32).collect();
    let mut rng = SplitMix64::stream(seed, purpose::SHUFFLE, epoch);
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        perm.swap(i, j);
    }
    perm
}

/// The lowbias32 / murmur3-style finaliser: a bijection on u32 in which every input bit flips every output
/// bit with probability close to ½.
#[inline]
fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

/// Counter-based randomness for device-side noise: a well-mixed 32-bit hash of (seed, stream, step, index,
/// draw), each word folded in by xor followed by a full finaliser round. Needs no state, so every element of
/// every step draws independently, in any order, on any backend. `shaders/noise.wgsl` computes the same bits
/// (WGSL u32 arithmetic wraps like `wrapping_mul`).
#[inline]
pub fn counter_hash(seed: u32, stream: u32, step: u32, index: u32, draw: u32) -> u32 {
    let mut h = mix32(seed ^ 0x9e37_79b9);
    h = mix32(h ^ stream);
    h = mix32(h ^ step);
    h = mix32(h ^ index);
    mix32(h ^ draw)
}

/// Uniform in the open interval (0, 1) from the top 23 bits of [`counter_hash`]: (k + ½)·2⁻²³. Every value is
/// exact in f32, so both backends see the same number, and it is never 0 (safe for Box–Muller's log).
#[inline]
pub fn counter_uniform(seed: u32, stream: u32, step: u32, index: u32, draw: u32) -> f32 {
    ((counter_hash(seed, stream, step, index, draw) >> 9) as f32 + 0.5)
        * (1.0 / (1u32 << 23) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_depends_on_epoch() {
        let a = epoch_permutation(1000, 7, 0);
        let b = epoch_permutation(1000, 7, 1);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
        assert_ne!(a, b);
        assert_eq!(a, epoch_permutation(1000, 7, 0));
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(3);
        assert!((0..10_000).all(|_| r.below(7) < 7));
    }

    #[test]
    fn counter_hash_reproduces_known_values() {
        // Computed by an independent Python implementation of the same construction (arbitrary-precision
        // integers masked to 32 bits), so wrapping arithmetic is checked too.
        assert_eq!(counter_hash(0, 0, 0, 0, 0), 0x0eaa_7511);
        assert_eq!(counter_hash(1, 0, 0, 0, 0), 0x6218_1b8d);
        assert_eq!(counter_hash(42, 3, 1000, 12345, 1), 0x78be_dfad);
        assert_eq!(
            counter_hash(u32::MAX, u32::MAX, u32::MAX, u32::MAX, u32::MAX),
            0x8cbf_1c0f
        );
    }

    #[test]
    fn counter_uniforms_look_uniform_and_independent_of_neighbours() {
        let n = 100_000u32;
        let draws: Vec<f64> = (0..n)
            .map(|i| counter_uniform(7, 2, 31, i, 0) as f64)
            .collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|u| (u - mean) * (u - mean)).sum::<f64>() / n as f64;
        // Standard errors: 1/√(12n) ≈ 9e-4 for the mean, ≈ 3e-4 for the variance; allow ~5 of each.
        assert!((mean - 0.5).abs() < 5e-3, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 2e-3, "variance {var}");
        assert!(draws.iter().all(|&u| u > 0.0 && u < 1.0));
        // Neighbouring indices and the second draw are uncorrelated.
        let lag: f64 = draws
            .windows(2)
            .map(|w| (w[0] - 0.5) * (w[1] - 0.5))
            .sum::<f64>()
            / n as f64;
        let cross: f64 = (0..n)
            .map(|i| (draws[i as usize] - 0.5) * (counter_uniform(7, 2, 31, i, 1) as f64 - 0.5))
            .sum::<f64>()
            / n as f64;
        assert!(
            lag.abs() < 2e-3 && cross.abs() < 2e-3,
            "correlations {lag} {cross}"
        );
        // Ten equal bins each hold 10% ± 0.6%.
        let mut bins = [0usize; 10];
        for u in &draws {
            bins[(u * 10.0) as usize] += 1;
        }
        assert!(
            bins.iter()
                .all(|&b| (b as f64 / n as f64 - 0.1).abs() < 6e-3),
            "bins {bins:?}"
        );
    }
}
