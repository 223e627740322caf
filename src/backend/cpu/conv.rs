//! CPU twins of `shaders/conv2d.wgsl`: 2-D convolution forward, data gradient and weight gradient, NCHW.
//!
//! All three go through im2col, so the arithmetic is one matrix product per sample (see [`ConvGeom`] for the
//! shapes; K = in_c·k_h·k_w, P = out_h·out_w):
//!
//! ```text
//! cols[K × P]  = im2col(x[n])                 cols[(c·k_h + a)·k_w + b, i·out_w + j] = x[n, c, i·s−p+a, j·s−p+b]
//! forward      y[n]  [out_c × P] = w[out_c × K] · cols
//! data grad    dx[n] = col2im(wᵀ[K × out_c] · dy[n][out_c × P])      (col2im is the adjoint of im2col)
//! weight grad  dw[out_c × K] = Σ_n dy[n][out_c × P] · colsᵀ[P × K]
//! ```
//!
//! Samples are spread over threads; the weight gradient sums fixed pieces of the batch and then adds the
//! pieces in order, so the result does not depend on the number of threads.

use super::kernels::matmul;
use super::real::Real;
use crate::ops::ConvGeom;
use rayon::prelude::*;

/// Samples per partial weight gradient. Fixed, so the order of the batch sum is fixed.
const WEIGHT_GRAD_PIECE: usize = 8;

/// Rows (K) and columns (P) of one sample's im2col matrix.
fn cols_shape(g: &ConvGeom) -> (usize, usize) {
    (g.in_c * g.k_h * g.k_w, g.out_h * g.out_w)
}

/// Calls `f(row, c, i, js, start)` for every row = (c, a, b) of the im2col matrix and every output row i
/// whose input row h = i·s − p + a lies inside the input: `js` is the range of output columns j whose input
/// column v = j·s − p + b lies inside too, `start` = h·in_w + v for the first of them (later ones follow at
/// stride s). Shared by im2col and its adjoint, so both skip the padding identically.
fn for_each_tap(
    g: &ConvGeom,
    mut f: impl FnMut(usize, usize, usize, std::ops::Range<usize>, usize),
) {
    let (s, p) = (g.stride, g.pad);
    for c in 0..g.in_c {
        for a in 0..g.k_h {
            for b in 0..g.k_w {
                let row = (c * g.k_h + a) * g.k_w + b;
                // j is valid when 0 ≤ j·s + b − p < in_w.
                let j_first = p.saturating_sub(b).div_ceil(s);
                let j_end = (g.in_w + p).saturating_sub(b).div_ceil(s).min(g.out_w);
                if j_first >= j_end {
                    continue;
                }
                for i in 0..g.out_h {
                    let Some(h) = (i * s + a).checked_sub(p).filter(|&h| h < g.in_h) else {
                        continue;
                    };
                    let v_first = j_first * s + b - p;
                    f(row, c, i, j_first..j_end, h * g.in_w + v_first);
                }
            }
        }
    }
}

/// cols[K × P] = im2col(x) for one sample x[in_c, in_h, in_w]; taps in the padding are zero.
fn im2col<T: Real>(g: &ConvGeom, x: &[T], cols: &mut [T]) {
    let (_, positions) = cols_shape(g);
    cols.fill(T::zero());
    let plane = g.in_h * g.in_w;
    for_each_tap(g, |row, c, i, js, start| {
        let x_plane = &x[c * plane..(c + 1) * plane];
        let out = &mut cols[row * positions + i * g.out_w..][..g.out_w];
        for (t, j) in js.enumerate() {
            out[j] = x_plane[start + t * g.stride];
        }
    });
}

/// dx += col2im(cols) for one sample: every column entry added back to the input pixel it was read from.
fn col2im_add<T: Real>(g: &ConvGeom, cols: &[T], dx: &mut [T]) {
    let (_, positions) = cols_shape(g);
    let plane = g.in_h * g.in_w;
    for_each_tap(g, |row, c, i, js, start| {
        let dx_plane = &mut dx[c * plane..(c + 1) * plane];
        let src = &cols[row * positions + i * g.out_w..][..g.out_w];
        for (t, j) in js.enumerate() {
            dx_plane[start + t * g.stride] += src[j];
        }
    });
}

/// y[n, o, i, j] = Σ_{c, a, b} x[n, c, i·s − p + a, j·s − p + b] · w[o, c, a, b].
pub fn conv2d<T: Real>(g: &ConvGeom, x: &[T], w: &[T], y: &mut [T]) {
    let (k, positions) = cols_shape(g);
    let (x_sample, y_sample) = (g.in_c * g.in_h * g.in_w, g.out_c * positions);
    let w = &w[..g.w_len()];
    y[..g.y_len()]
        .par_chunks_mut(y_sample)
        .zip(x[..g.x_len()].par_chunks(x_sample))
        .for_each_init(
            || vec![T::zero(); k * positions],
            |cols, (y, x)| {
                im2col(g, x, cols);
                matmul(w, cols, y, g.out_c, positions, k, false, false, false);
            },
        );
}

/// dx = ∂L/∂x of [`conv2d`] (+ dx when `accumulate`): dx[n] = col2im(wᵀ · dy[n]).
pub fn conv2d_backward_data<T: Real>(
    g: &ConvGeom,
    dy: &[T],
    w: &[T],
    dx: &mut [T],
    accumulate: bool,
) {
    let (k, positions) = cols_shape(g);
    let (x_sample, y_sample) = (g.in_c * g.in_h * g.in_w, g.out_c * positions);
    let w = &w[..g.w_len()];
    dx[..g.x_len()]
        .par_chunks_mut(x_sample)
        .zip(dy[..g.y_len()].par_chunks(y_sample))
        .for_each_init(
            || vec![T::zero(); k * positions],
            |cols, (dx, dy)| {
                matmul(w, dy, cols, k, positions, g.out_c, true, false, false);
                if !accumulate {
                    dx.fill(T::zero());
                }
                col2im_add(g, cols, dx);
            },
        );
}

/// dw = ∂L/∂w of [`conv2d`] (+ dw when `accumulate`): dw = Σ_n dy[n] · im2col(x[n])ᵀ, summed over pieces of
/// [`WEIGHT_GRAD_PIECE`] samples, then over the pieces in order.
pub fn conv2d_backward_weight<T: Real>(
    g: &ConvGeom,
    dy: &[T],
    x: &[T],
    dw: &mut [T],
    accumulate: bool,
) {
    let (k, positions) = cols_shape(g);
    let (x_sample, y_sample) = (g.in_c * g.in_h * g.in_w, g.out_c * positions);
    let len = g.w_len();
    let x_pieces = x[..g.x_len()].par_chunks(x_sample * WEIGHT_GRAD_PIECE);
    let dy_pieces = dy[..g.y_len()].par_chunks(y_sample * WEIGHT_GRAD_PIECE);
    let partials: Vec<Vec<T>> = x_pieces
        .zip(dy_pieces)
        .map(|(x, dy)| {
            let mut cols = vec![T::zero(); k * positions];
            let mut partial = vec![T::zero(); len];
            for (n, (x, dy)) in x.chunks(x_sample).zip(dy.chunks(y_sample)).enumerate() {
                im2col(g, x, &mut cols);
                matmul(
                    dy,
                    &cols,
                    &mut partial,
                    g.out_c,
                    k,
                    positions,
                    false,
                    true,
                    n > 0,
                );
            }
            partial
        })
        .collect();
    dw[..len].par_iter_mut().enumerate().for_each(|(e, d)| {
        let mut sum = if accumulate { *d } else { T::zero() };
        for partial in &partials {
            sum += partial[e];
        }
        *d = sum;
    });
}
