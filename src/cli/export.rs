//! `gpu-ae export`: a checkpoint's model (parameters and batch-norm statistics, no optimizer state) as a
//! safetensors file in F32, F16 or BF16, for inference elsewhere or a smaller file to ship.

use anyhow::{bail, ensure};

use super::ExportArgs;
use super::train::checkpoint_file;
use crate::checkpoint::{self, ExportDtype};

/// The largest finite f16 (65504): a value beyond it would become ±∞.
const F16_MAX: f32 = 65504.0;

pub fn run(a: &ExportArgs) -> anyhow::Result<()> {
    ensure!(
        a.out.extension().is_some_and(|e| e == "safetensors"),
        "--out {}: the model is written as safetensors; name the file *.safetensors",
        a.out.display()
    );
    let path = checkpoint_file(&a.checkpoint, "--checkpoint")?;
    let ckpt = checkpoint::load(&path)?;
    let same_file = std::fs::canonicalize(&a.out)
        .ok()
        .zip(std::fs::canonicalize(&path).ok())
        .is_some_and(|(out, input)| out == input);
    ensure!(
        !same_file,
        "--out {} is the checkpoint being exported; write the export to another file (it leaves out the \
         optimizer state training needs)",
        a.out.display()
    );
    if a.out.exists()
        && let Ok(existing) = checkpoint::load(&a.out)
        && !existing.model_only
    {
        bail!(
            "--out {} holds a training checkpoint, which the export would replace; choose another file",
            a.out.display()
        );
    }
    let dtype = a.dtype.into();
    // f16 keeps 5 exponent bits: a parameter beyond ±65504 would be saved as infinity.
    if dtype == ExportDtype::F16
        && let Some((name, value)) = ckpt
            .tensors
            .iter()
            .filter(|(n, _, _)| !checkpoint::is_training_state(n))
            .find_map(|(n, _, v)| v.iter().find(|x| x.abs() > F16_MAX).map(|x| (n, *x)))
    {
        bail!(
            "{}: tensor {name} holds {value}, beyond f16's largest value {F16_MAX}; export with --dtype bf16 \
             (f32's range) or f32",
            path.display()
        );
    }
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    checkpoint::export(&a.out, &ckpt, dtype)?;
    let model: Vec<_> = ckpt
        .tensors
        .iter()
        .filter(|(n, _, _)| !checkpoint::is_training_state(n))
        .collect();
    let values: usize = model.iter().map(|(_, _, v)| v.len()).sum();
    // What the rounding did, read back from the file just written.
    let written = checkpoint::load(&a.out)?;
    // Each tensor's largest rounding error against its largest magnitude (a per-value ratio would be
    // dominated by values below f16's smallest normal).
    let (mut worst, mut worst_name) = (0.0f32, String::new());
    for ((name, _, before), (_, _, after)) in model.iter().zip(&written.tensors) {
        let scale = before.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let error = before
            .iter()
            .zip(after)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        if scale > 0.0 && error / scale > worst {
            (worst, worst_name) = (error / scale, name.clone());
        }
    }
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({} tensors, {values} values as {}, {} bytes; {} optimizer tensors left out; epoch {} of {})",
        a.out.display(),
        model.len(),
        a.dtype.name(),
        size,
        ckpt.tensors.len() - model.len(),
        ckpt.state.position.epoch,
        path.display()
    );
    if dtype != ExportDtype::F32 {
        println!(
            "largest rounding error {worst:.2e} of its tensor's largest magnitude (in {worst_name}); `gpu-ae eval --checkpoint {}` \
             gives the exported model's test loss",
            a.out.display()
        );
    }
    Ok(())
}
