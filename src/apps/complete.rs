//! Completion of occluded digits: hide part of each image, start the hidden part at the mean training
//! image, pass the image through the autoencoder and write its reconstruction back into the hidden part
//! only, `passes` times. The visible pixels never change; the model only fills in.
//!
//! The passes run the plan's `feed` program ([`crate::plan::FEED`]): the host writes a batch of images
//! into the model's input and reads the reconstruction back, so the images stay in f32 between passes.

use crate::backend::{Executor, Program};
use crate::ops::state;
use crate::plan::FEED;
use crate::rng::{SplitMix64, purpose};

/// Which pixels a completion hides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mask {
    /// An S × S square per image, placed uniformly where it fits (seeded per image).
    Square(usize),
    /// The bottom rows ⌈h/2⌉..h.
    BottomHalf,
    /// The right columns ⌈w/2⌉..w.
    RightHalf,
    /// Each pixel with probability ν (seeded).
    Pixels(f32),
}

impl Mask {
    /// `square:S`, `bottom-half`, `right-half` or `pixels:ν`.
    pub fn parse(text: &str) -> Result<Mask, String> {
        let bad = || {
            format!(
                "expected square:S, bottom-half, right-half or pixels:ν (0 < ν < 1), got {text:?}"
            )
        };
        match text.split_once(':') {
            None if text == "bottom-half" => Ok(Mask::BottomHalf),
            None if text == "right-half" => Ok(Mask::RightHalf),
            Some(("square", s)) => match s.parse::<usize>() {
                Ok(s) if s >= 1 => Ok(Mask::Square(s)),
                _ => Err(format!(
                    "square:S needs a side S of at least 1 pixel, got {s:?}"
                )),
            },
            Some(("pixels", v)) => match v.parse::<f32>() {
                Ok(v) if v > 0.0 && v < 1.0 => Ok(Mask::Pixels(v)),
                _ => Err(format!("pixels:ν needs 0 < ν < 1, got {v:?}")),
            },
            _ => Err(bad()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Mask::Square(s) => format!("a {s}×{s} square at a random place"),
            Mask::BottomHalf => "the bottom half".into(),
            Mask::RightHalf => "the right half".into(),
            Mask::Pixels(v) => format!("each pixel with probability {v}"),
        }
    }

    /// Whether the mask fits images of `h` × `w`.
    pub fn check(&self, h: usize, w: usize) -> Result<(), String> {
        match *self {
            Mask::Square(s) if s > h.min(w) => Err(format!(
                "--mask square:{s}: the square does not fit in the {h}×{w} images"
            )),
            _ => Ok(()),
        }
    }

    /// hidden[i·h·w + p] for `count` images of `h` × `w`: true where pixel p of image i is hidden. Seeded
    /// per image, so image i's mask does not depend on how many images there are.
    pub fn hidden(&self, count: usize, h: usize, w: usize, seed: u64) -> Vec<bool> {
        let mut out = vec![false; count * h * w];
        for (i, image) in out.chunks_mut(h * w).enumerate() {
            let mut rng = SplitMix64::stream(seed, purpose::OCCLUSION, i as u64);
            for (p, hide) in image.iter_mut().enumerate() {
                let (row, col) = (p / w, p % w);
                *hide = match *self {
                    Mask::BottomHalf => row >= h.div_ceil(2),
                    Mask::RightHalf => col >= w.div_ceil(2),
                    Mask::Pixels(v) => rng.next_f64() < v as f64,
                    Mask::Square(_) => false,
                };
            }
            if let Mask::Square(s) = *self {
                let top = (rng.next_u64() % (h - s + 1) as u64) as usize;
                let left = (rng.next_u64() % (w - s + 1) as u64) as usize;
                for row in top..top + s {
                    image[row * w + left..row * w + left + s].fill(true);
                }
            }
        }
        out
    }
}

/// `truth` with its hidden pixels replaced by `fill`'s (one image of `fill` repeated, or one per image).
pub fn fill_hidden(truth: &[f32], hidden: &[bool], fill: &[f32]) -> Vec<f32> {
    truth
        .iter()
        .zip(hidden)
        .enumerate()
        .map(|(i, (&t, &h))| if h { fill[i % fill.len()] } else { t })
        .collect()
}

/// The model's output for each of `images` (rows of `features`), through the plan's `feed` program in
/// batches: an autoencoder's reconstruction, or a classifier's logits (`output`: the buffer to read).
pub fn feed(
    ex: &mut dyn Executor,
    images: &[f32],
    output: crate::ops::BufId,
    out_width: usize,
) -> Vec<f32> {
    let plan = ex.plan().clone();
    let program: Program = plan.program(FEED).expect("every plan has a feed program");
    let (io, batch, features) = (plan.io, plan.batch, plan.features);
    let mut out = Vec::with_capacity(images.len() / features * out_width);
    for chunk in images.chunks(batch * features) {
        let mut padded = chunk.to_vec();
        padded.resize(plan.buffers[io.input.0].len, 0.0);
        ex.write_f32(io.input, &padded);
        if io.model_input != io.input {
            ex.write_f32(io.model_input, &padded);
        }
        ex.write_u32(io.eval_state, &[0; state::LEN]);
        ex.run(program, 1);
        let values = ex.read_f32(output);
        out.extend_from_slice(&values[..chunk.len() / features * out_width]);
    }
    out
}

/// Each pass's images: `start` through the autoencoder on `ex`, its reconstruction written into the
/// hidden pixels only, `passes` times.
pub fn complete(
    ex: &mut dyn Executor,
    truth: &[f32],
    hidden: &[bool],
    start: &[f32],
    passes: usize,
) -> Vec<Vec<f32>> {
    let (recon, features) = (ex.plan().io.recon, ex.plan().features);
    let mut current = start.to_vec();
    let mut out = Vec::with_capacity(passes);
    for _ in 0..passes {
        let reconstruction = feed(ex, &current, recon, features);
        current = truth
            .iter()
            .zip(hidden)
            .zip(&reconstruction)
            .map(|((&t, &h), &r)| if h { r } else { t })
            .collect();
        out.push(current.clone());
    }
    out
}

/// The mean over images of Σ over an image's pixels of (a − b)².
pub fn squared_error_per_image(a: &[f32], b: &[f32], features: usize) -> f64 {
    let images = a.len() / features;
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / images.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_hide_what_they_say() {
        let (h, w) = (5, 4);
        let bottom = Mask::BottomHalf.hidden(2, h, w, 0);
        // Rows 3 and 4 of each 5-row image.
        assert_eq!(bottom.iter().filter(|b| **b).count(), 2 * 2 * w);
        assert!(bottom[3 * w] && !bottom[2 * w + 3]);
        let right = Mask::RightHalf.hidden(1, h, w, 0);
        assert!(right[2] && right[3] && !right[1]);
        let square = Mask::Square(3).hidden(50, h, w, 7);
        for image in square.chunks(h * w) {
            assert_eq!(image.iter().filter(|b| **b).count(), 9);
        }
        // Seeded per image: the first images do not depend on the count.
        assert_eq!(Mask::Square(3).hidden(3, h, w, 7), square[..3 * h * w]);
        let pixels = Mask::Pixels(0.3).hidden(1000, h, w, 1);
        let share = pixels.iter().filter(|b| **b).count() as f64 / pixels.len() as f64;
        assert!((share - 0.3).abs() < 0.02, "{share}");
    }

    #[test]
    fn masks_parse_and_refuse() {
        assert_eq!(Mask::parse("square:12"), Ok(Mask::Square(12)));
        assert_eq!(Mask::parse("pixels:0.5"), Ok(Mask::Pixels(0.5)));
        assert_eq!(Mask::parse("bottom-half"), Ok(Mask::BottomHalf));
        for bad in [
            "square:0",
            "square:x",
            "pixels:1",
            "pixels:-0.1",
            "left-half",
            "half",
        ] {
            assert!(Mask::parse(bad).is_err(), "{bad}");
        }
        assert!(Mask::Square(29).check(28, 28).is_err());
    }
}
