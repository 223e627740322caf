//! Dispatch for `shaders/noise.wgsl`: counter-hash corruption noise for denoising autoencoders.

use super::kernels::{Dispatch, Kernels, Shader, linear_groups};
use crate::ops::Noise;

impl Kernels {
    #[allow(clippy::too_many_arguments)]
    pub fn corrupt(
        &mut self,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        state: &wgpu::Buffer,
        len: usize,
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
        ];
        self.dispatch(
            Shader::Noise,
            "corrupt",
            &params,
            &[0, 1, 2, 3],
            &[x, y, state],
            linear_groups(len),
        )
    }
}
