//! Figures of grayscale images as PNG, written atomically.
//!
//! A figure, top to bottom, in output pixels (black text on white paper, images on [`GAP_GREY`]):
//! - a caption strip: caption line i is drawn at (`PAD`, `PAD` + i·`LINE_HEIGHT`), and the strip is
//!   lines·`LINE_HEIGHT` + `PAD` tall (no strip without a caption);
//! - the grid, wrapped into blocks `BLOCK_GAP` apart: block j shows images j·columns .. (j+1)·columns of
//!   every row. In a block, rows are `GAP` apart and so are images; each image is scaled up `scale`×
//!   (nearest); a row is max(height·scale, `TEXT_HEIGHT`) tall, the image and the label centred on it. The
//!   label is drawn `PAD` from the left in a margin [`text_width`] of the longest label + 2·`PAD` wide (no
//!   margin, and rows only height·scale tall, when every label is empty). Cells past the end of the rows in
//!   the last, partial block stay gap grey.
//!
//! The width is the larger of margin + grid and the widest caption line + 2·`PAD`; neither side may exceed
//! [`MAX_SIDE`]. Text uses the 8×8 legacy ASCII glyphs of `font8x8` scaled `TEXT_SCALE`×; any other
//! character is drawn as '?'.
//!
//! The file is written to the hidden sibling `.NAME.png.<pid>.tmp`, synced, then renamed over `NAME.png`, so
//! a crash leaves either the old picture or the new one, never half, and two processes writing the same
//! picture never share a temporary file.

pub use super::ReportError;
use font8x8::legacy::BASIC_LEGACY;
use image::{GrayImage, ImageFormat, Luma};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Output pixels between neighbouring images and between rows (the gap is not scaled).
pub const GAP: usize = 2;
/// Output pixels of white between blocks of a wrapped grid.
pub const BLOCK_GAP: usize = 12;
/// The gap's grey level.
pub const GAP_GREY: u8 = 128;
/// Background of the caption strip, the label margin and the space between blocks.
pub const PAPER: u8 = 255;
/// Grey level of text.
pub const INK: u8 = 0;
/// Pixels of a font glyph a side, before `TEXT_SCALE`.
pub const GLYPH: usize = 8;
/// Output pixels per glyph pixel.
pub const TEXT_SCALE: usize = 2;
/// Output pixels of one line of text, top to bottom.
pub const TEXT_HEIGHT: usize = GLYPH * TEXT_SCALE;
/// Paper around text.
pub const PAD: usize = 4;
/// Distance between the tops of caption lines.
pub const LINE_HEIGHT: usize = TEXT_HEIGHT + PAD;
/// Largest picture width or height written.
pub const MAX_SIDE: usize = 16384;

/// One labelled row of a figure: `images` each height×width values in [0, 1] (row-major).
#[derive(Debug, Clone)]
pub struct FigureRow<'a> {
    pub label: String,
    pub images: &'a [Vec<f32>],
}

/// A captioned grid of labelled rows of images; the module docs give the layout.
#[derive(Debug, Clone)]
pub struct Figure<'a> {
    /// Lines of the caption strip drawn above the grid (model, epoch, test loss, ...).
    pub caption: Vec<String>,
    /// The rows, top to bottom; all rows hold the same number of images.
    pub rows: Vec<FigureRow<'a>>,
    pub height: usize,
    pub width: usize,
    /// Images per line of the grid: with more images than this, the grid wraps into blocks, each block
    /// repeating every row (so row k of block j shows images j*columns .. (j+1)*columns of row k).
    pub columns: usize,
    /// Pixel scale of the images (nearest).
    pub scale: usize,
}

/// Output pixels `text` takes from left to right (one glyph per character).
pub fn text_width(text: &str) -> usize {
    text.chars().count().saturating_mul(GLYPH * TEXT_SCALE)
}

/// Draws `figure` (see the module docs) and writes it to `path`, which must end in `.png`, as an 8-bit
/// grayscale PNG; missing parent folders are created.
pub fn save_figure(path: &Path, figure: &Figure) -> Result<(), ReportError> {
    check_png_name(path)?;
    let picture = draw_figure(figure).map_err(|problem| ReportError::Layout {
        path: path.to_path_buf(),
        problem,
    })?;
    write_atomically(path, |w| {
        picture
            .write_to(w, ImageFormat::Png)
            .map_err(|source| ReportError::Encode {
                path: path.to_path_buf(),
                source,
            })
    })
}

/// Writes a colour picture (a plot) to `path`, which must end in `.png`, atomically.
pub fn save_rgb(path: &Path, picture: &image::RgbImage) -> Result<(), ReportError> {
    check_png_name(path)?;
    write_atomically(path, |w| {
        picture
            .write_to(w, ImageFormat::Png)
            .map_err(|source| ReportError::Encode {
                path: path.to_path_buf(),
                source,
            })
    })
}

/// Draws `rows`, each holding `images_per_row` images of height×width values (image after image), as one
/// unlabelled, uncaptioned block of a figure (see [`save_figure`]).
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
    let per_row = images_per_row.saturating_mul(height).saturating_mul(width);
    if let Some((i, row)) = rows.iter().enumerate().find(|(_, r)| r.len() != per_row) {
        return Err(layout(format!(
            "row {i} holds {} values but {images_per_row} images of {height}×{width} need {per_row}",
            row.len()
        )));
    }
    let images: Vec<Vec<Vec<f32>>> = rows
        .iter()
        .map(|row| row.chunks(height * width).map(<[f32]>::to_vec).collect())
        .collect();
    let figure = Figure {
        caption: Vec::new(),
        rows: images
            .iter()
            .map(|images| FigureRow {
                label: String::new(),
                images,
            })
            .collect(),
        height,
        width,
        columns: images_per_row,
        scale,
    };
    save_figure(path, &figure)
}

/// Where the parts of a figure go, in output pixels (see the module docs).
#[derive(Debug)]
struct FigureLayout {
    cell_width: usize,
    cell_height: usize,
    row_height: usize,
    margin: usize,
    caption_height: usize,
    grid_width: usize,
    block_height: usize,
    blocks: usize,
    width: usize,
    height: usize,
}

impl FigureLayout {
    /// Checks the shapes of `figure` and measures it; the error says what is wrong.
    fn new(figure: &Figure) -> Result<Self, String> {
        let Figure {
            rows,
            height,
            width,
            columns,
            scale,
            ..
        } = figure;
        let Some(images_per_row) = rows.first().map(|row| row.images.len()) else {
            return Err("no rows to draw".into());
        };
        if images_per_row == 0 || *height == 0 || *width == 0 || *columns == 0 || *scale == 0 {
            return Err(format!(
                "empty figure ({} rows of {images_per_row} images of {height}×{width}, {columns} columns, \
                 scale {scale})",
                rows.len()
            ));
        }
        if let Some((k, row)) = rows
            .iter()
            .enumerate()
            .find(|(_, row)| row.images.len() != images_per_row)
        {
            return Err(format!(
                "row {k} ({:?}) holds {} images but row 0 holds {images_per_row}",
                row.label,
                row.images.len()
            ));
        }
        let pixels = height.saturating_mul(*width);
        for (k, row) in rows.iter().enumerate() {
            if let Some((i, image)) = row
                .images
                .iter()
                .enumerate()
                .find(|(_, im)| im.len() != pixels)
            {
                return Err(format!(
                    "image {i} of row {k} ({:?}) holds {} values but {height}×{width} needs {pixels}",
                    row.label,
                    image.len()
                ));
            }
        }
        match Self::measure(figure, images_per_row) {
            Some(layout) if layout.width <= MAX_SIDE && layout.height <= MAX_SIDE => Ok(layout),
            measured => Err(format!(
                "{} pixels is larger than {MAX_SIDE} a side ({} rows of {images_per_row} images of \
                 {height}×{width} at scale {scale} in {columns} columns)",
                measured.map_or("the picture".into(), |l| format!(
                    "{}×{}",
                    l.width, l.height
                )),
                rows.len()
            )),
        }
    }

    /// The layout of a figure whose shapes are checked; `None` when a size overflows.
    fn measure(figure: &Figure, images_per_row: usize) -> Option<Self> {
        let cell_width = figure.width.checked_mul(figure.scale)?;
        let cell_height = figure.height.checked_mul(figure.scale)?;
        let label_width = figure
            .rows
            .iter()
            .map(|row| text_width(&row.label))
            .max()
            .unwrap_or(0);
        let (margin, row_height) = if label_width == 0 {
            (0, cell_height)
        } else {
            (
                label_width.checked_add(2 * PAD)?,
                cell_height.max(TEXT_HEIGHT),
            )
        };
        let caption_height = match figure.caption.len() {
            0 => 0,
            lines => lines.checked_mul(LINE_HEIGHT)?.checked_add(PAD)?,
        };
        let caption_width = match figure.caption.iter().map(|line| text_width(line)).max() {
            None => 0,
            Some(widest) => widest.checked_add(2 * PAD)?,
        };
        let grid_width = span(figure.columns.min(images_per_row), cell_width, GAP)?;
        let block_height = span(figure.rows.len(), row_height, GAP)?;
        let blocks = images_per_row.div_ceil(figure.columns);
        Some(Self {
            cell_width,
            cell_height,
            row_height,
            margin,
            caption_height,
            grid_width,
            block_height,
            blocks,
            width: margin.checked_add(grid_width)?.max(caption_width),
            height: caption_height.checked_add(span(blocks, block_height, BLOCK_GAP)?)?,
        })
    }

    /// Top edge of block `block`.
    fn block_top(&self, block: usize) -> usize {
        self.caption_height + block * (self.block_height + BLOCK_GAP)
    }

    /// Top edge of row `row` of block `block`.
    fn row_top(&self, block: usize, row: usize) -> usize {
        self.block_top(block) + row * (self.row_height + GAP)
    }

    /// Left edge of cell `cell` of a block's row.
    fn cell_left(&self, cell: usize) -> usize {
        self.margin + cell * (self.cell_width + GAP)
    }
}

/// Length of `count` items of `size` pixels with `gap` pixels between neighbours; `None` on overflow.
fn span(count: usize, size: usize, gap: usize) -> Option<usize> {
    count
        .checked_mul(size)?
        .checked_add(count.saturating_sub(1).checked_mul(gap)?)
}

/// Renders `figure` (see the module docs); the error says what is wrong with its shapes or size.
fn draw_figure(figure: &Figure) -> Result<GrayImage, String> {
    let layout = FigureLayout::new(figure)?;
    // Both sides are at most MAX_SIDE, so they fit in u32.
    let mut picture =
        GrayImage::from_pixel(layout.width as u32, layout.height as u32, Luma([PAPER]));
    for (i, line) in figure.caption.iter().enumerate() {
        draw_text(&mut picture, PAD, PAD + i * LINE_HEIGHT, line);
    }
    for block in 0..layout.blocks {
        let (left, top) = (layout.margin, layout.block_top(block));
        for y in top..top + layout.block_height {
            for x in left..left + layout.grid_width {
                picture.put_pixel(x as u32, y as u32, Luma([GAP_GREY]));
            }
        }
        for (k, row) in figure.rows.iter().enumerate() {
            let row_top = layout.row_top(block, k);
            if !row.label.is_empty() {
                // A label makes the row at least TEXT_HEIGHT tall.
                let label_top = row_top + (layout.row_height - TEXT_HEIGHT) / 2;
                draw_text(&mut picture, PAD, label_top, &row.label);
            }
            let image_top = row_top + (layout.row_height - layout.cell_height) / 2;
            let shown = row
                .images
                .iter()
                .skip(block * figure.columns)
                .take(figure.columns);
            for (cell, image) in shown.enumerate() {
                let cell_left = layout.cell_left(cell);
                for py in 0..layout.cell_height {
                    for px in 0..layout.cell_width {
                        let v = image[(py / figure.scale) * figure.width + px / figure.scale];
                        let (x, y) = (cell_left + px, image_top + py);
                        picture.put_pixel(x as u32, y as u32, Luma([to_byte(v)]));
                    }
                }
            }
        }
    }
    Ok(picture)
}

/// The 8×8 glyph of `c`, one byte per row, bit 0 the leftmost pixel; non-ASCII characters get '?'.
pub(crate) fn glyph(c: char) -> [u8; 8] {
    BASIC_LEGACY[if c.is_ascii() {
        c as usize
    } else {
        '?' as usize
    }]
}

/// Draws `text` in [`INK`] with its top-left corner at (`left`, `top`); the caller leaves room for
/// [`text_width`] × [`TEXT_HEIGHT`] pixels.
fn draw_text(picture: &mut GrayImage, left: usize, top: usize, text: &str) {
    for (n, c) in text.chars().enumerate() {
        let glyph_left = left + n * GLYPH * TEXT_SCALE;
        for (gy, bits) in glyph(c).into_iter().enumerate() {
            for gx in (0..GLYPH).filter(|gx| bits & (1 << gx) != 0) {
                for sy in 0..TEXT_SCALE {
                    for sx in 0..TEXT_SCALE {
                        let x = glyph_left + gx * TEXT_SCALE + sx;
                        let y = top + gy * TEXT_SCALE + sy;
                        picture.put_pixel(x as u32, y as u32, Luma([INK]));
                    }
                }
            }
        }
    }
}

/// [0, 1] → 0..=255, clamped; NaN becomes black.
fn to_byte(v: f32) -> u8 {
    if v.is_nan() {
        0
    } else {
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// `path` must end in `.png`, in any case.
fn check_png_name(path: &Path) -> Result<(), ReportError> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
    {
        Ok(())
    } else {
        Err(ReportError::NotPng {
            path: path.to_path_buf(),
        })
    }
}

/// The hidden sibling `.NAME.png.<pid>.tmp` of `NAME.png`, unique to this process.
fn temporary_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes `text` to `path` with [`write_atomically`].
pub(crate) fn write_text_atomically(path: &Path, text: &str) -> Result<(), ReportError> {
    write_atomically(path, |w| {
        w.write_all(text.as_bytes())
            .map_err(|source| ReportError::Io {
                path: path.to_path_buf(),
                source,
            })
    })
}

/// Creates the parent folder of `path` if missing, writes through `fill` into [`temporary_path`], syncs it
/// and renames it over `path`; on failure the temporary file is removed.
pub(crate) fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder).map_err(io)?;
    }
    let tmp = temporary_path(path);
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

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gpu-ae-png-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Names of the files in `dir` that end in `.tmp`.
    fn temporaries(dir: &Path) -> Vec<OsString> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name.to_string_lossy().ends_with(".tmp"))
            .collect()
    }

    /// Image `k` of a 3×2 picture: pixel (y, x) = (k·6 + y·2 + x) / 20, with some values out of range.
    fn ramp(k: usize) -> Vec<f32> {
        (0..6).map(|p| (k * 6 + p) as f32 / 20.0).collect()
    }

    /// `count` 3×2 images, image n uniformly `value(n)`.
    fn flat_images(count: usize, value: impl Fn(usize) -> f32) -> Vec<Vec<f32>> {
        (0..count).map(|n| vec![value(n); 6]).collect()
    }

    /// A figure of 3×2 images at scale 4 in `columns` columns.
    fn figure<'a>(caption: &[&str], rows: &[(&str, &'a [Vec<f32>])], columns: usize) -> Figure<'a> {
        Figure {
            caption: caption.iter().map(|line| line.to_string()).collect(),
            rows: rows
                .iter()
                .map(|&(label, images)| FigureRow {
                    label: label.into(),
                    images,
                })
                .collect(),
            height: 3,
            width: 2,
            columns,
            scale: 4,
        }
    }

    /// Every pixel of the box `text` takes at (`left`, `top`) is ink where its glyph has a bit set and
    /// paper elsewhere.
    fn assert_text_at(picture: &GrayImage, left: usize, top: usize, text: &str) {
        let mut inked = 0;
        for (n, c) in text.chars().enumerate() {
            for (gy, bits) in glyph(c).into_iter().enumerate() {
                for gx in 0..GLYPH {
                    let set = bits & (1 << gx) != 0;
                    inked += usize::from(set);
                    for (sx, sy) in [(0, 0), (TEXT_SCALE - 1, TEXT_SCALE - 1)] {
                        let x = left + (n * GLYPH + gx) * TEXT_SCALE + sx;
                        let y = top + gy * TEXT_SCALE + sy;
                        let want = if set { INK } else { PAPER };
                        assert_eq!(
                            picture.get_pixel(x as u32, y as u32)[0],
                            want,
                            "{text:?} char {n} glyph pixel ({gx}, {gy}) at ({x}, {y})"
                        );
                    }
                }
            }
        }
        assert!(inked > 0, "{text:?} has no ink to check");
    }

    #[test]
    fn text_is_drawn_from_the_8x8_glyph_bits() {
        // 'I' in the legacy table: a bar of bits 1..=4 over and under a stem of bits 2 and 3.
        assert_eq!(glyph('I'), [0x1E, 0x0C, 0x0C, 0x0C, 0x0C, 0x0C, 0x1E, 0x00]);
        let images = flat_images(1, |_| 0.5);
        let picture = draw_figure(&figure(&["I", "éI"], &[("", &images)], 1)).unwrap();
        assert_text_at(&picture, PAD, PAD, "I");
        let (stem_x, stem_y) = (PAD + 2 * TEXT_SCALE, PAD + 3 * TEXT_SCALE);
        assert_eq!(
            picture.get_pixel(stem_x as u32, stem_y as u32)[0],
            INK,
            "stem of 'I'"
        );
        assert_eq!(
            picture.get_pixel(PAD as u32, stem_y as u32)[0],
            PAPER,
            "left of the stem"
        );
        // Non-ASCII is drawn as '?'.
        assert_text_at(&picture, PAD, PAD + LINE_HEIGHT, "?I");
        assert_eq!(text_width("éI"), 2 * GLYPH * TEXT_SCALE);
    }

    #[test]
    fn figure_size_follows_from_the_layout() {
        let images = flat_images(5, |_| 0.5);
        let rows = [("in", &images[..]), ("reconstruction", &images[..])];
        let picture = draw_figure(&figure(&["epoch 3", "loss 0.1"], &rows, 2)).unwrap();
        // Margin: 14 characters and PAD each side; two 2·4-wide images a row; rows max(3·4, text) tall.
        let margin = 14 * GLYPH * TEXT_SCALE + 2 * PAD;
        let row_height = TEXT_HEIGHT.max(12);
        let block_height = 2 * row_height + GAP;
        let width = margin + 2 * 8 + GAP;
        // Two caption lines, then three blocks (2 + 2 + 1 images).
        let height = 2 * LINE_HEIGHT + PAD + 3 * block_height + 2 * BLOCK_GAP;
        assert_eq!(picture.dimensions(), (width as u32, height as u32));

        // A caption wider than the grid sets the width.
        let wide = "a caption line much wider than two small images";
        let picture = draw_figure(&figure(&[wide], &rows, 2)).unwrap();
        assert_eq!(picture.width() as usize, text_width(wide) + 2 * PAD);
        assert!(text_width(wide) + 2 * PAD > width);
    }

    #[test]
    fn wrapped_blocks_show_image_j_columns_plus_i_of_every_row() {
        // Row k, image n is uniformly (10·k + n) / 40; 7 images in 3 columns make blocks of 3, 3 and 1.
        let rows: Vec<Vec<Vec<f32>>> = (0..2)
            .map(|k| flat_images(7, |n| (10 * k + n) as f32 / 40.0))
            .collect();
        let labelled = [("first", &rows[0][..]), ("second", &rows[1][..])];
        let picture = draw_figure(&figure(&["wrap"], &labelled, 3)).unwrap();
        let layout = FigureLayout::new(&figure(&["wrap"], &labelled, 3)).unwrap();
        assert_eq!(layout.blocks, 3);
        // Rows are TEXT_HEIGHT tall, images 3·4: the image sits (TEXT_HEIGHT - 12) / 2 below the row's top.
        let image_offset = (TEXT_HEIGHT - 12) / 2;
        assert!(image_offset > 0);
        for j in 0..3 {
            for k in 0..2 {
                for i in (0..3).filter(|i| j * 3 + i < 7) {
                    let x = layout.cell_left(i) + 8 - 1;
                    let y = layout.row_top(j, k) + image_offset;
                    let want = to_byte((10 * k + j * 3 + i) as f32 / 40.0);
                    assert_eq!(
                        picture.get_pixel(x as u32, y as u32)[0],
                        want,
                        "block {j}, row {k}, cell {i} at ({x}, {y})"
                    );
                    let above = picture.get_pixel(x as u32, y as u32 - 1)[0];
                    assert_eq!(above, GAP_GREY, "above block {j}, row {k}, cell {i}");
                }
            }
        }
        // The space between blocks is paper, wider than the grey gap between rows.
        let between = layout.block_top(1) - BLOCK_GAP / 2;
        assert_eq!(
            picture.get_pixel(layout.margin as u32, between as u32)[0],
            PAPER
        );
        const { assert!(BLOCK_GAP > GAP) };
    }

    #[test]
    fn missing_cells_of_the_last_block_are_gap_grey() {
        let images = flat_images(5, |_| 1.0);
        let picture = draw_figure(&figure(&[], &[("x", &images[..])], 2)).unwrap();
        let layout = FigureLayout::new(&figure(&[], &[("x", &images[..])], 2)).unwrap();
        let top = layout.row_top(2, 0) + (layout.row_height - 12) / 2;
        let at = |x: usize, y: usize| picture.get_pixel(x as u32, y as u32)[0];
        assert_eq!(
            at(layout.cell_left(0), top),
            255,
            "image 4 in cell 0 of block 2"
        );
        for (dx, dy) in [(0, 0), (7, 11), (4, 6)] {
            let (x, y) = (layout.cell_left(1) + dx, top + dy);
            assert_eq!(at(x, y), GAP_GREY, "cell 1 of block 2 at ({x}, {y})");
        }
        assert_eq!(
            at(
                layout.cell_left(1),
                layout.row_top(1, 0) + (layout.row_height - 12) / 2
            ),
            255
        );
    }

    #[test]
    fn every_row_label_is_drawn_centred_on_its_row_in_every_block() {
        let images = flat_images(4, |_| 0.0);
        let rows = [("A", &images[..]), ("BB", &images[..]), ("C", &images[..])];
        // Images 3·8 tall, taller than text: the label sits (24 - TEXT_HEIGHT) / 2 below the row's top.
        let mut tall = figure(&[], &rows, 2);
        tall.scale = 8;
        let (picture, layout) = (
            draw_figure(&tall).unwrap(),
            FigureLayout::new(&tall).unwrap(),
        );
        assert_eq!(layout.margin, text_width("BB") + 2 * PAD);
        assert_eq!(layout.row_height, 24);
        for block in 0..2 {
            for (k, (label, _)) in rows.iter().enumerate() {
                let top = layout.row_top(block, k) + (24 - TEXT_HEIGHT) / 2;
                assert_text_at(&picture, PAD, top, label);
            }
        }
    }

    #[test]
    fn bad_figures_are_layout_errors_naming_the_path() {
        let dir = scratch_dir("bad-figure");
        let path = dir.join("figure.png");
        let (three, four) = (flat_images(3, |_| 0.5), flat_images(4, |_| 0.5));
        let short = vec![vec![0.5; 6], vec![0.5; 5]];
        let mut huge = figure(&[], &[("", &three[..])], 3);
        huge.scale = MAX_SIDE;
        let mut zero_height = figure(&[], &[("", &three[..])], 3);
        zero_height.height = 0;
        let cases = [
            (figure(&["no rows"], &[], 3), "no rows to draw"),
            (
                figure(&[], &[("a", &three), ("b", &four)], 3),
                "row 1 (\"b\") holds 4 images",
            ),
            (
                figure(&[], &[("a", &short)], 3),
                "image 1 of row 0 (\"a\") holds 5 values",
            ),
            (figure(&[], &[("a", &three)], 0), "0 columns"),
            (zero_height, "empty figure"),
            (huge, "larger than 16384 a side"),
        ];
        for (bad, problem) in cases {
            let err = save_figure(&path, &bad).unwrap_err();
            assert!(matches!(err, ReportError::Layout { .. }), "{err:?}");
            let message = err.to_string();
            assert!(message.contains(problem), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn only_png_names_are_written() {
        let dir = scratch_dir("not-png");
        let images = flat_images(1, |_| 0.5);
        let fig = figure(&[], &[("", &images[..])], 1);
        for name in ["figure.jpg", "figure", "figure.png.bak", ".png"] {
            let path = dir.join(name);
            let err = save_figure(&path, &fig).unwrap_err();
            assert!(matches!(err, ReportError::NotPng { .. }), "{name}: {err:?}");
            let message = err.to_string();
            assert!(message.contains("name the file *.png"), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        save_figure(&dir.join("FIGURE.PNG"), &fig).unwrap();
        assert!(dir.join("FIGURE.PNG").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_parent_folders_are_created() {
        let dir = scratch_dir("parents");
        let path = dir.join("run").join("pictures").join("figure.png");
        let images = flat_images(2, |_| 0.5);
        save_figure(&path, &figure(&["made"], &[("row", &images[..])], 2)).unwrap();
        let picture = image::open(&path).unwrap().into_luma8();
        assert_text_at(&picture, PAD, PAD, "made");
        assert!(temporaries(path.parent().unwrap()).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn temporary_file_is_hidden_and_names_the_process() {
        let path = Path::new("runs").join("figure.png");
        let want = format!(".figure.png.{}.tmp", std::process::id());
        assert_eq!(temporary_path(&path), Path::new("runs").join(want));
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
        assert!(temporaries(&dir).is_empty(), "temporary file left behind");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unwritable_folder_is_named_and_leaves_nothing() {
        let dir = scratch_dir("unwritable");
        // A file where the parent folder should be: the folder cannot be created.
        std::fs::write(dir.join("blocker"), b"").unwrap();
        let path = dir.join("blocker").join("grid.png");
        let err = save_grid(&path, &[ramp(0)], 1, 3, 2, 1).unwrap_err();
        assert!(matches!(err, ReportError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "only the blocker"
        );
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
