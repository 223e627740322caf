//! What a selftest found: one line per op family, one per variant, the failures spelled out, and the
//! same as JSON for a bug report.

use serde_json::{Value, json};

use super::{CaseResult, Depth, Failure};

/// The adapter a report is about, as wgpu names it (the cache's key: the same GPU under another
/// driver version is another adapter).
#[derive(Clone, Debug, PartialEq)]
pub struct Adapter {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
}

impl Adapter {
    pub fn from_info(info: &wgpu::AdapterInfo) -> Adapter {
        Adapter {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            vendor: info.vendor,
            device: info.device,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "backend": self.backend,
            "device_type": self.device_type,
            "driver": self.driver,
            "driver_info": self.driver_info,
            "vendor": self.vendor,
            "device": self.device,
        })
    }
}

pub struct Report {
    /// What was compared with what (`Target::describe`).
    pub target: String,
    /// The GPU adapter; `None` for the CPU's f64-against-f32 sanity mode.
    pub adapter: Option<Adapter>,
    pub depth: Depth,
    pub kernels: Vec<CaseResult>,
    pub variants: Vec<CaseResult>,
    pub seconds: f64,
    /// The op `GPU_AE_SELFTEST_BREAK` broke on purpose, if any.
    pub broken_on_purpose: Option<String>,
}

/// Results grouped by family, in the order they came: (family, results).
fn grouped(results: &[CaseResult]) -> Vec<(&'static str, Vec<&CaseResult>)> {
    let mut groups: Vec<(&'static str, Vec<&CaseResult>)> = Vec::new();
    for r in results {
        match groups.iter_mut().find(|(f, _)| *f == r.family) {
            Some((_, list)) => list.push(r),
            None => groups.push((r.family, vec![r])),
        }
    }
    groups
}

fn verdict(passed: bool) -> &'static str {
    if passed { "pass" } else { "FAIL" }
}

impl Report {
    pub fn passed(&self) -> bool {
        self.kernels
            .iter()
            .chain(&self.variants)
            .all(CaseResult::passed)
    }

    pub fn failures(&self) -> Vec<&CaseResult> {
        self.kernels
            .iter()
            .chain(&self.variants)
            .filter(|r| !r.passed())
            .collect()
    }

    /// "matmul           13 cases  worst relative error 2.4e-7  pass", one per family.
    pub fn family_lines(&self) -> Vec<String> {
        grouped(&self.kernels)
            .into_iter()
            .map(|(family, results)| {
                let worst = results.iter().map(|r| r.worst).fold(0f64, f64::max);
                let passed = results.iter().all(|r| r.passed());
                format!(
                    "{family:<12} {:>3} case{}  worst relative error {worst:.1e}  {}",
                    results.len(),
                    if results.len() == 1 { " " } else { "s" },
                    verdict(passed)
                )
            })
            .collect()
    }

    /// "conv-dae       worst relative error 3.0e-6  pass", one per variant.
    pub fn variant_lines(&self) -> Vec<String> {
        self.variants
            .iter()
            .map(|r| {
                let name = r.name.split(':').next().unwrap_or(&r.name);
                format!(
                    "{name:<20} worst relative error {:.1e}  {}",
                    r.worst,
                    verdict(r.passed())
                )
            })
            .collect()
    }

    pub fn to_json(&self) -> Value {
        let case = |r: &CaseResult| {
            let mut v = json!({
                "family": r.family,
                "case": r.name,
                "passed": r.passed(),
                "worst_relative_error": if r.worst.is_finite() { json!(r.worst) } else { Value::Null },
                "seconds": r.seconds,
            });
            if let Some(f) = &r.failure {
                v["failure"] = json!(r.explain());
                if let Failure::Mismatch(m) = f {
                    v["mismatch"] = json!({
                        "buffer": m.buffer,
                        "element": m.index,
                        "got": m.got,
                        "want": m.want,
                        "tolerance": m.tolerance,
                        "ops": m.writers.iter().map(|w| json!({
                            "index": w.index,
                            "op": w.name,
                            "sizes": w.shapes,
                            "entry_points": w.entry_points,
                        })).collect::<Vec<_>>(),
                    });
                }
            }
            v
        };
        json!({
            "gpu_ae_version": env!("CARGO_PKG_VERSION"),
            "target": self.target,
            "adapter": self.adapter.as_ref().map(Adapter::to_json),
            "quick": self.depth == Depth::Quick,
            "passed": self.passed(),
            "seconds": self.seconds,
            "broken_on_purpose": self.broken_on_purpose,
            "kernels": self.kernels.iter().map(case).collect::<Vec<_>>(),
            "variants": self.variants.iter().map(case).collect::<Vec<_>>(),
        })
    }
}
