//! Run directories as a user meets them: runs never overwrite each other by default, one writer per
//! directory (a second stops at once, naming the first), and a full disk costs nothing already saved.
//! Every test runs the real binary, in a scratch working directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpu-ae-rundirs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const BIN: &str = env!("CARGO_BIN_EXE_gpu-ae");

fn gpu_ae(cwd: &Path, args: &str) -> Output {
    Command::new(BIN)
        .args(args.split_whitespace())
        .current_dir(cwd)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The epochs and test losses of a metrics.csv.
fn rows(csv: &Path) -> Vec<(usize, f64)> {
    std::fs::read_to_string(csv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect()
}

#[test]
fn two_runs_in_a_row_leave_two_complete_runs_and_latest_names_the_second() {
    let cwd = temp_dir("in-a-row");
    let first = gpu_ae(&cwd, "train --limit 300 --epochs 1 --backend cpu --quiet");
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).starts_with("run directory: runs/ae-1 (runs/latest points here)"));
    // Another seed, so the two runs differ and each checkpoint's own loss can be told apart.
    let second = gpu_ae(
        &cwd,
        "train --limit 300 --epochs 1 --backend cpu --quiet --seed 1",
    );
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(text(&second.stdout).starts_with("run directory: runs/ae-2"));
    let runs = cwd.join("runs");
    for run in ["ae-1", "ae-2"] {
        for file in [
            "config.json",
            "metrics.csv",
            "checkpoint.safetensors",
            "reconstructions.png",
        ] {
            assert!(runs.join(run).join(file).is_file(), "{run}/{file}");
        }
    }
    assert_eq!(
        std::fs::canonicalize(runs.join("latest")).unwrap(),
        std::fs::canonicalize(runs.join("ae-2")).unwrap()
    );
    // eval of the first run's checkpoint gives the first run's own test loss.
    let own = |run: &str| rows(&runs.join(run).join("metrics.csv"))[0].1;
    assert_ne!(own("ae-1"), own("ae-2"));
    let eval = gpu_ae(&cwd, "eval --checkpoint runs/ae-1 --backend cpu");
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    let printed = text(&eval.stdout);
    let loss: f64 = printed
        .lines()
        .find_map(|l| l.strip_prefix("test bce per pixel: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no test loss in {printed}"));
    assert!(
        (loss - own("ae-1")).abs() < 1e-5,
        "eval {loss} vs the run's {}",
        own("ae-1")
    );
    std::fs::remove_dir_all(&cwd).ok();
}

#[test]
fn a_second_writer_of_a_run_directory_stops_at_once_and_the_first_keeps_its_rows() {
    let cwd = temp_dir("two-writers");
    let mut first = Command::new(BIN)
        .args("train --limit 20000 --epochs 3 --backend cpu --quiet --out same".split_whitespace())
        .current_dir(&cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first run holds the directory once its lock file names it, and has started its metrics.csv.
    let lock = cwd.join("same/.lock");
    let start = Instant::now();
    while !(std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&first.id().to_string()))
        && cwd.join("same/metrics.csv").exists())
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the first run never started"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Without --overwrite the directory is refused for holding a run; with it, for being in use.
    let refused = gpu_ae(
        &cwd,
        "train --limit 20000 --epochs 3 --backend cpu --quiet --out same",
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("--overwrite"),
        "{}",
        text(&refused.stderr)
    );
    let started = Instant::now();
    let second = gpu_ae(
        &cwd,
        "train --limit 20000 --epochs 3 --backend cpu --quiet --out same --overwrite",
    );
    let took = started.elapsed();
    assert_eq!(second.status.code(), Some(1));
    let err = text(&second.stderr);
    assert!(
        err.contains(&format!("same is in use by process {}", first.id()))
            && err.contains("train --limit 20000"),
        "{err}"
    );
    // It stopped while the first was still training (no waiting for the lock).
    assert!(
        first.try_wait().unwrap().is_none(),
        "the second run waited for the first"
    );
    eprintln!("the second writer stopped after {took:?}");
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let epochs: Vec<usize> = rows(&cwd.join("same/metrics.csv"))
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(epochs, [1, 2, 3]);
    let leftovers: Vec<String> = std::fs::read_dir(cwd.join("same"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&cwd).ok();
}

/// `--resume A/checkpoint.safetensors --out B` continues the run in B: B's metrics.csv holds A's epochs
/// and the new ones, and A is left as it was.
#[test]
fn a_run_resumed_into_another_directory_keeps_its_history() {
    let cwd = temp_dir("resume-elsewhere");
    let o = gpu_ae(
        &cwd,
        "train --limit 300 --epochs 2 --backend cpu --quiet --out a",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let before: Vec<(PathBuf, Vec<u8>)> = ["checkpoint.safetensors", "metrics.csv", "config.json"]
        .iter()
        .map(|f| {
            (
                cwd.join("a").join(f),
                std::fs::read(cwd.join("a").join(f)).unwrap(),
            )
        })
        .collect();
    let o = gpu_ae(
        &cwd,
        "train --resume a --epochs 3 --backend cpu --quiet --out b",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let a = rows(&cwd.join("a/metrics.csv"));
    let b = rows(&cwd.join("b/metrics.csv"));
    assert_eq!(b.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(&b[..2], &a[..]);
    for (path, bytes) in before {
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{} changed",
            path.display()
        );
    }
    std::fs::remove_dir_all(&cwd).ok();
}

/// A disk that fills up during the second save: a clear error that says its cause once, the first
/// checkpoint intact, no temporary file left. The small disk is a tmpfs mounted in a private mount
/// namespace (`unshare -rm`, no root needed); where that is not allowed the test says so and passes,
/// except in CI, which can.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_keeps_the_last_checkpoint_and_says_why_once() {
    let scratch = temp_dir("full-disk");
    let (disk, copy) = (scratch.join("disk"), scratch.join("copy"));
    std::fs::create_dir_all(&disk).unwrap();
    // The ae checkpoint is 5.2 MB: one fits in 8 MiB, a second beside it (the atomic write) does not.
    let script = format!(
        "mount -t tmpfs -o size=8m none {disk} || exit 99; \
         {BIN} train --limit 300 --epochs 2 --backend cpu --quiet --out {disk}/run; echo $? > {scratch}/status; \
         cp -a {disk}/run {copy}",
        disk = disk.display(),
        scratch = scratch.display(),
        copy = copy.display()
    );
    let o = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .current_dir(&scratch)
        .output();
    let allowed = o
        .as_ref()
        .is_ok_and(|o| o.status.code() != Some(99) && scratch.join("status").exists());
    if !allowed {
        let why = o.map_or_else(|e| e.to_string(), |o| text(&o.stderr));
        assert!(
            std::env::var("CI").is_err(),
            "CI must be able to mount a tmpfs: {why}"
        );
        eprintln!("skipped: cannot mount a small tmpfs here ({why})");
        return;
    }
    let o = o.unwrap();
    let status = std::fs::read_to_string(scratch.join("status")).unwrap();
    assert_eq!(status.trim(), "1", "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    assert!(err.contains("checkpoint"), "{err}");
    let names: Vec<String> = std::fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let ckpt = gpu_ae::checkpoint::load(&copy.join("checkpoint.safetensors"))
        .expect("the first checkpoint loads");
    assert_eq!(ckpt.state.position.epoch, 1);
    std::fs::remove_dir_all(&scratch).ok();
}
