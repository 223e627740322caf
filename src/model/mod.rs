//! Models as small static graphs of layers, with shapes checked when the model is built.

pub mod init;
pub mod variants;

use crate::ops::Act;
use thiserror::Error;

/// The shape of one sample: channels × height × width (a dense vector is c × 1 × 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn flat(features: usize) -> Shape {
        Shape {
            c: features,
            h: 1,
            w: 1,
        }
    }
    pub fn numel(&self) -> usize {
        self.c * self.h * self.w
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.h == 1 && self.w == 1 {
            write!(f, "{}", self.c)
        } else {
            write!(f, "{}×{}×{}", self.c, self.h, self.w)
        }
    }
}

/// One layer of a sequential model. Feature maps are NCHW; weights use PyTorch's layouts.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// y = act(x·Wᵀ + b), W [out, in] as `nn.Linear`; flattens its input.
    Linear {
        inputs: usize,
        outputs: usize,
        act: Act,
    },
    /// y = act(conv(x, W) + b), W [out_c, in_c, k, k] as `nn.Conv2d`.
    Conv2d {
        in_c: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        pad: usize,
        act: Act,
    },
    /// y = act(conv_transpose(x, W) + b), W [in_c, out_c, k, k] as `nn.ConvTranspose2d`:
    /// out = (in − 1)·stride − 2·pad + k + output_pad.
    ConvTranspose2d {
        in_c: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        pad: usize,
        output_pad: usize,
        act: Act,
    },
    /// 2×2 max pooling, stride 2, remembering where each maximum came from.
    MaxPool2,
    /// Max-unpooling through the indices recorded by the `MaxPool2` at layer index `pool`.
    MaxUnpool2 { pool: usize },
    /// Nearest-neighbour upsampling by an integer factor.
    Upsample { factor: usize },
    /// Batch normalisation over N, H, W per channel (`nn.BatchNorm2d`, momentum 0.1, eps 1e-5).
    BatchNorm2d { channels: usize },
    /// The reparameterisation trick of a variational autoencoder: the input, 2·latent values per sample
    /// read as [μ | log σ²], becomes z = μ + exp(½·log σ²)·ε with ε ~ N(0, I) drawn anew at every step.
    Reparameterize { latent: usize },
    /// The same values seen as another shape (a flat vector as a feature map): no op, no copy.
    Reshape { to: Shape },
}

impl Layer {
    pub fn describe(&self) -> String {
        match self {
            Layer::Linear {
                inputs,
                outputs,
                act,
            } => format!("Linear({inputs}→{outputs}, {})", act.name()),
            Layer::Conv2d {
                in_c,
                out_c,
                k,
                stride,
                pad,
                act,
            } => {
                format!(
                    "Conv2d({in_c}→{out_c}, k{k} s{stride} p{pad}, {})",
                    act.name()
                )
            }
            Layer::ConvTranspose2d {
                in_c,
                out_c,
                k,
                stride,
                pad,
                output_pad,
                act,
            } => {
                format!(
                    "ConvT({in_c}→{out_c}, k{k} s{stride} p{pad} op{output_pad}, {})",
                    act.name()
                )
            }
            Layer::MaxPool2 => "MaxPool(2)".into(),
            Layer::MaxUnpool2 { pool } => format!("MaxUnpool(2, indices of layer {pool})"),
            Layer::Upsample { factor } => format!("Upsample(×{factor})"),
            Layer::BatchNorm2d { channels } => format!("BatchNorm2d({channels})"),
            Layer::Reparameterize { latent } => {
                format!("Reparameterize(μ, log σ² of {latent} → z = μ + σ·ε)")
            }
            Layer::Reshape { to } => format!("Reshape(→{to})"),
        }
    }

    /// The activation a layer applies, if it has one.
    pub fn act(&self) -> Option<Act> {
        match *self {
            Layer::Linear { act, .. }
            | Layer::Conv2d { act, .. }
            | Layer::ConvTranspose2d { act, .. } => Some(act),
            _ => None,
        }
    }

    /// Learnable values, weights and biases together.
    pub fn parameter_count(&self) -> usize {
        match *self {
            Layer::Linear {
                inputs, outputs, ..
            } => inputs * outputs + outputs,
            Layer::Conv2d { in_c, out_c, k, .. }
            | Layer::ConvTranspose2d { in_c, out_c, k, .. } => in_c * out_c * k * k + out_c,
            Layer::BatchNorm2d { channels } => 2 * channels,
            _ => 0,
        }
    }

    /// The output shape for `input`, or why the layer cannot take it. `shapes` holds the inputs of the
    /// layers before this one (for unpooling, which restores its pooling layer's input shape).
    pub fn output_shape(
        &self,
        input: Shape,
        shapes: &[Shape],
        layers: &[Layer],
    ) -> Result<Shape, String> {
        let channels = |c: usize| {
            if input.c == c {
                Ok(())
            } else {
                Err(format!("expects {c} input channels but receives {input}"))
            }
        };
        match *self {
            Layer::Linear {
                inputs, outputs, ..
            } => {
                if input.numel() != inputs {
                    return Err(format!(
                        "expects {inputs} inputs but receives {input} ({} values)",
                        input.numel()
                    ));
                }
                if outputs == 0 {
                    return Err("has zero outputs".into());
                }
                Ok(Shape::flat(outputs))
            }
            Layer::Conv2d {
                in_c,
                out_c,
                k,
                stride,
                pad,
                ..
            } => {
                channels(in_c)?;
                if out_c == 0 || k == 0 || stride == 0 {
                    return Err("needs positive channels, kernel size and stride".into());
                }
                if k > input.h + 2 * pad || k > input.w + 2 * pad {
                    return Err(format!(
                        "kernel {k} is larger than the padded input {input} (pad {pad})"
                    ));
                }
                let out = |n: usize| (n + 2 * pad - k) / stride + 1;
                Ok(Shape {
                    c: out_c,
                    h: out(input.h),
                    w: out(input.w),
                })
            }
            Layer::ConvTranspose2d {
                in_c,
                out_c,
                k,
                stride,
                pad,
                output_pad,
                ..
            } => {
                channels(in_c)?;
                if out_c == 0 || k == 0 || stride == 0 {
                    return Err("needs positive channels, kernel size and stride".into());
                }
                if output_pad >= stride {
                    return Err(format!(
                        "output padding {output_pad} must be smaller than the stride {stride}"
                    ));
                }
                let out = |n: usize| {
                    ((n - 1) * stride + k + output_pad)
                        .checked_sub(2 * pad)
                        .filter(|&o| o > 0)
                };
                match (out(input.h), out(input.w)) {
                    (Some(h), Some(w)) => Ok(Shape { c: out_c, h, w }),
                    _ => Err(format!(
                        "produces no output from {input} (pad {pad} too large)"
                    )),
                }
            }
            Layer::MaxPool2 => {
                if input.h < 2 || input.w < 2 {
                    return Err(format!(
                        "cannot pool {input}: height and width must be at least 2"
                    ));
                }
                Ok(Shape {
                    c: input.c,
                    h: input.h / 2,
                    w: input.w / 2,
                })
            }
            Layer::MaxUnpool2 { pool } => {
                if pool >= layers.len() || layers[pool] != Layer::MaxPool2 {
                    return Err(format!(
                        "refers to layer {pool}, which is not an earlier MaxPool"
                    ));
                }
                let pooled = Layer::MaxPool2.output_shape(shapes[pool], &[], &[])?;
                if pooled != input {
                    return Err(format!(
                        "receives {input} but its MaxPool (layer {pool}) produced {pooled}"
                    ));
                }
                Ok(shapes[pool])
            }
            Layer::Upsample { factor } => {
                if factor == 0 {
                    return Err("needs a positive factor".into());
                }
                Ok(Shape {
                    c: input.c,
                    h: input.h * factor,
                    w: input.w * factor,
                })
            }
            Layer::BatchNorm2d { channels: c } => {
                channels(c)?;
                Ok(input)
            }
            Layer::Reparameterize { latent } => {
                if latent == 0 || input.numel() != 2 * latent {
                    return Err(format!(
                        "expects μ and log σ² of {latent} units each ({} values) but receives {input} ({} \
                         values)",
                        2 * latent,
                        input.numel()
                    ));
                }
                Ok(Shape::flat(latent))
            }
            Layer::Reshape { to } => {
                if to.numel() != input.numel() {
                    return Err(format!(
                        "cannot show {input} ({} values) as {to} ({} values)",
                        input.numel(),
                        to.numel()
                    ));
                }
                Ok(to)
            }
        }
    }
}

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("model {model}: layer {index} ({layer}) {problem}")]
    Shape {
        model: String,
        index: usize,
        layer: String,
        problem: String,
    },
    #[error("model {model}: {problem}")]
    Invalid { model: String, problem: String },
}

/// A sequential autoencoder: input shape, layers, and the shapes between them (checked at construction).
#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    pub input: Shape,
    pub layers: Vec<Layer>,
    /// shapes[i] is the input of layer i; shapes[layers.len()] is the model's output.
    pub shapes: Vec<Shape>,
    /// The layer whose output is the code (the "code" tap penalties and encoders refer to), if the
    /// model names one.
    pub code: Option<usize>,
    /// Layers 0..frozen keep the values they start with (a classifier's pretrained encoder under a linear
    /// probe): they get no optimizer op, and the backward pass stops above them.
    pub frozen: usize,
}

impl Model {
    /// An autoencoder: its output has the input's size.
    pub fn new(name: &str, input: Shape, layers: Vec<Layer>) -> Result<Model, ModelError> {
        let model = Model::sequential(name, input, layers)?;
        let (input, output) = (model.input, model.shapes[model.layers.len()]);
        if output.numel() != input.numel() {
            return Err(ModelError::Invalid {
                model: name.into(),
                problem: format!(
                    "output {output} does not match input {input}: an autoencoder reconstructs its input"
                ),
            });
        }
        Ok(model)
    }

    /// A classifier: `layers` end in a linear layer of one output per class, without activation (the
    /// logits, which a softmax cross-entropy reads); the first `frozen` layers are not trained.
    pub fn classifier(
        name: &str,
        input: Shape,
        layers: Vec<Layer>,
        frozen: usize,
    ) -> Result<Model, ModelError> {
        let mut model = Model::sequential(name, input, layers)?;
        model.frozen = frozen.min(model.layers.len() - 1);
        Ok(model)
    }

    /// A sequential model with its shapes checked.
    fn sequential(name: &str, input: Shape, layers: Vec<Layer>) -> Result<Model, ModelError> {
        let invalid = |problem: &str| ModelError::Invalid {
            model: name.into(),
            problem: problem.into(),
        };
        if layers.is_empty() {
            return Err(invalid("has no layers"));
        }
        let mut shapes = vec![input];
        for (index, layer) in layers.iter().enumerate() {
            let next = layer
                .output_shape(shapes[index], &shapes, &layers[..index])
                .map_err(|problem| ModelError::Shape {
                    model: name.into(),
                    index,
                    layer: layer.describe(),
                    problem,
                })?;
            shapes.push(next);
        }
        if layers.last().and_then(Layer::act).is_none() {
            return Err(invalid(
                "must end in a Linear, Conv2d or ConvTranspose2d layer, whose activation gives the output",
            ));
        }
        Ok(Model {
            name: name.into(),
            input,
            layers,
            shapes,
            code: None,
            frozen: 0,
        })
    }

    /// This model with layer `layer`'s output as its code.
    pub fn with_code(mut self, layer: usize) -> Model {
        assert!(layer < self.layers.len(), "the code layer exists");
        self.code = Some(layer);
        self
    }

    /// The latent width of a variational model: its code layer writes [μ | log σ²] and the next layer
    /// samples z from them. `None` for a deterministic autoencoder.
    pub fn gaussian_latent(&self) -> Option<usize> {
        let code = self.code?;
        match self.layers.get(code + 1) {
            Some(&Layer::Reparameterize { latent }) => Some(latent),
            _ => None,
        }
    }

    /// The first layer of the decoder: the one after the code layer (after the sampling layer, for a
    /// variational model).
    pub fn decoder_start(&self) -> Option<usize> {
        let code = self.code?;
        Some(code + 1 + usize::from(self.gaussian_latent().is_some()))
    }

    /// The activation of the last layer, applied to the logits inside the loss.
    pub fn output_act(&self) -> Act {
        self.layers
            .last()
            .and_then(Layer::act)
            .unwrap_or(Act::Identity)
    }

    pub fn parameter_count(&self) -> usize {
        self.layers.iter().map(Layer::parameter_count).sum()
    }

    pub fn describe(&self) -> String {
        let layers: Vec<String> = self.layers.iter().map(Layer::describe).collect();
        format!(
            "{} [{}] {} parameters",
            self.name,
            layers.join(" → "),
            self.parameter_count()
        )
    }
}
