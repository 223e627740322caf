//! IDX file reader (the format MNIST ships in), with validation.
//!
//! Format: a 4-byte big-endian magic `0x0000_08NN` (0x08 = u8 elements, NN = number of
//! dimensions), then NN big-endian u32 dimension sizes, then the elements, row-major.
//! Images are `[count, rows, cols]` (magic 0x0000_0803), labels are `[count]` (0x0000_0801).
//! Every header is checked against the file length *before* anything is allocated, so a
//! corrupt or hostile header produces an error, not an out-of-memory abort.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

/// Magic number of an IDX file holding u8 elements in 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file holding u8 elements in 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Largest accepted image side; MNIST-style data sets are far below this.
pub const MAX_IMAGE_SIDE: usize = 4096;
/// Largest accepted `count * rows * cols` (and label count), 2 GiB of u8.
pub const MAX_ELEMENTS: usize = 1 << 31;
/// Largest file content (after gunzip) that `read_file_bytes` will hold in memory.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const IMAGES_HEADER_LEN: usize = 16;
const LABELS_HEADER_LEN: usize = 8;

/// Everything that can go wrong while reading a data set; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: cannot read file: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },

    #[error("{}: corrupt gzip data: {source}", path.display())]
    Decompress { path: PathBuf, source: io::Error },

    #[error(
        "{}: contents exceed the {limit}-byte limit (after gunzip); the file is corrupt, a gzip bomb, or not an IDX file",
        path.display()
    )]
    TooLarge { path: PathBuf, limit: u64 },

    #[error(
        "{}: bad magic number {found:#010x}, expected {expected:#010x} ({what}); is this the right file?",
        path.display()
    )]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
        what: &'static str,
    },

    #[error(
        "{}: file is truncated in the {part}: the header implies {expected} bytes but the file has only {found}",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        part: &'static str,
        expected: usize,
        found: usize,
    },

    #[error(
        "{}: {} unexpected trailing bytes: the header implies {expected} bytes but the file has {found}",
        path.display(), found - expected
    )]
    TrailingBytes {
        path: PathBuf,
        expected: usize,
        found: usize,
    },

    #[error("{}: absurd dimensions {dims} in the IDX header: {reason}", path.display())]
    AbsurdDimensions {
        path: PathBuf,
        dims: String,
        reason: String,
    },

    #[error(
        "{}: label {label} at index {index} is out of range (labels must be 0..={max})",
        path.display()
    )]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u8,
        max: u8,
    },

    #[error(
        "count mismatch: {} holds {images} images but {} holds {labels} labels; every image needs exactly one label",
        images_path.display(), labels_path.display()
    )]
    CountMismatch {
        images_path: PathBuf,
        images: usize,
        labels_path: PathBuf,
        labels: usize,
    },

    #[error(
        "shape mismatch: {} has {train_rows}x{train_cols} images but {} has {test_rows}x{test_cols}; train and test images must be the same size",
        train_path.display(), test_path.display()
    )]
    ShapeMismatch {
        train_path: PathBuf,
        train_rows: usize,
        train_cols: usize,
        test_path: PathBuf,
        test_rows: usize,
        test_cols: usize,
    },

    #[error(
        "{}: checksum mismatch: SHA-256 of the (decompressed) contents is {found}, expected {expected}; the file is corrupt or not the official release",
        path.display()
    )]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },

    #[error(
        "{}: missing data file; tried {} (plain or gzipped files are both fine)",
        dir.display(), tried.join(", ")
    )]
    MissingFile { dir: PathBuf, tried: Vec<String> },

    #[error(
        "{}: no such directory (--data names a directory of IDX files, or of PNG images in class folders)",
        dir.display()
    )]
    MissingDir { dir: PathBuf },

    #[error(
        "{}: not a directory (--data names a directory of IDX files, or of PNG images in class folders; \
         not a file)",
        dir.display()
    )]
    NotADir { dir: PathBuf },

    #[error(transparent)]
    ImageFolder(#[from] super::image_folder::ImageFolderError),
}

/// A stack of u8 images: `pixels[i*rows*cols + r*cols + c]` is pixel (r, c) of image i.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Pixels in one image, `rows * cols`.
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// Image `i` as a row-major `rows * cols` slice, or None past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let n = self.pixels_per_image();
        self.pixels.get(i * n..(i + 1) * n)
    }
}

/// Big-endian u32 at `bytes[at..at + 4]`; callers have already checked the length.
fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks `bytes` holds at least a full header and starts with `expected` magic.
fn check_header(
    bytes: &[u8],
    path: &Path,
    header_len: usize,
    expected: u32,
    what: &'static str,
) -> Result<(), DataError> {
    // A short file whose first four bytes already disagree is better reported as bad magic.
    if bytes.len() >= 4 && be_u32(bytes, 0) != expected {
        return Err(DataError::BadMagic {
            path: path.into(),
            found: be_u32(bytes, 0),
            expected,
            what,
        });
    }
    if bytes.len() < header_len {
        return Err(DataError::Truncated {
            path: path.into(),
            part: "header",
            expected: header_len,
            found: bytes.len(),
        });
    }
    Ok(())
}

/// Checks the file is exactly `expected` bytes long: header + elements, nothing missing or extra.
fn check_length(
    bytes: &[u8],
    path: &Path,
    part: &'static str,
    expected: usize,
) -> Result<(), DataError> {
    let found = bytes.len();
    if found < expected {
        return Err(DataError::Truncated {
            path: path.into(),
            part,
            expected,
            found,
        });
    }
    if found > expected {
        return Err(DataError::TrailingBytes {
            path: path.into(),
            expected,
            found,
        });
    }
    Ok(())
}

/// Parses an IDX image file: magic 0x0000_0803, then count, rows, cols (big-endian u32),
/// then `count * rows * cols` u8 pixels. Dimensions are validated before allocating.
pub fn parse_images(bytes: &[u8], path: &Path) -> Result<IdxImages, DataError> {
    check_header(
        bytes,
        path,
        IMAGES_HEADER_LEN,
        IMAGES_MAGIC,
        "IDX images, u8",
    )?;
    let [count, rows, cols] = [4, 8, 12].map(|at| be_u32(bytes, at) as usize);
    let absurd = |reason: String| DataError::AbsurdDimensions {
        path: path.into(),
        dims: format!("{count} x {rows} x {cols}"),
        reason,
    };
    if count == 0 || rows == 0 || cols == 0 {
        return Err(absurd("a dimension is zero".into()));
    }
    if rows > MAX_IMAGE_SIDE || cols > MAX_IMAGE_SIDE {
        return Err(absurd(format!(
            "image sides are limited to {MAX_IMAGE_SIDE}"
        )));
    }
    let elements = count
        .checked_mul(rows * cols)
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| absurd(format!("more than {MAX_ELEMENTS} pixels in total")))?;
    check_length(bytes, path, "pixel data", IMAGES_HEADER_LEN + elements)?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: bytes[IMAGES_HEADER_LEN..].to_vec(),
    })
}

/// Parses an IDX label file: magic 0x0000_0801, count (big-endian u32), then `count` u8
/// labels, each required to be `<= max_label`.
pub fn parse_labels(bytes: &[u8], path: &Path, max_label: u8) -> Result<Vec<u8>, DataError> {
    check_header(
        bytes,
        path,
        LABELS_HEADER_LEN,
        LABELS_MAGIC,
        "IDX labels, u8",
    )?;
    let count = be_u32(bytes, 4) as usize;
    if count == 0 || count > MAX_ELEMENTS {
        return Err(DataError::AbsurdDimensions {
            path: path.into(),
            dims: count.to_string(),
            reason: format!("the label count must be between 1 and {MAX_ELEMENTS}"),
        });
    }
    check_length(bytes, path, "label data", LABELS_HEADER_LEN + count)?;
    let labels = &bytes[LABELS_HEADER_LEN..];
    if let Some(index) = labels.iter().position(|&label| label > max_label) {
        let label = labels[index];
        return Err(DataError::LabelOutOfRange {
            path: path.into(),
            index,
            label,
            max: max_label,
        });
    }
    Ok(labels.to_vec())
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic 1f 8b (the
/// extension is ignored). Contents larger than [`MAX_FILE_BYTES`] are refused.
pub fn read_file_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    read_file_bytes_with_limit(path, MAX_FILE_BYTES)
}

/// [`read_file_bytes`] with an explicit cap on the (decompressed) size, in bytes.
/// Reading stops at `limit + 1` bytes, so a gzip bomb costs at most `limit` of memory.
pub fn read_file_bytes_with_limit(path: &Path, limit: u64) -> Result<Vec<u8>, DataError> {
    let io_err = |source| DataError::Io {
        path: path.into(),
        source,
    };
    let too_large = || DataError::TooLarge {
        path: path.into(),
        limit,
    };

    let mut raw = Vec::new();
    File::open(path)
        .map_err(io_err)?
        .take(limit + 1)
        .read_to_end(&mut raw)
        .map_err(io_err)?;
    if raw.len() as u64 > limit {
        return Err(too_large());
    }
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }

    let mut plain = Vec::new();
    GzDecoder::new(raw.as_slice())
        .take(limit + 1)
        .read_to_end(&mut plain)
        .map_err(|source| DataError::Decompress {
            path: path.into(),
            source,
        })?;
    if plain.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(plain)
}

/// Reads and parses an IDX image file, plain or gzipped.
pub fn read_images(path: &Path) -> Result<IdxImages, DataError> {
    parse_images(&read_file_bytes(path)?, path)
}

/// Reads and parses an IDX label file, plain or gzipped; labels must be `<= max_label`.
pub fn read_labels(path: &Path, max_label: u8) -> Result<Vec<u8>, DataError> {
    parse_labels(&read_file_bytes(path)?, path, max_label)
}
