//! The run directory: where a run writes metrics.csv, pictures and checkpoint.safetensors, held by one
//! process at a time.
//!
//! [`RunDir::open`] chooses the directory ([`OutChoice`]), creates it, and takes an advisory lock on
//! `DIR/.lock` ([`std::fs::File::try_lock`]: `flock` on Unix, `LockFileEx` on Windows) before anything
//! else is written there. The lock lasts as long as the [`RunDir`]; the operating system drops it when the
//! process dies, so a killed run never leaves a directory locked. The lock file holds the holder's pid and
//! command line, for the message a second writer gets. It is never deleted: deleting it would race with
//! the next process locking it, and it is the lock, not the file, that counts.
//!
//! Without `--out`, every run gets a fresh `ROOT/<prefix>-<N>` and `ROOT/latest` points at the newest
//! (a relative symlink on Unix, a `ROOT/latest.txt` naming it elsewhere).

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The lock file inside a run directory.
pub const LOCK_FILE: &str = ".lock";
/// The file a run saves its checkpoint to.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// With `--patience`: the checkpoint of the epoch with the lowest test loss.
pub const BEST_FILE: &str = "best.safetensors";
/// The file a run writes its metrics to.
pub const METRICS_FILE: &str = "metrics.csv";
/// The name under ROOT that points at the newest fresh run directory.
pub const LATEST: &str = "latest";
/// Where platforms without symlinks name the newest fresh run directory.
pub const LATEST_TXT: &str = "latest.txt";

/// How the run directory is chosen.
#[derive(Clone, Debug)]
pub enum OutChoice {
    /// No `--out`: a fresh numbered directory `ROOT/<prefix>-<N>` (N is 1 + the largest N already there,
    /// starting at 1), created atomically so two concurrent runs never get the same one, and
    /// `ROOT/latest` pointing at it. `prefix` comes from the program, not the user (no separators).
    Fresh { root: PathBuf, prefix: String },
    /// `--out DIR`: created if missing; a directory already holding a checkpoint.safetensors or a
    /// metrics.csv is refused unless `overwrite`.
    Named { dir: PathBuf, overwrite: bool },
    /// A resumed run writing into the directory that holds its checkpoint (or a named one): created if
    /// missing; never refused for holding a checkpoint.
    Resume { dir: PathBuf },
}

/// What happened to `ROOT/latest` when a fresh directory was made. Not updating it never fails the run.
#[derive(Debug)]
pub enum Latest {
    /// Not a fresh run directory ([`OutChoice::Named`], [`OutChoice::Resume`], or
    /// [`RunDir::fresh_collection`]): `latest` is not touched.
    NotFresh,
    /// `ROOT/latest` (or `ROOT/latest.txt`) now names the new directory.
    Updated,
    /// `ROOT/latest` is a real directory or file, not a link (a run directory of an older version, whose
    /// default `--out` was `runs/latest`): left as it was.
    KeptOld { path: PathBuf },
    /// Writing the link failed; the run goes on without it.
    Failed(RunDirError),
}

/// Everything that can go wrong choosing, creating or locking a run directory; each message names the
/// path. I/O causes are `#[source]`s, not part of the message (the CLI prints the chain).
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("{} exists but is not a directory; choose another --out", path.display())]
    NotADirectory { path: PathBuf },

    #[error("cannot create the run directory {}", dir.display())]
    Create {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot list {} to number a fresh run directory", dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "{} already holds a run ({found}); continue it with --resume {}, start over in it with \
         --overwrite, or choose another --out",
        dir.display(),
        dir.join(CHECKPOINT_FILE).display()
    )]
    HoldsRun { dir: PathBuf, found: &'static str },

    #[error(
        "{} is in use by {}; wait for that run to end, or choose another --out",
        dir.display(),
        describe_holder(*pid, command.as_deref())
    )]
    Locked {
        dir: PathBuf,
        /// The holder's pid, when the lock file could be read.
        pid: Option<u32>,
        /// The holder's command line, when the lock file could be read.
        command: Option<String>,
    },

    #[error("cannot {action} the lock file {}", path.display())]
    LockFile {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("cannot point {} at {target}", link.display())]
    Latest {
        link: PathBuf,
        target: String,
        #[source]
        source: io::Error,
    },

    #[error("--overwrite: cannot remove the earlier run's {}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn describe_holder(pid: Option<u32>, command: Option<&str>) -> String {
    match (pid, command) {
        (Some(pid), Some(command)) => format!("process {pid} ({command})"),
        (Some(pid), None) => format!("process {pid}"),
        (None, _) => "another process".to_string(),
    }
}

/// A run directory held by this process: the lock is released when it is dropped (and by the operating
/// system if the process dies).
#[derive(Debug)]
pub struct RunDir {
    pub path: PathBuf,
    /// What happened to `ROOT/latest` ([`Latest::NotFresh`] unless the directory is fresh).
    pub latest: Latest,
    /// Open, and locked, for as long as the run holds the directory.
    _lock: File,
}

impl RunDir {
    /// Chooses and creates the directory, then locks it before anything else is written in it. A second
    /// writer gets [`RunDirError::Locked`] at once, naming the holder. A named directory without
    /// `overwrite` is checked for an earlier run before anything in it changes.
    pub fn open(choice: OutChoice) -> Result<RunDir, RunDirError> {
        match choice {
            OutChoice::Fresh { root, prefix } => {
                let (path, lock) = create_fresh(&root, &prefix)?;
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let latest = point_latest(&root, &name);
                Ok(RunDir {
                    path,
                    latest,
                    _lock: lock,
                })
            }
            OutChoice::Named { dir, overwrite } => {
                if !overwrite && is_dir(&dir)? {
                    refuse_earlier_run(&dir)?;
                }
                create_all(&dir)?;
                let mut lock = try_lock(&dir)?;
                if overwrite {
                    clear_earlier_run(&dir)?;
                } else {
                    // A run may have ended in it between the check and the lock.
                    refuse_earlier_run(&dir)?;
                }
                write_holder(&mut lock, &dir)?;
                Ok(RunDir {
                    path: dir,
                    latest: Latest::NotFresh,
                    _lock: lock,
                })
            }
            OutChoice::Resume { dir } => {
                create_all(&dir)?;
                let mut lock = try_lock(&dir)?;
                write_holder(&mut lock, &dir)?;
                Ok(RunDir {
                    path: dir,
                    latest: Latest::NotFresh,
                    _lock: lock,
                })
            }
        }
    }

    /// A fresh numbered directory `ROOT/<prefix>-<N>` that holds runs rather than being one (a sweep's,
    /// a comparison's): created and locked as [`OutChoice::Fresh`] does, but `ROOT/latest` is left
    /// pointing at the newest run.
    pub fn fresh_collection(root: &Path, prefix: &str) -> Result<RunDir, RunDirError> {
        let (path, lock) = create_fresh(root, prefix)?;
        Ok(RunDir {
            path,
            latest: Latest::NotFresh,
            _lock: lock,
        })
    }

    /// `DIR/checkpoint.safetensors`.
    pub fn checkpoint(&self) -> PathBuf {
        self.path.join(CHECKPOINT_FILE)
    }
}

/// The files a run writes in its directory; `--overwrite` removes an earlier run's, so none of them can be
/// mistaken for the new run's (a checkpoint under `--save-every 0`, a denoising.png of another model).
pub const RUN_FILES: [&str; 10] = [
    CHECKPOINT_FILE,
    BEST_FILE,
    METRICS_FILE,
    "config.json",
    "loss.png",
    "reconstructions.png",
    "denoising.png",
    "samples.png",
    "report.html",
    "report.json",
];

/// Removes the [`RUN_FILES`] present in `dir` (held by this process); other files stay.
fn clear_earlier_run(dir: &Path) -> Result<(), RunDirError> {
    for name in RUN_FILES {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(RunDirError::Remove { path, source }),
        }
    }
    Ok(())
}

/// Whether `path` is an existing directory; an existing non-directory is an error.
fn is_dir(path: &Path) -> Result<bool, RunDirError> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(RunDirError::NotADirectory { path: path.into() }),
        Err(_) => Ok(false),
    }
}

fn create_all(dir: &Path) -> Result<(), RunDirError> {
    if is_dir(dir)? {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|source| RunDirError::Create {
        dir: dir.into(),
        source,
    })
}

/// The error for a directory holding a checkpoint or metrics; reads nothing but the directory entries.
fn refuse_earlier_run(dir: &Path) -> Result<(), RunDirError> {
    for found in [CHECKPOINT_FILE, METRICS_FILE] {
        if fs::symlink_metadata(dir.join(found)).is_ok() {
            return Err(RunDirError::HoldsRun {
                dir: dir.into(),
                found,
            });
        }
    }
    Ok(())
}

/// Creates `ROOT/<prefix>-<N>` with `create_dir` (atomic: of two runs racing for one N, one gets
/// `AlreadyExists` and tries N+1) and locks it.
fn create_fresh(root: &Path, prefix: &str) -> Result<(PathBuf, File), RunDirError> {
    create_all(root)?;
    let mut n = largest_number(root, prefix)? + 1;
    loop {
        let dir = root.join(format!("{prefix}-{n}"));
        match fs::create_dir(&dir) {
            Ok(()) => {
                let mut lock = try_lock(&dir)?;
                write_holder(&mut lock, &dir)?;
                return Ok((dir, lock));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(source) => return Err(RunDirError::Create { dir, source }),
        }
    }
}

/// The largest N of the entries `<prefix>-<N>` in `root`, 0 when there are none.
fn largest_number(root: &Path, prefix: &str) -> Result<u64, RunDirError> {
    let list_err = |source| RunDirError::List {
        dir: root.into(),
        source,
    };
    let mut largest = 0;
    for entry in fs::read_dir(root).map_err(list_err)? {
        let name = entry.map_err(list_err)?.file_name();
        let number = name
            .to_str()
            .and_then(|s| s.strip_prefix(prefix))
            .and_then(|s| s.strip_prefix('-'))
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        largest = largest.max(number.unwrap_or(0));
    }
    Ok(largest)
}

/// Opens `DIR/.lock` and locks it without waiting; a held lock is [`RunDirError::Locked`].
fn try_lock(dir: &Path) -> Result<File, RunDirError> {
    let path = dir.join(LOCK_FILE);
    let lock_err = |action| {
        let path = path.clone();
        move |source| RunDirError::LockFile {
            path,
            action,
            source,
        }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(lock_err("open"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => {
            let (pid, command) = read_holder(&path);
            Err(RunDirError::Locked {
                dir: dir.into(),
                pid,
                command,
            })
        }
        Err(TryLockError::Error(source)) => Err(lock_err("lock")(source)),
    }
}

/// Replaces the lock file's text with `pid <pid>\ncommand <argv>\n`.
fn write_holder(lock: &mut File, dir: &Path) -> Result<(), RunDirError> {
    let command = std::env::args()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(['\n', '\r'], " ");
    let text = format!("pid {}\ncommand {command}\n", std::process::id());
    lock.set_len(0)
        .and_then(|()| lock.write_all(text.as_bytes()))
        .and_then(|()| lock.flush())
        .map_err(|source| RunDirError::LockFile {
            path: dir.join(LOCK_FILE),
            action: "write",
            source,
        })
}

/// The holder's pid and command line, as far as the lock file says (it may be empty, half-written or
/// unreadable: then nothing).
fn read_holder(path: &Path) -> (Option<u32>, Option<String>) {
    let mut text = String::new();
    let read = File::open(path).and_then(|f| f.take(4096).read_to_string(&mut text));
    if read.is_err() {
        return (None, None);
    }
    let mut pid = None;
    let mut command = None;
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("pid ") {
            pid = p.trim().parse().ok();
        } else if let Some(c) = line.strip_prefix("command ") {
            command = Some(c.trim().to_string()).filter(|c| !c.is_empty());
        }
    }
    (pid, command)
}

/// Points `ROOT/latest` at `ROOT/<name>`: a relative symlink made under a unique temporary name and
/// renamed over `latest`, so readers see the old link or the new one, never none.
#[cfg(unix)]
fn point_latest(root: &Path, name: &str) -> Latest {
    let link = root.join(LATEST);
    if let Ok(m) = fs::symlink_metadata(&link)
        && !m.file_type().is_symlink()
    {
        return Latest::KeptOld { path: link };
    }
    let tmp = root.join(format!(".{LATEST}.{}.{name}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let made = std::os::unix::fs::symlink(name, &tmp).and_then(|()| fs::rename(&tmp, &link));
    match made {
        Ok(()) => Latest::Updated,
        Err(source) => {
            let _ = fs::remove_file(&tmp);
            Latest::Failed(RunDirError::Latest {
                link,
                target: name.into(),
                source,
            })
        }
    }
}

/// Writes `ROOT/latest.txt` naming `<name>` (through a temporary file renamed over it).
#[cfg(not(unix))]
fn point_latest(root: &Path, name: &str) -> Latest {
    let link = root.join(LATEST_TXT);
    let tmp = root.join(format!(".{LATEST_TXT}.{}.{name}.tmp", std::process::id()));
    let made = fs::write(&tmp, format!("{name}\n")).and_then(|()| fs::rename(&tmp, &link));
    match made {
        Ok(()) => Latest::Updated,
        Err(source) => {
            let _ = fs::remove_file(&tmp);
            Latest::Failed(RunDirError::Latest {
                link,
                target: name.into(),
                source,
            })
        }
    }
}

/// The newest fresh run directory under `root`: the target of the `ROOT/latest` link, else the one
/// `ROOT/latest.txt` names, else an old run directory called `latest` itself. `None` when none of them
/// names an existing directory.
pub fn latest(root: &Path) -> Option<PathBuf> {
    let link = root.join(LATEST);
    let meta = fs::symlink_metadata(&link).ok();
    let found = if meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
        root.join(fs::read_link(&link).ok()?)
    } else if let Some(name) = fs::read_to_string(root.join(LATEST_TXT))
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|name| !name.is_empty())
    {
        root.join(name)
    } else {
        link
    };
    found.is_dir().then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashSet};
    use std::error::Error as _;

    /// A fresh, empty directory for one test, removed when the guard drops.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("gpu-ae-rundir-{test}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create scratch dir");
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn fresh(root: &Path) -> OutChoice {
        OutChoice::Fresh {
            root: root.into(),
            prefix: "run".into(),
        }
    }

    fn named(dir: &Path, overwrite: bool) -> OutChoice {
        OutChoice::Named {
            dir: dir.into(),
            overwrite,
        }
    }

    /// Every file under `dir` (names relative to it) with its bytes.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for entry in fs::read_dir(&d).expect("read dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    let bytes = fs::read(&path).expect("read");
                    files.insert(path.strip_prefix(dir).expect("under").into(), bytes);
                }
            }
        }
        files
    }

    #[test]
    fn fresh_directories_are_numbered_and_latest_names_the_newest() {
        let root = Scratch::new("numbering");
        let first = RunDir::open(fresh(&root.0)).expect("first");
        let second = RunDir::open(fresh(&root.0)).expect("second");
        assert_eq!(first.path, root.0.join("run-1"));
        assert_eq!(second.path, root.0.join("run-2"));
        assert!(
            matches!(second.latest, Latest::Updated),
            "{:?}",
            second.latest
        );
        assert_eq!(latest(&root.0), Some(root.0.join("run-2")));
        #[cfg(unix)]
        assert_eq!(
            fs::read_link(root.0.join(LATEST)).expect("a symlink"),
            Path::new("run-2"),
            "the link is relative"
        );
        assert_eq!(
            second.checkpoint(),
            root.0.join("run-2/checkpoint.safetensors")
        );
        let leftovers: Vec<_> = fs::read_dir(&root.0)
            .expect("read")
            .map(|e| e.expect("entry").file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_hole_in_the_numbering_continues_after_the_largest() {
        let root = Scratch::new("hole");
        for name in ["run-1", "run-3", "run-x", "run-", "other-9", "run-+7"] {
            fs::create_dir(root.0.join(name)).expect("mkdir");
        }
        let dir = RunDir::open(fresh(&root.0)).expect("open");
        assert_eq!(dir.path, root.0.join("run-4"));
    }

    #[test]
    fn a_missing_root_is_created() {
        let root = Scratch::new("missing-root");
        let deep = root.0.join("a/b");
        let dir = RunDir::open(fresh(&deep)).expect("open");
        assert_eq!(dir.path, deep.join("run-1"));
    }

    #[test]
    fn concurrent_fresh_opens_get_distinct_directories() {
        let root = Scratch::new("concurrent");
        let opened: Vec<RunDir> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| RunDir::open(fresh(&root.0)).expect("open")))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let paths: HashSet<_> = opened.iter().map(|d| d.path.clone()).collect();
        let expected: HashSet<_> = (1..=8).map(|n| root.0.join(format!("run-{n}"))).collect();
        assert_eq!(paths, expected);
        let newest = latest(&root.0).expect("latest names one of them");
        assert!(paths.contains(&newest), "{}", newest.display());
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_directory() {
        let root = Scratch::new("locked");
        let dir = root.0.join("out");
        let first = RunDir::open(named(&dir, false)).expect("first");
        let text = fs::read_to_string(dir.join(LOCK_FILE)).expect("lock file");
        assert!(
            text.starts_with(&format!("pid {}\ncommand ", std::process::id())),
            "{text}"
        );

        // flock belongs to the open file description, so a second open in this process conflicts too.
        for choice in [
            named(&dir, false),
            named(&dir, true),
            OutChoice::Resume { dir: dir.clone() },
        ] {
            match RunDir::open(choice) {
                Err(RunDirError::Locked {
                    dir: at,
                    pid,
                    command,
                }) => {
                    assert_eq!(at, dir);
                    assert_eq!(pid, Some(std::process::id()));
                    assert!(command.is_some());
                }
                other => panic!("expected Locked, got {other:?}"),
            }
        }
        let err = RunDir::open(named(&dir, true)).expect_err("locked");
        let message = err.to_string();
        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("process {}", std::process::id())),
            "{message}"
        );

        drop(first);
        let again = RunDir::open(named(&dir, false)).expect("free again after the drop");
        assert_eq!(again.path, dir);
    }

    #[test]
    fn an_empty_or_garbled_lock_file_names_another_process() {
        let root = Scratch::new("garbled");
        let holder = File::create(root.0.join(LOCK_FILE)).expect("create");
        holder.try_lock().expect("lock");
        for text in ["", "pid twelve\ngarbage", "\u{0}\u{1}"] {
            fs::write(root.0.join(LOCK_FILE), text).expect("write");
            match RunDir::open(OutChoice::Resume {
                dir: root.0.clone(),
            }) {
                Err(err @ RunDirError::Locked { pid: None, .. }) => {
                    assert!(err.to_string().contains("another process"), "{err}");
                }
                other => panic!("expected Locked without a pid, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_named_directory_holding_a_run_is_refused_untouched() {
        let root = Scratch::new("holds-run");
        let dir = root.0.join("out");
        fs::create_dir(&dir).expect("mkdir");
        fs::write(dir.join(CHECKPOINT_FILE), b"weights").expect("write");
        fs::write(dir.join(METRICS_FILE), b"epoch,step\n1,2\n").expect("write");
        let before = snapshot(&dir);

        let err = RunDir::open(named(&dir, false)).expect_err("holds a run");
        assert!(matches!(err, RunDirError::HoldsRun { .. }), "{err:?}");
        let message = err.to_string();
        let resume = format!("--resume {}", dir.join(CHECKPOINT_FILE).display());
        assert!(message.contains(&resume), "{message}");
        assert!(message.contains("--overwrite"), "{message}");
        assert_eq!(snapshot(&dir), before, "nothing in the directory changed");

        fs::remove_file(dir.join(CHECKPOINT_FILE)).expect("rm");
        let err = RunDir::open(named(&dir, false)).expect_err("metrics alone count");
        assert!(
            matches!(
                err,
                RunDirError::HoldsRun {
                    found: METRICS_FILE,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!dir.join(LOCK_FILE).exists());
    }

    #[test]
    fn overwrite_and_resume_accept_a_directory_holding_a_run() {
        let root = Scratch::new("overwrite");
        let dir = root.0.join("out");
        fs::create_dir(&dir).expect("mkdir");
        fs::write(dir.join(CHECKPOINT_FILE), b"weights").expect("write");
        let overwritten = RunDir::open(named(&dir, true)).expect("overwrite");
        assert_eq!(overwritten.checkpoint(), dir.join(CHECKPOINT_FILE));
        drop(overwritten);
        // Resuming keeps what the directory holds.
        fs::write(dir.join(CHECKPOINT_FILE), b"weights").expect("write");
        let resumed = RunDir::open(OutChoice::Resume { dir: dir.clone() }).expect("resume");
        assert!(matches!(resumed.latest, Latest::NotFresh));
        assert_eq!(
            fs::read(dir.join(CHECKPOINT_FILE)).expect("read"),
            b"weights"
        );

        let created = root.0.join("new/deeper");
        RunDir::open(OutChoice::Resume {
            dir: created.clone(),
        })
        .expect("created");
        assert!(created.is_dir());
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_error() {
        let root = Scratch::new("not-a-dir");
        let file = root.0.join("out");
        fs::write(&file, b"not a directory").expect("write");
        for choice in [
            named(&file, false),
            named(&file, true),
            OutChoice::Resume { dir: file.clone() },
            fresh(&file),
        ] {
            match RunDir::open(choice) {
                Err(err @ RunDirError::NotADirectory { .. }) => {
                    assert!(
                        err.to_string().contains(&file.display().to_string()),
                        "{err}"
                    );
                }
                other => panic!("expected NotADirectory, got {other:?}"),
            }
        }
        assert_eq!(fs::read(&file).expect("read"), b"not a directory");

        // Below a file: the creation error names the directory, and its cause is not repeated.
        let below = file.join("run");
        let err = RunDir::open(named(&below, false)).expect_err("under a file");
        assert!(matches!(err, RunDirError::Create { .. }), "{err:?}");
        let message = err.to_string();
        let cause = err.source().expect("an io cause").to_string();
        assert!(message.contains(&below.display().to_string()), "{message}");
        assert!(!message.contains(&cause), "{message} repeats {cause}");
    }

    #[test]
    fn an_old_run_directory_called_latest_is_left_alone() {
        let root = Scratch::new("old-latest");
        let old = root.0.join(LATEST);
        fs::create_dir(&old).expect("mkdir");
        fs::write(old.join(METRICS_FILE), b"epoch\n1\n").expect("write");
        let before = snapshot(&old);

        let dir = RunDir::open(fresh(&root.0)).expect("the run goes on");
        assert_eq!(dir.path, root.0.join("run-1"));
        match &dir.latest {
            Latest::KeptOld { path } => assert_eq!(path, &old),
            #[cfg(not(unix))]
            Latest::Updated => {}
            other => panic!("expected KeptOld, got {other:?}"),
        }
        assert!(fs::symlink_metadata(&old).expect("still there").is_dir());
        assert_eq!(snapshot(&old), before);
        #[cfg(unix)]
        assert_eq!(latest(&root.0), Some(old));
    }

    #[test]
    fn overwrite_removes_the_earlier_runs_files_and_keeps_others() {
        let scratch = Scratch::new("overwrite-clears");
        let dir = scratch.0.clone();
        for name in RUN_FILES.iter().chain(&["notes.txt"]) {
            fs::write(dir.join(name), b"old").unwrap();
        }
        let held = RunDir::open(OutChoice::Named {
            dir: dir.clone(),
            overwrite: true,
        })
        .unwrap();
        for name in RUN_FILES {
            assert!(!dir.join(name).exists(), "{name} survived --overwrite");
        }
        assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"old");
        drop(held);
    }
}
