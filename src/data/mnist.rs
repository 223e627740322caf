//! Locating, loading and checking an MNIST-style directory.
//!
//! The bundled data set is MNIST, Y. LeCun and C. Cortes, CC BY-SA 3.0
//! (<http://yann.lecun.com/exdb/mnist/>), stored gzipped under `assets/mnist/`.
//!
//! A directory holds four IDX files (train/test images and labels). Each may be plain or
//! gzipped (`.gz` suffix) and may use either the dash spelling `train-images-idx3-ubyte` or
//! the dot spelling `train-images.idx3-ubyte`. Checksums are taken over the decompressed
//! bytes, so plain and gzipped copies of the same file verify alike.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::idx::{self, DataError, IdxImages};
use super::image_folder;

/// Largest label value in MNIST (digits 0..=9).
pub const MAX_LABEL: u8 = 9;

/// One of the four MNIST files: its canonical name and the SHA-256 of its decompressed bytes.
#[derive(Debug, Clone, Copy)]
pub struct MnistFile {
    pub name: &'static str,
    pub sha256: &'static str,
}

pub const TRAIN_IMAGES: MnistFile = MnistFile {
    name: "train-images-idx3-ubyte",
    sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
};
pub const TRAIN_LABELS: MnistFile = MnistFile {
    name: "train-labels-idx1-ubyte",
    sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
};
pub const TEST_IMAGES: MnistFile = MnistFile {
    name: "t10k-images-idx3-ubyte",
    sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
};
pub const TEST_LABELS: MnistFile = MnistFile {
    name: "t10k-labels-idx1-ubyte",
    sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
};

/// Images with one label each; `labels.len() == images.count` is checked at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub images: IdxImages,
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of (image, label) pairs.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels in one image, `rows * cols`.
    pub fn pixels_per_image(&self) -> usize {
        self.images.pixels_per_image()
    }

    /// Image `index` as `rows * cols` values in [0, 1] (pixel / 255, as the batch gather scales it).
    pub fn image(&self, index: usize) -> Vec<f32> {
        let n = self.pixels_per_image();
        self.images.pixels[index * n..(index + 1) * n]
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect()
    }

    /// Keeps the first `n` pairs (all of them when `n >= len`), e.g. for quick runs.
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.count = n;
        self.images.pixels.truncate(n * self.pixels_per_image());
    }
}

/// Both splits of a data set and the directory they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
    pub dir: PathBuf,
}

/// The bundled MNIST: `assets/mnist` of the source tree the binary was built from, or, where that tree is
/// gone (a binary copied to another machine), `assets/mnist` under the working directory.
pub fn bundled_dir() -> PathBuf {
    let built = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/mnist"));
    let here = PathBuf::from("assets/mnist");
    if !built.is_dir() && here.is_dir() {
        here
    } else {
        built
    }
}

/// `load_dir(bundled_dir(), true)`.
pub fn load_bundled() -> Result<Dataset, DataError> {
    load_dir(&bundled_dir(), true)
}

/// Loads the four MNIST files from `dir` (see the module docs for accepted names), checks
/// image/label counts agree per split, train and test images share a shape, labels are
/// `<= 9`, and with `verify_checksums` that each file's decompressed SHA-256 is MNIST's. A directory
/// with none of the four files but with sub-folders is a folder of PNG images, a sub-folder per class
/// ([`image_folder`]).
pub fn load_dir(dir: &Path, verify_checksums: bool) -> Result<Dataset, DataError> {
    if !dir.exists() {
        return Err(DataError::MissingDir {
            dir: dir.to_path_buf(),
        });
    }
    if !dir.is_dir() {
        return Err(DataError::NotADir {
            dir: dir.to_path_buf(),
        });
    }
    // Locate everything first so a missing file is reported before any slow reading.
    let [train_images, train_labels, test_images, test_labels] =
        [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS].map(|file| locate(dir, file.name));
    let no_idx = [&train_images, &train_labels, &test_images, &test_labels]
        .iter()
        .all(|found| found.is_err());
    if no_idx && image_folder::looks_like_image_folder(dir) {
        return Ok(image_folder::load(dir)?);
    }
    let paths = [train_images?, train_labels?, test_images?, test_labels?];
    let [train_images, train_labels, test_images, test_labels] = &paths;

    // Labels first: they are small, so a wrong or tampered label file fails fast.
    let checksum = |file: MnistFile| verify_checksums.then_some(file.sha256);
    let train_labels_v = load_labels(train_labels, checksum(TRAIN_LABELS))?;
    let test_labels_v = load_labels(test_labels, checksum(TEST_LABELS))?;
    let train_images_v = load_images(train_images, checksum(TRAIN_IMAGES))?;
    let test_images_v = load_images(test_images, checksum(TEST_IMAGES))?;

    let train = pair(train_images, train_images_v, train_labels, train_labels_v)?;
    let test = pair(test_images, test_images_v, test_labels, test_labels_v)?;
    if (train.images.rows, train.images.cols) != (test.images.rows, test.images.cols) {
        return Err(DataError::ShapeMismatch {
            train_path: train_images.clone(),
            train_rows: train.images.rows,
            train_cols: train.images.cols,
            test_path: test_images.clone(),
            test_rows: test.images.rows,
            test_cols: test.images.cols,
        });
    }
    Ok(Dataset {
        train,
        test,
        dir: dir.to_path_buf(),
    })
}

/// File names accepted for `name`: dash and dot spellings, each plain or `.gz`, in the
/// order they are tried.
pub fn candidate_names(name: &str) -> Vec<String> {
    // "train-images-idx3-ubyte" -> "train-images.idx3-ubyte": the dash before "idx" becomes a dot.
    let dotted = name.replacen("-idx", ".idx", 1);
    let mut names = vec![name.to_string(), format!("{name}.gz")];
    if dotted != name {
        names.push(dotted.clone());
        names.push(format!("{dotted}.gz"));
    }
    names
}

/// The first candidate spelling of `name` that exists in `dir` as a file.
fn locate(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let tried = candidate_names(name);
    tried
        .iter()
        .map(|candidate| dir.join(candidate))
        .find(|path| path.is_file())
        .ok_or_else(|| DataError::MissingFile {
            dir: dir.to_path_buf(),
            tried,
        })
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares the SHA-256 of `bytes` (decompressed contents of `path`) with `expected`.
fn verify(bytes: &[u8], path: &Path, expected: Option<&str>) -> Result<(), DataError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let found = sha256_hex(bytes);
    if found != expected {
        return Err(DataError::Checksum {
            path: path.into(),
            expected: expected.into(),
            found,
        });
    }
    Ok(())
}

// Parse before verifying: a structurally broken file gets the more specific error.
fn load_labels(path: &Path, sha256: Option<&str>) -> Result<Vec<u8>, DataError> {
    let bytes = idx::read_file_bytes(path)?;
    let labels = idx::parse_labels(&bytes, path, MAX_LABEL)?;
    verify(&bytes, path, sha256)?;
    Ok(labels)
}

fn load_images(path: &Path, sha256: Option<&str>) -> Result<IdxImages, DataError> {
    let bytes = idx::read_file_bytes(path)?;
    let images = idx::parse_images(&bytes, path)?;
    verify(&bytes, path, sha256)?;
    Ok(images)
}

/// Joins images and labels into a split, requiring one label per image.
fn pair(
    images_path: &Path,
    images: IdxImages,
    labels_path: &Path,
    labels: Vec<u8>,
) -> Result<Split, DataError> {
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.into(),
            images: images.count,
            labels_path: labels_path.into(),
            labels: labels.len(),
        });
    }
    Ok(Split { images, labels })
}
