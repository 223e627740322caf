//! Dispatches for `shaders/pool.wgsl`: 2×2 max pooling / unpooling and nearest upsampling, forward and backward.
//! `planes` = batch·channels; see the shader for the math.

use super::kernels::{Dispatch, Kernels, Shader, linear_groups};

impl Kernels {
    pub fn max_pool2x2(
        &mut self,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        argmax: &wgpu::Buffer,
        planes: usize,
        in_h: usize,
        in_w: usize,
    ) -> Dispatch {
        let params = [planes, in_h, in_w, 2].map(|v| v as u32);
        let threads = planes * (in_h / 2) * (in_w / 2);
        self.dispatch(
            Shader::Pool,
            "max_pool2x2",
            &params,
            &[0, 1, 2, 3],
            &[x, y, argmax],
            linear_groups(threads),
        )
    }

    pub fn max_pool2x2_backward(
        &mut self,
        dy: &wgpu::Buffer,
        argmax: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        planes: usize,
        in_h: usize,
        in_w: usize,
    ) -> Dispatch {
        let params = [planes, in_h, in_w, 2].map(|v| v as u32);
        self.dispatch(
            Shader::Pool,
            "max_pool2x2_backward",
            &params,
            &[4, 5, 6, 7],
            &[dy, argmax, dx],
            linear_groups(planes * in_h * in_w),
        )
    }

    /// `out_h` × `out_w` is the unpooled (full-resolution) plane.
    pub fn max_unpool2x2(
        &mut self,
        x: &wgpu::Buffer,
        argmax: &wgpu::Buffer,
        y: &wgpu::Buffer,
        planes: usize,
        out_h: usize,
        out_w: usize,
    ) -> Dispatch {
        let params = [planes, out_h, out_w, 2].map(|v| v as u32);
        self.dispatch(
            Shader::Pool,
            "max_unpool2x2",
            &params,
            &[8, 9, 10, 11],
            &[x, argmax, y],
            linear_groups(planes * out_h * out_w),
        )
    }

    pub fn max_unpool2x2_backward(
        &mut self,
        dy: &wgpu::Buffer,
        argmax: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        planes: usize,
        out_h: usize,
        out_w: usize,
    ) -> Dispatch {
        let params = [planes, out_h, out_w, 2].map(|v| v as u32);
        let threads = planes * (out_h / 2) * (out_w / 2);
        self.dispatch(
            Shader::Pool,
            "max_unpool2x2_backward",
            &params,
            &[12, 13, 14, 15],
            &[dy, argmax, dx],
            linear_groups(threads),
        )
    }

    pub fn upsample_nearest(
        &mut self,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        planes: usize,
        in_h: usize,
        in_w: usize,
        factor: usize,
    ) -> Dispatch {
        let params = [planes, in_h, in_w, factor].map(|v| v as u32);
        let threads = planes * in_h * in_w * factor * factor;
        self.dispatch(
            Shader::Pool,
            "upsample_nearest",
            &params,
            &[16, 17, 18],
            &[x, y],
            linear_groups(threads),
        )
    }

    pub fn upsample_nearest_backward(
        &mut self,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        planes: usize,
        in_h: usize,
        in_w: usize,
        factor: usize,
    ) -> Dispatch {
        let params = [planes, in_h, in_w, factor].map(|v| v as u32);
        self.dispatch(
            Shader::Pool,
            "upsample_nearest_backward",
            &params,
            &[19, 20, 21],
            &[dy, dx],
            linear_groups(planes * in_h * in_w),
        )
    }
}
