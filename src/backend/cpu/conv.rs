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
//! The batch is cut into fixed pieces of [`piece_samples`] samples (a number that depends on the geometry only)
//! and each piece is one wide product: its samples' im2col matrices side by side, cols[K × S·P], so the GEMMs
//! have S·P columns instead of P. Each piece runs on one thread with a single-threaded GEMM and reuses that
//! thread's scratch buffers. The weight gradient sums each piece in one GEMM (over S·P) and then adds the
//! pieces in order, so no result depends on the number of threads or on scheduling.
//!
//! Two exceptions: a layer with one output channel at stride 1 runs the direct kernels of `conv_single.rs`
//! (no im2col), and a stride-1 data gradient with fewer output than input channels runs as a forward
//! convolution of dy with the kernel flipped (`flipped_geometry`; no col2im).

use super::conv_single;
use super::real::Real;
use super::scratch::Scratch;
use crate::ops::ConvGeom;
use rayon::prelude::*;

/// Aim for pieces whose im2col matrix holds about this many values (a few hundred KiB: it stays in L2).
const PIECE_VALUES: usize = 1 << 17;
/// At most this many samples per piece, so a batch still makes several pieces to share between threads.
const MAX_PIECE_SAMPLES: usize = 16;

/// Rows (K) and columns (P) of one sample's im2col matrix.
fn cols_shape(g: &ConvGeom) -> (usize, usize) {
    (g.in_c * g.k_h * g.k_w, g.out_h * g.out_w)
}

/// Samples per piece: fixed by the geometry alone, so the batch is always cut the same way.
pub fn piece_samples(g: &ConvGeom) -> usize {
    if conv_single::applies(g) {
        return conv_single::PIECE;
    }
    let (k, positions) = cols_shape(g);
    (PIECE_VALUES / (k * positions).max(1)).clamp(1, MAX_PIECE_SAMPLES)
}

/// C[m×n] (row stride ldc) ← A·B (+ C when `accumulate`), single-threaded; A and B given by their strides.
#[allow(clippy::too_many_arguments)]
fn gemm<T: Real>(
    (m, k, n): (usize, usize, usize),
    a: &[T],
    (rsa, csa): (usize, usize),
    b: &[T],
    (rsb, csb): (usize, usize),
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    };
    assert!(
        a.len() >= last(m, k, rsa, csa)
            && b.len() >= last(k, n, rsb, csb)
            && c.len() >= last(m, n, ldc, 1),
        "conv gemm: buffers too small for {m}×{k}·{k}×{n}"
    );
    let beta = if accumulate { T::one() } else { T::zero() };
    // SAFETY: the assert above covers every strided access; c does not overlap a or b (it is borrowed
    // mutably).
    unsafe {
        T::gemm(
            m,
            k,
            n,
            T::one(),
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        )
    }
}
/// The zero-bordered, stride-phased copy of one sample that im2col reads and col2im writes.
///
/// Each channel's plane is placed at offset (p, p) of an (s·ph) × (s·pw) plane whose border is zero, large
/// enough that every tap of every output position lands inside it; that plane is stored as its s × s phases
/// of ph × pw each, phase
/// (y mod s, x mod s) holding elements (y, x) at (y / s, x / s). Tap (a, b) of output row i then reads out_w
/// consecutive elements: row i + a / s of phase (a mod s, b mod s), from column b / s. So im2col and col2im
/// copy and add whole row segments, with no test for the border and no strided access.
struct Padded {
    /// Stride.
    s: usize,
    /// Rows and columns of one phase.
    ph: usize,
    pw: usize,
    /// Where input row h of a channel goes: (phase row offset) + (row inside the phase) · pw.
    row_at: Vec<usize>,
    /// The input columns of one row, by the phase they go to: (first column v0, where v0 goes relative to
    /// the row's place, how many), columns v0, v0 + s, … going to consecutive places.
    col_runs: Vec<(usize, usize, usize)>,
}

impl Padded {
    fn new(g: &ConvGeom) -> Padded {
        let s = g.stride;
        let ph = ((g.out_h - 1) * s + g.k_h).max(g.pad + g.in_h).div_ceil(s);
        let pw = ((g.out_w - 1) * s + g.k_w).max(g.pad + g.in_w).div_ceil(s);
        let phase = ph * pw;
        let row_at = (0..g.in_h)
            .map(|h| (h + g.pad) % s * s * phase + (h + g.pad) / s * pw)
            .collect();
        let col_runs = (0..s.min(g.in_w))
            .map(|v0| {
                let at = (v0 + g.pad) % s * phase + (v0 + g.pad) / s;
                (v0, at, (g.in_w - v0).div_ceil(s))
            })
            .collect();
        Padded {
            s,
            ph,
            pw,
            row_at,
            col_runs,
        }
    }

    /// Values in one channel's phases.
    fn channel(&self) -> usize {
        self.s * self.s * self.ph * self.pw
    }

    /// Values in one sample's phases.
    fn len(&self, g: &ConvGeom) -> usize {
        g.in_c * self.channel()
    }

    /// Copies sample `x[in_c, in_h, in_w]` into `padded`, whose border must be zero.
    fn fill<T: Real>(&self, g: &ConvGeom, x: &[T], padded: &mut [T]) {
        for (src, dst) in x
            .chunks(g.in_h * g.in_w)
            .zip(padded.chunks_mut(self.channel()))
        {
            for (row, &at) in src.chunks(g.in_w).zip(&self.row_at) {
                for &(v0, to, n) in &self.col_runs {
                    let dst = &mut dst[at + to..][..n];
                    match self.s {
                        1 => dst.copy_from_slice(row),
                        2 => gather::<_, 2>(dst, &row[v0..], 2),
                        s => gather::<_, 0>(dst, &row[v0..], s),
                    }
                }
            }
        }
    }

    /// The inverse of [`Padded::fill`]: dx[c, h, v] = the element of `padded` that x[c, h, v] went to.
    fn store<T: Real>(&self, g: &ConvGeom, padded: &[T], dx: &mut [T]) {
        for (dst, src) in dx
            .chunks_mut(g.in_h * g.in_w)
            .zip(padded.chunks(self.channel()))
        {
            for (row, &at) in dst.chunks_mut(g.in_w).zip(&self.row_at) {
                for &(v0, from, n) in &self.col_runs {
                    let src = &src[at + from..][..n];
                    match self.s {
                        1 => row.copy_from_slice(src),
                        2 => scatter::<_, 2>(src, &mut row[v0..], 2),
                        s => scatter::<_, 0>(src, &mut row[v0..], s),
                    }
                }
            }
        }
    }

    /// For every row = (c·k_h + a)·k_w + b of the im2col matrix, where tap (a, b) of channel c reads for
    /// output row 0; output row i reads from there + i·pw.
    fn starts(&self, g: &ConvGeom) -> Vec<usize> {
        let (s, phase) = (self.s, self.ph * self.pw);
        let mut starts = Vec::with_capacity(g.in_c * g.k_h * g.k_w);
        for c in 0..g.in_c {
            for a in 0..g.k_h {
                for b in 0..g.k_w {
                    starts.push(
                        c * self.channel() + (a % s * s + b % s) * phase + a / s * self.pw + b / s,
                    );
                }
            }
        }
        starts
    }
}

/// dst[t] = src[t·step] for every t of dst; `S` is `step` as a constant, or 0 where it is not one.
#[inline(always)]
fn gather<T: Copy, const S: usize>(dst: &mut [T], src: &[T], step: usize) {
    let step = if S == 0 { step } else { S };
    for (t, d) in dst.iter_mut().enumerate() {
        *d = src[t * step];
    }
}

/// dst[t·step] = src[t] for every t of src; `S` as in [`gather`].
#[inline(always)]
fn scatter<T: Copy, const S: usize>(src: &[T], dst: &mut [T], step: usize) {
    let step = if S == 0 { step } else { S };
    for (t, &v) in src.iter().enumerate() {
        dst[t * step] = v;
    }
}

/// dst ← src for one short row of im2col (an output row: 7 to 28 values on MNIST), inline: copy_from_slice
/// of an unknown length is a call to memcpy, which costs more than the copy at these lengths. `W` is the
/// row's length as a constant (the row is then one fixed-size copy), or 0 where it is not one: then whole
/// blocks of 8 (or 4), the last one ending at the end of the row and overlapping the one before.
#[inline(always)]
fn copy_row<T: Copy, const W: usize>(dst: &mut [T], src: &[T]) {
    #[inline(always)]
    fn block<T: Copy, const N: usize>(dst: &mut [T], src: &[T], at: usize) {
        let d: &mut [T; N] = (&mut dst[at..at + N]).try_into().unwrap();
        *d = <[T; N]>::try_from(&src[at..at + N]).unwrap();
    }
    if W != 0 {
        return block::<T, W>(dst, src, 0);
    }
    let n = dst.len();
    let (dst, src) = (&mut dst[..n], &src[..n]);
    if n >= 8 {
        for at in (0..n - 7).step_by(8) {
            block::<T, 8>(dst, src, at);
        }
        block::<T, 8>(dst, src, n - 8);
    } else if n >= 4 {
        block::<T, 4>(dst, src, 0);
        block::<T, 4>(dst, src, n - 4);
    } else {
        dst.copy_from_slice(src);
    }
}

/// dst += src for one short row of col2im, inline: one fixed-size add when `W` (as in [`copy_row`]) is the
/// row's length, else blocks of 8, then of 4, then single values. Each element sees one addition.
#[inline(always)]
fn add_row<T: Real, const W: usize>(dst: &mut [T], src: &[T]) {
    #[inline(always)]
    fn block<T: Real, const N: usize>(dst: &mut [T], src: &[T], at: usize) {
        let d: &mut [T; N] = (&mut dst[at..at + N]).try_into().unwrap();
        let s: &[T; N] = src[at..at + N].try_into().unwrap();
        for l in 0..N {
            d[l] += s[l];
        }
    }
    if W != 0 {
        return block::<T, W>(dst, src, 0);
    }
    let n = dst.len();
    let (dst, src) = (&mut dst[..n], &src[..n]);
    let mut at = 0;
    while at + 8 <= n {
        block::<T, 8>(dst, src, at);
        at += 8;
    }
    if at + 4 <= n {
        block::<T, 4>(dst, src, at);
        at += 4;
    }
    for j in at..n {
        dst[j] += src[j];
    }
}

/// Calls `$body` with `$w` a constant where the output rows have one of the widths of the MNIST decks, so
/// that each row is a few fixed-size vector moves, and with `$w` = `$out_w` otherwise.
macro_rules! by_width {
    ($out_w:expr, $body:ident ( $($arg:expr),* )) => {
        match $out_w {
            7 => $body::<_, 7>($($arg),*),
            14 => $body::<_, 14>($($arg),*),
            28 => $body::<_, 28>($($arg),*),
            _ => $body::<_, 0>($($arg),*),
        }
    };
}

/// Columns [col0, col0 + P) of cols[K × ld] = im2col(x) for one sample, read from its padded phases
/// ([`Padded::fill`]): cols[(c·k_h + a)·k_w + b, i·out_w + j] = x[c, i·s − p + a, j·s − p + b], zero in the
/// padding. Every element is written. `starts` is [`Padded::starts`].
fn im2col<T: Real>(
    g: &ConvGeom,
    pad: &Padded,
    starts: &[usize],
    padded: &[T],
    cols: &mut [T],
    (ld, col0): (usize, usize),
) {
    by_width!(g.out_w, im2col_rows(g, pad, starts, padded, cols, ld, col0))
}

/// [`im2col`] for output rows W wide (any width when W = 0).
#[inline(always)]
fn im2col_rows<T: Real, const W: usize>(
    g: &ConvGeom,
    pad: &Padded,
    starts: &[usize],
    padded: &[T],
    cols: &mut [T],
    ld: usize,
    col0: usize,
) {
    let (w, positions) = (g.out_w, g.out_h * g.out_w);
    for (row, &start) in starts.iter().enumerate() {
        let out = &mut cols[row * ld + col0..][..positions];
        for (i, out) in out.chunks_exact_mut(w).enumerate() {
            copy_row::<T, W>(out, &padded[start + i * pad.pw..][..w]);
        }
    }
}

/// The adjoint of [`im2col`] for one sample: every entry of columns [col0, col0 + P) of cols[K × ld] added to
/// the padded element it was read from, taps in the order of K.
fn col2im_add<T: Real>(
    g: &ConvGeom,
    pad: &Padded,
    starts: &[usize],
    cols: &[T],
    (ld, col0): (usize, usize),
    padded: &mut [T],
) {
    by_width!(g.out_w, col2im_rows(g, pad, starts, cols, ld, col0, padded))
}

/// [`col2im_add`] for output rows W wide (any width when W = 0).
#[inline(always)]
fn col2im_rows<T: Real, const W: usize>(
    g: &ConvGeom,
    pad: &Padded,
    starts: &[usize],
    cols: &[T],
    ld: usize,
    col0: usize,
    padded: &mut [T],
) {
    let (w, positions) = (g.out_w, g.out_h * g.out_w);
    for (row, &start) in starts.iter().enumerate() {
        let src = &cols[row * ld + col0..][..positions];
        for (i, src) in src.chunks_exact(w).enumerate() {
            add_row::<T, W>(&mut padded[start + i * pad.pw..][..w], src);
        }
    }
}

/// cols[K × S·P] = the im2col matrices of a piece's S samples `x` side by side, through `padded` (one
/// sample's [`Padded`] planes).
fn im2col_piece<T: Real>(
    g: &ConvGeom,
    pad: &Padded,
    starts: &[usize],
    x: &[T],
    padded: &mut [T],
    cols: &mut [T],
) {
    let (x_sample, positions) = (g.in_c * g.in_h * g.in_w, g.out_h * g.out_w);
    let ld = x.len() / x_sample * positions;
    padded.fill(T::zero());
    for (s, x) in x.chunks(x_sample).enumerate() {
        pad.fill(g, x, padded);
        im2col(g, pad, starts, padded, cols, (ld, s * positions));
    }
}

/// dx (+ dx when `accumulate`) = col2im of cols[K × S·P] for a piece's S samples. Each sample's gradient
/// gathers in its padded planes, starting from dx (or zero), and its interior is then stored back: every
/// pixel sees the same additions in the same order as if they went to dx directly. The border collects
/// the padding taps' terms, which belong to no pixel and are never stored.
fn col2im_piece<T: Real>(
    g: &ConvGeom,
    pad: &Padded,
    starts: &[usize],
    cols: &[T],
    padded: &mut [T],
    dx: &mut [T],
    accumulate: bool,
) {
    let (x_sample, positions) = (g.in_c * g.in_h * g.in_w, g.out_h * g.out_w);
    let ld = dx.len() / x_sample * positions;
    for (s, dx) in dx.chunks_mut(x_sample).enumerate() {
        padded.fill(T::zero());
        if accumulate {
            pad.fill(g, dx, padded);
        }
        col2im_add(g, pad, starts, cols, (ld, s * positions), padded);
        pad.store(g, padded, dx);
    }
}

/// packed[o, s·P + p] = t[s, o, p] for the S samples of a piece of an [S, out_c, P] tensor.
fn pack_channels<T: Real>(t: &[T], packed: &mut [T], channels: usize, positions: usize) {
    let samples = t.len() / (channels * positions);
    let ld = samples * positions;
    for (s, sample) in t.chunks(channels * positions).enumerate() {
        for (o, row) in sample.chunks(positions).enumerate() {
            packed[o * ld + s * positions..][..positions].copy_from_slice(row);
        }
    }
}

/// The inverse of [`pack_channels`]: t[s, o, p] = packed[o, s·P + p].
fn unpack_channels<T: Real>(packed: &[T], t: &mut [T], channels: usize, positions: usize) {
    let samples = t.len() / (channels * positions);
    let ld = samples * positions;
    for (s, sample) in t.chunks_mut(channels * positions).enumerate() {
        for (o, row) in sample.chunks_mut(positions).enumerate() {
            row.copy_from_slice(&packed[o * ld + s * positions..][..positions]);
        }
    }
}

/// For a stride-1 convolution with fewer output than input channels and a square kernel, the forward
/// convolution that computes its data gradient: dy as the input, in_c outputs, padding k − 1 − p.
fn flipped_geometry(g: &ConvGeom) -> Option<ConvGeom> {
    (g.stride == 1 && g.k_h == g.k_w && g.pad < g.k_h && g.out_c < g.in_c).then(|| ConvGeom {
        batch: g.batch,
        in_c: g.out_c,
        in_h: g.out_h,
        in_w: g.out_w,
        out_c: g.in_c,
        out_h: g.in_h,
        out_w: g.in_w,
        k_h: g.k_h,
        k_w: g.k_w,
        stride: 1,
        pad: g.k_h - 1 - g.pad,
    })
}

/// y[n, o, i, j] = Σ_{c, a, b} x[n, c, i·s − p + a, j·s − p + b] · w[o, c, a, b].
/// Per piece of S samples: out[out_c × S·P] = w · cols[K × S·P], then out is unpacked into y.
pub fn conv2d<T: Real>(g: &ConvGeom, x: &[T], w: &[T], y: &mut [T], scratch: &Scratch<T>) {
    if conv_single::applies(g) {
        return conv_single::forward(g, x, &w[..g.w_len()], y, scratch);
    }
    let (k, positions) = cols_shape(g);
    let (x_sample, y_sample) = (g.in_c * g.in_h * g.in_w, g.out_c * positions);
    let piece = piece_samples(g);
    let pad = Padded::new(g);
    let starts = pad.starts(g);
    let w = &w[..g.w_len()];
    y[..g.y_len()]
        .par_chunks_mut(y_sample * piece)
        .zip(x[..g.x_len()].par_chunks(x_sample * piece))
        .for_each(|(y, x)| {
            let ld = (y.len() / y_sample) * positions;
            scratch.thread(k * ld + g.out_c * ld + pad.len(g), |buf| {
                let (cols, rest) = buf.split_at_mut(k * ld);
                let (out, padded) = rest.split_at_mut(g.out_c * ld);
                im2col_piece(g, &pad, &starts, x, padded, cols);
                gemm((g.out_c, k, ld), w, (k, 1), cols, (ld, 1), out, ld, false);
                unpack_channels(out, y, g.out_c, positions);
            })
        });
}

/// dx = ∂L/∂x of [`conv2d`] (+ dx when `accumulate`): dx[n] = col2im(wᵀ · dy[n]).
/// Per piece of S samples: cols[K × S·P] = wᵀ · dy packed as [out_c × S·P], then col2im per sample.
pub fn conv2d_backward_data<T: Real>(
    g: &ConvGeom,
    dy: &[T],
    w: &[T],
    dx: &mut [T],
    accumulate: bool,
    scratch: &Scratch<T>,
) {
    if conv_single::applies(g) {
        let w = &w[..g.w_len()];
        return conv_single::backward_data(g, dy, w, dx, accumulate, scratch);
    }
    if let (Some(flipped), false) = (flipped_geometry(g), accumulate) {
        // A stride-1 data gradient is a forward convolution of dy with the kernel flipped and its channels
        // swapped: one GEMM over K' = out_c·k·k and no col2im. It pays when out_c < in_c, where the
        // direct form's GEMM has only out_c for its inner dimension.
        let mut wf = vec![T::zero(); g.w_len()];
        let taps = g.k_h * g.k_w;
        for o in 0..g.out_c {
            for c in 0..g.in_c {
                for t in 0..taps {
                    wf[(c * g.out_c + o) * taps + (taps - 1 - t)] = w[(o * g.in_c + c) * taps + t];
                }
            }
        }
        return conv2d(&flipped, dy, &wf, dx, scratch);
    }
    let (k, positions) = cols_shape(g);
    let (x_sample, y_sample) = (g.in_c * g.in_h * g.in_w, g.out_c * positions);
    let piece = piece_samples(g);
    let pad = Padded::new(g);
    let starts = pad.starts(g);
    let w = &w[..g.w_len()];
    dx[..g.x_len()]
        .par_chunks_mut(x_sample * piece)
        .zip(dy[..g.y_len()].par_chunks(y_sample * piece))
        .for_each(|(dx, dy)| {
            let ld = (dy.len() / y_sample) * positions;
            scratch.thread(k * ld + g.out_c * ld + pad.len(g), |buf| {
                let (cols, rest) = buf.split_at_mut(k * ld);
                let (packed, padded) = rest.split_at_mut(g.out_c * ld);
                pack_channels(dy, packed, g.out_c, positions);
                gemm(
                    (k, g.out_c, ld),
                    w,
                    (1, k),
                    packed,
                    (ld, 1),
                    cols,
                    ld,
                    false,
                );
                // Each sample's gradient gathers in its padded planes, starting from dx (or zero), and
                // its interior is then stored back: every pixel sees the same additions in the same order
                // as if they went to dx directly. The border collects the padding taps' terms, which
                // belong to no pixel and are never stored.
                col2im_piece(g, &pad, &starts, cols, padded, dx, accumulate);
            })
        });
}

/// dw = ∂L/∂w of [`conv2d`] (+ dw when `accumulate`): dw = Σ_n dy[n] · im2col(x[n])ᵀ. Each piece of S
/// samples gives one partial, dy packed as [out_c × S·P] times cols[K × S·P]ᵀ; the partials are then added
/// in piece order.
pub fn conv2d_backward_weight<T: Real>(
    g: &ConvGeom,
    dy: &[T],
    x: &[T],
    dw: &mut [T],
    accumulate: bool,
    scratch: &Scratch<T>,
) {
    let (k, positions) = cols_shape(g);
    let (x_sample, y_sample) = (g.in_c * g.in_h * g.in_w, g.out_c * positions);
    let piece = piece_samples(g);
    let pad = Padded::new(g);
    let starts = pad.starts(g);
    let len = g.w_len();
    let pieces = g.batch.div_ceil(piece);
    scratch.shared(pieces * len, |partials| {
        partials
            .par_chunks_mut(len)
            .zip(x[..g.x_len()].par_chunks(x_sample * piece))
            .zip(dy[..g.y_len()].par_chunks(y_sample * piece))
            .for_each(|((partial, x), dy)| {
                if conv_single::applies(g) {
                    return conv_single::weight_partial(g, dy, x, partial, scratch);
                }
                let ld = (dy.len() / y_sample) * positions;
                scratch.thread(k * ld + g.out_c * ld + pad.len(g), |buf| {
                    let (cols, rest) = buf.split_at_mut(k * ld);
                    let (packed, padded) = rest.split_at_mut(g.out_c * ld);
                    im2col_piece(g, &pad, &starts, x, padded, cols);
                    pack_channels(dy, packed, g.out_c, positions);
                    gemm(
                        (g.out_c, ld, k),
                        packed,
                        (ld, 1),
                        cols,
                        (1, ld),
                        partial,
                        k,
                        false,
                    );
                })
            });
        let partials = &*partials;
        // Every element adds the pieces' partials in piece order, onto dw or zero; a chunk of elements
        // takes one partial at a time, so the reads run along memory.
        dw[..len]
            .par_chunks_mut(4096)
            .enumerate()
            .for_each(|(chunk, d)| {
                if !accumulate {
                    d.fill(T::zero());
                }
                for partial in partials.chunks(len) {
                    for (d, &v) in d.iter_mut().zip(&partial[chunk * 4096..]) {
                        *d += v;
                    }
                }
            });
    });
}
