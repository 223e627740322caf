//! Outputs a user looks at: PNG figures (captioned, labelled grids) of inputs and reconstructions, scatter
//! plots of codes, loss curves, per-epoch metrics as CSV, and report.html, the page that shows them all.

pub mod compare;
pub mod confusion;
pub mod html;
pub mod metrics;
pub mod plot;
pub mod png;
pub mod scatter;
pub mod sections;

use std::path::PathBuf;
use thiserror::Error;

/// A report file that could not be written; every variant names the file.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("cannot write {}: writes PNG only; name the file *.png", path.display())]
    NotPng { path: PathBuf },
    #[error("cannot read {}: {problem}", path.display())]
    Read { path: PathBuf, problem: String },
    #[error("cannot draw {}: {problem}", path.display())]
    Layout { path: PathBuf, problem: String },
}
