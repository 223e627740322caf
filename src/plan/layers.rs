//! Per-layer scheduling: the buffers each layer owns, and the ops of its forward and backward passes.
//!
//! Forward and backward of a layer sit side by side in [`forward`] and [`backward`]; each arm states the
//! math it schedules.

use super::{Builder, Init, ParamDesc, Pass, Role, StatDesc};
use crate::model::{Layer, Shape, init};
use crate::ops::{Act, BufId, ConvGeom, Op, VaeOp};

/// PyTorch's BatchNorm2d defaults.
const BN_MOMENTUM: f32 = 0.1;
const BN_EPS: f32 = 1e-5;

/// Batch-norm statistics of one layer: this batch's (for backward) and the running ones (for evaluation).
#[derive(Clone, Copy)]
pub(super) struct NormBufs {
    mean: BufId,
    inv_std: BufId,
    running_mean: BufId,
    running_var: BufId,
}

/// The buffers of one layer, allocated once.
#[derive(Clone)]
pub(super) struct LayerBufs {
    pub input: BufId,
    pub output: BufId,
    /// ∂L/∂output, written by the next layer's backward (or by the loss).
    pub output_grad: BufId,
    /// ∂L/∂input: the previous layer's `output_grad`, or `None` for the first layer, whose input needs no
    /// gradient.
    pub input_grad: Option<BufId>,
    /// Indices into the plan's parameters.
    pub weight: Option<usize>,
    pub bias: Option<usize>,
    pub(super) argmax: Option<BufId>,
    pub(super) norm: Option<NormBufs>,
    /// The ε a sampling layer drew, for its backward.
    pub(super) eps: Option<BufId>,
}

fn param(
    b: &mut Builder,
    params: &mut Vec<ParamDesc>,
    name: String,
    shape: Vec<usize>,
    init: Init,
) -> usize {
    let len = shape.iter().product();
    let buf = b.f32(&name, len, Role::Param);
    let grad = b.f32(format!("{name}.grad"), len, Role::Grad);
    params.push(ParamDesc {
        name,
        shape,
        buf,
        grad,
        init,
        group: 0,
        trainable: true,
        half: None,
    });
    params.len() - 1
}

/// Allocates layer `i`'s parameters, statistics and activations (output and its gradient).
#[allow(clippy::too_many_arguments)]
pub(super) fn allocate(
    b: &mut Builder,
    params: &mut Vec<ParamDesc>,
    stats: &mut Vec<StatDesc>,
    i: usize,
    layer: &Layer,
    input: BufId,
    input_grad: Option<BufId>,
    out_shape: Shape,
    batch: usize,
) -> LayerBufs {
    let prefix = format!("layers.{i}");
    let mut weights = |b: &mut Builder, shape: Vec<usize>, fan_in: usize| {
        let bound = init::pytorch_bound(fan_in);
        let bias_len = shape[if matches!(layer, Layer::ConvTranspose2d { .. }) {
            1
        } else {
            0
        }];
        let w = param(
            b,
            params,
            format!("{prefix}.weight"),
            shape,
            Init::Uniform(bound),
        );
        let bias = param(
            b,
            params,
            format!("{prefix}.bias"),
            vec![bias_len],
            Init::Uniform(bound),
        );
        (Some(w), Some(bias))
    };
    let (mut weight, mut bias, mut argmax, mut norm, mut eps) = (None, None, None, None, None);
    match *layer {
        Layer::Linear {
            inputs, outputs, ..
        } => (weight, bias) = weights(b, vec![outputs, inputs], inputs),
        Layer::Conv2d { in_c, out_c, k, .. } => {
            (weight, bias) = weights(b, vec![out_c, in_c, k, k], in_c * k * k)
        }
        // PyTorch computes a transposed convolution's fan-in from weight.size(1) = out_c.
        Layer::ConvTranspose2d { in_c, out_c, k, .. } => {
            (weight, bias) = weights(b, vec![in_c, out_c, k, k], out_c * k * k)
        }
        Layer::MaxPool2 => {
            argmax = Some(b.add(
                format!("{prefix}.argmax"),
                batch * out_shape.numel(),
                super::Elem::U32,
                Role::Scratch,
            ))
        }
        Layer::BatchNorm2d { channels } => {
            weight = Some(param(
                b,
                params,
                format!("{prefix}.weight"),
                vec![channels],
                Init::Constant(1.0),
            ));
            bias = Some(param(
                b,
                params,
                format!("{prefix}.bias"),
                vec![channels],
                Init::Constant(0.0),
            ));
            let mut stat = |b: &mut Builder, name: &str, init: f32| {
                let name = format!("{prefix}.{name}");
                let buf = b.f32(&name, channels, Role::Stat);
                stats.push(StatDesc {
                    name,
                    shape: vec![channels],
                    buf,
                    init,
                });
                buf
            };
            let running_mean = stat(b, "running_mean", 0.0);
            let running_var = stat(b, "running_var", 1.0);
            let mean = b.f32(format!("{prefix}.batch_mean"), channels, Role::Scratch);
            let inv_std = b.f32(format!("{prefix}.batch_inv_std"), channels, Role::Scratch);
            norm = Some(NormBufs {
                mean,
                inv_std,
                running_mean,
                running_var,
            });
        }
        Layer::Reparameterize { latent } => {
            eps = Some(b.f32(format!("{prefix}.eps"), batch * latent, Role::Activation))
        }
        // The same values under another shape: the input's buffers are the output's (a first-layer
        // reshape, whose input has no gradient, gets one for the next layer to write).
        Layer::Reshape { .. } => {
            return LayerBufs {
                input,
                output: input,
                output_grad: input_grad.unwrap_or_else(|| {
                    b.f32(
                        format!("{prefix}.out.grad"),
                        batch * out_shape.numel(),
                        Role::ActivationGrad,
                    )
                }),
                input_grad,
                weight,
                bias,
                argmax,
                norm,
                eps,
            };
        }
        Layer::MaxUnpool2 { .. } | Layer::Upsample { .. } => {}
    }
    let len = batch * out_shape.numel();
    let output = b.f32(format!("{prefix}.out"), len, Role::Activation);
    let output_grad = b.f32(format!("{prefix}.out.grad"), len, Role::ActivationGrad);
    LayerBufs {
        input,
        output,
        output_grad,
        input_grad,
        weight,
        bias,
        argmax,
        norm,
        eps,
    }
}

/// Geometry of a Conv2d layer, or of the convolution a ConvTranspose2d layer transposes.
fn conv_geom(layer: &Layer, input: Shape, batch: usize) -> Option<ConvGeom> {
    match *layer {
        Layer::Conv2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
            ..
        } => Some(ConvGeom::new(
            batch, in_c, input.h, input.w, out_c, k, stride, pad,
        )),
        Layer::ConvTranspose2d {
            in_c,
            out_c,
            k,
            stride,
            pad,
            output_pad,
            ..
        } => Some(ConvGeom::for_transpose(
            batch, in_c, input.h, input.w, out_c, k, stride, pad, output_pad,
        )),
        _ => None,
    }
}

/// Forward ops of one layer. The last layer applies no activation: the loss applies it to the logits.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    layer: &Layer,
    l: &LayerBufs,
    all: &[LayerBufs],
    params: &[ParamDesc],
    input: Shape,
    output: Shape,
    pass: Pass,
    is_last: bool,
) -> Vec<Op> {
    let batch = pass.batch;
    let (x, y) = (l.input, l.output);
    let w = |p: Option<usize>| params[p.expect("layer has this parameter")].buf;
    // A weight as a product's operand: its f16 copy with mixed precision.
    let operand = |p: Option<usize>| params[p.expect("layer has this parameter")].operand();
    let act = |a: Act| if is_last { Act::Identity } else { a };
    let planes = (batch, input.c);
    match *layer {
        // Y[B×out] = act(X[B×in]·Wᵀ + b)
        Layer::Linear {
            inputs,
            outputs,
            act: a,
        } => vec![Op::MatmulBiasAct {
            x,
            w: operand(l.weight),
            bias: w(l.bias),
            y,
            m: batch,
            n: outputs,
            k: inputs,
            trans_b: true,
            act: act(a),
        }],
        // y = act(x ⊛ W + b)
        Layer::Conv2d { act: a, .. } => vec![Op::ConvBiasAct {
            geom: conv_geom(layer, input, batch).expect("conv layer"),
            x,
            w: operand(l.weight),
            bias: w(l.bias),
            y,
            act: act(a),
            transposed: false,
        }],
        // y = act(x ⊛ᵀ W + b): the data gradient of the convolution it transposes.
        Layer::ConvTranspose2d { act: a, .. } => vec![Op::ConvBiasAct {
            geom: conv_geom(layer, input, batch).expect("conv layer"),
            x,
            w: operand(l.weight),
            bias: w(l.bias),
            y,
            act: act(a),
            transposed: true,
        }],
        Layer::MaxPool2 => vec![Op::MaxPool2x2 {
            x,
            y,
            argmax: l.argmax.expect("pool indices"),
            batch: planes.0,
            channels: planes.1,
            in_h: input.h,
            in_w: input.w,
        }],
        Layer::MaxUnpool2 { pool } => vec![Op::MaxUnpool2x2 {
            x,
            argmax: all[pool].argmax.expect("pool indices"),
            y,
            batch,
            channels: input.c,
            out_h: output.h,
            out_w: output.w,
        }],
        Layer::Upsample { factor } => {
            vec![Op::UpsampleNearest {
                x,
                y,
                batch,
                channels: input.c,
                in_h: input.h,
                in_w: input.w,
                factor,
            }]
        }
        Layer::BatchNorm2d { channels } => {
            let n = l.norm.expect("batch-norm buffers");
            vec![Op::BatchNorm2d {
                x,
                y,
                gamma: w(l.weight),
                beta: w(l.bias),
                mean: n.mean,
                inv_std: n.inv_std,
                running_mean: n.running_mean,
                running_var: n.running_var,
                state: pass.state,
                batch,
                channels,
                inner: input.h * input.w,
                samples: pass.samples,
                momentum: BN_MOMENTUM,
                eps: BN_EPS,
                training: pass.training,
            }]
        }
        // z = μ + exp(½·log σ²)·ε, ε drawn on the pass's own stream.
        Layer::Reparameterize { latent } => vec![Op::Vae(VaeOp::Reparameterize {
            stats: x,
            z: y,
            eps: l.eps.expect("ε buffer"),
            state: pass.state,
            rows: batch,
            latent,
            seed: pass.seed,
            stream: pass.eps_stream(),
        })],
        Layer::Reshape { .. } => vec![],
    }
}

/// Backward ops of one layer: from ∂L/∂output (in `output_grad`) to parameter gradients and, unless this
/// is the first layer, ∂L/∂input. The last layer's `output_grad` already holds ∂L/∂logits.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    layer: &Layer,
    l: &LayerBufs,
    all: &[LayerBufs],
    params: &[ParamDesc],
    input: Shape,
    output: Shape,
    pass: Pass,
    is_last: bool,
) -> Vec<Op> {
    let batch = pass.batch;
    let (x, y, dy) = (l.input, l.output, l.output_grad);
    let p = |i: Option<usize>| &params[i.expect("layer has this parameter")];
    let mut ops = Vec::new();
    // dZ = dY ⊙ act'(Y), in place; then db = Σ over batch and positions of dZ.
    let act_and_bias = |ops: &mut Vec<Op>, a: Act| {
        if !is_last && a != Act::Identity {
            ops.push(Op::ActBackward {
                y,
                grad: dy,
                len: batch * output.numel(),
                act: a,
            });
        }
        ops.push(Op::BiasGrad {
            grad: dy,
            db: p(l.bias).grad,
            rows: batch,
            channels: output.c,
            inner: output.h * output.w,
        });
    };
    match *layer {
        Layer::Linear {
            inputs,
            outputs,
            act,
        } => {
            act_and_bias(&mut ops, act);
            // dW[out×in] = dZᵀ·X
            ops.push(Op::Matmul {
                a: dy,
                b: x,
                c: p(l.weight).grad,
                m: outputs,
                n: inputs,
                k: batch,
                trans_a: true,
                trans_b: false,
                accumulate: false,
            });
            // dX[B×in] = dZ·W
            if let Some(dx) = l.input_grad {
                ops.push(Op::Matmul {
                    a: dy,
                    b: p(l.weight).operand(),
                    c: dx,
                    m: batch,
                    n: inputs,
                    k: outputs,
                    trans_a: false,
                    trans_b: false,
                    accumulate: false,
                });
            }
        }
        Layer::Conv2d { act, .. } => {
            act_and_bias(&mut ops, act);
            let geom = conv_geom(layer, input, batch).expect("conv layer");
            ops.push(Op::Conv2dBackwardWeight {
                geom,
                dy,
                x,
                dw: p(l.weight).grad,
                accumulate: false,
            });
            if let Some(dx) = l.input_grad {
                ops.push(Op::Conv2dBackwardData {
                    geom,
                    dy,
                    w: p(l.weight).operand(),
                    dx,
                    accumulate: false,
                });
            }
        }
        // The transposed convolution's gradients are the forward conv (data) and the conv weight gradient
        // with the roles of input and output swapped (see `ConvGeom`).
        Layer::ConvTranspose2d { act, .. } => {
            act_and_bias(&mut ops, act);
            let geom = conv_geom(layer, input, batch).expect("conv layer");
            ops.push(Op::Conv2dBackwardWeight {
                geom,
                dy: x,
                x: dy,
                dw: p(l.weight).grad,
                accumulate: false,
            });
            if let Some(dx) = l.input_grad {
                ops.push(Op::Conv2d {
                    geom,
                    x: dy,
                    w: p(l.weight).operand(),
                    y: dx,
                });
            }
        }
        Layer::MaxPool2 => {
            if let Some(dx) = l.input_grad {
                ops.push(Op::MaxPool2x2Backward {
                    dy,
                    argmax: l.argmax.expect("pool indices"),
                    dx,
                    batch,
                    channels: input.c,
                    in_h: input.h,
                    in_w: input.w,
                });
            }
        }
        Layer::MaxUnpool2 { pool } => {
            if let Some(dx) = l.input_grad {
                ops.push(Op::MaxUnpool2x2Backward {
                    dy,
                    argmax: all[pool].argmax.expect("pool indices"),
                    dx,
                    batch,
                    channels: input.c,
                    out_h: output.h,
                    out_w: output.w,
                });
            }
        }
        Layer::Upsample { factor } => {
            if let Some(dx) = l.input_grad {
                ops.push(Op::UpsampleNearestBackward {
                    dy,
                    dx,
                    batch,
                    channels: input.c,
                    in_h: input.h,
                    in_w: input.w,
                    factor,
                });
            }
        }
        Layer::BatchNorm2d { channels } => {
            let n = l.norm.expect("batch-norm buffers");
            // The kernel always computes dx; a first-layer batch norm gets a scratch buffer for it.
            ops.push(Op::BatchNorm2dBackward {
                x,
                dy,
                dx: l
                    .input_grad
                    .expect("batch norm always has an input gradient buffer"),
                gamma: p(l.weight).buf,
                dgamma: p(l.weight).grad,
                dbeta: p(l.bias).grad,
                mean: n.mean,
                inv_std: n.inv_std,
                state: pass.state,
                batch,
                channels,
                inner: input.h * input.w,
                samples: pass.samples,
            });
        }
        // dμ = dz, dlog σ² = dz·½σε.
        Layer::Reparameterize { latent } => {
            if let Some(dx) = l.input_grad {
                ops.push(Op::Vae(VaeOp::ReparameterizeBackward {
                    dz: dy,
                    eps: l.eps.expect("ε buffer"),
                    stats: x,
                    dstats: dx,
                    rows: batch,
                    latent,
                }));
            }
        }
        // The input's gradient is the output's buffer.
        Layer::Reshape { .. } => {}
    }
    ops
}
