//! Dispatch for `shaders/noise.wgsl`: counter-hash corruption noise for denoising autoencoders.

use super::kernels::{Dispatch, Kernels, Shader, linear_groups};
use crate::ops::Noise;

impl Kernels {
    #[allow(clippy::too_many_arguments)]
    pub fn corrupt(
        &mut self,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        mask: Option<&wgpu::Buffer>,
        state: &wgpu::Buffer,
        len: usize,
        image: [usize; 2],
        noise: Noise,
        seed: u32,
        stream: u32,
    ) -> Dispatch {
        let params = [
            len as u32,
            noise.code(),
            noise.amount().to_bits(),
            seed,
            stream,
            image[0] as u32,
            image[1] as u32,
        ];
        match mask {
            None => self.dispatch(
                Shader::Noise,
                "corrupt",
                &params,
                &[0, 1, 2, 3],
                &[x, y, state],
                linear_groups(len),
            ),
            Some(mask) => self.dispatch(
                Shader::Noise,
                "corrupt_masked",
                &params,
                &[0, 1, 2, 3, 4],
                &[x, y, state, mask],
                linear_groups(len),
            ),
        }
    }
}
