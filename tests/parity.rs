//! GPU versus CPU: every case of the selftest's table (`gpu_ae::selftest::cases`, the same one
//! `gpu-ae selftest` runs on a user's adapter: every kernel and kernel choice on random, odd-sized
//! inputs), one test per op family; the fault hook that proves a broken kernel fails them; and whole
//! training steps of a dense AE, snapshots and tuning.

mod common;

use common::{assert_close, gpu, random, random_bytes};
use gpu_ae::backend::cpu::CpuExecutor;
use gpu_ae::backend::gpu::{GpuExecutor, KernelFault, MatmulChoice};
use gpu_ae::backend::{Executor, Program, load_initial_state};
use gpu_ae::model::Shape;
use gpu_ae::model::variants::{DenseConfig, dense_ae};
use gpu_ae::objective::Objective;
use gpu_ae::ops::{Act, AdamHyper, BufId, LossKind, Op, state};
use gpu_ae::plan::{BufferDesc, Optimizer, Plan, PlanConfig, compile};
use gpu_ae::selftest::cases::{self, Case, Depth};
use gpu_ae::selftest::{Failure, Target, run_case, variants};

const REL: f32 = 1e-4;

/// Every case of `family` (the whole table, and the variants' training steps) on the GPU against the
/// CPU; fails listing every case that differs.
fn check_family(family: &str) {
    let Some(ctx) = gpu() else { return };
    let target = Target::Gpu {
        ctx: &ctx,
        fault: KernelFault::default(),
    };
    let table: Vec<Case> = cases::all(Depth::Full)
        .into_iter()
        .chain(variants::cases())
        .filter(|c| c.family == family)
        .collect();
    assert!(!table.is_empty(), "the table has no family {family}");
    let failures: Vec<String> = table
        .iter()
        .filter(|case| target.runs(case))
        .map(|case| run_case(case, &target))
        .filter(|r| !r.passed())
        .map(|r| r.explain())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The families the tests below cover: every one the table has (a new family needs its test).
const FAMILIES: [&str; 17] = [
    "matmul",
    "activation",
    "bias",
    "data",
    "loss",
    "optimizer",
    "noise",
    "conv",
    "pool",
    "batch_norm",
    "terms",
    "hashing",
    "vae",
    "rbm",
    "classify",
    "mixed",
    "variant",
];

#[test]
fn every_family_of_the_table_has_its_parity_test() {
    let mut table = cases::families();
    table.push("variant");
    assert_eq!(table, FAMILIES);
}

#[test]
fn matmul_kernels_match_cpu() {
    check_family("matmul");
}

#[test]
fn bias_act_and_act_backward_match_cpu() {
    check_family("activation");
}

#[test]
fn bias_grad_matches_cpu() {
    check_family("bias");
}

#[test]
fn gather_batch_matches_cpu() {
    check_family("data");
}

#[test]
fn loss_and_reduction_match_cpu() {
    check_family("loss");
}

#[test]
fn optimizers_match_cpu() {
    check_family("optimizer");
}

#[test]
fn noise_matches_cpu() {
    check_family("noise");
}

#[test]
fn conv_ops_match_cpu() {
    check_family("conv");
}

#[test]
fn pooling_matches_cpu() {
    check_family("pool");
}

#[test]
fn batch_norm_matches_cpu() {
    check_family("batch_norm");
}

#[test]
fn term_ops_match_cpu() {
    check_family("terms");
}

#[test]
fn hashing_ops_match_cpu() {
    check_family("hashing");
}

#[test]
fn vae_ops_match_cpu() {
    check_family("vae");
}

/// `--precision mixed`: whole training steps with f16 activations and gradients and the loss scaler
/// (the f16 forms of the single kernels run with their own families).
#[test]
fn mixed_precision_steps_match_cpu() {
    check_family("mixed");
}

#[test]
fn rbm_ops_match_cpu() {
    check_family("rbm");
}

#[test]
fn classify_ops_match_cpu() {
    check_family("classify");
}

#[test]
fn a_training_step_of_every_variant_matches_cpu() {
    check_family("variant");
}

/// The fault hook (what `GPU_AE_SELFTEST_BREAK` sets) makes the same cases fail, naming the broken op:
/// the parity tests and `gpu-ae selftest` share one table.
#[test]
fn a_broken_kernel_fails_its_cases_and_is_named() {
    let Some(ctx) = gpu() else { return };
    for (op, family) in [
        ("conv2d_backward_weight", "conv"),
        ("softmax_cross_entropy", "classify"),
        ("adam", "optimizer"),
    ] {
        let target = Target::Gpu {
            ctx: &ctx,
            fault: KernelFault::breaking(op),
        };
        let case = cases::all(Depth::Quick)
            .into_iter()
            .find(|c| c.family == family)
            .expect("a quick case of the family");
        let result = run_case(&case, &target);
        let Some(Failure::Mismatch(m)) = &result.failure else {
            panic!("breaking {op} went unnoticed: {}", result.explain());
        };
        assert!(
            m.writers.iter().any(|w| w.name == op),
            "breaking {op}: {}",
            result.explain()
        );
        assert!(result.explain().contains(op), "{}", result.explain());
        assert!(
            m.writers
                .iter()
                .any(|w| w.entry_points.contains(&"GPU_AE_SELFTEST_BREAK")),
            "the perturbation is the hook's own dispatch: {}",
            result.explain()
        );
    }
}

/// What the table's cases promise beyond agreement, checked on the CPU twins: the fused dense forward
/// is exactly matmul then bias_act; the loss gives padded rows no gradient.
#[test]
fn the_fused_dense_forward_is_matmul_then_bias_act_and_padded_rows_get_no_gradient() {
    let (m, n, k) = (70, 67, 45);
    let buffers = vec![
        BufferDesc::f32("x", m * k),
        BufferDesc::f32("w", k * n),
        BufferDesc::f32("bias", n),
        BufferDesc::f32("y", m * n),
        BufferDesc::f32("y_unfused", m * n),
    ];
    let (x, w, bias, y, y2) = (BufId(0), BufId(1), BufId(2), BufId(3), BufId(4));
    for act in [Act::Relu, Act::Sigmoid, Act::Tanh] {
        let ops = vec![
            Op::MatmulBiasAct {
                x,
                w,
                bias,
                y,
                m,
                n,
                k,
                trans_b: true,
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
                trans_b: true,
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
        let mut cpu = CpuExecutor::<f32>::new(Plan::from_ops(buffers.clone(), ops));
        cpu.write_f32(x, &common::random(m * k, 31, 1.0));
        cpu.write_f32(w, &common::random(k * n, 32, 0.5));
        cpu.write_f32(bias, &common::random(n, 33, 1.0));
        cpu.run(Program::FORWARD_BACKWARD, 1);
        assert_eq!(cpu.read_f32(y), cpu.read_f32(y2), "{act:?}");
    }
    // The table's loss case: batch 2 of 90 samples in batches of 37 holds 16 real rows of 53.
    let case = cases::all(Depth::Quick)
        .into_iter()
        .find(|c| c.family == "loss")
        .expect("a loss case");
    let mut cpu = CpuExecutor::<f32>::new(case.plan.clone());
    (case.drive)(&mut cpu);
    for (i, b) in case.plan.buffers.iter().enumerate() {
        if b.name.starts_with("grad_") {
            let grad = cpu.read_f32(BufId(i));
            assert!(grad[16 * 53..].iter().all(|g| *g == 0.0), "{}", b.name);
            assert!(grad[..16 * 53].iter().all(|g| *g != 0.0), "{}", b.name);
        }
    }
}

/// Runs `ops` over `buffers` on both backends after writing `floats`, every GPU matmul on `matmul`.
fn run_both_with<'a>(
    ctx: &'a gpu_ae::backend::gpu::GpuContext,
    matmul: MatmulChoice,
    buffers: Vec<BufferDesc>,
    ops: Vec<Op>,
    floats: &[(usize, Vec<f32>)],
) -> (CpuExecutor, GpuExecutor<'a>) {
    let plan = Plan::from_ops(buffers, ops);
    let mut cpu = CpuExecutor::<f32>::new(plan.clone());
    let mut gpu = GpuExecutor::with_matmul(ctx, plan, matmul).expect("plan fits the adapter");
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        for (id, data) in floats {
            ex.write_f32(BufId(*id), data);
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
        precision: gpu_ae::plan::Precision::F32,
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
    let (mut cpu, mut gpu) = run_both_with(&ctx, MatmulChoice::Tune, buffers, vec![op], &inputs);
    compare(
        &format!("tuned matmul_bias_act on {:?}", kernels[0]),
        &mut cpu,
        &mut gpu,
        3,
        REL,
    );
}
