//! Pooling, unpooling and upsampling on 7×9 planes (which pooling floors), with and without ties in the
//! windows (the argmax compared exactly: both must pick the first max); BatchNorm2d in training (a
//! partial batch, and a full one needing several strides of a workgroup) and in evaluation.

use super::{Case, Ops};
use crate::ops::Op;
use crate::selftest::inputs::{random, state_words};

const BATCH: usize = 3;
const CHANNELS: usize = 5;
const IN_H: usize = 7;
const IN_W: usize = 9;

pub fn cases() -> Vec<Case> {
    let full = BATCH * CHANNELS * IN_H * IN_W;
    // Six levels: most windows hold ties.
    let tied: Vec<f32> = random(full, 20, 1.0)
        .iter()
        .map(|v| (v * 3.0).round().clamp(-3.0, 3.0) / 3.0 + 0.1)
        .collect();
    vec![
        pooling("distinct values", random(full, 21, 1.0), false),
        pooling("tied windows", tied, true),
        batch_norm(3, 5, 63, 5, 1, true, true),
        batch_norm(7, 3, 300, 70, 2, true, false),
        batch_norm(3, 5, 63, 3, 0, false, true),
    ]
}

fn pooling(what: &str, x: Vec<f32>, quick: bool) -> Case {
    let planes = BATCH * CHANNELS;
    let full = planes * IN_H * IN_W;
    let pooled = planes * (IN_H / 2) * (IN_W / 2);
    let (up_small, up_large) = (planes * 4 * 5, planes * 12 * 15);
    let (batch, channels) = (BATCH, CHANNELS);
    let mut b = Ops::new();
    let x = b.input("x", x);
    let y = b.out("y", pooled);
    let argmax = b.exact_out("argmax", pooled);
    let dy = b.input("dy", random(pooled, 22, 1.0));
    let dx = b.out("dx", full);
    let unpooled = b.out("unpooled", full);
    let dunpooled = b.input("dunpooled", random(full, 23, 1.0));
    let dpooled = b.out("dpooled", pooled);
    let small = b.input("small", random(up_small, 24, 1.0));
    let up = b.out("up", up_large);
    let dup = b.input("dup", random(up_large, 25, 1.0));
    let dsmall = b.out("dsmall", up_small);
    let (in_h, in_w) = (IN_H, IN_W);
    b.op(Op::MaxPool2x2 {
        x,
        y,
        argmax,
        batch,
        channels,
        in_h,
        in_w,
    });
    b.op(Op::MaxPool2x2Backward {
        dy,
        argmax,
        dx,
        batch,
        channels,
        in_h,
        in_w,
    });
    b.op(Op::MaxUnpool2x2 {
        x: dy,
        argmax,
        y: unpooled,
        batch,
        channels,
        out_h: in_h,
        out_w: in_w,
    });
    b.op(Op::MaxUnpool2x2Backward {
        dy: dunpooled,
        argmax,
        dx: dpooled,
        batch,
        channels,
        out_h: in_h,
        out_w: in_w,
    });
    b.op(Op::UpsampleNearest {
        x: small,
        y: up,
        batch,
        channels,
        in_h: 4,
        in_w: 5,
        factor: 3,
    });
    b.op(Op::UpsampleNearestBackward {
        dy: dup,
        dx: dsmall,
        batch,
        channels,
        in_h: 4,
        in_w: 5,
        factor: 3,
    });
    b.case(
        "pool",
        format!("max pool, unpool, upsample ×3 on {batch}×{channels}×{in_h}×{in_w}, {what}"),
        quick,
    )
}

/// Buffers 0 x, 1 y, 2 γ, 3 β, 4 mean, 5 inv_std, 6 running_mean, 7 running_var, 8 state, 9 dy, 10 dx,
/// 11 dγ, 12 dβ; BatchNorm2d then, in training, its backward.
fn batch_norm(
    batch: usize,
    channels: usize,
    inner: usize,
    samples: usize,
    batch_index: u32,
    training: bool,
    quick: bool,
) -> Case {
    let len = batch * channels * inner;
    let mut b = Ops::new();
    // A per-channel offset, so the mean matters; the running variance positive.
    let x: Vec<f32> = random(len, 8, 1.0)
        .iter()
        .enumerate()
        .map(|(i, v)| v + ((i / inner) % channels) as f32 * 0.5)
        .collect();
    let x = b.input("x", x);
    let y = b.out("y", len);
    let gamma = b.input("gamma", random(channels, 9, 1.0));
    let beta = b.input("beta", random(channels, 10, 1.0));
    let mean = b.out("mean", channels);
    let inv_std = b.out("inv_std", channels);
    let running_mean = b.input("running_mean", random(channels, 12, 1.0));
    let running_var = b.input(
        "running_var",
        random(channels, 13, 1.0)
            .iter()
            .map(|v| v.abs() + 0.5)
            .collect(),
    );
    let st = b.words("state", state_words(0, batch_index, 0));
    let dy = b.input("dy", random(len, 11, 1.0));
    let dx = b.out("dx", len);
    let dgamma = b.out("dgamma", channels);
    let dbeta = b.out("dbeta", channels);
    b.op(Op::BatchNorm2d {
        x,
        y,
        gamma,
        beta,
        mean,
        inv_std,
        running_mean,
        running_var,
        state: st,
        batch,
        channels,
        inner,
        samples,
        momentum: 0.1,
        eps: 1e-5,
        training,
    });
    if training {
        b.op(Op::BatchNorm2dBackward {
            x,
            dy,
            dx,
            gamma,
            dgamma,
            dbeta,
            mean,
            inv_std,
            state: st,
            batch,
            channels,
            inner,
            samples,
        });
    }
    let valid = samples
        .saturating_sub(batch_index as usize * batch)
        .min(batch);
    b.case(
        "batch_norm",
        format!(
            "batch_norm2d {} on {batch}×{channels}×{inner}, {valid} valid rows",
            if training {
                "training and backward"
            } else {
                "eval"
            }
        ),
        quick,
    )
}
