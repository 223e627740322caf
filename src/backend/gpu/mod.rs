//! The GPU backend: every buffer of a plan allocated once, every dispatch built once, and a run of many
//! steps recorded into one command buffer with a single submit.

pub mod context;
mod conv;
pub mod fault;
pub mod kernels;
mod matmul;
pub mod profile;

mod classify;
mod noise;
mod norm;
mod optim;
mod pool;
mod rbm;
mod terms;
mod vae;

pub use norm::NormSizes;

use std::collections::HashMap;
use std::sync::mpsc;

pub use context::{ApiChoice, GpuContext, GpuError};
pub use fault::KernelFault;
use kernels::{Dispatch, Kernels};
pub use matmul::{MatmulChoice, candidates as matmul_candidates};

use super::{Executor, Program, Snapshot};
use crate::ops::{BufId, Op};
use crate::plan::{Elem, Plan};

pub struct GpuExecutor<'a> {
    ctx: &'a GpuContext,
    plan: Plan,
    buffers: Vec<wgpu::Buffer>,
    /// The dispatches of each of the plan's segments.
    segments: Vec<Vec<Dispatch>>,
    /// Map-readable copies, one per buffer read so far, kept for later reads.
    staging: HashMap<BufId, wgpu::Buffer>,
    /// Snapshots queued and not yet read, by ticket; and read-back buffers free for the next one (two
    /// suffice for a loop that reads each chunk's snapshot before queueing the chunk after next).
    snapshots: HashMap<usize, PendingSnapshot>,
    spare_snapshot_buffers: Vec<wgpu::Buffer>,
    next_ticket: usize,
    /// The kernel each matmul op runs on, in the order the plan's programs list them.
    matmul_kernels: Vec<MatmulChoice>,
}

impl<'a> GpuExecutor<'a> {
    /// Allocates the plan's buffers (zeroed) and builds every dispatch, each matmul on the kernel its
    /// shape calls for.
    pub fn new(ctx: &'a GpuContext, plan: Plan) -> Result<GpuExecutor<'a>, GpuError> {
        GpuExecutor::with_matmul(ctx, plan, MatmulChoice::Auto)
    }

    /// As [`GpuExecutor::new`], every matmul on the kernel `matmul` names (tests and benchmarks compare
    /// the kernels this way).
    pub fn with_matmul(
        ctx: &'a GpuContext,
        plan: Plan,
        matmul: MatmulChoice,
    ) -> Result<GpuExecutor<'a>, GpuError> {
        let options = KernelOptions {
            matmul,
            ..KernelOptions::default()
        };
        GpuExecutor::with_options(ctx, plan, options)
    }

    /// As [`GpuExecutor::new`], with the kernel choices (and the test hook) `options` names.
    pub fn with_options(
        ctx: &'a GpuContext,
        plan: Plan,
        options: KernelOptions,
    ) -> Result<GpuExecutor<'a>, GpuError> {
        for b in &plan.buffers {
            ctx.check_binding(&format!("buffer {}", b.name), b.bytes() as u64)?;
        }
        if plan.buffers.iter().any(|b| b.elem == Elem::F16)
            && !ctx.features.contains(wgpu::Features::SHADER_F16)
        {
            return Err(GpuError::NoShaderF16 {
                adapter: context::describe_adapter(&ctx.info),
            });
        }
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let buffers: Vec<wgpu::Buffer> = plan
            .buffers
            .iter()
            .map(|b| {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&b.name),
                    size: b.bytes() as u64,
                    usage,
                    mapped_at_creation: false,
                })
            })
            .collect();
        let mut kernels = Kernels::new(ctx, options.matmul, options.conv_tile);
        kernels.halves = plan
            .buffers
            .iter()
            .zip(&buffers)
            .filter(|(desc, _)| desc.elem == Elem::F16)
            .map(|(_, buffer)| buffer.clone())
            .collect();
        let segments = plan
            .segments
            .iter()
            .map(|segment| {
                segment
                    .ops
                    .iter()
                    .map(|op| {
                        let dispatch = dispatch_for(&mut kernels, &buffers, op);
                        options.fault.apply(&mut kernels, &buffers, op, dispatch)
                    })
                    .collect()
            })
            .collect();
        Ok(GpuExecutor {
            ctx,
            plan,
            buffers,
            segments,
            staging: HashMap::new(),
            snapshots: HashMap::new(),
            spare_snapshot_buffers: Vec::new(),
            next_ticket: 1,
            matmul_kernels: kernels.matmul_kernels_chosen,
        })
    }

    /// The kernel each matmul op of the plan runs on (forward-backward, update, then eval ops, in order):
    /// chosen by shape, timed on the device, or forced, as [`GpuExecutor::with_matmul`] was asked.
    pub fn matmul_kernels(&self) -> &[MatmulChoice] {
        &self.matmul_kernels
    }

    /// The WGSL entry points each op of `program` launches, in the program's order (a split-K matmul:
    /// `matmul_partial`, `matmul_sum_slices`).
    pub fn entry_points(&self, program: Program) -> Vec<Vec<&'static str>> {
        self.program(program, 1)
            .map(Dispatch::entry_points)
            .collect()
    }

    pub fn buffer(&self, id: BufId) -> &wgpu::Buffer {
        &self.buffers[id.0]
    }

    /// A float buffer's values from its bytes: f32, or f16 widened (an f16 buffer's padding left out).
    fn floats_from_bytes(&self, id: BufId, bytes: &[u8]) -> Vec<f32> {
        let desc = &self.plan.buffers[id.0];
        match desc.elem {
            Elem::F16 => bytes
                .chunks_exact(2)
                .take(desc.len)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => bytemuck::pod_collect_to_vec(bytes),
        }
    }

    fn wait(&self) {
        // A lost device is reported by the next read; here we only need completion.
        let _ = self.ctx.device.poll(wgpu::PollType::wait_indefinitely());
    }

    fn read_bytes(&mut self, id: BufId) -> Vec<u8> {
        let size = self.plan.buffers[id.0].bytes() as u64;
        let device = &self.ctx.device;
        let staging = self
            .staging
            .entry(id)
            .or_insert_with(|| readback_buffer(device, size));
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("readback"),
        });
        encoder.copy_buffer_to_buffer(&self.buffers[id.0], 0, staging, 0, size);
        let submission = self.ctx.queue.submit([encoder.finish()]);
        let rx = request_map(staging);
        let staging = staging.clone();
        self.finish_read(&staging, submission, rx, id)
    }

    /// Waits for `submission` (and what came before it, nothing after), then returns the mapped contents
    /// of `staging` and unmaps it. A failure is recorded as the device's fault and reads as NaNs.
    fn finish_read(
        &self,
        staging: &wgpu::Buffer,
        submission: wgpu::SubmissionIndex,
        rx: mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
        id: BufId,
    ) -> Vec<u8> {
        let polled = self.ctx.device.poll(wgpu::PollType::Wait {
            submission_index: Some(submission),
            timeout: None,
        });
        let mapped = match (polled, rx.try_recv()) {
            (Ok(_), Ok(Ok(()))) => Ok(()),
            (Err(e), _) => Err(e.to_string()),
            (_, Ok(Err(e))) => Err(e.to_string()),
            (_, Err(_)) => Err("the map callback never ran".to_string()),
        };
        if let Err(why) = mapped {
            // Not a panic: the fault is recorded, the caller checks `Executor::fault` before trusting
            // anything it read, and gets NaNs meanwhile.
            self.ctx.record_fault(format!(
                "reading buffer {} back failed: {why}",
                self.plan.buffers[id.0].name
            ));
            return bytemuck::cast_slice(&vec![f32::NAN; staging.size() as usize / 4]).to_vec();
        }
        let bytes = staging
            .get_mapped_range(..)
            .map(|view| view.to_vec())
            .unwrap_or_default();
        staging.unmap();
        bytes
    }
}

/// How a [`GpuExecutor`] picks among the kernels that compute the same op.
#[derive(Clone, Debug)]
pub struct KernelOptions {
    /// Every matmul's kernel (and, for `Tune`, the convolutions' tiles too).
    pub matmul: MatmulChoice,
    /// The implicit-GEMM convolutions' tile height, 32 or 64 rows, when forced.
    pub conv_tile: Option<usize>,
    /// The test hook that breaks one op ([`KernelFault`]).
    pub fault: KernelFault,
}

impl Default for KernelOptions {
    /// Kernels chosen by shape (or timed, on a GPU), and the test hook as the environment says.
    fn default() -> KernelOptions {
        KernelOptions {
            matmul: MatmulChoice::Auto,
            conv_tile: None,
            fault: KernelFault::from_env(),
        }
    }
}

/// A buffer the host can map to read `size` bytes copied into it.
fn readback_buffer(device: &wgpu::Device, size: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Asks for `staging` to be mapped once the work queued so far is done; the receiver hears when.
fn request_map(staging: &wgpu::Buffer) -> mpsc::Receiver<Result<(), wgpu::BufferAsyncError>> {
    let (tx, rx) = mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    rx
}

/// A copy queued by `run_and_snapshot`, not read yet.
struct PendingSnapshot {
    buf: BufId,
    staging: wgpu::Buffer,
    submission: wgpu::SubmissionIndex,
    mapped: mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
}

/// The GPU dispatch for one op: the mapping from the plan's instruction set to the WGSL entry points.
fn dispatch_for(k: &mut Kernels, bufs: &[wgpu::Buffer], op: &Op) -> Dispatch {
    let b = |id: BufId| &bufs[id.0];
    match *op {
        Op::GatherBatch {
            data,
            perm,
            state,
            out,
            batch,
            features,
            samples,
        } => k.gather_batch(b(data), b(perm), b(state), b(out), batch, features, samples),
        Op::Matmul {
            a,
            b: bm,
            c,
            m,
            n,
            k: kk,
            trans_a,
            trans_b,
            accumulate,
        } => k.matmul(b(a), b(bm), b(c), m, n, kk, trans_a, trans_b, accumulate),
        Op::MatmulBiasAct {
            x,
            w,
            bias,
            y,
            m,
            n,
            k: kk,
            trans_b,
            act,
        } => k.matmul_bias_act(b(x), b(w), b(bias), b(y), m, n, kk, trans_b, act),
        Op::BiasAct {
            y,
            bias,
            rows,
            channels,
            inner,
            act,
        } => k.bias_act(b(y), b(bias), rows, channels, inner, act),
        Op::ActBackward { y, grad, len, act } => k.act_backward(b(y), b(grad), len, act),
        Op::BiasGrad {
            grad,
            db,
            rows,
            channels,
            inner,
        } => k.bias_grad(b(grad), b(db), rows, channels, inner),
        Op::Loss {
            kind,
            output_act,
            logits,
            target,
            grad,
            recon,
            partials,
            state,
            rows,
            cols,
            samples,
            per_sample,
            amp,
        } => k.loss(
            kind,
            output_act,
            [
                b(logits),
                b(target),
                b(grad),
                b(recon),
                b(partials),
                b(state),
            ],
            rows,
            cols,
            samples,
            per_sample,
            amp.map(b),
        ),
        Op::ReduceSum {
            partials,
            first,
            count,
            scale,
            acc,
            slot,
            state,
            log,
        } => k.reduce_sum(
            b(partials),
            first,
            count,
            scale.map(|s| (b(s.buf), s.index)),
            b(acc),
            slot,
            b(state),
            b(log),
        ),
        Op::Adam {
            param,
            grad,
            m,
            v,
            state,
            step_word,
            len,
            hyper,
            lr_scale,
        } => k.adam(
            b(param),
            b(grad),
            b(m),
            b(v),
            b(state),
            step_word,
            len,
            hyper,
            optim::scale_binding(bufs, lr_scale, grad),
        ),
        Op::Sgd {
            param,
            grad,
            velocity,
            len,
            lr,
            momentum,
            weight_decay,
            lr_scale,
        } => k.sgd(
            b(param),
            b(grad),
            b(velocity),
            len,
            lr,
            momentum,
            weight_decay,
            optim::scale_binding(bufs, lr_scale, grad),
        ),
        Op::AdvanceStep { state } => k.advance_step(b(state)),
        Op::MaxPool2x2 {
            x,
            y,
            argmax,
            batch,
            channels,
            in_h,
            in_w,
        } => k.max_pool2x2(b(x), b(y), b(argmax), batch * channels, in_h, in_w),
        Op::MaxPool2x2Backward {
            dy,
            argmax,
            dx,
            batch,
            channels,
            in_h,
            in_w,
        } => k.max_pool2x2_backward(b(dy), b(argmax), b(dx), batch * channels, in_h, in_w),
        Op::MaxUnpool2x2 {
            x,
            argmax,
            y,
            batch,
            channels,
            out_h,
            out_w,
        } => k.max_unpool2x2(b(x), b(argmax), b(y), batch * channels, out_h, out_w),
        Op::MaxUnpool2x2Backward {
            dy,
            argmax,
            dx,
            batch,
            channels,
            out_h,
            out_w,
        } => k.max_unpool2x2_backward(b(dy), b(argmax), b(dx), batch * channels, out_h, out_w),
        Op::UpsampleNearest {
            x,
            y,
            batch,
            channels,
            in_h,
            in_w,
            factor,
        } => k.upsample_nearest(b(x), b(y), batch * channels, in_h, in_w, factor),
        Op::UpsampleNearestBackward {
            dy,
            dx,
            batch,
            channels,
            in_h,
            in_w,
            factor,
        } => k.upsample_nearest_backward(b(dy), b(dx), batch * channels, in_h, in_w, factor),
        Op::BatchNorm2d {
            x,
            y,
            gamma,
            beta,
            mean,
            inv_std,
            running_mean,
            running_var,
            state,
            batch,
            channels,
            inner,
            samples,
            momentum,
            eps,
            training,
        } => k.batch_norm2d(
            [
                b(x),
                b(y),
                b(gamma),
                b(beta),
                b(mean),
                b(inv_std),
                b(running_mean),
                b(running_var),
                b(state),
            ],
            NormSizes {
                batch,
                channels,
                inner,
                samples,
            },
            momentum,
            eps,
            training,
        ),
        Op::BatchNorm2dBackward {
            x,
            dy,
            dx,
            gamma,
            dgamma,
            dbeta,
            mean,
            inv_std,
            state,
            batch,
            channels,
            inner,
            samples,
        } => k.batch_norm2d_backward(
            [
                b(x),
                b(dy),
                b(dx),
                b(gamma),
                b(dgamma),
                b(dbeta),
                b(mean),
                b(inv_std),
                b(state),
            ],
            NormSizes {
                batch,
                channels,
                inner,
                samples,
            },
        ),
        Op::Corrupt {
            x,
            y,
            mask,
            state,
            len,
            image,
            noise,
            seed,
            stream,
        } => k.corrupt(
            b(x),
            b(y),
            mask.map(b),
            b(state),
            len,
            image,
            noise,
            seed,
            stream,
        ),
        Op::Term(ref term) => k.term(bufs, term),
        Op::Vae(ref op) => k.vae(bufs, op),
        Op::Rbm(ref op) => k.rbm(bufs, op),
        Op::Classify(ref op) => k.classify(bufs, op),
        Op::Optim(ref op) => k.optim(bufs, op),
        Op::Conv2d { geom, x, w, y } => k.conv2d(&geom, b(x), b(w), b(y)),
        Op::ConvBiasAct {
            geom,
            x,
            w,
            bias,
            y,
            act,
            transposed,
        } => {
            let bufs = [b(x), b(w), b(bias), b(y)];
            if transposed {
                k.conv_transpose2d_bias_act(&geom, bufs, act)
            } else {
                k.conv2d_bias_act(&geom, bufs, act)
            }
        }
        Op::Conv2dBackwardData {
            geom,
            dy,
            w,
            dx,
            accumulate,
        } => k.conv2d_backward_data(&geom, b(dy), b(w), b(dx), accumulate),
        Op::Conv2dBackwardWeight {
            geom,
            dy,
            x,
            dw,
            accumulate,
        } => k.conv2d_backward_weight(&geom, b(dy), b(x), b(dw), accumulate),
    }
}

impl GpuExecutor<'_> {
    /// Records `dispatches` into one compute pass of one command buffer and submits it.
    fn submit<'d>(&self, label: &str, dispatches: impl IntoIterator<Item = &'d Dispatch>) {
        self.submit_then_copy(label, dispatches, None);
    }

    /// As `submit`, with a copy of buffer `from` into `to` after the pass, in the same command buffer.
    fn submit_then_copy<'d>(
        &self,
        label: &str,
        dispatches: impl IntoIterator<Item = &'d Dispatch>,
        copy: Option<(BufId, &wgpu::Buffer)>,
    ) -> wgpu::SubmissionIndex {
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        if let Some((from, to)) = copy {
            encoder.copy_buffer_to_buffer(&self.buffers[from.0], 0, to, 0, to.size());
        }
        self.ctx.queue.submit([encoder.finish()])
    }

    /// The dispatches of `repeats` runs of `program`, in order.
    pub(crate) fn program<'s>(
        &'s self,
        program: Program,
        repeats: usize,
    ) -> impl Iterator<Item = &'s Dispatch> + 's {
        let segments = &self.plan.programs[program.0].segments;
        (0..repeats).flat_map(move |_| segments.iter().flat_map(|&s| &self.segments[s]))
    }
}

impl Executor for GpuExecutor<'_> {
    fn describe(&self) -> String {
        self.ctx.describe()
    }
    fn plan(&self) -> &Plan {
        &self.plan
    }
    fn run(&mut self, program: Program, repeats: usize) {
        self.submit("steps", self.program(program, repeats));
    }
    fn run_and_snapshot(&mut self, program: Program, repeats: usize, buf: BufId) -> Snapshot {
        let size = self.plan.buffers[buf.0].bytes() as u64;
        let spare = self
            .spare_snapshot_buffers
            .iter()
            .position(|b| b.size() == size);
        let staging = match spare {
            Some(i) => self.spare_snapshot_buffers.swap_remove(i),
            None => readback_buffer(&self.ctx.device, size),
        };
        let submission = self.submit_then_copy(
            "steps",
            self.program(program, repeats),
            Some((buf, &staging)),
        );
        let mapped = request_map(&staging);
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.snapshots.insert(
            ticket,
            PendingSnapshot {
                buf,
                staging,
                submission,
                mapped,
            },
        );
        Snapshot {
            ticket,
            values: None,
        }
    }
    fn read_snapshot(&mut self, snapshot: Snapshot) -> Vec<f32> {
        let Some(pending) = self.snapshots.remove(&snapshot.ticket) else {
            return snapshot.values.unwrap_or_default();
        };
        let bytes = self.finish_read(
            &pending.staging,
            pending.submission,
            pending.mapped,
            pending.buf,
        );
        self.spare_snapshot_buffers.push(pending.staging);
        self.floats_from_bytes(pending.buf, &bytes)
    }
    fn write_f32(&mut self, buf: BufId, data: &[f32]) {
        if self.plan.buffers[buf.0].elem == Elem::F16 {
            // Two bytes a value, rounded to nearest even, padded to whole words.
            let mut bytes: Vec<u8> = data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect();
            bytes.resize(bytes.len().div_ceil(4) * 4, 0);
            self.ctx.queue.write_buffer(&self.buffers[buf.0], 0, &bytes);
            return;
        }
        self.ctx
            .queue
            .write_buffer(&self.buffers[buf.0], 0, bytemuck::cast_slice(data));
    }
    fn write_u32(&mut self, buf: BufId, data: &[u32]) {
        self.ctx
            .queue
            .write_buffer(&self.buffers[buf.0], 0, bytemuck::cast_slice(data));
    }
    fn read_f32(&mut self, buf: BufId) -> Vec<f32> {
        let bytes = self.read_bytes(buf);
        self.floats_from_bytes(buf, &bytes)
    }
    fn read_u32(&mut self, buf: BufId) -> Vec<u32> {
        bytemuck::pod_collect_to_vec(&self.read_bytes(buf))
    }
    fn finish(&mut self) {
        self.ctx.queue.submit([]);
        self.wait();
    }
    fn fault(&self) -> Option<String> {
        self.ctx.fault()
    }
    fn lose_device(&mut self) {
        self.ctx.device.destroy();
        // As a real loss is noticed: on the next wait.
        let _ = self.ctx.device.poll(wgpu::PollType::wait_indefinitely());
    }
    fn run_step_op(&mut self, index: usize) {
        let dispatch = self
            .program(Program::TRAIN_STEP, 1)
            .nth(index)
            .expect("the training step has this op");
        self.submit(dispatch.name, [dispatch]);
    }
}
