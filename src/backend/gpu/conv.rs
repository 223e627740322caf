//! Dispatches for the entry points of `shaders/conv2d.wgsl`: convolution forward, data gradient (also the
//! forward of a transposed convolution) and weight gradient. The math is stated in the shader.

use super::kernels::{Dispatch, Kernels, Shader, linear_groups};
use crate::ops::ConvGeom;

/// The shader's `ConvParams`, in field order.
fn params(g: &ConvGeom, accumulate: bool) -> [u32; 12] {
    [
        g.batch,
        g.in_c,
        g.in_h,
        g.in_w,
        g.out_c,
        g.out_h,
        g.out_w,
        g.k_h,
        g.k_w,
        g.stride,
        g.pad,
        accumulate as usize,
    ]
    .map(|v| v as u32)
}

/// `count` workgroups, folded into 2-D past 65 535; the kernel's group index is wid.y · groups.x + wid.x.
fn workgroup_per_item(count: usize) -> [u32; 3] {
    let x = count.clamp(1, 65_535);
    [x as u32, count.div_ceil(x).max(1) as u32, 1]
}

impl Kernels {
    /// One thread per element of y.
    pub fn conv2d(
        &mut self,
        g: &ConvGeom,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Dispatch {
        self.dispatch(
            Shader::Conv2d,
            "conv2d",
            &params(g, false),
            &[0, 1, 2, 3],
            &[x, w, y],
            linear_groups(g.y_len()),
        )
    }

    /// One thread per element of dx, gathering over the outputs its pixel feeds.
    pub fn conv2d_backward_data(
        &mut self,
        g: &ConvGeom,
        dy: &wgpu::Buffer,
        w: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        accumulate: bool,
    ) -> Dispatch {
        let groups = linear_groups(g.x_len());
        self.dispatch(
            Shader::Conv2d,
            "conv2d_backward_data",
            &params(g, accumulate),
            &[4, 5, 6, 7],
            &[dy, w, dx],
            groups,
        )
    }

    /// One workgroup per element of dw.
    pub fn conv2d_backward_weight(
        &mut self,
        g: &ConvGeom,
        dy: &wgpu::Buffer,
        x: &wgpu::Buffer,
        dw: &wgpu::Buffer,
        accumulate: bool,
    ) -> Dispatch {
        let groups = workgroup_per_item(g.w_len());
        self.dispatch(
            Shader::Conv2d,
            "conv2d_backward_weight",
            &params(g, accumulate),
            &[8, 9, 10, 11],
            &[dy, x, dw],
            groups,
        )
    }
}
