//! One Rust function per WGSL entry point: each builds the bind group and uniform parameters for one
//! dispatch, once, when a plan is loaded. Recording a step is then only set_pipeline / set_bind_group /
//! dispatch_workgroups.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use wgpu::util::DeviceExt;

use super::GpuContext;
use super::matmul::{MatmulChoice, TuneKey};
use crate::ops::{Act, AdamHyper, ConvGeom, LossKind};

/// The WGSL sources, compiled into the binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Data,
    Matmul,
    MatmulLarge,
    MatmulVec4,
    Activation,
    Bias,
    Loss,
    Reduce,
    Optim,
    Pool,
    BatchNorm,
    Noise,
    Terms,
    Vae,
    Rbm,
    Classify,
    Amp,
    Conv2d,
    /// conv_gemm.wgsl with the 32-row tile, and with the 64-row tile.
    ConvGemm,
    ConvGemmWide,
}

const ACTIVATION_MATH: &str = include_str!("../../../shaders/activation_math.wgsl");
const MATMUL_COMMON: &str = include_str!("../../../shaders/matmul_common.wgsl");
const MATMUL_OPERANDS: &str = include_str!("../../../shaders/matmul_operands.wgsl");
const MATMUL_TILE128: &str = include_str!("../../../shaders/matmul_tile128.wgsl");
const WORKGROUP_SUM: &str = include_str!("../../../shaders/workgroup_sum.wgsl");
const COUNTER_RNG: &str = include_str!("../../../shaders/counter_rng.wgsl");
const CONV_PARAMS: &str = include_str!("../../../shaders/conv_params.wgsl");
const CONV_TILE32: &str = include_str!("../../../shaders/conv_tile32.wgsl");
const CONV_TILE64: &str = include_str!("../../../shaders/conv_tile64.wgsl");

impl Shader {
    pub fn file(self) -> &'static str {
        match self {
            Shader::Data => "data.wgsl",
            Shader::Matmul => "matmul.wgsl",
            Shader::MatmulLarge => "matmul_large.wgsl",
            Shader::MatmulVec4 => "matmul_vec4.wgsl",
            Shader::Activation => "activation.wgsl",
            Shader::Bias => "bias.wgsl",
            Shader::Loss => "loss.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::Pool => "pool.wgsl",
            Shader::BatchNorm => "batchnorm.wgsl",
            Shader::Noise => "noise.wgsl",
            Shader::Terms => "terms.wgsl",
            Shader::Vae => "vae.wgsl",
            Shader::Rbm => "rbm.wgsl",
            Shader::Classify => "classify.wgsl",
            Shader::Amp => "amp.wgsl",
            Shader::Conv2d => "conv2d.wgsl",
            Shader::ConvGemm => "conv_gemm.wgsl (32-row tile)",
            Shader::ConvGemmWide => "conv_gemm.wgsl (64-row tile)",
        }
    }

    /// The module source: the file, after the shared definitions it uses (activation.wgsl, loss.wgsl and
    /// terms.wgsl use activation_math.wgsl; loss.wgsl, reduce.wgsl, terms.wgsl and vae.wgsl
    /// workgroup_sum.wgsl; noise.wgsl, vae.wgsl and rbm.wgsl counter_rng.wgsl (rbm.wgsl workgroup_sum.wgsl too); classify.wgsl
    /// workgroup_sum.wgsl; the matmul files that, matmul_common.wgsl, and matmul_operands.wgsl
    /// and/or matmul_tile128.wgsl;
    /// conv2d.wgsl conv_params.wgsl; conv_gemm.wgsl conv_params.wgsl, activation_math.wgsl and a tile,
    /// conv_tile32.wgsl or conv_tile64.wgsl).
    pub fn source(self) -> String {
        self.source_with_halves(0)
    }

    /// The module source with the storage arrays bound at the bindings set in `halves` (bit n: binding
    /// n) declared f16. A shader makes an array switchable by declaring it `array<NAME_t>` (or
    /// `array<vec4<NAME_t>>`), reading it through `f32(...)` and storing `to_NAME_t(...)`; this prepends
    /// `alias NAME_t = f16;` (after `enable f16;`) or `= f32;` for each such array. The same kernel then
    /// computes in f32 either way and rounds to f16 as it stores.
    pub fn source_with_halves(self, halves: u64) -> String {
        let (preludes, body) = self.texts();
        let mut text = String::new();
        for prelude in preludes {
            text.push_str(prelude);
            text.push('\n');
        }
        text.push_str(body);
        let switchable = switchable_arrays(&text);
        for binding in (0..64).filter(|b| halves & (1 << b) != 0) {
            assert!(
                switchable.iter().any(|&(b, _)| b == binding),
                "{}: binding {binding} has no f16 form (no array<NAME_t>), but an f16 buffer is bound to it",
                self.file()
            );
        }
        let mut source = String::new();
        if halves != 0 {
            source.push_str("enable f16;\n");
            source.push_str(F16_STORE);
        }
        for (binding, name) in &switchable {
            let (ty, store) = match halves & (1 << binding) != 0 {
                true => ("f16", "f16_store(x)"),
                false => ("f32", "x"),
            };
            source.push_str(&format!(
                "alias {name}_t = {ty};\nfn to_{name}_t(x: f32) -> {name}_t {{ return {store}; }}\n"
            ));
        }
        source + &text
    }

    fn texts(self) -> (&'static [&'static str], &'static str) {
        const MATH: &[&str] = &[ACTIVATION_MATH];
        const MATH_SUM: &[&str] = &[ACTIVATION_MATH, WORKGROUP_SUM];
        const MATMUL: &[&str] = &[ACTIVATION_MATH, MATMUL_COMMON, MATMUL_OPERANDS];
        const LARGE: &[&str] = &[
            ACTIVATION_MATH,
            MATMUL_COMMON,
            MATMUL_OPERANDS,
            MATMUL_TILE128,
        ];
        const VEC4: &[&str] = &[ACTIVATION_MATH, MATMUL_COMMON, MATMUL_TILE128];
        match self {
            Shader::Data => (&[], include_str!("../../../shaders/data.wgsl")),
            Shader::Matmul => (MATMUL, include_str!("../../../shaders/matmul.wgsl")),
            Shader::MatmulLarge => (LARGE, include_str!("../../../shaders/matmul_large.wgsl")),
            Shader::MatmulVec4 => (VEC4, include_str!("../../../shaders/matmul_vec4.wgsl")),
            Shader::Activation => (MATH, include_str!("../../../shaders/activation.wgsl")),
            Shader::Bias => (&[], include_str!("../../../shaders/bias.wgsl")),
            Shader::Loss => (MATH_SUM, include_str!("../../../shaders/loss.wgsl")),
            Shader::Reduce => (
                &[WORKGROUP_SUM],
                include_str!("../../../shaders/reduce.wgsl"),
            ),
            Shader::Optim => (&[], include_str!("../../../shaders/optim.wgsl")),
            Shader::Pool => (&[], include_str!("../../../shaders/pool.wgsl")),
            Shader::BatchNorm => (&[], include_str!("../../../shaders/batchnorm.wgsl")),
            Shader::Noise => (&[COUNTER_RNG], include_str!("../../../shaders/noise.wgsl")),
            Shader::Terms => (MATH_SUM, include_str!("../../../shaders/terms.wgsl")),
            Shader::Vae => (
                &[COUNTER_RNG, WORKGROUP_SUM],
                include_str!("../../../shaders/vae.wgsl"),
            ),
            Shader::Rbm => (
                &[COUNTER_RNG, WORKGROUP_SUM],
                include_str!("../../../shaders/rbm.wgsl"),
            ),
            Shader::Classify => (
                &[WORKGROUP_SUM],
                include_str!("../../../shaders/classify.wgsl"),
            ),
            Shader::Amp => (&[], include_str!("../../../shaders/amp.wgsl")),
            Shader::Conv2d => (&[CONV_PARAMS], include_str!("../../../shaders/conv2d.wgsl")),
            Shader::ConvGemm => (
                &[CONV_PARAMS, ACTIVATION_MATH, CONV_TILE32],
                include_str!("../../../shaders/conv_gemm.wgsl"),
            ),
            Shader::ConvGemmWide => (
                &[CONV_PARAMS, ACTIVATION_MATH, CONV_TILE64],
                include_str!("../../../shaders/conv_gemm.wgsl"),
            ),
        }
    }
}

/// An f32 as the f16 it is stored as: rounded by the device's conversion, and beyond f16's range
/// (|x| ≥ 65520, where rounding to nearest even gives infinity) ±∞ explicitly, since WGSL leaves an
/// out-of-range conversion's result to the implementation and loss scaling must see an overflow.
const F16_STORE: &str = "fn f16_store(x: f32) -> f16 {
    if (abs(x) >= 65520.0) {
        return f16(bitcast<f32>((bitcast<u32>(x) & 0x80000000u) | 0x7f800000u));
    }
    return f16(x);
}
";

/// (binding, name) of every storage array declared `array<name_t>` or `array<vec4<name_t>>` in `source`.
fn switchable_arrays(source: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for line in source.lines() {
        let Some(rest) = line.trim().strip_prefix("@group(0) @binding(") else {
            continue;
        };
        let Some((number, decl)) = rest.split_once(')') else {
            continue;
        };
        let Ok(binding) = number.parse::<u32>() else {
            continue;
        };
        let Some((name, ty)) = decl
            .split_once('>')
            .and_then(|(_, after)| after.split_once(':'))
        else {
            continue;
        };
        let name = name.trim();
        let alias = format!("{name}_t");
        let ty = ty.trim().trim_end_matches(';');
        if ty == format!("array<{alias}>") || ty == format!("array<vec4<{alias}>>") {
            found.push((binding, name.to_string()));
        }
    }
    found
}

/// One op's kernel launch, and the launch that finishes it where an op takes two (a split reduction's
/// partial sums, then their sum).
pub struct Dispatch {
    pub name: &'static str,
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    pub then: Option<Box<Dispatch>>,
}

impl Dispatch {
    /// Records the launch (and its follow-up) into `pass`; wgpu orders the two by their buffer use.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
        if let Some(next) = &self.then {
            next.record(pass);
        }
    }

    /// This launch, then `next`, as one op.
    pub fn followed_by(mut self, next: Dispatch) -> Dispatch {
        self.then = Some(Box::new(next));
        self
    }

    /// This launch and its follow-ups, then `last` after all of them.
    pub fn then_finally(mut self, last: Dispatch) -> Dispatch {
        self.then = Some(Box::new(match self.then.take() {
            Some(next) => next.then_finally(last),
            None => last,
        }));
        self
    }

    /// The entry points this op launches, in order.
    pub fn entry_points(&self) -> Vec<&'static str> {
        let mut names = vec![self.name];
        let mut next = &self.then;
        while let Some(d) = next {
            names.push(d.name);
            next = &d.then;
        }
        names
    }
}

/// Compiles shader modules and pipelines on first use and keeps them.
pub struct Kernels {
    pub(super) device: wgpu::Device,
    queue: wgpu::Queue,
    /// Whether the device can time dispatches itself (`Features::TIMESTAMP_QUERY`).
    timestamps: bool,
    /// Each shader's module, per set of bindings that hold f16 arrays ([`Shader::source_with_halves`]).
    modules: HashMap<(Shader, u64), wgpu::ShaderModule>,
    pipelines: HashMap<(Shader, u64, &'static str), Arc<wgpu::ComputePipeline>>,
    /// The plan's f16 buffers (mixed precision): a dispatch that binds one uses the f16 form of the
    /// array at that binding.
    pub(super) halves: std::collections::HashSet<wgpu::Buffer>,
    bounds_checks: bool,
    /// Whether the adapter is a CPU (lavapipe): kernels chosen by shape keep to their simplest form.
    pub(super) adapter_is_cpu: bool,
    pub(super) matmul_choice: MatmulChoice,
    /// The implicit-GEMM convolutions' tile height (32 or 64 rows) when forced, as `gpu-ae selftest`
    /// and the parity tests do to run both; `None`: chosen by shape, or timed.
    pub(super) conv_tile: Option<usize>,
    /// Matmul shapes timed so far and the kernel that won ([`MatmulChoice::Tune`]).
    pub(super) tuned_matmuls: HashMap<TuneKey, MatmulChoice>,
    /// The kernel of every matmul dispatch built, in order.
    pub(super) matmul_kernels_chosen: Vec<MatmulChoice>,
    /// Implicit-GEMM convolutions timed so far (entry point, geometry) and the tile that won.
    pub(super) tuned_conv_tiles: HashMap<(&'static str, ConvGeom), (Shader, usize)>,
}

/// Workgroups for `n` threads in groups of 256, folded into 2-D when n needs more than 65 535 groups.
/// Kernels index as i = gid.y · groups.x · 256 + gid.x.
pub fn linear_groups(n: usize) -> [u32; 3] {
    let groups = n.div_ceil(256).max(1);
    let x = groups.min(65_535);
    [x as u32, groups.div_ceil(x) as u32, 1]
}

fn bits(v: f32) -> u32 {
    v.to_bits()
}

/// `AdamParams` of optim.wgsl (`adam` and `adam_mixed[_half]`): length, hyper-parameters, the step
/// counter's word and the lr schedule's scalar index.
pub(super) fn adam_params(
    h: AdamHyper,
    len: usize,
    step_word: usize,
    scale_index: u32,
) -> [u32; 9] {
    [
        len as u32,
        bits(h.lr),
        bits(h.beta1),
        bits(h.beta2),
        bits(h.eps),
        bits(h.weight_decay),
        step_word as u32,
        u32::from(h.decoupled),
        scale_index,
    ]
}

impl Kernels {
    /// `bounds_checks: false` compiles the shaders without the clamps wgpu would add to every buffer access:
    /// every kernel guards its own indices, and the parity tests check each one on odd sizes.
    pub fn new(ctx: &GpuContext, matmul_choice: MatmulChoice, conv_tile: Option<usize>) -> Kernels {
        Kernels {
            device: ctx.device.clone(),
            queue: ctx.queue.clone(),
            timestamps: ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY),
            modules: HashMap::new(),
            pipelines: HashMap::new(),
            halves: Default::default(),
            bounds_checks: ctx.shader_bounds_checks,
            adapter_is_cpu: ctx.info.device_type == wgpu::DeviceType::Cpu,
            matmul_choice,
            conv_tile,
            tuned_matmuls: HashMap::new(),
            matmul_kernels_chosen: Vec::new(),
            tuned_conv_tiles: HashMap::new(),
        }
    }

    /// Whether kernels with several forms are timed on the device while the plan is built: when asked
    /// ([`MatmulChoice::Tune`]), and by default on a GPU (not on a CPU adapter, where timing is slow and
    /// the shape rules were measured).
    pub(super) fn tuning(&self) -> bool {
        match self.matmul_choice {
            MatmulChoice::Tune => true,
            MatmulChoice::Auto => !self.adapter_is_cpu,
            _ => false,
        }
    }

    /// The fastest of `candidates` on this device: each one's dispatch (made by `build`) timed with
    /// [`Kernels::time_dispatch`] on the op's own buffers, which hold zeros while a plan is built (the
    /// arithmetic takes as long on zeros); `out`, which the timing runs may have written (a sigmoid
    /// layer leaves 0.5), is cleared again after. Ties keep the earlier candidate.
    pub(super) fn fastest<T: Copy>(
        &mut self,
        candidates: impl IntoIterator<Item = T>,
        out: &wgpu::Buffer,
        build: impl Fn(&mut Kernels, T) -> Dispatch,
    ) -> Option<T> {
        let mut best: Option<(f64, T)> = None;
        for candidate in candidates {
            let dispatch = build(self, candidate);
            let micros = self.time_dispatch(&dispatch);
            if best.is_none_or(|(fastest, _)| micros < fastest) {
                best = Some((micros, candidate));
            }
        }
        self.clear(out);
        best.map(|(_, candidate)| candidate)
    }

    /// Microseconds one run of `dispatch` takes: after a first run (pipeline first use), the fastest of
    /// three trials of 10 back-to-back runs in one pass, timed by GPU timestamps where the device has
    /// them, else on the host around submit and wait. For choosing between kernels while a plan is built.
    pub(super) fn time_dispatch(&self, dispatch: &Dispatch) -> f64 {
        const RUNS: usize = 10;
        let trial = |runs: usize| {
            let query_set = self.timestamps.then(|| {
                self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("tune"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                })
            });
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("tune"),
                });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("tune"),
                    timestamp_writes: query_set.as_ref().map(|query_set| {
                        wgpu::ComputePassTimestampWrites {
                            query_set,
                            beginning_of_pass_write_index: Some(0),
                            end_of_pass_write_index: Some(1),
                        }
                    }),
                });
                for _ in 0..runs {
                    dispatch.record(&mut pass);
                }
            }
            let readback = query_set.as_ref().map(|query_set| {
                let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("tune resolve"),
                    size: 16,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("tune readback"),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                encoder.resolve_query_set(query_set, 0..2, &resolved, 0);
                encoder.copy_buffer_to_buffer(&resolved, 0, &readback, 0, 16);
                readback
            });
            let start = Instant::now();
            self.queue.submit([encoder.finish()]);
            if let Some(readback) = &readback {
                readback.map_async(wgpu::MapMode::Read, .., |_| {});
            }
            let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
            let host = start.elapsed().as_secs_f64() * 1e6;
            let ticks: Option<Vec<u64>> = readback.as_ref().and_then(|b| {
                let ticks = b
                    .get_mapped_range(..)
                    .ok()
                    .map(|view| bytemuck::pod_collect_to_vec(&view));
                b.unmap();
                ticks
            });
            let micros = match ticks.as_deref() {
                Some([begin, end]) if end > begin => {
                    (end - begin) as f64 * self.queue.get_timestamp_period() as f64 / 1e3
                }
                _ => host,
            };
            micros / runs.max(1) as f64
        };
        trial(1);
        (0..3).map(|_| trial(RUNS)).fold(f64::INFINITY, f64::min)
    }

    /// A storage buffer holding `values`, made when the plan's dispatches are built.
    pub(super) fn constant(&self, label: &str, values: &[f32]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(values),
                usage: wgpu::BufferUsages::STORAGE,
            })
    }

    /// Zeroes `buffer` (on the queue, in order with everything else).
    pub(super) fn clear(&self, buffer: &wgpu::Buffer) {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("clear"),
            });
        encoder.clear_buffer(buffer, 0, None);
        self.queue.submit([encoder.finish()]);
    }

    fn pipeline(
        &mut self,
        shader: Shader,
        halves: u64,
        entry: &'static str,
    ) -> Arc<wgpu::ComputePipeline> {
        if let Some(p) = self.pipelines.get(&(shader, halves, entry)) {
            return p.clone();
        }
        let device = &self.device;
        let checks = if self.bounds_checks {
            wgpu::ShaderRuntimeChecks::checked()
        } else {
            wgpu::ShaderRuntimeChecks::unchecked()
        };
        let module = self.modules.entry((shader, halves)).or_insert_with(|| {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(shader.file()),
                source: wgpu::ShaderSource::Wgsl(shader.source_with_halves(halves).into()),
            };
            // SAFETY: every kernel returns early for invocations past its element count and indexes only
            // within the sizes its dispatch function was given, which match the buffers bound (the plan
            // allocates each buffer for the ops that use it); `tests/parity.rs`, `tests/conv.rs` and
            // `tests/pool_norm_noise.rs` run every entry point on sizes that are not multiples of the
            // workgroup. `GPU_AE_SHADER_CHECKS=1` turns wgpu's checks back on.
            unsafe { device.create_shader_module_trusted(desc, checks) }
        });
        let pipeline = Arc::new(
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            }),
        );
        self.pipelines
            .insert((shader, halves, entry), pipeline.clone());
        pipeline
    }

    /// Binds `params` (padded to 16 bytes) at `bindings[0]` as a uniform and `buffers` at the following
    /// binding numbers, in order.
    pub(super) fn dispatch(
        &mut self,
        shader: Shader,
        entry: &'static str,
        params: &[u32],
        bindings: &[u32],
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Dispatch {
        let halves = bindings[1..]
            .iter()
            .zip(buffers)
            .filter(|(_, buffer)| self.halves.contains(*buffer))
            .fold(0u64, |mask, (&binding, _)| mask | 1 << binding);
        let pipeline = self.pipeline(shader, halves, entry);
        let mut words = params.to_vec();
        words.resize(params.len().div_ceil(4).max(1) * 4, 0);
        let uniform = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(entry),
                contents: bytemuck::cast_slice(&words),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: bindings[0],
            resource: uniform.as_entire_binding(),
        }];
        for (&binding, buffer) in bindings[1..].iter().zip(buffers) {
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: buffer.as_entire_binding(),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Dispatch {
            name: entry,
            pipeline,
            bind_group,
            workgroups,
            then: None,
        }
    }

    /// A storage buffer an op keeps for itself (split reductions' partial sums), made when the plan's
    /// dispatches are built.
    pub(super) fn scratch(&self, label: &str, floats: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (floats.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn gather_batch(
        &mut self,
        data: &wgpu::Buffer,
        perm: &wgpu::Buffer,
        state: &wgpu::Buffer,
        out: &wgpu::Buffer,
        batch: usize,
        features: usize,
        samples: usize,
    ) -> Dispatch {
        let params = [batch as u32, features as u32, samples as u32];
        self.dispatch(
            Shader::Data,
            "gather_batch",
            &params,
            &[0, 1, 2, 3, 4],
            &[data, perm, state, out],
            linear_groups(batch * features),
        )
    }

    pub fn advance_step(&mut self, state: &wgpu::Buffer) -> Dispatch {
        // advance_step has no uniform; bind the state alone.
        let pipeline = self.pipeline(Shader::Data, 0, "advance_step");
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("advance_step"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry {
                binding: 5,
                resource: state.as_entire_binding(),
            }],
        });
        Dispatch {
            name: "advance_step",
            pipeline,
            bind_group,
            workgroups: [1, 1, 1],
            then: None,
        }
    }

    pub fn bias_act(
        &mut self,
        y: &wgpu::Buffer,
        bias: &wgpu::Buffer,
        rows: usize,
        channels: usize,
        inner: usize,
        act: Act,
    ) -> Dispatch {
        let params = [rows as u32, channels as u32, inner as u32, act.code()];
        self.dispatch(
            Shader::Activation,
            "bias_act",
            &params,
            &[0, 1, 2],
            &[bias, y],
            linear_groups(rows * channels * inner),
        )
    }

    pub fn act_backward(
        &mut self,
        y: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        len: usize,
        act: Act,
    ) -> Dispatch {
        let params = [len as u32, act.code()];
        self.dispatch(
            Shader::Activation,
            "act_backward",
            &params,
            &[3, 4, 5],
            &[y, grad],
            linear_groups(len),
        )
    }

    pub fn bias_grad(
        &mut self,
        grad: &wgpu::Buffer,
        db: &wgpu::Buffer,
        rows: usize,
        channels: usize,
        inner: usize,
    ) -> Dispatch {
        let params = [rows as u32, channels as u32, inner as u32];
        let (entry, groups) = if inner == 1 {
            ("bias_grad_columns", channels.div_ceil(32))
        } else {
            ("bias_grad", channels)
        };
        self.dispatch(
            Shader::Bias,
            entry,
            &params,
            &[0, 1, 2],
            &[grad, db],
            [groups as u32, 1, 1],
        )
    }

    /// The reconstruction loss; with `amp` (mixed precision) its gradient times the loss scale.
    #[allow(clippy::too_many_arguments)]
    pub fn loss(
        &mut self,
        kind: LossKind,
        output_act: Act,
        [logits, target, grad, recon, partials, state]: [&wgpu::Buffer; 6],
        rows: usize,
        cols: usize,
        samples: usize,
        per_sample: bool,
        amp: Option<&wgpu::Buffer>,
    ) -> Dispatch {
        let params = [
            rows as u32,
            cols as u32,
            samples as u32,
            kind.code(),
            output_act.code(),
            per_sample as u32,
        ];
        let buffers = [logits, target, grad, recon, partials, state];
        match amp {
            None => self.dispatch(
                Shader::Loss,
                "loss",
                &params,
                &[0, 1, 2, 3, 4, 5, 6],
                &buffers,
                linear_groups(rows * cols),
            ),
            Some(amp) => self.dispatch(
                Shader::Loss,
                "loss_scaled",
                &params,
                &[0, 1, 2, 3, 4, 5, 6, 9],
                &[logits, target, grad, recon, partials, state, amp],
                linear_groups(rows * cols),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn reduce_sum(
        &mut self,
        partials: &wgpu::Buffer,
        first: usize,
        count: usize,
        scale: Option<(&wgpu::Buffer, usize)>,
        acc: &wgpu::Buffer,
        slot: usize,
        state: &wgpu::Buffer,
        log: &wgpu::Buffer,
    ) -> Dispatch {
        let params = [
            count as u32,
            slot as u32,
            (log.size() / 4) as u32,
            first as u32,
            scale.map_or(0, |(_, index)| index as u32),
        ];
        match scale {
            None => self.dispatch(
                Shader::Reduce,
                "reduce_sum",
                &params,
                &[0, 1, 2, 3, 4],
                &[partials, acc, state, log],
                [1, 1, 1],
            ),
            Some((scalars, _)) => self.dispatch(
                Shader::Reduce,
                "reduce_sum_scaled",
                &params,
                &[0, 1, 2, 3, 4, 5],
                &[partials, acc, state, log, scalars],
                [1, 1, 1],
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn adam(
        &mut self,
        param: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        m: &wgpu::Buffer,
        v: &wgpu::Buffer,
        state: &wgpu::Buffer,
        step_word: usize,
        len: usize,
        h: AdamHyper,
        scale: (u32, &wgpu::Buffer),
    ) -> Dispatch {
        self.dispatch(
            Shader::Optim,
            "adam",
            &adam_params(h, len, step_word, scale.0),
            &[0, 1, 2, 3, 4, 5, 10],
            &[param, grad, m, v, state, scale.1],
            linear_groups(len),
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sgd(
        &mut self,
        param: &wgpu::Buffer,
        grad: &wgpu::Buffer,
        velocity: &wgpu::Buffer,
        len: usize,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        scale: (u32, &wgpu::Buffer),
    ) -> Dispatch {
        let params = [
            len as u32,
            bits(lr),
            bits(momentum),
            bits(weight_decay),
            scale.0,
        ];
        self.dispatch(
            Shader::Optim,
            "sgd",
            &params,
            &[6, 7, 8, 9, 10],
            &[param, grad, velocity, scale.1],
            linear_groups(len),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Shader;
    use wgpu::naga;

    const ALL: [Shader; 20] = [
        Shader::Data,
        Shader::Matmul,
        Shader::MatmulLarge,
        Shader::MatmulVec4,
        Shader::Activation,
        Shader::Bias,
        Shader::Loss,
        Shader::Reduce,
        Shader::Optim,
        Shader::Pool,
        Shader::BatchNorm,
        Shader::Noise,
        Shader::Terms,
        Shader::Vae,
        Shader::Rbm,
        Shader::Classify,
        Shader::Amp,
        Shader::Conv2d,
        Shader::ConvGemm,
        Shader::ConvGemmWide,
    ];

    /// Every module parses and validates as wgpu would before handing it to a driver, so a broken
    /// shader fails here on a machine with no adapter at all.
    #[test]
    fn every_shader_module_parses_and_validates() {
        for shader in ALL {
            let source = shader.source();
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{}: {}", shader.file(), e.emit_to_string(&source)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}", shader.file()));
        }
    }

    /// With every switchable array in f16 (`--precision mixed`'s forms), every module still parses and
    /// validates; and the shaders that mixed precision runs do have switchable arrays.
    #[test]
    fn every_f16_form_parses_and_validates() {
        let mut forms = 0;
        for shader in ALL {
            let arrays = super::switchable_arrays(&shader.source());
            let all = arrays.iter().fold(0u64, |m, &(b, _)| m | 1 << b);
            if all == 0 {
                continue;
            }
            forms += 1;
            let source = shader.source_with_halves(all);
            let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| {
                panic!("{} (f16): {}", shader.file(), e.emit_to_string(&source))
            });
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::SHADER_FLOAT16,
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} (f16): {e:?}", shader.file()));
        }
        assert!(forms >= 12, "only {forms} shaders have f16 forms");
    }
}
