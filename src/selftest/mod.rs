//! `gpu-ae selftest`: every kernel the engine can schedule, run on the user's own adapter and compared
//! with the CPU twin, then one training step of every variant on both.
//!
//! Why: shader compilers differ (a lavapipe build once miscompiled a gather kernel when it shared a
//! module with another entry point), and the test suite only sees the adapters CI has. The case table
//! ([`cases`]) is the one the parity tests iterate (`tests/parity.rs`), so a kernel that passes there
//! passes here by the same rule, at the same tolerance:
//!
//! ```text
//! for every f32 buffer of a case:  scale = max(max |want|, 1e-6)
//!                                  relative error = max |got − want| / scale ≤ tolerance
//! for the u32 outputs it names (argmax, labels, the step counter): equal
//! ```
//!
//! `want` comes from the reference executor, `got` from the candidate: the CPU backend in f32 against
//! a GPU, or the CPU backend in f64 against the same in f32 (`--backend cpu`, a sanity check of the
//! table and the comparison themselves).

pub mod cache;
pub mod cases;
mod compare;
pub mod inputs;
pub mod report;
pub mod variants;

use std::time::Instant;

use crate::backend::Executor;
use crate::backend::Program;
use crate::backend::cpu::CpuExecutor;
use crate::backend::gpu::{GpuContext, GpuExecutor, KernelFault, KernelOptions};

pub use cases::{Case, Depth, Kernels};
pub use compare::{CaseResult, Failure, Mismatch, OpInfo};

/// What the reference is compared with.
pub enum Target<'a> {
    /// A GPU adapter, against the CPU backend in f32; `fault` is the test hook that breaks one op.
    Gpu {
        ctx: &'a GpuContext,
        fault: KernelFault,
    },
    /// The CPU backend in f32, against itself in f64.
    Cpu,
}

impl Target<'_> {
    /// "GPU name (Vulkan, Cpu, driver …) against the CPU backend (f32)".
    pub fn describe(&self) -> String {
        match self {
            Target::Gpu { ctx, .. } => format!("{} against the CPU backend (f32)", ctx.describe()),
            Target::Cpu => "the CPU backend in f32 against the CPU backend in f64".into(),
        }
    }

    /// Whether the target can run `case`: every case on the CPU; on a GPU, the f16 forms (mixed
    /// precision) only where the adapter offers SHADER_F16.
    pub fn runs(&self, case: &Case) -> bool {
        match self {
            Target::Gpu { ctx, .. } => {
                ctx.features.contains(wgpu::Features::SHADER_F16) || !case.needs_f16()
            }
            Target::Cpu => true,
        }
    }

    /// The reference and the candidate executor of `plan`, and the entry points each op of the
    /// forward-backward program launches on the candidate (none on the CPU).
    fn executors(&self, plan: &crate::plan::Plan, kernels: Kernels) -> Result<Pair<'_>, String> {
        match self {
            Target::Gpu { ctx, fault } => {
                let options = KernelOptions {
                    matmul: kernels.matmul,
                    conv_tile: kernels.conv_tile,
                    fault: fault.clone(),
                };
                let gpu = GpuExecutor::with_options(ctx, plan.clone(), options)
                    .map_err(|e| e.to_string())?;
                let entry_points = gpu.entry_points(Program::FORWARD_BACKWARD);
                Ok(Pair {
                    reference: Box::new(CpuExecutor::<f32>::new(plan.clone())),
                    candidate: Box::new(gpu),
                    entry_points,
                })
            }
            Target::Cpu => Ok(Pair {
                reference: Box::new(CpuExecutor::<f64>::new(plan.clone())),
                candidate: Box::new(CpuExecutor::<f32>::new(plan.clone())),
                entry_points: Vec::new(),
            }),
        }
    }
}

struct Pair<'a> {
    reference: Box<dyn Executor + 'a>,
    candidate: Box<dyn Executor + 'a>,
    entry_points: Vec<Vec<&'static str>>,
}

/// Runs `case` on the reference and on the target and compares every buffer.
pub fn run_case(case: &Case, target: &Target) -> CaseResult {
    let start = Instant::now();
    let outcome = target
        .executors(&case.plan, case.kernels)
        .map(|mut pair| {
            (case.drive)(&mut *pair.reference);
            (case.drive)(&mut *pair.candidate);
            let outcome = compare::compare(case, &mut pair);
            match pair.candidate.fault() {
                Some(fault) => Err(format!("the device failed: {fault}")),
                None => Ok(outcome),
            }
        })
        .and_then(|r| r);
    compare::result(case, outcome, start.elapsed().as_secs_f64())
}

/// Every case of the table at `depth` that `target` can run ([`Target::runs`]), each result handed to
/// `seen` as it comes.
pub fn run_cases(
    target: &Target,
    depth: Depth,
    mut seen: impl FnMut(&CaseResult),
) -> Vec<CaseResult> {
    cases::all(depth)
        .iter()
        .filter(|case| target.runs(case))
        .map(|case| {
            let result = run_case(case, target);
            seen(&result);
            result
        })
        .collect()
}
