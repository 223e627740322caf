//! Dispatches for `shaders/matmul.wgsl` and `shaders/matmul_large.wgsl`, and the choice between them.
//!
//! Three kernels compute C = op(A)·op(B). On a GPU each shape of a plan is timed with every candidate
//! kernel while the plan is built, and the fastest runs it ([`MatmulChoice::Tune`], what `Auto` does
//! there: tile sizes that suit one GPU do not suit another, and timing costs milliseconds once). On a
//! CPU adapter, or when timing is not wanted, [`choose`] picks by shape; tests and benchmarks can force
//! one kernel. The kernels:
//! - **64×64 tiles** (`matmul`, `matmul_bias_act`): 4×4 per thread; for products between the other two.
//! - **128×128 tiles** (`matmul_large*`): 8×8 per thread, twice the arithmetic per byte read from
//!   workgroup memory, the next slab of K prefetched into registers; for products with enough such tiles
//!   to occupy every compute unit of a GPU, and for every product on a CPU adapter (lavapipe), where
//!   two cores are busy with a single tile and the larger block runs about 4× faster than the 64×64
//!   kernel (benches/README.md).
//! - **128×128 tiles, vec4 loads** (`matmul_vec4*`): the same tile, each thread loading its share of
//!   a slab as one 16-byte vec4 of A and one of B; where every operand row is a whole number of vec4s.
//! - **Split-K** (`matmul_partial`, then `matmul_sum_slices*`): the 64×64 kernel with each of
//!   `slices` workgroups along z summing one stretch of K into a scratch buffer, then one launch that
//!   adds the slices in order and finishes as the unsplit kernel would. For products whose C has too few
//!   tiles to occupy a GPU but a long K: a dense layer at batch 128 (C 128×256 is eight 64×64 tiles, K
//!   784) otherwise runs on eight compute units.

use super::kernels::{Dispatch, Kernels, Shader, linear_groups};
use crate::ops::Act;

/// Which kernel multiplies: chosen by shape, or one forced for every matmul of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MatmulChoice {
    /// By shape and adapter, as [`choose`] says.
    #[default]
    Auto,
    Tile64,
    Tile128,
    /// The 128×128 tile with 16-byte operand loads, where the sizes allow ([`vec4_fits`]); elsewhere
    /// the scalar-load `Tile128`.
    Tile128Vec4,
    /// At most this many slices of K; fewer when K is short (every slice is a whole number of 16-deep
    /// steps, at least one). `SplitK(1)` is the 64×64 kernel going through the scratch buffer.
    SplitK(usize),
    /// Each shape timed on the device with every candidate kernel, the fastest kept ([`candidates`]);
    /// likewise the two tile heights of the implicit-GEMM convolutions. What `Auto` does on a GPU; on a
    /// CPU adapter only when asked.
    Tune,
}

impl MatmulChoice {
    /// Names as `gpu-ae bench --matmul-kernels` takes them: auto, tune, tile64, tile128, splitk
    /// (8 slices) or splitkN.
    pub fn parse(text: &str) -> Result<MatmulChoice, String> {
        match text {
            "auto" => Ok(MatmulChoice::Auto),
            "tile64" => Ok(MatmulChoice::Tile64),
            "tile128" => Ok(MatmulChoice::Tile128),
            "tile128v4" => Ok(MatmulChoice::Tile128Vec4),
            "tune" => Ok(MatmulChoice::Tune),
            "splitk" => Ok(MatmulChoice::SplitK(8)),
            _ => match text.strip_prefix("splitk").map(str::parse::<usize>) {
                Some(Ok(n)) if (1..=64).contains(&n) => Ok(MatmulChoice::SplitK(n)),
                _ => Err(format!(
                    "unknown matmul kernel {text:?}: expected auto, tune, tile64, tile128, tile128v4, \
                     splitk or splitkN (N slices, 1 to 64)"
                )),
            },
        }
    }

    /// The kernel that runs C[m×n] with inner dimension k without timing anything: this one, or for
    /// `Auto` (and `Tune`) the one [`choose`] picks by shape.
    pub fn resolve(self, m: usize, n: usize, k: usize, cpu: bool) -> MatmulChoice {
        match self {
            MatmulChoice::Auto | MatmulChoice::Tune => choose(m, n, k, cpu),
            forced => forced,
        }
    }

    pub fn name(self) -> String {
        match self {
            MatmulChoice::Auto => "auto".into(),
            MatmulChoice::Tile64 => "tile64".into(),
            MatmulChoice::Tile128 => "tile128".into(),
            MatmulChoice::Tile128Vec4 => "tile128v4".into(),
            MatmulChoice::Tune => "tune".into(),
            MatmulChoice::SplitK(n) => format!("splitk{n}"),
        }
    }
}

/// Workgroups that keep a discrete GPU busy: a little under one per compute unit of a large GPU (an
/// H100 has 132 SMs), several per compute unit of a small one.
const FILL_WORKGROUPS: usize = 128;
/// K per split-K slice, at least: shorter slices spend more on storing partial tiles than they save.
const MIN_SLICE_K: usize = 128;
/// K advances this much per step of the 64×64 kernel; slices are whole steps.
const TILE64_K_STEP: usize = 16;

/// The kernel for C[m×n] with inner dimension k on an adapter (`cpu`: a software one such as lavapipe,
/// whose few cores one tile already fills).
pub fn choose(m: usize, n: usize, k: usize, cpu: bool) -> MatmulChoice {
    if cpu {
        return MatmulChoice::Tile128;
    }
    if m.div_ceil(128) * n.div_ceil(128) >= FILL_WORKGROUPS {
        return MatmulChoice::Tile128;
    }
    let tiles = m.div_ceil(64) * n.div_ceil(64);
    let slices = FILL_WORKGROUPS.div_ceil(tiles).min(k / MIN_SLICE_K).min(16);
    if slices >= 2 {
        MatmulChoice::SplitK(slices)
    } else {
        MatmulChoice::Tile64
    }
}

/// (k per slice, slice count) for at most `slices` slices of k, each a whole number of steps.
fn split_k(k: usize, slices: usize) -> (usize, usize) {
    let per = k.div_ceil(slices.max(1)).div_ceil(TILE64_K_STEP).max(1) * TILE64_K_STEP;
    (per, k.div_ceil(per).max(1))
}

/// Whether matmul_vec4.wgsl can load the operands: each one's contiguous dimension (k for A stored
/// [m×k], m for A stored [k×m]; n for B stored [k×n], k for B stored [n×k]) a multiple of 4, so that a
/// vec4 never straddles two rows.
pub fn vec4_fits(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool) -> bool {
    let a_contiguous = if trans_a { m } else { k };
    let b_contiguous = if trans_b { k } else { n };
    a_contiguous % 4 == 0 && b_contiguous % 4 == 0
}

/// The kernels worth timing for C[m×n] with inner dimension k: both tile sizes (the 128 one in its vec4
/// form too when `vec4` says the operands allow it), and split-K into 2, 4, 8 or 16 slices where each
/// slice keeps at least 64 of K and the split launches at most 1024 workgroups.
pub fn candidates(m: usize, n: usize, k: usize, vec4: bool) -> Vec<MatmulChoice> {
    let tiles = m.div_ceil(64) * n.div_ceil(64);
    let mut kernels = vec![MatmulChoice::Tile64, MatmulChoice::Tile128];
    if vec4 {
        kernels.push(MatmulChoice::Tile128Vec4);
    }
    for slices in [2, 4, 8, 16] {
        if k >= 64 * slices && tiles * slices <= 1024 {
            kernels.push(MatmulChoice::SplitK(slices));
        }
    }
    kernels
}

/// What tuning a shape remembers: the product's sizes and operand layouts.
pub(super) type TuneKey = (usize, usize, usize, bool, bool);

/// MatmulParams of matmul_common.wgsl: sizes, the accumulate flag, the operands' strides, the
/// epilogue's act, the split of k.
#[allow(clippy::too_many_arguments)]
fn params(
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    accumulate: bool,
    act: Act,
    (k_slice, slices): (usize, usize),
) -> [u32; 12] {
    let (a_row, a_col) = if trans_a { (1, m) } else { (k, 1) };
    let (b_row, b_col) = if trans_b { (1, k) } else { (n, 1) };
    let words = [
        m,
        n,
        k,
        accumulate as usize,
        a_row,
        a_col,
        b_row,
        b_col,
        act.code() as usize,
        k_slice,
        slices,
        0,
    ];
    words.map(|v| v as u32)
}

/// One workgroup per `tile`×`tile` tile of C, `z` deep.
fn tile_groups(m: usize, n: usize, tile: usize, z: usize) -> [u32; 3] {
    [n.div_ceil(tile) as u32, m.div_ceil(tile) as u32, z as u32]
}

/// The operands of one matmul op: C[m×n] = op(A)·op(B) (+ C), or act(x·op(w) + bias) for a dense layer.
#[derive(Clone, Copy)]
struct Product<'b> {
    a: &'b wgpu::Buffer,
    b: &'b wgpu::Buffer,
    c: &'b wgpu::Buffer,
    /// Some for a dense layer's forward pass: the bias, and the activation applied as C is stored.
    bias_act: Option<(&'b wgpu::Buffer, Act)>,
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    accumulate: bool,
}

impl Product<'_> {
    fn vec4_fits(&self) -> bool {
        vec4_fits(self.m, self.n, self.k, self.trans_a, self.trans_b)
    }

    /// Its MatmulParams, k split as `split` = (k per slice, slices).
    fn params(&self, split: (usize, usize)) -> [u32; 12] {
        let act = self.bias_act.map_or(Act::Identity, |(_, act)| act);
        params(
            self.m,
            self.n,
            self.k,
            self.trans_a,
            self.trans_b,
            self.accumulate,
            act,
            split,
        )
    }
}

impl Kernels {
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &mut self,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        c: &wgpu::Buffer,
        m: usize,
        n: usize,
        k: usize,
        trans_a: bool,
        trans_b: bool,
        accumulate: bool,
    ) -> Dispatch {
        self.product(Product {
            a,
            b,
            c,
            bias_act: None,
            m,
            n,
            k,
            trans_a,
            trans_b,
            accumulate,
        })
    }

    /// y[m×n] = act(x·op(w) + bias[column]): a dense layer's forward pass, the bias and activation
    /// applied as the product is stored.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_bias_act(
        &mut self,
        x: &wgpu::Buffer,
        w: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        y: &wgpu::Buffer,
        m: usize,
        n: usize,
        k: usize,
        trans_b: bool,
        act: Act,
    ) -> Dispatch {
        self.product(Product {
            a: x,
            b: w,
            c: y,
            bias_act: Some((bias, act)),
            m,
            n,
            k,
            trans_a: false,
            trans_b,
            accumulate: false,
        })
    }

    fn product(&mut self, op: Product) -> Dispatch {
        let asked = self.matmul_choice;
        let mut choice = if self.tuning() {
            self.tuned(op)
        } else {
            match asked.resolve(op.m, op.n, op.k, self.adapter_is_cpu) {
                // By shape, the 128 tile loads vec4s wherever they fit (about 10% faster on lavapipe).
                MatmulChoice::Tile128 if asked == MatmulChoice::Auto && op.vec4_fits() => {
                    MatmulChoice::Tile128Vec4
                }
                chosen => chosen,
            }
        };
        if choice == MatmulChoice::Tile128Vec4 && !op.vec4_fits() {
            choice = MatmulChoice::Tile128;
        }
        self.matmul_kernels_chosen.push(choice);
        self.product_on(op, choice)
    }

    /// The fastest of [`candidates`] for this shape on this device ([`Kernels::fastest`]), timed once
    /// per shape.
    fn tuned(&mut self, op: Product) -> MatmulChoice {
        let key = (op.m, op.n, op.k, op.trans_a, op.trans_b);
        if let Some(&known) = self.tuned_matmuls.get(&key) {
            return known;
        }
        let candidates = candidates(op.m, op.n, op.k, op.vec4_fits());
        let best = self
            .fastest(candidates, op.c, |k, candidate| k.product_on(op, candidate))
            .unwrap_or(MatmulChoice::Tile64);
        self.tuned_matmuls.insert(key, best);
        best
    }

    fn product_on(&mut self, op: Product, choice: MatmulChoice) -> Dispatch {
        let whole = op.params((op.k.max(1), 1));
        let (shader, tile, entries) = match choice {
            MatmulChoice::Tile128 => (
                Shader::MatmulLarge,
                128,
                ["matmul_large", "matmul_large_bias_act"],
            ),
            MatmulChoice::Tile128Vec4 => (
                Shader::MatmulVec4,
                128,
                ["matmul_vec4", "matmul_vec4_bias_act"],
            ),
            MatmulChoice::SplitK(slices) => {
                // The scratch buffer holds every slice of C and must bind as one storage buffer.
                let limit = self.device.limits().max_storage_buffer_binding_size as usize;
                let fit = (limit / (op.m * op.n * 4).max(1)).max(1);
                return self.split_product(op, split_k(op.k, slices.min(fit)));
            }
            _ => (Shader::Matmul, 64, ["matmul", "matmul_bias_act"]),
        };
        let groups = tile_groups(op.m, op.n, tile, 1);
        match op.bias_act {
            None => self.dispatch(
                shader,
                entries[0],
                &whole,
                &[0, 1, 2, 3],
                &[op.a, op.b, op.c],
                groups,
            ),
            Some((bias, _)) => self.dispatch(
                shader,
                entries[1],
                &whole,
                &[0, 1, 2, 3, 4],
                &[op.a, op.b, op.c, bias],
                groups,
            ),
        }
    }

    /// Split-K: partial products of each slice of k into a scratch buffer of its own, then their sum.
    fn split_product(&mut self, op: Product, split: (usize, usize)) -> Dispatch {
        let words = op.params(split);
        let slices = self.scratch("matmul slices", split.1 * op.m * op.n);
        let partial = self.dispatch(
            Shader::Matmul,
            "matmul_partial",
            &words,
            &[0, 1, 2, 3],
            &[op.a, op.b, &slices],
            tile_groups(op.m, op.n, 64, split.1),
        );
        let sum_groups = linear_groups(op.m * op.n);
        let sum = match op.bias_act {
            None => self.dispatch(
                Shader::Matmul,
                "matmul_sum_slices",
                &words,
                &[0, 3, 5],
                &[op.c, &slices],
                sum_groups,
            ),
            Some((bias, _)) => self.dispatch(
                Shader::Matmul,
                "matmul_sum_slices_bias_act",
                &words,
                &[0, 3, 4, 5],
                &[op.c, bias, &slices],
                sum_groups,
            ),
        };
        partial.followed_by(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_products_take_large_tiles_and_short_wide_ones_split_k() {
        assert_eq!(choose(4096, 4096, 4096, false), MatmulChoice::Tile128);
        // dense-ae at batch 128: 784→256 forward is 8 tiles of 64×64 with K 784.
        assert_eq!(choose(128, 256, 784, false), MatmulChoice::SplitK(6));
        // K too short to split: the weight gradient's K is the batch.
        assert_eq!(choose(256, 784, 128, false), MatmulChoice::Tile64);
        // Mid-sized: enough 64×64 tiles, too few of 128×128.
        assert_eq!(choose(1024, 1000, 784, false), MatmulChoice::Tile64);
        // lavapipe: always the 128×128 kernel.
        assert_eq!(choose(4096, 4096, 4096, true), MatmulChoice::Tile128);
        assert_eq!(choose(128, 256, 784, true), MatmulChoice::Tile128);
    }

    #[test]
    fn slices_cover_k_in_whole_steps() {
        for k in [1, 15, 16, 29, 100, 784, 1000] {
            for want in 1..=9 {
                let (per, count) = split_k(k, want);
                assert_eq!(per % TILE64_K_STEP, 0);
                assert!(count >= 1 && count <= want.max(1), "k={k} want={want}");
                assert!(
                    per * count >= k && per * (count - 1) < k,
                    "k={k} want={want}"
                );
            }
        }
    }

    #[test]
    fn tuning_tries_both_tiles_and_only_splits_that_leave_slices_of_64() {
        assert_eq!(
            candidates(128, 256, 784, true),
            [
                MatmulChoice::Tile64,
                MatmulChoice::Tile128,
                MatmulChoice::Tile128Vec4,
                MatmulChoice::SplitK(2),
                MatmulChoice::SplitK(4),
                MatmulChoice::SplitK(8),
            ]
        );
        assert_eq!(
            candidates(4096, 4096, 4096, false),
            [MatmulChoice::Tile64, MatmulChoice::Tile128]
        );
        assert_eq!(
            candidates(37, 53, 100, false),
            [MatmulChoice::Tile64, MatmulChoice::Tile128]
        );
    }

    #[test]
    fn vec4_loads_need_each_operands_contiguous_dimension_a_multiple_of_4() {
        // A dense layer's forward x·Wᵀ: A [m×k] and B [n×k] both contiguous along k.
        assert!(vec4_fits(128, 250, 784, false, true));
        assert!(!vec4_fits(128, 256, 30, false, true));
        // B stored [k×n]: contiguous along n.
        assert!(!vec4_fits(128, 250, 784, false, false));
        // A stored [k×m] (a weight gradient dyᵀ·x): contiguous along m.
        assert!(!vec4_fits(30, 784, 128, true, false));
        assert!(vec4_fits(32, 784, 127, true, false));
    }

    #[test]
    fn kernel_names_round_trip() {
        for c in [
            MatmulChoice::Auto,
            MatmulChoice::Tune,
            MatmulChoice::Tile64,
            MatmulChoice::Tile128,
            MatmulChoice::Tile128Vec4,
            MatmulChoice::SplitK(3),
        ] {
            assert_eq!(MatmulChoice::parse(&c.name()), Ok(c));
        }
        assert_eq!(MatmulChoice::parse("splitk"), Ok(MatmulChoice::SplitK(8)));
        assert!(MatmulChoice::parse("splitk0").is_err());
        assert!(MatmulChoice::parse("tile32").is_err());
    }
}
