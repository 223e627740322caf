//! What every command that reads a checkpoint does after writing its results: adds its section to the
//! report of the checkpoint's run directory ([`crate::report::html::add_section`]) and says so.

use std::path::{Path, PathBuf};

/// Adds the section `name` to the report of the directory holding `checkpoint` (a run directory; any
/// other folder is left alone) and prints the `wrote` line. `pictures`: (PNG as written, what it shows).
pub fn add_to_report(
    checkpoint: &Path,
    name: &str,
    figures: &[(String, String)],
    pictures: &[(PathBuf, String)],
) -> anyhow::Result<()> {
    let dir = match checkpoint.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Some(report) = crate::report::html::add_section(dir, name, figures, pictures)? {
        println!(
            "wrote {} (the run's report, now with this {name} section)",
            report.display()
        );
    }
    Ok(())
}
