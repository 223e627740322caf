//! Per-epoch metrics as CSV: one line per finished epoch, flushed at once, so a killed run keeps them all.

use super::ReportError;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The file name, in the run directory.
pub const FILE: &str = "metrics.csv";

/// The columns every run has; `train_<meter>,test_<meter>` pairs follow for each reported meter.
pub const HEADER: &str = "epoch,step,train_loss,test_loss,seconds,samples_per_second";

/// The header of a run whose meters are `meters` (see [`MetricsRow::meters`]); a run with pretraining
/// phases ends its lines with the phase's name.
pub fn header(meters: &[String], phases: bool) -> String {
    let mut h = HEADER.to_string();
    for m in meters {
        h.push_str(&format!(",train_{m},test_{m}"));
    }
    if phases {
        h.push_str(",phase");
    }
    h
}

/// One epoch's summary. `train_loss` and `test_loss` are the objective's totals (the reconstruction a mean
/// per element, penalties means per sample times their weights); `step` counts optimizer steps since the
/// start.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsRow {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub test_loss: f64,
    /// Wall-clock seconds since training started.
    pub seconds: f64,
    pub samples_per_second: f64,
    /// (train, test) of every meter the header names, in order; `None` for a meter of another phase
    /// (empty fields).
    pub meters: Vec<Option<(f64, f64)>>,
    /// The phase the epoch belongs to (`pretrain-2`, `fine-tune`), in runs that pretrain; epochs and
    /// steps count within it.
    pub phase: Option<String>,
}

/// `DIR/metrics.csv`, created (or truncated) with its header.
pub struct MetricsCsv {
    path: PathBuf,
    out: BufWriter<File>,
}

/// Where a resumed run stands: lines of earlier phases, and of this phase's first `epochs` epochs, are
/// kept.
#[derive(Clone, Copy, Debug)]
pub struct Done<'a> {
    /// The phases' names in order (empty: a run without pretraining, whose lines name no phase).
    pub phases: &'a [String],
    /// The phase under way (an index into `phases`).
    pub phase: usize,
    pub epochs: usize,
}

impl Done<'_> {
    /// Whether a line of the previous file belongs before this position.
    fn keeps(&self, line: &str) -> bool {
        let epoch = line.split(',').next().and_then(|e| e.parse::<usize>().ok());
        let Some(epoch) = epoch else { return false };
        if self.phases.is_empty() {
            return epoch <= self.epochs;
        }
        let phase = line
            .rsplit(',')
            .next()
            .and_then(|name| self.phases.iter().position(|p| p == name));
        match phase {
            Some(p) => p < self.phase || (p == self.phase && epoch <= self.epochs),
            None => false,
        }
    }
}

impl MetricsCsv {
    /// `DIR/metrics.csv`, with a `phase` column when the run has pretraining phases.
    pub fn create(dir: &Path, meters: &[String], phases: bool) -> Result<MetricsCsv, ReportError> {
        let path = dir.join(FILE);
        let file = File::create(&path).map_err(|source| ReportError::Io {
            path: path.clone(),
            source,
        })?;
        let mut csv = MetricsCsv {
            path,
            out: BufWriter::new(file),
        };
        csv.write_line(&header(meters, phases))?;
        Ok(csv)
    }

    /// Opens `DIR/metrics.csv` to continue a resumed run: keeps the lines of `HISTORY/metrics.csv` (the
    /// same file, unless the run resumes into another directory) of epochs up to `epochs_done`, drops later
    /// ones (written after the checkpoint the run resumes from), and appends from there. Creates the file
    /// when there is none.
    pub fn resume(
        dir: &Path,
        history: &Path,
        done: Done<'_>,
        meters: &[String],
    ) -> Result<MetricsCsv, ReportError> {
        let path = history.join(FILE);
        let io = |source| ReportError::Io {
            path: path.clone(),
            source,
        };
        let kept: Vec<String> = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .skip(1)
                .filter(|l| done.keeps(l))
                .map(str::to_string)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let phases = !done.phases.is_empty();
        let mut csv = MetricsCsv::create(dir, meters, phases)?;
        // Lines of a run written by a version with fewer columns get empty fields, so every line has the
        // header's width.
        let width = header(meters, phases).split(',').count();
        for line in &kept {
            let missing = width.saturating_sub(line.split(',').count());
            csv.write_line(&format!("{line}{}", ",".repeat(missing)))?;
        }
        Ok(csv)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and flushes it to the file.
    pub fn append(&mut self, row: &MetricsRow) -> Result<(), ReportError> {
        // `{:?}` keeps every digit of an f64 (shortest round-trip form) and writes NaN/inf readably.
        let mut line = format!(
            "{},{},{:?},{:?},{:.3},{:.1}",
            row.epoch, row.step, row.train_loss, row.test_loss, row.seconds, row.samples_per_second
        );
        for meter in &row.meters {
            match meter {
                Some((train, test)) => line.push_str(&format!(",{train:?},{test:?}")),
                None => line.push_str(",,"),
            }
        }
        if let Some(phase) = &row.phase {
            line.push_str(&format!(",{phase}"));
        }
        self.write_line(&line)
    }

    fn write_line(&mut self, line: &str) -> Result<(), ReportError> {
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|source| ReportError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

/// metrics.csv read back as text: its header and its lines, each split at the commas. The report reads
/// it, not the run's memory, so a resumed run's picture and table show the whole history.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsTable {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl MetricsTable {
    /// `path` (a run's metrics.csv); every line must have the header's width.
    pub fn read(path: &Path) -> Result<MetricsTable, ReportError> {
        let unreadable = |problem: String| ReportError::Read {
            path: path.to_path_buf(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| unreadable("the file is empty, without even a header".into()))?
            .split(',')
            .map(str::to_string)
            .collect();
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            let row: Vec<String> = line.split(',').map(str::to_string).collect();
            if row.len() != header.len() {
                return Err(unreadable(format!(
                    "line {} has {} fields but the header has {}",
                    i + 2,
                    row.len(),
                    header.len()
                )));
            }
            rows.push(row);
        }
        Ok(MetricsTable { header, rows })
    }

    /// The column named `name`, as numbers: `None` for an empty or unparsable field (a meter of another
    /// phase); `None` for the whole column when the header lacks it.
    pub fn column(&self, name: &str) -> Option<Vec<Option<f64>>> {
        let at = self.header.iter().position(|h| h == name)?;
        Some(self.rows.iter().map(|r| r[at].parse().ok()).collect())
    }

    /// Every line's phase (`None` in a run without pretraining).
    pub fn phases(&self) -> Vec<Option<String>> {
        let at = self.header.iter().position(|h| h == "phase");
        self.rows.iter().map(|r| at.map(|i| r[i].clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_appended_epoch_is_on_disk_and_parses() {
        let dir = std::env::temp_dir().join(format!("gpu-ae-metrics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut csv = MetricsCsv::create(&dir, &["recon".into()], false).unwrap();
        let rows: Vec<MetricsRow> = (1..=3)
            .map(|e| MetricsRow {
                epoch: e,
                step: e * 469,
                train_loss: 0.25 / e as f64 + 1e-9,
                test_loss: 0.3 / e as f64,
                seconds: 1.5 * e as f64,
                samples_per_second: 40_000.25,
                meters: vec![Some((0.25 / e as f64, 0.5))],
                phase: None,
            })
            .collect();
        for (i, row) in rows.iter().enumerate() {
            csv.append(row).unwrap();
            // Read back while the writer is still open: the line must already be there.
            let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines[0], format!("{HEADER},train_recon,test_recon"));
            assert_eq!(lines.len(), i + 2);
        }
        let text = std::fs::read_to_string(csv.path()).unwrap();
        for (line, row) in text.lines().skip(1).zip(&rows) {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), HEADER.split(',').count() + 2, "{line}");
            assert_eq!(fields[6].parse::<f64>().unwrap(), row.meters[0].unwrap().0);
            assert_eq!(fields[0].parse::<usize>().unwrap(), row.epoch);
            assert_eq!(fields[1].parse::<usize>().unwrap(), row.step);
            assert_eq!(
                fields[2].parse::<f64>().unwrap(),
                row.train_loss,
                "losses round-trip exactly"
            );
            assert_eq!(fields[3].parse::<f64>().unwrap(), row.test_loss);
            assert!((fields[4].parse::<f64>().unwrap() - row.seconds).abs() < 1e-3);
            assert!((fields[5].parse::<f64>().unwrap() - row.samples_per_second).abs() < 0.1);
        }
        drop(csv);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn resuming_an_older_narrower_file_pads_its_lines_to_the_header() {
        let dir = std::env::temp_dir().join(format!("gpu-ae-metrics-pad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("metrics.csv"),
            format!("{HEADER}\n1,3,0.5,0.4,0.010,100.0\n2,6,0.3,0.3,0.010,100.0\n"),
        )
        .unwrap();
        let meters = ["recon".to_string(), "code_mean".to_string()];
        let done = Done {
            phases: &[],
            phase: 0,
            epochs: 1,
        };
        let csv = MetricsCsv::resume(&dir, &dir, done, &meters).unwrap();
        drop(csv);
        let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "epoch 2 came after the checkpoint: {text}");
        assert_eq!(lines[0], header(&meters, false));
        assert_eq!(lines[1], "1,3,0.5,0.4,0.010,100.0,,,,");
        assert_eq!(lines[1].split(',').count(), lines[0].split(',').count());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn resuming_inside_a_phase_keeps_the_earlier_phases_and_this_ones_done_epochs() {
        let dir = std::env::temp_dir().join(format!("gpu-ae-metrics-phase-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let meters = ["rbm_error".to_string()];
        let phases: Vec<String> = ["pretrain-1", "pretrain-2", "fine-tune"]
            .map(String::from)
            .to_vec();
        let mut csv = MetricsCsv::create(&dir, &meters, true).unwrap();
        for (phase, epoch) in [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1)] {
            csv.append(&MetricsRow {
                epoch,
                step: epoch * 600,
                train_loss: 1.0,
                test_loss: 1.0,
                seconds: 1.0,
                samples_per_second: 1.0,
                meters: vec![(phase < 2).then_some((9.5, 9.75))],
                phase: Some(phases[phase].clone()),
            })
            .unwrap();
        }
        drop(csv);
        let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            format!("{HEADER},train_rbm_error,test_rbm_error,phase")
        );
        assert!(
            text.lines().last().unwrap().ends_with(",,,fine-tune"),
            "{text}"
        );
        let done = Done {
            phases: &phases,
            phase: 1,
            epochs: 1,
        };
        drop(MetricsCsv::resume(&dir, &dir, done, &meters).unwrap());
        let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        let kept: Vec<(&str, &str)> = text
            .lines()
            .skip(1)
            .map(|l| (l.split(',').next().unwrap(), l.rsplit(',').next().unwrap()))
            .collect();
        assert_eq!(
            kept,
            [
                ("1", "pretrain-1"),
                ("2", "pretrain-1"),
                ("1", "pretrain-2")
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_directory_is_named() {
        let dir = std::env::temp_dir()
            .join(format!("gpu-ae-metrics-missing-{}", std::process::id()))
            .join("nope");
        let err = MetricsCsv::create(&dir, &[], false)
            .err()
            .expect("creating in a missing folder fails");
        assert!(err.to_string().contains("metrics.csv"), "{err}");
    }
}
