//! A confusion matrix as a picture: one row per true class, one column per predicted class, each cell
//! shaded by the share of its row (white: none, dark blue: all) and labelled with its count; the row's
//! accuracy (recall) at its end.

use image::{Rgb, RgbImage};

use super::png::GLYPH;
use super::scatter::text;

const INK: Rgb<u8> = Rgb([0, 0, 0]);
const PAPER: Rgb<u8> = Rgb([255, 255, 255]);
/// The darkest shade, of a cell that holds its whole row.
const FULL: [u8; 3] = [8, 48, 107];
const CELL: u32 = 48;
const LEFT: u32 = 90;
const TOP: u32 = 96;
const RIGHT: u32 = 90;
const BOTTOM: u32 = 40;

/// `counts[t][p]`: test samples of true class t predicted as p. `title` names the classifier.
pub fn draw(title: &str, subtitle: &str, counts: &[Vec<usize>]) -> RgbImage {
    let classes = counts.len() as u32;
    let title_width = (title.chars().count() as u32 * GLYPH as u32 * 2)
        .max(subtitle.chars().count() as u32 * GLYPH as u32)
        + 20;
    let width = (LEFT + classes * CELL + RIGHT).max(title_width);
    let height = TOP + classes * CELL + BOTTOM;
    let mut img = RgbImage::from_pixel(width, height, PAPER);
    text(&mut img, 10, 10, title, 2, INK);
    text(&mut img, 10, 34, subtitle, 1, INK);
    let label = "predicted";
    let grid_left = LEFT;
    text(
        &mut img,
        grid_left + (classes * CELL) / 2 - label.len() as u32 * 4,
        TOP - 40,
        label,
        1,
        INK,
    );
    text(&mut img, 10, TOP - 16, "true", 1, INK);
    text(
        &mut img,
        grid_left + classes * CELL + 8,
        TOP - 16,
        "recall",
        1,
        INK,
    );
    for (t, row) in counts.iter().enumerate() {
        let total: usize = row.iter().sum();
        let top = TOP + t as u32 * CELL;
        let class = t.to_string();
        text(
            &mut img,
            LEFT - 12 - class.len() as u32 * GLYPH as u32,
            top + CELL / 2 - 4,
            &class,
            1,
            INK,
        );
        for (p, &count) in row.iter().enumerate() {
            let share = if total == 0 {
                0.0
            } else {
                count as f32 / total as f32
            };
            // Light cells get dark numbers; dark cells white ones.
            let shade = Rgb(FULL.map(|c| (255.0 - share * (255.0 - c as f32)) as u8));
            let left = grid_left + p as u32 * CELL;
            for y in top..top + CELL {
                for x in left..left + CELL {
                    img.put_pixel(x, y, shade);
                }
            }
            let n = count.to_string();
            let ink = if share > 0.5 { PAPER } else { INK };
            text(
                &mut img,
                left + CELL / 2 - n.len() as u32 * 4,
                top + CELL / 2 - 4,
                &n,
                1,
                ink,
            );
        }
        let recall = if total == 0 {
            "-".to_string()
        } else {
            format!("{:.3}", row[t] as f64 / total as f64)
        };
        text(
            &mut img,
            grid_left + classes * CELL + 8,
            top + CELL / 2 - 4,
            &recall,
            1,
            INK,
        );
    }
    for p in 0..classes {
        let n = p.to_string();
        text(
            &mut img,
            grid_left + p * CELL + CELL / 2 - n.len() as u32 * 4,
            TOP - 14,
            &n,
            1,
            INK,
        );
    }
    // Grid lines between the cells and a frame around them.
    for i in 0..=classes {
        for d in 0..classes * CELL {
            img.put_pixel(grid_left + i * CELL - u32::from(i == classes), TOP + d, INK);
            img.put_pixel(grid_left + d, TOP + i * CELL - u32::from(i == classes), INK);
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell holding its whole row is the darkest shade; an empty one stays white.
    #[test]
    fn cells_are_shaded_by_their_share_of_the_row() {
        let counts = vec![vec![5, 0], vec![1, 3]];
        let img = draw("t", "s", &counts);
        let centre = |t: u32, p: u32| *img.get_pixel(LEFT + p * CELL + 3, TOP + t * CELL + 3);
        assert_eq!(centre(0, 0), Rgb(FULL));
        assert_eq!(centre(0, 1), PAPER);
        // 3 of 4: three quarters of the way to the full shade.
        assert_eq!(
            centre(1, 1).0[0],
            (255.0 - 0.75 * (255.0 - FULL[0] as f32)) as u8
        );
    }
}
