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

/// One layer of a sequential model.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// y = act(x·Wᵀ + b), W stored [out, in] as in PyTorch's `nn.Linear`; flattens its input.
    Linear {
        inputs: usize,
        outputs: usize,
        act: Act,
    },
}

impl Layer {
    pub fn describe(&self) -> String {
        match self {
            Layer::Linear {
                inputs,
                outputs,
                act,
            } => format!("Linear({inputs}→{outputs}, {})", act.name()),
        }
    }

    /// The output shape for `input`, or why the layer cannot take it.
    pub fn output_shape(&self, input: Shape) -> Result<Shape, String> {
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
}

impl Model {
    pub fn new(name: &str, input: Shape, layers: Vec<Layer>) -> Result<Model, ModelError> {
        if layers.is_empty() {
            return Err(ModelError::Invalid {
                model: name.into(),
                problem: "has no layers".into(),
            });
        }
        let mut shapes = vec![input];
        for (index, layer) in layers.iter().enumerate() {
            let next = layer
                .output_shape(shapes[index])
                .map_err(|problem| ModelError::Shape {
                    model: name.into(),
                    index,
                    layer: layer.describe(),
                    problem,
                })?;
            shapes.push(next);
        }
        let output = shapes[layers.len()];
        if output.numel() != input.numel() {
            return Err(ModelError::Invalid {
                model: name.into(),
                problem: format!(
                    "output {output} does not match input {input}: an autoencoder reconstructs its input"
                ),
            });
        }
        Ok(Model {
            name: name.into(),
            input,
            layers,
            shapes,
        })
    }

    pub fn output_act(&self) -> Act {
        match self.layers.last() {
            Some(Layer::Linear { act, .. }) => *act,
            None => Act::Identity,
        }
    }

    pub fn parameter_count(&self) -> usize {
        self.layers
            .iter()
            .map(|l| match l {
                Layer::Linear {
                    inputs, outputs, ..
                } => inputs * outputs + outputs,
            })
            .sum()
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
