//! The pictures of what a model generates, each a captioned [`Figure`] whose caption says what its rows
//! and columns are (text in the font's ASCII: `mu`, not μ).

use crate::report::png::{Figure, FigureRow};

/// Digits of `height`×`width` pixels.
#[derive(Clone, Copy, Debug)]
pub struct Digits {
    pub height: usize,
    pub width: usize,
}

/// Images per line of a sample grid of `count`: about square, at most 16.
pub fn sample_columns(count: usize) -> usize {
    ((count as f64).sqrt().ceil() as usize).clamp(1, 16)
}

/// `images` decoded from prior draws at `temperature`, as lines of [`sample_columns`] digits.
pub fn samples<'a>(
    images: &'a [Vec<f32>],
    title: &str,
    temperature: f32,
    digits: Digits,
) -> (String, Figure<'a>) {
    let columns = sample_columns(images.len());
    let what = format!(
        "{} digits decoded from codes z ~ N(0, {}I) drawn from the prior, {columns} a line",
        images.len(),
        if temperature == 1.0 {
            String::new()
        } else {
            format!("{}^2 ", temperature)
        }
    );
    let figure = Figure {
        caption: vec![title.to_string(), what.clone()],
        rows: vec![FigureRow {
            label: String::new(),
            images,
        }],
        height: digits.height,
        width: digits.width,
        columns,
        scale: 3,
    };
    (what, figure)
}

/// One row per pair: the first test digit, `steps` decodings along the line from its code to the other's,
/// the other test digit. `rows[k]` holds those images and `labels[k]` the pair's labels.
pub fn interpolation<'a>(
    rows: &'a [Vec<Vec<f32>>],
    labels: &[(u8, u8)],
    steps: usize,
    code: &str,
    title: &str,
    digits: Digits,
) -> (String, Figure<'a>) {
    let what = format!(
        "each row: a test digit, {steps} decodings of the line from its {code} to another digit's, that \
         digit"
    );
    let figure = Figure {
        caption: vec![title.to_string(), what.clone()],
        rows: rows
            .iter()
            .zip(labels)
            .map(|(images, (a, b))| FigureRow {
                label: format!("{a} to {b}"),
                images,
            })
            .collect(),
        height: digits.height,
        width: digits.width,
        columns: steps + 2,
        scale: 2,
    };
    (what, figure)
}

/// The decoded grid of a 2-D latent: `rows[k]` are the digits at z2 = `quantiles` from the largest (top)
/// down, each row z1 = `quantiles` ascending (left to right).
pub fn manifold<'a>(
    rows: &'a [Vec<Vec<f32>>],
    quantiles: &[f32],
    title: &str,
    digits: Digits,
) -> (String, Figure<'a>) {
    let (low, high) = (quantiles[0], quantiles[quantiles.len() - 1]);
    let what = format!(
        "the latent plane at Gaussian quantiles: z1 from {low:+.2} (left) to {high:+.2}, z2 (row label) from \
         {high:+.2} (top) to {low:+.2}"
    );
    let figure = Figure {
        caption: vec![title.to_string(), what.clone()],
        rows: rows
            .iter()
            .zip(quantiles.iter().rev())
            .map(|(images, z2)| FigureRow {
                label: format!("{z2:+.2}"),
                images,
            })
            .collect(),
        height: digits.height,
        width: digits.width,
        columns: quantiles.len(),
        scale: 2,
    };
    (what, figure)
}
