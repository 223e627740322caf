//! The hashing autoencoder's ops: binarisation, bit balance and decorrelation checked by finite
//! differences in f64 (against the value an independent f64 computation gives), the GPU against the CPU
//! on awkward sizes with a last partial batch.

mod common;

use common::{assert_close, gpu, random};
use gpu_ae::backend::cpu::CpuExecutor;
use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::backend::{Executor, Program};
use gpu_ae::ops::terms::TapFn;
use gpu_ae::ops::{BufId, Op, Scalar, TermOp, state};
use gpu_ae::plan::{BufferDesc, Plan};

// Buffers of the op-level checks.
const CODE: BufId = BufId(0);
const GRAD: BufId = BufId(1);
const STATE: BufId = BufId(2);
const SCALARS: BufId = BufId(3);
const BIN_PARTIALS: BufId = BufId(4);
const MEANS: BufId = BufId(5);
const BB_PARTIALS: BufId = BufId(6);
const CENTERED: BufId = BufId(7);
const COV: BufId = BufId(8);
const DC_PARTIALS: BufId = BufId(9);

/// The three terms' value and gradient ops on a code [rows × cols], as the hashing terms schedule them:
/// weights in scalars 0 (binarisation), 1 (bit balance), 2 (decorrelation).
fn hashing_op_plan(rows: usize, cols: usize) -> Plan {
    let n = rows * cols;
    let buffers = vec![
        BufferDesc::f32("code", n),
        BufferDesc::f32("grad", n),
        BufferDesc::u32("state", state::LEN),
        BufferDesc::f32("scalars", 3),
        BufferDesc::f32("binarize.partials", n.div_ceil(256)),
        BufferDesc::f32("bit_balance.means", cols),
        BufferDesc::f32("bit_balance.partials", cols.div_ceil(256)),
        BufferDesc::f32("decorrelate.centered", n),
        BufferDesc::f32("decorrelate.cov", cols * cols),
        BufferDesc::f32("decorrelate.partials", (cols * cols).div_ceil(256)),
    ];
    let weight = |index| Scalar {
        buf: SCALARS,
        index,
    };
    let ops = vec![
        Op::Term(TermOp::TapSum {
            x: CODE,
            state: STATE,
            partials: BIN_PARTIALS,
            rows,
            cols,
            f: TapFn::UnitDistance,
        }),
        Op::Term(TermOp::BitBalance {
            b: CODE,
            means: MEANS,
            partials: BB_PARTIALS,
            state: STATE,
            rows,
            cols,
        }),
        Op::Term(TermOp::CenterColumns {
            x: CODE,
            centered: CENTERED,
            state: STATE,
            rows,
            cols,
        }),
        Op::Matmul {
            a: CENTERED,
            b: CENTERED,
            c: COV,
            m: cols,
            n: cols,
            k: rows,
            trans_a: true,
            trans_b: false,
            accumulate: false,
        },
        Op::Term(TermOp::Decorrelate {
            cov: COV,
            partials: DC_PARTIALS,
            state: STATE,
            cols,
        }),
        Op::Term(TermOp::BinarizeGrad {
            x: CODE,
            grad: GRAD,
            state: STATE,
            rows,
            cols,
            weight: weight(0),
        }),
        Op::Term(TermOp::BitBalanceGrad {
            means: MEANS,
            grad: GRAD,
            state: STATE,
            rows,
            cols,
            weight: weight(1),
        }),
        Op::Term(TermOp::DecorrelateGrad {
            centered: CENTERED,
            cov: COV,
            grad: GRAD,
            state: STATE,
            rows,
            cols,
            weight: weight(2),
        }),
    ];
    Plan::from_ops(buffers, ops)
}

fn state_words(valid: usize) -> [u32; state::LEN] {
    let mut words = [0u32; state::LEN];
    words[state::VALID_ROWS] = valid as u32;
    words
}

/// The three terms computed directly in f64 from the code's first `valid` rows [valid × cols]: mean over
/// rows of Σⱼ ||b| − 1|, Σⱼ mⱼ², Σⱼ≠ₖ Cⱼₖ² with C the population covariance.
fn reference_terms(code: &[f64], valid: usize, cols: usize) -> [f64; 3] {
    let b = |r: usize, j: usize| code[r * cols + j];
    let n = valid as f64;
    let binarize = (0..valid * cols)
        .map(|i| (code[i].abs() - 1.0).abs())
        .sum::<f64>()
        / n;
    let means: Vec<f64> = (0..cols)
        .map(|j| (0..valid).map(|r| b(r, j)).sum::<f64>() / n)
        .collect();
    let balance = means.iter().map(|m| m * m).sum();
    let mut decorrelate = 0.0;
    for j in 0..cols {
        for k in (0..cols).filter(|&k| k != j) {
            let c = (0..valid)
                .map(|r| (b(r, j) - means[j]) * (b(r, k) - means[k]))
                .sum::<f64>()
                / n;
            decorrelate += c * c;
        }
    }
    [binarize, balance, decorrelate]
}

/// Each op's value against the f64 reference, and the gradient ops against central differences of
/// L = w_b·binarisation + w_m·balance + w_c·decorrelation (each term alone, then all three), read from the
/// value ops' partial sums as the meters read them (Σ partials / valid). The padded rows neither move the
/// value nor receive a gradient.
#[test]
fn the_hashing_ops_match_an_f64_reference_and_finite_differences() {
    const STEP: f64 = 1e-6;
    let (rows, cols, valid) = (7, 5, 4);
    let plan = hashing_op_plan(rows, cols);
    // Values on both sides of ±1, none on a kink of ||b| − 1| (0 and ±1) within the step: the first
    // fixture that keeps 1e-3 away from ±1 (`random` keeps away from 0).
    let code = (21..)
        .map(|seed| random(rows * cols, seed, 1.6))
        .find(|c| c.iter().all(|v| (v.abs() - 1.0).abs() > 1e-3))
        .unwrap();
    for weights in [
        [1.0f32, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 0.0, 1.0],
        [0.7, 1.3, 2.1],
    ] {
        let mut ex = CpuExecutor::<f64>::new(plan.clone());
        ex.write_f32(CODE, &code);
        ex.write_f32(SCALARS, &weights);
        ex.write_u32(STATE, &state_words(valid));
        let objective = |ex: &mut CpuExecutor<f64>| {
            ex.floats_mut(GRAD).fill(0.0);
            ex.run(Program::FORWARD_BACKWARD, 1);
            let mean = |ex: &CpuExecutor<f64>, id| ex.floats(id).iter().sum::<f64>() / valid as f64;
            let terms = [
                mean(ex, BIN_PARTIALS),
                mean(ex, BB_PARTIALS),
                mean(ex, DC_PARTIALS),
            ];
            (
                terms,
                terms
                    .iter()
                    .zip(weights)
                    .map(|(t, w)| t * w as f64)
                    .sum::<f64>(),
            )
        };
        let (terms, _) = objective(&mut ex);
        let want = reference_terms(ex.floats(CODE), valid, cols);
        for (name, (got, want)) in ["binarisation", "bit balance", "decorrelation"]
            .iter()
            .zip(terms.iter().zip(want))
        {
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{name}: {got} vs the reference {want}"
            );
            assert!(want > 1e-3, "{name}: the reference is too small to test");
        }
        let analytic = ex.floats(GRAD).to_vec();
        for (e, &grad) in analytic.iter().enumerate() {
            let original = ex.floats(CODE)[e];
            ex.floats_mut(CODE)[e] = original + STEP;
            let (_, plus) = objective(&mut ex);
            ex.floats_mut(CODE)[e] = original - STEP;
            let (_, minus) = objective(&mut ex);
            ex.floats_mut(CODE)[e] = original;
            let numeric = (plus - minus) / (2.0 * STEP);
            let scale = grad.abs().max(numeric.abs()).max(1e-3);
            assert!(
                (grad - numeric).abs() <= 1e-6 * scale,
                "weights {weights:?}: code[{e}]: analytic {grad} vs finite difference {numeric}"
            );
            if e >= valid * cols {
                assert_eq!((grad, numeric), (0.0, 0.0), "a padded row, code[{e}]");
            } else {
                assert!(
                    grad.abs() > 1e-4,
                    "weights {weights:?}: code[{e}] has no gradient"
                );
            }
        }
    }
}

/// Every buffer the ops write, the GPU against the CPU: random never-zero codes with a last partial batch
/// (valid rows < rows), widths across the 256-column groups; one gradient at a time (the others weighted
/// 0), added onto a buffer that already holds values.
#[test]
fn the_hashing_ops_match_the_cpu_on_awkward_sizes_and_a_partial_batch() {
    let Some(ctx) = gpu() else { return };
    for (rows, valid, cols) in [(37, 23, 300), (19, 19, 33), (130, 77, 7)] {
        let plan = hashing_op_plan(rows, cols);
        let code = random(rows * cols, 31 + cols as u64, 1.3);
        let grad = random(rows * cols, 32, 1e-3);
        let mut cpu = CpuExecutor::<f32>::new(plan.clone());
        let mut gpu = GpuExecutor::new(&ctx, plan.clone()).unwrap();
        for weights in [[0.3f32, 0.0, 0.0], [0.0, 0.7, 0.0], [0.0, 0.0, 1.9]] {
            for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
                ex.write_f32(CODE, &code);
                ex.write_f32(GRAD, &grad);
                ex.write_f32(SCALARS, &weights);
                ex.write_u32(STATE, &state_words(valid));
                ex.run(Program::FORWARD_BACKWARD, 1);
            }
            let label = format!("{rows}×{cols}, {valid} valid, weights {weights:?}");
            for id in [
                BIN_PARTIALS,
                MEANS,
                BB_PARTIALS,
                CENTERED,
                COV,
                DC_PARTIALS,
                GRAD,
            ] {
                let want = cpu.read_f32(id);
                let got = gpu.read_f32(id);
                assert_close(
                    &format!("{label}: {}", plan.buffers[id.0].name),
                    &got,
                    &want,
                    2e-4,
                );
            }
            // The padded rows: centred to 0, their gradient untouched.
            let (centered, g) = (cpu.read_f32(CENTERED), gpu.read_f32(GRAD));
            assert!(
                centered[valid * cols..].iter().all(|v| *v == 0.0),
                "{label}"
            );
            assert_eq!(g[valid * cols..], grad[valid * cols..], "{label}");
            assert!(g[..valid * cols] != grad[..valid * cols], "{label}");
        }
    }
}
