//! The instruction set of the engine: every kernel a plan can schedule.
//!
//! An [`Op`] names its buffers by [`BufId`] and carries every size it needs, so both backends can run it
//! without knowing about layers: the GPU backend turns each op into one compute dispatch (see
//! `backend::gpu::kernels`), the CPU backend into one call of its twin (see `backend::cpu::kernels`).
//!
//! Layout conventions: matrices are row-major; a batch of feature maps is NCHW (batch, channel, row, column),
//! the layout PyTorch uses, so checkpoints and reference figures compare directly.

pub mod classify;
pub mod optim;
pub mod rbm;
pub mod terms;
pub mod vae;

pub use classify::ClassifyOp;
pub use optim::OptimOp;
pub use rbm::{HiddenUnits, RbmOp};
pub use terms::TermOp;
pub use vae::VaeOp;

/// Index of a buffer in [`crate::plan::Plan::buffers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub usize);

/// A number an op reads from the plan's scalar buffer (element `index` of `buf`, see
/// [`crate::plan::Plan::scalars`]) instead of a uniform fixed when the plan was built: the host can change
/// it between steps (a weight's schedule) without rebuilding a dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scalar {
    pub buf: BufId,
    pub index: usize,
}

/// Element-wise activation. Every derivative is expressed through the activation's *output* `y`, so the
/// forward pass can overwrite its input in place and backward still has what it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    Identity,
    Relu,
    /// max(x, slope·x) with slope 0.01 (PyTorch's default); the sign of y equals the sign of x.
    LeakyRelu,
    Sigmoid,
    Tanh,
}

impl Act {
    pub const LEAKY_SLOPE: f32 = 0.01;

    /// The code the WGSL kernels switch on (`shaders/activation.wgsl`).
    pub fn code(self) -> u32 {
        match self {
            Act::Identity => 0,
            Act::Relu => 1,
            Act::LeakyRelu => 2,
            Act::Sigmoid => 3,
            Act::Tanh => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Act::Identity => "identity",
            Act::Relu => "relu",
            Act::LeakyRelu => "leaky-relu",
            Act::Sigmoid => "sigmoid",
            Act::Tanh => "tanh",
        }
    }
}

/// Reconstruction loss, averaged over every element of the valid rows of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Binary cross-entropy on logits z against targets x in [0, 1]; the output activation is sigmoid,
    /// fused into the loss: l = max(z, 0) − z·x + log(1 + e^−|z|),  ∂l/∂z = σ(z) − x.
    BceWithLogits,
    /// Squared error of y = act(z) against x: l = (y − x)²,  ∂l/∂z = 2(y − x)·act'(y).
    Mse,
    /// Absolute error of y = act(z) against x: l = |y − x|,  ∂l/∂z = sign(y − x)·act'(y), sign(0) = 0 (the
    /// subgradient `torch.abs` uses; PyTorch's `nn.L1Loss`).
    L1,
}

impl LossKind {
    pub fn code(self) -> u32 {
        match self {
            LossKind::BceWithLogits => 0,
            LossKind::Mse => 1,
            LossKind::L1 => 2,
        }
    }
}

/// One kernel launch. Sizes are element counts (f32 words, or u32 words for data and index buffers).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Copies the rows of batch `state[1]` of a u8 data set, in the order given by `perm`, into `out` as f32
    /// scaled to [0, 1]. `data` holds the bytes packed little-endian into u32 words. Rows past the end of the
    /// data set (the last, partial batch) are zero-filled, and `state[VALID_ROWS]` receives how many rows
    /// are real.
    GatherBatch {
        data: BufId,
        perm: BufId,
        state: BufId,
        out: BufId,
        batch: usize,
        features: usize,
        samples: usize,
    },
    /// C[m×n] = op(A)·op(B) (+ C when `accumulate`), with op(X) = Xᵀ when the flag is set.
    /// A is stored [m×k] (or [k×m] transposed), B [k×n] (or [n×k] transposed).
    Matmul {
        a: BufId,
        b: BufId,
        c: BufId,
        m: usize,
        n: usize,
        k: usize,
        trans_a: bool,
        trans_b: bool,
        accumulate: bool,
    },
    /// A dense layer's forward pass in one kernel: y[m×n] = act(x[m×k]·op(w) + bias[column]), op(w) = wᵀ when
    /// `trans_b` (w stored [n×k], PyTorch's Linear layout). The same as [`Op::Matmul`] then [`Op::BiasAct`].
    MatmulBiasAct {
        x: BufId,
        w: BufId,
        bias: BufId,
        y: BufId,
        m: usize,
        n: usize,
        k: usize,
        trans_b: bool,
        act: Act,
    },
    /// In place: y = act(y + bias[c]) for y of shape [rows, channels, inner]; dense layers have inner = 1,
    /// convolutions inner = H·W.
    BiasAct {
        y: BufId,
        bias: BufId,
        rows: usize,
        channels: usize,
        inner: usize,
        act: Act,
    },
    /// In place: grad ← grad ⊙ act'(y), turning ∂L/∂y into ∂L/∂(pre-activation).
    ActBackward {
        y: BufId,
        grad: BufId,
        len: usize,
        act: Act,
    },
    /// db[c] = Σ over rows and inner of grad[row, c, inner].
    BiasGrad {
        grad: BufId,
        db: BufId,
        rows: usize,
        channels: usize,
        inner: usize,
    },
    /// Loss of the valid rows of `logits` against `target`: writes ∂(mean loss)/∂logits to `grad`, the
    /// reconstruction act(logits) to `recon`, and one partial loss sum per 256 elements to `partials`.
    /// Valid rows are min(rows, samples − state[1]·rows). The mean is over every valid element, or with
    /// `per_sample` over the valid rows of each row's sum (the VAE literature's loss per image).
    Loss {
        kind: LossKind,
        output_act: Act,
        logits: BufId,
        target: BufId,
        grad: BufId,
        recon: BufId,
        partials: BufId,
        state: BufId,
        rows: usize,
        cols: usize,
        samples: usize,
        per_sample: bool,
        /// With mixed precision: the loss-scaling state ([`optim::amp`]); the gradient is written times
        /// its scale S.
        amp: Option<BufId>,
    },
    /// s = Σ partials[first..first + count] (times `scale` when given: a term's weight), the summed value of
    /// one objective term (or statistic) over a step: acc[slot] += s, and log[state[1]] = s, so the host
    /// can tell which step of an epoch first went non-finite.
    ReduceSum {
        partials: BufId,
        first: usize,
        count: usize,
        scale: Option<Scalar>,
        acc: BufId,
        slot: usize,
        state: BufId,
        log: BufId,
    },
    /// Adam (PyTorch semantics, L2 weight decay added to the gradient; AdamW with `hyper.decoupled`), step
    /// t = state[step_word] + 1: the
    /// completed steps of the parameter's group (the global step for group 0).
    Adam {
        param: BufId,
        grad: BufId,
        m: BufId,
        v: BufId,
        state: BufId,
        step_word: usize,
        len: usize,
        hyper: AdamHyper,
        /// The learning-rate schedule's multiplier ([`optim::LrSchedule`]); `None`: 1.
        lr_scale: Option<Scalar>,
    },
    /// SGD with momentum (PyTorch semantics: buf = μ·buf + g, p −= lr·buf).
    Sgd {
        param: BufId,
        grad: BufId,
        velocity: BufId,
        len: usize,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        lr_scale: Option<Scalar>,
    },
    /// state[0] += 1 (global step), state[1] += 1 (batch index within the epoch).
    AdvanceStep { state: BufId },
    /// 2×2 max pooling with stride 2 (floors odd sizes: the last row / column of an odd plane is dropped):
    /// y[n, c, i, j] = max over the window rows 2i..2i+1, columns 2j..2j+1 of x [batch, channels, in_h, in_w];
    /// `argmax` (u32) holds the flat index h·in_w + w of the max within its input plane. The window is read in
    /// row-major order and only a strictly greater value replaces the best, so the first max wins on ties.
    MaxPool2x2 {
        x: BufId,
        y: BufId,
        argmax: BufId,
        batch: usize,
        channels: usize,
        in_h: usize,
        in_w: usize,
    },
    /// dx[n, c, p] = dy[window of p] when p is that window's argmax, else 0 (a gather over the input: every
    /// input element belongs to at most one window). Sizes as in the forward op.
    MaxPool2x2Backward {
        dy: BufId,
        argmax: BufId,
        dx: BufId,
        batch: usize,
        channels: usize,
        in_h: usize,
        in_w: usize,
    },
    /// PyTorch's MaxUnpool2d(2): y [batch, channels, out_h, out_w] is zero except y[argmax] = x, with x
    /// [batch, channels, ⌊out_h/2⌋, ⌊out_w/2⌋] and `argmax` from the matching [`Op::MaxPool2x2`], whose input
    /// shape is out_h × out_w.
    MaxUnpool2x2 {
        x: BufId,
        argmax: BufId,
        y: BufId,
        batch: usize,
        channels: usize,
        out_h: usize,
        out_w: usize,
    },
    /// dx[n, c, i, j] = dy[n, c, argmax[n, c, i, j]]. Sizes as in the forward op.
    MaxUnpool2x2Backward {
        dy: BufId,
        argmax: BufId,
        dx: BufId,
        batch: usize,
        channels: usize,
        out_h: usize,
        out_w: usize,
    },
    /// Nearest-neighbour upsampling by an integer factor: y[n, c, h, w] = x[n, c, ⌊h/f⌋, ⌊w/f⌋] for y of shape
    /// [batch, channels, in_h·f, in_w·f].
    UpsampleNearest {
        x: BufId,
        y: BufId,
        batch: usize,
        channels: usize,
        in_h: usize,
        in_w: usize,
        factor: usize,
    },
    /// dx[n, c, i, j] = Σ over the f×f block of dy at rows i·f.., columns j·f...
    UpsampleNearestBackward {
        dy: BufId,
        dx: BufId,
        batch: usize,
        channels: usize,
        in_h: usize,
        in_w: usize,
        factor: usize,
    },
    /// Batch normalisation of x [batch, channels, inner] per channel (PyTorch BatchNorm2d semantics):
    /// y = γ·(x − μ)·inv_std + β. Training: μ and the biased variance σ² are taken over the valid rows
    /// (min(batch, samples − state[1]·batch), as [`Op::Loss`] counts them) and all `inner` positions;
    /// inv_std = 1/√(σ² + ε); `mean` and `inv_std` are saved for backward; running_mean ← (1−m)·running_mean +
    /// m·μ, running_var ← (1−m)·running_var + m·σ²·n/(n−1) with n the count of values. Padded rows are
    /// normalised with the same statistics (finite, ignored). Eval: μ, σ² are the running statistics and
    /// nothing but y is written.
    BatchNorm2d {
        x: BufId,
        y: BufId,
        gamma: BufId,
        beta: BufId,
        mean: BufId,
        inv_std: BufId,
        running_mean: BufId,
        running_var: BufId,
        state: BufId,
        batch: usize,
        channels: usize,
        inner: usize,
        samples: usize,
        momentum: f32,
        eps: f32,
        training: bool,
    },
    /// Backward of training-mode [`Op::BatchNorm2d`] over the valid rows, with x̂ = (x − μ)·inv_std and n values
    /// per channel: dβ = Σ dy, dγ = Σ dy·x̂, dx = γ·inv_std/n · (n·dy − dβ − x̂·dγ); padded rows get dx = 0.
    BatchNorm2dBackward {
        x: BufId,
        dy: BufId,
        dx: BufId,
        gamma: BufId,
        dgamma: BufId,
        dbeta: BufId,
        mean: BufId,
        inv_std: BufId,
        state: BufId,
        batch: usize,
        channels: usize,
        inner: usize,
        samples: usize,
    },
    /// Corruption for denoising autoencoders: y = noise(x) element-wise over `len` elements, with randomness
    /// from [`crate::rng::counter_hash`] keyed by (seed, stream, state[0], element index), so a step's noise
    /// is the same on every backend and on every replay. `mask`, when given, receives 1 where the corruption
    /// chose the element (masked, salted, peppered or occluded) and 0 elsewhere, for the emphasised loss.
    /// `image` is one sample's [height, width] (square occlusion draws one position per sample; [1, n] for
    /// a flat vector).
    Corrupt {
        x: BufId,
        y: BufId,
        mask: Option<BufId>,
        state: BufId,
        len: usize,
        image: [usize; 2],
        noise: Noise,
        seed: u32,
        stream: u32,
    },
    /// y[n, o, i, j] = Σ_{c, a, b} x[n, c, i·s − p + a, j·s − p + b] · w[o, c, a, b] (taps outside the input
    /// read zero). No bias: a layer's forward is [`Op::ConvBiasAct`]; this bare form serves backward
    /// passes (the data gradient of a transposed convolution).
    Conv2d {
        geom: ConvGeom,
        x: BufId,
        w: BufId,
        y: BufId,
    },
    /// dx = ∂L/∂x of [`Op::Conv2d`] given dy = ∂L/∂y (+ dx when `accumulate`):
    /// dx[n, c, h, v] = Σ over (o, a, b) with h = i·s − p + a, v = j·s − p + b of dy[n, o, i, j] · w[o, c, a, b].
    /// This is also the forward of a transposed convolution; see [`ConvGeom::for_transpose`].
    Conv2dBackwardData {
        geom: ConvGeom,
        dy: BufId,
        w: BufId,
        dx: BufId,
        accumulate: bool,
    },
    /// A convolution layer's forward pass in one op: y = act(conv(x, w) + bias[o]) with the conv of
    /// [`Op::Conv2d`], or, when `transposed`, y = act(conv_transpose(x, w) + bias[o]) with the transposed
    /// convolution computed as [`Op::Conv2dBackwardData`] of `geom` (x in the role of dy, y of dx).
    /// The same as the conv op then [`Op::BiasAct`]; the GPU adds bias and activation as it stores.
    ConvBiasAct {
        geom: ConvGeom,
        x: BufId,
        w: BufId,
        bias: BufId,
        y: BufId,
        act: Act,
        transposed: bool,
    },
    /// dw = ∂L/∂w of [`Op::Conv2d`] (+ dw when `accumulate`):
    /// dw[o, c, a, b] = Σ_{n, i, j} dy[n, o, i, j] · x[n, c, i·s − p + a, j·s − p + b].
    Conv2dBackwardWeight {
        geom: ConvGeom,
        dy: BufId,
        x: BufId,
        dw: BufId,
        accumulate: bool,
    },
    /// An objective term's op: penalties on an activation, their statistics, the emphasised loss.
    Term(TermOp),
    /// A variational autoencoder's op: the reparameterisation, the Gaussian KL, the KL weight's warm-up.
    Vae(VaeOp),
    /// A restricted Boltzmann machine's op: hidden samples and the contrastive-divergence statistics.
    Rbm(RbmOp),
    /// A classifier's op: the batch's labels, the softmax cross-entropy and its gradient.
    Classify(ClassifyOp),
    /// RMSprop, Adagrad, and the learning-rate schedule.
    Optim(OptimOp),
}

/// Geometry of a 2-D convolution x[N, in_c, in_h, in_w] ⊛ w[out_c, in_c, k_h, k_w] → y[N, out_c, out_h, out_w],
/// out = (in + 2·pad − k) / stride + 1 (floor). All tensors are NCHW, weights OIHW, as in PyTorch.
///
/// A transposed convolution is described by the convolution it transposes (see [`ConvGeom::for_transpose`]).
/// With that geometry, a ConvTranspose2d layer with input x_t, weight w_t[in_t, out_t, k, k] (PyTorch's
/// layout, which is the transposed conv's OIHW weight) and output y_t maps onto the three conv ops as:
///
/// | transposed conv       | op                                                              |
/// |-----------------------|-----------------------------------------------------------------|
/// | y_t = x_t ⊛ᵀ w_t      | [`Op::Conv2dBackwardData`] { dy: x_t, w: w_t, dx: y_t }         |
/// | dx_t = ∂L/∂x_t        | [`Op::Conv2d`] { x: dy_t, w: w_t, y: dx_t }                     |
/// | dw_t = ∂L/∂w_t        | [`Op::Conv2dBackwardWeight`] { dy: x_t, x: dy_t, dw: dw_t }     |
///
/// Why: ConvT(x) = Convᵀ·x for the linear map Conv(·; w) of the geometry, so its data gradient is
/// Conv·dy_t, and ⟨dy_t, Convᵀ(x_t; w)⟩ = ⟨Conv(dy_t; w), x_t⟩ is bilinear in (dy_t, x_t) exactly like the
/// conv's weight gradient with (x, dy) := (dy_t, x_t). `tests/conv.rs` checks all three by finite differences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeom {
    pub batch: usize,
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    /// Output channels (of the convolution, or of its data gradient) below which the GPU runs the direct
    /// kernels of `conv2d.wgsl` instead of the implicit GEMM, whose tiles they would leave mostly empty.
    pub const GEMM_MIN_ROWS: usize = 8;

    /// Whether [`Op::ConvBiasAct`] runs as two passes on the GPU (the direct kernel stores the
    /// convolution, a second pass adds bias and activation) rather than with the fused GEMM epilogue. With
    /// mixed precision the two-pass form rounds its output to f16 twice, and the CPU twin does the same.
    pub fn bias_act_in_second_pass(&self, transposed: bool) -> bool {
        match transposed {
            false => self.out_c < Self::GEMM_MIN_ROWS,
            true => self.in_c < Self::GEMM_MIN_ROWS,
        }
    }

    /// A square-kernel convolution; computes out_h and out_w.
    ///
    /// Panics when the stride is zero or the kernel is larger than the padded input: layer builders check
    /// their shapes (and report the layer) before they get here.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        in_c: usize,
        in_h: usize,
        in_w: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> ConvGeom {
        assert!(
            stride > 0 && k > 0,
            "conv2d: stride and kernel size must be positive"
        );
        assert!(
            k <= in_h + 2 * pad && k <= in_w + 2 * pad,
            "conv2d: kernel {k} is larger than the padded input {in_h}×{in_w} (pad {pad})"
        );
        let out = |size: usize| (size + 2 * pad - k) / stride + 1;
        ConvGeom {
            batch,
            in_c,
            in_h,
            in_w,
            out_c,
            out_h: out(in_h),
            out_w: out(in_w),
            k_h: k,
            k_w: k,
            stride,
            pad,
        }
    }

    /// The geometry describing ConvTranspose2d(in_c → out_c, k, stride, pad, output_pad) applied to
    /// x_t[batch, in_c, in_h, in_w]: the convolution whose data gradient it is. That conv's input is the
    /// transposed conv's output [out_c, (in_h − 1)·s − 2p + k + op, …] and its output is the transposed conv's
    /// input, so the returned geometry has `in_c` = out_c and `out_c` = in_c (PyTorch's sizes, swapped).
    ///
    /// Panics unless output_pad < stride (PyTorch's rule, which makes the shapes consistent) and the output
    /// size is positive.
    #[allow(clippy::too_many_arguments)]
    pub fn for_transpose(
        batch: usize,
        in_c: usize,
        in_h: usize,
        in_w: usize,
        out_c: usize,
        k: usize,
        stride: usize,
        pad: usize,
        output_pad: usize,
    ) -> ConvGeom {
        assert!(
            output_pad < stride,
            "conv_transpose2d: output padding {output_pad} must be smaller than stride {stride}"
        );
        let out = |size: usize| {
            ((size.max(1) - 1) * stride + k + output_pad).checked_sub(2 * pad).filter(|&o| o > 0).unwrap_or_else(|| {
                panic!("conv_transpose2d: input {in_h}×{in_w} with kernel {k}, stride {stride}, pad {pad} has no output")
            })
        };
        let geom = ConvGeom::new(batch, out_c, out(in_h), out(in_w), in_c, k, stride, pad);
        debug_assert_eq!((geom.out_h, geom.out_w), (in_h, in_w));
        geom
    }

    /// Elements of x (the conv's input; a transposed conv's output).
    pub fn x_len(&self) -> usize {
        self.batch * self.in_c * self.in_h * self.in_w
    }

    /// Elements of y (the conv's output; a transposed conv's input).
    pub fn y_len(&self) -> usize {
        self.batch * self.out_c * self.out_h * self.out_w
    }

    pub fn w_len(&self) -> usize {
        self.out_c * self.in_c * self.k_h * self.k_w
    }

    /// Multiply-adds ×2 of one of the three ops (each does the same products).
    pub fn flops(&self) -> usize {
        2 * self.y_len() * self.in_c * self.k_h * self.k_w
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: the weight decay shrinks the parameter directly, p ← p·(1 − lr·wd), instead of being added to
    /// the gradient (Loshchilov & Hutter; `torch.optim.AdamW`).
    pub decoupled: bool,
}

impl Default for AdamHyper {
    fn default() -> Self {
        AdamHyper {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

/// Input corruption of a denoising autoencoder (see [`Op::Corrupt`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Noise {
    /// y = clamp(x + σ·z, 0, 1) with z ~ N(0, 1) (Box–Muller on two uniforms).
    Gaussian { sigma: f32 },
    /// y = 0 with probability `fraction`, else x.
    Mask { fraction: f32 },
    /// With probability `fraction`, y = 0 or 1 (half each); else y = x.
    SaltPepper { fraction: f32 },
    /// A `size` × `size` square of each image set to 0, at a position drawn per image (uniform over the
    /// positions where it fits): occlusion, what `gpu-ae complete` asks a model to fill in.
    Square { size: u32 },
}

impl Noise {
    /// The code `shaders/noise.wgsl` switches on.
    pub fn code(self) -> u32 {
        match self {
            Noise::Gaussian { .. } => 0,
            Noise::Mask { .. } => 1,
            Noise::SaltPepper { .. } => 2,
            Noise::Square { .. } => 3,
        }
    }

    /// σ for Gaussian noise, the square's side for occlusion, the corrupted fraction otherwise.
    pub fn amount(self) -> f32 {
        match self {
            Noise::Gaussian { sigma } => sigma,
            Noise::Mask { fraction } | Noise::SaltPepper { fraction } => fraction,
            Noise::Square { size } => size as f32,
        }
    }
}

impl Op {
    /// Short name used by the profiler and in error messages: the WGSL entry point, or the stem of the
    /// entry points an op chooses among by shape (`conv2d` for `conv2d` and `conv2d_gemm`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::GatherBatch { .. } => "gather_batch",
            Op::Matmul { .. } => "matmul",
            Op::MatmulBiasAct { .. } => "matmul_bias_act",
            Op::BiasAct { .. } => "bias_act",
            Op::ActBackward { .. } => "act_backward",
            Op::BiasGrad { .. } => "bias_grad",
            Op::Loss { .. } => "loss",
            Op::ReduceSum { .. } => "reduce_sum",
            Op::Adam { .. } => "adam",
            Op::Sgd { .. } => "sgd",
            Op::AdvanceStep { .. } => "advance_step",
            Op::MaxPool2x2 { .. } => "max_pool2x2",
            Op::MaxPool2x2Backward { .. } => "max_pool2x2_backward",
            Op::MaxUnpool2x2 { .. } => "max_unpool2x2",
            Op::MaxUnpool2x2Backward { .. } => "max_unpool2x2_backward",
            Op::UpsampleNearest { .. } => "upsample_nearest",
            Op::UpsampleNearestBackward { .. } => "upsample_nearest_backward",
            Op::BatchNorm2d { .. } => "batch_norm2d",
            Op::BatchNorm2dBackward { .. } => "batch_norm2d_backward",
            Op::Corrupt { .. } => "corrupt",
            Op::Conv2d { .. } => "conv2d",
            Op::Conv2dBackwardData { .. } => "conv2d_backward_data",
            Op::Conv2dBackwardWeight { .. } => "conv2d_backward_weight",
            Op::ConvBiasAct {
                transposed: false, ..
            } => "conv2d_bias_act",
            Op::ConvBiasAct {
                transposed: true, ..
            } => "conv_transpose2d_bias_act",
            Op::Term(t) => t.name(),
            Op::Vae(v) => v.name(),
            Op::Rbm(r) => r.name(),
            Op::Classify(c) => c.name(),
            Op::Optim(o) => o.name(),
        }
    }
}

/// Indices into a program's state buffer (u32 words).
pub mod state {
    /// Completed optimizer steps over the whole run.
    pub const GLOBAL_STEP: usize = 0;
    /// Batch index within the current pass over the data.
    pub const BATCH: usize = 1;
    /// How many rows of the current batch hold samples (the rest pad the last, partial batch): written by
    /// the batch gather, read by every batch statistic and penalty.
    pub const VALID_ROWS: usize = 2;
    /// Completed optimizer steps of parameter groups 1, 2, … (group 0 counts in [`GLOBAL_STEP`]).
    pub const GROUP_STEPS: usize = 3;
    pub const LEN: usize = 8;
}

/// Cost estimates for the profiler and the benchmarks: useful work, not what a kernel happens to do.
///
/// `flops` counts multiply-adds as two and every other arithmetic step as one (matmul 2·m·n·k, convolutions
/// [`ConvGeom::flops`]); data movement ops count zero. `bytes` is the minimal traffic: every element read once
/// plus every element written once, at 4 bytes (the packed u8 data set at 1), so GB/s is a lower bound on
/// what the kernel actually moves.
impl Op {
    /// The f32 buffers this op writes (u32 outputs such as argmax indices and the step counter are left
    /// out): what `--detect-anomaly` checks after each op.
    pub fn float_outputs(&self) -> Vec<BufId> {
        match *self {
            Op::GatherBatch { out, .. } => vec![out],
            Op::Matmul { c, .. } => vec![c],
            Op::MatmulBiasAct { y, .. } => vec![y],
            Op::BiasAct { y, .. } => vec![y],
            Op::ActBackward { grad, .. } => vec![grad],
            Op::BiasGrad { db, .. } => vec![db],
            Op::Loss {
                grad,
                recon,
                partials,
                ..
            } => vec![grad, recon, partials],
            Op::ReduceSum { acc, log, .. } => vec![acc, log],
            Op::Adam { param, m, v, .. } => vec![param, m, v],
            Op::Sgd {
                param, velocity, ..
            } => vec![param, velocity],
            Op::AdvanceStep { .. } => vec![],
            Op::MaxPool2x2 { y, .. } => vec![y],
            Op::MaxPool2x2Backward { dx, .. } => vec![dx],
            Op::MaxUnpool2x2 { y, .. } => vec![y],
            Op::MaxUnpool2x2Backward { dx, .. } => vec![dx],
            Op::UpsampleNearest { y, .. } => vec![y],
            Op::UpsampleNearestBackward { dx, .. } => vec![dx],
            Op::BatchNorm2d {
                y,
                mean,
                inv_std,
                running_mean,
                running_var,
                training,
                ..
            } => {
                if training {
                    vec![y, mean, inv_std, running_mean, running_var]
                } else {
                    vec![y]
                }
            }
            Op::BatchNorm2dBackward {
                dx, dgamma, dbeta, ..
            } => vec![dx, dgamma, dbeta],
            Op::Corrupt { y, mask, .. } => std::iter::once(y).chain(mask).collect(),
            Op::Conv2d { y, .. } => vec![y],
            Op::Conv2dBackwardData { dx, .. } => vec![dx],
            Op::Conv2dBackwardWeight { dw, .. } => vec![dw],
            Op::ConvBiasAct { y, .. } => vec![y],
            Op::Term(ref t) => t.float_outputs(),
            Op::Vae(ref v) => v.float_outputs(),
            Op::Rbm(ref r) => r.float_outputs(),
            Op::Classify(ref c) => c.float_outputs(),
            Op::Optim(ref o) => o.float_outputs(),
        }
    }

    pub fn flops(&self) -> u64 {
        let f = match *self {
            Op::GatherBatch {
                batch, features, ..
            } => batch * features,
            Op::Matmul { m, n, k, .. } => 2 * m * n * k,
            // The product, the bias add, and the activation counted as one step per element.
            Op::MatmulBiasAct { m, n, k, .. } => 2 * m * n * k + 2 * m * n,
            Op::BiasAct {
                rows,
                channels,
                inner,
                ..
            } => 2 * rows * channels * inner,
            Op::ActBackward { len, .. } => 2 * len,
            Op::BiasGrad {
                rows,
                channels,
                inner,
                ..
            } => rows * channels * inner,
            Op::Loss { rows, cols, .. } => 8 * rows * cols,
            Op::ReduceSum { count, .. } => count,
            Op::Adam { len, .. } => 12 * len,
            Op::Sgd { len, .. } => 4 * len,
            Op::AdvanceStep { .. } => 2,
            Op::MaxPool2x2 {
                batch,
                channels,
                in_h,
                in_w,
                ..
            } => 3 * batch * channels * (in_h / 2) * (in_w / 2),
            Op::MaxPool2x2Backward { .. }
            | Op::MaxUnpool2x2 { .. }
            | Op::MaxUnpool2x2Backward { .. }
            | Op::UpsampleNearest { .. } => 0,
            Op::UpsampleNearestBackward {
                batch,
                channels,
                in_h,
                in_w,
                factor,
                ..
            } => batch * channels * in_h * in_w * factor * factor,
            Op::BatchNorm2d {
                batch,
                channels,
                inner,
                ..
            } => 6 * batch * channels * inner,
            Op::BatchNorm2dBackward {
                batch,
                channels,
                inner,
                ..
            } => 8 * batch * channels * inner,
            Op::Corrupt { len, .. } => 10 * len,
            Op::Conv2d { geom, .. }
            | Op::Conv2dBackwardData { geom, .. }
            | Op::Conv2dBackwardWeight { geom, .. } => geom.flops(),
            // The convolution, then bias and activation per output element.
            Op::ConvBiasAct {
                geom, transposed, ..
            } => {
                let outputs = if transposed {
                    geom.x_len()
                } else {
                    geom.y_len()
                };
                geom.flops() + 2 * outputs
            }
            Op::Term(ref t) => t.flops(),
            Op::Vae(ref v) => v.flops(),
            Op::Rbm(ref r) => r.flops(),
            Op::Classify(ref c) => c.flops(),
            Op::Optim(ref o) => o.flops(),
        };
        f as u64
    }

    pub fn bytes(&self) -> u64 {
        let acc = |accumulate: bool| if accumulate { 2 } else { 1 };
        let words = match *self {
            // u8 pixels in (a quarter word each), a perm index per row, f32 out.
            Op::GatherBatch {
                batch, features, ..
            } => batch * features / 4 + batch + batch * features,
            Op::Matmul {
                m,
                n,
                k,
                accumulate,
                ..
            } => m * k + k * n + acc(accumulate) * m * n,
            Op::MatmulBiasAct { m, n, k, .. } => m * k + k * n + n + m * n,
            Op::BiasAct {
                rows,
                channels,
                inner,
                ..
            } => 2 * rows * channels * inner + channels,
            Op::ActBackward { len, .. } => 3 * len,
            Op::BiasGrad {
                rows,
                channels,
                inner,
                ..
            } => rows * channels * inner + channels,
            // logits and target in; gradient, reconstruction and partial sums out.
            Op::Loss { rows, cols, .. } => 4 * rows * cols + (rows * cols).div_ceil(256),
            Op::ReduceSum { count, .. } => count + 2,
            // param, grad, m, v in; param, m, v out.
            Op::Adam { len, .. } => 7 * len,
            Op::Sgd { len, .. } => 5 * len,
            Op::AdvanceStep { .. } => 4,
            Op::MaxPool2x2 {
                batch,
                channels,
                in_h,
                in_w,
                ..
            } => {
                let out = batch * channels * (in_h / 2) * (in_w / 2);
                batch * channels * in_h * in_w + 2 * out
            }
            Op::MaxPool2x2Backward {
                batch,
                channels,
                in_h,
                in_w,
                ..
            } => batch * channels * in_h * in_w + 2 * batch * channels * (in_h / 2) * (in_w / 2),
            Op::MaxUnpool2x2 {
                batch,
                channels,
                out_h,
                out_w,
                ..
            } => {
                batch * channels * out_h * out_w + 2 * batch * channels * (out_h / 2) * (out_w / 2)
            }
            Op::MaxUnpool2x2Backward {
                batch,
                channels,
                out_h,
                out_w,
                ..
            } => 3 * batch * channels * (out_h / 2) * (out_w / 2),
            Op::UpsampleNearest {
                batch,
                channels,
                in_h,
                in_w,
                factor,
                ..
            }
            | Op::UpsampleNearestBackward {
                batch,
                channels,
                in_h,
                in_w,
                factor,
                ..
            } => batch * channels * in_h * in_w * (1 + factor * factor),
            // x, γ, β in; y, mean, inv_std and the running statistics out.
            Op::BatchNorm2d {
                batch,
                channels,
                inner,
                ..
            } => 2 * batch * channels * inner + 8 * channels,
            Op::BatchNorm2dBackward {
                batch,
                channels,
                inner,
                ..
            } => 3 * batch * channels * inner + 5 * channels,
            Op::Corrupt { len, mask, .. } => (2 + mask.is_some() as usize) * len,
            Op::Conv2d { geom, .. } => geom.x_len() + geom.w_len() + geom.y_len(),
            Op::Conv2dBackwardData {
                geom, accumulate, ..
            } => geom.y_len() + geom.w_len() + acc(accumulate) * geom.x_len(),
            Op::Conv2dBackwardWeight {
                geom, accumulate, ..
            } => geom.y_len() + geom.x_len() + acc(accumulate) * geom.w_len(),
            // Input, weights, bias, output; the bias has a value per output channel.
            Op::ConvBiasAct {
                geom, transposed, ..
            } => {
                geom.x_len()
                    + geom.w_len()
                    + geom.y_len()
                    + if transposed { geom.in_c } else { geom.out_c }
            }
            Op::Term(ref t) => t.words(),
            Op::Vae(ref v) => v.words(),
            Op::Rbm(ref r) => r.words(),
            Op::Classify(ref c) => c.words(),
            Op::Optim(ref o) => o.words(),
        };
        4 * words as u64
    }

    /// The sizes that matter for an op's cost, for profiler tables: e.g. `128×784·784×256` for a matmul,
    /// `x 128×1×28×28 w 32×1×3×3 s2` for a convolution.
    pub fn shapes(&self) -> String {
        let conv = |g: &ConvGeom| {
            format!(
                "x {}×{}×{}×{} w {}×{}×{}×{} s{} → {}×{}",
                g.batch,
                g.in_c,
                g.in_h,
                g.in_w,
                g.out_c,
                g.in_c,
                g.k_h,
                g.k_w,
                g.stride,
                g.out_h,
                g.out_w
            )
        };
        match self {
            Op::GatherBatch {
                batch, features, ..
            } => format!("{batch}×{features}"),
            Op::Matmul {
                m,
                n,
                k,
                trans_a,
                trans_b,
                accumulate,
                ..
            } => format!(
                "{m}×{k}{}·{k}×{n}{}{}",
                if *trans_a { "ᵀ" } else { "" },
                if *trans_b { "ᵀ" } else { "" },
                if *accumulate { " +=" } else { "" }
            ),
            Op::MatmulBiasAct {
                m,
                n,
                k,
                trans_b,
                act,
                ..
            } => format!(
                "{m}×{k}·{k}×{n}{} + bias, {}",
                if *trans_b { "ᵀ" } else { "" },
                act.name()
            ),
            Op::BiasAct {
                rows,
                channels,
                inner,
                act,
                ..
            } => format!("{rows}×{channels}×{inner} {}", act.name()),
            Op::ActBackward { len, act, .. } => format!("{len} {}", act.name()),
            Op::BiasGrad {
                rows,
                channels,
                inner,
                ..
            } => format!("{rows}×{channels}×{inner}"),
            Op::Loss {
                kind, rows, cols, ..
            } => format!("{rows}×{cols} {kind:?}"),
            Op::ReduceSum { count, .. } => format!("{count}"),
            Op::Adam { len, .. } | Op::Sgd { len, .. } | Op::Corrupt { len, .. } => {
                format!("{len}")
            }
            Op::AdvanceStep { .. } => String::new(),
            Op::MaxPool2x2 {
                batch,
                channels,
                in_h,
                in_w,
                ..
            }
            | Op::MaxPool2x2Backward {
                batch,
                channels,
                in_h,
                in_w,
                ..
            }
            | Op::UpsampleNearest {
                batch,
                channels,
                in_h,
                in_w,
                ..
            }
            | Op::UpsampleNearestBackward {
                batch,
                channels,
                in_h,
                in_w,
                ..
            } => format!("in {batch}×{channels}×{in_h}×{in_w}"),
            Op::MaxUnpool2x2 {
                batch,
                channels,
                out_h,
                out_w,
                ..
            }
            | Op::MaxUnpool2x2Backward {
                batch,
                channels,
                out_h,
                out_w,
                ..
            } => format!("out {batch}×{channels}×{out_h}×{out_w}"),
            Op::BatchNorm2d {
                batch,
                channels,
                inner,
                ..
            }
            | Op::BatchNorm2dBackward {
                batch,
                channels,
                inner,
                ..
            } => format!("{batch}×{channels}×{inner}"),
            Op::Conv2d { geom, .. }
            | Op::Conv2dBackwardData { geom, .. }
            | Op::Conv2dBackwardWeight { geom, .. } => conv(geom),
            Op::ConvBiasAct { geom, act, .. } => format!("{} + bias, {}", conv(geom), act.name()),
            Op::Term(t) => t.shapes(),
            Op::Vae(v) => v.shapes(),
            Op::Rbm(r) => r.shapes(),
            Op::Classify(c) => c.shapes(),
            Op::Optim(o) => o.shapes(),
        }
    }
}
