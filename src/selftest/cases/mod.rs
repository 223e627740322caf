//! The case table: small plans over seeded inputs of awkward sizes (odd, across workgroup and tile
//! edges, a last partial batch), one or more per op family, each with its tolerance. `gpu-ae selftest`
//! and the parity tests (`tests/parity.rs`) both run exactly these.
//!
//! A case is a [`Plan`] (usually [`Plan::from_ops`]), the kernel choices the GPU must take for it
//! ([`Kernels`]: every matmul kernel the autotuner may pick, both convolution tile heights), and a
//! `drive` that writes its inputs and runs its programs, the same on both executors. To add an op:
//! add its cases to the family's function (or a new file here, listed in [`all`]); one op may share a
//! case with others, since a mismatch names the op that wrote the buffer.

mod conv;
mod dense;
mod models;
mod pool_norm;
mod steps;

use std::sync::Arc;

use crate::backend::gpu::MatmulChoice;
use crate::backend::{Executor, Program};
use crate::ops::{BufId, Op};
use crate::plan::{BufferDesc, Plan};

/// How much of the table to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Every entry point and kernel choice once: `selftest --quick`, seconds.
    Quick,
    /// Every case: more sizes, the reference models' own layer sizes.
    Full,
}

/// The GPU kernels a case forces (the CPU has one twin per op and ignores them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kernels {
    pub matmul: MatmulChoice,
    /// The implicit-GEMM convolutions' tile height, 32 or 64 rows.
    pub conv_tile: Option<usize>,
}

impl Kernels {
    pub fn matmul(matmul: MatmulChoice) -> Kernels {
        Kernels {
            matmul,
            conv_tile: None,
        }
    }

    pub fn conv_tile(rows: usize) -> Kernels {
        Kernels {
            matmul: MatmulChoice::Auto,
            conv_tile: Some(rows),
        }
    }

    /// "", "tile64", "conv tile 32", … for case names.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.matmul != MatmulChoice::Auto {
            parts.push(self.matmul.name());
        }
        if let Some(rows) = self.conv_tile {
            parts.push(format!("conv tile {rows}"));
        }
        parts.join(", ")
    }
}

/// Writes a case's inputs and runs its programs on one executor.
pub type Drive = Arc<dyn Fn(&mut dyn Executor) + Send + Sync>;

/// One entry of the table.
#[derive(Clone)]
pub struct Case {
    /// The op family, one line of `selftest`'s output: matmul, conv, loss, …
    pub family: &'static str,
    /// What the case runs, with its sizes.
    pub name: String,
    pub plan: Plan,
    pub kernels: Kernels,
    pub drive: Drive,
    /// The largest relative error an f32 buffer may have (see the module doc of `selftest`).
    pub tolerance: f32,
    /// Looser (or tighter) tolerances for single buffers: a step's loss accumulators.
    pub buffer_tolerances: Vec<(BufId, f32)>,
    /// u32 buffers that must match exactly: argmax indices, gathered labels, step counters.
    pub exact: Vec<BufId>,
    /// In `selftest --quick` too.
    pub quick: bool,
}

impl Case {
    /// Whether the case stores anything in f16 (mixed precision), which needs SHADER_F16 on a GPU.
    pub fn needs_f16(&self) -> bool {
        self.plan
            .buffers
            .iter()
            .any(|b| b.elem == crate::plan::Elem::F16)
    }

    /// The tolerance of buffer `buf`.
    pub fn tolerance_of(&self, buf: BufId) -> f32 {
        self.buffer_tolerances
            .iter()
            .find(|(b, _)| *b == buf)
            .map_or(self.tolerance, |(_, t)| *t)
    }
}

/// The table at `depth`.
pub fn all(depth: Depth) -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(dense::cases());
    cases.extend(steps::cases());
    cases.extend(conv::cases());
    cases.extend(pool_norm::cases());
    cases.extend(models::cases());
    // `--precision mixed`: every op-level case whose ops all have f16 forms again, with each buffer
    // they may store in f16 made f16 (once per entry point and kernel choice: the quick cases).
    let halves: Vec<Case> = cases
        .iter()
        .filter(|c| c.quick)
        .filter_map(f16_form)
        .collect();
    cases.extend(halves);
    cases
        .into_iter()
        .filter(|c| depth == Depth::Full || c.quick)
        .collect()
}

/// The tolerance of f16 cases: both backends compute in f32 and round to f16 as they store, so a value
/// differs by at most one f16 step (2⁻¹⁰ relative) where the f32 results fall either side of a rounding
/// boundary, and by a few where such a value feeds the next op.
pub const F16_REL: f32 = 4e-3;

/// (buffers op may hold in f16, buffers it needs in f32) for the ops mixed precision runs; `None` for
/// the others. Mirrors the `array<NAME_t>` declarations of their shaders.
fn f16_buffers(op: &Op) -> Option<(Vec<BufId>, Vec<BufId>)> {
    use crate::ops::TermOp;
    Some(match *op {
        Op::Matmul { a, b, c, .. } => (vec![a, b, c], vec![]),
        Op::MatmulBiasAct { x, w, bias, y, .. } => (vec![x, w, y], vec![bias]),
        Op::BiasAct { y, bias, .. } => (vec![y], vec![bias]),
        Op::ActBackward { y, grad, .. } => (vec![y, grad], vec![]),
        Op::BiasGrad { grad, db, .. } => (vec![grad], vec![db]),
        Op::Loss {
            logits,
            target,
            grad,
            recon,
            partials,
            amp: None,
            ..
        } => (vec![logits, target, grad, recon], vec![partials]),
        Op::Conv2d { x, w, y, .. } => (vec![x, w, y], vec![]),
        Op::ConvBiasAct { x, w, bias, y, .. } => (vec![x, w, y], vec![bias]),
        Op::Conv2dBackwardData { dy, w, dx, .. } => (vec![dy, w, dx], vec![]),
        Op::Conv2dBackwardWeight { dy, x, dw, .. } => (vec![dy, x], vec![dw]),
        Op::Corrupt { x, y, mask, .. } => {
            (std::iter::once(x).chain([y]).chain(mask).collect(), vec![])
        }
        Op::Term(TermOp::TapSum { x, partials, .. }) => (vec![x], vec![partials]),
        Op::GatherBatch { out, .. } => (vec![out], vec![]),
        Op::ReduceSum {
            partials, acc, log, ..
        } => (vec![], vec![partials, acc, log]),
        _ => return None,
    })
}

/// `case` with every buffer its ops may store in f16 made f16, named "… f16", at [`F16_REL`]; `None`
/// when an op has no f16 form or no buffer would change.
fn f16_form(case: &Case) -> Option<Case> {
    let (mut halves, mut fixed) = (Vec::new(), Vec::new());
    for op in case.plan.program_ops(Program::FORWARD_BACKWARD) {
        let (h, f) = f16_buffers(op)?;
        halves.extend(h);
        fixed.extend(f);
    }
    halves.retain(|b| !fixed.contains(b));
    if halves.is_empty() {
        return None;
    }
    let mut f16 = case.clone();
    for b in &halves {
        f16.plan.buffers[b.0].elem = crate::plan::Elem::F16;
    }
    f16.name = format!("{} f16", case.name);
    f16.tolerance = F16_REL;
    f16.buffer_tolerances.clear();
    Some(f16)
}

/// The families of the table, in its order.
pub fn families() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for case in all(Depth::Full) {
        if !names.contains(&case.family) {
            names.push(case.family);
        }
    }
    names
}

/// Builds an op-level case: buffers with their inputs, ops, then [`Ops::case`].
#[derive(Default)]
pub struct Ops {
    buffers: Vec<BufferDesc>,
    ops: Vec<Op>,
    floats: Vec<(BufId, Vec<f32>)>,
    words: Vec<(BufId, Vec<u32>)>,
    exact: Vec<BufId>,
    kernels: Kernels,
    tolerance: Option<f32>,
    buffer_tolerances: Vec<(BufId, f32)>,
    /// Runs of the forward-backward program (the ops), 1 unless set.
    repeats: usize,
}

impl Ops {
    pub fn new() -> Ops {
        Ops {
            repeats: 1,
            ..Ops::default()
        }
    }

    /// An f32 buffer the ops write (starting at zero).
    pub fn out(&mut self, name: &str, len: usize) -> BufId {
        self.buffers.push(BufferDesc::f32(name, len));
        BufId(self.buffers.len() - 1)
    }

    /// An f32 buffer holding `values`.
    pub fn input(&mut self, name: &str, values: Vec<f32>) -> BufId {
        let id = self.out(name, values.len());
        self.floats.push((id, values));
        id
    }

    /// A u32 buffer holding `values`.
    pub fn words(&mut self, name: &str, values: Vec<u32>) -> BufId {
        self.buffers.push(BufferDesc::u32(name, values.len()));
        let id = BufId(self.buffers.len() - 1);
        self.words.push((id, values));
        id
    }

    /// A u32 buffer the ops write, compared exactly.
    pub fn exact_out(&mut self, name: &str, len: usize) -> BufId {
        self.buffers.push(BufferDesc::u32(name, len));
        let id = BufId(self.buffers.len() - 1);
        self.exact.push(id);
        id
    }

    /// Compares a u32 buffer exactly too (a state the ops advance).
    pub fn compare_exactly(&mut self, id: BufId) {
        self.exact.push(id);
    }

    pub fn op(&mut self, op: Op) -> &mut Ops {
        self.ops.push(op);
        self
    }

    pub fn kernels(&mut self, kernels: Kernels) -> &mut Ops {
        self.kernels = kernels;
        self
    }

    pub fn tolerance(&mut self, tolerance: f32) -> &mut Ops {
        self.tolerance = Some(tolerance);
        self
    }

    pub fn buffer_tolerance(&mut self, id: BufId, tolerance: f32) -> &mut Ops {
        self.buffer_tolerances.push((id, tolerance));
        self
    }

    pub fn repeats(&mut self, repeats: usize) -> &mut Ops {
        self.repeats = repeats;
        self
    }

    /// The case: writes the inputs, runs the ops `repeats` times.
    pub fn case(self, family: &'static str, name: String, quick: bool) -> Case {
        let Ops {
            buffers,
            ops,
            floats,
            words,
            exact,
            kernels,
            tolerance,
            buffer_tolerances,
            repeats,
        } = self;
        let kernels_named = kernels.describe();
        let name = if kernels_named.is_empty() {
            name
        } else {
            format!("{name} [{kernels_named}]")
        };
        Case {
            family,
            name,
            plan: Plan::from_ops(buffers, ops),
            kernels,
            drive: Arc::new(move |ex: &mut dyn Executor| {
                for (id, values) in &floats {
                    ex.write_f32(*id, values);
                }
                for (id, values) in &words {
                    ex.write_u32(*id, values);
                }
                ex.run(Program::FORWARD_BACKWARD, repeats);
            }),
            tolerance: tolerance.unwrap_or(REL),
            buffer_tolerances,
            exact,
            quick,
        }
    }
}

/// The parity tests' tolerance for single kernels.
pub const REL: f32 = 1e-4;
