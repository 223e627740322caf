//! `gpu-ae export`: the model alone in f32, f16 or bf16, read back by eval and by Python's safetensors,
//! refused by `train --resume`, never written over the checkpoint it came from.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gpu_ae::checkpoint;

fn gpu_ae(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-ae"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(o: Output) -> String {
    assert_eq!(o.status.code(), Some(1), "must exit 1");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-export-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A short CPU training of `ae`; returns its run directory.
fn trained(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    ok(gpu_ae(&[
        "train",
        "--variant",
        "ae",
        "--epochs",
        "1",
        "--limit",
        "700",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]));
    run
}

/// The test BCE per pixel `gpu-ae eval` prints for `checkpoint`.
fn test_loss(checkpoint: &Path) -> f64 {
    let out = ok(gpu_ae(&[
        "eval",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--backend",
        "cpu",
    ]));
    let line = out
        .lines()
        .find(|l| l.starts_with("test bce per pixel:"))
        .unwrap_or_else(|| panic!("no test loss in:\n{out}"));
    line.split_whitespace().nth(4).unwrap().parse().unwrap()
}

fn export(run: &Path, dtype: &str, out: &Path) -> String {
    ok(gpu_ae(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--dtype",
        dtype,
        "--out",
        out.to_str().unwrap(),
    ]))
}

#[test]
fn exports_keep_the_model_and_its_test_loss() {
    let dir = temp_dir("loss");
    let run = trained(&dir);
    let reference = test_loss(&run.join("checkpoint.safetensors"));
    let original = checkpoint::load(&run.join("checkpoint.safetensors")).unwrap();
    for (dtype, tolerance) in [("f32", 0.0), ("f16", 1e-3), ("bf16", 1e-2)] {
        let out = dir.join(format!("model-{dtype}.safetensors"));
        let said = export(&run, dtype, &out);
        assert!(said.contains(&format!("as {dtype}")), "{said}");
        let loaded = checkpoint::load(&out).unwrap();
        assert!(loaded.model_only);
        assert!(loaded.require_training_state().is_err());
        // Every model tensor, rounded to the dtype exactly once; no optimizer state.
        let model: Vec<_> = original
            .tensors
            .iter()
            .filter(|(n, _, _)| !n.starts_with("optimizer."))
            .collect();
        assert_eq!(loaded.tensors.len(), model.len());
        for ((name, shape, before), (name2, shape2, after)) in model.iter().zip(&loaded.tensors) {
            assert_eq!((name, shape), (name2, shape2));
            for (x, y) in before.iter().zip(after) {
                let want = match dtype {
                    "f32" => *x,
                    "f16" => half::f16::from_f32(*x).to_f32(),
                    _ => half::bf16::from_f32(*x).to_f32(),
                };
                assert_eq!(y.to_bits(), want.to_bits(), "{name}: {x} as {dtype}");
            }
        }
        let loss = test_loss(&out);
        let relative = (loss - reference).abs() / reference;
        assert!(
            relative <= tolerance,
            "{dtype}: test loss {loss} against f32's {reference} (relative {relative:.2e})"
        );
        if dtype == "f16" {
            // Half the bytes of the f32 export, give or take the header.
            let f16 = std::fs::metadata(&out).unwrap().len();
            let f32 = std::fs::metadata(dir.join("model-f32.safetensors"))
                .unwrap()
                .len();
            assert!((f16 as f64) < 0.51 * f32 as f64, "{f16} vs {f32} bytes");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn an_export_cannot_resume_training_or_replace_a_checkpoint() {
    let dir = temp_dir("refuse");
    let run = trained(&dir);
    let ckpt = run.join("checkpoint.safetensors");
    let before = std::fs::read(&ckpt).unwrap();
    let model = dir.join("model.safetensors");
    export(&run, "f16", &model);

    let err = refused(gpu_ae(&[
        "train",
        "--resume",
        model.to_str().unwrap(),
        "--epochs",
        "2",
        "--backend",
        "cpu",
    ]));
    assert!(
        err.contains("without optimizer state") && err.contains("model.safetensors"),
        "{err}"
    );

    // Over the checkpoint it reads, or over another run's checkpoint: refused, the files untouched.
    let err = refused(gpu_ae(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--dtype",
        "f16",
        "--out",
        ckpt.to_str().unwrap(),
    ]));
    assert!(err.contains("is the checkpoint being exported"), "{err}");
    let copy = dir.join("other.safetensors");
    std::fs::write(&copy, &before).unwrap();
    let err = refused(gpu_ae(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        copy.to_str().unwrap(),
    ]));
    assert!(err.contains("holds a training checkpoint"), "{err}");
    assert_eq!(std::fs::read(&ckpt).unwrap(), before);
    assert_eq!(std::fs::read(&copy).unwrap(), before);

    let err = refused(gpu_ae(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        dir.join("m.bin").to_str().unwrap(),
    ]));
    assert!(err.contains("*.safetensors"), "{err}");
    // An export may be exported again (to another dtype).
    export(&model, "bf16", &dir.join("again.safetensors"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Python's `safetensors` reads an f16 export as float16 tensors with the model's names and shapes. Under
/// `CI=true` (where `.ci/run` installs the package) a missing package fails the test; elsewhere it is
/// skipped with a message.
#[test]
fn python_reads_an_f16_export_as_float16() {
    let probe = Command::new("python3")
        .args(["-c", "import safetensors, numpy"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 with safetensors and numpy is needed under CI"
        );
        eprintln!("skipping: python3 cannot import safetensors and numpy");
        return;
    }
    let dir = temp_dir("python");
    let run = trained(&dir);
    let model = dir.join("model.safetensors");
    export(&run, "f16", &model);
    let script = r#"
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], framework="numpy") as f:
    meta = f.metadata()
    print("contents", meta["contents"], meta["dtype"])
    for name in sorted(f.keys()):
        t = f.get_tensor(name)
        print(name, str(t.dtype), ",".join(map(str, t.shape)), int(t.reshape(-1).view("uint16")[0]))
"#;
    let out = ok(Command::new("python3")
        .args(["-c", script])
        .arg(&model)
        .output()
        .unwrap());
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("contents model F16"));
    let loaded = checkpoint::load(&model).unwrap();
    let mut want: Vec<String> = loaded
        .tensors
        .iter()
        .map(|(name, shape, values)| {
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            let bits = half::f16::from_f32(values[0]).to_bits();
            format!("{name} float16 {} {bits}", dims.join(","))
        })
        .collect();
    want.sort();
    assert_eq!(lines.map(str::to_string).collect::<Vec<_>>(), want);
    std::fs::remove_dir_all(&dir).ok();
}
