//! Dispatches for the entry points of `shaders/conv2d.wgsl` and `shaders/conv_gemm.wgsl`: convolution
//! forward, data gradient (also the forward of a transposed convolution) and weight gradient. The math is
//! stated in conv2d.wgsl, the GEMM tiling in conv_gemm.wgsl.
//!
//! The forward and the data gradient come in two forms, chosen by shape: the implicit GEMM when the
//! channels of its rows (output channels forward, input channels for the data gradient) fill at least a
//! quarter of a 32-row tile, the one-thread-per-output gather otherwise (a `…→1` layer, say). The GEMMs
//! take 64-row tiles for more than 32 rows (`gemm_tile`); on a GPU both tile heights are timed for each
//! op while the plan is built and the faster kept (`Kernels::with_gemm_tile`). The
//! weight gradient likewise: with 8 or more channels on both sides, an implicit GEMM split along its long
//! batch·positions reduction into partial sums (one slice per z), then a second launch that adds the
//! slices in a fixed order; otherwise one workgroup per weight element.

use super::kernels::{Dispatch, Kernels, Shader, linear_groups};
use crate::ops::{Act, ConvGeom};

/// The shader's `ConvParams`, in field order, `chunk` and `act` 0 (the split weight gradient sets chunk,
/// the *_bias_act entry points act).
fn params(g: &ConvGeom, accumulate: bool) -> [u32; 16] {
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
        0,
        0,
        0,
        0,
    ]
    .map(|v| v as u32)
}

/// Fewest rows (channels) for which a 32-row implicit-GEMM tile beats one thread per output.
const GEMM_MIN_ROWS: usize = ConvGeom::GEMM_MIN_ROWS;

/// The implicit-GEMM module for `rows` rows (channels): 64-row tiles above 32 rows, where each gathered
/// element of B then feeds twice the arithmetic; 32-row tiles otherwise, which waste no rows on a
/// 32-channel layer. Returns the module and its tile height.
fn gemm_tile(rows: usize) -> (Shader, usize) {
    if rows > 32 {
        (Shader::ConvGemmWide, 64)
    } else {
        (Shader::ConvGemm, 32)
    }
}

/// The implicit-GEMM grid: a tile of C (`tile_rows` × 128 columns) per workgroup, `phases`
/// copies along z (the data gradient's stride phases), column tiles past 65 535 folded into z as well
/// (the kernel reads phase = wid.z mod phases and column tile = (wid.z / phases) · groups.x + wid.x;
/// surplus tiles store nothing).
fn gemm_grid(rows: usize, tile_rows: usize, columns: usize, phases: usize) -> [u32; 3] {
    let tiles = columns.div_ceil(128).max(1);
    let x = tiles.min(65_535);
    [
        x as u32,
        rows.div_ceil(tile_rows) as u32,
        (tiles.div_ceil(x) * phases) as u32,
    ]
}

/// `count` workgroups, folded into 2-D past 65 535; the kernel's group index is wid.y · groups.x + wid.x.
fn workgroup_per_item(count: usize) -> [u32; 3] {
    let x = count.clamp(1, 65_535);
    [x as u32, count.div_ceil(x).max(1) as u32, 1]
}

impl Kernels {
    /// The implicit-GEMM dispatch `build` makes for a tile: the one [`gemm_tile`] picks for `rows`, or,
    /// when the kernels are tuned ([`super::MatmulChoice::Tune`], the default on a GPU), whichever of
    /// the two tiles ran faster on this device for this op and geometry ([`Kernels::fastest`]), timed
    /// once.
    fn with_gemm_tile(
        &mut self,
        key: (&'static str, ConvGeom),
        rows: usize,
        out: &wgpu::Buffer,
        build: impl Fn(&mut Kernels, (Shader, usize)) -> Dispatch,
    ) -> Dispatch {
        let tile = if let Some(forced) = self.conv_tile {
            if forced > 32 {
                (Shader::ConvGemmWide, 64)
            } else {
                (Shader::ConvGemm, 32)
            }
        } else if !self.tuning() {
            gemm_tile(rows)
        } else if let Some(&known) = self.tuned_conv_tiles.get(&key) {
            known
        } else {
            let tiles = [(Shader::ConvGemm, 32), (Shader::ConvGemmWide, 64)];
            let best = self.fastest(tiles, out, &build).unwrap_or(gemm_tile(rows));
            self.tuned_conv_tiles.insert(key, best);
            best
        };
        build(self, tile)
    }

    /// Implicit GEMM over output channels × (batch · output positions), K = in_c · k_h · k_w; or one
    /// thread per element of y when there are few output channels.
    pub fn conv2d(
        &mut self,
        g: &ConvGeom,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Dispatch {
        self.conv_forward(g, x, w, y, None)
    }

    /// y = act(conv(x, w) + bias): the GEMM adds bias and activation as it stores; the gather kernel is
    /// followed by a bias_act launch.
    pub fn conv2d_bias_act(
        &mut self,
        g: &ConvGeom,
        [x, w, bias, y]: [&wgpu::Buffer; 4],
        act: Act,
    ) -> Dispatch {
        self.conv_forward(g, x, w, y, Some((bias, act)))
    }

    fn conv_forward(
        &mut self,
        g: &ConvGeom,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        y: &wgpu::Buffer,
        epilogue: Option<(&wgpu::Buffer, Act)>,
    ) -> Dispatch {
        let mut p = params(g, false);
        if g.out_c < GEMM_MIN_ROWS {
            let conv = self.dispatch(
                Shader::Conv2d,
                "conv2d",
                &p,
                &[0, 1, 2, 3],
                &[x, w, y],
                linear_groups(g.y_len()),
            );
            let planes = (g.batch, g.out_c, g.out_h * g.out_w);
            return self.then_bias_act(conv, y, planes, epilogue);
        }
        let columns = g.batch * g.out_h * g.out_w;
        let (entry, bias) = gemm_entry(&mut p, epilogue, w, "conv2d_gemm", "conv2d_gemm_bias_act");
        self.with_gemm_tile((entry, *g), g.out_c, y, |k, (shader, tile_rows)| {
            k.dispatch(
                shader,
                entry,
                &p,
                &[0, 1, 2, 3, 15],
                &[x, w, y, bias],
                gemm_grid(g.out_c, tile_rows, columns, 1),
            )
        })
    }

    /// `conv`, then bias and activation over its output `y` of shape `planes` = (batch, channels, inner)
    /// when the op asks for them.
    fn then_bias_act(
        &mut self,
        conv: Dispatch,
        y: &wgpu::Buffer,
        (batch, channels, inner): (usize, usize, usize),
        epilogue: Option<(&wgpu::Buffer, Act)>,
    ) -> Dispatch {
        match epilogue {
            Some((bias, act)) => {
                conv.followed_by(self.bias_act(y, bias, batch, channels, inner, act))
            }
            None => conv,
        }
    }

    /// Implicit GEMM per stride phase over input channels × (batch · the phase's pixels), K = out_c · the
    /// phase's taps; or one thread per element of dx, gathering over the outputs its pixel feeds, when
    /// there are few input channels.
    pub fn conv2d_backward_data(
        &mut self,
        g: &ConvGeom,
        dy: &wgpu::Buffer,
        w: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        accumulate: bool,
    ) -> Dispatch {
        self.conv_data(g, dy, w, dx, accumulate, None)
    }

    /// A transposed convolution layer's forward pass: y = act(conv_transpose(x, w) + bias), computed as
    /// the data gradient of `g` with x as dy and y as dx, bias and activation added as the GEMM stores
    /// (or by a bias_act launch after the gather kernel).
    pub fn conv_transpose2d_bias_act(
        &mut self,
        g: &ConvGeom,
        [x, w, bias, y]: [&wgpu::Buffer; 4],
        act: Act,
    ) -> Dispatch {
        self.conv_data(g, x, w, y, false, Some((bias, act)))
    }

    fn conv_data(
        &mut self,
        g: &ConvGeom,
        dy: &wgpu::Buffer,
        w: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        accumulate: bool,
        epilogue: Option<(&wgpu::Buffer, Act)>,
    ) -> Dispatch {
        let mut p = params(g, accumulate);
        if g.in_c < GEMM_MIN_ROWS {
            let conv = self.dispatch(
                Shader::Conv2d,
                "conv2d_backward_data",
                &p,
                &[4, 5, 6, 7],
                &[dy, w, dx],
                linear_groups(g.x_len()),
            );
            let planes = (g.batch, g.in_c, g.in_h * g.in_w);
            return self.then_bias_act(conv, dx, planes, epilogue);
        }
        // Phase 0 has the most pixels: ⌈in_h / s⌉ × ⌈in_w / s⌉ per image.
        let columns = g.batch * g.in_h.div_ceil(g.stride) * g.in_w.div_ceil(g.stride);
        let (plain, fused) = (
            "conv2d_backward_data_gemm",
            "conv2d_backward_data_gemm_bias_act",
        );
        let (entry, bias) = gemm_entry(&mut p, epilogue, w, plain, fused);
        self.with_gemm_tile((entry, *g), g.in_c, dx, |k, (shader, tile_rows)| {
            k.dispatch(
                shader,
                entry,
                &p,
                &[4, 5, 6, 7, 16],
                &[dy, w, dx, bias],
                gemm_grid(g.in_c, tile_rows, columns, g.stride * g.stride),
            )
        })
    }

    /// Split implicit GEMM (output channels × in_c·k_h·k_w, summed over batch · output positions in
    /// slices) and the sum of the slices; or one workgroup per element of dw when either side has few
    /// channels.
    pub fn conv2d_backward_weight(
        &mut self,
        g: &ConvGeom,
        dy: &wgpu::Buffer,
        x: &wgpu::Buffer,
        dw: &wgpu::Buffer,
        accumulate: bool,
    ) -> Dispatch {
        if g.in_c < GEMM_MIN_ROWS || g.out_c < GEMM_MIN_ROWS {
            return self.dispatch(
                Shader::Conv2d,
                "conv2d_backward_weight",
                &params(g, accumulate),
                &[8, 9, 10, 11],
                &[dy, x, dw],
                workgroup_per_item(g.w_len()),
            );
        }
        let columns = g.in_c * g.k_h * g.k_w;
        let terms = g.batch * g.out_h * g.out_w;
        let key = ("conv2d_backward_weight_gemm", *g);
        self.with_gemm_tile(key, g.out_c, dw, |k, (shader, tile_rows)| {
            let [tiles_x, tiles_y, _] = gemm_grid(g.out_c, tile_rows, columns, 1);
            let (chunk, slices) = weight_slices(terms, (tiles_x * tiles_y) as usize);
            let mut p = params(g, accumulate);
            p[12] = chunk as u32;
            // Allocated with the plan, like every other buffer: slices × dw, a few MiB at most.
            let partial = k.scratch("conv2d_backward_weight partial sums", slices * g.w_len());
            let partials = k.dispatch(
                shader,
                "conv2d_backward_weight_gemm",
                &p,
                &[8, 9, 10, 11],
                &[dy, x, &partial],
                [tiles_x, tiles_y, slices as u32],
            );
            let sum = k.dispatch(
                shader,
                "conv2d_backward_weight_sum",
                &p,
                &[12, 13, 14],
                &[&partial, dw],
                linear_groups(g.w_len()),
            );
            partials.followed_by(sum)
        })
    }
}

/// The GEMM entry point and the buffer for its bias binding: the fused entry with the layer's bias (its
/// activation code set in `p`), or the plain one, which never reads that binding but shares the store
/// code that does, so the weights are bound there.
fn gemm_entry<'b>(
    p: &mut [u32; 16],
    epilogue: Option<(&'b wgpu::Buffer, Act)>,
    w: &'b wgpu::Buffer,
    plain: &'static str,
    fused: &'static str,
) -> (&'static str, &'b wgpu::Buffer) {
    match epilogue {
        Some((bias, act)) => {
            p[13] = act.code();
            (fused, bias)
        }
        None => (plain, w),
    }
}

/// How the weight gradient's `terms` (batch · output positions) split into slices for `tiles` output
/// tiles: enough workgroups to fill a large GPU (about 256), but at least 256 terms per slice so that
/// small problems stay one or a few slices. Returns (terms per slice, a multiple of 16; slices).
fn weight_slices(terms: usize, tiles: usize) -> (usize, usize) {
    let wanted = 256usize.div_ceil(tiles.max(1));
    let chunk = terms.div_ceil(wanted).next_multiple_of(16).max(256);
    (chunk, terms.div_ceil(chunk).max(1))
}
