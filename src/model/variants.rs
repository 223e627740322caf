//! One builder per autoencoder family.

use super::{Layer, Model, ModelError, Shape};
use crate::ops::Act;

/// Hyper-parameters of the dense families.
#[derive(Clone, Debug)]
pub struct DenseConfig {
    /// Widths of the encoder's hidden layers, outermost first; the decoder mirrors them.
    pub hidden: Vec<usize>,
    pub latent: usize,
    /// Activation of every hidden layer.
    pub act: Act,
    /// Activation of the code layer.
    pub code_act: Act,
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
    let (code, last) = (cfg.hidden.len(), widths.len() - 2);
    let layers = widths
        .windows(2)
        .enumerate()
        .map(|(i, w)| Layer::Linear {
            inputs: w[0],
            outputs: w[1],
            act: match i {
                _ if i == last => cfg.output_act,
                _ if i == code => cfg.code_act,
                _ => cfg.act,
            },
        })
        .collect();
    Ok(Model::new("ae", input, layers)?.with_code(code))
}

/// Variational autoencoder with dense layers: input → hidden… → (μ, log σ²) of `latent` each → z → …hidden
/// (mirrored) → input. The code layer is one Linear(·, 2·latent) without activation whose first `latent`
/// outputs are μ and the rest log σ²; `code_act` is unused. With hidden = [400] and latent = 20 on MNIST
/// this is the PyTorch examples' VAE: 784-400-(20, 20)-400-784, ReLU, sigmoid output.
pub fn dense_vae(input: Shape, cfg: &DenseConfig) -> Result<Model, ModelError> {
    let mut layers = Vec::new();
    let mut width = input.numel();
    for &h in &cfg.hidden {
        layers.push(Layer::Linear {
            inputs: width,
            outputs: h,
            act: cfg.act,
        });
        width = h;
    }
    let code = layers.len();
    layers.extend(gaussian_bottleneck(width, cfg.latent));
    width = cfg.latent;
    for &h in cfg.hidden.iter().rev() {
        layers.push(Layer::Linear {
            inputs: width,
            outputs: h,
            act: cfg.act,
        });
        width = h;
    }
    layers.push(Layer::Linear {
        inputs: width,
        outputs: input.numel(),
        act: cfg.output_act,
    });
    Ok(Model::new("vae", input, layers)?.with_code(code))
}

/// Linear(inputs → 2·latent) read as [μ | log σ²], then the sampling of z.
fn gaussian_bottleneck(inputs: usize, latent: usize) -> [Layer; 2] {
    [
        Layer::Linear {
            inputs,
            outputs: 2 * latent,
            act: Act::Identity,
        },
        Layer::Reparameterize { latent },
    ]
}

/// How the convolutional families go down and up in resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deck {
    /// Encoder Conv(k3, stride 2, pad 1)-act per stage; decoder ConvTranspose(k3, s2, p1) mirrored, with the
    /// output padding that restores each stage's size exactly (1 for 28→14→7).
    Strided,
    /// Encoder Conv(k3, s1, p1)-act-BatchNorm-MaxPool(2) per stage; decoder MaxUnpool (with the matching
    /// pool's indices)-Conv(k3, s1, p1)-act.
    Pool,
}

#[derive(Clone, Debug)]
pub struct ConvConfig {
    /// Channels after each encoder stage, e.g. [32, 64].
    pub channels: Vec<usize>,
    pub deck: Deck,
    pub act: Act,
    pub output_act: Act,
}

/// Convolutional autoencoder. The default conv-dae of the README is `channels = [32, 64]`, strided:
/// Conv(1→32, 3, s2, p1)-ReLU-Conv(32→64, 3, s2, p1)-ReLU-ConvT(64→32, 3, s2, p1, op1)-ReLU-ConvT(32→1, 3, s2, p1, op1)-sigmoid.
pub fn conv_ae(name: &str, input: Shape, cfg: &ConvConfig) -> Result<Model, ModelError> {
    let invalid = |problem: String| ModelError::Invalid {
        model: name.into(),
        problem,
    };
    if cfg.channels.is_empty() || cfg.channels.contains(&0) {
        return Err(invalid(format!(
            "needs at least one stage of positive channels, got {:?}",
            cfg.channels
        )));
    }
    let mut layers = Vec::new();
    let mut sizes = vec![input]; // input shape of each stage
    let mut pools = Vec::new();
    for &c in &cfg.channels {
        let prev = *sizes.last().expect("starts with the input");
        match cfg.deck {
            Deck::Strided => {
                layers.push(Layer::Conv2d {
                    in_c: prev.c,
                    out_c: c,
                    k: 3,
                    stride: 2,
                    pad: 1,
                    act: cfg.act,
                });
                // (n + 2·1 − 3) / 2 + 1 = ⌈n/2⌉
                sizes.push(Shape {
                    c,
                    h: prev.h.div_ceil(2),
                    w: prev.w.div_ceil(2),
                });
            }
            Deck::Pool => {
                layers.push(Layer::Conv2d {
                    in_c: prev.c,
                    out_c: c,
                    k: 3,
                    stride: 1,
                    pad: 1,
                    act: cfg.act,
                });
                layers.push(Layer::BatchNorm2d { channels: c });
                pools.push(layers.len());
                layers.push(Layer::MaxPool2);
                if prev.h < 2 || prev.w < 2 {
                    return Err(invalid(format!(
                        "cannot pool a {}×{} feature map: use fewer stages",
                        prev.h, prev.w
                    )));
                }
                sizes.push(Shape {
                    c,
                    h: prev.h / 2,
                    w: prev.w / 2,
                });
            }
        }
    }
    for stage in (0..cfg.channels.len()).rev() {
        let (from, to) = (sizes[stage + 1], sizes[stage]);
        let act = if stage == 0 { cfg.output_act } else { cfg.act };
        match cfg.deck {
            Deck::Strided => {
                // (n − 1)·2 − 2 + 3 + op = target  ⇒  op = target − 2n + 1 (0 or 1).
                let output_pad = (to.h + 1).saturating_sub(2 * from.h);
                layers.push(Layer::ConvTranspose2d {
                    in_c: from.c,
                    out_c: to.c,
                    k: 3,
                    stride: 2,
                    pad: 1,
                    output_pad,
                    act,
                });
            }
            Deck::Pool => {
                layers.push(Layer::MaxUnpool2 { pool: pools[stage] });
                layers.push(Layer::Conv2d {
                    in_c: from.c,
                    out_c: to.c,
                    k: 3,
                    stride: 1,
                    pad: 1,
                    act,
                });
            }
        }
    }
    // The code is the last encoder stage's output: its conv (strided deck) or its max pooling.
    let code = match cfg.deck {
        Deck::Strided => cfg.channels.len() - 1,
        Deck::Pool => 3 * cfg.channels.len() - 1,
    };
    Ok(Model::new(name, input, layers)?.with_code(code))
}

/// Convolutional variational autoencoder: the strided encoder of [`conv_ae`], flattened into a
/// Linear(·, 2·latent) read as [μ | log σ²]; z is sampled, mapped back by Linear(latent → the encoder's
/// output size, act) and reshaped into its feature map for the transposed-convolution decoder.
pub fn conv_vae(
    name: &str,
    input: Shape,
    cfg: &ConvConfig,
    latent: usize,
) -> Result<Model, ModelError> {
    if cfg.deck != Deck::Strided {
        return Err(ModelError::Invalid {
            model: name.into(),
            problem:
                "a variational model decodes codes alone, so its decoder cannot unpool through \
                      the encoder's pooling indices: use the strided deck"
                    .into(),
        });
    }
    let ae = conv_ae(name, input, cfg)?;
    let encoder = ae.code.expect("conv_ae names its code") + 1;
    let map = ae.shapes[encoder];
    let mut layers = ae.layers[..encoder].to_vec();
    let code = layers.len();
    layers.extend(gaussian_bottleneck(map.numel(), latent));
    layers.push(Layer::Linear {
        inputs: latent,
        outputs: map.numel(),
        act: cfg.act,
    });
    layers.push(Layer::Reshape { to: map });
    layers.extend_from_slice(&ae.layers[encoder..]);
    Ok(Model::new(name, input, layers)?.with_code(code))
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
            code_act: Act::Relu,
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
    fn default_conv_dae_has_the_documented_shapes() {
        let cfg = ConvConfig {
            channels: vec![32, 64],
            deck: Deck::Strided,
            act: Act::Relu,
            output_act: Act::Sigmoid,
        };
        let m = conv_ae("conv-dae", Shape { c: 1, h: 28, w: 28 }, &cfg).unwrap();
        let shapes: Vec<(usize, usize, usize)> = m.shapes.iter().map(|s| (s.c, s.h, s.w)).collect();
        assert_eq!(
            shapes,
            vec![
                (1, 28, 28),
                (32, 14, 14),
                (64, 7, 7),
                (32, 14, 14),
                (1, 28, 28)
            ]
        );
        assert!(matches!(
            m.layers[2],
            Layer::ConvTranspose2d { output_pad: 1, .. }
        ));
        assert_eq!(
            m.parameter_count(),
            (9 * 32 + 32) + (32 * 64 * 9 + 64) + (64 * 32 * 9 + 32) + (32 * 9 + 1)
        );
    }

    #[test]
    fn pooled_conv_ae_mirrors_its_pools() {
        let cfg = ConvConfig {
            channels: vec![8, 16],
            deck: Deck::Pool,
            act: Act::Relu,
            output_act: Act::Sigmoid,
        };
        let m = conv_ae("conv-ae", Shape { c: 1, h: 28, w: 28 }, &cfg).unwrap();
        assert_eq!(m.layers.len(), 10);
        assert_eq!(m.layers[6], Layer::MaxUnpool2 { pool: 5 });
        assert_eq!(m.layers[8], Layer::MaxUnpool2 { pool: 2 });
        assert_eq!(*m.shapes.last().unwrap(), Shape { c: 1, h: 28, w: 28 });
    }

    #[test]
    fn odd_sizes_get_matching_output_padding() {
        let cfg = ConvConfig {
            channels: vec![4, 4, 4],
            deck: Deck::Strided,
            act: Act::Relu,
            output_act: Act::Sigmoid,
        };
        let m = conv_ae("conv-ae", Shape { c: 1, h: 28, w: 28 }, &cfg).unwrap();
        assert_eq!(m.shapes[3], Shape { c: 4, h: 4, w: 4 });
        assert_eq!(*m.shapes.last().unwrap(), Shape { c: 1, h: 28, w: 28 });
    }

    #[test]
    fn the_dense_vae_is_the_pytorch_examples_model() {
        let cfg = DenseConfig {
            hidden: vec![400],
            latent: 20,
            act: Act::Relu,
            code_act: Act::Identity,
            output_act: Act::Sigmoid,
        };
        let m = dense_vae(Shape { c: 1, h: 28, w: 28 }, &cfg).unwrap();
        let widths: Vec<usize> = m.shapes.iter().map(Shape::numel).collect();
        assert_eq!(widths, vec![784, 400, 40, 20, 400, 784]);
        assert_eq!(m.code, Some(1));
        assert_eq!(m.gaussian_latent(), Some(20));
        assert_eq!(m.decoder_start(), Some(3));
        // fc1, fc21 + fc22 (one layer of 40 outputs), fc3, fc4 of the PyTorch example.
        assert_eq!(
            m.parameter_count(),
            784 * 400 + 400 + 400 * 40 + 40 + 20 * 400 + 400 + 400 * 784 + 784
        );
    }

    #[test]
    fn the_conv_vae_flattens_samples_and_reshapes() {
        let cfg = ConvConfig {
            channels: vec![32, 64],
            deck: Deck::Strided,
            act: Act::Relu,
            output_act: Act::Sigmoid,
        };
        let m = conv_vae("conv-vae", Shape { c: 1, h: 28, w: 28 }, &cfg, 16).unwrap();
        let shapes: Vec<String> = m.shapes.iter().map(Shape::to_string).collect();
        assert_eq!(
            shapes,
            [
                "1×28×28",
                "32×14×14",
                "64×7×7",
                "32",
                "16",
                "3136",
                "64×7×7",
                "32×14×14",
                "1×28×28"
            ]
        );
        assert_eq!((m.code, m.gaussian_latent()), (Some(2), Some(16)));
        assert_eq!(m.decoder_start(), Some(4));
        let pool = ConvConfig {
            deck: Deck::Pool,
            ..cfg
        };
        let err = conv_vae("conv-vae", Shape { c: 1, h: 28, w: 28 }, &pool, 16)
            .unwrap_err()
            .to_string();
        assert!(err.contains("strided deck"), "{err}");
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
