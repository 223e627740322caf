//! The command line's rules, case by case: every number outside its domain, every flag that does not apply,
//! every `--resume` flag that contradicts the checkpoint, and the pictures' file names are errors with a
//! message naming the flag (exit status 1, nothing written); nothing exits 0 with a silently changed
//! meaning. Each case runs the real binary, in a scratch working directory so that a default run directory
//! would show.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-rules-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gpu_ae(cwd: &Path, args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-ae"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the binary runs")
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// One command: its arguments (`{ck}` the checkpoint, `{run}` its run directory, `{tmp}` an empty
/// directory), the exit status it must end with, and what its output must say.
struct Case {
    args: &'static str,
    status: i32,
    says: &'static [&'static str],
}

const fn fails(args: &'static str, says: &'static [&'static str]) -> Case {
    Case {
        args,
        status: 1,
        says,
    }
}

const CASES: &[Case] = &[
    // Flags of the run that mean nothing in this combination.
    fails("train --overwrite", &["--overwrite needs --out DIR"]),
    fails(
        "train --resume {ck} --overwrite --epochs 3",
        &["--overwrite would remove the run that --resume continues"],
    ),
    fails(
        "train --profile-top 5",
        &["--profile-top sets the rows of the --profile table"],
    ),
    fails(
        "train --profile --out {tmp}/p",
        &["--out does not apply with --profile"],
    ),
    fails(
        "train --profile --save-every 2",
        &["--save-every does not apply with --profile"],
    ),
    fails("train --seed -1", &["--seed", "-1"]),
    // On --resume, a flag that does not apply is refused as for a new run; the same value said another
    // way is accepted.
    fails(
        "train --resume {ck} --momentum 0.9",
        &["--momentum applies to --optimizer sgd only"],
    ),
    fails(
        "train --resume {ck} --channels 32,64",
        &["--channels does not apply to --variant ae"],
    ),
    Case {
        args: "train --resume {ck} --code-activation relu --epochs 1",
        status: 0,
        says: &["nothing to train"],
    },
    // Numbers outside their domain, with and without `=`.
    fails(
        "train --lr=-1",
        &["--lr must be a finite number greater than 0, got -1"],
    ),
    fails(
        "train --lr -1",
        &["--lr must be a finite number greater than 0, got -1"],
    ),
    fails(
        "train --lr 0",
        &["--lr must be a finite number greater than 0, got 0"],
    ),
    fails("train --lr nan", &["--lr must be", "NaN"]),
    fails("train --lr inf", &["--lr must be", "inf"]),
    fails(
        "train --weight-decay=-1",
        &["--weight-decay must be a finite number ≥ 0"],
    ),
    fails("train --weight-decay -0.5", &["--weight-decay must be"]),
    fails(
        "train --optimizer sgd --momentum 2",
        &["--momentum must lie in [0, 1), got 2"],
    ),
    fails(
        "train --optimizer sgd --momentum 1",
        &["--momentum must lie in [0, 1), got 1"],
    ),
    fails(
        "train --optimizer sgd --momentum=-0.1",
        &["--momentum must lie in [0, 1)"],
    ),
    fails(
        "train --batch-size 0",
        &["--batch-size", "whole number ≥ 1"],
    ),
    fails("train --epochs 0", &["--epochs", "whole number ≥ 1"]),
    fails("train --epochs -2", &["--epochs", "whole number ≥ 1"]),
    fails("train --limit 0", &["--limit", "whole number ≥ 1"]),
    fails("train --latent 0", &["--latent", "whole number ≥ 1"]),
    fails("train --hidden 256,0", &["--hidden", "positive widths"]),
    fails(
        "train --variant conv-ae --channels 8,0",
        &["--channels", "positive channel counts"],
    ),
    fails("train --noise gaussian:-1", &["--noise", "finite σ ≥ 0"]),
    fails("train --noise mask:1.5", &["--noise", "[0, 1], got 1.5"]),
    fails("train --noise salt-pepper:-0.1", &["--noise", "[0, 1]"]),
    fails(
        "train --noise fog:1",
        &["gaussian, mask, salt-pepper or square"],
    ),
    fails("train --noise square:0", &["square:S", "at least 1"]),
    fails(
        "train --noise square:29 --limit 50",
        &["square:29", "does not fit", "28×28"],
    ),
    fails("train --l1 -1", &["--l1", "non-negative"]),
    fails(
        "train --kl-sparsity 0:0.1",
        &["--kl-sparsity", "strictly between 0 and 1"],
    ),
    fails(
        "train --kl-sparsity 0.05:-1",
        &["--kl-sparsity", "β must be"],
    ),
    fails(
        "train --emphasis -1:1 --noise mask:0.3",
        &["--emphasis", "≥ 0"],
    ),
    fails(
        "train --emphasis 0:0 --noise mask:0.3",
        &["--emphasis", "at least one weight"],
    ),
    fails(
        "train --variant bogus",
        &["invalid value 'bogus'", "conv-dae"],
    ),
    fails(
        "train --frobnicate",
        &["unexpected argument '--frobnicate'"],
    ),
    // Flags that do not apply to the variant or the optimizer.
    fails(
        "train --variant conv-ae --latent 16",
        &["--latent does not apply to --variant conv-ae", "--channels"],
    ),
    fails(
        "train --variant conv-ae --hidden 512",
        &["--hidden does not apply to --variant conv-ae"],
    ),
    fails(
        "train --variant conv-dae --code-activation sigmoid",
        &["--code-activation does not apply to --variant conv-dae"],
    ),
    fails(
        "train --variant conv-ae --contractive 1e-3",
        &["--contractive does not apply to --variant conv-ae"],
    ),
    fails(
        "train --variant ae --channels 8",
        &["--channels does not apply to --variant ae", "--hidden"],
    ),
    fails(
        "train --variant sparse-ae --deck pool",
        &["--deck does not apply to --variant sparse-ae"],
    ),
    fails(
        "train --momentum 0.5",
        &["--momentum applies to --optimizer sgd only"],
    ),
    fails(
        "train --variant ae --emphasis 1:0.1",
        &["emphasis", "no corruption is applied"],
    ),
    // The variational variants' own flags, and what does not apply to them.
    fails(
        "train --variant ae --beta 4",
        &[
            "--beta does not apply to --variant ae",
            "is for vae, conv-vae",
        ],
    ),
    fails(
        "train --variant conv-dae --kl-warmup 2",
        &["--kl-warmup does not apply to --variant conv-dae"],
    ),
    fails(
        "train --variant vae --l1 1e-3",
        &[
            "--l1 does not apply to --variant vae",
            "--beta and --kl-warmup",
        ],
    ),
    fails(
        "train --variant vae --kl-sparsity 0.05:0.1",
        &["--kl-sparsity does not apply to --variant vae"],
    ),
    fails(
        "train --variant vae --code-activation tanh",
        &["--code-activation does not apply to --variant vae"],
    ),
    fails(
        "train --variant conv-vae --deck pool",
        &[
            "--deck does not apply to --variant conv-vae",
            "--channels, --latent",
        ],
    ),
    fails(
        "train --variant conv-vae --hidden 64",
        &["--hidden does not apply to --variant conv-vae"],
    ),
    fails(
        "train --variant vae --beta -1",
        &["--beta must be a finite number ≥ 0, got -1"],
    ),
    fails(
        "train --variant vae --kl-warmup -1",
        &["--kl-warmup", "invalid value '-1'", "whole number ≥ 0"],
    ),
    fails(
        "train --variant vae --kl-warmup 5000000000",
        &[
            "cannot warm up over 5000000000 epochs",
            "more steps than a run counts",
        ],
    ),
    // The hashing variant's own flags, and what does not apply to it.
    fails(
        "train --variant ae --bits 16",
        &["--bits does not apply to --variant ae", "is for hash-ae"],
    ),
    fails(
        "train --variant cae --binarize 1e-4",
        &["--binarize does not apply to --variant cae"],
    ),
    fails(
        "train --variant vae --bit-balance 0",
        &["--bit-balance does not apply to --variant vae"],
    ),
    fails(
        "train --variant conv-ae --decorrelate 1e-4",
        &["--decorrelate does not apply to --variant conv-ae"],
    ),
    fails(
        "train --variant hash-ae --latent 16",
        &[
            "--latent does not apply to --variant hash-ae",
            "--hidden, --bits and --activation",
        ],
    ),
    fails(
        "train --variant hash-ae --code-activation relu",
        &[
            "--code-activation does not apply to --variant hash-ae",
            "the code is tanh",
        ],
    ),
    fails(
        "train --variant hash-ae --l1 1e-3",
        &["--l1 does not apply to --variant hash-ae", "--binarize"],
    ),
    fails(
        "train --variant hash-ae --channels 8",
        &["--channels does not apply to --variant hash-ae"],
    ),
    fails(
        "train --variant hash-ae --bits 0",
        &["--bits", "whole number ≥ 1"],
    ),
    fails(
        "train --variant hash-ae --bit-balance -1",
        &["--bit-balance", "non-negative weight"],
    ),
    fails(
        "train --variant hash-ae --decorrelate nan",
        &["--decorrelate", "non-negative weight"],
    ),
    fails(
        "train --resume {ck} --bits 32",
        &["--bits does not apply to --variant ae"],
    ),
    fails(
        "sample --checkpoint {ck} --out {tmp}/s.jpg",
        &["--out {tmp}/s.jpg", "*.png"],
    ),
    fails(
        "sample --checkpoint {ck} --out {tmp}/s.png",
        &["sample draws codes from the prior N(0, I)", "holds a ae"],
    ),
    fails(
        "manifold --checkpoint {ck} --out {tmp}/m.png --grid 1",
        &["--grid 1: the grid takes 2 to 64 digits a side"],
    ),
    fails(
        "train --variant ae --kl-sparsity 0.05:0.1",
        &["KL sparsity", "needs a sigmoid code"],
    ),
    // Pretraining.
    fails(
        "train --variant conv-ae --pretrain rbm",
        &["--pretrain does not apply to --variant conv-ae", "deep-ae"],
    ),
    fails(
        "train --variant deep-ae --pretrain-epochs 3",
        &["--pretrain-epochs", "does not pretrain", "--pretrain rbm"],
    ),
    fails(
        "train --variant deep-ae --pretrain rbm --pretrain-epochs 0",
        &["--pretrain-epochs", "whole number ≥ 1"],
    ),
    fails(
        "train --variant deep-ae --pretrain bolt",
        &["--pretrain", "bolt", "rbm", "greedy"],
    ),
    fails(
        "train --variant ae --pretrain rbm",
        &[
            "RBM pretraining needs sigmoid hidden layers",
            "layer 0",
            "--pretrain greedy",
        ],
    ),
    fails(
        "train --variant linear-ae --pretrain rbm",
        &[
            "decoder layer 1",
            "must be sigmoid too",
            "--pretrain greedy",
        ],
    ),
    fails("pca --latent 0", &["--latent", "numbers of components ≥ 1"]),
    fails(
        "train --variant deep-ae --pretrain rbm --detect-anomaly --limit 100",
        &[
            "--detect-anomaly checks the fine-tuning's step",
            "pretrains first",
        ],
    ),
    fails(
        "train --variant linear-ae --loss bce",
        &["needs a sigmoid output layer", "linear-ae", "identity"],
    ),
    fails("pca --latent 900", &["--latent 900 exceeds the 784 pixels"]),
    fails(
        "pca --checkpoint {ck}",
        &[
            "principal angles compare a linear autoencoder",
            "--variant linear-ae",
        ],
    ),
    // Data and checkpoints that are not there.
    fails(
        "train --data {tmp}/nope",
        &["{tmp}/nope: no such directory"],
    ),
    fails("train --data {ck}", &["not a directory"]),
    fails(
        "train --resume {tmp}",
        &["--resume {tmp}: a directory without a checkpoint.safetensors"],
    ),
    fails(
        "eval --checkpoint {tmp}",
        &["--checkpoint {tmp}: a directory without a checkpoint.safetensors"],
    ),
    // --resume keeps the checkpoint's configuration.
    fails(
        "train --resume {ck} --lr 0.01",
        &[
            "--lr asks for lr = 0.01, but the checkpoint holds lr = 0.001",
            "--epochs",
        ],
    ),
    fails(
        "train --resume {ck} --variant conv-dae",
        &["--variant conv-dae differs from the checkpoint, which holds a ae model"],
    ),
    fails(
        "train --resume {ck} --hidden 128",
        &["--hidden asks for hidden = [128], but the checkpoint holds hidden = [256]"],
    ),
    fails(
        "train --resume {ck} --noise mask:0.2",
        &["--noise asks for noise = \"mask:0.2\"", "noise = \"none\""],
    ),
    fails(
        "train --resume {ck} --seed 5",
        &["--seed asks for seed = 5, but the checkpoint holds seed = 0"],
    ),
    fails(
        "train --resume {ck} --limit 100 --epochs 3",
        &["--limit asks for limit = 100"],
    ),
    Case {
        args: "train --resume {ck} --epochs 1",
        status: 0,
        says: &[
            "has trained 1 epoch",
            "nothing to train, nothing written",
            "--epochs 2 or more",
        ],
    },
    Case {
        args: "train --resume {run} --epochs 1 --lr 0.001 --variant ae",
        status: 0,
        says: &["nothing to train"],
    },
    // A run directory that holds a run is not overwritten.
    fails(
        "train --out {run} --limit 200 --epochs 1",
        &[
            "already holds a run",
            "--resume {run}/checkpoint.safetensors",
            "--overwrite",
        ],
    ),
    // Pictures and their counts.
    fails(
        "reconstruct --checkpoint {ck} --out {tmp}/r.jpg",
        &["--out {tmp}/r.jpg", "PNG", "*.png"],
    ),
    fails("reconstruct --checkpoint {ck} --out {tmp}/r", &["*.png"]),
    fails(
        "reconstruct --checkpoint {ck} --out {tmp}/r.png --count 0",
        &["--count", "whole number ≥ 1"],
    ),
    fails(
        "reconstruct --checkpoint {ck} --out {tmp}/r.png --count 300",
        &["--count 300: the test set holds 200 images"],
    ),
    fails(
        "reconstruct --checkpoint {ck} --out {tmp}/r.png --count 1000",
        &["--count 1000: one picture holds at most 512 images"],
    ),
    fails(
        "reconstruct --checkpoint {ck} --out {tmp}/r.png --denoising",
        &["--denoising", "without noise"],
    ),
    fails("bench --steps 0", &["--steps", "whole number ≥ 1"]),
    fails(
        "bench --epochs-fraction 0",
        &["--epochs-fraction must lie in (0, 1]"],
    ),
    fails(
        "bench --epochs-fraction=-1",
        &["--epochs-fraction must lie in (0, 1]"],
    ),
    // `info` honours --backend.
    Case {
        args: "info --backend cpu",
        status: 0,
        says: &["--backend cpu: the CPU reference backend"],
    },
];

#[test]
fn every_rule_is_an_error_naming_its_flag_and_nothing_is_written() {
    let scratch = temp_dir("cases");
    let (run, tmp, cwd) = (
        scratch.join("run"),
        scratch.join("tmp"),
        scratch.join("cwd"),
    );
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&cwd).unwrap();
    let made = gpu_ae(
        &cwd,
        &[
            "train",
            "--limit",
            "200",
            "--epochs",
            "1",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([run.display().to_string()])
        .collect::<Vec<_>>(),
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let ck = run.join("checkpoint.safetensors");
    let before = snapshot(&scratch);
    let fill = |s: &str| {
        s.replace("{ck}", &ck.display().to_string())
            .replace("{run}", &run.display().to_string())
            .replace("{tmp}", &tmp.display().to_string())
    };
    let mut failures = Vec::new();
    for case in CASES {
        let mut args: Vec<String> = fill(case.args)
            .split_whitespace()
            .map(String::from)
            .collect();
        match args[0].as_str() {
            "train" | "eval" | "reconstruct" if !args.iter().any(|a| a == "--backend") => {
                args.extend(["--backend".into(), "cpu".into()])
            }
            "bench" => args.push("--skip-gpu".into()),
            _ => {}
        }
        let o = gpu_ae(&cwd, &args);
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let missing: Vec<String> = case
            .says
            .iter()
            .map(|s| fill(s))
            .filter(|s| !output.contains(s.as_str()))
            .collect();
        if o.status.code() != Some(case.status)
            || !missing.is_empty()
            || output.contains("panicked")
        {
            failures.push(format!(
                "gpu-ae {}: exit {:?} (want {}), missing {missing:?}\n{output}",
                case.args,
                o.status.code(),
                case.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(
        snapshot(&scratch),
        before,
        "a refused command changed a file (or wrote one)"
    );
    std::fs::remove_dir_all(&scratch).ok();
}

#[cfg(target_os = "linux")]
#[test]
fn info_names_the_platform_when_an_api_cannot_exist_here() {
    let cwd = temp_dir("info");
    let o = gpu_ae(&cwd, &["info".into(), "--backend".into(), "metal".into()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Metal exists on macOS and iOS only"), "{err}");
    assert!(!err.contains("mesa-vulkan-drivers"), "{err}");
    // A backend that cannot start leaves no run directory behind (and runs/latest where it was).
    let args: Vec<String> = "train --backend metal --limit 10"
        .split_whitespace()
        .map(String::from)
        .collect();
    let o = gpu_ae(&cwd, &args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !cwd.join("runs").exists(),
        "a failed start left runs/ behind"
    );
    std::fs::remove_dir_all(&cwd).ok();
}

/// `--lr 1e6` diverges within the first epoch: the message says where (after epoch 1, not "epoch 2"), that
/// nothing was saved (there was no checkpoint), and names the tensor as `--detect-anomaly` does.
#[test]
fn a_diverged_run_says_where_and_that_nothing_was_saved() {
    let cwd = temp_dir("diverge");
    let args: Vec<String> =
        "train --lr 1e6 --epochs 1 --limit 1000 --backend cpu --quiet --out run"
            .split_whitespace()
            .map(String::from)
            .collect();
    let o = gpu_ae(&cwd, &args);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("non-finite value after epoch 1 (global step 8)"),
        "{err}"
    );
    assert!(
        err.contains("nothing was saved") && err.contains("smaller --lr"),
        "{err}"
    );
    assert!(
        !err.contains("keeps the last good state") && !err.contains("epoch 2"),
        "{err}"
    );
    assert!(!cwd.join("run/checkpoint.safetensors").exists());
    let mut anomaly = args.clone();
    anomaly.push("--detect-anomaly".into());
    anomaly.push("--overwrite".into());
    let o = gpu_ae(&cwd, &anomaly);
    let err2 = String::from_utf8_lossy(&o.stderr);
    // Both name the same tensor by the same (torch.optim) slot name.
    let tensor = |text: &str| text.contains("layers.") && text.contains(".exp_avg_sq");
    assert!(tensor(&err) && tensor(&err2), "{err}\n{err2}");
    std::fs::remove_dir_all(&cwd).ok();
}

/// `--code-activation` gives the code layer its own nonlinearity and nothing else: the homework's sigmoid
/// latent layer, which KL sparsity then accepts on a model whose hidden layers stay ReLU.
#[test]
fn the_code_activation_is_the_code_layers_own() {
    let cwd = temp_dir("code-act");
    let args: Vec<String> =
        "train --variant ae --code-activation sigmoid --kl-sparsity 0.05:0.01 --limit 200 \
                             --epochs 1 --backend cpu --quiet --out run"
            .split_whitespace()
            .map(String::from)
            .collect();
    let o = gpu_ae(&cwd, &args);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains(
            "[Linear(784→256, relu) → Linear(256→64, sigmoid) → Linear(64→256, relu) → Linear(256→784, sigmoid)]"
        ),
        "{out}"
    );
    assert!(out.contains("kl_sparsity"), "{out}");
    std::fs::remove_dir_all(&cwd).ok();
}
