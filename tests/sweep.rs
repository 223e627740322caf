//! The homework commands as a user runs them: `sweep`, `compare`, `--patience` and the learning-rate
//! schedule flags. CPU backend, small `--limit`s.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gpu_ae(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gpu-ae"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the binary runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-sweep-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed ({:?}):\n{}\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// comparison.csv's lines, split at commas (no field of these tests holds one).
fn table(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("comparison.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// The table without its last column (seconds, which no two runs share).
fn without_seconds(t: &[Vec<String>]) -> Vec<Vec<String>> {
    assert_eq!(t[0].last().map(String::as_str), Some("seconds"));
    t.iter().map(|r| r[..r.len() - 1].to_vec()).collect()
}

fn column(t: &[Vec<String>], name: &str) -> Vec<String> {
    let at = t[0]
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    t[1..].iter().map(|r| r[at].clone()).collect()
}

/// Acceptance 2, on 1500 images: the homework sweep writes six runs, the table, the plot, the stacked
/// reconstructions and the page; the table's losses are the runs' own last metrics lines.
#[test]
fn the_homework_sweep_writes_six_runs_and_their_comparison() {
    let out = temp_dir("homework");
    let o = gpu_ae(
        &[
            "sweep",
            "--variant",
            "ae",
            "--vary",
            "activation=relu,sigmoid,tanh",
            "--vary",
            "loss=bce,mse",
            "--epochs",
            "2",
            "--limit",
            "1500",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    let stdout = ok(&o);
    let t = table(&out);
    assert_eq!(
        t[0][..6],
        [
            "run",
            "activation",
            "loss",
            "epochs",
            "train_loss",
            "test_loss"
        ]
    );
    assert_eq!(t.len(), 7, "{t:?}");
    assert_eq!(
        column(&t, "activation"),
        ["relu", "relu", "sigmoid", "sigmoid", "tanh", "tanh"]
    );
    assert_eq!(
        column(&t, "loss"),
        ["bce", "mse", "bce", "mse", "bce", "mse"]
    );
    for (run, test_loss) in column(&t, "run").iter().zip(column(&t, "test_loss")) {
        let metrics = std::fs::read_to_string(out.join(run).join("metrics.csv")).unwrap();
        let last = metrics.lines().last().unwrap();
        assert!(last.starts_with("2,"), "{run}: {last}");
        assert_eq!(last.split(',').nth(3).unwrap(), test_loss, "{run}");
        for file in [
            "config.json",
            "checkpoint.safetensors",
            "reconstructions.png",
            "report.html",
        ] {
            assert!(out.join(run).join(file).is_file(), "{run}/{file}");
        }
        let config = std::fs::read_to_string(out.join(run).join("config.json")).unwrap();
        let (act, loss) = run
            .strip_prefix("activation-")
            .and_then(|r| r.split_once("_loss-"))
            .unwrap();
        assert!(
            config.contains(&format!("\"activation\": \"{act}\"")),
            "{config}"
        );
        assert!(
            config.contains(&format!("\"loss\": \"{loss}\"")),
            "{config}"
        );
    }
    // test_mse scores every model by squared error per pixel: for the runs trained on MSE it is their
    // own test loss, computed again from the checkpoint.
    for ((loss, test), mse) in column(&t, "loss")
        .iter()
        .zip(column(&t, "test_loss"))
        .zip(column(&t, "test_mse"))
    {
        let (test, mse): (f64, f64) = (test.parse().unwrap(), mse.parse().unwrap());
        match loss.as_str() {
            "mse" => assert!((test - mse).abs() <= 1e-6 * test, "{test} vs {mse}"),
            _ => assert!(mse > 0.0 && mse < test, "bce {test}, mse {mse}"),
        }
    }
    // Different models learn different things: the six test losses are six numbers.
    let mut losses = column(&t, "test_loss");
    losses.dedup();
    assert_eq!(losses.len(), 6);
    let plot = image::open(out.join("comparison.png")).unwrap();
    assert!(plot.width() > 800 && plot.height() > 400);
    let strips = image::open(out.join("reconstructions.png")).unwrap();
    // The input row and six runs' rows of 28-pixel digits at scale 2.
    assert!(strips.height() as usize > 7 * 56, "{}", strips.height());
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    for needle in [
        "comparison.png",
        "reconstructions.png",
        "activation-tanh_loss-mse/report.html",
        "gpu-ae sweep",
    ] {
        assert!(page.contains(needle), "report.html lacks {needle}");
    }
    assert!(
        stdout.contains("=== run 6 of 6: activation=tanh loss=mse"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// Acceptance 4: a sweep interrupted in its third run (GPU_AE_INTERRUPT_AT_STEP acts as Ctrl-C; the
/// batch-500 runs never reach step 13) exits 130; the same command again keeps the two finished runs,
/// resumes the third mid-epoch and trains the fourth; the table equals an uninterrupted sweep's.
#[test]
fn an_interrupted_sweep_resumes_to_the_uninterrupted_table() {
    let (cut, whole) = (temp_dir("cut"), temp_dir("whole"));
    let args = |out: &Path| -> Vec<String> {
        [
            "sweep",
            "--vary",
            "batch-size=500,100",
            "--vary",
            "activation=relu,tanh",
            "--epochs",
            "2",
            "--limit",
            "1000",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    let run = |out: &Path, env: &[(&str, &str)]| {
        let a = args(out);
        gpu_ae(&a.iter().map(String::as_str).collect::<Vec<_>>(), env)
    };
    let o = run(&cut, &[("GPU_AE_INTERRUPT_AT_STEP", "13")]);
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("sweep interrupted in run 3 of 4"),
        "{stdout}"
    );
    assert!(!cut.join("comparison.csv").exists());
    assert!(!cut.join("batch-size-100_activation-tanh").exists());
    let again = ok(&run(&cut, &[]));
    assert!(
        again.contains("run 1 of 4: batch-size=500 activation=relu: finished earlier, kept"),
        "{again}"
    );
    assert!(
        again.contains("run 3 of 4: batch-size=100 activation=relu (resuming)"),
        "{again}"
    );
    assert!(
        again.contains("resumed at epoch 2, step 3 of it"),
        "{again}"
    );
    ok(&run(&whole, &[]));
    assert_eq!(
        without_seconds(&table(&cut)),
        without_seconds(&table(&whole))
    );
    // A third time there is nothing left to train, and the table stays.
    let third = ok(&run(&cut, &[]));
    assert!(third.contains("(4 already finished)"), "{third}");
    assert_eq!(
        without_seconds(&table(&cut)),
        without_seconds(&table(&whole))
    );
    // compare on the finished runs: the same losses, the differing configuration keys as columns.
    let runs: Vec<String> = column(&table(&whole), "run")
        .iter()
        .map(|r| whole.join(r).display().to_string())
        .collect();
    let compared = temp_dir("compared");
    let mut a = vec!["compare"];
    a.extend(runs.iter().map(String::as_str));
    a.extend(["--out", compared.to_str().unwrap()]);
    ok(&gpu_ae(&a, &[]));
    let c = table(&compared);
    assert_eq!(c[0][..3], ["run", "activation", "batch-size"]);
    assert_eq!(column(&c, "test_loss"), column(&table(&whole), "test_loss"));
    assert!(compared.join("comparison.png").is_file() && compared.join("report.html").is_file());
    for d in [cut, whole, compared] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn bad_sweeps_are_refused_before_anything_is_written() {
    let out = temp_dir("bad");
    let o_s = out.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--vary", "colour=red,blue"],
            "train has no flag --colour",
        ),
        (vec!["--vary", "activation"], "expected KEY=V1,V2"),
        (
            vec!["--vary", "activation=relu", "--vary", "activation=tanh"],
            "given twice",
        ),
        (
            vec!["--vary", "activation=relu,tanh", "--activation", "relu"],
            "also varied",
        ),
        (
            vec![
                "--vary",
                "activation=relu,tanh",
                "--vary",
                "loss=bce",
                "--zip",
            ],
            "same number of values",
        ),
        (
            vec!["--vary", "activation=relu,swish"],
            "run activation=swish",
        ),
        (vec!["--vary", "lr=0.1,-1"], "run lr=-1"),
        (vec!["--vary", "out=a,b"], "sweep's directory"),
        (vec!["--vary", "momentum=0.5,0.9"], "--momentum"),
        (
            vec!["--vary", "activation=relu", "--resume", "x"],
            "does not take --resume",
        ),
        (
            vec!["--vary", "activation=relu", "--save-every", "0"],
            "--save-every 0",
        ),
    ] {
        let mut a = vec!["sweep", "--limit", "100", "--backend", "cpu", "--out", o_s];
        a.extend(args.iter().copied());
        let o = gpu_ae(&a, &[]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    // Another sweep in the same directory is refused, naming the directory.
    let first = [
        "sweep",
        "--vary",
        "activation=relu",
        "--epochs",
        "1",
        "--limit",
        "100",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        o_s,
    ];
    ok(&gpu_ae(&first, &[]));
    let mut other = first.to_vec();
    other[2] = "activation=tanh";
    let o = gpu_ae(&other, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("holds another sweep"),
        "{}",
        text(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// Acceptance 3: a learning rate warmed up to 1 makes the test loss rise after epoch 2; --patience 2
/// stops after epoch 4, best.safetensors holds epoch 2 (eval gives its test loss back), and the report
/// shows that model. Without --patience the run goes on to its 10 epochs.
#[test]
fn patience_stops_a_rising_run_and_keeps_the_best_checkpoint() {
    let out = temp_dir("patience");
    let o_s = out.to_str().unwrap();
    let flags = [
        "train",
        "--limit",
        "1000",
        "--backend",
        "cpu",
        "--lr",
        "1",
        "--lr-warmup",
        "8",
        "--epochs",
        "10",
        "--quiet",
        "--out",
        o_s,
    ];
    let mut with = flags.to_vec();
    with.extend(["--patience", "2"]);
    let stdout = ok(&gpu_ae(&with, &[]));
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let test: Vec<f64> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    let best = (0..test.len())
        .min_by(|&a, &b| test[a].total_cmp(&test[b]))
        .unwrap();
    assert!(test.len() < 10, "the run did not stop early: {test:?}");
    assert_eq!(
        test.len(),
        best + 1 + 2,
        "stopped {} epochs after the best: {test:?}",
        test.len() - best - 1
    );
    assert!(
        stdout.contains(&format!("early stop after epoch {}", test.len())),
        "{stdout}"
    );
    let eval = ok(&gpu_ae(
        &[
            "eval",
            "--checkpoint",
            out.join("best.safetensors").to_str().unwrap(),
            "--backend",
            "cpu",
        ],
        &[],
    ));
    assert!(eval.contains(&format!("(epoch {}, ", best + 1)), "{eval}");
    assert!(
        eval.contains(&format!("test objective: {:.6}", test[best])),
        "{eval}\n{test:?}"
    );
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        page.contains(&format!("epoch {} from best.safetensors", best + 1)),
        "report.html"
    );
    // The same run without --patience trains all ten epochs through the rise.
    let mut all = flags.to_vec();
    all.push("--overwrite");
    ok(&gpu_ae(&all, &[]));
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 11);
    assert!(
        !out.join("best.safetensors").exists(),
        "--overwrite leaves no best.safetensors of the earlier run"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn lr_schedule_flags_are_recorded_checked_and_change_training() {
    let out = temp_dir("schedule");
    let o_s = out.to_str().unwrap();
    let base = [
        "train",
        "--limit",
        "500",
        "--backend",
        "cpu",
        "--epochs",
        "3",
        "--quiet",
        "--overwrite",
        "--out",
        o_s,
    ];
    let run = |extra: &[&str]| -> (String, String) {
        let mut a = base.to_vec();
        a.extend(extra);
        let stdout = ok(&gpu_ae(&a, &[]));
        (
            stdout,
            std::fs::read_to_string(out.join("metrics.csv")).unwrap(),
        )
    };
    let (_, constant) = run(&[]);
    let (stdout, step) = run(&["--lr-schedule", "step:1:0.5", "--lr-warmup", "1"]);
    assert!(
        stdout.contains("schedule step:1:0.5 after 1 warm-up epoch"),
        "{stdout}"
    );
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(
        config.contains("\"lr_schedule\": \"step:1:0.5\"") && config.contains("\"lr_warmup\": 1"),
        "{config}"
    );
    assert_ne!(constant, step);
    // `cosine` alone anneals over the epochs after the warm-up.
    run(&["--lr-schedule", "cosine", "--lr-warmup", "1"]);
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(config.contains("\"lr_schedule\": \"cosine:2\""), "{config}");
    for bad in ["step:0:0.5", "step:2:1.5", "cosine:0", "linear", "step:2"] {
        let mut a = base.to_vec();
        a.extend(["--lr-schedule", bad]);
        let o = gpu_ae(&a, &[]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(
            text(&o.stderr).contains("--lr-schedule"),
            "{bad}: {}",
            text(&o.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
