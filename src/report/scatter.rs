//! A labelled 2-D scatter plot as a colour PNG: points coloured by class, axes with ticks, a legend and a
//! title, drawn pixel by pixel with the same 8×8 font as the picture grids.

use image::{Rgb, RgbImage};

use super::png::{GLYPH, glyph};

/// Ten distinguishable colours (matplotlib's tab10), one per class.
const PALETTE: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];
const INK: Rgb<u8> = Rgb([0, 0, 0]);
const PAPER: Rgb<u8> = Rgb([255, 255, 255]);

/// What a scatter plot shows.
pub struct Scatter<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// (x, y) of every point, and its class (0..=9; more classes reuse colours).
    pub points: &'a [(f32, f32)],
    pub classes: &'a [u8],
}

const PLOT: u32 = 560;
const LEFT: u32 = 90;
const TOP: u32 = 50;
const BOTTOM: u32 = 60;
const LEGEND: u32 = 110;

/// Draws `s`: a square plot area with five ticks an axis, the points as 3×3 squares in their class's
/// colour, a legend of the classes present, the title above and the axis names beside.
pub fn draw(s: &Scatter) -> RgbImage {
    let (width, height) = (LEFT + PLOT + LEGEND, TOP + PLOT + BOTTOM);
    let mut img = RgbImage::from_pixel(width, height, PAPER);
    let finite: Vec<&(f32, f32)> = s
        .points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let range = |pick: fn(&(f32, f32)) -> f32| {
        let (lo, hi) = finite
            .iter()
            .map(|p| pick(p))
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        if lo.is_finite() && hi > lo {
            let pad = 0.05 * (hi - lo);
            (lo - pad, hi + pad)
        } else {
            (lo.min(0.0) - 1.0, hi.max(0.0) + 1.0)
        }
    };
    let ((x0, x1), (y0, y1)) = (range(|p| p.0), range(|p| p.1));
    let to_px = |x: f32, y: f32| {
        let px = LEFT as f32 + (x - x0) / (x1 - x0) * PLOT as f32;
        let py = TOP as f32 + (1.0 - (y - y0) / (y1 - y0)) * PLOT as f32;
        (px as i64, py as i64)
    };
    for (p, &class) in s.points.iter().zip(s.classes) {
        if !(p.0.is_finite() && p.1.is_finite()) {
            continue;
        }
        let (px, py) = to_px(p.0, p.1);
        let colour = Rgb(PALETTE[class as usize % PALETTE.len()]);
        for dy in -1..=1 {
            for dx in -1..=1 {
                put(&mut img, px + dx, py + dy, colour);
            }
        }
    }
    // The frame and the ticks, with their values.
    for i in 0..=PLOT {
        for (x, y) in [
            (LEFT + i, TOP),
            (LEFT + i, TOP + PLOT),
            (LEFT, TOP + i),
            (LEFT + PLOT, TOP + i),
        ] {
            img.put_pixel(x, y, INK);
        }
    }
    for t in 0..5 {
        let f = t as f32 / 4.0;
        let (tx, ty) = (
            LEFT + (f * PLOT as f32) as u32,
            TOP + PLOT - (f * PLOT as f32) as u32,
        );
        for d in 0..6 {
            img.put_pixel(tx.min(LEFT + PLOT), TOP + PLOT + d, INK);
            img.put_pixel(LEFT - d, ty.max(TOP), INK);
        }
        let xv = tick(x0 + f * (x1 - x0));
        text(
            &mut img,
            tx.saturating_sub(xv.len() as u32 * 4),
            TOP + PLOT + 10,
            &xv,
            1,
            INK,
        );
        let yv = tick(y0 + f * (y1 - y0));
        text(
            &mut img,
            (LEFT - 10).saturating_sub(yv.len() as u32 * GLYPH as u32),
            ty.saturating_sub(4),
            &yv,
            1,
            INK,
        );
    }
    text(&mut img, 10, 10, s.title, 2, INK);
    let x_left = LEFT + PLOT / 2 - (s.x_label.len() as u32 * GLYPH as u32) / 2;
    text(&mut img, x_left, TOP + PLOT + 32, s.x_label, 1, INK);
    text(&mut img, 4, TOP - 14, s.y_label, 1, INK);
    // The legend: one line per class present.
    let mut present: Vec<u8> = s.classes.to_vec();
    present.sort_unstable();
    present.dedup();
    let legend_left = LEFT + PLOT + 20;
    text(&mut img, legend_left, TOP, "label", 1, INK);
    for (row, &class) in present.iter().enumerate() {
        let top = TOP + 16 + row as u32 * 18;
        let colour = Rgb(PALETTE[class as usize % PALETTE.len()]);
        for dy in 0..10 {
            for dx in 0..10 {
                img.put_pixel(legend_left + dx, top + dy, colour);
            }
        }
        text(
            &mut img,
            legend_left + 16,
            top + 1,
            &class.to_string(),
            1,
            INK,
        );
    }
    img
}

/// A tick value, short: 3 significant figures, no trailing noise.
fn tick(v: f32) -> String {
    let text = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if text == "-0.00" { "0.00".into() } else { text }
}

fn put(img: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, colour);
    }
}

/// `text` at (left, top), each glyph pixel `scale`² pixels, clipped to the picture.
pub(crate) fn text(
    img: &mut RgbImage,
    left: u32,
    top: u32,
    text: &str,
    scale: u32,
    colour: Rgb<u8>,
) {
    for (n, c) in text.chars().enumerate() {
        let glyph_left = left as i64 + (n as u32 * GLYPH as u32 * scale) as i64;
        for (gy, bits) in glyph(c).into_iter().enumerate() {
            for gx in (0..GLYPH).filter(|gx| bits & (1 << gx) != 0) {
                for sy in 0..scale {
                    for sx in 0..scale {
                        let x = glyph_left + (gx as u32 * scale + sx) as i64;
                        let y = (top + gy as u32 * scale + sy) as i64;
                        put(img, x, y, colour);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each class's colour lands where its points are, and the frame is drawn.
    #[test]
    fn points_are_drawn_in_their_class_colour() {
        let points = [(0.0, 0.0), (1.0, 1.0), (0.5, 0.25)];
        let classes = [0, 3, 7];
        let img = draw(&Scatter {
            title: "t",
            x_label: "x",
            y_label: "y",
            points: &points,
            classes: &classes,
        });
        let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
        for class in classes {
            // 9 pixels of the point, 100 of the legend square.
            assert_eq!(count(PALETTE[class as usize]), 109, "class {class}");
        }
        assert_eq!(img.get_pixel(LEFT, TOP + PLOT / 2), &INK);
    }
}
