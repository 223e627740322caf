//! 2-D convolution ops: gradients against finite differences (f64), forward against naive definitions,
//! the transposed-convolution identities of `ConvGeom`, and tuning's timing runs leaving no trace. GPU-vs-CPU
//! parity on awkward and real sizes is the selftest table's (`gpu_ae::selftest::cases`, run by tests/parity.rs).

mod common;

use common::{assert_close, gpu, random};
use gpu_ae::backend::cpu::CpuExecutor;
use gpu_ae::backend::gpu::{GpuExecutor, MatmulChoice};
use gpu_ae::backend::{Executor, Program};
use gpu_ae::ops::{Act, BufId, ConvGeom, Op};
use gpu_ae::plan::{BufferDesc, Plan};

const REL: f32 = 1e-4;

/// Geometries with stride 2 on sizes it does not divide, wide kernels, strides wider than the kernel and
/// channel counts that are not multiples of 4.
fn awkward_geometries() -> Vec<ConvGeom> {
    vec![
        ConvGeom::new(2, 3, 7, 9, 5, 3, 2, 1),
        ConvGeom::new(2, 1, 6, 5, 7, 5, 1, 2),
        ConvGeom::new(3, 4, 13, 11, 6, 3, 1, 0),
        ConvGeom::new(3, 2, 13, 11, 3, 3, 2, 1),
        ConvGeom::new(1, 3, 8, 7, 2, 2, 3, 0),
        ConvGeom::for_transpose(2, 5, 4, 4, 3, 3, 2, 1, 1),
        // The GPU's implicit-GEMM kernels (8 or more channels): 33 to 64 channels take one 64-row
        // tile, partly filled; K = 35·9 not a multiple of 16, more positions than one 128-column tile.
        ConvGeom::new(2, 35, 9, 10, 37, 3, 2, 1),
        ConvGeom::for_transpose(3, 37, 5, 6, 33, 3, 2, 1, 1),
        // 32 channels fill one 32-row tile exactly; 66 and 70 need two 64-row tiles.
        ConvGeom::new(2, 32, 6, 7, 20, 3, 1, 1),
        ConvGeom::new(1, 66, 5, 4, 70, 3, 2, 1),
        // Stride 3 with a 2×2 kernel: in the data gradient some stride phases reach no output at all.
        ConvGeom::new(2, 9, 8, 7, 10, 2, 3, 1),
        // 5·17·15 = 1275 batch·position terms: the GPU's weight gradient sums them in five slices, the
        // last one short.
        ConvGeom::new(5, 9, 17, 15, 10, 3, 1, 1),
        // Stride 1 with fewer outputs than inputs: the CPU's data gradient as a flipped forward
        // convolution (no padding; a 5×5 kernel with padding 2).
        ConvGeom::new(2, 7, 8, 9, 5, 3, 1, 0),
        ConvGeom::new(2, 6, 7, 8, 4, 5, 1, 2),
        // One output channel at stride 1: the CPU's direct kernels.
        ConvGeom::new(3, 35, 9, 7, 1, 3, 1, 1),
        ConvGeom::new(2, 4, 6, 8, 1, 2, 1, 0),
        ConvGeom::new(2, 3, 5, 6, 1, 5, 1, 2),
    ]
}

/// Buffer ids of a conv fixture: x, w, y, dy, dx, dw.
const X: BufId = BufId(0);
const W: BufId = BufId(1);
const Y: BufId = BufId(2);
const DY: BufId = BufId(3);
const DX: BufId = BufId(4);
const DW: BufId = BufId(5);

fn conv_buffers(g: &ConvGeom) -> Vec<BufferDesc> {
    vec![
        BufferDesc::f32("x", g.x_len()),
        BufferDesc::f32("w", g.w_len()),
        BufferDesc::f32("y", g.y_len()),
        BufferDesc::f32("dy", g.y_len()),
        BufferDesc::f32("dx", g.x_len()),
        BufferDesc::f32("dw", g.w_len()),
    ]
}

/// Forward, data gradient and weight gradient of one convolution over the buffers of [`conv_buffers`].
fn conv_ops(geom: ConvGeom, accumulate: bool) -> Vec<Op> {
    vec![
        Op::Conv2d {
            geom,
            x: X,
            w: W,
            y: Y,
        },
        Op::Conv2dBackwardData {
            geom,
            dy: DY,
            w: W,
            dx: DX,
            accumulate,
        },
        Op::Conv2dBackwardWeight {
            geom,
            dy: DY,
            x: X,
            dw: DW,
            accumulate,
        },
    ]
}

fn cpu64(buffers: Vec<BufferDesc>, ops: Vec<Op>, inputs: &[(BufId, Vec<f32>)]) -> CpuExecutor<f64> {
    let mut cpu = CpuExecutor::<f64>::new(Plan::from_ops(buffers, ops));
    for (id, data) in inputs {
        cpu.write_f32(*id, data);
    }
    cpu.run(Program::FORWARD_BACKWARD, 1);
    cpu
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Checks `grad` (∂L/∂input) against central differences of L = Σ out·r, running `forward` after each
/// perturbation of `input` by ±h.
fn check_finite_difference(
    what: &str,
    cpu: &mut CpuExecutor<f64>,
    forward: &Op,
    out: BufId,
    r: &[f64],
    input: BufId,
    grad: &[f64],
) {
    const H: f64 = 1e-6;
    let scale = grad.iter().fold(0f64, |m, g| m.max(g.abs()));
    assert!(
        scale > 0.0,
        "{what}: the gradient is all zeros, so the check proves nothing"
    );
    for (e, &analytic) in grad.iter().enumerate() {
        let mut loss_at = |delta: f64| {
            let original = cpu.floats(input)[e];
            cpu.floats_mut(input)[e] = original + delta;
            cpu.execute(forward);
            cpu.floats_mut(input)[e] = original;
            dot(cpu.floats(out), r)
        };
        let numeric = (loss_at(H) - loss_at(-H)) / (2.0 * H);
        assert!(
            (numeric - analytic).abs() <= 1e-6 * scale,
            "{what}: element {e}: backward gives {analytic} but finite differences give {numeric}"
        );
    }
}

#[test]
fn conv2d_gradients_match_finite_difference() {
    for (t, g) in awkward_geometries().into_iter().enumerate() {
        let seed = 100 + 10 * t as u64;
        let inputs = [
            (X, random(g.x_len(), seed, 1.0)),
            (W, random(g.w_len(), seed + 1, 1.0)),
            (DY, random(g.y_len(), seed + 2, 1.0)),
        ];
        let mut cpu = cpu64(conv_buffers(&g), conv_ops(g, false), &inputs);
        let r = cpu.floats(DY).to_vec();
        let (dx, dw) = (cpu.floats(DX).to_vec(), cpu.floats(DW).to_vec());
        let forward = Op::Conv2d {
            geom: g,
            x: X,
            w: W,
            y: Y,
        };
        check_finite_difference(
            &format!("conv2d dx {g:?}"),
            &mut cpu,
            &forward,
            Y,
            &r,
            X,
            &dx,
        );
        check_finite_difference(
            &format!("conv2d dw {g:?}"),
            &mut cpu,
            &forward,
            Y,
            &r,
            W,
            &dw,
        );
    }
}

/// Buffer ids of a transposed-conv fixture: input x_t, weight w_t [in_t, out_t, k, k], output y_t, output
/// gradient dy_t, and the gradients dx_t, dw_t.
const XT: BufId = BufId(0);
const WT: BufId = BufId(1);
const YT: BufId = BufId(2);
const DYT: BufId = BufId(3);
const DXT: BufId = BufId(4);
const DWT: BufId = BufId(5);

/// ConvTranspose2d forward and backward through the identities documented on `ConvGeom`.
fn conv_transpose_ops(geom: ConvGeom) -> (Vec<BufferDesc>, Vec<Op>) {
    let buffers = vec![
        BufferDesc::f32("x_t", geom.y_len()),
        BufferDesc::f32("w_t", geom.w_len()),
        BufferDesc::f32("y_t", geom.x_len()),
        BufferDesc::f32("dy_t", geom.x_len()),
        BufferDesc::f32("dx_t", geom.y_len()),
        BufferDesc::f32("dw_t", geom.w_len()),
    ];
    let ops = vec![
        Op::Conv2dBackwardData {
            geom,
            dy: XT,
            w: WT,
            dx: YT,
            accumulate: false,
        },
        Op::Conv2d {
            geom,
            x: DYT,
            w: WT,
            y: DXT,
        },
        Op::Conv2dBackwardWeight {
            geom,
            dy: XT,
            x: DYT,
            dw: DWT,
            accumulate: false,
        },
    ];
    (buffers, ops)
}

#[test]
fn conv_transpose_geometry_matches_pytorch_shapes() {
    // The conv-dae decoder: 64×7×7 → 32×14×14 → 1×28×28 with k3 s2 p1 op1.
    let g = ConvGeom::for_transpose(16, 64, 7, 7, 32, 3, 2, 1, 1);
    assert_eq!(
        (g.in_c, g.in_h, g.in_w, g.out_c, g.out_h, g.out_w),
        (32, 14, 14, 64, 7, 7)
    );
    let g = ConvGeom::for_transpose(16, 32, 14, 14, 1, 3, 2, 1, 1);
    assert_eq!(
        (g.in_c, g.in_h, g.in_w, g.out_c, g.out_h, g.out_w),
        (1, 28, 28, 32, 14, 14)
    );
    // Without output padding: (5 − 1)·2 − 2 + 3 = 9.
    let g = ConvGeom::for_transpose(1, 2, 5, 6, 3, 3, 2, 1, 0);
    assert_eq!((g.in_h, g.in_w, g.out_h, g.out_w), (9, 11, 5, 6));
    assert_eq!(ConvGeom::new(1, 1, 28, 28, 1, 3, 2, 1).out_h, 14);
}

#[test]
fn conv_transpose_gradients_match_finite_difference() {
    let geometries = [
        // The conv-dae decoder scaled down: 5 channels 4×4 → 3 channels 8×8.
        ConvGeom::for_transpose(2, 5, 4, 4, 3, 3, 2, 1, 1),
        ConvGeom::for_transpose(2, 3, 3, 5, 2, 3, 2, 0, 0),
        ConvGeom::for_transpose(1, 2, 4, 3, 7, 5, 1, 2, 0),
    ];
    for (t, g) in geometries.into_iter().enumerate() {
        let seed = 200 + 10 * t as u64;
        let (buffers, ops) = conv_transpose_ops(g);
        let inputs = [
            (XT, random(g.y_len(), seed, 1.0)),
            (WT, random(g.w_len(), seed + 1, 1.0)),
            (DYT, random(g.x_len(), seed + 2, 1.0)),
        ];
        let forward = ops[0].clone();
        let mut cpu = cpu64(buffers, ops, &inputs);
        let r = cpu.floats(DYT).to_vec();
        let (dx, dw) = (cpu.floats(DXT).to_vec(), cpu.floats(DWT).to_vec());
        check_finite_difference(
            &format!("conv_transpose2d dx {g:?}"),
            &mut cpu,
            &forward,
            YT,
            &r,
            XT,
            &dx,
        );
        check_finite_difference(
            &format!("conv_transpose2d dw {g:?}"),
            &mut cpu,
            &forward,
            YT,
            &r,
            WT,
            &dw,
        );
    }
}

fn assert_close_f64(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: the reference is all zeros");
    for (e, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12 * scale,
            "{what}: element {e} is {g} but the naive definition gives {w}"
        );
    }
}

/// y[n, o, i·s − p + a, j·s − p + b] += x[n, c, i, j] · w[c, o, a, b]: PyTorch's ConvTranspose2d written as a
/// scatter, with in_t = g.out_c, out_t = g.in_c.
fn naive_conv_transpose(g: &ConvGeom, x: &[f64], w: &[f64]) -> Vec<f64> {
    let (in_t, out_t) = (g.out_c, g.in_c);
    let mut y = vec![0.0; g.x_len()];
    for n in 0..g.batch {
        for c in 0..in_t {
            for i in 0..g.out_h {
                for j in 0..g.out_w {
                    let xv = x[((n * in_t + c) * g.out_h + i) * g.out_w + j];
                    for o in 0..out_t {
                        for a in 0..g.k_h {
                            for b in 0..g.k_w {
                                let (h, v) = (
                                    (i * g.stride + a) as isize - g.pad as isize,
                                    (j * g.stride + b) as isize - g.pad as isize,
                                );
                                if h < 0 || v < 0 || h >= g.in_h as isize || v >= g.in_w as isize {
                                    continue;
                                }
                                y[((n * out_t + o) * g.in_h + h as usize) * g.in_w + v as usize] +=
                                    xv * w[((c * out_t + o) * g.k_h + a) * g.k_w + b];
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

/// y[n, o, i, j] = Σ_{c, a, b} x[n, c, i·s − p + a, j·s − p + b] · w[o, c, a, b], straight from the definition.
fn naive_conv(g: &ConvGeom, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; g.y_len()];
    for n in 0..g.batch {
        for o in 0..g.out_c {
            for i in 0..g.out_h {
                for j in 0..g.out_w {
                    let mut sum = 0.0;
                    for c in 0..g.in_c {
                        for a in 0..g.k_h {
                            for b in 0..g.k_w {
                                let (h, v) = (
                                    (i * g.stride + a) as isize - g.pad as isize,
                                    (j * g.stride + b) as isize - g.pad as isize,
                                );
                                if h >= 0 && v >= 0 && h < g.in_h as isize && v < g.in_w as isize {
                                    sum += x[((n * g.in_c + c) * g.in_h + h as usize) * g.in_w
                                        + v as usize]
                                        * w[((o * g.in_c + c) * g.k_h + a) * g.k_w + b];
                                }
                            }
                        }
                    }
                    y[((n * g.out_c + o) * g.out_h + i) * g.out_w + j] = sum;
                }
            }
        }
    }
    y
}

#[test]
fn conv_transpose_matches_a_direct_scatter_definition() {
    let mut geometries = awkward_geometries();
    geometries.push(ConvGeom::for_transpose(3, 4, 5, 3, 2, 3, 2, 1, 1));
    for (t, g) in geometries.into_iter().enumerate() {
        let seed = 300 + 10 * t as u64;
        let (buffers, ops) = conv_transpose_ops(g);
        let inputs = [
            (XT, random(g.y_len(), seed, 1.0)),
            (WT, random(g.w_len(), seed + 1, 1.0)),
            (DYT, random(g.x_len(), seed + 2, 1.0)),
        ];
        let cpu = cpu64(buffers, ops, &inputs);
        let want = naive_conv_transpose(&g, cpu.floats(XT), cpu.floats(WT));
        assert_close_f64(&format!("conv_transpose2d {g:?}"), cpu.floats(YT), &want);
    }
}

#[test]
fn conv2d_matches_a_direct_definition() {
    for (t, g) in awkward_geometries().into_iter().enumerate() {
        let seed = 400 + 10 * t as u64;
        let inputs = [
            (X, random(g.x_len(), seed, 1.0)),
            (W, random(g.w_len(), seed + 1, 1.0)),
            (DY, random(g.y_len(), seed + 2, 1.0)),
        ];
        let cpu = cpu64(conv_buffers(&g), conv_ops(g, false), &inputs);
        let want = naive_conv(&g, cpu.floats(X), cpu.floats(W));
        assert_close_f64(&format!("conv2d {g:?}"), cpu.floats(Y), &want);
    }
}

/// The three conv ops on both backends from the same random inputs (dx and dw start random, so
/// accumulation is visible), every output compared, the GPU's kernels chosen as `kernels` says (`Tune`: timed on
/// the device while the plan is built, which must leave every buffer as it was: zero).
fn assert_gpu_matches_cpu_with(
    ctx: &gpu_ae::backend::gpu::GpuContext,
    g: ConvGeom,
    accumulate: bool,
    seed: u64,
    kernels: MatmulChoice,
) {
    let plan = Plan::from_ops(conv_buffers(&g), conv_ops(g, accumulate));
    let mut cpu = CpuExecutor::<f32>::new(plan.clone());
    let mut gpu = GpuExecutor::with_matmul(ctx, plan, kernels).expect("plan fits the adapter");
    for id in [Y, DX, DW] {
        assert!(
            gpu.read_f32(id).iter().all(|&v| v == 0.0),
            "building the plan ({kernels:?}) left values in buffer {id:?}"
        );
    }
    let inputs = [
        (X, random(g.x_len(), seed, 1.0)),
        (W, random(g.w_len(), seed + 1, 0.5)),
        (DY, random(g.y_len(), seed + 2, 1.0)),
        (DX, random(g.x_len(), seed + 3, 1.0)),
        (DW, random(g.w_len(), seed + 4, 1.0)),
    ];
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        for (id, data) in &inputs {
            ex.write_f32(*id, data);
        }
        ex.run(Program::FORWARD_BACKWARD, 1);
    }
    for (name, id) in [
        ("conv2d", Y),
        ("conv2d_backward_data", DX),
        ("conv2d_backward_weight", DW),
    ] {
        let what = format!("{name} accumulate={accumulate} {g:?}");
        assert_close(&what, &gpu.read_f32(id), &cpu.read_f32(id), REL);
    }
}

/// Tuning times both tile heights of every implicit-GEMM op on its own buffers: whichever wins, the
/// results match the CPU and nothing the timing runs wrote survives.
#[test]
fn tuned_conv_tiles_leave_no_trace_and_match_cpu() {
    let Some(ctx) = gpu() else { return };
    for (t, g) in [
        ConvGeom::new(2, 35, 9, 10, 37, 3, 2, 1),
        ConvGeom::new(2, 32, 6, 7, 20, 3, 1, 1),
    ]
    .into_iter()
    .enumerate()
    {
        assert_gpu_matches_cpu_with(&ctx, g, true, 60 + 5 * t as u64, MatmulChoice::Tune);
        // A layer's fused forward, sigmoid: timed on zeros it writes 0.5 everywhere, unless cleared.
        for transposed in [false, true] {
            let (plan, _) = fused_conv_plan(g, transposed, Act::Sigmoid);
            let mut tuned = GpuExecutor::with_matmul(&ctx, plan, MatmulChoice::Tune).unwrap();
            assert!(
                tuned.read_f32(Y).iter().all(|&v| v == 0.0),
                "tuning the fused conv (transposed={transposed}) left values in y"
            );
        }
    }
}

/// One fused conv layer (ConvBiasAct) over buffers x, w, y, bias (ids 0–3), and the lengths of x and y
/// and the bias's channel count. Transposed: x has the conv's output shape and y its input shape.
fn fused_conv_plan(g: ConvGeom, transposed: bool, act: Act) -> (Plan, (usize, usize, usize)) {
    let (x_len, y_len, channels) = if transposed {
        (g.y_len(), g.x_len(), g.in_c)
    } else {
        (g.x_len(), g.y_len(), g.out_c)
    };
    let buffers = vec![
        BufferDesc::f32("x", x_len),
        BufferDesc::f32("w", g.w_len()),
        BufferDesc::f32("y", y_len),
        BufferDesc::f32("bias", channels),
    ];
    let op = Op::ConvBiasAct {
        geom: g,
        x: X,
        w: W,
        bias: BufId(3),
        y: Y,
        act,
        transposed,
    };
    (Plan::from_ops(buffers, vec![op]), (x_len, y_len, channels))
}
