//! Grids of grayscale images as PNG, written atomically.
//!
//! A grid is a list of picture rows; each row holds `images_per_row` images of height×width values in [0, 1]
//! (row-major, image after image), laid side by side with a 2-pixel mid-grey gap between images and between
//! rows, every pixel scaled up `scale`× (nearest). The file is written to `NAME.png.tmp` in the same folder,
//! synced, then renamed over `NAME.png`, so a crash leaves either the old picture or the new one, never half.

pub use super::ReportError;
use image::{GrayImage, ImageFormat, Luma};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Output pixels between neighbouring images and between rows (the gap is not scaled).
pub const GAP: usize = 2;
/// The gap's grey level.
pub const GAP_GREY: u8 = 128;

/// Draws `rows` (see the module docs) and writes them to `path` as an 8-bit grayscale PNG.
pub fn save_grid(
    path: &Path,
    rows: &[Vec<f32>],
    images_per_row: usize,
    height: usize,
    width: usize,
    scale: usize,
) -> Result<(), ReportError> {
    let layout = |problem: String| ReportError::Layout {
        path: path.to_path_buf(),
        problem,
    };
    if rows.is_empty() || images_per_row == 0 || height == 0 || width == 0 || scale == 0 {
        return Err(layout(format!(
            "empty grid ({} rows of {images_per_row} images of {height}×{width}, scale {scale})",
            rows.len()
        )));
    }
    let per_row = images_per_row * height * width;
    if let Some((i, row)) = rows.iter().enumerate().find(|(_, r)| r.len() != per_row) {
        return Err(layout(format!(
            "row {i} holds {} values but {images_per_row} images of {height}×{width} need {per_row}",
            row.len()
        )));
    }
    let (cell_w, cell_h) = (width * scale, height * scale);
    let total_w = images_per_row * cell_w + (images_per_row - 1) * GAP;
    let total_h = rows.len() * cell_h + (rows.len() - 1) * GAP;
    let (w32, h32) = match (u32::try_from(total_w), u32::try_from(total_h)) {
        (Ok(w), Ok(h)) => (w, h),
        _ => return Err(layout(format!("{total_w}×{total_h} pixels is too large"))),
    };
    let mut picture = GrayImage::from_pixel(w32, h32, Luma([GAP_GREY]));
    for (r, row) in rows.iter().enumerate() {
        for (i, image) in row.chunks(height * width).enumerate() {
            let (x0, y0) = (i * (cell_w + GAP), r * (cell_h + GAP));
            for py in 0..cell_h {
                for px in 0..cell_w {
                    let v = image[(py / scale) * width + px / scale];
                    picture.put_pixel((x0 + px) as u32, (y0 + py) as u32, Luma([to_byte(v)]));
                }
            }
        }
    }
    write_atomically(path, |w| {
        picture
            .write_to(w, ImageFormat::Png)
            .map_err(|source| ReportError::Encode {
                path: path.to_path_buf(),
                source,
            })
    })
}

/// [0, 1] → 0..=255, clamped; NaN becomes black.
fn to_byte(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Writes through `fill` into the sibling `path.with_extension("png.tmp")`, syncs it, renames it over `path`;
/// on failure the temporary file is removed.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let tmp = path.with_extension("png.tmp");
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp).map_err(io)?);
        fill(&mut w)?;
        w.flush().map_err(io)?;
        w.get_ref().sync_all().map_err(io)?;
        drop(w);
        std::fs::rename(&tmp, path).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gpu-ae-png-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Image `k` of a 3×2 picture: pixel (y, x) = (k·6 + y·2 + x) / 20, with some values out of range.
    fn ramp(k: usize) -> Vec<f32> {
        (0..6).map(|p| (k * 6 + p) as f32 / 20.0).collect()
    }

    #[test]
    fn grid_has_the_promised_size_and_pixels() {
        let dir = scratch_dir("grid");
        let path = dir.join("grid.png");
        // Two rows of three 3×2 images; the last value of row 1 is 1.7 (clamped to white), one is negative.
        let mut row1: Vec<f32> = (3..6).flat_map(ramp).collect();
        row1[0] = -0.4;
        *row1.last_mut().unwrap() = 1.7;
        let rows = vec![(0..3).flat_map(ramp).collect::<Vec<f32>>(), row1];
        save_grid(&path, &rows, 3, 3, 2, 4).unwrap();

        let img = image::open(&path).unwrap().into_luma8();
        // Width: 3 images × 2·4 + 2 gaps × 2; height: 2 rows × 3·4 + 1 gap × 2.
        assert_eq!(
            img.dimensions(),
            (3 * 8 + 2 * GAP as u32, 2 * 12 + GAP as u32)
        );
        let at = |x: u32, y: u32| img.get_pixel(x, y)[0];
        assert_eq!(at(0, 0), 0, "image 0 pixel (0, 0) = 0");
        assert_eq!(
            at(7, 11),
            to_byte(5.0 / 20.0),
            "image 0 pixel (2, 1), last block of its 4×4 upscale"
        );
        assert_eq!(at(4, 4), to_byte(3.0 / 20.0), "image 0 pixel (1, 1)");
        assert_eq!(at(8, 0), GAP_GREY, "gap between images");
        assert_eq!(at(0, 12), GAP_GREY, "gap between rows");
        assert_eq!(
            at(10, 0),
            to_byte(6.0 / 20.0),
            "image 1 starts after 8 pixels and a gap"
        );
        assert_eq!(at(0, 14), 0, "negative values clamp to black");
        assert_eq!(
            at(2 * 10 + 7, 14 + 11),
            255,
            "values above 1 clamp to white"
        );
        assert!(
            !path.with_extension("png.tmp").exists(),
            "temporary file left behind"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_directory_is_named_and_leaves_nothing() {
        let dir = scratch_dir("missing");
        let path = dir.join("no-such-folder").join("grid.png");
        let err = save_grid(&path, &[ramp(0)], 1, 3, 2, 1).unwrap_err();
        assert!(matches!(err, ReportError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn wrong_row_length_is_an_error_not_a_panic() {
        let dir = scratch_dir("layout");
        let path = dir.join("grid.png");
        let err = save_grid(&path, &[vec![0.5; 5]], 1, 3, 2, 1).unwrap_err();
        assert!(err.to_string().contains("row 0 holds 5 values"), "{err}");
        assert!(!path.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rewriting_replaces_the_picture() {
        let dir = scratch_dir("rewrite");
        let path = dir.join("grid.png");
        save_grid(&path, &[vec![0.0; 6]], 1, 3, 2, 1).unwrap();
        save_grid(&path, &[vec![1.0; 6]], 1, 3, 2, 1).unwrap();
        assert_eq!(
            image::open(&path).unwrap().into_luma8().get_pixel(0, 0)[0],
            255
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "only grid.png remains"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
