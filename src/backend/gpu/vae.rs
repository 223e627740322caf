//! Dispatches of the variational autoencoder's ops ([`VaeOp`]): `shaders/vae.wgsl`. Every entry point
//! takes the same uniform (`VaeParams`) at binding 0, the program's state at binding 1 where it reads it,
//! then its own buffers.

use super::kernels::{Dispatch, Kernels, Shader, linear_groups};
use crate::ops::{BufId, VaeOp};

/// `VaeParams` of vae.wgsl.
#[derive(Default)]
struct VaeParams {
    rows: usize,
    latent: usize,
    seed: u32,
    stream: u32,
    /// The element of the scalar buffer that holds the weight.
    weight: usize,
    ramp_steps: usize,
    target: f32,
}

impl VaeParams {
    fn words(&self) -> [u32; 8] {
        [
            self.rows as u32,
            self.latent as u32,
            self.seed,
            self.stream,
            self.weight as u32,
            self.ramp_steps as u32,
            self.target.to_bits(),
            0,
        ]
    }
}

impl Kernels {
    pub fn vae(&mut self, bufs: &[wgpu::Buffer], op: &VaeOp) -> Dispatch {
        let b = |id: BufId| &bufs[id.0];
        // One vae.wgsl entry point: the uniform at binding 0, then `buffers` at `bindings` (the state at 1
        // where the kernel reads it).
        let mut launch = |entry, params: VaeParams, bindings: &[u32], buffers: &[&wgpu::Buffer]| {
            let groups = match entry {
                "ramp_weight" => [1, 1, 1],
                _ => linear_groups(params.rows * params.latent),
            };
            let mut all_bindings = vec![0];
            all_bindings.extend_from_slice(bindings);
            self.dispatch(
                Shader::Vae,
                entry,
                &params.words(),
                &all_bindings,
                buffers,
                groups,
            )
        };
        match *op {
            VaeOp::Reparameterize {
                stats,
                z,
                eps,
                state,
                rows,
                latent,
                seed,
                stream,
            } => launch(
                "reparameterize",
                VaeParams {
                    rows,
                    latent,
                    seed,
                    stream,
                    ..VaeParams::default()
                },
                &[1, 2, 3, 4],
                &[b(state), b(stats), b(z), b(eps)],
            ),
            VaeOp::ReparameterizeBackward {
                dz,
                eps,
                stats,
                dstats,
                rows,
                latent,
            } => launch(
                "reparameterize_backward",
                VaeParams {
                    rows,
                    latent,
                    ..VaeParams::default()
                },
                &[5, 6, 7, 8],
                &[b(dz), b(eps), b(stats), b(dstats)],
            ),
            VaeOp::GaussianKl {
                stats,
                partials,
                state,
                rows,
                latent,
            } => launch(
                "gaussian_kl",
                VaeParams {
                    rows,
                    latent,
                    ..VaeParams::default()
                },
                &[1, 9, 10],
                &[b(state), b(stats), b(partials)],
            ),
            VaeOp::GaussianKlGrad {
                stats,
                dstats,
                state,
                rows,
                latent,
                weight,
            } => launch(
                "gaussian_kl_grad",
                VaeParams {
                    rows,
                    latent,
                    weight: weight.index,
                    ..VaeParams::default()
                },
                &[1, 11, 12, 13],
                &[b(state), b(stats), b(dstats), b(weight.buf)],
            ),
            VaeOp::RampWeight {
                weight,
                state,
                target,
                steps,
            } => launch(
                "ramp_weight",
                VaeParams {
                    weight: weight.index,
                    ramp_steps: steps,
                    target,
                    ..VaeParams::default()
                },
                &[1, 14],
                &[b(state), b(weight.buf)],
            ),
        }
    }
}
