//! The parsers of untrusted files (IDX images and labels, checkpoints) under thousands of mutated and
//! random inputs: byte flips, overwrites, truncations, insertions, huge length fields. Each must return
//! Ok or Err (never panic), an Ok result must be self-consistent, and no single allocation may be much
//! larger than the input (a hostile length field must not reserve gigabytes).
//!
//! Deterministic: a fixed seed, and no failure-persistence files.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use gpu_ae::checkpoint::{self, Checkpoint, TrainingState};
use gpu_ae::data::idx::{parse_images, parse_labels};
use gpu_ae::train::Position;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, RngSeed};

/// Records the largest single allocation request of each thread, so a case can check its own.
struct PeakAllocation;

thread_local! {
    static LARGEST_REQUEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: allocations during thread teardown must not panic.
    let _ = LARGEST_REQUEST.try_with(|c| c.set(c.get().max(size)));
}

unsafe impl GlobalAlloc for PeakAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: PeakAllocation = PeakAllocation;

/// Runs `f` and fails if any single allocation it made exceeded `8 × input + 1 MiB`. (JSON headers can
/// legitimately take a few times their text size once parsed, so the factor is generous; what it rules out
/// is an allocation sized by a length field instead of by the bytes actually present.)
fn with_bounded_allocations<T>(input_len: usize, f: impl FnOnce() -> T) -> T {
    LARGEST_REQUEST.with(|c| c.set(0));
    let out = f();
    let largest = LARGEST_REQUEST.with(Cell::get);
    let bound = 8 * input_len + (1 << 20);
    assert!(
        largest <= bound,
        "an allocation of {largest} bytes for a {input_len}-byte input (bound {bound})"
    );
    out
}

/// The guard itself: an allocation sized by something other than the input is caught.
#[test]
fn the_allocation_guard_catches_an_oversized_allocation() {
    let caught = std::panic::catch_unwind(|| {
        with_bounded_allocations(16, || std::hint::black_box(vec![1u8; 4 << 20]).len())
    });
    assert!(caught.is_err(), "a 4 MiB allocation for 16 bytes must fail");
    assert_eq!(with_bounded_allocations(16, || vec![1u8; 16].len()), 16);
}

const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x6770_752d_6165),
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

/// One edit of a byte string. Positions are taken modulo the current length, so every edit applies.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        value: u8,
    },
    Truncate {
        keep: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    /// A 4-byte big-endian field (IDX headers) set to a huge or boundary value.
    HugeU32Be {
        field: usize,
        value: u32,
    },
    /// The 8-byte little-endian safetensors header length set to a huge or boundary value.
    HugeU64Le {
        value: u64,
    },
    /// The n-th run of ASCII digits (a JSON number: shape, offset, metadata) replaced.
    Number {
        which: usize,
        text: &'static str,
    },
}

fn boundary_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(u32::MAX),
        Just(u32::MAX - 15),
        Just(1 << 31),
        Just((1 << 31) - 1),
        Just(4096),
        Just(4097),
        Just(65536),
        any::<u32>(),
    ]
}

fn boundary_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(u64::MAX),
        Just(u64::MAX - 7),
        Just(1 << 63),
        Just(100_000_001),
        Just(8 << 20),
        Just((8 << 20) + 1),
        0u64..4096,
        any::<u64>(),
    ]
}

const NUMBERS: [&str; 10] = [
    "0",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "9223372036854775807",
    "-1",
    "1e309",
    "1.5",
    "999999999999",
    "",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        (0usize..4, boundary_u32()).prop_map(|(field, value)| Mutation::HugeU32Be { field, value }),
        boundary_u64().prop_map(|value| Mutation::HugeU64Le { value }),
        (any::<usize>(), prop::sample::select(&NUMBERS[..]))
            .prop_map(|(which, text)| Mutation::Number { which, text }),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..6)
}

/// Edits that mostly keep JSON well-formed: numbers replaced, structural characters swapped in.
fn json_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let number = (any::<usize>(), prop::sample::select(&NUMBERS[..]))
        .prop_map(|(which, text)| Mutation::Number { which, text });
    let structural = (
        any::<usize>(),
        prop::sample::select(&b"{}[]\":,0123456789-e \\"[..]),
    )
        .prop_map(|(at, value)| Mutation::SetByte { at, value });
    let edit = prop_oneof![4 => number, 2 => structural, 1 => mutation()];
    prop::collection::vec(edit, 1..4)
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::FlipBit { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
        Mutation::SetByte { at, value } if len > 0 => bytes[at % len] = *value,
        Mutation::Truncate { keep } => bytes.truncate(keep % (len + 1)),
        Mutation::Insert { at, bytes: new } => {
            let at = at % (len + 1);
            bytes.splice(at..at, new.iter().copied());
        }
        Mutation::Remove { at, len: n } if len > 0 => {
            let at = at % len;
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::HugeU32Be { field, value } => {
            let at = field * 4;
            if at + 4 <= len {
                bytes[at..at + 4].copy_from_slice(&value.to_be_bytes());
            }
        }
        Mutation::HugeU64Le { value } if len >= 8 => {
            bytes[..8].copy_from_slice(&value.to_le_bytes());
        }
        Mutation::Number { which, text } => {
            let runs = digit_runs(bytes);
            if !runs.is_empty() {
                let (start, end) = runs[which % runs.len()];
                bytes.splice(start..end, text.bytes());
            }
        }
        _ => {}
    }
}

/// Byte ranges of maximal runs of ASCII digits (after the 8-byte length prefix).
fn digit_runs(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (i, b) in bytes.iter().enumerate().skip(8) {
        match (b.is_ascii_digit(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, bytes.len()));
    }
    runs
}

fn mutated(valid: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    for m in edits {
        apply(&mut bytes, m);
    }
    bytes
}

/// Three 4×5 images.
fn valid_images() -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [0x0000_0803u32, 3, 4, 5] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend((0..60u8).map(|i| i.wrapping_mul(37)));
    bytes
}

fn valid_labels() -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [0x0000_0801u32, 12] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend((0..12u8).map(|i| i % 10));
    bytes
}

fn check_images(bytes: &[u8]) {
    let result = with_bounded_allocations(bytes.len(), || parse_images(bytes, Path::new("x.idx")));
    if let Ok(images) = result {
        assert_eq!(
            images.pixels.len(),
            images.count * images.rows * images.cols
        );
        assert_eq!(bytes.len(), 16 + images.pixels.len());
    }
}

fn check_labels(bytes: &[u8]) {
    let result =
        with_bounded_allocations(bytes.len(), || parse_labels(bytes, Path::new("y.idx"), 9));
    if let Ok(labels) = result {
        assert_eq!(bytes.len(), 8 + labels.len());
        assert!(labels.iter().all(|&l| l <= 9));
    }
}

/// A small but complete checkpoint: two layers, Adam state, batch-norm-like statistics.
fn valid_checkpoint_bytes(dir: &Path) -> Vec<u8> {
    let tensor = |name: &str, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        let values = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        (name.to_string(), shape, values)
    };
    let ckpt = Checkpoint {
        config: serde_json::json!({"variant": "ae", "hidden": [3], "lr": 0.001}),
        state: TrainingState {
            position: Position {
                epoch: 2,
                batch_in_epoch: 17,
                global_step: 1234,
                epoch_sums: vec![1234.5678, 2.5],
                // Inside the second pretraining phase: the phase round-trips too.
                pretraining: Some(1),
            },
            seed: 42,
        },
        tensors: vec![
            tensor("layers.0.weight", vec![3, 4]),
            tensor("layers.0.bias", vec![3]),
            tensor("layers.1.running_mean", vec![3]),
            tensor("optimizer.layers.0.weight.exp_avg", vec![3, 4]),
            tensor("optimizer.layers.0.weight.exp_avg_sq", vec![3, 4]),
        ],
        path: None,
        model_only: false,
    };
    let path = dir.join("valid.safetensors");
    checkpoint::save(&path, &ckpt).expect("save the seed checkpoint");
    let loaded = checkpoint::load(&path).expect("the seed checkpoint loads");
    assert_eq!(loaded.state, ckpt.state);
    std::fs::read(&path).expect("read it back")
}

/// One file per test (tests run in parallel threads), rewritten for every case.
struct Scratch {
    dir: PathBuf,
    file: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("gpu-ae-fuzz-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        let file = dir.join("case.safetensors");
        Scratch { dir, file }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check_checkpoint(scratch: &Scratch, bytes: &[u8]) {
    std::fs::write(&scratch.file, bytes).expect("write case");
    let result = with_bounded_allocations(bytes.len(), || checkpoint::load(&scratch.file));
    match result {
        Ok(ckpt) => {
            for (name, shape, values) in &ckpt.tensors {
                assert_eq!(
                    shape.iter().product::<usize>(),
                    values.len(),
                    "tensor {name}"
                );
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&scratch.file.display().to_string()),
                "the error must name the file: {msg}"
            );
        }
    }
}

#[test]
fn mutated_idx_images_never_panic() {
    let valid = valid_images();
    check_images(&valid);
    proptest!(config(), |(edits in mutations())| {
        check_images(&mutated(&valid, &edits));
    });
}

#[test]
fn mutated_idx_labels_never_panic() {
    let valid = valid_labels();
    check_labels(&valid);
    proptest!(config(), |(edits in mutations())| {
        check_labels(&mutated(&valid, &edits));
    });
}

#[test]
fn mutated_checkpoints_never_panic() {
    let scratch = Scratch::new("mutated");
    let valid = valid_checkpoint_bytes(&scratch.dir);
    check_checkpoint(&scratch, &valid);
    proptest!(config(), |(edits in mutations())| {
        check_checkpoint(&scratch, &mutated(&valid, &edits));
    });
}

/// Plain noise, and noise behind each format's magic so the parsers get past the first check.
const PREFIXES: [&[u8]; 4] = [
    b"",
    &[0, 0, 8, 3],
    &[0, 0, 8, 1],
    &[40, 0, 0, 0, 0, 0, 0, 0, b'{'],
];

/// Edits inside the JSON header only, then a correct length prefix again: these get past the framing
/// checks into the header's contents (offsets, shapes, dtypes, metadata).
#[test]
fn checkpoints_with_mutated_headers_never_panic() {
    let scratch = Scratch::new("headers");
    let valid = valid_checkpoint_bytes(&scratch.dir);
    let header_len = u64::from_le_bytes(valid[..8].try_into().expect("8 bytes")) as usize;
    let (header, data) = valid[8..].split_at(header_len);
    // The Number edit skips the first 8 bytes; pad so that it sees the whole header.
    let framed_header = [&[b' '; 8][..], header].concat();
    proptest!(config(), |(edits in json_mutations())| {
        let edited = mutated(&framed_header, &edits);
        let header = edited.get(8..).unwrap_or_default();
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(data);
        check_checkpoint(&scratch, &bytes);
    });
}

#[test]
fn random_bytes_never_panic_any_parser() {
    let scratch = Scratch::new("random");
    proptest!(config(), |(
        prefix in prop::sample::select(&PREFIXES[..]),
        tail in prop::collection::vec(any::<u8>(), 0..512),
    )| {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&tail);
        check_images(&bytes);
        check_labels(&bytes);
        check_checkpoint(&scratch, &bytes);
    });
}
