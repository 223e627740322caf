//! `gpu-ae encode`: the code of every training and test image, with the labels, as a safetensors file
//! (`train.codes` [N × width] F32, `train.labels` [N] U8, `test.codes`, `test.labels`) that numpy and
//! PyTorch read directly.

use anyhow::ensure;
use safetensors::{Dtype, View};

use super::eval::{open, with_checkpoint};
use super::{CheckpointArgs, EncodeArgs};
use crate::apps::generate::{codec_for, encode_all};
use crate::checkpoint::{Checkpoint, write_atomically};
use crate::data::mnist::Dataset;
use crate::run::RunConfig;

/// One tensor's bytes (little-endian) and shape.
struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Tensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.bytes).into()
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

pub fn run(a: &EncodeArgs) -> anyhow::Result<()> {
    ensure!(
        a.out.extension().is_some_and(|e| e == "safetensors"),
        "--out {}: codes are written as safetensors; name the file *.safetensors",
        a.out.display()
    );
    let (ckpt, config, data) = open(&a.checkpoint)?;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let codes = Codes::of(
        &a.checkpoint,
        &ckpt,
        &config,
        &data,
        data.train.len(),
        data.test.len(),
    )?;
    let (width, variational) = (codes.width, codes.variational);
    for (name, split, values) in [
        ("train", &data.train, &codes.train),
        ("test", &data.test, &codes.test),
    ] {
        tensors.push((
            format!("{name}.codes"),
            Tensor {
                dtype: Dtype::F32,
                shape: vec![split.len(), width],
                bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            },
        ));
        tensors.push((
            format!("{name}.labels"),
            Tensor {
                dtype: Dtype::U8,
                shape: vec![split.len()],
                bytes: split.labels.clone(),
            },
        ));
    }
    let code = if variational { "mu" } else { "code" };
    let metadata = [
        ("variant", config.variant.name().to_string()),
        ("epoch", ckpt.state.position.epoch.to_string()),
        ("code", code.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let bytes =
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))?;
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    write_atomically(&a.out, &bytes)?;
    println!(
        "wrote {} ({} training and {} test codes of {width} values{}, with their labels: train.codes, \
         train.labels, test.codes, test.labels)",
        a.out.display(),
        data.train.len(),
        data.test.len(),
        if variational {
            ", μ of the posterior"
        } else {
            ""
        }
    );
    Ok(())
}

/// The codes a checkpoint's model gives the first `train_count` training images and the first
/// `test_count` test images (rows of `width`; μ for a variational model); a count of 0 skips the split.
pub(super) struct Codes {
    pub train: Vec<f32>,
    pub test: Vec<f32>,
    pub width: usize,
    pub variational: bool,
}

impl Codes {
    pub(super) fn of(
        a: &CheckpointArgs,
        ckpt: &Checkpoint,
        config: &RunConfig,
        data: &Dataset,
        train_count: usize,
        test_count: usize,
    ) -> anyhow::Result<Codes> {
        let mut out = Vec::new();
        let (mut width, mut variational) = (0, false);
        for (split, count) in [(&data.train, train_count), (&data.test, test_count)] {
            if count == 0 {
                out.push(Vec::new());
                continue;
            }
            // The encode program reads the test set: point it at this split.
            let as_test = Dataset {
                test: split.clone(),
                ..data.clone()
            };
            let (_, plan) = config.build(&as_test)?;
            let codec = codec_for(&plan, "encode", config.variant.name(), false)?;
            (width, variational) = (codec.width, codec.variational);
            out.push(with_checkpoint(
                a.backend,
                plan,
                &as_test,
                config,
                ckpt,
                |t| Ok(encode_all(t.executor(), &codec, count)),
            )?);
        }
        let test = out.pop().expect("two splits");
        let train = out.pop().expect("two splits");
        Ok(Codes {
            train,
            test,
            width,
            variational,
        })
    }
}
