//! The optimizers beyond Adam and SGD, and the learning-rate schedule, against PyTorch's update rules
//! written out for one scalar (torch.optim.AdamW, RMSprop, Adagrad; StepLR, CosineAnnealingLR with a
//! linear warm-up): the CPU twins in f64 exactly, the GPU kernels within f32 rounding.

mod common;

use common::gpu;
use gpu_ae::backend::cpu::kernels;
use gpu_ae::backend::cpu::optim::{adagrad, rmsprop};
use gpu_ae::backend::gpu::GpuExecutor;
use gpu_ae::backend::{Executor, Program};
use gpu_ae::ops::optim::{AdagradHyper, Decay, LrSchedule, RmspropHyper};
use gpu_ae::ops::{AdamHyper, BufId, Op, OptimOp, Scalar, state};
use gpu_ae::plan::{BufferDesc, Plan};
use gpu_ae::rng::{SplitMix64, purpose};

fn fixture(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::stream(seed, purpose::TEST_FIXTURE, len as u64);
    (0..len).map(|_| rng.next_f64() * 2.0 - 1.0).collect()
}

/// torch.optim.AdamW for one scalar: p ← p·(1 − lr·wd), then Adam without weight decay.
fn adamw_reference(p: f64, g: f64, m: &mut f64, v: &mut f64, t: i32, h: AdamHyper) -> f64 {
    let (lr, b1, b2, eps, wd) = (
        h.lr as f64,
        h.beta1 as f64,
        h.beta2 as f64,
        h.eps as f64,
        h.weight_decay as f64,
    );
    let p = p * (1.0 - lr * wd);
    *m = b1 * *m + (1.0 - b1) * g;
    *v = b2 * *v + (1.0 - b2) * g * g;
    let (m_hat, v_hat) = (*m / (1.0 - b1.powi(t)), *v / (1.0 - b2.powi(t)));
    p - lr * m_hat / (v_hat.sqrt() + eps)
}

/// torch.optim.RMSprop (no momentum, not centered) for one scalar.
fn rmsprop_reference(p: f64, g: f64, avg: &mut f64, h: RmspropHyper) -> f64 {
    let g = g + h.weight_decay as f64 * p;
    *avg = h.alpha as f64 * *avg + (1.0 - h.alpha as f64) * g * g;
    p - h.lr as f64 * g / (avg.sqrt() + h.eps as f64)
}

/// torch.optim.Adagrad for one scalar at step t (1-based).
fn adagrad_reference(p: f64, g: f64, sum: &mut f64, t: i32, h: AdagradHyper) -> f64 {
    let g = g + h.weight_decay as f64 * p;
    let clr = h.lr as f64 / (1.0 + (t - 1) as f64 * h.lr_decay as f64);
    *sum += g * g;
    p - clr * g / (sum.sqrt() + h.eps as f64)
}

const ADAMW: AdamHyper = AdamHyper {
    lr: 0.01,
    beta1: 0.8,
    beta2: 0.99,
    eps: 1e-8,
    weight_decay: 0.3,
    decoupled: true,
};
const RMSPROP: RmspropHyper = RmspropHyper {
    lr: 0.01,
    alpha: 0.9,
    eps: 1e-8,
    weight_decay: 0.05,
};
const ADAGRAD: AdagradHyper = AdagradHyper {
    lr: 0.05,
    lr_decay: 0.2,
    eps: 1e-10,
    weight_decay: 0.05,
};

/// The reference parameters of every optimizer after `steps` steps from `start` with gradients
/// fixture(len, 100 + t).
fn references(start: &[f64], steps: i32) -> [Vec<f64>; 3] {
    let mut out = [start.to_vec(), start.to_vec(), start.to_vec()];
    let n = start.len();
    let (mut m, mut v, mut avg, mut sum) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    for t in 1..=steps {
        let grad = fixture(n, 100 + t as u64);
        for i in 0..n {
            out[0][i] = adamw_reference(out[0][i], grad[i], &mut m[i], &mut v[i], t, ADAMW);
            out[1][i] = rmsprop_reference(out[1][i], grad[i], &mut avg[i], RMSPROP);
            out[2][i] = adagrad_reference(out[2][i], grad[i], &mut sum[i], t, ADAGRAD);
        }
    }
    out
}

#[test]
fn cpu_twins_match_pytorch_s_rules_in_f64() {
    let n = 7;
    let start = fixture(n, 41);
    let want = references(&start, 4);
    let mut got = [start.clone(), start.clone(), start.clone()];
    let (mut m, mut v, mut avg, mut sum) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    for t in 1..=4u32 {
        let grad = fixture(n, 100 + t as u64);
        kernels::adam(&mut got[0], &grad, &mut m, &mut v, t, ADAMW);
        rmsprop(&mut got[1], &grad, &mut avg, RMSPROP, RMSPROP.lr);
        adagrad(&mut got[2], &grad, &mut sum, ADAGRAD, ADAGRAD.lr, t);
    }
    for (name, (g, w)) in ["adamw", "rmsprop", "adagrad"]
        .iter()
        .zip(got.iter().zip(&want))
    {
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!((a - b).abs() <= 1e-12, "{name} parameter {i}: {a} vs {b}");
        }
        assert!(g.iter().zip(&start).all(|(a, s)| a != s), "{name} moved");
    }
}

#[test]
fn gpu_kernels_match_pytorch_s_rules() {
    let Some(ctx) = gpu() else { return };
    let n = 300;
    let steps = 4;
    let start = fixture(n, 41);
    let want = references(&start, steps);
    let names = [
        "adamw", "m", "v", "rmsprop", "avg", "adagrad", "sum", "grad", "state", "scalars",
    ];
    let id = |name: &str| BufId(names.iter().position(|n| *n == name).unwrap());
    let buffers = names
        .iter()
        .map(|&n_| match n_ {
            "state" => BufferDesc::u32(n_, state::LEN),
            "scalars" => BufferDesc::f32(n_, 1),
            _ => BufferDesc::f32(n_, n),
        })
        .collect();
    // A constant schedule: its multiplier must be exactly 1.
    let unit = Scalar {
        buf: id("scalars"),
        index: 0,
    };
    let scale = Some(unit);
    let ops = vec![
        Op::Optim(OptimOp::LrSchedule {
            scale: unit,
            state: id("state"),
            step_word: state::GLOBAL_STEP,
            schedule: LrSchedule {
                warmup: 0,
                decay: Decay::Constant,
            },
        }),
        Op::Adam {
            param: id("adamw"),
            grad: id("grad"),
            m: id("m"),
            v: id("v"),
            state: id("state"),
            step_word: state::GLOBAL_STEP,
            len: n,
            hyper: ADAMW,
            lr_scale: scale,
        },
        Op::Optim(OptimOp::Rmsprop {
            param: id("rmsprop"),
            grad: id("grad"),
            square_avg: id("avg"),
            len: n,
            hyper: RMSPROP,
            lr_scale: scale,
        }),
        Op::Optim(OptimOp::Adagrad {
            param: id("adagrad"),
            grad: id("grad"),
            sum: id("sum"),
            state: id("state"),
            step_word: state::GLOBAL_STEP,
            len: n,
            hyper: ADAGRAD,
            lr_scale: scale,
        }),
        Op::AdvanceStep { state: id("state") },
    ];
    let mut ex = GpuExecutor::new(&ctx, Plan::from_ops(buffers, ops)).unwrap();
    let start32: Vec<f32> = start.iter().map(|&v| v as f32).collect();
    for p in ["adamw", "rmsprop", "adagrad"] {
        ex.write_f32(id(p), &start32);
    }
    ex.write_f32(id("scalars"), &[0.25]);
    for t in 1..=steps {
        let grad: Vec<f32> = fixture(n, 100 + t as u64)
            .iter()
            .map(|&v| v as f32)
            .collect();
        ex.write_f32(id("grad"), &grad);
        ex.run(Program::FORWARD_BACKWARD, 1);
    }
    assert_eq!(ex.read_f32(id("scalars")), vec![1.0]);
    for (name, w) in ["adamw", "rmsprop", "adagrad"].iter().zip(&want) {
        let got = ex.read_f32(id(name));
        for (i, (a, b)) in got.iter().zip(w).enumerate() {
            assert!(
                (*a as f64 - b).abs() <= 2e-6 * b.abs().max(1.0),
                "{name} parameter {i}: {a} vs {b}"
            );
        }
    }
}

/// The schedule's multiplier step by step: linear warm-up to 1, then StepLR's powers of γ or a cosine
/// to 0 at the last step, computed the same by the CPU twin (f64 here) and the kernel.
#[test]
fn schedules_warm_up_and_decay_as_pytorch_s() {
    let step = LrSchedule {
        warmup: 0,
        decay: Decay::Step {
            every: 3,
            gamma: 0.5,
        },
    };
    let scales: Vec<f64> = (0..7).map(|t| step.scale(t)).collect();
    assert_eq!(scales, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]);
    let cosine = LrSchedule {
        warmup: 4,
        decay: Decay::Cosine { total: 12 },
    };
    let warm: Vec<f64> = (0..4).map(|t| cosine.scale(t)).collect();
    assert_eq!(warm, [0.25, 0.5, 0.75, 1.0]);
    // After the warm-up: CosineAnnealingLR over the remaining 8 steps, η_min 0.
    for t in 4..=14 {
        let k = (t - 4).min(8) as f64;
        let want = 0.5 * (1.0 + (std::f64::consts::PI * k / 8.0).cos());
        assert!((cosine.scale(t) - want).abs() < 1e-12, "step {t}");
    }
    assert!(cosine.scale(12).abs() < 1e-12 && cosine.scale(20).abs() < 1e-12);

    let Some(ctx) = gpu() else { return };
    for schedule in [step, cosine] {
        let buffers = vec![
            BufferDesc::f32("scalars", 1),
            BufferDesc::u32("state", state::LEN),
        ];
        let ops = vec![
            Op::Optim(OptimOp::LrSchedule {
                scale: Scalar {
                    buf: BufId(0),
                    index: 0,
                },
                state: BufId(1),
                step_word: state::GLOBAL_STEP,
                schedule,
            }),
            Op::AdvanceStep { state: BufId(1) },
        ];
        let mut ex = GpuExecutor::new(&ctx, Plan::from_ops(buffers, ops)).unwrap();
        for t in 0..14 {
            ex.run(Program::FORWARD_BACKWARD, 1);
            let got = ex.read_f32(BufId(0))[0] as f64;
            assert!(
                (got - schedule.scale(t)).abs() < 1e-6,
                "{schedule:?} step {t}: {got}"
            );
        }
    }
}
