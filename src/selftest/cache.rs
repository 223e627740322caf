//! The last selftest result of each adapter and driver, kept in the user's cache directory so that
//! `gpu-ae train` can warn before training on an adapter whose kernels were seen to compute wrong
//! numbers.
//!
//! Where: `$XDG_CACHE_HOME/gpu-ae/selftest/`, else `~/.cache/gpu-ae/selftest/` (`%LOCALAPPDATA%` on
//! Windows); one small JSON file per adapter, named from its name, API and driver version.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::report::{Adapter, Report};

/// The cache folder, when the environment names a home for one.
pub fn dir() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = from("XDG_CACHE_HOME")
        .or_else(|| from("HOME").map(|h| h.join(".cache")))
        .or_else(|| from("LOCALAPPDATA"))?;
    Some(base.join("gpu-ae").join("selftest"))
}

/// The file of `adapter`'s result: letters, digits and dashes of its name, API and driver.
fn file_for(adapter: &Adapter) -> Option<PathBuf> {
    let raw = format!(
        "{}-{}-{:04x}-{:04x}-{}-{}",
        adapter.name,
        adapter.backend,
        adapter.vendor,
        adapter.device,
        adapter.driver,
        adapter.driver_info
    );
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    name.truncate(150);
    Some(dir()?.join(format!("{}.json", name.trim_matches('-'))))
}

/// Records `report` as its adapter's latest result (written whole under a temporary name, then
/// renamed). Returns where, or `None` for a CPU report or where no cache folder exists.
pub fn store(report: &Report) -> std::io::Result<Option<PathBuf>> {
    let Some(adapter) = &report.adapter else {
        return Ok(None);
    };
    let Some(path) = file_for(adapter) else {
        return Ok(None);
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record = json!({
        "adapter": adapter.name,
        "driver": format!("{} {}", adapter.driver, adapter.driver_info).trim(),
        "passed": report.passed(),
        "quick": report.depth == super::Depth::Quick,
        "unix_time": when,
        "gpu_ae_version": env!("CARGO_PKG_VERSION"),
        "broken_on_purpose": report.broken_on_purpose,
        "failures": report.failures().iter().map(|r| r.explain()).collect::<Vec<_>>(),
    });
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    std::fs::write(&tmp, serde_json::to_string_pretty(&record)?)?;
    std::fs::rename(&tmp, &path)?;
    Ok(Some(path))
}

/// A failed result recorded for this adapter and driver.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedFailure {
    pub path: PathBuf,
    pub failures: Vec<String>,
    pub broken_on_purpose: Option<String>,
}

/// The adapter's recorded result, when it failed (a missing or unreadable record is no failure).
pub fn failed_before(info: &wgpu::AdapterInfo) -> Option<CachedFailure> {
    let path = file_for(&Adapter::from_info(info))?;
    let text = std::fs::read_to_string(&path).ok()?;
    let record: Value = serde_json::from_str(&text).ok()?;
    if record["passed"].as_bool() != Some(false) {
        return None;
    }
    let failures = record["failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Some(CachedFailure {
        path,
        failures,
        broken_on_purpose: record["broken_on_purpose"].as_str().map(String::from),
    })
}

/// The warning `train` prints before training on an adapter that failed its selftest, if it did.
pub fn warning(info: &wgpu::AdapterInfo) -> Option<String> {
    let cached = failed_before(info)?;
    let first = cached
        .failures
        .first()
        .map(|f| format!(" First failure: {f}."))
        .unwrap_or_default();
    let on_purpose = cached
        .broken_on_purpose
        .map(|op| format!(" (that run broke {op} on purpose, GPU_AE_SELFTEST_BREAK)"))
        .unwrap_or_default();
    Some(format!(
        "`gpu-ae selftest` failed on this adapter and driver{on_purpose}: {} kernel case{} computed \
         numbers that differ from the CPU backend's, so this run's may be wrong too.{first} Rerun \
         `gpu-ae selftest` after a driver update, or train with --backend cpu (record: {})",
        cached.failures.len(),
        if cached.failures.len() == 1 { "" } else { "s" },
        cached.path.display()
    ))
}
