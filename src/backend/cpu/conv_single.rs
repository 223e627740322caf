//! Direct CPU kernels for a convolution with one output channel at stride 1 (a decoder's last layer), where
//! im2col would build a K×P matrix for a product with a single row.
//!
//! Each sample's channels are laid on a zero-bordered grid W = out_w + k_w − 1 wide (and out_h + k_h − 1
//! tall), and the output on the same width: output (i, j) at i·W + j, the columns j ≥ out_w left over. Tap
//! (a, b) of channel c then meets the output in one run of out_h·W elements, starting a·W + b into the
//! channel's grid, so every tap is a single long multiply-add loop instead of out_h short ones. What the
//! leftover columns and the border add is w·0, so the forward pass and the data gradient give the same
//! numbers as the row-by-row loops they replace. Two fine points: an accumulated data gradient that held
//! −0.0 can come out +0.0 (equal, another sign of zero), and an infinite weight would make NaN of the
//! w·0 terms the old loops skipped (by then training has diverged anyway).
//!
//! Taps run in the order of K = (c·k_h + a)·k_w + b for every output element. The long loops are compiled
//! for the widest vectors the CPU has ([`wide`]); without `mul_add` nothing fuses, so the bits do not depend
//! on the path.

use super::real::Real;
use super::scratch::Scratch;
use super::wide::wide;
use crate::ops::ConvGeom;
use rayon::prelude::*;

/// Samples per parallel piece (also the weight gradient's, through [`super::conv::piece_samples`]): each
/// piece zeroes its grids' borders once.
pub(super) const PIECE: usize = 8;

/// Lanes of the weight gradient's sums: four vectors of 8, so that four sums are in flight at once.
const LANES: usize = 32;

/// Whether these kernels apply: one output channel at stride 1.
pub(super) fn applies(g: &ConvGeom) -> bool {
    g.out_c == 1 && g.stride == 1
}

/// The grid of one sample: where its input channels and its output go.
struct Grid {
    /// Width W of every grid row.
    w: usize,
    /// Values per channel: out_h + k_h − 1 rows, and k_w − 1 more so the last tap's run stays inside.
    plane: usize,
    /// Length out_h·W of a tap's run, and of the output grid.
    span: usize,
}

impl Grid {
    fn new(g: &ConvGeom) -> Grid {
        let w = g.out_w + g.k_w - 1;
        Grid {
            w,
            plane: (g.out_h + g.k_h - 1) * w + g.k_w - 1,
            span: g.out_h * w,
        }
    }

    /// Values in one sample's input grid.
    fn input_len(&self, g: &ConvGeom) -> usize {
        g.in_c * self.plane
    }

    /// Calls `f(tap, start)` for every tap = (c·k_h + a)·k_w + b, in the order of K: tap (a, b) of channel c
    /// meets the output in the run [start, start + span) of the input grid. Inside [`wide`], mark `f`
    /// `#[inline(always)]`: a closure left out of line is compiled for baseline x86-64.
    #[inline(always)]
    fn for_each_tap(&self, g: &ConvGeom, mut f: impl FnMut(usize, usize)) {
        for c in 0..g.in_c {
            for a in 0..g.k_h {
                for b in 0..g.k_w {
                    f((c * g.k_h + a) * g.k_w + b, c * self.plane + a * self.w + b);
                }
            }
        }
    }

    /// Calls `f(grid_at, x_at)` for every input row: row h of channel c, in_w values, sits at grid_at in the
    /// input grid and at x_at in the sample's [in_c, in_h, in_w] tensor.
    fn input_rows(&self, g: &ConvGeom, mut f: impl FnMut(usize, usize)) {
        for c in 0..g.in_c {
            for h in 0..g.in_h {
                f(
                    c * self.plane + (h + g.pad) * self.w + g.pad,
                    (c * g.in_h + h) * g.in_w,
                );
            }
        }
    }

    /// x's rows into their places in `grid` (the border is left as it is).
    fn put_input<T: Real>(&self, g: &ConvGeom, x: &[T], grid: &mut [T]) {
        self.input_rows(g, |at, from| {
            grid[at..at + g.in_w].copy_from_slice(&x[from..from + g.in_w])
        });
    }

    /// The inverse of [`Grid::put_input`].
    fn take_input<T: Real>(&self, g: &ConvGeom, grid: &[T], x: &mut [T]) {
        self.input_rows(g, |at, to| {
            x[to..to + g.in_w].copy_from_slice(&grid[at..at + g.in_w])
        });
    }

    /// y's rows [out_h, out_w] into the output grid `out` (its leftover columns are left as they are).
    fn put_output<T: Real>(&self, g: &ConvGeom, y: &[T], out: &mut [T]) {
        for (to, row) in out.chunks_mut(self.w).zip(y.chunks(g.out_w)) {
            to[..g.out_w].copy_from_slice(row);
        }
    }

    /// The inverse of [`Grid::put_output`]: the leftover columns are dropped.
    fn take_output<T: Real>(&self, g: &ConvGeom, out: &[T], y: &mut [T]) {
        for (row, from) in y.chunks_mut(g.out_w).zip(out.chunks(self.w)) {
            row.copy_from_slice(&from[..g.out_w]);
        }
    }
}

/// y += wv · x, element by element.
#[inline(always)]
fn axpy<T: Real>(y: &mut [T], wv: T, x: &[T]) {
    for (d, &v) in y.iter_mut().zip(x) {
        *d += wv * v;
    }
}

/// y[n, 0, i, j] = Σ_{c, a, b} x[n, c, i − p + a, j − p + b] · w[0, c, a, b] (zero outside x).
pub fn forward<T: Real>(g: &ConvGeom, x: &[T], w: &[T], y: &mut [T], scratch: &Scratch<T>) {
    let grid = Grid::new(g);
    let (x_sample, positions) = (g.in_c * g.in_h * g.in_w, g.out_h * g.out_w);
    let (input, span) = (grid.input_len(g), grid.span);
    y[..g.y_len()]
        .par_chunks_mut(positions * PIECE)
        .zip(x[..g.x_len()].par_chunks(x_sample * PIECE))
        .for_each(|(y, x)| {
            scratch.thread(input + span, |buf| {
                let (xg, out) = buf.split_at_mut(input);
                xg.fill(T::zero());
                for (y, x) in y.chunks_mut(positions).zip(x.chunks(x_sample)) {
                    grid.put_input(g, x, xg);
                    out.fill(T::zero());
                    wide(
                        #[inline(always)]
                        || {
                            grid.for_each_tap(
                                g,
                                #[inline(always)]
                                |tap, at| axpy(out, w[tap], &xg[at..at + span]),
                            )
                        },
                    );
                    grid.take_output(g, out, y);
                }
            })
        });
}

/// dx = ∂L/∂x of [`forward`] (+ dx when `accumulate`): on the grid, dx[c] += w[0, c, a, b] · (dy's run placed
/// at tap (a, b)), taps in the order of K; the border's sums belong to no pixel and are dropped.
pub fn backward_data<T: Real>(
    g: &ConvGeom,
    dy: &[T],
    w: &[T],
    dx: &mut [T],
    accumulate: bool,
    scratch: &Scratch<T>,
) {
    let grid = Grid::new(g);
    let (x_sample, positions) = (g.in_c * g.in_h * g.in_w, g.out_h * g.out_w);
    let (input, span) = (grid.input_len(g), grid.span);
    dx[..g.x_len()]
        .par_chunks_mut(x_sample * PIECE)
        .zip(dy[..g.y_len()].par_chunks(positions * PIECE))
        .for_each(|(dx, dy)| {
            scratch.thread(input + span, |buf| {
                let (dxg, dyg) = buf.split_at_mut(input);
                // Zero once: the leftover columns must stay zero, and put_output never writes them.
                dyg.fill(T::zero());
                for (dx, dy) in dx.chunks_mut(x_sample).zip(dy.chunks(positions)) {
                    grid.put_output(g, dy, dyg);
                    dxg.fill(T::zero());
                    if accumulate {
                        grid.put_input(g, dx, dxg);
                    }
                    wide(
                        #[inline(always)]
                        || {
                            grid.for_each_tap(
                                g,
                                #[inline(always)]
                                |tap, at| axpy(&mut dxg[at..at + span], w[tap], dyg),
                            )
                        },
                    );
                    grid.take_input(g, dxg, dx);
                }
            })
        });
}

/// lanes[l] += Σ dy[q]·x[q] over q ≡ l (mod LANES), q counted from the start of the run. The sums are
/// kept in a local array (which LLVM keeps in vector registers) and written back once.
#[inline(always)]
fn lane_dot_add<T: Real>(lanes: &mut [T], dy: &[T], x: &[T]) {
    let mut acc: [T; LANES] = (&*lanes).try_into().unwrap();
    let whole = dy.len() - dy.len() % LANES;
    for (d, v) in dy[..whole]
        .chunks_exact(LANES)
        .zip(x[..whole].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += d[l] * v[l];
        }
    }
    for (l, (&d, &v)) in dy[whole..].iter().zip(&x[whole..]).enumerate() {
        acc[l] += d * v;
    }
    lanes.copy_from_slice(&acc);
}

/// One piece's partial of the weight gradient: partial[tap] = Σ over the piece's samples of dy · (x's run
/// at the tap), each tap summed in [`LANES`] lanes over the samples in order, the lanes then added in order.
pub fn weight_partial<T: Real>(
    g: &ConvGeom,
    dy: &[T],
    x: &[T],
    partial: &mut [T],
    scratch: &Scratch<T>,
) {
    let grid = Grid::new(g);
    let (x_sample, positions) = (g.in_c * g.in_h * g.in_w, g.out_h * g.out_w);
    let (input, span, taps) = (grid.input_len(g), grid.span, g.w_len());
    scratch.thread(input + span + taps * LANES, |buf| {
        let (xg, rest) = buf.split_at_mut(input);
        let (dyg, lanes) = rest.split_at_mut(span);
        xg.fill(T::zero());
        dyg.fill(T::zero());
        lanes.fill(T::zero());
        for (x, dy) in x.chunks(x_sample).zip(dy.chunks(positions)) {
            grid.put_input(g, x, xg);
            grid.put_output(g, dy, dyg);
            wide(
                #[inline(always)]
                || {
                    grid.for_each_tap(
                        g,
                        #[inline(always)]
                        |tap, at| {
                            let lanes = &mut lanes[tap * LANES..(tap + 1) * LANES];
                            lane_dot_add(lanes, dyg, &xg[at..at + span]);
                        },
                    )
                },
            );
        }
        for (p, lanes) in partial.iter_mut().zip(lanes.chunks(LANES)) {
            *p = lanes.iter().fold(T::zero(), |s, &l| s + l);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random values in (−1, 1), never zero, from a small LCG.
    fn random(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                2.0 * u - 1.0
            })
            .collect()
    }

    /// Calls `f(x_at, y_at, w_at)` (flat indices into x, y and w) for every output element and every tap
    /// that lands inside the input: the convolution by its definition.
    fn naive(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize)) {
        for n in 0..g.batch {
            for c in 0..g.in_c {
                for i in 0..g.out_h {
                    for j in 0..g.out_w {
                        for a in 0..g.k_h {
                            for b in 0..g.k_w {
                                let (h, v) = (
                                    (i + a) as isize - g.pad as isize,
                                    (j + b) as isize - g.pad as isize,
                                );
                                if h < 0 || v < 0 || h >= g.in_h as isize || v >= g.in_w as isize {
                                    continue;
                                }
                                let x_at =
                                    ((n * g.in_c + c) * g.in_h + h as usize) * g.in_w + v as usize;
                                let y_at = (n * g.out_h + i) * g.out_w + j;
                                f(x_at, y_at, (c * g.k_h + a) * g.k_w + b);
                            }
                        }
                    }
                }
            }
        }
    }

    fn close(what: &str, got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (e, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-12 * (1.0 + w.abs()),
                "{what}: element {e}: {g} against {w}"
            );
        }
    }

    #[test]
    fn direct_kernels_match_the_definition_on_awkward_sizes() {
        // batch 11: a last piece of 3 samples; kernels 3, 2, 5 and 1 with pads 1, 0, 2 and 2 (a pad
        // wider than the kernel).
        for (t, g) in [
            ConvGeom::new(11, 5, 9, 7, 1, 3, 1, 1),
            ConvGeom::new(11, 3, 6, 8, 1, 2, 1, 0),
            ConvGeom::new(9, 2, 5, 6, 1, 5, 1, 2),
            ConvGeom::new(3, 2, 4, 3, 1, 1, 1, 2),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = 10 * t as u64;
            let (x, w, dy) = (
                random(g.x_len(), seed),
                random(g.w_len(), seed + 1),
                random(g.y_len(), seed + 2),
            );
            let scratch = Scratch::<f64>::default();

            let mut y = random(g.y_len(), seed + 3);
            forward(&g, &x, &w, &mut y, &scratch);
            let mut want = vec![0.0; g.y_len()];
            naive(&g, |xa, ya, wa| want[ya] += x[xa] * w[wa]);
            close(&format!("forward {g:?}"), &y, &want);

            let dx0 = random(g.x_len(), seed + 4);
            let mut want = vec![0.0; g.x_len()];
            naive(&g, |xa, ya, wa| want[xa] += dy[ya] * w[wa]);
            for accumulate in [false, true] {
                let mut dx = dx0.clone();
                backward_data(&g, &dy, &w, &mut dx, accumulate, &scratch);
                let want: Vec<f64> = match accumulate {
                    true => want.iter().zip(&dx0).map(|(a, b)| a + b).collect(),
                    false => want.clone(),
                };
                close(
                    &format!("backward_data accumulate={accumulate} {g:?}"),
                    &dx,
                    &want,
                );
            }

            let mut dw = vec![0.0; g.w_len()];
            naive(&g, |xa, ya, wa| dw[wa] += dy[ya] * x[xa]);
            let mut partial = random(g.w_len(), seed + 5);
            weight_partial(&g, &dy, &x, &mut partial, &scratch);
            close(&format!("weight_partial {g:?}"), &partial, &dw);
            // Through conv2d_backward_weight: pieces of PIECE samples, their partials added in order.
            let mut whole = random(g.w_len(), seed + 6);
            super::super::conv::conv2d_backward_weight(&g, &dy, &x, &mut whole, false, &scratch);
            close(&format!("conv2d_backward_weight {g:?}"), &whole, &dw);
        }
    }
}
