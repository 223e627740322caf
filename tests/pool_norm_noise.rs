//! Pooling, upsampling, BatchNorm2d and corruption noise: finite-difference gradient checks of the CPU twins
//! in f64, GPU-versus-CPU parity on odd-sized NCHW inputs (7×9 planes, which pooling floors), and the
//! statistics and determinism of the counter-hash noise.

mod common;

use common::{assert_close, gpu, random};
use gpu_ae::backend::cpu::CpuExecutor;
use gpu_ae::backend::gpu::{GpuContext, GpuExecutor};
use gpu_ae::backend::{Executor, Program};
use gpu_ae::ops::{BufId, Noise, Op, state};
use gpu_ae::plan::{BufferDesc, Plan};

const REL: f32 = 1e-4;
const H: f64 = 1e-6;
const BATCH: usize = 3;
const CHANNELS: usize = 5;
const IN_H: usize = 7;
const IN_W: usize = 9;
const PLANES: usize = BATCH * CHANNELS;
const FULL: usize = PLANES * IN_H * IN_W;
const POOLED: usize = PLANES * (IN_H / 2) * (IN_W / 2);

/// Runs `ops` once on both backends after writing `floats` and `words`.
fn run_both<'a>(
    ctx: &'a GpuContext,
    buffers: Vec<BufferDesc>,
    ops: Vec<Op>,
    floats: &[(usize, Vec<f32>)],
    words: &[(usize, Vec<u32>)],
) -> (CpuExecutor, GpuExecutor<'a>) {
    let plan = Plan::from_ops(buffers, ops);
    let mut cpu = CpuExecutor::<f32>::new(plan.clone());
    let mut gpu = GpuExecutor::new(ctx, plan).expect("plan fits the adapter");
    for ex in [&mut cpu as &mut dyn Executor, &mut gpu] {
        write_all(ex, floats, words);
        ex.run(Program::FORWARD_BACKWARD, 1);
    }
    (cpu, gpu)
}

fn write_all(ex: &mut dyn Executor, floats: &[(usize, Vec<f32>)], words: &[(usize, Vec<u32>)]) {
    for (id, data) in floats {
        ex.write_f32(BufId(*id), data);
    }
    for (id, data) in words {
        ex.write_u32(BufId(*id), data);
    }
}

fn compare(what: &str, cpu: &mut CpuExecutor, gpu: &mut GpuExecutor, id: usize) {
    assert_close(
        what,
        &gpu.read_f32(BufId(id)),
        &cpu.read_f32(BufId(id)),
        REL,
    );
}

/// `len` distinct values in (0, 1], at least 1/len apart, in a seeded order: a max-pool input without ties.
fn distinct(len: usize, seed: u64) -> Vec<f32> {
    gpu_ae::rng::epoch_permutation(len, seed, 0)
        .iter()
        .map(|&p| (p + 1) as f32 / len as f32)
        .collect()
}

/// Central differences of L = Σ_{i < limit} dy[i]·y[i] with respect to every element of buffer `wrt`, compared
/// with the analytic gradient the plan's backward op writes to `grad`. Runs in f64 on the CPU twins.
#[allow(clippy::too_many_arguments)]
fn check_gradient(
    what: &str,
    plan: &Plan,
    floats: &[(usize, Vec<f32>)],
    words: &[(usize, Vec<u32>)],
    (y, dy, limit): (usize, usize, usize),
    wrt: usize,
    grad: usize,
) {
    let mut ex = CpuExecutor::<f64>::new(plan.clone());
    write_all(&mut ex, floats, words);
    ex.run(Program::FORWARD_BACKWARD, 1);
    let analytic = ex.floats(BufId(grad)).to_vec();
    let loss = |ex: &mut CpuExecutor<f64>| {
        ex.run(Program::FORWARD_BACKWARD, 1);
        let (y, dy) = (ex.floats(BufId(y)), ex.floats(BufId(dy)));
        (0..limit).map(|i| y[i] * dy[i]).sum::<f64>()
    };
    for (i, &want) in analytic.iter().enumerate() {
        let original = ex.floats(BufId(wrt))[i];
        ex.floats_mut(BufId(wrt))[i] = original + H;
        let plus = loss(&mut ex);
        ex.floats_mut(BufId(wrt))[i] = original - H;
        let minus = loss(&mut ex);
        ex.floats_mut(BufId(wrt))[i] = original;
        let numeric = (plus - minus) / (2.0 * H);
        let err = (numeric - want).abs();
        assert!(
            err <= 1e-6 * want.abs().max(1.0),
            "{what}: element {i}: analytic {want} vs numeric {numeric}"
        );
    }
    assert!(
        analytic.iter().filter(|g| **g != 0.0).count() > analytic.len() / 10,
        "{what}: the gradient is almost all zero"
    );
}

fn max_pool(x: usize, y: usize, argmax: usize) -> Op {
    Op::MaxPool2x2 {
        x: BufId(x),
        y: BufId(y),
        argmax: BufId(argmax),
        batch: BATCH,
        channels: CHANNELS,
        in_h: IN_H,
        in_w: IN_W,
    }
}

#[test]
fn max_pool_grad_matches_finite_difference() {
    // 0 x, 1 y, 2 argmax, 3 dy, 4 dx
    let buffers = vec![
        BufferDesc::f32("x", FULL),
        BufferDesc::f32("y", POOLED),
        BufferDesc::u32("argmax", POOLED),
        BufferDesc::f32("dy", POOLED),
        BufferDesc::f32("dx", FULL),
    ];
    let ops = vec![
        max_pool(0, 1, 2),
        Op::MaxPool2x2Backward {
            dy: BufId(3),
            argmax: BufId(2),
            dx: BufId(4),
            batch: BATCH,
            channels: CHANNELS,
            in_h: IN_H,
            in_w: IN_W,
        },
    ];
    let plan = Plan::from_ops(buffers, ops);
    let floats = [(0, distinct(FULL, 1)), (3, random(POOLED, 2, 1.0))];
    check_gradient("max_pool2x2 dx", &plan, &floats, &[], (1, 3, POOLED), 0, 4);
}

#[test]
fn max_unpool_grad_matches_finite_difference() {
    // 0 z (pooled to make the argmax), 1 pooled z, 2 argmax, 3 x, 4 y, 5 dy, 6 dx
    let buffers = vec![
        BufferDesc::f32("z", FULL),
        BufferDesc::f32("pooled", POOLED),
        BufferDesc::u32("argmax", POOLED),
        BufferDesc::f32("x", POOLED),
        BufferDesc::f32("y", FULL),
        BufferDesc::f32("dy", FULL),
        BufferDesc::f32("dx", POOLED),
    ];
    let sizes = (BATCH, CHANNELS, IN_H, IN_W);
    let (batch, channels, out_h, out_w) = sizes;
    let ops = vec![
        max_pool(0, 1, 2),
        Op::MaxUnpool2x2 {
            x: BufId(3),
            argmax: BufId(2),
            y: BufId(4),
            batch,
            channels,
            out_h,
            out_w,
        },
        Op::MaxUnpool2x2Backward {
            dy: BufId(5),
            argmax: BufId(2),
            dx: BufId(6),
            batch,
            channels,
            out_h,
            out_w,
        },
    ];
    let plan = Plan::from_ops(buffers, ops);
    let floats = [
        (0, distinct(FULL, 3)),
        (3, random(POOLED, 4, 1.0)),
        (5, random(FULL, 5, 1.0)),
    ];
    check_gradient("max_unpool2x2 dx", &plan, &floats, &[], (4, 5, FULL), 3, 6);
}

#[test]
fn upsample_grad_matches_finite_difference() {
    for factor in [2, 3] {
        let (small, large) = (PLANES * 4 * 5, PLANES * 4 * 5 * factor * factor);
        let buffers = vec![
            BufferDesc::f32("x", small),
            BufferDesc::f32("y", large),
            BufferDesc::f32("dy", large),
            BufferDesc::f32("dx", small),
        ];
        let ops = vec![
            Op::UpsampleNearest {
                x: BufId(0),
                y: BufId(1),
                batch: BATCH,
                channels: CHANNELS,
                in_h: 4,
                in_w: 5,
                factor,
            },
            Op::UpsampleNearestBackward {
                dy: BufId(2),
                dx: BufId(3),
                batch: BATCH,
                channels: CHANNELS,
                in_h: 4,
                in_w: 5,
                factor,
            },
        ];
        let plan = Plan::from_ops(buffers, ops);
        let floats = [(0, random(small, 6, 1.0)), (2, random(large, 7, 1.0))];
        check_gradient(
            &format!("upsample ×{factor} dx"),
            &plan,
            &floats,
            &[],
            (1, 2, large),
            0,
            3,
        );
    }
}

/// Buffers 0 x, 1 y, 2 gamma, 3 beta, 4 mean, 5 inv_std, 6 running_mean, 7 running_var, 8 state, 9 dy, 10 dx,
/// 11 dgamma, 12 dbeta; ops: BatchNorm2d then (in training) its backward.
fn batch_norm_fixture(
    batch: usize,
    channels: usize,
    inner: usize,
    samples: usize,
    training: bool,
) -> (Plan, Vec<(usize, Vec<f32>)>) {
    let len = batch * channels * inner;
    let buffers = vec![
        BufferDesc::f32("x", len),
        BufferDesc::f32("y", len),
        BufferDesc::f32("gamma", channels),
        BufferDesc::f32("beta", channels),
        BufferDesc::f32("mean", channels),
        BufferDesc::f32("inv_std", channels),
        BufferDesc::f32("running_mean", channels),
        BufferDesc::f32("running_var", channels),
        BufferDesc::u32("state", state::LEN),
        BufferDesc::f32("dy", len),
        BufferDesc::f32("dx", len),
        BufferDesc::f32("dgamma", channels),
        BufferDesc::f32("dbeta", channels),
    ];
    let b = BufId;
    let mut ops = vec![Op::BatchNorm2d {
        x: b(0),
        y: b(1),
        gamma: b(2),
        beta: b(3),
        mean: b(4),
        inv_std: b(5),
        running_mean: b(6),
        running_var: b(7),
        state: b(8),
        batch,
        channels,
        inner,
        samples,
        momentum: 0.1,
        eps: 1e-5,
        training,
    }];
    if training {
        ops.push(Op::BatchNorm2dBackward {
            x: b(0),
            dy: b(9),
            dx: b(10),
            gamma: b(2),
            dgamma: b(11),
            dbeta: b(12),
            mean: b(4),
            inv_std: b(5),
            state: b(8),
            batch,
            channels,
            inner,
            samples,
        });
    }
    // Inputs with a per-channel offset, so the mean matters; running variance positive.
    let x: Vec<f32> = random(len, 8, 1.0)
        .iter()
        .enumerate()
        .map(|(i, v)| v + ((i / inner) % channels) as f32 * 0.5)
        .collect();
    let running_var = random(channels, 13, 1.0)
        .iter()
        .map(|v| v.abs() + 0.5)
        .collect();
    let floats = vec![
        (0, x),
        (2, random(channels, 9, 1.0)),
        (3, random(channels, 10, 1.0)),
        (6, random(channels, 12, 1.0)),
        (7, running_var),
        (9, random(len, 11, 1.0)),
    ];
    (Plan::from_ops(buffers, ops), floats)
}

#[test]
fn batch_norm_grad_matches_finite_difference_on_a_partial_batch() {
    // Batch index 1 of a 5-sample set with batch 3: rows 0 and 1 are real, row 2 is padding.
    let (batch, channels, inner, samples) = (3, 3, 5 * 7, 5);
    let (plan, floats) = batch_norm_fixture(batch, channels, inner, samples, true);
    let words = [(8, vec![0, 1, 0, 0])];
    let valid_len = 2 * channels * inner;
    let loss = (1, 9, valid_len);
    check_gradient("batch_norm2d dx", &plan, &floats, &words, loss, 0, 10);
    check_gradient("batch_norm2d dgamma", &plan, &floats, &words, loss, 2, 11);
    check_gradient("batch_norm2d dbeta", &plan, &floats, &words, loss, 3, 12);
    // The padded row gets no gradient, and its zeros would have moved the statistics had they counted.
    let mut ex = CpuExecutor::<f64>::new(plan.clone());
    write_all(&mut ex, &floats, &words);
    ex.run(Program::FORWARD_BACKWARD, 1);
    assert!(ex.floats(BufId(10))[valid_len..].iter().all(|g| *g == 0.0));
    let x = ex.floats(BufId(0));
    let mean0: f64 = (0..2)
        .flat_map(|r| x[r * channels * inner..r * channels * inner + inner].to_vec())
        .sum::<f64>()
        / (2 * inner) as f64;
    assert!(
        (ex.floats(BufId(4))[0] - mean0).abs() < 1e-12,
        "the mean is over the valid rows only"
    );
}

#[test]
fn pooling_and_upsampling_match_cpu_with_exact_argmax() {
    let Some(ctx) = gpu() else { return };
    let (up_small, up_large) = (PLANES * 4 * 5, PLANES * 12 * 15);
    // Inputs quantised to six levels, so most windows hold ties: both backends must pick the same first max.
    let tied: Vec<f32> = random(FULL, 20, 1.0)
        .iter()
        .map(|v| (v * 3.0).round().clamp(-3.0, 3.0) / 3.0 + 0.1)
        .collect();
    for (name, x) in [("distinct", random(FULL, 21, 1.0)), ("tied", tied)] {
        let buffers = vec![
            BufferDesc::f32("x", FULL),          // 0
            BufferDesc::f32("y", POOLED),        // 1
            BufferDesc::u32("argmax", POOLED),   // 2
            BufferDesc::f32("dy", POOLED),       // 3
            BufferDesc::f32("dx", FULL),         // 4
            BufferDesc::f32("unpooled", FULL),   // 5
            BufferDesc::f32("dunpooled", FULL),  // 6
            BufferDesc::f32("dpooled", POOLED),  // 7
            BufferDesc::f32("small", up_small),  // 8
            BufferDesc::f32("up", up_large),     // 9
            BufferDesc::f32("dup", up_large),    // 10
            BufferDesc::f32("dsmall", up_small), // 11
        ];
        let (batch, channels) = (BATCH, CHANNELS);
        let ops = vec![
            max_pool(0, 1, 2),
            Op::MaxPool2x2Backward {
                dy: BufId(3),
                argmax: BufId(2),
                dx: BufId(4),
                batch,
                channels,
                in_h: IN_H,
                in_w: IN_W,
            },
            Op::MaxUnpool2x2 {
                x: BufId(3),
                argmax: BufId(2),
                y: BufId(5),
                batch,
                channels,
                out_h: IN_H,
                out_w: IN_W,
            },
            Op::MaxUnpool2x2Backward {
                dy: BufId(6),
                argmax: BufId(2),
                dx: BufId(7),
                batch,
                channels,
                out_h: IN_H,
                out_w: IN_W,
            },
            Op::UpsampleNearest {
                x: BufId(8),
                y: BufId(9),
                batch,
                channels,
                in_h: 4,
                in_w: 5,
                factor: 3,
            },
            Op::UpsampleNearestBackward {
                dy: BufId(10),
                dx: BufId(11),
                batch,
                channels,
                in_h: 4,
                in_w: 5,
                factor: 3,
            },
        ];
        let floats = [
            (0, x.clone()),
            (3, random(POOLED, 22, 1.0)),
            (6, random(FULL, 23, 1.0)),
            (8, random(up_small, 24, 1.0)),
            (10, random(up_large, 25, 1.0)),
        ];
        let (mut cpu, mut gpu) = run_both(&ctx, buffers, ops, &floats, &[]);
        let argmax = cpu.read_u32(BufId(2));
        assert_eq!(gpu.read_u32(BufId(2)), argmax, "{name}: argmax");
        // The CPU argmax is the first max of its window, read row-major.
        for (k, &a) in argmax.iter().enumerate() {
            let (plane, i, j) = (k / 12, (k % 12) / 4, k % 4);
            let base = plane * IN_H * IN_W;
            let window = [
                2 * i * IN_W + 2 * j,
                2 * i * IN_W + 2 * j + 1,
                (2 * i + 1) * IN_W + 2 * j,
                (2 * i + 1) * IN_W + 2 * j + 1,
            ];
            let best = window.iter().map(|&p| x[base + p]).fold(f32::MIN, f32::max);
            let first = window.iter().find(|&&p| x[base + p] == best).copied();
            assert_eq!(Some(a as usize), first, "{name}: window {k}");
        }
        for (id, what) in [
            (1, "max_pool2x2"),
            (4, "max_pool2x2_backward"),
            (5, "max_unpool2x2"),
            (7, "max_unpool2x2_backward"),
        ] {
            compare(&format!("{name}: {what}"), &mut cpu, &mut gpu, id);
        }
        compare("upsample_nearest", &mut cpu, &mut gpu, 9);
        compare("upsample_nearest_backward", &mut cpu, &mut gpu, 11);
        // Odd sizes floor: the last row and column of each 7×9 plane get no gradient and stay zero unpooled.
        let dx = gpu.read_f32(BufId(4));
        assert!((0..PLANES).all(|p| (0..IN_W).all(|w| dx[p * IN_H * IN_W + 6 * IN_W + w] == 0.0)));
        assert!((0..PLANES * IN_H).all(|r| dx[r * IN_W + 8] == 0.0));
    }
}

#[test]
fn batch_norm_eval_uses_running_stats_and_matches_cpu() {
    let Some(ctx) = gpu() else { return };
    let (batch, channels, inner) = (3, 5, 63);
    let (plan, floats) = batch_norm_fixture(batch, channels, inner, 3, false);
    let (mut cpu, mut gpu) = run_both(
        &ctx,
        plan.buffers.clone(),
        plan.segment("forward_backward").to_vec(),
        &floats,
        &[],
    );
    compare("batch_norm2d eval y", &mut cpu, &mut gpu, 1);
    // Eval writes nothing but y: the saved statistics stay zero, the running ones unchanged.
    assert!(gpu.read_f32(BufId(4)).iter().all(|v| *v == 0.0));
    assert_eq!(gpu.read_f32(BufId(7)), floats[4].1);
    let y = cpu.read_f32(BufId(1));
    let (x, gamma, beta, rm, rv) = (
        &floats[0].1,
        &floats[1].1,
        &floats[2].1,
        &floats[3].1,
        &floats[4].1,
    );
    let c = 2;
    let i = (batch - 1) * channels * inner + c * inner + 5;
    let want = gamma[c] * (x[i] - rm[c]) / (rv[c] + 1e-5).sqrt() + beta[c];
    assert!((y[i] - want).abs() < 1e-5, "eval y {} vs {want}", y[i]);
}

const NOISE_LEN: usize = 100_003;

/// Corrupts `x` at global step `step` on the CPU (f32) and, when given, the GPU; returns (cpu, gpu) outputs.
fn corrupt(
    ctx: Option<&GpuContext>,
    x: &[f32],
    noise: Noise,
    seed: u32,
    stream: u32,
    step: u32,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let len = x.len();
    let buffers = vec![
        BufferDesc::f32("x", len),
        BufferDesc::f32("y", len),
        BufferDesc::u32("state", state::LEN),
        BufferDesc::f32("mask", len),
    ];
    let ops = vec![Op::Corrupt {
        x: BufId(0),
        y: BufId(1),
        mask: Some(BufId(3)),
        state: BufId(2),
        len,
        image: [1, len],
        noise,
        seed,
        stream,
    }];
    let plan = Plan::from_ops(buffers, ops);
    let run = |ex: &mut dyn Executor| {
        ex.write_f32(BufId(0), x);
        ex.write_u32(BufId(2), &[step, 7, 0, 0]);
        ex.run(Program::FORWARD_BACKWARD, 1);
        (ex.read_f32(BufId(1)), ex.read_f32(BufId(3)))
    };
    let (cpu, cpu_mask) = run(&mut CpuExecutor::<f32>::new(plan.clone()));
    // The mask marks exactly the elements the noise chose: every element it leaves at 0 is untouched,
    // and Mask / SaltPepper choose about their fraction.
    for ((y, x), m) in cpu.iter().zip(x).zip(&cpu_mask) {
        assert!(*m == 0.0 || *m == 1.0, "mask values are 0 or 1");
        if *m == 0.0 {
            assert_eq!(y, x, "an element the mask leaves out is unchanged");
        }
    }
    let chosen = cpu_mask.iter().sum::<f32>() / len as f32;
    match noise {
        Noise::Gaussian { .. } => assert_eq!(chosen, 1.0),
        Noise::Mask { fraction } | Noise::SaltPepper { fraction } => {
            assert!(
                (chosen - fraction).abs() < 0.05 + 3.0 / (len as f32).sqrt(),
                "{chosen} vs {fraction}"
            )
        }
        // Checked by its own test, on images.
        Noise::Square { .. } => {}
    }
    let gpu = ctx.map(|ctx| {
        let (y, mask) = run(&mut GpuExecutor::new(ctx, plan).expect("plan fits the adapter"));
        assert_eq!(mask, cpu_mask, "the GPU chooses the same elements");
        y
    });
    (cpu, gpu)
}

fn positive_inputs(len: usize, seed: u64) -> Vec<f32> {
    random(len, seed, 1.0).iter().map(|v| v.abs()).collect()
}

#[test]
fn noise_is_deterministic_per_step_and_differs_between_steps_streams_and_seeds() {
    let x = positive_inputs(NOISE_LEN, 30);
    let noise = Noise::Mask { fraction: 0.3 };
    let (a, _) = corrupt(None, &x, noise, 11, 0, 5);
    assert_eq!(
        a,
        corrupt(None, &x, noise, 11, 0, 5).0,
        "same seed and step give the same noise"
    );
    for (seed, stream, step) in [(11, 0, 6), (11, 1, 5), (12, 0, 5)] {
        let b = corrupt(None, &x, noise, seed, stream, step).0;
        let differ = a.iter().zip(&b).filter(|(p, q)| p != q).count();
        // Two independent 30% masks differ on 2·0.3·0.7 = 42% of elements.
        assert!(
            (differ as f64 / NOISE_LEN as f64 - 0.42).abs() < 0.02,
            "seed {seed} stream {stream} step {step}: {differ}"
        );
    }
    let gaussian = Noise::Gaussian { sigma: 0.2 };
    assert_eq!(
        corrupt(None, &x, gaussian, 1, 2, 3).0,
        corrupt(None, &x, gaussian, 1, 2, 3).0
    );
    assert_ne!(
        corrupt(None, &x, gaussian, 1, 2, 3).0,
        corrupt(None, &x, gaussian, 1, 2, 4).0
    );
}

#[test]
fn mask_and_salt_pepper_choose_the_same_elements_on_gpu_and_cpu_at_the_requested_rate() {
    let ctx = gpu();
    let x = positive_inputs(NOISE_LEN, 31);
    let n = NOISE_LEN as f64;
    for fraction in [0.1f32, 0.5] {
        let (cpu, gpu) = corrupt(ctx.as_ref(), &x, Noise::Mask { fraction }, 3, 1, 17);
        if let Some(gpu) = gpu {
            assert_eq!(
                gpu, cpu,
                "mask {fraction}: GPU and CPU mask the same elements"
            );
        }
        let masked = cpu
            .iter()
            .zip(&x)
            .filter(|(y, x)| **y == 0.0 && **x != 0.0)
            .count() as f64
            / n;
        assert!(
            (masked - fraction as f64).abs() < 0.01,
            "masked fraction {masked} for ν = {fraction}"
        );
        assert!(cpu.iter().zip(&x).all(|(y, x)| *y == 0.0 || y == x));

        let (cpu, gpu) = corrupt(ctx.as_ref(), &x, Noise::SaltPepper { fraction }, 3, 2, 17);
        if let Some(gpu) = gpu {
            assert_eq!(
                gpu, cpu,
                "salt and pepper {fraction}: GPU and CPU corrupt the same elements"
            );
        }
        let zeros = cpu.iter().filter(|y| **y == 0.0).count() as f64 / n;
        let ones = cpu
            .iter()
            .zip(&x)
            .filter(|(y, x)| **y == 1.0 && **x != 1.0)
            .count() as f64
            / n;
        assert!(
            (zeros - fraction as f64 / 2.0).abs() < 0.01
                && (ones - fraction as f64 / 2.0).abs() < 0.01,
            "0s {zeros}, 1s {ones}"
        );
    }
}

#[test]
fn gaussian_noise_has_the_requested_spread_and_matches_gpu() {
    let ctx = gpu();
    let n = NOISE_LEN as f64;
    // Inputs at 0.5 with σ = 0.08: clipping needs a 6σ draw, so the statistics are those of σ·N(0, 1).
    let sigma = 0.08f32;
    let (cpu, gpu) = corrupt(
        ctx.as_ref(),
        &vec![0.5; NOISE_LEN],
        Noise::Gaussian { sigma },
        9,
        0,
        2,
    );
    for (backend, y) in [("cpu", Some(cpu)), ("gpu", gpu)] {
        let Some(y) = y else { continue };
        let mean = y.iter().map(|v| *v as f64 - 0.5).sum::<f64>() / n;
        let std = (y
            .iter()
            .map(|v| (*v as f64 - 0.5 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        // Standard errors: σ/√n ≈ 2.5e-4 for the mean, σ/√(2n) ≈ 1.8e-4 for the std.
        assert!(
            mean.abs() < 1.5e-3 && (std - sigma as f64).abs() < 1.5e-3,
            "{backend}: mean {mean}, std {std}"
        );
        let beyond = y
            .iter()
            .filter(|v| (**v as f64 - 0.5).abs() > 2.0 * sigma as f64)
            .count() as f64
            / n;
        assert!(
            (beyond - 0.0455).abs() < 0.004,
            "{backend}: {beyond} beyond 2σ"
        );
    }
    // Ordinary inputs with clipping: GPU within 1e-4 of the CPU, every value in [0, 1].
    let x = positive_inputs(NOISE_LEN, 32);
    let (cpu, gpu) = corrupt(ctx.as_ref(), &x, Noise::Gaussian { sigma: 0.3 }, 9, 4, 1234);
    assert!(cpu.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(
        cpu.contains(&0.0) && cpu.contains(&1.0),
        "σ = 0.3 clips some values"
    );
    if let Some(gpu) = gpu {
        assert_close("gaussian corrupt", &gpu, &cpu, REL);
    }
}

/// Square occlusion on awkward images (9 × 11, a 4 × 4 square, 37 samples): each sample loses exactly one
/// 4 × 4 square of pixels, the mask marks it, the GPU hides the same squares, and the squares move between
/// samples (drawn per sample, not once per batch).
#[test]
fn square_occlusion_hides_one_square_per_image_the_same_on_gpu_and_cpu() {
    let ctx = gpu();
    let (h, w, samples, size) = (9usize, 11usize, 37usize, 4u32);
    let len = h * w * samples;
    let x = positive_inputs(len, 33);
    let buffers = vec![
        BufferDesc::f32("x", len),
        BufferDesc::f32("y", len),
        BufferDesc::u32("state", state::LEN),
        BufferDesc::f32("mask", len),
    ];
    let ops = vec![Op::Corrupt {
        x: BufId(0),
        y: BufId(1),
        mask: Some(BufId(3)),
        state: BufId(2),
        len,
        image: [h, w],
        noise: Noise::Square { size },
        seed: 5,
        stream: 0,
    }];
    let plan = Plan::from_ops(buffers, ops);
    let run = |ex: &mut dyn Executor| {
        ex.write_f32(BufId(0), &x);
        ex.write_u32(BufId(2), &[3, 0, 0, 0]);
        ex.run(Program::FORWARD_BACKWARD, 1);
        (ex.read_f32(BufId(1)), ex.read_f32(BufId(3)))
    };
    let (y, mask) = run(&mut CpuExecutor::<f32>::new(plan.clone()));
    let mut corners = std::collections::HashSet::new();
    for s in 0..samples {
        let plane = s * h * w..(s + 1) * h * w;
        let hidden: Vec<usize> = plane
            .clone()
            .filter(|&i| y[i] == 0.0)
            .map(|i| i - plane.start)
            .collect();
        assert_eq!(hidden.len(), 16, "sample {s}: one 4×4 square");
        let (top, left) = (hidden[0] / w, hidden[0] % w);
        for (k, &p) in hidden.iter().enumerate() {
            assert_eq!((p / w, p % w), (top + k / 4, left + k % 4), "sample {s}");
        }
        assert!(top + 4 <= h && left + 4 <= w);
        corners.insert((top, left));
        for i in plane {
            assert_eq!(mask[i] == 1.0, y[i] == 0.0, "the mask marks the square");
            if mask[i] == 0.0 {
                assert_eq!(y[i], x[i]);
            }
        }
    }
    assert!(corners.len() > 10, "squares move: {corners:?}");
    if let Some(ctx) = ctx {
        let (gy, gmask) = run(&mut GpuExecutor::new(&ctx, plan).unwrap());
        assert_eq!(gy, y, "GPU and CPU hide the same squares");
        assert_eq!(gmask, mask);
    }
}
