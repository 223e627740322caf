//! Convolutions: forward, data gradient and weight gradient (plain and accumulating), and the fused
//! layer forward (conv or transposed conv, bias and activation in the same op), on geometries with
//! strides that do not divide the size, wide kernels, channel counts that are no multiple of 4; the
//! implicit-GEMM forms (8 channels or more) on each tile height; the conv-dae's own layers.

use super::dense::ACTS;
use super::{Case, Kernels, Ops};
use crate::ops::{ConvGeom, Op};
use crate::selftest::inputs::random;

/// Channels from which the GPU runs a convolution as an implicit GEMM (see `backend::gpu::conv`).
const GEMM_CHANNELS: usize = 8;

/// (geometry, in the quick table).
fn geometries() -> Vec<(ConvGeom, bool)> {
    vec![
        (ConvGeom::new(2, 3, 7, 9, 5, 3, 2, 1), true),
        (ConvGeom::new(2, 1, 6, 5, 7, 5, 1, 2), false),
        (ConvGeom::new(3, 4, 13, 11, 6, 3, 1, 0), false),
        (ConvGeom::new(3, 2, 13, 11, 3, 3, 2, 1), false),
        (ConvGeom::new(1, 3, 8, 7, 2, 2, 3, 0), false),
        (ConvGeom::for_transpose(2, 5, 4, 4, 3, 3, 2, 1, 1), true),
        // 33 to 64 channels: one 64-row tile, partly filled; K = 35·9 no multiple of 16, more
        // positions than one 128-column tile.
        (ConvGeom::new(2, 35, 9, 10, 37, 3, 2, 1), true),
        (ConvGeom::for_transpose(3, 37, 5, 6, 33, 3, 2, 1, 1), true),
        // 32 channels fill one 32-row tile exactly; 66 and 70 need two 64-row tiles.
        (ConvGeom::new(2, 32, 6, 7, 20, 3, 1, 1), false),
        (ConvGeom::new(1, 66, 5, 4, 70, 3, 2, 1), false),
        // Stride 3 with a 2×2 kernel: some stride phases of the data gradient reach no output.
        (ConvGeom::new(2, 9, 8, 7, 10, 2, 3, 1), false),
        // 1275 batch·position terms: the weight gradient sums them in five slices, the last short.
        (ConvGeom::new(5, 9, 17, 15, 10, 3, 1, 1), false),
        // Stride 1 with fewer outputs than inputs, whose data gradient the CPU runs as a flipped
        // forward convolution.
        (ConvGeom::new(2, 7, 8, 9, 5, 3, 1, 0), false),
        (ConvGeom::new(2, 6, 7, 8, 4, 5, 1, 2), false),
        // One output channel at stride 1 (a decoder's last layer), which the CPU runs by direct
        // kernels: 3×3 pad 1 on 35 channels (the implicit GEMM's side of the GPU), 2×2 without
        // padding, 5×5 wider than half the input.
        (ConvGeom::new(3, 35, 9, 7, 1, 3, 1, 1), true),
        (ConvGeom::new(2, 4, 6, 8, 1, 2, 1, 0), false),
        (ConvGeom::new(2, 3, 5, 6, 1, 5, 1, 2), false),
    ]
}

/// The conv-dae's four layers at batch 16: strided convs down to 64×7×7, transposed convs back up.
fn conv_dae_layers() -> [ConvGeom; 4] {
    [
        ConvGeom::new(16, 1, 28, 28, 32, 3, 2, 1),
        ConvGeom::new(16, 32, 14, 14, 64, 3, 2, 1),
        ConvGeom::for_transpose(16, 64, 7, 7, 32, 3, 2, 1, 1),
        ConvGeom::for_transpose(16, 32, 14, 14, 1, 3, 2, 1, 1),
    ]
}

pub fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (t, (g, quick)) in geometries().into_iter().enumerate() {
        let gemm = g.in_c >= GEMM_CHANNELS || g.out_c >= GEMM_CHANNELS;
        let tiles: Vec<Kernels> = if gemm {
            vec![Kernels::conv_tile(32), Kernels::conv_tile(64)]
        } else {
            vec![Kernels::default()]
        };
        for kernels in tiles {
            cases.push(conv_case(g, 500 + 10 * t as u64, kernels, quick));
        }
    }
    for (t, g) in conv_dae_layers().into_iter().enumerate() {
        cases.push(conv_case(g, 600 + 10 * t as u64, Kernels::default(), false));
    }
    cases
}

fn conv_case(geom: ConvGeom, seed: u64, kernels: Kernels, quick: bool) -> Case {
    let g = geom;
    let mut b = Ops::new();
    let x = b.input("x", random(g.x_len(), seed, 1.0));
    let w = b.input("w", random(g.w_len(), seed + 1, 0.5));
    let dy = b.input("dy", random(g.y_len(), seed + 2, 1.0));
    for accumulate in [false, true] {
        let tag = if accumulate { "_acc" } else { "" };
        let y = b.out(&format!("y{tag}"), g.y_len());
        let (dx, dw) = if accumulate {
            (
                b.input("dx_acc", random(g.x_len(), seed + 3, 1.0)),
                b.input("dw_acc", random(g.w_len(), seed + 4, 1.0)),
            )
        } else {
            (b.out("dx", g.x_len()), b.out("dw", g.w_len()))
        };
        if !accumulate {
            b.op(Op::Conv2d { geom, x, w, y });
        }
        b.op(Op::Conv2dBackwardData {
            geom,
            dy,
            w,
            dx,
            accumulate,
        });
        b.op(Op::Conv2dBackwardWeight {
            geom,
            dy,
            x,
            dw,
            accumulate,
        });
    }
    // The fused layer forward, both ways, an activation each (cycling through all over the table).
    for transposed in [false, true] {
        let (input, out_len, channels) = if transposed {
            (dy, g.x_len(), g.in_c)
        } else {
            (x, g.y_len(), g.out_c)
        };
        let act = ACTS[(seed as usize / 10 * 2 + transposed as usize) % ACTS.len()];
        let bias = b.input(
            &format!("bias_t{}", transposed as u8),
            random(channels, seed + 5, 1.0),
        );
        let y = b.out(&format!("y_fused_t{}", transposed as u8), out_len);
        b.op(Op::ConvBiasAct {
            geom,
            x: input,
            w,
            bias,
            y,
            act,
            transposed,
        });
    }
    b.kernels(kernels);
    b.case(
        "conv",
        format!(
            "conv x {}×{}×{}×{} w {}×{}×{}×{} s{} p{} → {}×{}",
            g.batch,
            g.in_c,
            g.in_h,
            g.in_w,
            g.out_c,
            g.in_c,
            g.k_h,
            g.k_w,
            g.stride,
            g.pad,
            g.out_h,
            g.out_w
        ),
        quick,
    )
}
