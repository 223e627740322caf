//! GPU versus CPU: every kernel on random, odd-sized inputs, and whole training steps of a dense AE.

mod common;

use common::{assert_close, gpu, random, random_bytes};
use gpu_ae::backend::cpu::CpuExecutor;
use gpu_ae::backend::gpu::{GpuExecutor, MatmulChoice};
use gpu_ae::backend::{Executor, Program, load_initial_state, pack_bytes};
use gpu_ae::model::Shape;
use gpu_ae::model::variants::{DenseConfig, dense_ae};
use gpu_ae::objective::Objective;
use gpu_ae::ops::optim::{AdagradHyper, Decay, LrSchedule, RmspropHyper};
use gpu_ae::ops::{Act, AdamHyper, BufId, LossKind, Op, OptimOp, Scalar, state};
use gpu_ae::plan::{BufferDesc, Optimizer, Plan, PlanConfig, compile};

const REL: f32 = 1e-4;
const ACTS: [Act; 5] = [
    Act::Identity,
    Act::Relu,
    Act::LeakyRelu,
    Act::Sigmoid,
    Act::Tanh,
];

/// Every GPU matmul kernel, forced in turn: lavapipe takes 128×128 tiles for every shape, a discrete GPU
/// 64×64 tiles or split K for smaller products.
const MATMUL_KERNELS: [MatmulChoice; 3] = [
    MatmulChoice::Tile64,
    MatmulChoice::Tile128,
    MatmulChoice::SplitK(3),
];

/// Runs `ops` over `buffers` on both backends after writing `floats` and `words`; returns the executors.
fn run_both<'a>(
    ctx: &'a gpu_ae::backend::gpu::GpuContext,
    buffers: Vec<BufferDesc>,
    ops: Vec<Op>,
    floats: &[(usize, Vec<f32>)],
    words: &[(usize, Vec<u32>)],
) -> (CpuExecutor, GpuExecutor<'a>) {
    run_both_with(ctx, MatmulChoice::Auto, buffers, ops, floats, words)
}

/// As [`run_both`], every GPU matmul on the kernel `matmul` names.
fn run_both_with<'a>(
    ctx: &'a gpu_ae::backend::gpu::GpuContext,
    matmul: MatmulChoice,
    buffers: Vec<BufferDesc>,
    ops: Vec<Op>,
    floats: &[(usize, Vec<f32>)],
    words: &[(usize, Vec<u32>)],
) -> (CpuExecutor, GpuExecutor<'a>) {
    let plan = Plan::from_ops(buffers, ops);
    let mut cpu = CpuExecutor::<f32>::new(plan.clone());
    let mut gpu = GpuExecutor::with_matmul(ctx, plan, matmul).expect("plan fits the adapter");
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        for (id, data) in floats {
            ex.write_f32(BufId(*id), data);
        }
        for (id, data) in words {
            ex.write_u32(BufId(*id), data);
        }
        ex.run(Program::FORWARD_BACKWARD, 1);
    }
    (cpu, gpu)
}

fn compare(what: &str, cpu: &mut CpuExecutor, gpu: &mut GpuExecutor, id: usize, rel: f32) {
    let want = cpu.read_f32(BufId(id));
    let got = gpu.read_f32(BufId(id));
    assert_close(what, &got, &want, rel);
}

#[test]
fn matmul_matches_cpu_in_every_transpose_form_on_odd_sizes() {
    let Some(ctx) = gpu() else { return };
    let (m, n, k) = (37, 53, 29);
    for kernel in MATMUL_KERNELS {
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for accumulate in [false, true] {
                    let buffers = vec![
                        BufferDesc::f32("a", m * k),
                        BufferDesc::f32("b", k * n),
                        BufferDesc::f32("c", m * n),
                    ];
                    let op = Op::Matmul {
                        a: BufId(0),
                        b: BufId(1),
                        c: BufId(2),
                        m,
                        n,
                        k,
                        trans_a,
                        trans_b,
                        accumulate,
                    };
                    let inputs = [
                        (0, random(m * k, 1, 1.0)),
                        (1, random(k * n, 2, 1.0)),
                        (2, random(m * n, 3, 1.0)),
                    ];
                    let (mut cpu, mut gpu) =
                        run_both_with(&ctx, kernel, buffers, vec![op], &inputs, &[]);
                    compare(
                        &format!("matmul {kernel:?} ta={trans_a} tb={trans_b} acc={accumulate}"),
                        &mut cpu,
                        &mut gpu,
                        2,
                        REL,
                    );
                }
            }
        }
    }
}

/// Sizes that cross the edges of both tile sizes (64, 128) and of split-K's slices, with every operand
/// transposed somewhere.
#[test]
fn matmul_matches_cpu_across_tile_edges() {
    let Some(ctx) = gpu() else { return };
    let sizes = [
        (1, 1, 1),
        (65, 129, 17),
        (128, 67, 200),
        (3, 300, 5),
        (130, 257, 35),
        (70, 140, 301),
    ];
    for kernel in MATMUL_KERNELS {
        for (case, (m, n, k)) in sizes.into_iter().enumerate() {
            let buffers = vec![
                BufferDesc::f32("a", m * k),
                BufferDesc::f32("b", k * n),
                BufferDesc::f32("c", m * n),
            ];
            let (trans_a, trans_b) = (case % 2 == 1, case % 3 != 1);
            let op = Op::Matmul {
                a: BufId(0),
                b: BufId(1),
                c: BufId(2),
                m,
                n,
                k,
                trans_a,
                trans_b,
                accumulate: false,
            };
            let inputs = [(0, random(m * k, 4, 1.0)), (1, random(k * n, 5, 1.0))];
            let (mut cpu, mut gpu) = run_both_with(&ctx, kernel, buffers, vec![op], &inputs, &[]);
            compare(
                &format!("matmul {kernel:?} {m}×{k}·{k}×{n} ta={trans_a} tb={trans_b}"),
                &mut cpu,
                &mut gpu,
                2,
                REL,
            );
        }
    }
}

#[test]
fn bias_act_and_act_backward_match_cpu_for_every_activation() {
    let Some(ctx) = gpu() else { return };
    let (rows, channels, inner) = (13, 7, 9);
    let len = rows * channels * inner;
    for act in ACTS {
        let buffers = vec![
            BufferDesc::f32("y", len),
            BufferDesc::f32("bias", channels),
            BufferDesc::f32("grad", len),
        ];
        let ops = vec![
            Op::BiasAct {
                y: BufId(0),
                bias: BufId(1),
                rows,
                channels,
                inner,
                act,
            },
            Op::ActBackward {
                y: BufId(0),
                grad: BufId(2),
                len,
                act,
            },
        ];
        let inputs = [
            (0, random(len, 6, 3.0)),
            (1, random(channels, 7, 1.0)),
            (2, random(len, 8, 1.0)),
        ];
        let (mut cpu, mut gpu) = run_both(&ctx, buffers, ops, &inputs, &[]);
        compare(&format!("bias_act {act:?}"), &mut cpu, &mut gpu, 0, REL);
        compare(&format!("act_backward {act:?}"), &mut cpu, &mut gpu, 2, REL);
    }
}

/// The vec4-load kernel runs only where every operand row is a whole number of vec4s: sizes that are
/// multiples of 4 but of no tile, every transpose form, accumulating, and through bias and activation.
#[test]
fn vec4_matmul_matches_cpu_on_sizes_that_allow_it() {
    let Some(ctx) = gpu() else { return };
    for (case, (m, n, k)) in [(132, 260, 36), (4, 8, 4), (68, 136, 300)]
        .into_iter()
        .enumerate()
    {
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                let accumulate = (case + trans_a as usize) % 2 == 1;
                let buffers = vec![
                    BufferDesc::f32("a", m * k),
                    BufferDesc::f32("b", k * n),
                    BufferDesc::f32("c", m * n),
                    BufferDesc::f32("bias", n),
                    BufferDesc::f32("y", m * n),
                ];
                let mut ops = vec![Op::Matmul {
                    a: BufId(0),
                    b: BufId(1),
                    c: BufId(2),
                    m,
                    n,
                    k,
                    trans_a,
                    trans_b,
                    accumulate,
                }];
                if !trans_a {
                    ops.push(Op::MatmulBiasAct {
                        x: BufId(0),
                        w: BufId(1),
                        bias: BufId(3),
                        y: BufId(4),
                        m,
                        n,
                        k,
                        trans_b,
                        act: ACTS[case % ACTS.len()],
                    });
                }
                let inputs = [
                    (0, random(m * k, 51, 1.0)),
                    (1, random(k * n, 52, 0.5)),
                    (2, random(m * n, 53, 1.0)),
                    (3, random(n, 54, 1.0)),
                ];
                let (mut cpu, mut gpu) =
                    run_both_with(&ctx, MatmulChoice::Tile128Vec4, buffers, ops, &inputs, &[]);
                assert!(
                    gpu.matmul_kernels()
                        .iter()
                        .all(|&c| c == MatmulChoice::Tile128Vec4),
                    "{:?}",
                    gpu.matmul_kernels()
                );
                let what = format!("vec4 matmul {m}×{k}·{k}×{n} ta={trans_a} tb={trans_b}");
                compare(&what, &mut cpu, &mut gpu, 2, REL);
                if !trans_a {
                    compare(&format!("{what}, bias_act"), &mut cpu, &mut gpu, 4, REL);
                }
            }
        }
    }
}

/// The fused dense forward against the CPU, for every activation, across tile edges (m, n > 64, odd k),
/// with the weight in both layouts; and on the CPU it is exactly matmul followed by bias_act.
#[test]
fn matmul_bias_act_matches_cpu_and_the_unfused_ops() {
    let Some(ctx) = gpu() else { return };
    let (m, n, k) = (70, 67, 45);
    for (case, act) in ACTS.into_iter().enumerate() {
        for trans_b in [false, true] {
            // Each activation on one of the kernels, in turn, so that all three fuse bias and activation.
            let kernel = MATMUL_KERNELS[(case + trans_b as usize) % MATMUL_KERNELS.len()];
            let buffers = vec![
                BufferDesc::f32("x", m * k),
                BufferDesc::f32("w", k * n),
                BufferDesc::f32("bias", n),
                BufferDesc::f32("y", m * n),
                BufferDesc::f32("y_unfused", m * n),
            ];
            let (x, w, bias, y, y2) = (BufId(0), BufId(1), BufId(2), BufId(3), BufId(4));
            let ops = vec![
                Op::MatmulBiasAct {
                    x,
                    w,
                    bias,
                    y,
                    m,
                    n,
                    k,
                    trans_b,
                    act,
                },
                Op::Matmul {
                    a: x,
                    b: w,
                    c: y2,
                    m,
                    n,
                    k,
                    trans_a: false,
                    trans_b,
                    accumulate: false,
                },
                Op::BiasAct {
                    y: y2,
                    bias,
                    rows: m,
                    channels: n,
                    inner: 1,
                    act,
                },
            ];
            let inputs = [
                (0, random(m * k, 31, 1.0)),
                (1, random(k * n, 32, 0.5)),
                (2, random(n, 33, 1.0)),
            ];
            let (mut cpu, mut gpu) = run_both_with(&ctx, kernel, buffers, ops, &inputs, &[]);
            let what = format!("matmul_bias_act {kernel:?} {act:?} trans_b={trans_b}");
            compare(&what, &mut cpu, &mut gpu, 3, REL);
            compare(&format!("{what}, unfused"), &mut cpu, &mut gpu, 4, REL);
            assert_eq!(
                cpu.read_f32(y),
                cpu.read_f32(y2),
                "{what}: the CPU twin is matmul then bias_act"
            );
        }
    }
}

#[test]
fn bias_grad_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    // Dense (inner 1): channels across 32-channel workgroups, rows not a multiple of the 8 lanes, fewer
    // rows than lanes. Conv (inner > 1): one workgroup per channel.
    for (rows, channels, inner) in [(37, 53, 1), (19, 5, 49), (300, 3, 1), (5, 70, 1)] {
        let len = rows * channels * inner;
        let buffers = vec![
            BufferDesc::f32("grad", len),
            BufferDesc::f32("db", channels),
        ];
        let ops = vec![Op::BiasGrad {
            grad: BufId(0),
            db: BufId(1),
            rows,
            channels,
            inner,
        }];
        let (mut cpu, mut gpu) = run_both(&ctx, buffers, ops, &[(0, random(len, 9, 1.0))], &[]);
        compare(
            &format!("bias_grad {rows}×{channels}×{inner}"),
            &mut cpu,
            &mut gpu,
            1,
            REL,
        );
    }
}

#[test]
fn loss_and_reduction_match_cpu_on_a_partial_batch() {
    let Some(ctx) = gpu() else { return };
    let (rows, cols): (usize, usize) = (37, 53);
    // Batch 2 of a 90-sample set: 16 valid rows out of 37.
    let samples = 90;
    let partial_count = (rows * cols).div_ceil(256);
    for (kind, act, per_sample) in [
        (LossKind::BceWithLogits, Act::Sigmoid, false),
        (LossKind::Mse, Act::Sigmoid, false),
        (LossKind::Mse, Act::Identity, false),
        // The VAE's loss per image: the same values, the gradient cols times larger.
        (LossKind::BceWithLogits, Act::Sigmoid, true),
    ] {
        let buffers = vec![
            BufferDesc::f32("logits", rows * cols),
            BufferDesc::f32("target", rows * cols),
            BufferDesc::f32("grad", rows * cols),
            BufferDesc::f32("recon", rows * cols),
            BufferDesc::f32("partials", partial_count),
            BufferDesc::u32("state", state::LEN),
            BufferDesc::f32("acc", 2),
            BufferDesc::f32("log", 4),
        ];
        let ops = vec![
            Op::Loss {
                kind,
                output_act: act,
                logits: BufId(0),
                target: BufId(1),
                grad: BufId(2),
                recon: BufId(3),
                partials: BufId(4),
                state: BufId(5),
                rows,
                cols,
                samples,
                per_sample,
            },
            Op::ReduceSum {
                partials: BufId(4),
                first: 0,
                count: partial_count,
                scale: None,
                acc: BufId(6),
                slot: 1,
                state: BufId(5),
                log: BufId(7),
            },
            // A sum that starts past the first partial (as each section of the emphasised loss does).
            Op::ReduceSum {
                partials: BufId(4),
                first: 1,
                count: partial_count - 1,
                scale: None,
                acc: BufId(6),
                slot: 0,
                state: BufId(5),
                log: BufId(7),
            },
        ];
        let target: Vec<f32> = random(rows * cols, 11, 1.0)
            .iter()
            .map(|v| v.abs())
            .collect();
        let inputs = [
            (0, random(rows * cols, 10, 6.0)),
            (1, target),
            (6, vec![0.25, 0.5]),
        ];
        let (mut cpu, mut gpu) = run_both(&ctx, buffers, ops, &inputs, &[(5, vec![0, 2, 0, 0])]);
        let grad = cpu.read_f32(BufId(2));
        assert!(
            grad[16 * cols..].iter().all(|g| *g == 0.0)
                && grad[..16 * cols].iter().all(|g| *g != 0.0)
        );
        let kind = format!("{kind:?}{}", if per_sample { " per sample" } else { "" });
        compare(&format!("loss grad {kind}"), &mut cpu, &mut gpu, 2, REL);
        compare(&format!("loss recon {kind}"), &mut cpu, &mut gpu, 3, REL);
        compare(&format!("loss partials {kind}"), &mut cpu, &mut gpu, 4, REL);
        compare(&format!("loss sum {kind}"), &mut cpu, &mut gpu, 6, REL);
        compare(&format!("step log {kind}"), &mut cpu, &mut gpu, 7, REL);
    }
}

/// Every optimizer (Adam, AdamW, SGD, RMSprop, Adagrad) over several steps, their lr scaled by a cosine
/// schedule with warm-up that the first op writes from the step counter.
#[test]
fn optimizers_match_cpu_over_several_steps() {
    let Some(ctx) = gpu() else { return };
    let len = 1000 + 37;
    let hyper = AdamHyper {
        lr: 1e-2,
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.01,
        decoupled: false,
    };
    let names = [
        "param",
        "grad",
        "m",
        "v",
        "state",
        "sgd_param",
        "velocity",
        "w_param",
        "w_m",
        "w_v",
        "rms_param",
        "square_avg",
        "ada_param",
        "ada_sum",
        "scalars",
    ];
    let buffers: Vec<BufferDesc> = names
        .iter()
        .map(|&n| match n {
            "state" => BufferDesc::u32(n, state::LEN),
            "scalars" => BufferDesc::f32(n, 2),
            _ => BufferDesc::f32(n, len),
        })
        .collect();
    let id = |name: &str| BufId(names.iter().position(|n| *n == name).unwrap());
    let scale = Some(Scalar {
        buf: id("scalars"),
        index: 1,
    });
    let schedule = LrSchedule {
        warmup: 2,
        decay: Decay::Cosine { total: 7 },
    };
    let ops = vec![
        Op::Optim(OptimOp::LrSchedule {
            scale: scale.unwrap(),
            state: id("state"),
            step_word: state::GLOBAL_STEP,
            schedule,
        }),
        Op::Adam {
            param: id("param"),
            grad: id("grad"),
            m: id("m"),
            v: id("v"),
            state: id("state"),
            step_word: state::GLOBAL_STEP,
            len,
            hyper,
            lr_scale: scale,
        },
        Op::Adam {
            param: id("w_param"),
            grad: id("grad"),
            m: id("w_m"),
            v: id("w_v"),
            state: id("state"),
            step_word: state::GLOBAL_STEP,
            len,
            hyper: AdamHyper {
                weight_decay: 0.3,
                decoupled: true,
                ..hyper
            },
            lr_scale: scale,
        },
        Op::Sgd {
            param: id("sgd_param"),
            grad: id("grad"),
            velocity: id("velocity"),
            len,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.01,
            lr_scale: None,
        },
        Op::Optim(OptimOp::Rmsprop {
            param: id("rms_param"),
            grad: id("grad"),
            square_avg: id("square_avg"),
            len,
            hyper: RmspropHyper {
                weight_decay: 0.02,
                ..RmspropHyper::default()
            },
            lr_scale: scale,
        }),
        Op::Optim(OptimOp::Adagrad {
            param: id("ada_param"),
            grad: id("grad"),
            sum: id("ada_sum"),
            state: id("state"),
            step_word: state::GLOBAL_STEP,
            len,
            hyper: AdagradHyper {
                lr_decay: 0.1,
                weight_decay: 0.02,
                ..AdagradHyper::default()
            },
            lr_scale: scale,
        }),
        Op::AdvanceStep { state: id("state") },
    ];
    let inputs: Vec<(usize, Vec<f32>)> = [
        "param",
        "grad",
        "sgd_param",
        "w_param",
        "rms_param",
        "ada_param",
    ]
    .iter()
    .enumerate()
    .map(|(k, n)| (id(n).0, random(len, 12 + k as u64, 1.0)))
    .chain([(id("scalars").0, vec![0.5, 0.5])])
    .collect();
    let (mut cpu, mut gpu) = run_both(&ctx, buffers, ops, &inputs, &[]);
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        ex.run(Program::FORWARD_BACKWARD, 4);
    }
    assert_eq!(gpu.read_u32(id("state"))[state::GLOBAL_STEP], 5);
    // The schedule at step 4: past the warm-up, cos(π·3/5) of the way down.
    let want = schedule.scale(4) as f32;
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        let got = ex.read_f32(id("scalars"))[1];
        assert!((got - want).abs() < 1e-6, "lr scale {got} vs {want}");
    }
    for name in [
        "param",
        "m",
        "v",
        "w_param",
        "w_m",
        "w_v",
        "sgd_param",
        "velocity",
        "rms_param",
        "square_avg",
        "ada_param",
        "ada_sum",
    ] {
        compare(name, &mut cpu, &mut gpu, id(name).0, REL);
    }
}

#[test]
fn gather_batch_matches_cpu_with_unaligned_rows_and_a_partial_batch() {
    let Some(ctx) = gpu() else { return };
    let (samples, features, batch) = (23, 13, 10);
    let bytes = random_bytes(samples * features, 15);
    let perm = gpu_ae::rng::epoch_permutation(samples, 3, 0);
    let buffers = vec![
        BufferDesc::u32("data", pack_bytes(&bytes).len()),
        BufferDesc::u32("perm", samples),
        BufferDesc::u32("state", state::LEN),
        BufferDesc::f32("out", batch * features),
    ];
    let ops = vec![Op::GatherBatch {
        data: BufId(0),
        perm: BufId(1),
        state: BufId(2),
        out: BufId(3),
        batch,
        features,
        samples,
    }];
    // Batch index 2: rows 20, 21, 22 are real, the other seven are padding.
    let words = [
        (0, pack_bytes(&bytes)),
        (1, perm.clone()),
        (2, vec![0, 2, 99, 0]),
    ];
    let (mut cpu, mut gpu) = run_both(&ctx, buffers, ops, &[], &words);
    let got = gpu.read_f32(BufId(3));
    assert_eq!(got, cpu.read_f32(BufId(3)), "gather is exact");
    for f in 0..features {
        assert_eq!(
            got[f],
            bytes[perm[20] as usize * features + f] as f32 / 255.0
        );
    }
    assert!(got[3 * features..].iter().all(|v| *v == 0.0));
    // The gather records the three real rows for the batch statistics and penalties after it.
    assert_eq!(gpu.read_u32(BufId(2))[state::VALID_ROWS], 3);
    assert_eq!(cpu.read_u32(BufId(2))[state::VALID_ROWS], 3);
}

fn small_dense_plan(act: Act, loss: LossKind, optimizer: Optimizer) -> Plan {
    let cfg = DenseConfig {
        hidden: vec![53],
        latent: 11,
        act,
        code_act: act,
        output_act: Act::Sigmoid,
    };
    let model = dense_ae(Shape::flat(37), &cfg).unwrap();
    let pc = PlanConfig {
        batch: 19,
        objective: Objective::reconstruction(loss),
        optimizer,
        train_samples: 50,
        test_samples: 21,
        noise: None,
        seed: 0,
        lr_schedule: None,
    };
    compile(&model, &pc).unwrap()
}

#[test]
fn dense_ae_gradients_and_adam_step_match_cpu() {
    let Some(ctx) = gpu() else { return };
    let plan = small_dense_plan(
        Act::Relu,
        LossKind::BceWithLogits,
        Optimizer::Adam(AdamHyper::default()),
    );
    let (train, test) = (random_bytes(50 * 37, 16), random_bytes(21 * 37, 17));
    let mut cpu = CpuExecutor::<f32>::new(plan.clone());
    let mut gpu = GpuExecutor::new(&ctx, plan.clone()).unwrap();
    let perm = gpu_ae::rng::epoch_permutation(50, 9, 0);
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        load_initial_state(ex, &train, &test, 5);
        ex.write_u32(plan.io.train_perm, &perm);
        ex.run(Program::FORWARD_BACKWARD, 1);
    }
    compare("reconstruction", &mut cpu, &mut gpu, plan.io.recon.0, REL);
    for p in &plan.params {
        compare(
            &format!("gradient of {}", p.name),
            &mut cpu,
            &mut gpu,
            p.grad.0,
            REL,
        );
    }
    // Now whole steps, including the last partial batch (50 = 19 + 19 + 12).
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        ex.write_u32(plan.io.train_state, &[0; state::LEN]);
        ex.run(Program::TRAIN_STEP, 3);
    }
    for p in &plan.params {
        compare(
            &format!("{} after 3 Adam steps", p.name),
            &mut cpu,
            &mut gpu,
            p.buf.0,
            REL,
        );
    }
    compare(
        "training loss sum",
        &mut cpu,
        &mut gpu,
        plan.io.loss_acc.0,
        REL,
    );
}

#[test]
fn dense_ae_eval_and_sgd_match_cpu() {
    let Some(ctx) = gpu() else { return };
    let plan = small_dense_plan(
        Act::Tanh,
        LossKind::Mse,
        Optimizer::Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-3,
        },
    );
    let (train, test) = (random_bytes(50 * 37, 18), random_bytes(21 * 37, 19));
    let mut cpu = CpuExecutor::<f32>::new(plan.clone());
    let mut gpu = GpuExecutor::new(&ctx, plan.clone()).unwrap();
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        load_initial_state(ex, &train, &test, 6);
        ex.write_u32(plan.io.train_perm, &(0..50).collect::<Vec<u32>>());
        ex.run(Program::TRAIN_STEP, 3);
        ex.run(Program::EVAL, plan.eval_steps());
    }
    for p in &plan.params {
        compare(
            &format!("{} after 3 SGD steps", p.name),
            &mut cpu,
            &mut gpu,
            p.buf.0,
            REL,
        );
    }
    compare("loss sums", &mut cpu, &mut gpu, plan.io.loss_acc.0, REL);
}

/// The training loop reads each chunk's loss while the next chunk runs: a snapshot must hold the buffer
/// as its own run left it, not as runs queued after it did.
#[test]
fn snapshots_hold_the_loss_as_their_chunk_left_it_while_later_chunks_run() {
    let Some(ctx) = gpu() else { return };
    let plan = small_dense_plan(
        Act::Relu,
        LossKind::BceWithLogits,
        Optimizer::Adam(AdamHyper::default()),
    );
    let (train, test) = (random_bytes(50 * 37, 20), random_bytes(21 * 37, 21));
    let mut cpu = CpuExecutor::<f32>::new(plan.clone());
    let mut gpu = GpuExecutor::new(&ctx, plan.clone()).unwrap();
    let mut sums = Vec::new();
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        load_initial_state(ex, &train, &test, 7);
        ex.write_u32(plan.io.train_perm, &(0..50).collect::<Vec<u32>>());
        let acc = plan.io.loss_acc;
        // One step a chunk (the epoch has three). The second chunk is queued before the first is read,
        // the third after, reusing the first one's read-back buffer.
        let first = ex.run_and_snapshot(Program::TRAIN_STEP, 1, acc);
        let second = ex.run_and_snapshot(Program::TRAIN_STEP, 1, acc);
        let first = ex.read_snapshot(first);
        let third = ex.run_and_snapshot(Program::TRAIN_STEP, 1, acc);
        let (second, third) = (ex.read_snapshot(second), ex.read_snapshot(third));
        sums.push([first[0], second[0], third[0]]);
    }
    let (want, got) = (sums[0], sums[1]);
    assert!(
        want[0] < want[1] && want[1] < want[2],
        "the loss sum grows chunk by chunk: {want:?}"
    );
    assert_close("loss sum after each chunk", &got, &want, REL);
}

/// `Tune` times every candidate kernel on the op's own buffers while the plan is built: the winner is
/// one of the candidates, the result matches the CPU, and nothing the timing runs wrote is left behind
/// (a sigmoid layer would leave 0.5 everywhere in y).
#[test]
fn tuned_matmuls_leave_no_trace_and_match_cpu() {
    let Some(ctx) = gpu() else { return };
    let (m, n, k) = (70, 67, 300);
    let buffers = vec![
        BufferDesc::f32("x", m * k),
        BufferDesc::f32("w", n * k),
        BufferDesc::f32("bias", n),
        BufferDesc::f32("y", m * n),
    ];
    let op = Op::MatmulBiasAct {
        x: BufId(0),
        w: BufId(1),
        bias: BufId(2),
        y: BufId(3),
        m,
        n,
        k,
        trans_b: true,
        act: Act::Sigmoid,
    };
    let plan = Plan::from_ops(buffers.clone(), vec![op.clone()]);
    let mut tuned = GpuExecutor::with_matmul(&ctx, plan, MatmulChoice::Tune).unwrap();
    assert!(
        tuned.read_f32(BufId(3)).iter().all(|&v| v == 0.0),
        "tuning left values in y"
    );
    let kernels = tuned.matmul_kernels().to_vec();
    assert_eq!(kernels.len(), 1);
    assert!(
        // Both operands are contiguous along k = 300: the vec4 kernel is a candidate too.
        gpu_ae::backend::gpu::matmul_candidates(m, n, k, true).contains(&kernels[0]),
        "{kernels:?}"
    );
    let inputs = [
        (0, random(m * k, 41, 1.0)),
        (1, random(n * k, 42, 0.5)),
        (2, random(n, 43, 1.0)),
    ];
    let (mut cpu, mut gpu) =
        run_both_with(&ctx, MatmulChoice::Tune, buffers, vec![op], &inputs, &[]);
    compare(
        &format!("tuned matmul_bias_act on {:?}", kernels[0]),
        &mut cpu,
        &mut gpu,
        3,
        REL,
    );
}
