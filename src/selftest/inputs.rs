//! Seeded inputs for the cases: never all zero, never exactly zero (so no case passes on zeros).

use crate::rng::{SplitMix64, purpose};

/// `len` values uniform in ±scale, none closer to zero than scale/20.
pub fn random(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = SplitMix64::stream(seed, purpose::TEST_FIXTURE, len as u64);
    (0..len)
        .map(|_| {
            let u = rng.next_f64() as f32 * 2.0 - 1.0;
            let magnitude = (u.abs() * 0.95 + 0.05) * scale;
            if u < 0.0 { -magnitude } else { magnitude }
        })
        .collect()
}

/// `len` values in (0, scale]: probabilities, pixel targets.
pub fn positive(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    random(len, seed, scale).iter().map(|v| v.abs()).collect()
}

/// `len` seeded bytes (a data set's pixels).
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::stream(seed, purpose::TEST_FIXTURE, 1 << 40 | len as u64);
    (0..len).map(|_| (rng.next_u64() % 256) as u8).collect()
}

/// A state buffer's words: global step `step`, batch index `batch`, `valid` real rows.
pub fn state_words(step: u32, batch: u32, valid: u32) -> Vec<u32> {
    let mut words = vec![0u32; crate::ops::state::LEN];
    words[crate::ops::state::GLOBAL_STEP] = step;
    words[crate::ops::state::BATCH] = batch;
    words[crate::ops::state::VALID_ROWS] = valid;
    words
}
