//! Dispatches of the restricted Boltzmann machine's ops ([`RbmOp`]): `shaders/rbm.wgsl`. Every entry point
//! takes the same uniform (`RbmParams`) at binding 0 and the program's state at binding 1, then its own
//! buffers.

use super::kernels::{Dispatch, Kernels, Shader, linear_groups};
use crate::ops::{BufId, RbmOp};

impl Kernels {
    pub fn rbm(&mut self, bufs: &[wgpu::Buffer], op: &RbmOp) -> Dispatch {
        let b = |id: BufId| &bufs[id.0];
        // `RbmParams` of rbm.wgsl: rows, cols, seed, stream, units, padding.
        let params = |rows: usize, cols: usize, seed: u32, stream: u32, units: u32| {
            [rows as u32, cols as u32, seed, stream, units, 0, 0, 0]
        };
        let (entry, words, bindings, buffers, elements): (_, _, &[u32], Vec<&wgpu::Buffer>, _) =
            match *op {
                RbmOp::SampleHidden {
                    h,
                    sample,
                    state,
                    rows,
                    cols,
                    units,
                    seed,
                    stream,
                } => (
                    "sample_hidden",
                    params(rows, cols, seed, stream, units.code()),
                    &[0, 1, 2, 3],
                    vec![b(state), b(h), b(sample)],
                    rows * cols,
                ),
                RbmOp::CdHidden {
                    h0,
                    h1,
                    stacked,
                    state,
                    rows,
                    cols,
                } => (
                    "cd_hidden",
                    params(rows, cols, 0, 0, 0),
                    &[0, 1, 4, 5, 6],
                    vec![b(state), b(h0), b(h1), b(stacked)],
                    rows * cols,
                ),
                RbmOp::CdVisible {
                    v0,
                    stacked,
                    delta,
                    partials,
                    state,
                    rows,
                    cols,
                } => (
                    "cd_visible",
                    params(rows, cols, 0, 0, 0),
                    &[0, 1, 7, 8, 9, 10],
                    vec![b(state), b(v0), b(stacked), b(delta), b(partials)],
                    rows * cols,
                ),
            };
        self.dispatch(
            Shader::Rbm,
            entry,
            &words,
            bindings,
            &buffers,
            linear_groups(elements),
        )
    }
}
