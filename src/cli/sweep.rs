//! `gpu-ae sweep` and `gpu-ae compare`: the lectures' homework (vary the layers, the nonlinearities, the
//! loss, the optimizer, the regularisers) as one command, compared side by side.
//!
//! A sweep is a list of `gpu-ae train` runs: the flags given to `sweep` are every run's, and each
//! `--vary KEY=V1,V2,…` adds `--KEY Vi`, over the cross product of the lists (or, with `--zip`, the lists
//! side by side). Each run is parsed and checked exactly as `train` would before anything trains, then
//! trained one after another in `DIR/<its values>`, with the data read once. `DIR/sweep.json` records the
//! runs and which have finished, so the same command after an interruption (Ctrl-C, a crash) resumes the
//! unfinished run from its checkpoint and trains the rest. At the end: comparison.csv, comparison.png,
//! reconstructions.png (every run's reconstructions of the same test digits, stacked) and report.html.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, Parser};
use serde::{Deserialize, Serialize};

use super::eval::with_checkpoint;
use super::train::{DataCache, Finished, RUNS_ROOT, run_with};
use super::{BackendArg, Cli, TrainArgs, error_text};
use crate::checkpoint;
use crate::report::compare::{self, ComparedRun, Comparison};
use crate::report::html::{self, ComparisonPage};
use crate::report::png::{Figure, FigureRow, save_figure};
use crate::run::dir::{BEST_FILE, CHECKPOINT_FILE, OutChoice, RunDir};
use crate::run::{PICTURE_DIGITS, RunConfig};
use crate::train::Reconstructions;

#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// KEY=V1,V2,…: train once with each value of the train flag --KEY (any train flag that takes a
    /// value, without its dashes: activation, loss, optimizer, lr, lr-schedule, hidden, latent, l1, …).
    /// Repeat for more keys: the runs are the cross product, the first --vary outermost. Values holding
    /// commas are separated by semicolons instead: --vary 'hidden=512,128;256'.
    #[arg(long, value_name = "KEY=V1,V2,…", required = true)]
    pub vary: Vec<String>,
    /// Pair the lists instead (the i-th value of every --vary together); all need the same length.
    #[arg(long)]
    pub zip: bool,
    /// Every train flag, given to every run (--out names the sweep's directory, default runs/sweep-N;
    /// --overwrite starts every run of a sweep already there again).
    #[command(flatten)]
    pub train: TrainArgs,
}

pub const SWEEP_HELP: &str = "\
Examples:
  gpu-ae sweep --variant ae --vary activation=relu,sigmoid,tanh --vary loss=bce,mse --epochs 2
  gpu-ae sweep --vary optimizer=adam,adamw,rmsprop,adagrad,sgd --epochs 4 --out runs/optimizers
  gpu-ae sweep --vary 'hidden=none;256;512,128' --vary code-activation=relu,sigmoid --patience 2
  gpu-ae sweep --zip --vary optimizer=sgd,adam --vary lr=0.1,0.001       (two runs, each its own lr)

DIR (--out, or runs/sweep-N) gets one run directory per run, named by its values
(activation-relu_loss-bce), each as train writes it; sweep.json, the runs and which have finished;
comparison.csv, a line per run: the varied values, epochs trained, the last epoch's train and test loss and
every term, and the seconds spent training; comparison.png, every run's test loss per epoch on one plot;
reconstructions.png, the same 16 test digits and each run's reconstruction of them; report.html, all of it
with a link to each run's own report.

Every run is checked as train checks its flags before the first one trains. Runs go one after another on
the chosen backend; the data is read once. Ctrl-C stops the run under way after its current steps and
saves it; the same command again keeps the finished runs, resumes that one from its checkpoint and trains
the rest (another sweep in the same DIR is refused unless --overwrite). A run that fails (a diverging
--lr) is reported and the others still train; the exit status is then 1.";

#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Run directories (each with the config.json and metrics.csv that train writes).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where comparison.csv, comparison.png, reconstructions.png and report.html go [default: a new
    /// runs/compare-N].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `train`'s flags alone, to parse one run's command line.
#[derive(Parser, Debug)]
#[command(name = "gpu-ae train", no_binary_name = true)]
struct TrainOnly {
    #[command(flatten)]
    args: TrainArgs,
}

/// Train flags a sweep does not pass to its runs or vary, and what to do instead.
const NOT_VARIED: &[(&str, &str)] = &[
    (
        "out",
        "--out names the sweep's directory; each run gets DIR/<its values>",
    ),
    (
        "overwrite",
        "--overwrite applies to the whole sweep: it starts every run again",
    ),
    ("resume", "run the same sweep command again to resume it"),
    (
        "profile",
        "--profile times one epoch of one model; use it with train",
    ),
    (
        "profile-top",
        "--profile-top goes with --profile; use it with train",
    ),
];

/// The sweep's record of its runs, `DIR/sweep.json`.
const STATE_FILE: &str = "sweep.json";
/// The picture of every run's reconstructions.
const STRIPS_FILE: &str = "reconstructions.png";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct State {
    /// The train flags every run shares, as given.
    shared: Vec<String>,
    runs: Vec<PlannedRun>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct PlannedRun {
    /// Its directory's name under the sweep's.
    name: String,
    /// (key, value) of each --vary.
    values: Vec<(String, String)>,
    /// The flags the run adds to the shared ones.
    flags: Vec<String>,
    done: bool,
}

impl PlannedRun {
    /// "activation=relu loss=bce".
    fn label(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One `--vary KEY=V1,V2,…`: values separated by commas, or by semicolons when a value holds commas
/// (`hidden=512,128;256`).
fn parse_vary(text: &str) -> anyhow::Result<(String, Vec<String>)> {
    let Some((key, list)) = text.split_once('=') else {
        bail!(
            "--vary {text}: expected KEY=V1,V2,… (a train flag without its dashes, then its values), \
             e.g. --vary activation=relu,tanh"
        );
    };
    let key = key.trim().trim_start_matches("--").replace('_', "-");
    let separator = if list.contains(';') { ';' } else { ',' };
    let values: Vec<String> = list
        .split(separator)
        .map(|v| v.trim().to_string())
        .collect();
    ensure!(
        !key.is_empty() && values.iter().all(|v| !v.is_empty()),
        "--vary {text}: a key and at least one non-empty value are needed, e.g. --vary activation=relu,tanh"
    );
    for (i, v) in values.iter().enumerate() {
        ensure!(
            !values[..i].contains(v),
            "--vary {text}: the value {v} is listed twice"
        );
    }
    Ok((key, values))
}

/// `key` as a train flag that takes a value; otherwise an error naming the flags that can be varied.
fn check_key(key: &str) -> anyhow::Result<()> {
    if let Some((_, why)) = NOT_VARIED.iter().find(|(k, _)| *k == key) {
        bail!("--vary {key}=…: {why}");
    }
    let command = TrainOnly::command();
    let arg = command.get_arguments().find(|a| a.get_long() == Some(key));
    match arg {
        Some(a) if a.get_action().takes_values() => Ok(()),
        Some(_) => bail!(
            "--vary {key}=…: --{key} is a switch without a value; give it to every run or to none"
        ),
        None => {
            let names: Vec<&str> = command
                .get_arguments()
                .filter(|a| a.get_action().takes_values())
                .filter_map(|a| a.get_long())
                .filter(|l| !NOT_VARIED.iter().any(|(k, _)| k == l))
                .collect();
            bail!(
                "--vary {key}=…: train has no flag --{key}; a sweep can vary {}",
                names.join(", ")
            )
        }
    }
}

/// The train flags given to `sweep` on the command line, as text (`--out` and `--overwrite` are the
/// sweep's own).
fn shared_flags(sweep: &ArgMatches) -> Vec<String> {
    let mut flags = Vec::new();
    for arg in TrainOnly::command().get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "out" | "overwrite")
            || sweep.value_source(id) != Some(ValueSource::CommandLine)
        {
            continue;
        }
        let long = arg.get_long().unwrap_or(id);
        match arg.get_action().takes_values() {
            true => {
                for value in sweep.get_raw(id).into_iter().flatten() {
                    flags.push(format!("--{long}={}", value.to_string_lossy()));
                }
            }
            false => flags.push(format!("--{long}")),
        }
    }
    flags
}

/// `value` made safe as part of a directory name: letters, digits, `.`, `-`, `+` (for commas) kept.
fn dir_part(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => c,
            ',' => '+',
            _ => '-',
        })
        .collect()
}

/// The runs of the sweep, in order: the cross product with the first --vary outermost, or the lists
/// side by side with `zip`.
fn plan_runs(varied: &[(String, Vec<String>)], zip: bool) -> anyhow::Result<Vec<PlannedRun>> {
    let combos: Vec<Vec<(String, String)>> = if zip {
        let n = varied[0].1.len();
        if let Some((key, values)) = varied.iter().find(|(_, v)| v.len() != n) {
            bail!(
                "--zip pairs the lists, so every --vary needs the same number of values: {} has {n}, {key} has {}",
                varied[0].0,
                values.len()
            );
        }
        (0..n)
            .map(|i| {
                varied
                    .iter()
                    .map(|(k, v)| (k.clone(), v[i].clone()))
                    .collect()
            })
            .collect()
    } else {
        varied
            .iter()
            .fold(vec![Vec::new()], |combos, (key, values)| {
                combos
                    .into_iter()
                    .flat_map(|c| {
                        values.iter().map(move |v| {
                            let mut next = c.clone();
                            next.push((key.clone(), v.clone()));
                            next
                        })
                    })
                    .collect()
            })
    };
    Ok(combos
        .into_iter()
        .map(|values| PlannedRun {
            name: values
                .iter()
                .map(|(k, v)| format!("{}-{}", dir_part(k), dir_part(v)))
                .collect::<Vec<_>>()
                .join("_"),
            flags: values.iter().map(|(k, v)| format!("--{k}={v}")).collect(),
            values,
            done: false,
        })
        .collect())
}

/// The train arguments of `run`, parsed as `gpu-ae train` parses them; an error names the run.
fn run_args(shared: &[String], run: &PlannedRun) -> anyhow::Result<TrainArgs> {
    let argv = shared.iter().chain(&run.flags).map(OsString::from);
    match TrainOnly::try_parse_from(argv) {
        Ok(t) => Ok(t.args),
        Err(e) => {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            bail!("run {}: {first}", run.label())
        }
    }
}

/// The directory `--out` names (created if missing) or a new `runs/<prefix>-N`, locked by this process.
fn hold_dir(out: Option<&PathBuf>, prefix: &str) -> anyhow::Result<RunDir> {
    Ok(match out {
        Some(dir) => RunDir::open(OutChoice::Resume { dir: dir.clone() })?,
        None => RunDir::fresh_collection(Path::new(RUNS_ROOT), prefix)?,
    })
}

fn read_state(path: &Path) -> anyhow::Result<Option<State>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{} is not a sweep's record", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_state(path: &Path, state: &State) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(state).expect("the sweep's record serialises");
    Ok(crate::report::png::write_text_atomically(
        path,
        &format!("{text}\n"),
    )?)
}

pub fn run(a: &SweepArgs) -> anyhow::Result<()> {
    let matches = Cli::command()
        .try_get_matches_from(std::env::args_os())
        .context("cannot read the command line again")?;
    let sweep = matches
        .subcommand_matches("sweep")
        .context("the command line has no sweep subcommand")?;
    let shared = shared_flags(sweep);
    sweep_with(a, shared)
}

fn sweep_with(a: &SweepArgs, shared: Vec<String>) -> anyhow::Result<()> {
    let t = &a.train;
    for (given, flag, why) in [
        (
            t.resume.is_some(),
            "--resume",
            "run the same sweep command again to resume it",
        ),
        (
            t.profile,
            "--profile",
            "it times one epoch of one model; use it with train",
        ),
        (
            t.profile_top.is_some(),
            "--profile-top",
            "it goes with --profile; use it with train",
        ),
        (
            t.save_every == Some(0),
            "--save-every 0",
            "a sweep resumes its runs and draws their reconstructions from their checkpoints",
        ),
    ] {
        ensure!(!given, "sweep does not take {flag}: {why}");
    }
    let mut varied: Vec<(String, Vec<String>)> = Vec::new();
    for text in &a.vary {
        let (key, values) = parse_vary(text)?;
        check_key(&key)?;
        ensure!(
            !varied.iter().any(|(k, _)| *k == key),
            "--vary {key} is given twice; list all its values in one --vary {key}=V1,V2,…"
        );
        ensure!(
            !shared
                .iter()
                .any(|f| f == &format!("--{key}") || f.starts_with(&format!("--{key}="))),
            "--{key} is given to every run and also varied; leave one of them out"
        );
        varied.push((key, values));
    }
    let mut runs = plan_runs(&varied, a.zip)?;
    // Every run is parsed and configured as train would before anything is written.
    for run in &runs {
        run_args(&shared, run)?
            .config()
            .with_context(|| format!("run {}", run.label()))?;
    }
    let held = hold_dir(t.out.as_ref(), "sweep")?;
    let dir = held.path.clone();
    let state_path = dir.join(STATE_FILE);
    let mut state = State {
        shared: shared.clone(),
        runs: runs.clone(),
    };
    match read_state(&state_path)? {
        Some(earlier) if !t.overwrite => {
            let same = earlier.shared == state.shared
                && earlier.runs.len() == runs.len()
                && earlier
                    .runs
                    .iter()
                    .zip(&runs)
                    .all(|(e, r)| e.name == r.name && e.flags == r.flags);
            ensure!(
                same,
                "{} holds another sweep ({} runs, shared flags: {}); give another --out, or add \
                 --overwrite to train this sweep there from the start",
                dir.display(),
                earlier.runs.len(),
                match earlier.shared.is_empty() {
                    true => "none".to_string(),
                    false => earlier.shared.join(" "),
                }
            );
            state = earlier;
            runs = state.runs.clone();
        }
        None if !t.overwrite => {
            if let Some(run) = runs.iter().find(|r| {
                let d = dir.join(&r.name);
                d.join(CHECKPOINT_FILE).exists() || d.join("metrics.csv").exists()
            }) {
                bail!(
                    "{} already holds a run that this sweep did not start; give another --out, or add \
                     --overwrite to replace it",
                    dir.join(&run.name).display()
                );
            }
        }
        _ => {}
    }
    write_state(&state_path, &state)?;
    let total = runs.len();
    let left = runs.iter().filter(|r| !r.done).count();
    let epochs = match varied.iter().any(|(k, _)| k == "epochs") {
        true => "epochs as varied".to_string(),
        false => format!("{} epochs each", t.epochs),
    };
    println!(
        "sweep: {total} runs into {} ({} already finished), {epochs}; shared flags: {}",
        dir.display(),
        total - left,
        match shared.is_empty() {
            true => "none".to_string(),
            false => shared.join(" "),
        }
    );
    let mut cache = DataCache::default();
    let mut failed: Vec<String> = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let run_dir = dir.join(&run.name);
        if run.done {
            println!(
                "\n=== run {} of {total}: {}: finished earlier, kept",
                i + 1,
                run.label()
            );
            continue;
        }
        let mut args = run_args(&shared, run)?;
        let resumable = !t.overwrite && run_dir.join(CHECKPOINT_FILE).is_file();
        args.out = Some(run_dir.clone());
        args.resume = resumable.then(|| run_dir.clone());
        args.overwrite = !resumable && run_dir.exists();
        println!(
            "\n=== run {} of {total}: {}{}",
            i + 1,
            run.label(),
            if resumable { " (resuming)" } else { "" }
        );
        match run_with(&args, &mut cache) {
            Ok(Finished::Trained) | Ok(Finished::AlreadyDone) => {
                state.runs[i].done = true;
                write_state(&state_path, &state)?;
            }
            Ok(Finished::Interrupted) => {
                println!(
                    "sweep interrupted in run {} of {total} ({}); the same command again resumes it and trains \
                     the {} after it",
                    i + 1,
                    run.label(),
                    total - i - 1
                );
                std::process::exit(130);
            }
            Err(e) => {
                let text = error_text(&e);
                println!("run {} of {total} ({}) failed: {text}", i + 1, run.label());
                failed.push(format!("{}: {text}", run.label()));
            }
        }
    }
    let finished: Vec<&PlannedRun> = state.runs.iter().filter(|r| r.done).collect();
    let keys: Vec<String> = varied.iter().map(|(k, _)| k.clone()).collect();
    let compared = finished
        .iter()
        .map(|r| {
            ComparedRun::read(
                &r.label(),
                &dir.join(&r.name),
                r.values.iter().map(|(_, v)| v.clone()).collect(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let notes: Vec<String> = failed.iter().map(|f| format!("failed: {f}")).collect();
    if !compared.is_empty() {
        let title = format!(
            "sweep {}: test loss per epoch",
            dir.file_name().unwrap_or_default().to_string_lossy()
        );
        let comparison = Comparison {
            keys,
            runs: compared,
            measured: Vec::new(),
        };
        write_comparison(&dir, "sweep", comparison, &title, &notes, &mut cache)?;
    }
    ensure!(
        failed.is_empty(),
        "{} of {total} runs failed ({}); the same command again retries them",
        failed.len(),
        failed.join("; ")
    );
    Ok(())
}

/// comparison.csv (with every run's test squared error per pixel added), comparison.png,
/// reconstructions.png and report.html in `dir`, and the table printed.
fn write_comparison(
    dir: &Path,
    kind: &str,
    mut comparison: Comparison,
    title: &str,
    notes: &[String],
    cache: &mut DataCache,
) -> anyhow::Result<()> {
    let mut notes = notes.to_vec();
    let measured = measure_runs(&comparison, cache)?;
    let mse = measured
        .iter()
        .map(|m| {
            m.as_ref()
                .map_or(String::new(), |(_, mse, _)| format!("{mse:?}"))
        })
        .collect();
    comparison.measured.push(("test_mse".to_string(), mse));
    for (run, m) in comparison.runs.iter().zip(&measured) {
        if m.is_none() {
            notes.push(format!(
                "{} has no checkpoint, so its test_mse and its row of reconstructions.png are missing",
                run.name
            ));
        }
    }
    let (csv_path, plot_path) = comparison.write(dir, title)?;
    let table = comparison.table();
    println!("\n{}", compare::text_table(&table));
    println!(
        "wrote {} (a line per run; test_mse: the squared error per pixel of each run's model on the test set, \
         whatever loss it trained on)",
        csv_path.display()
    );
    println!(
        "wrote {} (every run's test loss per epoch)",
        plot_path.display()
    );
    let mut pictures = vec![(
        compare::PLOT_FILE.to_string(),
        "every run's test loss after each epoch, one curve per run".to_string(),
    )];
    if let Some(what) = reconstruction_strips(dir, &comparison, &measured)? {
        println!("wrote {} ({what})", dir.join(STRIPS_FILE).display());
        pictures.push((STRIPS_FILE.to_string(), what));
    }
    let runs: Vec<(String, Option<String>)> = comparison
        .runs
        .iter()
        .map(|r| {
            let report = r.dir.join(html::REPORT_FILE);
            let link = report
                .is_file()
                .then(|| crate::report::sections::relative_link(dir, &report))
                .flatten();
            (r.name.clone(), link)
        })
        .collect();
    let page = html::write_comparison_page(
        dir,
        &ComparisonPage {
            kind,
            command: crate::report::sections::command_line(),
            table: &table,
            pictures: &pictures,
            runs: &runs,
            notes: &notes,
        },
    )?;
    println!(
        "wrote {} (the table, both pictures and a link to each run's report; open it in a browser)",
        page.display()
    );
    Ok(())
}

/// Each run's model (from best.safetensors when the run kept one, else its checkpoint) on the CPU: its
/// reconstructions of the first test digits, its test squared error per pixel, and the digits' size.
/// `None` for a run without a checkpoint.
type Measured = Option<(Reconstructions, f64, (usize, usize))>;

fn measure_runs(comparison: &Comparison, cache: &mut DataCache) -> anyhow::Result<Vec<Measured>> {
    let mut all = Vec::new();
    for run in &comparison.runs {
        let path = [BEST_FILE, CHECKPOINT_FILE]
            .iter()
            .map(|f| run.dir.join(f))
            .find(|p| p.is_file());
        let Some(path) = path else {
            all.push(None);
            continue;
        };
        let ckpt = checkpoint::load(&path)?;
        let config =
            RunConfig::from_json(&ckpt.config).with_context(|| format!("{}", path.display()))?;
        // The same model scored by squared error (as `gpu-ae eval` reports it).
        let mse_config = RunConfig {
            loss: crate::run::config::LossArg::Mse,
            ..config.clone()
        };
        let data = cache.load(&config)?;
        let (_, plan) = mse_config.build(&data)?;
        let per_pixel = plan
            .meters
            .iter()
            .position(|m| m.name == "recon_per_pixel")
            .unwrap_or(0);
        let (images, mse) = with_checkpoint(
            BackendArg::Cpu,
            plan,
            &data,
            &mse_config,
            &ckpt,
            |trainer| {
                let summary = trainer.evaluate();
                Ok((
                    trainer.reconstructions(PICTURE_DIGITS),
                    summary.values[per_pixel],
                ))
            },
        )?;
        let img = &data.test.images;
        all.push(Some((images, mse, (img.rows, img.cols))));
    }
    Ok(all)
}

/// reconstructions.png: the first test digits, then each measured run's reconstruction of them. Returns
/// what it shows, `None` when no run was measured.
fn reconstruction_strips(
    dir: &Path,
    comparison: &Comparison,
    measured: &[Measured],
) -> anyhow::Result<Option<String>> {
    let shown: Vec<(&str, &Reconstructions, (usize, usize))> = comparison
        .runs
        .iter()
        .zip(measured)
        .filter_map(|(run, m)| m.as_ref().map(|(r, _, size)| (run.name.as_str(), r, *size)))
        .collect();
    let Some(&(_, first, (height, width))) = shown.first() else {
        return Ok(None);
    };
    let mut rows = vec![FigureRow {
        label: "input".into(),
        images: &first.clean,
    }];
    rows.extend(shown.iter().map(|(name, r, _)| FigureRow {
        label: name.to_string(),
        images: &r.clean_recon,
    }));
    let what = format!(
        "{PICTURE_DIGITS} test images (top row) and each run's reconstruction of them, a row per run"
    );
    let figure = Figure {
        caption: vec![
            format!(
                "{}: reconstructions after the last epoch (the best one with --patience)",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ),
            "rows: input, then one run each".into(),
        ],
        rows,
        height,
        width,
        columns: PICTURE_DIGITS,
        scale: 2,
    };
    save_figure(&dir.join(STRIPS_FILE), &figure)?;
    Ok(Some(what))
}

/// `value` of a config.json key as the table shows it.
fn value_text(value: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => "none".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => match items.is_empty() {
            true => "none".into(),
            false => items
                .iter()
                .map(|v| value_text(Some(v)))
                .collect::<Vec<_>>()
                .join(","),
        },
        Some(v) => v.to_string(),
    }
}

pub fn compare_runs(a: &CompareArgs) -> anyhow::Result<()> {
    ensure!(
        a.dirs.len() >= 2,
        "compare needs at least two run directories, got {}",
        a.dirs.len()
    );
    let mut configs = Vec::new();
    for d in &a.dirs {
        let path = d.join(crate::run::CONFIG_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a run directory: cannot read {}",
                d.display(),
                path.display()
            )
        })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        ensure!(
            value.is_object(),
            "{} does not hold a run's configuration",
            path.display()
        );
        configs.push(value);
    }
    // The keys whose values differ between the runs, in the configuration's order.
    let mut keys: Vec<String> = Vec::new();
    for c in &configs {
        for k in c.as_object().into_iter().flat_map(|m| m.keys()) {
            let differs = configs
                .iter()
                .any(|o| value_text(o.get(k)) != value_text(c.get(k)));
            if differs && !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let names: Vec<String> = a
        .dirs
        .iter()
        .map(|d| {
            d.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| d.display().to_string())
        })
        .collect();
    let unique = names
        .iter()
        .enumerate()
        .all(|(i, n)| !names[..i].contains(n));
    let mut runs = Vec::new();
    for (i, d) in a.dirs.iter().enumerate() {
        let name = match unique {
            true => names[i].clone(),
            false => d.display().to_string(),
        };
        let values = keys.iter().map(|k| value_text(configs[i].get(k))).collect();
        runs.push(ComparedRun::read(&name, d, values)?);
    }
    let held = hold_dir(a.out.as_ref(), "compare")?;
    let dir = held.path.clone();
    let keys = keys.iter().map(|k| k.replace('_', "-")).collect();
    let comparison = Comparison {
        keys,
        runs,
        measured: Vec::new(),
    };
    let title = format!("{} runs: test loss per epoch", a.dirs.len());
    write_comparison(
        &dir,
        "compare",
        comparison,
        &title,
        &[],
        &mut DataCache::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cross_product_has_the_first_key_outermost_and_zip_pairs() {
        let varied = vec![
            ("activation".to_string(), vec!["relu".into(), "tanh".into()]),
            ("loss".to_string(), vec!["bce".into(), "mse".into()]),
        ];
        let runs = plan_runs(&varied, false).unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "activation-relu_loss-bce",
                "activation-relu_loss-mse",
                "activation-tanh_loss-bce",
                "activation-tanh_loss-mse"
            ]
        );
        let zipped = plan_runs(&varied, true).unwrap();
        assert_eq!(zipped.len(), 2);
        assert_eq!(zipped[1].flags, ["--activation=tanh", "--loss=mse"]);
        let uneven = vec![varied[0].clone(), ("loss".into(), vec!["bce".into()])];
        assert!(plan_runs(&uneven, true).is_err());
    }

    #[test]
    fn vary_lists_split_on_commas_or_semicolons_and_keys_are_checked() {
        assert_eq!(
            parse_vary("hidden=512,128;256").unwrap(),
            ("hidden".into(), vec!["512,128".into(), "256".into()])
        );
        assert_eq!(
            parse_vary("--batch_size=32,64").unwrap(),
            ("batch-size".into(), vec!["32".into(), "64".into()])
        );
        assert!(parse_vary("activation").is_err());
        assert!(parse_vary("activation=relu,,tanh").is_err());
        assert!(parse_vary("activation=relu,relu").is_err());
        assert!(check_key("activation").is_ok());
        assert!(check_key("lr-schedule").is_ok());
        let unknown = check_key("colour").unwrap_err().to_string();
        assert!(
            unknown.contains("--colour") && unknown.contains("activation"),
            "{unknown}"
        );
        assert!(check_key("out").is_err());
        assert!(check_key("quiet").is_err());
        assert_eq!(dir_part("512,128"), "512+128");
        assert_eq!(dir_part("step:2:0.5"), "step-2-0.5");
    }
}
