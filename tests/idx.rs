//! IDX parsing and MNIST loading: every malformed input gives an error that names the file
//! and the problem; valid data round-trips; the bundled MNIST loads and verifies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use gpu_ae::data::idx::{self, IMAGES_MAGIC, LABELS_MAGIC};
use gpu_ae::data::mnist::{self, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use gpu_ae::data::{DataError, IdxImages};

// ---- allocation tracking: the largest single allocation made by the current thread ----

/// Wraps the system allocator to record, per thread, the largest single allocation, so a
/// test can show a hostile header is refused without allocating what it claims.
struct LargestAllocation;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.with(|largest| largest.set(largest.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.with(|largest| largest.set(largest.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Runs `f` and returns its result with the largest allocation it made on this thread.
fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    let result = f();
    (result, LARGEST.with(|largest| largest.get()))
}

// ---- fixtures ----

/// A directory under the system temp dir, unique per test and process, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("gpu-ae-idx-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, bytes).expect("write fixture");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Deterministic non-zero-ish bytes (xorshift32).
fn seeded_bytes(seed: u32, n: usize) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

fn images_file(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [IMAGES_MAGIC, count, rows, cols] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend_from_slice(pixels);
    bytes
}

fn labels_file(labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    bytes.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    bytes.extend_from_slice(labels);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip write");
    encoder.finish().expect("gzip finish")
}

/// A small synthetic MNIST-like split: `count` seeded images of rows x cols, labels 0..=9.
fn synthetic_split(seed: u32, count: usize, rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>) {
    let pixels = seeded_bytes(seed, count * rows * cols);
    let labels: Vec<u8> = seeded_bytes(seed + 1, count)
        .iter()
        .map(|b| b % 10)
        .collect();
    (pixels, labels)
}

/// Writes a full four-file synthetic data set into `dir`, gzipped or plain.
fn write_synthetic_dataset(dir: &TempDir, gzipped: bool) -> [(Vec<u8>, Vec<u8>); 2] {
    let train = synthetic_split(11, 12, 5, 7);
    let test = synthetic_split(23, 4, 5, 7);
    let encode = |bytes: Vec<u8>| if gzipped { gzip(&bytes) } else { bytes };
    let suffix = if gzipped { ".gz" } else { "" };
    dir.write(
        &format!("{}{suffix}", TRAIN_IMAGES.name),
        &encode(images_file(12, 5, 7, &train.0)),
    );
    dir.write(
        &format!("{}{suffix}", TRAIN_LABELS.name),
        &encode(labels_file(&train.1)),
    );
    dir.write(
        &format!("{}{suffix}", TEST_IMAGES.name),
        &encode(images_file(4, 5, 7, &test.0)),
    );
    dir.write(
        &format!("{}{suffix}", TEST_LABELS.name),
        &encode(labels_file(&test.1)),
    );
    [train, test]
}

/// Asserts the error message names `file` and contains `phrase`.
fn assert_message(err: &DataError, file: &str, phrase: &str) {
    let message = err.to_string();
    assert!(
        message.contains(file),
        "message should name {file}: {message}"
    );
    assert!(
        message.contains(phrase),
        "message should say {phrase:?}: {message}"
    );
}

// ---- single-file errors ----

#[test]
fn bad_magic_is_rejected_with_found_and_expected_values() {
    let dir = TempDir::new("bad-magic");
    // A label file handed to the image reader: magic 0x801 instead of 0x803.
    let path = dir.write("swapped-images.idx", &labels_file(&[1, 2, 3]));
    let err = idx::read_images(&path).unwrap_err();
    assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
    assert_message(
        &err,
        "swapped-images.idx",
        "bad magic number 0x00000801, expected 0x00000803",
    );
}

#[test]
fn truncated_header_is_rejected() {
    let dir = TempDir::new("truncated-header");
    let full = images_file(2, 3, 3, &seeded_bytes(1, 18));
    let path = dir.write("short-header.idx", &full[..10]);
    let err = idx::read_images(&path).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 16,
                found: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert_message(&err, "short-header.idx", "truncated in the header");
}

#[test]
fn truncated_pixel_data_is_rejected() {
    let dir = TempDir::new("truncated-pixels");
    let full = images_file(2, 3, 3, &seeded_bytes(2, 18));
    let path = dir.write("short-pixels.idx", &full[..full.len() - 5]);
    let err = idx::read_images(&path).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected: 34,
                found: 29,
                ..
            }
        ),
        "{err:?}"
    );
    assert_message(&err, "short-pixels.idx", "truncated in the pixel data");
}

#[test]
fn trailing_bytes_after_labels_are_rejected() {
    let dir = TempDir::new("trailing");
    let mut bytes = labels_file(&[3, 1, 4, 1, 5]);
    bytes.extend_from_slice(&[9, 2, 6]);
    let path = dir.write("long-labels.idx", &bytes);
    let err = idx::read_labels(&path, 9).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::TrailingBytes {
                expected: 13,
                found: 16,
                ..
            }
        ),
        "{err:?}"
    );
    assert_message(&err, "long-labels.idx", "3 unexpected trailing bytes");
}

#[test]
fn absurd_image_count_is_rejected_without_a_huge_allocation() {
    let dir = TempDir::new("absurd-count");
    // Header claims 2^32 - 1 images of 28x28 (~3.4 TB) but only a few pixels follow.
    let path = dir.write(
        "huge-count.idx",
        &images_file(u32::MAX, 28, 28, &seeded_bytes(3, 64)),
    );
    let (result, largest) = largest_allocation_during(|| idx::read_images(&path));
    let err = result.unwrap_err();
    assert!(matches!(err, DataError::AbsurdDimensions { .. }), "{err:?}");
    assert_message(
        &err,
        "huge-count.idx",
        "absurd dimensions 4294967295 x 28 x 28",
    );
    assert!(largest < 1 << 20, "largest allocation was {largest} bytes");
}

#[test]
fn zero_rows_and_oversized_sides_are_rejected() {
    let dir = TempDir::new("absurd-sides");
    let zero = dir.write("zero-rows.idx", &images_file(5, 0, 28, &seeded_bytes(4, 8)));
    let err = idx::read_images(&zero).unwrap_err();
    assert!(matches!(err, DataError::AbsurdDimensions { .. }), "{err:?}");
    assert_message(&err, "zero-rows.idx", "a dimension is zero");

    let wide = dir.write("wide.idx", &images_file(1, 2, 100_000, &seeded_bytes(5, 8)));
    let (result, largest) = largest_allocation_during(|| idx::read_images(&wide));
    assert_message(
        &result.unwrap_err(),
        "wide.idx",
        "image sides are limited to 4096",
    );
    assert!(largest < 1 << 20, "largest allocation was {largest} bytes");
}

#[test]
fn absurd_label_count_is_rejected_without_a_huge_allocation() {
    let mut bytes = LABELS_MAGIC.to_be_bytes().to_vec();
    bytes.extend_from_slice(&u32::MAX.to_be_bytes());
    bytes.extend_from_slice(&[1, 2, 3]);
    let (result, largest) =
        largest_allocation_during(|| idx::parse_labels(&bytes, Path::new("huge-labels.idx"), 9));
    let err = result.unwrap_err();
    assert!(matches!(err, DataError::AbsurdDimensions { .. }), "{err:?}");
    assert_message(&err, "huge-labels.idx", "label count must be between 1 and");
    assert!(largest < 1 << 20, "largest allocation was {largest} bytes");
}

#[test]
fn label_above_nine_is_rejected_with_its_index() {
    let dir = TempDir::new("label-range");
    let path = dir.write("labels.idx", &labels_file(&[0, 9, 4, 10, 2]));
    let err = idx::read_labels(&path, 9).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                index: 3,
                label: 10,
                max: 9,
                ..
            }
        ),
        "{err:?}"
    );
    assert_message(&err, "labels.idx", "label 10 at index 3 is out of range");
}

#[test]
fn corrupt_gzip_is_rejected() {
    let dir = TempDir::new("corrupt-gzip");
    let mut gz = gzip(&images_file(3, 4, 4, &seeded_bytes(6, 48)));
    let middle = gz.len() / 2;
    gz[middle] ^= 0x5a;
    gz.truncate(gz.len() - 4);
    let path = dir.write("broken.idx.gz", &gz);
    let err = idx::read_images(&path).unwrap_err();
    assert!(matches!(err, DataError::Decompress { .. }), "{err:?}");
    assert_message(&err, "broken.idx.gz", "corrupt gzip data");
}

#[test]
fn gzip_bomb_stops_at_the_size_limit() {
    let dir = TempDir::new("gzip-bomb");
    // 4 MiB of a repeating pattern compresses to a few KiB; the limit here is 1 MiB.
    let pattern = seeded_bytes(7, 256);
    let big: Vec<u8> = pattern.iter().copied().cycle().take(4 << 20).collect();
    let path = dir.write("bomb.gz", &gzip(&big));
    let (result, largest) =
        largest_allocation_during(|| idx::read_file_bytes_with_limit(&path, 1 << 20));
    let err = result.unwrap_err();
    assert!(
        matches!(err, DataError::TooLarge { limit: 1048576, .. }),
        "{err:?}"
    );
    assert_message(&err, "bomb.gz", "exceed the 1048576-byte limit");
    assert!(largest <= 4 << 20, "largest allocation was {largest} bytes");
}

#[test]
fn gzip_is_detected_by_content_not_extension() {
    let dir = TempDir::new("sniff");
    let bytes = labels_file(&[7, 3, 0, 9]);
    let gz_named_plain = dir.write("labels-no-suffix", &gzip(&bytes));
    let plain_named_gz = dir.write("labels.gz", &bytes);
    assert_eq!(idx::read_file_bytes(&gz_named_plain).unwrap(), bytes);
    assert_eq!(idx::read_file_bytes(&plain_named_gz).unwrap(), bytes);
}

#[test]
fn unreadable_path_reports_io_error_with_the_path() {
    let dir = TempDir::new("io");
    let err = idx::read_images(&dir.path().join("nowhere.idx")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert_message(&err, "nowhere.idx", "cannot read file");
}

// ---- directory loading ----

#[test]
fn synthetic_plain_dataset_round_trips() {
    let dir = TempDir::new("round-trip-plain");
    let [train, test] = write_synthetic_dataset(&dir, false);
    let data = mnist::load_dir(dir.path(), false).unwrap();
    assert_eq!(data.dir, dir.path());
    assert_eq!((data.train.len(), data.test.len()), (12, 4));
    assert_eq!((data.train.images.rows, data.train.images.cols), (5, 7));
    assert_eq!(data.train.pixels_per_image(), 35);
    assert_eq!(data.train.images.pixels, train.0);
    assert_eq!(data.train.labels, train.1);
    assert_eq!(data.test.images.pixels, test.0);
    assert_eq!(data.test.labels, test.1);
}

#[test]
fn synthetic_gzipped_dataset_round_trips_identically_to_plain() {
    let plain_dir = TempDir::new("round-trip-plain-ref");
    let gz_dir = TempDir::new("round-trip-gz");
    write_synthetic_dataset(&plain_dir, false);
    write_synthetic_dataset(&gz_dir, true);
    let plain = mnist::load_dir(plain_dir.path(), false).unwrap();
    let gz = mnist::load_dir(gz_dir.path(), false).unwrap();
    assert_eq!((plain.train, plain.test), (gz.train, gz.test));
}

#[test]
fn dot_spelled_file_names_are_accepted() {
    let dir = TempDir::new("dot-names");
    write_synthetic_dataset(&dir, true);
    for file in [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS] {
        let dash = dir.path().join(format!("{}.gz", file.name));
        let dot = dir
            .path()
            .join(format!("{}.gz", file.name.replacen("-idx", ".idx", 1)));
        fs::rename(dash, dot).unwrap();
    }
    let data = mnist::load_dir(dir.path(), false).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (12, 4));
}

#[test]
fn truncate_keeps_images_and_labels_aligned() {
    let dir = TempDir::new("truncate");
    let [train, _] = write_synthetic_dataset(&dir, false);
    let mut data = mnist::load_dir(dir.path(), false).unwrap();
    data.train.truncate(5);
    assert_eq!((data.train.len(), data.train.images.count), (5, 5));
    assert_eq!(data.train.images.pixels, train.0[..5 * 35]);
    assert_eq!(data.train.labels, train.1[..5]);
    data.test.truncate(100);
    assert_eq!(data.test.len(), 4);
}

#[test]
fn image_and_label_count_mismatch_names_both_files() {
    let dir = TempDir::new("count-mismatch");
    write_synthetic_dataset(&dir, false);
    dir.write(TEST_LABELS.name, &labels_file(&[1, 2, 3]));
    let err = mnist::load_dir(dir.path(), false).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                images: 4,
                labels: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_message(&err, TEST_IMAGES.name, "holds 4 images but");
    assert_message(&err, TEST_LABELS.name, "holds 3 labels");
}

#[test]
fn train_and_test_shape_mismatch_names_both_files() {
    let dir = TempDir::new("shape-mismatch");
    write_synthetic_dataset(&dir, false);
    dir.write(
        TEST_IMAGES.name,
        &images_file(4, 7, 5, &seeded_bytes(8, 140)),
    );
    let err = mnist::load_dir(dir.path(), false).unwrap_err();
    assert!(matches!(err, DataError::ShapeMismatch { .. }), "{err:?}");
    assert_message(&err, TRAIN_IMAGES.name, "has 5x7 images but");
    assert_message(&err, TEST_IMAGES.name, "has 7x5");
}

#[test]
fn label_above_nine_in_a_dataset_is_rejected() {
    let dir = TempDir::new("dataset-label-range");
    write_synthetic_dataset(&dir, false);
    dir.write(
        TRAIN_LABELS.name,
        &labels_file(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 12]),
    );
    let err = mnist::load_dir(dir.path(), false).unwrap_err();
    assert_message(
        &err,
        TRAIN_LABELS.name,
        "label 12 at index 11 is out of range (labels must be 0..=9)",
    );
}

#[test]
fn missing_file_error_lists_every_name_tried() {
    let dir = TempDir::new("missing");
    write_synthetic_dataset(&dir, true);
    fs::remove_file(dir.path().join(format!("{}.gz", TEST_IMAGES.name))).unwrap();
    let err = mnist::load_dir(dir.path(), false).unwrap_err();
    let DataError::MissingFile { tried, .. } = &err else {
        panic!("expected MissingFile, got {err:?}")
    };
    assert_eq!(tried.len(), 4);
    let dir_name = dir.path().file_name().unwrap().to_str().unwrap();
    assert_message(&err, dir_name, "missing data file; tried");
    for name in [
        "t10k-images-idx3-ubyte",
        "t10k-images-idx3-ubyte.gz",
        "t10k-images.idx3-ubyte",
        "t10k-images.idx3-ubyte.gz",
    ] {
        assert_message(&err, dir_name, name);
    }
}

// ---- the bundled MNIST ----

#[test]
fn bundled_mnist_loads_and_matches_published_checksums() {
    let data = mnist::load_bundled().unwrap();
    assert_eq!((data.train.len(), data.test.len()), (60_000, 10_000));
    for split in [&data.train, &data.test] {
        assert_eq!((split.images.rows, split.images.cols), (28, 28));
        assert_eq!(split.images.pixels.len(), split.len() * 784);
        assert!(split.labels.iter().all(|&label| label <= 9));
        // Every digit occurs: the labels are not degenerate.
        for digit in 0..=9u8 {
            assert!(split.labels.contains(&digit), "digit {digit} missing");
        }
    }
}

#[test]
fn tampered_mnist_copy_fails_the_checksum_naming_the_file() {
    let dir = TempDir::new("tampered");
    let bundled = mnist::bundled_dir();
    for file in [TRAIN_IMAGES, TEST_IMAGES, TEST_LABELS] {
        let name = format!("{}.gz", file.name);
        fs::copy(bundled.join(&name), dir.path().join(&name)).unwrap();
    }
    // Train labels are copied decompressed with one label changed to another valid digit,
    // so only the checksum can catch it (and it is caught before the large image files are read).
    let mut labels =
        idx::read_file_bytes(&bundled.join(format!("{}.gz", TRAIN_LABELS.name))).unwrap();
    labels[8 + 1234] = (labels[8 + 1234] + 1) % 10;
    dir.write(TRAIN_LABELS.name, &labels);

    let err = mnist::load_dir(dir.path(), true).unwrap_err();
    assert!(matches!(err, DataError::Checksum { .. }), "{err:?}");
    assert_message(&err, TRAIN_LABELS.name, "checksum mismatch");
    assert_message(&err, TRAIN_LABELS.name, TRAIN_LABELS.sha256);
}

#[test]
fn images_accessor_returns_row_major_slices() {
    let pixels = seeded_bytes(9, 3 * 2 * 4);
    let images = IdxImages {
        count: 3,
        rows: 2,
        cols: 4,
        pixels: pixels.clone(),
    };
    assert_eq!(images.image(1), Some(&pixels[8..16]));
    assert_eq!(images.image(3), None);
}
