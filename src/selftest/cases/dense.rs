//! Dense-layer kernels: every matmul kernel in every transpose form (and accumulating), the fused dense
//! forward with every activation, bias and activation on their own, the bias gradient.

use super::{Case, Kernels, Ops};
use crate::backend::gpu::MatmulChoice;
use crate::ops::{Act, Op};
use crate::selftest::inputs::random;

pub const ACTS: [Act; 5] = [
    Act::Identity,
    Act::Relu,
    Act::LeakyRelu,
    Act::Sigmoid,
    Act::Tanh,
];

/// Every kernel the autotuner may pick ([`crate::backend::gpu::matmul_candidates`]) and what `auto`
/// picks by shape, each with sizes that make it do what it is named for: split-K into exactly N
/// slices (k = 32N − 5, the last slice short), the vec4 loads on sizes whose rows hold whole vec4s.
fn kernels() -> Vec<(MatmulChoice, (usize, usize, usize))> {
    let split = |n: usize| (MatmulChoice::SplitK(n), (37, 53, 32 * n - 5));
    vec![
        (MatmulChoice::Auto, (37, 53, 29)),
        (MatmulChoice::Tile64, (37, 53, 29)),
        (MatmulChoice::Tile128, (37, 53, 29)),
        (MatmulChoice::Tile128Vec4, (68, 36, 44)),
        split(2),
        split(4),
        split(8),
        split(16),
    ]
}

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (kernel, (m, n, k)) in kernels() {
        cases.push(matmul_forms(kernel, m, n, k, true));
    }
    // Across the edges of both tile sizes and of split-K's slices.
    for kernel in [
        MatmulChoice::Tile64,
        MatmulChoice::Tile128,
        MatmulChoice::SplitK(3),
    ] {
        for (m, n, k) in [
            (1, 1, 1),
            (65, 129, 17),
            (128, 67, 200),
            (3, 300, 5),
            (130, 257, 35),
        ] {
            cases.push(matmul_forms(kernel, m, n, k, false));
        }
    }
    cases.push(matmul_forms(MatmulChoice::Tile128Vec4, 132, 260, 36, false));
    cases.push(bias_act(true));
    cases.push(bias_grad());
    cases
}

/// C = op(A)·op(B) in all four transpose forms, plain and accumulating, and the fused dense forward
/// act(x·op(w) + bias) for every activation (both weight layouts), all on `kernel`.
fn matmul_forms(kernel: MatmulChoice, m: usize, n: usize, k: usize, quick: bool) -> Case {
    let mut b = Ops::new();
    let seed = (m * 1000 + n * 10 + k) as u64;
    let a = b.input("a", random(m * k, seed, 1.0));
    let bm = b.input("b", random(k * n, seed + 1, 1.0));
    let init = random(m * n, seed + 2, 1.0);
    for trans_a in [false, true] {
        for trans_b in [false, true] {
            for accumulate in [false, true] {
                let name = format!(
                    "c{}{}{}",
                    if trans_a { "_ta" } else { "" },
                    if trans_b { "_tb" } else { "" },
                    if accumulate { "_acc" } else { "" }
                );
                let c = if accumulate {
                    b.input(&name, init.clone())
                } else {
                    b.out(&name, m * n)
                };
                b.op(Op::Matmul {
                    a,
                    b: bm,
                    c,
                    m,
                    n,
                    k,
                    trans_a,
                    trans_b,
                    accumulate,
                });
            }
        }
    }
    let bias = b.input("bias", random(n, seed + 3, 1.0));
    for (i, act) in ACTS.into_iter().enumerate() {
        let trans_b = i % 2 == 1;
        let y = b.out(&format!("y_{}", act.name()), m * n);
        b.op(Op::MatmulBiasAct {
            x: a,
            w: bm,
            bias,
            y,
            m,
            n,
            k,
            trans_b,
            act,
        });
    }
    b.kernels(Kernels::matmul(kernel));
    b.case(
        "matmul",
        format!("{m}×{k}·{k}×{n}, every transpose form, += and bias + every activation"),
        quick,
    )
}

/// y = act(y + bias[c]) on [13, 7, 9], then grad ⊙ act'(y), for every activation.
fn bias_act(quick: bool) -> Case {
    let (rows, channels, inner) = (13, 7, 9);
    let len = rows * channels * inner;
    let mut b = Ops::new();
    let bias = b.input("bias", random(channels, 7, 1.0));
    for (i, act) in ACTS.into_iter().enumerate() {
        let y = b.input(&format!("y_{}", act.name()), random(len, 6 + i as u64, 3.0));
        let grad = b.input(&format!("grad_{}", act.name()), random(len, 8, 1.0));
        b.op(Op::BiasAct {
            y,
            bias,
            rows,
            channels,
            inner,
            act,
        });
        b.op(Op::ActBackward { y, grad, len, act });
    }
    b.case(
        "activation",
        format!("bias_act and act_backward on {rows}×{channels}×{inner}, every activation"),
        quick,
    )
}

/// db[c] = Σ grad over rows and inner: dense (inner 1) across 32-channel workgroups and fewer rows than
/// lanes; convolutional (inner > 1).
fn bias_grad() -> Case {
    let mut b = Ops::new();
    for (i, (rows, channels, inner)) in [(37, 53, 1), (19, 5, 49), (300, 3, 1), (5, 70, 1)]
        .into_iter()
        .enumerate()
    {
        let grad = b.input(
            &format!("grad_{rows}x{channels}x{inner}"),
            random(rows * channels * inner, 9 + i as u64, 1.0),
        );
        let db = b.out(&format!("db_{rows}x{channels}x{inner}"), channels);
        b.op(Op::BiasGrad {
            grad,
            db,
            rows,
            channels,
            inner,
        });
    }
    b.case(
        "bias",
        "bias_grad on 37×53×1, 19×5×49, 300×3×1, 5×70×1".into(),
        true,
    )
}
