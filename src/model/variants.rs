//! One builder per autoencoder family.

use super::{Layer, Model, ModelError, Shape};
use crate::ops::Act;

/// Hyper-parameters of the dense families.
#[derive(Clone, Debug)]
pub struct DenseConfig {
    /// Widths of the encoder's hidden layers, outermost first; the decoder mirrors them.
    pub hidden: Vec<usize>,
    pub latent: usize,
    /// Activation of every hidden layer and of the code.
    pub act: Act,
    /// Activation of the reconstruction (sigmoid for BCE).
    pub output_act: Act,
}

/// Undercomplete dense autoencoder: input → hidden… → latent → …hidden (mirrored) → input.
/// With hidden = [256] and latent = 64 on MNIST: 784-256-64-256-784.
pub fn dense_ae(input: Shape, cfg: &DenseConfig) -> Result<Model, ModelError> {
    let mut widths = vec![input.numel()];
    widths.extend(&cfg.hidden);
    widths.push(cfg.latent);
    widths.extend(cfg.hidden.iter().rev());
    widths.push(input.numel());
    let last = widths.len() - 2;
    let layers = widths
        .windows(2)
        .enumerate()
        .map(|(i, w)| Layer::Linear {
            inputs: w[0],
            outputs: w[1],
            act: if i == last { cfg.output_act } else { cfg.act },
        })
        .collect();
    Model::new("ae", input, layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_ae_mirrors_its_encoder() {
        let cfg = DenseConfig {
            hidden: vec![256],
            latent: 64,
            act: Act::Relu,
            output_act: Act::Sigmoid,
        };
        let m = dense_ae(Shape { c: 1, h: 28, w: 28 }, &cfg).unwrap();
        let widths: Vec<usize> = m.shapes.iter().map(Shape::numel).collect();
        assert_eq!(widths, vec![784, 256, 64, 256, 784]);
        assert_eq!(m.output_act(), Act::Sigmoid);
        assert_eq!(
            m.parameter_count(),
            784 * 256 + 256 + 256 * 64 + 64 + 64 * 256 + 256 + 256 * 784 + 784
        );
    }

    #[test]
    fn mismatched_layer_is_named() {
        let layers = vec![
            Layer::Linear {
                inputs: 784,
                outputs: 10,
                act: Act::Relu,
            },
            Layer::Linear {
                inputs: 11,
                outputs: 784,
                act: Act::Sigmoid,
            },
        ];
        let err = Model::new("broken", Shape::flat(784), layers)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("layer 1") && err.contains("expects 11 inputs"),
            "{err}"
        );
    }
}
