//! Dispatches for `shaders/batchnorm.wgsl`: BatchNorm2d forward and training backward, one workgroup per channel.

use super::kernels::{Dispatch, Kernels, Shader};

/// Shape of a batch-norm input [batch, channels, inner] and the data set size that bounds its valid rows.
#[derive(Clone, Copy, Debug)]
pub struct NormSizes {
    pub batch: usize,
    pub channels: usize,
    pub inner: usize,
    pub samples: usize,
}

impl NormSizes {
    fn params(self, momentum: f32, eps: f32, training: bool) -> [u32; 8] {
        let s = self;
        [
            s.batch as u32,
            s.channels as u32,
            s.inner as u32,
            s.samples as u32,
            momentum.to_bits(),
            eps.to_bits(),
            training as u32,
            0,
        ]
    }
}

impl Kernels {
    /// `buffers`: x, y, gamma, beta, mean, inv_std, running_mean, running_var, state.
    pub fn batch_norm2d(
        &mut self,
        buffers: [&wgpu::Buffer; 9],
        sizes: NormSizes,
        momentum: f32,
        eps: f32,
        training: bool,
    ) -> Dispatch {
        let params = sizes.params(momentum, eps, training);
        let bindings: Vec<u32> = (0..10).collect();
        self.dispatch(
            Shader::BatchNorm,
            "batch_norm2d",
            &params,
            &bindings,
            &buffers,
            [sizes.channels as u32, 1, 1],
        )
    }

    /// `buffers`: x, dy, dx, gamma, dgamma, dbeta, mean, inv_std, state.
    pub fn batch_norm2d_backward(
        &mut self,
        buffers: [&wgpu::Buffer; 9],
        sizes: NormSizes,
    ) -> Dispatch {
        let params = sizes.params(0.0, 0.0, true);
        let bindings: Vec<u32> = (10..20).collect();
        self.dispatch(
            Shader::BatchNorm,
            "batch_norm2d_backward",
            &params,
            &bindings,
            &buffers,
            [sizes.channels as u32, 1, 1],
        )
    }
}
