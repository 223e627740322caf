//! Dispatches of the objective terms' ops ([`TermOp`]): `shaders/terms.wgsl`, and `loss_emphasis` in
//! `shaders/loss.wgsl`. Every entry point of terms.wgsl takes the same uniform (`TermParams`) at binding
//! 0 and the program's state at binding 1, then its own buffers.

use super::kernels::{Dispatch, Kernels, Shader, linear_groups};
use crate::ops::terms::TapFn;
use crate::ops::{Act, BufId, TermOp};

/// `TermParams` of terms.wgsl.
struct TermParams {
    rows: usize,
    cols: usize,
    inputs: usize,
    act: Act,
    tap_fn: TapFn,
    /// The element of the scalar buffer that holds the weight.
    weight: usize,
    rho: f32,
}

impl TermParams {
    fn new(rows: usize, cols: usize) -> TermParams {
        TermParams {
            rows,
            cols,
            inputs: 0,
            act: Act::Identity,
            tap_fn: TapFn::Value,
            weight: 0,
            rho: 0.0,
        }
    }

    fn words(&self) -> [u32; 8] {
        [
            self.rows as u32,
            self.cols as u32,
            self.inputs as u32,
            self.act.code(),
            self.tap_fn.code(),
            self.weight as u32,
            self.rho.to_bits(),
            0,
        ]
    }
}

impl Kernels {
    /// One terms.wgsl entry point: `buffers` (after the state) at `bindings`, over `threads` threads.
    fn term_dispatch(
        &mut self,
        entry: &'static str,
        params: TermParams,
        state: &wgpu::Buffer,
        bindings: &[u32],
        buffers: &[&wgpu::Buffer],
        threads: usize,
    ) -> Dispatch {
        let mut all_bindings = vec![0, 1];
        all_bindings.extend_from_slice(bindings);
        let mut all = vec![state];
        all.extend_from_slice(buffers);
        self.dispatch(
            Shader::Terms,
            entry,
            &params.words(),
            &all_bindings,
            &all,
            linear_groups(threads),
        )
    }

    pub fn term(&mut self, bufs: &[wgpu::Buffer], op: &TermOp) -> Dispatch {
        let b = |id: BufId| &bufs[id.0];
        match *op {
            TermOp::TapSum {
                x,
                state,
                partials,
                rows,
                cols,
                f,
            } => self.term_dispatch(
                "tap_sum",
                TermParams {
                    tap_fn: f,
                    ..TermParams::new(rows, cols)
                },
                b(state),
                &[2, 3],
                &[b(x), b(partials)],
                rows * cols,
            ),
            TermOp::L1Grad {
                x,
                grad,
                state,
                rows,
                cols,
                weight,
            } => self.term_dispatch(
                "l1_grad",
                TermParams {
                    weight: weight.index,
                    ..TermParams::new(rows, cols)
                },
                b(state),
                &[4, 5, 22],
                &[b(x), b(grad), b(weight.buf)],
                rows * cols,
            ),
            TermOp::BinarizeGrad {
                x,
                grad,
                state,
                rows,
                cols,
                weight,
            } => self.term_dispatch(
                "binarize_grad",
                TermParams {
                    weight: weight.index,
                    ..TermParams::new(rows, cols)
                },
                b(state),
                &[23, 24, 22],
                &[b(x), b(grad), b(weight.buf)],
                rows * cols,
            ),
            TermOp::BitBalance {
                b: code,
                means,
                partials,
                state,
                rows,
                cols,
            } => self.term_dispatch(
                "bit_balance",
                TermParams::new(rows, cols),
                b(state),
                &[25, 26, 27],
                &[b(code), b(means), b(partials)],
                cols,
            ),
            TermOp::BitBalanceGrad {
                means,
                grad,
                state,
                rows,
                cols,
                weight,
            } => self.term_dispatch(
                "bit_balance_grad",
                TermParams {
                    weight: weight.index,
                    ..TermParams::new(rows, cols)
                },
                b(state),
                &[28, 29, 22],
                &[b(means), b(grad), b(weight.buf)],
                rows * cols,
            ),
            TermOp::CenterColumns {
                x,
                centered,
                state,
                rows,
                cols,
            } => self.term_dispatch(
                "center_columns",
                TermParams::new(rows, cols),
                b(state),
                &[30, 31],
                &[b(x), b(centered)],
                cols,
            ),
            TermOp::Decorrelate {
                cov,
                partials,
                state,
                cols,
            } => self.term_dispatch(
                "decorrelate",
                TermParams::new(cols, cols),
                b(state),
                &[32, 33],
                &[b(cov), b(partials)],
                cols * cols,
            ),
            TermOp::DecorrelateGrad {
                centered,
                cov,
                grad,
                state,
                rows,
                cols,
                weight,
            } => self.term_dispatch(
                "decorrelate_grad",
                TermParams {
                    weight: weight.index,
                    ..TermParams::new(rows, cols)
                },
                b(state),
                &[34, 35, 36, 22],
                &[b(centered), b(cov), b(grad), b(weight.buf)],
                rows * cols,
            ),
            TermOp::KlSparsity {
                h,
                rho_hat,
                partials,
                state,
                rows,
                cols,
                rho,
            } => self.term_dispatch(
                "kl_sparsity",
                TermParams {
                    rho,
                    ..TermParams::new(rows, cols)
                },
                b(state),
                &[6, 7, 8],
                &[b(h), b(rho_hat), b(partials)],
                cols,
            ),
            TermOp::KlSparsityGrad {
                rho_hat,
                grad,
                state,
                rows,
                cols,
                rho,
                weight,
            } => self.term_dispatch(
                "kl_sparsity_grad",
                TermParams {
                    rho,
                    weight: weight.index,
                    ..TermParams::new(rows, cols)
                },
                b(state),
                &[9, 10, 22],
                &[b(rho_hat), b(grad), b(weight.buf)],
                rows * cols,
            ),
            TermOp::Contractive {
                h,
                w,
                wsq,
                c,
                partials,
                state,
                rows,
                units,
                inputs,
                act,
            } => self.term_dispatch(
                "contractive",
                TermParams {
                    inputs,
                    act,
                    ..TermParams::new(rows, units)
                },
                b(state),
                &[11, 12, 13, 14, 15],
                &[b(h), b(w), b(wsq), b(c), b(partials)],
                units,
            ),
            TermOp::ContractiveGradCode {
                h,
                wsq,
                grad,
                state,
                rows,
                units,
                act,
                weight,
            } => self.term_dispatch(
                "contractive_grad_code",
                TermParams {
                    act,
                    weight: weight.index,
                    ..TermParams::new(rows, units)
                },
                b(state),
                &[16, 17, 18, 22],
                &[b(h), b(wsq), b(grad), b(weight.buf)],
                rows * units,
            ),
            TermOp::ContractiveGradWeight {
                w,
                c,
                dw,
                state,
                rows,
                units,
                inputs,
                weight,
            } => self.term_dispatch(
                "contractive_grad_weight",
                TermParams {
                    inputs,
                    weight: weight.index,
                    ..TermParams::new(rows, units)
                },
                b(state),
                &[19, 20, 21, 22],
                &[b(w), b(c), b(dw), b(weight.buf)],
                units * inputs,
            ),
            TermOp::EmphasisLoss {
                kind,
                output_act,
                logits,
                target,
                mask,
                grad,
                recon,
                partials,
                state,
                rows,
                cols,
                corrupted,
                clean,
                per_sample,
            } => {
                let params = [
                    rows as u32,
                    cols as u32,
                    kind.code(),
                    output_act.code(),
                    corrupted.to_bits(),
                    clean.to_bits(),
                    per_sample as u32,
                ];
                self.dispatch(
                    Shader::Loss,
                    "loss_emphasis",
                    &params,
                    &[7, 1, 2, 8, 3, 4, 5, 6],
                    &[
                        b(logits),
                        b(target),
                        b(mask),
                        b(grad),
                        b(recon),
                        b(partials),
                        b(state),
                    ],
                    linear_groups(rows * cols),
                )
            }
        }
    }
}
