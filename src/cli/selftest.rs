//! `gpu-ae selftest`: flags → [`crate::selftest`], and printing its report.

use std::time::Instant;

use anyhow::Context;

use super::{Resolved, SelftestArgs};
use crate::backend::gpu::{GpuContext, KernelFault};
use crate::selftest::report::{Adapter, Report};
use crate::selftest::{self, Depth, Target, cache, variants};

pub fn run(args: &SelftestArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.json {
        check_json_path(path)?;
    }
    let depth = if args.quick {
        Depth::Quick
    } else {
        Depth::Full
    };
    let ctx = match args.backend.resolve() {
        Resolved::Cpu { why } => {
            if let Some(why) = why {
                println!(
                    "--backend auto chose the CPU backend: {why}; checking the CPU backend against itself \
                     in f64 (name a GPU's API, e.g. --backend vulkan, to check that adapter)"
                );
            }
            None
        }
        Resolved::Gpu(api) => Some(GpuContext::new(api)?),
    };
    let fault = KernelFault::from_env();
    let target = match &ctx {
        Some(ctx) => Target::Gpu {
            ctx,
            fault: fault.clone(),
        },
        None => Target::Cpu,
    };
    let table = selftest::cases::all(depth);
    let kernel_count = table.iter().filter(|c| target.runs(c)).count();
    let variant_cases = variants::cases();
    println!(
        "selftest{}: {}; {kernel_count} kernel cases, then one training step of {} variants",
        if args.quick { " --quick" } else { "" },
        target.describe(),
        variant_cases.len()
    );
    let skipped = table.len() - kernel_count;
    if skipped > 0 {
        println!(
            "({skipped} f16 cases of --precision mixed not run: the adapter does not offer SHADER_F16)"
        );
    }
    if let Some(op) = &fault.op
        && ctx.is_some()
    {
        println!(
            "GPU_AE_SELFTEST_BREAK={op}: every dispatch of {op} adds 1 to its output's first element, on \
             purpose"
        );
    }
    let start = Instant::now();
    let kernels = selftest::run_cases(&target, depth, |_| {});
    let variants: Vec<_> = variant_cases
        .iter()
        .map(|case| selftest::run_case(case, &target))
        .collect();
    let report = Report {
        target: target.describe(),
        adapter: ctx.as_ref().map(|c| Adapter::from_info(&c.info)),
        depth,
        kernels,
        variants,
        seconds: start.elapsed().as_secs_f64(),
        broken_on_purpose: fault.op.filter(|_| ctx.is_some()),
    };
    print(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("--json {}: could not write the report", path.display()))?;
        println!("wrote {} (attach it to a bug report)", path.display());
    }
    match cache::store(&report) {
        Ok(Some(path)) => println!("recorded the result for this adapter in {}", path.display()),
        Ok(None) => {}
        Err(e) => eprintln!("warning: could not record the result in the cache folder: {e}"),
    }
    let failures = report.failures().len();
    anyhow::ensure!(
        failures == 0,
        "selftest failed: {failures} of {} cases differ from the CPU backend beyond the test suite's \
         tolerances (see above){}",
        report.kernels.len() + report.variants.len(),
        if ctx.is_some() {
            "; training on this adapter may give wrong numbers: use --backend cpu, or update the driver \
             and run `gpu-ae selftest` again"
        } else {
            ""
        }
    );
    Ok(())
}

fn print(report: &Report) {
    for line in report.family_lines() {
        println!("  {line}");
    }
    println!(
        "one training step of each variant (loss accumulators, every gradient and activation):"
    );
    for line in report.variant_lines() {
        println!("  {line}");
    }
    for failure in report.failures() {
        println!("FAILED {}: {}", failure.family, failure.explain());
    }
    let total = report.kernels.len() + report.variants.len();
    if report.passed() {
        println!(
            "passed: all {total} cases agree with the CPU backend, in {:.1} s",
            report.seconds
        );
    }
}

/// `--json FILE` must be writable: its folder exists, and it is not a folder itself.
fn check_json_path(path: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        !path.is_dir(),
        "--json {}: a directory; name the file to write, e.g. --json selftest.json",
        path.display()
    );
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        anyhow::ensure!(
            parent.is_dir(),
            "--json {}: the folder {} does not exist",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}
