//! Checkpoints: every tensor a run needs to resume exactly, in a [safetensors] file.
//!
//! A checkpoint holds the plan's parameters and batch-norm running statistics under their PyTorch names,
//! the optimizer state under `optimizer.{param}.{slot}` with torch.optim's slot names (`exp_avg`,
//! `exp_avg_sq` for Adam, `momentum_buffer` for SGD), each with its parameter's shape, and the position in
//! training in the `__metadata__` map (string → string):
//!
//! | key | value |
//! |---|---|
//! | `format` | [`FORMAT`] |
//! | `config` | the run's model and training configuration as JSON text (written by the CLI) |
//! | `epoch`, `batch_in_epoch`, `global_step`, `seed` | decimal integers |
//! | `train_loss_sum` | the epoch's reconstruction-loss sum so far, as Rust's shortest round-tripping `f64` text |
//! | `train_sums` | every meter's sum so far in the epoch (the objective's terms, then statistics), a JSON list; absent in files of versions before objective terms |
//! | `gpu_ae_version` | the crate version that wrote the file |
//!
//! Training writes F32 tensors, little-endian. `gpu-ae export` writes the model's tensors alone (no optimizer
//! state) in F32, F16 or BF16, with `contents` = `model` and `dtype` added to the metadata; [`load`] reads
//! any of the three dtypes into f32, and [`restore`] of such a file sets the parameters and statistics
//! only, so `eval`, `reconstruct` and the other readers take it while `train --resume` refuses it
//! ([`Checkpoint::require_training_state`]). Names and shapes of the default variants on MNIST (checked by
//! `tests/checkpoint.rs`):
//!
//! `ae` (784-256-64-256-784, `nn.Linear` layout [out, in]):
//!
//! | tensor | shape |
//! |---|---|
//! | `layers.0.weight`, `layers.0.bias` | [256, 784], [256] |
//! | `layers.1.weight`, `layers.1.bias` | [64, 256], [64] |
//! | `layers.2.weight`, `layers.2.bias` | [256, 64], [256] |
//! | `layers.3.weight`, `layers.3.bias` | [784, 256], [784] |
//!
//! `conv-ae` / `conv-dae` (channels 32,64, strided deck; `nn.Conv2d` layout [out, in, k, k],
//! `nn.ConvTranspose2d` layout [in, out, k, k]):
//!
//! | tensor | shape |
//! |---|---|
//! | `layers.0.weight`, `layers.0.bias` (Conv2d 1→32) | [32, 1, 3, 3], [32] |
//! | `layers.1.weight`, `layers.1.bias` (Conv2d 32→64) | [64, 32, 3, 3], [64] |
//! | `layers.2.weight`, `layers.2.bias` (ConvTranspose2d 64→32) | [64, 32, 3, 3], [32] |
//! | `layers.3.weight`, `layers.3.bias` (ConvTranspose2d 32→1) | [32, 1, 3, 3], [1] |
//!
//! With `--deck pool` every encoder stage is Conv2d, BatchNorm2d, MaxPool2d, so layer `i+1` of a stage is
//! a batch norm with `weight`, `bias`, `running_mean` and `running_var`, each [channels] (PyTorch's
//! `num_batches_tracked` is not kept: the running statistics use a fixed momentum).
//!
//! Optimizer state follows each parameter: with Adam, `optimizer.layers.0.weight.exp_avg` and
//! `optimizer.layers.0.weight.exp_avg_sq`, [256, 784] for `ae`; with SGD,
//! `optimizer.layers.0.weight.momentum_buffer`.
//!
//! [safetensors]: https://github.com/huggingface/safetensors

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, View};

use crate::backend::Executor;
use crate::ops::BufId;
use crate::plan::{Plan, Role};
use crate::train::Position;

/// The `format` metadata value of every checkpoint this version writes and reads.
pub const FORMAT: &str = "gpu-ae-checkpoint-1";
/// Files larger than this are refused before reading.
pub const MAX_FILE_BYTES: u64 = 4 << 30;
/// Largest accepted JSON header. Ours take about 100 bytes per tensor, so this is far above any real
/// checkpoint, and it bounds what parsing a hostile header can allocate.
pub const MAX_HEADER_BYTES: u64 = 8 << 20;

/// Metadata keys, in the order they are documented above.
const KEY_FORMAT: &str = "format";
const KEY_CONFIG: &str = "config";
const KEY_EPOCH: &str = "epoch";
const KEY_BATCH: &str = "batch_in_epoch";
const KEY_STEP: &str = "global_step";
const KEY_SEED: &str = "seed";
const KEY_LOSS: &str = "train_loss_sum";
const KEY_SUMS: &str = "train_sums";
const KEY_VERSION: &str = "gpu_ae_version";
/// The pretraining phase under way (its index among the plan's phases); absent in the fine-tuning.
const KEY_PHASE: &str = "pretrain_phase";
/// `model` in an export (no optimizer state); absent in a training checkpoint.
const KEY_CONTENTS: &str = "contents";
/// The dtype an export's tensors were written in (`F32`, `F16`, `BF16`).
const KEY_DTYPE: &str = "dtype";
const CONTENTS_MODEL: &str = "model";
/// Every optimizer-state tensor's name starts so.
const OPTIMIZER_PREFIX: &str = "optimizer.";

/// Plan buffer suffixes of optimizer state → torch.optim slot names, with the optimizer they belong to
/// (the plan uses torch's names, so `--detect-anomaly` and the checkpoint name a tensor alike).
const OPTIMIZER_SLOTS: [(&str, &str, &str); 5] = [
    ("exp_avg", "exp_avg", "Adam"),
    ("exp_avg_sq", "exp_avg_sq", "Adam"),
    ("momentum_buffer", "momentum_buffer", "SGD"),
    ("square_avg", "square_avg", "RMSprop"),
    ("sum", "sum", "Adagrad"),
];

/// Everything that can go wrong with a checkpoint; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },

    #[error(
        "{}: the file is {size} bytes, more than the {limit}-byte limit for checkpoints; is this the right file?",
        path.display()
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },

    #[error(
        "{}: not a safetensors file ({problem}); the file is truncated, corrupt, or of another kind",
        path.display()
    )]
    NotSafetensors { path: PathBuf, problem: String },

    #[error("{}: not a gpu-ae checkpoint: {problem}", path.display())]
    WrongFormat { path: PathBuf, problem: String },

    #[error("{}: bad checkpoint metadata {key:?}: {problem}", path.display())]
    BadMetadata {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },

    #[error("{}: tensor {name}: {problem}", path.display())]
    BadTensor {
        path: PathBuf,
        name: String,
        problem: String,
    },

    #[error(
        "{}: the checkpoint has no tensor {name}, which the chosen variant needs; the checkpoint does not fit the chosen variant",
        path.display()
    )]
    MissingTensor { path: PathBuf, name: String },

    #[error(
        "{}: the checkpoint holds tensor {name}, which the chosen variant does not have; the checkpoint does not fit the chosen variant",
        path.display()
    )]
    UnexpectedTensor { path: PathBuf, name: String },

    #[error(
        "{}: tensor {name} has shape {found:?} but the chosen variant needs {expected:?}; the checkpoint does not fit the chosen variant",
        path.display()
    )]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error(
        "{}: the checkpoint holds {checkpoint} optimizer state but this run uses {chosen} (missing {name}); resume with the optimizer the checkpoint was trained with",
        path.display()
    )]
    OptimizerMismatch {
        path: PathBuf,
        name: String,
        chosen: &'static str,
        checkpoint: &'static str,
    },

    #[error(
        "{}: the file holds a model exported without optimizer state (gpu-ae export), so training cannot resume from it; resume from the checkpoint.safetensors that train wrote",
        path.display()
    )]
    ModelOnly { path: PathBuf },

    #[error(
        "{}: tensor {name} holds a non-finite value ({value}) at element {index}; the run had diverged when it was saved",
        path.display()
    )]
    NonFinite {
        path: PathBuf,
        name: String,
        index: usize,
        value: f32,
    },
}

/// Everything needed to resume exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingState {
    pub position: Position,
    /// The run's seed (initialisation, shuffling, noise).
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The run's model and training configuration, written by the CLI.
    pub config: serde_json::Value,
    pub state: TrainingState,
    /// (name, shape, values), values row-major.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// The file this checkpoint was loaded from, named in [`restore`]'s errors; `None` after [`capture`].
    pub path: Option<PathBuf>,
    /// An export: parameters and statistics only, no optimizer state ([`export`]).
    pub model_only: bool,
}

impl Checkpoint {
    /// Refuses an export, which has no optimizer state to resume training with.
    pub fn require_training_state(&self) -> Result<(), CheckpointError> {
        match (&self.path, self.model_only) {
            (_, false) => Ok(()),
            (path, true) => Err(CheckpointError::ModelOnly {
                path: path.clone().unwrap_or_default(),
            }),
        }
    }
}

/// The element type of an export's tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportDtype {
    F32,
    /// IEEE half precision, rounded to nearest even (`half::f16::from_f32`).
    F16,
    /// bfloat16: f32's exponent with an 8-bit significand, rounded to nearest even.
    Bf16,
}

impl ExportDtype {
    fn dtype(self) -> Dtype {
        match self {
            ExportDtype::F32 => Dtype::F32,
            ExportDtype::F16 => Dtype::F16,
            ExportDtype::Bf16 => Dtype::BF16,
        }
    }

    /// `values` rounded to this dtype, little-endian.
    fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            ExportDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ExportDtype::F16 => values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            ExportDtype::Bf16 => values
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        }
    }
}

/// What a plan keeps across steps, under checkpoint names.
struct PlanTensor {
    name: String,
    shape: Vec<usize>,
    buf: BufId,
    /// For optimizer state: the optimizer it belongs to.
    optimizer: Option<&'static str>,
}

/// Mixed precision's loss scaler, saved as [scale, growth tracker, skipped steps] (GradScaler's
/// `scale` and `_growth_tracker`, and our count of skipped steps) from the plan's u32 state words.
const GRAD_SCALER: &str = "grad_scaler";

fn scaler_tensor(words: &[u32]) -> Vec<f32> {
    use crate::ops::optim::amp;
    vec![
        f32::from_bits(words[amp::SCALE]),
        words[amp::CLEAN] as f32,
        words[amp::SKIPPED] as f32,
    ]
}

fn scaler_words(values: &[f32]) -> Vec<u32> {
    let mut words = crate::ops::optim::amp::initial(values[0]).to_vec();
    words[crate::ops::optim::amp::CLEAN] = values[1] as u32;
    words[crate::ops::optim::amp::SKIPPED] = values[2] as u32;
    words
}

/// Parameters, then statistics, then optimizer state, in plan order.
fn plan_tensors(plan: &Plan) -> Vec<PlanTensor> {
    let mut out: Vec<PlanTensor> = plan
        .params
        .iter()
        .map(|p| (&p.name, &p.shape, p.buf))
        .chain(plan.stats.iter().map(|s| (&s.name, &s.shape, s.buf)))
        .map(|(name, shape, buf)| PlanTensor {
            name: name.clone(),
            shape: shape.clone(),
            buf,
            optimizer: None,
        })
        .collect();
    for (i, desc) in plan.buffers.iter().enumerate() {
        if desc.role != Role::OptimizerState {
            continue;
        }
        let slot = OPTIMIZER_SLOTS.iter().find_map(|&(suffix, torch, which)| {
            let param = desc.name.strip_suffix(suffix)?.strip_suffix('.')?;
            let p = plan.params.iter().find(|p| p.name == param)?;
            Some((format!("optimizer.{param}.{torch}"), p.shape.clone(), which))
        });
        // A buffer the table does not know keeps its plan name, flat: still saved, still restored.
        let (name, shape, which) =
            slot.unwrap_or_else(|| (format!("optimizer.{}", desc.name), vec![desc.len], "?"));
        out.push(PlanTensor {
            name,
            shape,
            buf: BufId(i),
            optimizer: Some(which),
        });
    }
    if let Some(amp) = plan.io.amp {
        out.push(PlanTensor {
            name: GRAD_SCALER.into(),
            shape: vec![3],
            buf: amp,
            optimizer: Some("GradScaler"),
        });
    }
    out
}

/// Reads every parameter, statistic and optimizer-state buffer of `ex`'s plan (waiting for queued work).
pub fn capture(
    ex: &mut dyn Executor,
    config: serde_json::Value,
    state: TrainingState,
) -> Checkpoint {
    let tensors = plan_tensors(ex.plan())
        .into_iter()
        .map(|t| {
            let values = match t.name == GRAD_SCALER {
                true => scaler_tensor(&ex.read_u32(t.buf)),
                false => ex.read_f32(t.buf),
            };
            (t.name, t.shape, values)
        })
        .collect();
    Checkpoint {
        config,
        state,
        tensors,
        path: None,
        model_only: false,
    }
}

/// One tensor, viewed as safetensors bytes: an F32 one without copying on little-endian machines, or one
/// already encoded in another dtype.
struct TensorView<'a> {
    shape: &'a [usize],
    values: &'a [f32],
    /// Set for an F16 or BF16 tensor: its bytes.
    encoded: Option<(Dtype, Vec<u8>)>,
}

impl View for TensorView<'_> {
    fn dtype(&self) -> Dtype {
        self.encoded.as_ref().map_or(Dtype::F32, |(d, _)| *d)
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.encoded {
            Some((_, bytes)) => bytes.as_slice().into(),
            None if cfg!(target_endian = "little") => bytemuck::cast_slice(self.values).into(),
            None => self.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
    fn data_len(&self) -> usize {
        self.encoded
            .as_ref()
            .map_or(self.values.len() * 4, |(_, b)| b.len())
    }
}

/// Whether the tensor `name` is training state (optimizer state, the loss scaler) rather than model.
pub fn is_training_state(name: &str) -> bool {
    name.starts_with(OPTIMIZER_PREFIX) || name == GRAD_SCALER
}

/// Writes the model of `ckpt` (its parameters and statistics, not its optimizer state) to `path` in
/// `dtype`, atomically, with the checkpoint's metadata and `contents` = `model`, `dtype` = the dtype's
/// safetensors name. Readers ([`load`], [`restore`]) take it; training does not resume from it.
pub fn export(path: &Path, ckpt: &Checkpoint, dtype: ExportDtype) -> Result<(), CheckpointError> {
    let model = Checkpoint {
        tensors: ckpt
            .tensors
            .iter()
            .filter(|(name, _, _)| !is_training_state(name))
            .cloned()
            .collect(),
        model_only: true,
        ..ckpt.clone()
    };
    write(path, &model, dtype)
}

/// Writes `ckpt` atomically: a hidden sibling `.NAME.PID.tmp` (one per process, so two writers never share
/// it) is written and synced, then renamed over `path`, then the directory is synced. An existing
/// checkpoint at `path` is only ever replaced by a complete one.
pub fn save(path: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    write(path, ckpt, ExportDtype::F32)
}

fn write(path: &Path, ckpt: &Checkpoint, dtype: ExportDtype) -> Result<(), CheckpointError> {
    let mut seen = std::collections::HashSet::new();
    for (name, shape, values) in &ckpt.tensors {
        let bad = |problem: String| CheckpointError::BadTensor {
            path: path.into(),
            name: name.clone(),
            problem,
        };
        if !seen.insert(name.as_str()) {
            return Err(bad("the name occurs twice".into()));
        }
        let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if numel != Some(values.len()) {
            return Err(bad(format!(
                "shape {shape:?} does not hold {} values",
                values.len()
            )));
        }
    }
    let (s, seed) = (&ckpt.state.position, ckpt.state.seed);
    let metadata = [
        (KEY_FORMAT, FORMAT.to_string()),
        (KEY_CONFIG, ckpt.config.to_string()),
        (KEY_EPOCH, s.epoch.to_string()),
        (KEY_BATCH, s.batch_in_epoch.to_string()),
        (KEY_STEP, s.global_step.to_string()),
        (KEY_SEED, seed.to_string()),
        (
            KEY_LOSS,
            format!("{:?}", s.epoch_sums.first().copied().unwrap_or(0.0)),
        ),
        (KEY_SUMS, serde_json::json!(s.epoch_sums).to_string()),
        (KEY_VERSION, env!("CARGO_PKG_VERSION").to_string()),
    ]
    .into_iter()
    .chain(s.pretraining.map(|phase| (KEY_PHASE, phase.to_string())))
    .chain(
        ckpt.model_only
            .then(|| (KEY_CONTENTS, CONTENTS_MODEL.to_string())),
    )
    .chain(
        ckpt.model_only
            .then(|| (KEY_DTYPE, dtype.dtype().to_string())),
    )
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let views = ckpt.tensors.iter().map(|(name, shape, values)| {
        (
            name.as_str(),
            TensorView {
                shape,
                values: values.as_slice(),
                encoded: (dtype != ExportDtype::F32).then(|| (dtype.dtype(), dtype.encode(values))),
            },
        )
    });
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| {
        CheckpointError::NotSafetensors {
            path: path.into(),
            problem: format!("cannot serialize: {e}"),
        }
    })?;

    write_atomically(path, &bytes)
}

/// Writes `bytes` to `path` atomically: a hidden sibling `.NAME.PID.tmp` is written and synced, renamed
/// over `path`, and the directory synced; on any failure the temporary file goes and `path` is untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let io_err = |at: &Path, action: &'static str| {
        let at = at.to_path_buf();
        move |source| CheckpointError::Io {
            path: at,
            action,
            source,
        }
    };
    let written = File::create(&tmp)
        .map_err(io_err(&tmp, "create the temporary file"))
        .and_then(|mut file| {
            file.write_all(bytes)
                .map_err(io_err(&tmp, "write the file"))?;
            file.sync_all()
                .map_err(io_err(&tmp, "sync the file to disk"))
        })
        .and_then(|()| {
            std::fs::rename(&tmp, path).map_err(io_err(path, "move the new file into place"))
        });
    if let Err(e) = written {
        // The old checkpoint, if any, is untouched; the partial one goes.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent_dir(path)
}

/// Makes the rename durable. Directories cannot be opened for syncing everywhere (Windows), so this is
/// Unix-only.
fn sync_parent_dir(path: &Path) -> Result<(), CheckpointError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| CheckpointError::Io {
                path: dir.into(),
                action: "sync the checkpoint's directory",
                source,
            })?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Reads at most [`MAX_FILE_BYTES`], refusing larger files before reading.
fn read_bounded(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    let io_err = |action| {
        move |source| CheckpointError::Io {
            path: path.into(),
            action,
            source,
        }
    };
    let file = File::open(path).map_err(io_err("open the checkpoint"))?;
    let size = file
        .metadata()
        .map_err(io_err("read the checkpoint's size"))?
        .len();
    let too_large = |size| CheckpointError::TooLarge {
        path: path.into(),
        size,
        limit: MAX_FILE_BYTES,
    };
    if size > MAX_FILE_BYTES {
        return Err(too_large(size));
    }
    // The size may change under us; `take` keeps the promise anyway.
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read the checkpoint"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Parses and validates a checkpoint: safetensors structure, our format tag and metadata, F32, F16 or BF16
/// tensors (the latter two widened to f32 exactly).
/// Never panics on a corrupt file; allocates at most about twice the file's size.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = read_bounded(path)?;
    let not_safetensors = |problem: String| CheckpointError::NotSafetensors {
        path: path.into(),
        problem,
    };
    // The header length is checked here too, against a tighter limit than the safetensors crate's.
    let header_len = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| not_safetensors(format!("only {} bytes", bytes.len())))?;
    if header_len > MAX_HEADER_BYTES || header_len > bytes.len() as u64 - 8 {
        return Err(not_safetensors(format!(
            "header length {header_len} does not fit a {}-byte file (limit {MAX_HEADER_BYTES})",
            bytes.len()
        )));
    }
    let (header_len, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| not_safetensors(e.to_string()))?;
    // read_metadata has checked that the tensors tile this exactly, each (dtype size) × its shape's product
    // bytes.
    let data = &bytes[8 + header_len..];

    let wrong_format = |problem: String| CheckpointError::WrongFormat {
        path: path.into(),
        problem,
    };
    let meta = header
        .metadata()
        .as_ref()
        .ok_or_else(|| wrong_format("the file has no __metadata__".into()))?;
    match meta.get(KEY_FORMAT) {
        Some(f) if f == FORMAT => {}
        Some(f) => {
            return Err(wrong_format(format!(
                "format is {f:?}, this version reads {FORMAT:?}"
            )));
        }
        None => return Err(wrong_format("the metadata has no \"format\" key".into())),
    }
    let text = |key: &'static str| {
        meta.get(key).ok_or_else(|| CheckpointError::BadMetadata {
            path: path.into(),
            key,
            problem: "missing".into(),
        })
    };
    fn number<T: std::str::FromStr>(
        path: &Path,
        key: &'static str,
        text: &str,
    ) -> Result<T, CheckpointError>
    where
        T::Err: std::fmt::Display,
    {
        text.parse().map_err(|e| CheckpointError::BadMetadata {
            path: path.into(),
            key,
            problem: format!("{text:?} is not a valid number: {e}"),
        })
    }
    let config =
        serde_json::from_str(text(KEY_CONFIG)?).map_err(|e| CheckpointError::BadMetadata {
            path: path.into(),
            key: KEY_CONFIG,
            problem: format!("not valid JSON: {e}"),
        })?;
    let epoch = number(path, KEY_EPOCH, text(KEY_EPOCH)?)?;
    let batch_in_epoch = number(path, KEY_BATCH, text(KEY_BATCH)?)?;
    let global_step = number(path, KEY_STEP, text(KEY_STEP)?)?;
    let seed = number(path, KEY_SEED, text(KEY_SEED)?)?;
    let loss_sum: f64 = number(path, KEY_LOSS, text(KEY_LOSS)?)?;
    // Files written before objectives had terms hold the reconstruction's sum alone.
    let epoch_sums = match meta.get(KEY_SUMS) {
        None => vec![loss_sum],
        Some(list) => {
            serde_json::from_str::<Vec<f64>>(list).map_err(|e| CheckpointError::BadMetadata {
                path: path.into(),
                key: KEY_SUMS,
                problem: format!("not a JSON list of numbers: {e}"),
            })?
        }
    };
    let pretraining = match meta.get(KEY_PHASE) {
        None => None,
        Some(text) => Some(number(path, KEY_PHASE, text)?),
    };
    let state = TrainingState {
        position: Position {
            epoch,
            batch_in_epoch,
            global_step,
            epoch_sums,
            pretraining,
        },
        seed,
    };

    let mut tensors = Vec::new();
    for name in header.offset_keys() {
        let info = header
            .info(&name)
            .ok_or_else(|| not_safetensors(format!("tensor {name} is listed but not described")))?;
        let (start, end) = info.data_offsets;
        let bytes = data
            .get(start..end)
            .ok_or_else(|| not_safetensors(format!("tensor {name} lies outside the file")))?;
        let values = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(CheckpointError::BadTensor {
                    path: path.into(),
                    name,
                    problem: format!("dtype {other}, expected F32, F16 or BF16"),
                });
            }
        };
        tensors.push((name, info.shape.clone(), values));
    }
    let model_only = match meta.get(KEY_CONTENTS).map(String::as_str) {
        None => false,
        Some(CONTENTS_MODEL) => true,
        Some(other) => {
            return Err(CheckpointError::BadMetadata {
                path: path.into(),
                key: KEY_CONTENTS,
                problem: format!("{other:?} is not {CONTENTS_MODEL:?}"),
            });
        }
    };
    Ok(Checkpoint {
        config,
        state,
        tensors,
        path: Some(path.into()),
        model_only,
    })
}

/// Writes the checkpoint into `ex`'s plan: every parameter, statistic and optimizer-state tensor (each must
/// be present with exactly the plan's shape, and finite; an export holds no optimizer state, which then
/// stays as the plan initialised it), the epoch's shuffle order, the step counters
/// and the epoch's sums so far ([`Position::upload`]).
/// Everything is checked before anything is written, so a failed restore leaves `ex` as it was.
///
/// The data sets are not part of a checkpoint: upload them first ([`crate::backend::load_initial_state`]).
pub fn restore(ex: &mut dyn Executor, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let path = ckpt
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from("<checkpoint in memory>"));
    let plan = ex.plan();
    let wanted = plan_tensors(plan);
    let found = |name: &str| ckpt.tensors.iter().find(|(n, _, _)| n == name);

    let mut writes: Vec<(BufId, &[f32])> = Vec::with_capacity(wanted.len());
    for t in wanted
        .iter()
        .filter(|t| !(ckpt.model_only && t.optimizer.is_some()))
    {
        let Some((_, shape, values)) = found(&t.name) else {
            let other = OPTIMIZER_SLOTS
                .iter()
                .filter(|&&(_, _, which)| Some(which) != t.optimizer)
                .find(|&&(_, torch, _)| {
                    ckpt.tensors
                        .iter()
                        .any(|(n, _, _)| n.starts_with(OPTIMIZER_PREFIX) && n.ends_with(torch))
                });
            return Err(match (t.optimizer, other) {
                (Some(chosen), Some(&(_, _, checkpoint))) => CheckpointError::OptimizerMismatch {
                    path,
                    name: t.name.clone(),
                    chosen,
                    checkpoint,
                },
                _ => CheckpointError::MissingTensor {
                    path,
                    name: t.name.clone(),
                },
            });
        };
        if *shape != t.shape || values.len() != t.shape.iter().product::<usize>() {
            return Err(CheckpointError::ShapeMismatch {
                path,
                name: t.name.clone(),
                expected: t.shape.clone(),
                found: shape.clone(),
            });
        }
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(CheckpointError::NonFinite {
                path,
                name: t.name.clone(),
                index,
                value,
            });
        }
        writes.push((t.buf, values));
    }
    if let Some((name, _, _)) = ckpt
        .tensors
        .iter()
        .find(|(n, _, _)| !wanted.iter().any(|t| &t.name == n))
    {
        return Err(CheckpointError::UnexpectedTensor {
            path,
            name: name.clone(),
        });
    }

    let s = &ckpt.state.position;
    let bad = |key, problem: String| CheckpointError::BadMetadata {
        path: path.clone(),
        key,
        problem,
    };
    u32::try_from(s.global_step)
        .map_err(|_| bad(KEY_STEP, "exceeds the device step counter (u32)".into()))?;
    if let Some(phase) = s.pretraining.filter(|&p| p >= plan.phases.len() - 1) {
        return Err(bad(
            KEY_PHASE,
            format!(
                "is pretraining phase {}, but the plan has {} pretraining phases",
                phase.saturating_add(1),
                plan.phases.len() - 1
            ),
        ));
    }
    let steps = plan.phase_steps(s.phase(plan));
    if s.batch_in_epoch > steps {
        return Err(bad(
            KEY_BATCH,
            format!(
                "{} steps into the epoch, but the chosen batch size makes epochs of {steps} steps",
                s.batch_in_epoch
            ),
        ));
    }
    if let Some(sum) = s.epoch_sums.iter().find(|v| !v.is_finite()) {
        return Err(bad(KEY_SUMS, format!("{sum} is not finite")));
    }
    if s.epoch_sums.len() > plan.meters.len() {
        return Err(bad(
            KEY_SUMS,
            format!(
                "holds {} sums, but the plan has {} meters",
                s.epoch_sums.len(),
                plan.meters.len()
            ),
        ));
    }

    for (buf, values) in writes {
        let plan = ex.plan();
        if Some(buf) == plan.io.amp {
            ex.write_u32(buf, &scaler_words(values));
        } else if let Some(index) = plan.params.iter().position(|p| p.buf == buf) {
            crate::backend::write_param(ex, index, values);
        } else {
            ex.write_f32(buf, values);
        }
    }
    s.upload(ex, ckpt.state.seed);
    Ok(())
}
