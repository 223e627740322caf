//! Runs side by side: `gpu-ae sweep` and `gpu-ae compare` read each run directory's metrics.csv and
//! write one table, comparison.csv (a line per run: what differs between the runs, then the last epoch's
//! train and test loss and every term, then the seconds trained), and comparison.png (every run's test
//! loss per epoch on one plot, a legend naming the runs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::RgbImage;

use super::ReportError;
use super::metrics::{self, MetricsTable};

/// The table's file, and the plot's.
pub const CSV_FILE: &str = "comparison.csv";
pub const PLOT_FILE: &str = "comparison.png";

/// One run of a comparison.
#[derive(Clone, Debug)]
pub struct ComparedRun {
    /// How the table and the legend name it.
    pub name: String,
    pub dir: PathBuf,
    /// Its value of each of the comparison's keys, as text.
    pub values: Vec<String>,
    pub metrics: MetricsTable,
}

impl ComparedRun {
    /// The run in `dir`, its metrics.csv read; an error names the file.
    pub fn read(name: &str, dir: &Path, values: Vec<String>) -> Result<ComparedRun, ReportError> {
        let metrics = MetricsTable::read(&dir.join(metrics::FILE))?;
        if metrics.rows.is_empty() {
            return Err(ReportError::Read {
                path: dir.join(metrics::FILE),
                problem: "no epoch has finished in this run yet".into(),
            });
        }
        Ok(ComparedRun {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            values,
            metrics,
        })
    }

    /// The lines of the whole model's training (a run that pretrains: its last phase only).
    fn final_phase(&self) -> Vec<&Vec<String>> {
        let phases = self.metrics.phases();
        let last = phases.last().cloned().flatten();
        self.metrics
            .rows
            .iter()
            .zip(&phases)
            .filter(|(_, p)| **p == last)
            .map(|(r, _)| r)
            .collect()
    }

    fn cell<'a>(&self, row: &'a [String], column: &str) -> Option<&'a str> {
        let at = self.metrics.header.iter().position(|h| h == column)?;
        row.get(at).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// (epoch, test loss) of every line of the whole model's training.
    pub fn test_curve(&self) -> Vec<(f64, f64)> {
        self.final_phase()
            .into_iter()
            .filter_map(|r| {
                let epoch = self.cell(r, "epoch")?.parse().ok()?;
                let loss = self.cell(r, "test_loss")?.parse().ok()?;
                Some((epoch, loss))
            })
            .collect()
    }
}

/// Runs and the keys they differ in.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub keys: Vec<String>,
    pub runs: Vec<ComparedRun>,
    /// Columns measured after training (name, a value per run; empty where not measured), placed
    /// before `seconds`.
    pub measured: Vec<(String, Vec<String>)>,
}

impl Comparison {
    /// The train_X/test_X columns beyond the loss that any run has, in the order first seen.
    fn meter_columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = Vec::new();
        for run in &self.runs {
            for h in &run.metrics.header {
                let Some(name) = h.strip_prefix("train_").or_else(|| h.strip_prefix("test_"))
                else {
                    continue;
                };
                if name == "loss" || columns.iter().any(|c| c == h) {
                    continue;
                }
                columns.push(h.clone());
            }
        }
        // train_X before test_X, each meter together; the reconstruction is left out where it is every
        // run's whole loss (no other term).
        let mut ordered = Vec::new();
        for c in &columns {
            let name = c.trim_start_matches("train_").trim_start_matches("test_");
            if self.is_the_loss(name) {
                continue;
            }
            for pair in [format!("train_{name}"), format!("test_{name}")] {
                if columns.contains(&pair) && !ordered.contains(&pair) {
                    ordered.push(pair);
                }
            }
        }
        ordered
    }

    /// Whether meter `name` equals the loss on every run's last line (and so says nothing more).
    fn is_the_loss(&self, name: &str) -> bool {
        self.runs.iter().all(|run| {
            let lines = run.final_phase();
            let Some(last) = lines.last() else {
                return true;
            };
            ["train", "test"].iter().all(|side| {
                let meter = run.cell(last, &format!("{side}_{name}"));
                let loss = run.cell(last, &format!("{side}_loss"));
                match (
                    meter.and_then(|m| m.parse::<f64>().ok()),
                    loss.and_then(|l| l.parse::<f64>().ok()),
                ) {
                    (Some(m), Some(l)) => (m - l).abs() <= 1e-9 * l.abs().max(m.abs()),
                    (None, _) => true,
                    _ => false,
                }
            })
        })
    }

    /// The table: header, then a line per run. Numbers keep every digit metrics.csv has.
    pub fn table(&self) -> MetricsTable {
        let meters = self.meter_columns();
        let mut header = vec!["run".to_string()];
        header.extend(self.keys.iter().cloned());
        header.extend(["epochs", "train_loss", "test_loss"].map(String::from));
        header.extend(meters.iter().cloned());
        header.extend(self.measured.iter().map(|(name, _)| name.clone()));
        header.push("seconds".into());
        let rows = self
            .runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                let lines = run.final_phase();
                let last = lines.last().map(|r| r.as_slice()).unwrap_or(&[]);
                let dir_name = run
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| run.name.clone());
                let mut row = vec![dir_name];
                row.extend(run.values.iter().cloned());
                row.push(lines.len().to_string());
                for column in ["train_loss", "test_loss"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain(meters.clone())
                {
                    row.push(run.cell(last, &column).unwrap_or("").to_string());
                }
                for (_, values) in &self.measured {
                    row.push(values.get(i).cloned().unwrap_or_default());
                }
                let seconds: f64 = run
                    .metrics
                    .column("seconds")
                    .unwrap_or_default()
                    .into_iter()
                    .flatten()
                    .sum();
                row.push(format!("{seconds:.3}"));
                row
            })
            .collect();
        MetricsTable { header, rows }
    }

    /// comparison.csv's text. A field holding a comma or a quote is quoted as CSV does.
    pub fn csv(&self) -> String {
        let table = self.table();
        let mut text = String::new();
        for line in std::iter::once(&table.header).chain(&table.rows) {
            let fields: Vec<String> = line.iter().map(|f| csv_field(f)).collect();
            let _ = writeln!(text, "{}", fields.join(","));
        }
        text
    }

    /// Writes `DIR/comparison.csv` and `DIR/comparison.png` (each atomically); returns their paths.
    pub fn write(&self, dir: &Path, title: &str) -> Result<(PathBuf, PathBuf), ReportError> {
        let csv_path = dir.join(CSV_FILE);
        super::png::write_text_atomically(&csv_path, &self.csv())?;
        let plot_path = dir.join(PLOT_FILE);
        let picture = self.draw(title).map_err(|problem| ReportError::Layout {
            path: plot_path.clone(),
            problem,
        })?;
        super::png::save_rgb(&plot_path, &picture)?;
        Ok((csv_path, plot_path))
    }

    /// comparison.png: every run's test loss per epoch, a colour and marker each, the legend at the right.
    pub fn draw(&self, title: &str) -> Result<RgbImage, String> {
        let curves: Vec<(&str, Vec<(f64, f64)>)> = self
            .runs
            .iter()
            .map(|r| (r.name.as_str(), r.test_curve()))
            .collect();
        super::plot::draw_curves(
            title,
            "test loss (the objective's total) after each epoch",
            &curves,
        )
    }
}

/// `f` as one CSV field.
fn csv_field(f: &str) -> String {
    if f.contains([',', '"', '\n']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

/// The table as aligned text for the terminal: numbers to five decimals.
pub fn text_table(table: &MetricsTable) -> String {
    let seconds = table.header.iter().position(|h| h == "seconds");
    let shown: Vec<Vec<String>> = std::iter::once(table.header.clone())
        .chain(table.rows.iter().map(|r| {
            r.iter()
                .enumerate()
                .map(|(i, f)| match f.parse::<f64>() {
                    Ok(v) if Some(i) == seconds => format!("{v:.1}"),
                    Ok(v) if f.contains('.') || f.contains('e') => format!("{v:.5}"),
                    _ => f.clone(),
                })
                .collect()
        }))
        .collect();
    let widths: Vec<usize> = (0..table.header.len())
        .map(|c| {
            shown
                .iter()
                .map(|r| r.get(c).map_or(0, |f| f.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in &shown {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (f, &w))| match i {
                0 => format!("{f:<w$}"),
                _ => format!("{f:>w$}"),
            })
            .collect();
        let _ = writeln!(text, "{}", cells.join("  ").trim_end());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_commas_or_quotes_are_quoted() {
        let line = ["a", "512,128", "say \"hi\"", ""]
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(line, r#"a,"512,128","say ""hi""","#);
    }
}
