//! Per-op timings of one training step: where the step's time goes, dispatch by dispatch.
//!
//! With `Features::TIMESTAMP_QUERY` every dispatch of a step runs in its own compute pass whose beginning and
//! end write a GPU timestamp; the differences, times `Queue::get_timestamp_period`, are the rows. Without it
//! each dispatch is recorded `repeats` times into one pass, submitted, waited for with `finish`, and timed on
//! the host (so a row includes a share of submit and wait overhead). Either way the table is compared with
//! the wall time of the same step recorded normally (one pass, every dispatch), which shows whether the
//! rows add up: one pass per dispatch adds barriers, and the host-timed fallback adds overhead per op.
//!
//! Profiling runs real training steps: parameters, optimizer state and the step counter move on.

use std::fmt::Write as _;
use std::sync::mpsc;
use std::time::Instant;

use super::GpuExecutor;
use super::kernels::Dispatch;
use crate::backend::{Executor, Program};
use crate::ops::{Op, state};

/// How the rows were timed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Timing {
    /// GPU timestamps around each dispatch (one compute pass each); `period_ns` per tick.
    GpuTimestamps { period_ns: f32 },
    /// Host wall clock around `repeats` back-to-back runs of each dispatch, divided by `repeats`.
    HostTimed { repeats: usize },
}

/// Which timing to use: timestamps where the device has them, or the host clock regardless.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingChoice {
    Auto,
    Host,
}

#[derive(Clone, Debug)]
pub struct ProfileRow {
    /// Position in the step: forward/backward ops first, then the update.
    pub index: usize,
    pub name: &'static str,
    pub shapes: String,
    /// The WGSL entry points that ran the op, joined by `+` where it takes two launches.
    pub kernel: String,
    pub micros: f64,
    pub flops: u64,
    pub bytes: u64,
}

impl ProfileRow {
    pub fn gflops(&self) -> f64 {
        self.flops as f64 / (self.micros.max(1e-3) * 1e3)
    }
    pub fn gbytes_per_second(&self) -> f64 {
        self.bytes as f64 / (self.micros.max(1e-3) * 1e3)
    }
}

#[derive(Clone, Debug)]
pub struct Profile {
    pub device: String,
    pub timing: Timing,
    /// One row per op of a training step, in step order.
    pub rows: Vec<ProfileRow>,
    /// Median wall time of one step recorded normally, submitted alone and waited for.
    pub step_wall_micros: f64,
    /// Wall time per step when `repeats` steps share one submission (as training records them).
    pub step_batched_micros: f64,
    pub repeats: usize,
}

impl Profile {
    pub fn total_micros(&self) -> f64 {
        self.rows.iter().map(|r| r.micros).sum()
    }

    /// The rows sorted by time, the `top` slowest shown, then totals.
    pub fn render(&self, top: usize) -> String {
        let mut out = String::new();
        let how = match self.timing {
            Timing::GpuTimestamps { period_ns } => format!(
                "GPU timestamps around each dispatch (one compute pass per dispatch, {period_ns} ns/tick), median of {} steps",
                self.repeats
            ),
            Timing::HostTimed { repeats } => format!(
                "HOST-TIMED: this device has no timestamp queries, so each dispatch ran {repeats}× in one submission \
                 and was timed on the CPU; rows include submit/wait overhead"
            ),
        };
        let _ = writeln!(
            out,
            "per-op profile of one training step on {}",
            self.device
        );
        let _ = writeln!(out, "timing: {how}");
        // Columns as wide as their longest entry (format widths count chars, so × and → pad right).
        let width = |f: fn(&ProfileRow) -> usize, header: &str| {
            self.rows.iter().map(f).fold(header.len(), usize::max)
        };
        let name_w = width(|r| r.name.chars().count(), "op");
        let shapes_w = width(|r| r.shapes.chars().count(), "shapes");
        let kernel_w = width(|r| r.kernel.chars().count(), "kernel");
        let _ = writeln!(
            out,
            "{:>4}  {:<name_w$} {:<shapes_w$} {:<kernel_w$} {:>10} {:>6} {:>9} {:>8}",
            "#", "op", "shapes", "kernel", "µs", "%", "GFLOP/s", "GB/s"
        );
        let total = self.total_micros();
        let mut sorted: Vec<&ProfileRow> = self.rows.iter().collect();
        sorted.sort_by(|a, b| b.micros.total_cmp(&a.micros));
        for r in sorted.iter().take(top) {
            let _ = writeln!(
                out,
                "{:>4}  {:<name_w$} {:<shapes_w$} {:<kernel_w$} {:>10.1} {:>5.1}% {:>9.1} {:>8.1}",
                r.index,
                r.name,
                r.shapes,
                r.kernel,
                r.micros,
                100.0 * r.micros / total.max(1e-9),
                r.gflops(),
                r.gbytes_per_second()
            );
        }
        if sorted.len() > top {
            let rest: f64 = sorted[top..].iter().map(|r| r.micros).sum();
            let _ = writeln!(out, "      … {} more ops: {rest:.1} µs", sorted.len() - top);
        }
        let flops: u64 = self.rows.iter().map(|r| r.flops).sum();
        let _ = writeln!(
            out,
            "sum of {} ops: {total:.1} µs ({:.1} GFLOP/s over the step)",
            self.rows.len(),
            flops as f64 / (total.max(1e-3) * 1e3)
        );
        let _ = writeln!(
            out,
            "one step recorded normally: {:.1} µs submitted alone, {:.1} µs per step with {} steps per submission",
            self.step_wall_micros, self.step_batched_micros, self.repeats
        );
        out
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Profiles one training step (`forward_backward` then `update`), each measurement the median of `repeats`.
pub fn profile_step(ex: &mut GpuExecutor<'_>, choice: TimingChoice, repeats: usize) -> Profile {
    let repeats = repeats.max(1);
    let ops: Vec<Op> = ex.plan.program_ops(Program::TRAIN_STEP).cloned().collect();
    let queries = 2 * ops.len() as u64;
    let timestamps = choice == TimingChoice::Auto
        && ex.ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY)
        && queries <= wgpu::QUERY_SET_MAX_QUERIES as u64;

    // Warm-up: first use of every pipeline, then the normally recorded step.
    restart_epoch(ex);
    ex.run(Program::TRAIN_STEP, 1);
    ex.finish();
    let mut walls = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        restart_epoch(ex);
        let start = Instant::now();
        ex.run(Program::TRAIN_STEP, 1);
        ex.finish();
        walls.push(start.elapsed().as_secs_f64() * 1e6);
    }
    restart_epoch(ex);
    let start = Instant::now();
    ex.run(Program::TRAIN_STEP, repeats);
    ex.finish();
    let step_batched_micros = start.elapsed().as_secs_f64() * 1e6 / repeats as f64;

    let (timing, micros) = if timestamps {
        let mut per_op: Vec<Vec<f64>> = vec![Vec::with_capacity(repeats); ops.len()];
        for _ in 0..repeats {
            restart_epoch(ex);
            for (i, t) in timestamped_step(ex).into_iter().enumerate() {
                per_op[i].push(t);
            }
        }
        let timing = Timing::GpuTimestamps {
            period_ns: ex.ctx.queue.get_timestamp_period(),
        };
        (timing, per_op.into_iter().map(median).collect())
    } else {
        restart_epoch(ex);
        (Timing::HostTimed { repeats }, host_timed_ops(ex, repeats))
    };
    restart_epoch(ex);
    let kernels: Vec<String> = step_dispatches(ex).into_iter().map(entry_points).collect();
    let rows = ops
        .iter()
        .zip(micros)
        .zip(kernels)
        .enumerate()
        .map(|(index, ((op, micros), kernel))| ProfileRow {
            index,
            name: op.name(),
            shapes: op.shapes(),
            kernel,
            micros,
            flops: op.flops(),
            bytes: op.bytes(),
        })
        .collect();
    Profile {
        device: ex.describe(),
        timing,
        rows,
        step_wall_micros: median(walls),
        step_batched_micros,
        repeats,
    }
}

/// Points the training state at the epoch's first batch (keeping the global step), so repeated profiling
/// steps read valid rows.
fn restart_epoch(ex: &mut GpuExecutor<'_>) {
    let io = ex.plan.io;
    let mut words = ex.read_u32(io.train_state);
    if let Some(b) = words.get_mut(state::BATCH) {
        *b = 0;
    }
    ex.write_u32(io.train_state, &words);
}

/// `conv2d_gemm_bias_act`, or `matmul_partial+matmul_sum_slices` for an op of two launches.
fn entry_points(d: &Dispatch) -> String {
    let mut names = vec![d.name];
    let mut next = d.then.as_deref();
    while let Some(n) = next {
        names.push(n.name);
        next = n.then.as_deref();
    }
    names.join("+")
}

fn step_dispatches<'d>(ex: &'d GpuExecutor<'_>) -> Vec<&'d Dispatch> {
    ex.program(Program::TRAIN_STEP, 1).collect()
}

/// One step with a timestamp pair around every dispatch; returns µs per dispatch.
fn timestamped_step(ex: &GpuExecutor<'_>) -> Vec<f64> {
    let device = &ex.ctx.device;
    let dispatches = step_dispatches(ex);
    let count = 2 * dispatches.len() as u32;
    let query_set = device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("profile"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let size = count as u64 * 8;
    let resolved = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("profile resolve"),
        size,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("profile readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("profile"),
    });
    for (i, d) in dispatches.iter().enumerate() {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(d.name),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &query_set,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            }),
        });
        d.record(&mut pass);
    }
    encoder.resolve_query_set(&query_set, 0..count, &resolved, 0);
    encoder.copy_buffer_to_buffer(&resolved, 0, &readback, 0, size);
    ex.ctx.queue.submit([encoder.finish()]);
    let (tx, rx) = mpsc::channel();
    readback.map_async(wgpu::MapMode::Read, .., move |r| {
        let _ = tx.send(r);
    });
    let _ = device.poll(wgpu::PollType::wait_indefinitely());
    let mapped = rx.recv().ok().and_then(|r| r.ok()).is_some();
    if !mapped {
        // Not a panic: the caller checks `Executor::fault` before printing anything.
        ex.ctx
            .record_fault("reading the profiler's timestamps back failed".into());
        return vec![f64::NAN; dispatches.len()];
    }
    let ticks: Vec<u64> = readback
        .get_mapped_range(..)
        .map(|view| bytemuck::pod_collect_to_vec(&view))
        .unwrap_or_default();
    readback.unmap();
    let period_ns = ex.ctx.queue.get_timestamp_period() as f64;
    ticks
        .chunks_exact(2)
        .map(|pair| pair[1].saturating_sub(pair[0]) as f64 * period_ns / 1e3)
        .collect()
}

/// Each dispatch recorded `repeats` times into one pass, submitted and waited for; µs per run.
fn host_timed_ops(ex: &mut GpuExecutor<'_>, repeats: usize) -> Vec<f64> {
    let count = step_dispatches(ex).len();
    (0..count)
        .map(|i| {
            let record = |ex: &GpuExecutor<'_>, times: usize| {
                let d = step_dispatches(ex)[i];
                ex.submit(d.name, std::iter::repeat_n(d, times));
            };
            record(ex, 1);
            ex.finish();
            let start = Instant::now();
            record(ex, repeats);
            ex.finish();
            start.elapsed().as_secs_f64() * 1e6 / repeats as f64
        })
        .collect()
}
