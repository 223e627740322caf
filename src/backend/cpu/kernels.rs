//! CPU twins of the WGSL kernels: the reference every GPU kernel is tested against.
//!
//! Each function computes exactly what the kernel of the same name in `shaders/` computes, in the same
//! layout, generic over f32 and f64. Work is split over threads in fixed-size pieces, so results do not depend
//! on scheduling: the same inputs give the same bits, run after run.

use super::real::Real;
use super::wide::wide;
use crate::ops::{Act, AdamHyper, LossKind};
use rayon::prelude::*;

/// Elements per parallel piece for element-wise loops.
const PIECE: usize = 1 << 14;
/// Elements per partial loss sum (the GPU's workgroup size).
pub const PARTIAL: usize = 256;

/// Copies rows `perm[batch_index·batch + r]` of the packed u8 data set into `out` scaled by 1/255;
/// rows past `samples` become zeros. Returns the number of valid rows.
pub fn gather_batch<T: Real>(
    data: &[u32],
    perm: &[u32],
    batch_index: usize,
    out: &mut [T],
    batch: usize,
    features: usize,
    samples: usize,
) -> usize {
    let first = batch_index * batch;
    out.par_chunks_mut(features)
        .take(batch)
        .enumerate()
        .for_each(|(r, row)| {
            let pos = first + r;
            if pos >= samples {
                row.fill(T::zero());
                return;
            }
            let sample = perm[pos] as usize;
            let scale = |byte: u32| T::from_f32(byte as f32 / 255.0);
            if cfg!(target_endian = "little") {
                // The packed words are the bytes themselves, in order.
                let bytes: &[u8] = bytemuck::cast_slice(data);
                let src = &bytes[sample * features..][..features];
                for (v, &b) in row.iter_mut().zip(src) {
                    *v = scale(b as u32);
                }
            } else {
                for (f, v) in row.iter_mut().enumerate() {
                    let byte = sample * features + f;
                    *v = scale((data[byte / 4] >> ((byte % 4) * 8)) & 0xff);
                }
            }
        });
    valid_rows(batch, samples, batch_index)
}

/// Rows of batch `batch_index` that hold real samples: min(batch, samples − batch_index·batch).
pub fn valid_rows(batch: usize, samples: usize, batch_index: usize) -> usize {
    samples.saturating_sub(batch_index * batch).min(batch)
}

/// C[m×n] = op(A)·op(B) (+ C when `accumulate`); A is [m×k] or, transposed, [k×m]; B is [k×n] or [n×k].
///
/// C is cut into one block per thread, along the rows (each block re-packs all of B) or the columns (each
/// re-packs all of A), whichever copies less. Every element is still one dot product over k in the GEMM's
/// fixed order, so where the cuts fall does not change a bit of the result.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(
    a: &[T],
    b: &[T],
    c: &mut [T],
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    accumulate: bool,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "matmul: buffers too small for {m}×{k}·{k}×{n}"
    );
    let (rsa, csa) = if trans_a { (1, m) } else { (k, 1) };
    let (rsb, csb) = if trans_b { (1, k) } else { (n, 1) };
    let beta = if accumulate { T::one() } else { T::zero() };
    // Below this many multiply-adds a second thread costs more than it saves.
    const MIN_PARALLEL: usize = 1 << 16;
    let threads = if m * n * k < MIN_PARALLEL {
        1
    } else {
        rayon::current_num_threads().max(1)
    };
    let by_rows = m >= n;
    let span = if by_rows { m } else { n };
    let block = span.div_ceil(threads).max(8);
    let (a_ptr, b_ptr, c_ptr) = (
        a.as_ptr() as usize,
        b.as_ptr() as usize,
        c.as_mut_ptr() as usize,
    );
    (0..span.div_ceil(block)).into_par_iter().for_each(|piece| {
        let first = piece * block;
        let len = block.min(span - first);
        let (rows, cols) = if by_rows { (len, n) } else { (m, len) };
        let (a_off, b_off, c_off) = if by_rows {
            (first * rsa, 0, first * n)
        } else {
            (0, first * csb, first)
        };
        // SAFETY: the asserted lengths cover every strided access; the blocks of C are disjoint (rows
        // [first, first + len) or columns [first, first + len)), so no two pieces write the same element.
        unsafe {
            T::gemm(
                rows,
                k,
                cols,
                T::one(),
                (a_ptr as *const T).add(a_off),
                rsa as isize,
                csa as isize,
                (b_ptr as *const T).add(b_off),
                rsb as isize,
                csb as isize,
                beta,
                (c_ptr as *mut T).add(c_off),
                n as isize,
                1,
            )
        }
    });
}

/// Runs `$body` with `$a` bound to `act` as a constant, so that [`activate`] and [`activation_slope`] inline
/// to one branch-free expression and the loop around them vectorizes.
macro_rules! per_act {
    ($act:expr, |$a:ident| $body:expr) => {
        match $act {
            Act::Identity => {
                const $a: Act = Act::Identity;
                $body
            }
            Act::Relu => {
                const $a: Act = Act::Relu;
                $body
            }
            Act::LeakyRelu => {
                const $a: Act = Act::LeakyRelu;
                $body
            }
            Act::Sigmoid => {
                const $a: Act = Act::Sigmoid;
                $body
            }
            Act::Tanh => {
                const $a: Act = Act::Tanh;
                $body
            }
        }
    };
}

#[inline(always)]
pub fn activate<T: Real>(x: T, act: Act) -> T {
    match act {
        Act::Identity => x,
        Act::Relu => x.max(T::zero()),
        Act::LeakyRelu => {
            if x > T::zero() {
                x
            } else {
                x * T::from_f32(Act::LEAKY_SLOPE)
            }
        }
        Act::Sigmoid => sigmoid_parts(x).1,
        Act::Tanh => x.tanh(),
    }
}

/// (e, σ(x)) with e = exp(−|x|) ∈ (0, 1]: σ(x) = 1/(1+e) for x ≥ 0 and e/(1+e) below, so nothing
/// overflows, and callers that also need log(1 + exp(−|x|)) reuse e.
#[inline(always)]
fn sigmoid_parts<T: Real>(x: T) -> (T, T) {
    let e = (-x.abs()).exp_nonpositive();
    let d = T::one() + e;
    let y = if x >= T::zero() { T::one() / d } else { e / d };
    (e, y)
}

/// act'(x) written through y = act(x).
#[inline(always)]
pub fn activation_slope<T: Real>(y: T, act: Act) -> T {
    match act {
        Act::Identity => T::one(),
        Act::Relu => {
            if y > T::zero() {
                T::one()
            } else {
                T::zero()
            }
        }
        Act::LeakyRelu => {
            if y > T::zero() {
                T::one()
            } else {
                T::from_f32(Act::LEAKY_SLOPE)
            }
        }
        Act::Sigmoid => y * (T::one() - y),
        Act::Tanh => T::one() - y * y,
    }
}

/// In place: y[r, c, s] = act(y[r, c, s] + bias[c]).
pub fn bias_act<T: Real>(
    y: &mut [T],
    bias: &[T],
    rows: usize,
    channels: usize,
    inner: usize,
    act: Act,
) {
    y[..rows * channels * inner]
        .par_chunks_mut(channels * inner)
        .for_each(|row| {
            if inner == 1 {
                // Dense layers: one bias per element of the row.
                per_act!(act, |A| for (v, &b) in row.iter_mut().zip(bias) {
                    *v = activate(*v + b, A);
                })
            } else {
                for (plane, &b) in row.chunks_mut(inner).zip(bias) {
                    per_act!(act, |A| for v in plane.iter_mut() {
                        *v = activate(*v + b, A);
                    })
                }
            }
        });
}

/// In place: grad ← grad ⊙ act'(y).
pub fn act_backward<T: Real>(y: &[T], grad: &mut [T], act: Act) {
    grad.par_chunks_mut(PIECE)
        .zip(y.par_chunks(PIECE))
        .for_each(|(g, y)| {
            per_act!(act, |A| for (g, &y) in g.iter_mut().zip(y) {
                *g *= activation_slope(y, A);
            })
        });
}

/// db[c] = Σ_{r, s} grad[r, c, s]: dense layers (inner = 1) in r order, convolutions in 8 lanes per channel
/// ([`lane_accumulate`]).
pub fn bias_grad<T: Real>(grad: &[T], db: &mut [T], rows: usize, channels: usize, inner: usize) {
    if inner == 1 {
        // Dense layers: add whole rows, so the loop runs along memory (same order per element).
        const CHANNELS_PER_PIECE: usize = 256;
        db[..channels]
            .par_chunks_mut(CHANNELS_PER_PIECE)
            .enumerate()
            .for_each(|(piece, db)| {
                let c0 = piece * CHANNELS_PER_PIECE;
                db.fill(T::zero());
                for r in 0..rows {
                    let row = &grad[r * channels + c0..][..db.len()];
                    for (d, &g) in db.iter_mut().zip(row) {
                        *d += g;
                    }
                }
            });
        return;
    }
    db[..channels]
        .par_iter_mut()
        .enumerate()
        .for_each(|(c, d)| {
            let mut lanes = [T::zero(); 8];
            for r in 0..rows {
                let start = (r * channels + c) * inner;
                lane_accumulate(&mut lanes, &grad[start..start + inner]);
            }
            *d = fold_lanes(&lanes);
        });
}

/// lanes[i mod 8] += values[i], values taken in order: a fixed order that vectorizes.
pub fn lane_accumulate<T: Real>(lanes: &mut [T; 8], values: &[T]) {
    let whole = values.len() - values.len() % 8;
    for chunk in values[..whole].chunks_exact(8) {
        for l in 0..8 {
            lanes[l] += chunk[l];
        }
    }
    for (l, &v) in values[whole..].iter().enumerate() {
        lanes[l] += v;
    }
}

/// The lanes of [`lane_accumulate`] added in order.
pub fn fold_lanes<T: Real>(lanes: &[T; 8]) -> T {
    lanes.iter().fold(T::zero(), |s, &l| s + l)
}

/// Σ values in 8 interleaved lanes, the lanes then added in order.
pub fn lane_sum<T: Real>(values: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    lane_accumulate(&mut lanes, values);
    fold_lanes(&lanes)
}

/// Runs `$body` with `$k` and `$a` bound to the loss kind and output activation as constants, so that
/// [`loss_element`] inlines to one branch-free expression (as [`per_act!`] does for activations).
macro_rules! per_loss {
    ($kind:expr, $act:expr, |$k:ident, $a:ident| $body:expr) => {
        match $kind {
            LossKind::BceWithLogits => {
                const $k: LossKind = LossKind::BceWithLogits;
                // BCE with logits ignores the output activation (the reconstruction is the sigmoid).
                #[allow(non_snake_case)]
                let $a = $act;
                $body
            }
            LossKind::Mse => {
                const $k: LossKind = LossKind::Mse;
                per_act!($act, |$a| $body)
            }
            LossKind::L1 => {
                const $k: LossKind = LossKind::L1;
                per_act!($act, |$a| $body)
            }
        }
    };
}

/// Per-element loss and ∂(mean loss)/∂logits over the first `valid` rows (later rows get zero gradient and
/// contribute nothing); `recon` = output_act(logits); `partials[i]` sums the losses of elements
/// [256·i, 256·i + 256).
#[allow(clippy::too_many_arguments)]
pub fn loss<T: Real>(
    kind: LossKind,
    output_act: Act,
    logits: &[T],
    target: &[T],
    grad: &mut [T],
    recon: &mut [T],
    partials: &mut [T],
    valid: usize,
    cols: usize,
    per_sample: bool,
) {
    let scale = mean_scale::<T>(valid, cols, per_sample);
    let limit = valid * cols;
    let count = partials.len();
    // Each parallel task takes PARTIALS_PER_TASK partials (a task per partial would cost more in rayon's
    // bookkeeping than the partial's arithmetic).
    const PARTIALS_PER_TASK: usize = 64;
    partials
        .par_chunks_mut(PARTIALS_PER_TASK)
        .zip(grad.par_chunks_mut(PARTIAL * PARTIALS_PER_TASK))
        .zip(recon.par_chunks_mut(PARTIAL * PARTIALS_PER_TASK))
        .enumerate()
        .for_each(|(task, ((partials, grad), recon))| {
            let pieces = grad.chunks_mut(PARTIAL).zip(recon.chunks_mut(PARTIAL));
            for (chunk, (partial, (g, r))) in partials.iter_mut().zip(pieces).enumerate() {
                let first = (task * PARTIALS_PER_TASK + chunk) * PARTIAL;
                let (z, x) = (&logits[first..][..g.len()], &target[first..][..g.len()]);
                let mut losses = [T::zero(); PARTIAL];
                // Element by element with no branch, so the loop vectorizes; rows past `valid` are then
                // cleared and left out of the sum.
                per_loss!(kind, output_act, |K, OUT_ACT| wide(|| {
                    loss_piece(K, OUT_ACT, scale, &mut losses, g, r, z, x)
                }));
                let valid_here = limit.saturating_sub(first).min(g.len());
                g[valid_here..].fill(T::zero());
                *partial = lane_sum(&losses[..valid_here]);
            }
        });
    debug_assert_eq!(count, logits.len().div_ceil(PARTIAL).min(count));
}

/// One partial's elements of [`loss`]: losses, scaled gradients and reconstructions. Always inlined, so
/// that inside [`wide`] it is compiled for the wide vectors (a closure called from several places may not be).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn loss_piece<T: Real>(
    kind: LossKind,
    act: Act,
    scale: T,
    losses: &mut [T],
    g: &mut [T],
    r: &mut [T],
    z: &[T],
    x: &[T],
) {
    let outputs = losses.iter_mut().zip(g.iter_mut()).zip(r.iter_mut());
    for (((l, g), r), (&z, &x)) in outputs.zip(z.iter().zip(x)) {
        let (loss, dz, y) = loss_element(kind, act, z, x);
        (*l, *g, *r) = (loss, dz * scale, y);
    }
}

/// 1/(the count a loss is a mean over): every valid element (valid·cols), or with `per_sample` the valid
/// rows, each row's loss summed over its columns.
pub fn mean_scale<T: Real>(valid: usize, cols: usize, per_sample: bool) -> T {
    let per = if per_sample { 1 } else { cols };
    T::one() / T::from_f64((valid.max(1) * per) as f64)
}

/// (loss, ∂loss/∂z, reconstruction) for one element with logit z and target x.
#[inline(always)]
pub fn loss_element<T: Real>(kind: LossKind, output_act: Act, z: T, x: T) -> (T, T, T) {
    match kind {
        LossKind::BceWithLogits => {
            // One exp serves both the reconstruction and log(1 + exp(−|z|)) = ln(1 + e).
            let (e, y) = sigmoid_parts(z);
            let l = z.max(T::zero()) - z * x + (T::one() + e).ln_one_to_two();
            (l, y - x, y)
        }
        LossKind::Mse => {
            let y = activate(z, output_act);
            let d = y - x;
            (
                d * d,
                T::from_f64(2.0) * d * activation_slope(y, output_act),
                y,
            )
        }
        LossKind::L1 => {
            let y = activate(z, output_act);
            let d = y - x;
            let sign = if d > T::zero() {
                T::one()
            } else if d < T::zero() {
                -T::one()
            } else {
                T::zero()
            };
            (d.abs(), sign * activation_slope(y, output_act), y)
        }
    }
}

/// Σ partials, in index order.
pub fn reduce_sum<T: Real>(partials: &[T]) -> T {
    let mut sum = T::zero();
    for &p in partials {
        sum += p;
    }
    sum
}

/// Adam at step t (1-based), PyTorch semantics with L2 weight decay:
/// g' = g + wd·p; m ← β₁m + (1−β₁)g'; v ← β₂v + (1−β₂)g'²; p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
pub fn adam<T: Real>(param: &mut [T], grad: &[T], m: &mut [T], v: &mut [T], t: u32, h: AdamHyper) {
    let k = AdamStep::new(t, h);
    param
        .par_chunks_mut(PIECE)
        .zip(grad.par_chunks(PIECE))
        .zip(m.par_chunks_mut(PIECE))
        .zip(v.par_chunks_mut(PIECE))
        .for_each(|(((p, g), m), v)| wide(|| k.run(p, g, m, v)));
}

/// The constants of one [`adam`] step, worked out once for all pieces.
#[derive(Clone, Copy)]
struct AdamStep<T> {
    b1: T,
    b2: T,
    /// lr / (1 − β₁ᵗ).
    step: T,
    /// √(1 − β₂ᵗ).
    bc2_sqrt: T,
    eps: T,
    /// L2 weight decay added to the gradient (0 for AdamW).
    wd: T,
    /// 1 − lr·wd for AdamW (decoupled decay shrinks the parameter instead), else 1.
    shrink: T,
}

impl<T: Real> AdamStep<T> {
    fn new(t: u32, h: AdamHyper) -> Self {
        let (b1, b2) = (T::from_f32(h.beta1), T::from_f32(h.beta2));
        let bc1 = T::one() - b1.powi(t as i32);
        let bc2 = T::one() - b2.powi(t as i32);
        let wd = T::from_f32(h.weight_decay);
        let (shrink, wd) = match h.decoupled {
            true => (T::one() - T::from_f32(h.lr) * wd, T::zero()),
            false => (T::one(), wd),
        };
        AdamStep {
            b1,
            b2,
            step: T::from_f32(h.lr) / bc1,
            bc2_sqrt: bc2.sqrt(),
            eps: T::from_f32(h.eps),
            wd,
            shrink,
        }
    }

    /// The update of one piece: zipped iterators (no bounds checks), the same operations per element as
    /// written out in [`adam`]'s docs, in the same order. Always inlined, so that inside [`wide`] it is
    /// compiled wide.
    #[inline(always)]
    fn run(self, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
        let one = T::one();
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *p *= self.shrink;
            let g = g + self.wd * *p;
            *m = self.b1 * *m + (one - self.b1) * g;
            *v = self.b2 * *v + (one - self.b2) * g * g;
            *p -= self.step * *m / (v.sqrt() / self.bc2_sqrt + self.eps);
        }
    }
}

/// SGD with momentum, PyTorch semantics: g' = g + wd·p; buf ← μ·buf + g'; p ← p − lr·buf.
pub fn sgd<T: Real>(
    param: &mut [T],
    grad: &[T],
    velocity: &mut [T],
    lr: f32,
    momentum: f32,
    weight_decay: f32,
) {
    let (lr, mu, wd) = (
        T::from_f32(lr),
        T::from_f32(momentum),
        T::from_f32(weight_decay),
    );
    for i in 0..param.len() {
        let g = grad[i] + wd * param[i];
        velocity[i] = mu * velocity[i] + g;
        param[i] -= lr * velocity[i];
    }
}
