//! A data set of one's own PNG images, one sub-folder per class (torchvision's ImageFolder convention):
//!
//! ```text
//! DIR/train/<class>/*.png   DIR/test/<class>/*.png      a split of one's own, or
//! DIR/<class>/*.png                                      a fixed split: every 7th image (see below) to test
//! ```
//!
//! The label of a class is its place among the training classes' folder names sorted (as torchvision
//! sorts them: by their bytes); a test class must be one of them. Labels must fit the engine's range
//! 0..=[`MAX_LABEL`], so at most 10 classes. Every image must be a PNG of one common size; colour is
//! converted to grey (luma; alpha is dropped). Hidden files (`.DS_Store`) are skipped, and so are files
//! that are not PNGs beside the class folders (a README); a PNG there, or any other file inside a class
//! folder, is an error naming it.
//!
//! Order: each split is put in a fixed pseudo-random order (the same on every machine and every run), so
//! the first test images — the pictures' sixteen, `retrieve`'s first queries — mix the classes. Without a
//! split of its own, the test set takes the images at positions 0, 7, 14, … of that order over the whole
//! folder (1 in 7, MNIST's 10 000 of 70 000), the training set the rest.

use std::path::{Path, PathBuf};

use image::ImageFormat;

use super::idx::{IdxImages, MAX_ELEMENTS, MAX_IMAGE_SIDE};
use super::mnist::{Dataset, MAX_LABEL, Split};
use crate::rng::SplitMix64;

/// The test set's share of a folder without a split of its own: every `TEST_EVERY`-th image.
pub const TEST_EVERY: usize = 7;
/// The key of the fixed order (not the run's `--seed`: the data set is the same for every run).
const ORDER_KEY: u64 = 0x1_4A6E_F01D;

/// What can be wrong with a folder of images; every message names the file or folder.
#[derive(Debug, thiserror::Error)]
pub enum ImageFolderError {
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{}: has a {present} folder but no {missing} folder; a folder of images holds either \
         train/<class>/ and test/<class>/, or the class folders directly (then every {TEST_EVERY}th \
         image is a test image)",
        dir.display()
    )]
    HalfSplit {
        dir: PathBuf,
        present: &'static str,
        missing: &'static str,
    },

    #[error("{}: no PNG images in its class folders", dir.display())]
    NoImages { dir: PathBuf },

    #[error(
        "{}: {count} classes ({}), but labels go 0..={MAX_LABEL}: at most {} classes",
        dir.display(), names.join(", "), MAX_LABEL as usize + 1
    )]
    TooManyClasses {
        dir: PathBuf,
        count: usize,
        names: Vec<String>,
    },

    #[error(
        "{}: the class {class:?} has no folder under {} (test classes must be training classes)",
        path.display(), train_dir.display()
    )]
    UnknownTestClass {
        path: PathBuf,
        class: String,
        train_dir: PathBuf,
    },

    #[error("{}: a PNG beside the class folders; put each image in its class's folder", path.display())]
    StrayImage { path: PathBuf },

    #[error("{}: not a PNG image ({problem}); class folders hold PNG files only", path.display())]
    NotPng { path: PathBuf, problem: String },

    #[error(
        "{}: {width}×{height} pixels, but {} is {first_width}×{first_height}; all images must be one size",
        path.display(), first.display()
    )]
    MixedSizes {
        path: PathBuf,
        width: u32,
        height: u32,
        first: PathBuf,
        first_width: u32,
        first_height: u32,
    },

    #[error("{}: {width}×{height} pixels; a side may be at most {MAX_IMAGE_SIDE}", path.display())]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
    },

    #[error(
        "{}: {count} images of {width}×{height} exceed the {MAX_ELEMENTS}-pixel limit of a data set",
        dir.display()
    )]
    TooManyPixels {
        dir: PathBuf,
        count: usize,
        width: u32,
        height: u32,
    },

    #[error(
        "{}: {images} images are too few to split into training and test images; give at least 2, or \
         a train/ and a test/ folder",
        dir.display()
    )]
    TooFewToSplit { dir: PathBuf, images: usize },
}

/// Whether `dir` (which holds no IDX files) is laid out as a folder of images: a `train` or `test`
/// folder, or any (not hidden) sub-folder.
pub fn looks_like_image_folder(dir: &Path) -> bool {
    subfolders(dir).is_ok_and(|s| !s.is_empty())
}

/// Loads the folder (see the module docs).
pub fn load(dir: &Path) -> Result<Dataset, ImageFolderError> {
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    let (train, test) = match (train_dir.is_dir(), test_dir.is_dir()) {
        (true, true) => {
            let classes = class_names(&train_dir)?;
            let train = listing(&train_dir, &classes, None)?;
            let test = listing(&test_dir, &classes, Some(&train_dir))?;
            let mut size = None;
            let train = decode_split(&train_dir, fixed_order(train), &mut size)?;
            let test = decode_split(&test_dir, fixed_order(test), &mut size)?;
            (train, test)
        }
        (false, false) => {
            let classes = class_names(dir)?;
            let all = fixed_order(listing(dir, &classes, None)?);
            if all.is_empty() {
                return Err(ImageFolderError::NoImages { dir: dir.into() });
            }
            if all.len() < 2 {
                return Err(ImageFolderError::TooFewToSplit {
                    dir: dir.into(),
                    images: all.len(),
                });
            }
            let (test, train): (Vec<_>, Vec<_>) = all
                .into_iter()
                .enumerate()
                .partition(|(i, _)| i % TEST_EVERY == 0);
            let strip = |v: Vec<(usize, (PathBuf, u8))>| v.into_iter().map(|(_, x)| x).collect();
            let mut size = None;
            let train = decode_split(dir, strip(train), &mut size)?;
            let test = decode_split(dir, strip(test), &mut size)?;
            (train, test)
        }
        (present, _) => {
            let (present, missing) = match present {
                true => ("train", "test"),
                false => ("test", "train"),
            };
            return Err(ImageFolderError::HalfSplit {
                dir: dir.into(),
                present,
                missing,
            });
        }
    };
    for (split, at) in [(&train, &train_dir), (&test, &test_dir)] {
        if split.is_empty() {
            let dir = if at.is_dir() { at } else { dir };
            return Err(ImageFolderError::NoImages { dir: dir.into() });
        }
    }
    Ok(Dataset {
        train,
        test,
        dir: dir.to_path_buf(),
    })
}

/// The non-hidden sub-folders of `dir`, by name, sorted.
fn subfolders(dir: &Path) -> Result<Vec<String>, ImageFolderError> {
    let io = |source| ImageFolderError::Io {
        path: dir.into(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The class folders of `dir`, sorted: the label of each is its index. At most `MAX_LABEL` + 1.
fn class_names(dir: &Path) -> Result<Vec<String>, ImageFolderError> {
    let names = subfolders(dir)?;
    if names.len() > MAX_LABEL as usize + 1 {
        return Err(ImageFolderError::TooManyClasses {
            dir: dir.into(),
            count: names.len(),
            names,
        });
    }
    Ok(names)
}

/// Every image path of `dir`'s class folders with its label (classes and files in sorted order). With
/// `labels_from`, `dir` is a test folder whose classes must be among `classes`, the training folder's.
fn listing(
    dir: &Path,
    classes: &[String],
    labels_from: Option<&Path>,
) -> Result<Vec<(PathBuf, u8)>, ImageFolderError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageFolderError::Io { path, source }
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        let png = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        if !hidden && !path.is_dir() && png {
            return Err(ImageFolderError::StrayImage { path });
        }
    }
    for name in subfolders(dir)? {
        let class = dir.join(&name);
        let label = match classes.iter().position(|c| *c == name) {
            Some(l) => l as u8,
            None => {
                return Err(ImageFolderError::UnknownTestClass {
                    path: class,
                    class: name,
                    train_dir: labels_from.unwrap_or(dir).into(),
                });
            }
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(&class).map_err(io(&class))? {
            let path = entry.map_err(io(&class))?.path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !hidden {
                files.push(path);
            }
        }
        files.sort();
        out.extend(files.into_iter().map(|f| (f, label)));
    }
    Ok(out)
}

/// `items` in the fixed pseudo-random order (Fisher–Yates on the [`ORDER_KEY`] stream).
fn fixed_order<T>(mut items: Vec<T>) -> Vec<T> {
    let mut rng = SplitMix64::stream(ORDER_KEY, 0, items.len() as u64);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
    items
}

/// Decodes `files` into one split, every image grey and of the size of the first image decoded (`size`,
/// shared by both splits: the path and its width × height).
fn decode_split(
    dir: &Path,
    files: Vec<(PathBuf, u8)>,
    size: &mut Option<(PathBuf, u32, u32)>,
) -> Result<Split, ImageFolderError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::with_capacity(files.len());
    for (path, label) in files {
        let bytes = std::fs::read(&path).map_err(|source| ImageFolderError::Io {
            path: path.clone(),
            source,
        })?;
        let picture = image::load_from_memory_with_format(&bytes, ImageFormat::Png)
            .map_err(|e| ImageFolderError::NotPng {
                path: path.clone(),
                problem: e.to_string(),
            })?
            .to_luma8();
        let (width, height) = picture.dimensions();
        if width as usize > MAX_IMAGE_SIDE || height as usize > MAX_IMAGE_SIDE {
            return Err(ImageFolderError::TooLarge {
                path,
                width,
                height,
            });
        }
        match size {
            Some((first, w, h)) if (*w, *h) != (width, height) => {
                return Err(ImageFolderError::MixedSizes {
                    path,
                    width,
                    height,
                    first: first.clone(),
                    first_width: *w,
                    first_height: *h,
                });
            }
            Some(_) => {}
            None => *size = Some((path.clone(), width, height)),
        }
        if pixels.len() + picture.as_raw().len() > MAX_ELEMENTS {
            return Err(ImageFolderError::TooManyPixels {
                dir: dir.into(),
                count: labels.len() + 1,
                width,
                height,
            });
        }
        pixels.extend_from_slice(picture.as_raw());
        labels.push(label);
    }
    let (rows, cols) = size
        .as_ref()
        .map_or((0, 0), |(_, w, h)| (*h as usize, *w as usize));
    Ok(Split {
        images: IdxImages {
            count: labels.len(),
            rows,
            cols,
            pixels,
        },
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_order_is_a_permutation_and_the_same_every_time() {
        let a = fixed_order((0..50).collect::<Vec<_>>());
        assert_eq!(a, fixed_order((0..50).collect::<Vec<_>>()));
        assert_ne!(a, (0..50).collect::<Vec<_>>(), "the classes get mixed");
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
