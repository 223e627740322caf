//! Dispatches of RMSprop, Adagrad and the learning-rate schedule ([`OptimOp`]): `shaders/optim.wgsl`,
//! beside Adam and SGD (in `kernels.rs`). Every optimizer binds the scalar buffer at binding 10 for its lr
//! multiplier.

use super::kernels::{Dispatch, Kernels, Shader, adam_params, linear_groups};
use crate::ops::{BufId, OptimOp, Scalar};

/// The lr multiplier an optimizer reads: (its index in the scalar buffer, that buffer), or, without a
/// schedule, the index that means 1 and a read-only buffer the op binds anyway (its gradient), since an
/// entry point's bindings must all be filled.
pub(super) fn scale_binding(
    bufs: &[wgpu::Buffer],
    scale: Option<Scalar>,
    fallback: BufId,
) -> (u32, &wgpu::Buffer) {
    match scale {
        Some(s) => (s.index as u32, &bufs[s.buf.0]),
        None => (u32::MAX, &bufs[fallback.0]),
    }
}

impl Kernels {
    pub fn optim(&mut self, bufs: &[wgpu::Buffer], op: &OptimOp) -> Dispatch {
        let b = |id: BufId| &bufs[id.0];
        let bits = f32::to_bits;
        match *op {
            OptimOp::Rmsprop {
                param,
                grad,
                square_avg,
                len,
                hyper: h,
                lr_scale,
            } => {
                let (index, scalars) = scale_binding(bufs, lr_scale, grad);
                self.dispatch(
                    Shader::Optim,
                    "rmsprop",
                    &[
                        len as u32,
                        bits(h.lr),
                        bits(h.alpha),
                        bits(h.eps),
                        bits(h.weight_decay),
                        index,
                    ],
                    &[11, 12, 13, 14, 10],
                    &[b(param), b(grad), b(square_avg), scalars],
                    linear_groups(len),
                )
            }
            OptimOp::Adagrad {
                param,
                grad,
                sum,
                state,
                step_word,
                len,
                hyper: h,
                lr_scale,
            } => {
                let (index, scalars) = scale_binding(bufs, lr_scale, grad);
                self.dispatch(
                    Shader::Optim,
                    "adagrad",
                    &[
                        len as u32,
                        bits(h.lr),
                        bits(h.lr_decay),
                        bits(h.eps),
                        bits(h.weight_decay),
                        step_word as u32,
                        index,
                    ],
                    &[15, 16, 17, 18, 19, 10],
                    &[b(param), b(grad), b(sum), b(state), scalars],
                    linear_groups(len),
                )
            }
            OptimOp::AdamMixed {
                param,
                grad,
                half,
                m,
                v,
                state,
                step_word,
                amp,
                len,
                hyper: h,
                lr_scale,
            } => {
                let (index, scalars) = scale_binding(bufs, lr_scale, grad);
                let params = adam_params(h, len, step_word, index);
                let mut buffers = vec![b(param), b(grad), b(m), b(v), b(state), b(amp), scalars];
                let mut bindings = vec![23, 24, 25, 26, 27, 28, 29, 10];
                let entry = match half {
                    Some(half) => {
                        buffers.push(b(half));
                        bindings.push(30);
                        "adam_mixed_half"
                    }
                    None => "adam_mixed",
                };
                self.dispatch(
                    Shader::Optim,
                    entry,
                    &params,
                    &bindings,
                    &buffers,
                    linear_groups(len),
                )
            }
            OptimOp::AmpCheck { grad, amp, len } => self.dispatch(
                Shader::Amp,
                "amp_check",
                &[len as u32],
                &[0, 1, 2],
                &[b(grad), b(amp)],
                linear_groups(len),
            ),
            OptimOp::AmpUpdate { amp } => self.dispatch(
                Shader::Amp,
                "amp_update",
                &[crate::ops::optim::amp::GROWTH_INTERVAL],
                &[4, 3],
                &[b(amp)],
                [1, 1, 1],
            ),
            OptimOp::LrSchedule {
                scale,
                state,
                step_word,
                schedule,
            } => {
                let (kind, span, gamma) = schedule.words();
                self.dispatch(
                    Shader::Optim,
                    "lr_schedule",
                    &[
                        scale.index as u32,
                        step_word as u32,
                        schedule.warmup as u32,
                        kind,
                        span,
                        bits(gamma),
                    ],
                    &[20, 21, 22],
                    &[b(scale.buf), b(state)],
                    [1, 1, 1],
                )
            }
        }
    }
}
