//! CPU twins of `shaders/pool.wgsl`: 2×2 max pooling and unpooling, nearest upsampling, and their backwards.
//!
//! Every tensor is NCHW; a "plane" is one (n, c) pair. Odd heights and widths floor: the last row or column
//! of an odd plane belongs to no pooling window, receives no gradient and is zero after unpooling.

use super::real::Real;
use rayon::prelude::*;

/// y[plane, i, j] = max of x over rows 2i, 2i+1 and columns 2j, 2j+1 of the plane, read row-major with a
/// strictly-greater test (first max wins on ties); argmax = the flat in-plane index h·in_w + w of that max.
pub fn max_pool2x2<T: Real>(
    x: &[T],
    y: &mut [T],
    argmax: &mut [u32],
    planes: usize,
    in_h: usize,
    in_w: usize,
) {
    let (out_h, out_w) = (in_h / 2, in_w / 2);
    let out_plane = out_h * out_w;
    y[..planes * out_plane]
        .par_chunks_mut(out_plane.max(1))
        .zip(argmax.par_chunks_mut(out_plane.max(1)))
        .enumerate()
        .for_each(|(plane, (y, argmax))| {
            let x = &x[plane * in_h * in_w..(plane + 1) * in_h * in_w];
            for i in 0..out_h {
                let top = 2 * i * in_w;
                let (upper, lower) = (&x[top..top + in_w], &x[top + in_w..top + 2 * in_w]);
                let (y, argmax) = (
                    &mut y[i * out_w..][..out_w],
                    &mut argmax[i * out_w..][..out_w],
                );
                for j in 0..out_w {
                    // The window row-major, strictly greater replacing: the first max wins.
                    let (mut best, mut value) = (top + 2 * j, upper[2 * j]);
                    for (at, v) in [
                        (top + 2 * j + 1, upper[2 * j + 1]),
                        (top + in_w + 2 * j, lower[2 * j]),
                        (top + in_w + 2 * j + 1, lower[2 * j + 1]),
                    ] {
                        if v > value {
                            (best, value) = (at, v);
                        }
                    }
                    y[j] = value;
                    argmax[j] = best as u32;
                }
            }
        });
}

/// full[plane, p] = pooled[plane, k] where p = argmax[plane, k] (the max of window k), 0 everywhere else.
/// This is both the backward of max pooling (pooled = dy) and max unpooling (pooled = x). Each window's
/// argmax lies inside the window, so the windows write disjoint elements: zero the plane, then one write
/// per window.
pub fn scatter_to_argmax<T: Real>(
    pooled: &[T],
    argmax: &[u32],
    full: &mut [T],
    planes: usize,
    in_h: usize,
    in_w: usize,
) {
    let (in_plane, out_plane) = (in_h * in_w, (in_h / 2) * (in_w / 2));
    full[..planes * in_plane]
        .par_chunks_mut(in_plane.max(1))
        .enumerate()
        .for_each(|(plane, full)| {
            full.fill(T::zero());
            let at = plane * out_plane..(plane + 1) * out_plane;
            for (&v, &p) in pooled[at.clone()].iter().zip(&argmax[at]) {
                full[p as usize] = v;
            }
        });
}

/// pooled[plane, k] = full[plane, argmax[plane, k]]: the backward of max unpooling.
pub fn gather_from_argmax<T: Real>(
    full: &[T],
    argmax: &[u32],
    pooled: &mut [T],
    planes: usize,
    in_h: usize,
    in_w: usize,
) {
    let (in_plane, out_plane) = (in_h * in_w, (in_h / 2) * (in_w / 2));
    pooled[..planes * out_plane]
        .par_chunks_mut(out_plane.max(1))
        .zip(argmax.par_chunks(out_plane.max(1)))
        .enumerate()
        .for_each(|(plane, (pooled, argmax))| {
            let full = &full[plane * in_plane..(plane + 1) * in_plane];
            for (v, &p) in pooled.iter_mut().zip(argmax) {
                *v = full[p as usize];
            }
        });
}

/// y[plane, h, w] = x[plane, ⌊h/f⌋, ⌊w/f⌋], y of size (in_h·f) × (in_w·f).
pub fn upsample_nearest<T: Real>(
    x: &[T],
    y: &mut [T],
    planes: usize,
    in_h: usize,
    in_w: usize,
    factor: usize,
) {
    let (out_h, out_w) = (in_h * factor, in_w * factor);
    y[..planes * out_h * out_w]
        .par_chunks_mut((out_h * out_w).max(1))
        .enumerate()
        .for_each(|(plane, y)| {
            for (p, v) in y.iter_mut().enumerate() {
                let (h, w) = (p / out_w, p % out_w);
                *v = x[plane * in_h * in_w + (h / factor) * in_w + w / factor];
            }
        });
}

/// dx[plane, i, j] = Σ_{a, b < f} dy[plane, i·f + a, j·f + b], summed row by row.
pub fn upsample_nearest_backward<T: Real>(
    dy: &[T],
    dx: &mut [T],
    planes: usize,
    in_h: usize,
    in_w: usize,
    factor: usize,
) {
    let out_w = in_w * factor;
    let out_plane = in_h * factor * out_w;
    dx[..planes * in_h * in_w]
        .par_chunks_mut((in_h * in_w).max(1))
        .enumerate()
        .for_each(|(plane, dx)| {
            for (p, v) in dx.iter_mut().enumerate() {
                let (i, j) = (p / in_w, p % in_w);
                let mut sum = T::zero();
                for a in 0..factor {
                    for b in 0..factor {
                        sum += dy[plane * out_plane + (i * factor + a) * out_w + j * factor + b];
                    }
                }
                *v = sum;
            }
        });
}
