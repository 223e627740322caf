//! Reading a case's buffers back from both executors and judging them (the rule is stated in the
//! module doc of `selftest`).

use super::{Case, Pair};
use crate::backend::Program;
use crate::ops::{BufId, Op};
use crate::plan::Elem;

/// An op of the case's plan, as a failure names it.
#[derive(Clone, Debug, PartialEq)]
pub struct OpInfo {
    /// Its position in the forward-backward program.
    pub index: usize,
    /// [`Op::name`].
    pub name: &'static str,
    /// [`Op::shapes`].
    pub shapes: String,
    /// The WGSL entry points it launched (empty on the CPU).
    pub entry_points: Vec<&'static str>,
}

/// The first element of a buffer beyond its tolerance.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    pub buffer: String,
    /// The ops that write the buffer (in place ones after the first).
    pub writers: Vec<OpInfo>,
    pub index: usize,
    pub got: f32,
    pub want: f32,
    /// The buffer's largest error relative to its scale.
    pub relative_error: f64,
    pub tolerance: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    Mismatch(Mismatch),
    /// The candidate could not run the case (a binding limit, a lost device).
    Error(String),
    /// Every output of the reference is zero: the case proves nothing (a bug in the table).
    AllZero,
}

#[derive(Clone, Debug)]
pub struct CaseResult {
    pub family: &'static str,
    pub name: String,
    /// The worst relative error over the case's f32 buffers.
    pub worst: f64,
    pub failure: Option<Failure>,
    pub seconds: f64,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// One paragraph saying what failed where, for a person filing a bug.
    pub fn explain(&self) -> String {
        match &self.failure {
            None => format!(
                "{}: passed (worst relative error {:.1e})",
                self.name, self.worst
            ),
            Some(Failure::Error(e)) => format!("{}: could not run: {e}", self.name),
            Some(Failure::AllZero) => format!(
                "{}: every output of the reference is zero, so the case proves nothing",
                self.name
            ),
            Some(Failure::Mismatch(m)) => {
                let writers: Vec<String> = m
                    .writers
                    .iter()
                    .map(|w| {
                        let entries = if w.entry_points.is_empty() {
                            String::new()
                        } else {
                            format!(", entry point {}", w.entry_points.join(" → "))
                        };
                        format!("op #{} {} ({}{entries})", w.index, w.name, w.shapes)
                    })
                    .collect();
                let by = if writers.is_empty() {
                    String::new()
                } else {
                    format!(" written by {}", writers.join(", then "))
                };
                format!(
                    "{}: buffer `{}`{by}: element {} is {} but the reference is {} (relative error {:.2e} > \
                     tolerance {:.0e})",
                    self.name, m.buffer, m.index, m.got, m.want, m.relative_error, m.tolerance
                )
            }
        }
    }
}

/// The candidate's buffers against the reference's. Of several mismatching buffers, the one written
/// earliest in the program is reported: later ones may only inherit its error.
pub(super) fn compare(case: &Case, pair: &mut Pair) -> (f64, Option<Failure>) {
    let plan = &case.plan;
    let ops: Vec<&Op> = plan.program_ops(Program::FORWARD_BACKWARD).collect();
    let writers = |buf: BufId| -> Vec<OpInfo> {
        ops.iter()
            .enumerate()
            .filter(|(_, op)| op.float_outputs().contains(&buf) || writes_words(op, buf))
            .map(|(index, op)| OpInfo {
                index,
                name: op.name(),
                shapes: op.shapes(),
                entry_points: pair.entry_points.get(index).cloned().unwrap_or_default(),
            })
            .collect()
    };
    let mut worst = 0f64;
    let mut mismatches: Vec<Mismatch> = Vec::new();
    let mut any_output = false;
    for (i, desc) in plan.buffers.iter().enumerate() {
        let buf = BufId(i);
        let (want, got) = match desc.elem {
            Elem::F32 | Elem::F16 => (pair.reference.read_f32(buf), pair.candidate.read_f32(buf)),
            Elem::U32 if case.exact.contains(&buf) => {
                let (want, got) = (pair.reference.read_u32(buf), pair.candidate.read_u32(buf));
                if let Some(index) = want.iter().zip(&got).position(|(w, g)| w != g) {
                    mismatches.push(Mismatch {
                        buffer: desc.name.clone(),
                        writers: writers(buf),
                        index,
                        got: got[index] as f32,
                        want: want[index] as f32,
                        relative_error: f64::INFINITY,
                        tolerance: 0.0,
                    });
                }
                continue;
            }
            Elem::U32 => continue,
        };
        let all_zero = |v: &[f32]| v.iter().all(|x| *x == 0.0);
        if all_zero(&want) && all_zero(&got) {
            continue;
        }
        if !writers(buf).is_empty() && !all_zero(&want) {
            any_output = true;
        }
        let tolerance = case.tolerance_of(buf);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6) as f64;
        let error = |(g, w): (&f32, &f32)| {
            let e = (*g as f64 - *w as f64).abs();
            if e.is_nan() { f64::INFINITY } else { e }
        };
        let largest = got.iter().zip(&want).map(error).fold(0f64, f64::max) / scale;
        worst = worst.max(largest);
        if largest > tolerance as f64 {
            let index = got
                .iter()
                .zip(&want)
                .position(|p| error(p) / scale > tolerance as f64)
                .unwrap_or(0);
            mismatches.push(Mismatch {
                buffer: desc.name.clone(),
                writers: writers(buf),
                index,
                got: got[index],
                want: want[index],
                relative_error: largest,
                tolerance,
            });
        }
    }
    let first = mismatches
        .into_iter()
        .min_by_key(|m| m.writers.first().map_or(usize::MAX, |w| w.index));
    let failure = match first {
        Some(m) => Some(Failure::Mismatch(m)),
        None if !any_output => Some(Failure::AllZero),
        None => None,
    };
    (worst, failure)
}

/// Whether `op` writes the u32 buffer `buf` (argmax indices, gathered labels, the step counter).
fn writes_words(op: &Op, buf: BufId) -> bool {
    use crate::ops::ClassifyOp;
    match *op {
        Op::MaxPool2x2 { argmax, .. } => argmax == buf,
        Op::AdvanceStep { state } => state == buf,
        Op::GatherBatch { state, .. } => state == buf,
        Op::Classify(ClassifyOp::GatherLabels { out, .. }) => out == buf,
        _ => false,
    }
}

pub(super) fn result(
    case: &Case,
    outcome: Result<(f64, Option<Failure>), String>,
    seconds: f64,
) -> CaseResult {
    let (worst, failure) = match outcome {
        Ok((worst, failure)) => (worst, failure),
        Err(e) => (f64::INFINITY, Some(Failure::Error(e))),
    };
    CaseResult {
        family: case.family,
        name: case.name.clone(),
        worst,
        failure,
        seconds,
    }
}
