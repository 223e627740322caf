//! The training loop: epochs of shuffled batches, recorded many steps per submit, the loss read back
//! once per chunk of steps: one chunk behind, so that the device runs the next chunk meanwhile.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::backend::{Executor, Program, Snapshot, load_initial_state, step_ops};
use crate::ops::{BufId, state};
use crate::plan::Summary;
use crate::rng::epoch_permutation;

/// What the progress callback sees after each chunk of steps.
#[derive(Clone, Debug)]
pub struct Progress {
    pub epoch: usize,
    pub steps_done: usize,
    pub steps_total: usize,
    /// The objective's total over the epoch so far (the reconstruction a mean per element).
    pub loss: f64,
    /// Every meter's mean over the epoch so far, in [`crate::plan::Plan::meters`] order.
    pub meters: Vec<f64>,
    pub samples_per_second: f64,
}

#[derive(Clone, Debug)]
pub struct EpochResult {
    /// 1-based.
    pub epoch: usize,
    /// Optimizer steps completed since the start of training.
    pub global_step: usize,
    /// The objective over the epoch's training batches: its total (the reconstruction a mean per
    /// element) and every meter.
    pub train: Summary,
    pub seconds: f64,
    /// Of `seconds`, the host's time inside [`Executor::run_and_snapshot`]: recording and submitting the
    /// steps, while the GPU runs the chunk before; on the CPU backend it is the work itself.
    pub recording_seconds: f64,
    pub samples_per_second: f64,
    /// With mixed precision, the loss scale at the epoch's end and the steps skipped so far in the run
    /// (their scaled gradients overflowed f16).
    pub loss_scale: Option<(f32, u32)>,
}

/// What [`Trainer::time_steps`] measured.
#[derive(Clone, Copy, Debug)]
pub struct StepTiming {
    pub steps: usize,
    pub seconds: f64,
    /// Of `seconds`, the host's time inside [`Executor::run_and_snapshot`] (see
    /// [`EpochResult::recording_seconds`]).
    pub recording_seconds: f64,
    /// The objective's total over the timed steps (a sanity check that real work was done).
    pub train_loss: f64,
}

/// Test images next to what the model made of them.
pub struct Reconstructions {
    pub clean: Vec<Vec<f32>>,
    /// The model's input in evaluation: equal to `clean` unless the model is denoising.
    pub seen: Vec<Vec<f32>>,
    /// The reconstruction of `seen`.
    pub recon: Vec<Vec<f32>>,
    /// The reconstruction of `clean` (equal to `recon` unless the model is denoising).
    pub clean_recon: Vec<Vec<f32>>,
}

/// How an epoch ended.
#[derive(Clone, Debug)]
pub enum EpochOutcome {
    Completed(EpochResult),
    /// The stop flag was raised; training stopped after the steps already submitted.
    Interrupted {
        epoch: usize,
        steps_done: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "the training loss ({meter}) became {value} at epoch {epoch}, step {global_step} (batch {batch} of the \
         epoch); stopped before saving anything from this state. Try a smaller --lr"
    )]
    NonFinite {
        epoch: usize,
        global_step: usize,
        batch: usize,
        value: f32,
        /// The meter whose sum went non-finite first.
        meter: String,
    },
    #[error(
        "the GPU failed during epoch {epoch}, by step {global_step}: {reason}. Nothing from this state was saved"
    )]
    DeviceLost {
        epoch: usize,
        global_step: usize,
        reason: String,
    },
    #[error(
        "--detect-anomaly: op {index} of the training step, {op} ({shapes}), wrote {value} to {buffer}[{element}] \
         at epoch {epoch}, step {global_step}; every op before it wrote finite values"
    )]
    Anomaly {
        epoch: usize,
        global_step: usize,
        index: usize,
        op: &'static str,
        shapes: String,
        buffer: String,
        element: usize,
        value: f32,
    },
}

/// Where training stands: enough, with the seed, to continue exactly. The trainer keeps it, a checkpoint
/// stores it ([`crate::checkpoint::TrainingState`]), and [`Position::upload`] puts it on the device.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Position {
    /// Epochs completed.
    pub epoch: usize,
    /// Steps done in the current (unfinished) epoch.
    pub batch_in_epoch: usize,
    /// Optimizer steps since the start of training.
    pub global_step: usize,
    /// The current epoch's training sums so far, one per meter of the plan (the device's accumulator);
    /// empty at the start of an epoch.
    pub epoch_sums: Vec<f64>,
    /// The pretraining phase under way (an index into the plan's phases), or `None` in the fine-tuning.
    /// Epochs, steps and sums count within the phase.
    pub pretraining: Option<usize>,
}

impl Position {
    /// The index of the phase under way in `plan`'s phases.
    pub fn phase(&self, plan: &crate::plan::Plan) -> usize {
        self.pretraining.unwrap_or(plan.phases.len() - 1)
    }

    /// The start of the phase after the current one of `plan` (the fine-tuning after the last
    /// pretraining phase).
    pub fn next_phase(&self, plan: &crate::plan::Plan) -> Position {
        let next = self.phase(plan) + 1;
        Position {
            pretraining: (next + 1 < plan.phases.len()).then_some(next),
            ..Position::default()
        }
    }
}

impl Position {
    /// Points the device at this position: the epoch's shuffled order for `seed`, the state words (global
    /// step, batch within the epoch) and the accumulator's training sums.
    pub fn upload(&self, ex: &mut dyn Executor, seed: u64) {
        let plan = ex.plan();
        let (io, samples) = (plan.io, plan.train_samples);
        let acc = plan.accumulator(&self.epoch_sums);
        ex.write_u32(
            io.train_perm,
            &epoch_permutation(samples, seed, self.epoch as u64),
        );
        let mut words = [0; state::LEN];
        words[state::GLOBAL_STEP] = self.global_step as u32;
        words[state::BATCH] = self.batch_in_epoch as u32;
        ex.write_u32(io.train_state, &words);
        ex.write_f32(io.loss_acc, &acc);
    }
}

/// Training steps queued as one submission, with the copy of the loss accumulator they end with.
struct Chunk {
    loss: Snapshot,
    /// The chunk's first step within the epoch, and its step count.
    start: usize,
    len: usize,
    queued_at: Instant,
}

/// `steps_per_submit` that lets the trainer choose the chunk length.
pub const AUTO_STEPS: usize = 0;
/// Automatic chunks aim at this much work between read-backs: the progress bar moves several times a
/// second, and a fast GPU gets hundreds of steps (often a whole epoch) per submission.
pub const AUTO_CHUNK_SECONDS: f64 = 0.2;
/// The first automatic chunk, before anything has been timed.
const AUTO_FIRST_CHUNK: usize = 4;
const AUTO_MAX_CHUNK: usize = 4096;

/// Test hooks that make a run fail on purpose, so the failure paths can be exercised end to end. They act
/// between chunks, with nothing in flight, before the named global step runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Before global step N + 1, the output layer's bias is overwritten with NaN
    /// (`GPU_AE_INJECT_NAN_AT_STEP=N`).
    pub nan_at_step: Option<usize>,
    /// Before global step N + 1, the device fails as a lost GPU does (`GPU_AE_LOSE_DEVICE_AT_STEP=N`).
    pub lose_device_at_step: Option<usize>,
    /// Before global step N + 1, training stops as after a Ctrl-C (`GPU_AE_INTERRUPT_AT_STEP=N`): how
    /// tests interrupt a run, or one run of a sweep, at a known step.
    pub interrupt_at_step: Option<usize>,
}

impl Faults {
    /// The hooks the environment asks for.
    pub fn from_env() -> Faults {
        let hook = |name| std::env::var(name).ok().and_then(|v| v.parse().ok());
        Faults {
            nan_at_step: hook("GPU_AE_INJECT_NAN_AT_STEP"),
            lose_device_at_step: hook("GPU_AE_LOSE_DEVICE_AT_STEP"),
            interrupt_at_step: hook("GPU_AE_INTERRUPT_AT_STEP"),
        }
    }

    fn steps(&self) -> impl Iterator<Item = usize> {
        [
            self.nan_at_step,
            self.lose_device_at_step,
            self.interrupt_at_step,
        ]
        .into_iter()
        .flatten()
    }

    /// Whether a hook acts before `global` + 1 (the chunk starting there must wait for an empty queue).
    fn acts_at(&self, global: usize) -> bool {
        self.steps().any(|s| s == global)
    }

    /// `len` shortened so that a chunk starting at `global` ends where the next hook acts.
    fn clip(&self, global: usize, len: usize) -> usize {
        self.steps()
            .filter(|&s| global < s)
            .fold(len, |len, s| len.min(s - global))
    }

    /// Does what the hooks ask before `global` + 1.
    fn apply(&self, ex: &mut dyn Executor, global: usize) {
        if self.nan_at_step == Some(global) {
            let p = ex
                .plan()
                .params
                .last()
                .expect("a model has parameters")
                .clone();
            ex.write_f32(p.buf, &vec![f32::NAN; p.shape.iter().product()]);
        }
        if self.lose_device_at_step == Some(global) {
            ex.lose_device();
        }
    }
}

pub struct Trainer<'e> {
    ex: &'e mut dyn Executor,
    seed: u64,
    pub position: Position,
    /// Steps recorded into one command buffer between loss read-backs; [`AUTO_STEPS`] (0): as many as
    /// take about [`AUTO_CHUNK_SECONDS`], learned from the chunks so far.
    pub steps_per_submit: usize,
    /// Seconds per training step of the last chunk (read-back included): what automatic chunks are cut by.
    seconds_per_step: Option<f64>,
    /// The slow path: one step at a time, one op at a time, every op's f32 outputs read back and checked, so
    /// the first op that produces a NaN or an infinity is named (`--detect-anomaly`).
    pub detect_anomaly: bool,
    pub faults: Faults,
}

impl<'e> Trainer<'e> {
    /// Uploads the data sets and the seeded initial parameters.
    pub fn new(
        ex: &'e mut dyn Executor,
        train_pixels: &[u8],
        test_pixels: &[u8],
        seed: u64,
    ) -> Trainer<'e> {
        load_initial_state(ex, train_pixels, test_pixels, seed);
        // Training starts with the plan's first phase: its first pretraining phase, if it has any.
        let position = Position {
            pretraining: ex.plan().pretrains().then_some(0),
            ..Position::default()
        };
        Trainer {
            ex,
            seed,
            position,
            steps_per_submit: AUTO_STEPS,
            seconds_per_step: None,
            detect_anomaly: false,
            faults: Faults::default(),
        }
    }

    pub fn executor(&mut self) -> &mut dyn Executor {
        self.ex
    }

    pub fn plan(&self) -> &crate::plan::Plan {
        self.ex.plan()
    }

    /// Runs the rest of the current epoch (all of it, unless resuming mid-epoch) in its seeded order.
    /// Checks `stop` between submissions; a non-finite loss stops training with the step that caused it.
    pub fn train_epoch(
        &mut self,
        progress: &mut dyn FnMut(Progress),
        stop: &AtomicBool,
    ) -> Result<EpochOutcome, TrainError> {
        let plan = self.ex.plan();
        let phase = self.position.phase(plan);
        let (batch, samples) = (plan.phases[phase].batch, plan.train_samples);
        let steps_total = plan.phase_steps(phase);
        let pos = self.position.clone();
        let epoch = pos.epoch + 1;
        self.position.upload(self.ex, self.seed);
        let start = Instant::now();
        let first = pos.batch_in_epoch;
        let mut done = first;
        let mut sums = pos.epoch_sums.clone();
        let mut recording = 0.0;
        // Chunks in flight, oldest first, and the first step not yet queued. Two in flight: the device
        // runs one while the host reads the loss of the one before and records the one after.
        let mut in_flight: VecDeque<Chunk> = VecDeque::new();
        let mut queued = first;
        let depth = if self.detect_anomaly { 1 } else { 2 };
        let mut last_finish = start;
        while done < steps_total {
            while queued < steps_total && in_flight.len() < depth && !stop.load(Ordering::Relaxed) {
                let global = pos.global_step + (queued - first);
                if self.faults.acts_at(global) && !in_flight.is_empty() {
                    break;
                }
                if self.faults.interrupt_at_step == Some(global) {
                    // As if Ctrl-C came now: nothing more is queued.
                    break;
                }
                let len = self
                    .faults
                    .clip(global, self.chunk_len().min(steps_total - queued));
                self.faults.apply(self.ex, global);
                let chunk = if self.detect_anomaly {
                    self.checked_step(epoch, global + 1)?;
                    // The step ran op by op; the chunk only reads the loss back.
                    Chunk {
                        len: 1,
                        ..self.queue_chunk(queued, 0, &mut 0.0)
                    }
                } else {
                    self.queue_chunk(queued, len, &mut recording)
                };
                queued += chunk.len;
                in_flight.push_back(chunk);
            }
            let Some(chunk) = in_flight.pop_front() else {
                // Stopped, with every queued chunk accounted for.
                return Ok(EpochOutcome::Interrupted {
                    epoch,
                    steps_done: done,
                });
            };
            let (chunk_start, chunk_len) = (chunk.start, chunk.len);
            sums = self.finish_chunk(chunk, &mut last_finish);
            self.check_device(epoch, pos.global_step + (chunk_start - first) + 1)?;
            if sums.iter().any(|s| !s.is_finite()) {
                return Err(self.locate_non_finite(epoch, done, chunk_len));
            }
            done += chunk_len;
            self.position = Position {
                epoch: pos.epoch,
                batch_in_epoch: done,
                global_step: pos.global_step + (done - first),
                epoch_sums: sums.clone(),
                pretraining: pos.pretraining,
            };
            let seen = (done * batch).min(samples);
            let timed = ((done - first) * batch).min(samples);
            let summary = self.ex.plan().summarize_phase(phase, &sums, seen);
            progress(Progress {
                epoch,
                steps_done: done,
                steps_total,
                loss: summary.total,
                meters: summary.values,
                samples_per_second: timed as f64 / start.elapsed().as_secs_f64().max(1e-9),
            });
        }
        let seconds = start.elapsed().as_secs_f64();
        let timed = ((steps_total - first) * batch).min(samples);
        self.position = Position {
            epoch,
            batch_in_epoch: 0,
            global_step: pos.global_step + (steps_total - first),
            epoch_sums: Vec::new(),
            pretraining: pos.pretraining,
        };
        let loss_scale = self.ex.plan().io.amp.map(|amp| {
            let words = self.ex.read_u32(amp);
            (
                f32::from_bits(words[crate::ops::optim::amp::SCALE]),
                words[crate::ops::optim::amp::SKIPPED],
            )
        });
        Ok(EpochOutcome::Completed(EpochResult {
            epoch,
            global_step: self.position.global_step,
            train: self.ex.plan().summarize_phase(phase, &sums, samples),
            seconds,
            recording_seconds: recording,
            samples_per_second: timed as f64 / seconds.max(1e-9),
            loss_scale,
        }))
    }

    /// Queues `len` training steps, the epoch's steps from `start` on, with the copy of the loss
    /// accumulator they end with; adds the host's time recording them to `recording`.
    fn queue_chunk(&mut self, start: usize, len: usize, recording: &mut f64) -> Chunk {
        let queued_at = Instant::now();
        let plan = self.ex.plan();
        let (acc, program) = (
            plan.io.loss_acc,
            plan.phases[self.position.phase(plan)].train,
        );
        let loss = self.ex.run_and_snapshot(program, len, acc);
        *recording += queued_at.elapsed().as_secs_f64();
        Chunk {
            loss,
            start,
            len,
            queued_at,
        }
    }

    /// The epoch's training sums (one per meter) after a chunk, waiting for it; times the chunk from when
    /// the device could start it (queued, or the chunk before it finished) for the automatic chunk length.
    fn finish_chunk(&mut self, chunk: Chunk, last_finish: &mut Instant) -> Vec<f64> {
        let acc = self.ex.read_snapshot(chunk.loss);
        let sums = self.ex.plan().train_sums(&acc);
        self.observe(chunk.len, chunk.queued_at.max(*last_finish));
        *last_finish = Instant::now();
        sums
    }

    /// Steps in the next chunk: the fixed `steps_per_submit`, or enough for about [`AUTO_CHUNK_SECONDS`].
    fn chunk_len(&self) -> usize {
        match (self.steps_per_submit, self.seconds_per_step) {
            (AUTO_STEPS, None) => AUTO_FIRST_CHUNK,
            (AUTO_STEPS, Some(s)) => {
                ((AUTO_CHUNK_SECONDS / s.max(1e-9)) as usize).clamp(1, AUTO_MAX_CHUNK)
            }
            (fixed, _) => fixed,
        }
    }

    /// Records how long the chunk of `steps` that began at `start` took, read-back included.
    fn observe(&mut self, steps: usize, start: Instant) {
        self.seconds_per_step = Some(start.elapsed().as_secs_f64() / steps.max(1) as f64);
    }

    /// Fails once the device has: nothing read from it since can be trusted.
    pub fn check_device(&self, epoch: usize, global_step: usize) -> Result<(), TrainError> {
        match self.ex.fault() {
            Some(reason) => Err(TrainError::DeviceLost {
                epoch,
                global_step,
                reason,
            }),
            None => Ok(()),
        }
    }

    /// One training step run op by op, each op's f32 outputs read back: the first non-finite value names
    /// its op. `global_step` (1-based) is the step being taken, for the message.
    fn checked_step(&mut self, epoch: usize, global_step: usize) -> Result<(), TrainError> {
        let ops: Vec<_> = step_ops(self.ex.plan()).cloned().collect();
        for (index, op) in ops.iter().enumerate() {
            self.ex.run_step_op(index);
            for buf in op.float_outputs() {
                let values = self.ex.read_f32(buf);
                self.check_device(epoch, global_step)?;
                if let Some((element, &value)) =
                    values.iter().enumerate().find(|(_, v)| !v.is_finite())
                {
                    return Err(TrainError::Anomaly {
                        epoch,
                        global_step,
                        index,
                        op: op.name(),
                        shapes: op.shapes(),
                        buffer: self.ex.plan().buffers[buf.0].name.clone(),
                        element,
                        value,
                    });
                }
            }
        }
        Ok(())
    }

    /// The first step of the chunk [start, start + len) where a term's sum is not finite, from the
    /// meters' step logs.
    fn locate_non_finite(&mut self, epoch: usize, start: usize, len: usize) -> TrainError {
        let plan = self.ex.plan();
        let meters: Vec<_> = plan.phases[self.position.phase(plan)]
            .meters
            .iter()
            .map(|&i| plan.meters[i].clone())
            .collect();
        let logs: Vec<(String, Vec<f32>)> = meters
            .into_iter()
            .map(|m| (m.name, self.ex.read_f32(m.train_log)))
            .collect();
        let (batch, value, meter) = (start..start + len)
            .find_map(|b| {
                logs.iter()
                    .find(|(_, log)| !log[b].is_finite())
                    .map(|(name, log)| (b, log[b], name.clone()))
            })
            .unwrap_or((start + len - 1, f32::NAN, "recon".into()));
        let global_step = self.position.global_step + (batch - self.position.batch_in_epoch) + 1;
        TrainError::NonFinite {
            epoch,
            global_step,
            batch: batch + 1,
            value,
            meter,
        }
    }

    /// Runs `steps` untimed training steps from the start of the current epoch's order (at most one epoch),
    /// waiting for them: first use of every pipeline and buffer before anything is timed.
    pub fn warm_up(&mut self, steps: usize) {
        let steps = steps.min(self.ex.plan().steps_per_epoch());
        if steps == 0 {
            return;
        }
        self.position.upload(self.ex, self.seed);
        self.ex.run(Program::TRAIN_STEP, steps);
        self.ex.finish();
        self.position.global_step += steps;
    }

    /// Times the first `steps` training steps of the current epoch's order (at most one epoch), recorded
    /// and read back exactly as [`Trainer::train_epoch`] does: chunks of `steps_per_submit` steps, the loss
    /// read back after each, the clock stopped after the executor has finished.
    pub fn time_steps(&mut self, steps: usize) -> StepTiming {
        let plan = self.ex.plan();
        let (batch, samples) = (plan.batch, plan.train_samples);
        let steps = steps.clamp(1, plan.steps_per_epoch());
        self.position.upload(self.ex, self.seed);
        let start = Instant::now();
        let mut done = 0;
        let mut queued = 0;
        let mut sums = Vec::new();
        let mut recording = 0.0;
        let mut in_flight: VecDeque<Chunk> = VecDeque::new();
        let mut last_finish = start;
        while done < steps {
            while queued < steps && in_flight.len() < 2 {
                let len = self.chunk_len().min(steps - queued);
                in_flight.push_back(self.queue_chunk(queued, len, &mut recording));
                queued += len;
            }
            let chunk = in_flight.pop_front().expect("a chunk is queued");
            done += chunk.len;
            sums = self.finish_chunk(chunk, &mut last_finish);
        }
        self.ex.finish();
        let seconds = start.elapsed().as_secs_f64();
        self.position.global_step += steps;
        StepTiming {
            steps,
            seconds,
            recording_seconds: recording,
            train_loss: self
                .ex
                .plan()
                .summarize(&sums, (steps * batch).min(samples))
                .total,
        }
    }

    /// Every meter over the whole test set, and the objective's total.
    pub fn evaluate(&mut self) -> Summary {
        let plan = self.ex.plan();
        let phase = self.position.phase(plan);
        let (io, samples) = (plan.io, plan.test_samples);
        let (program, steps) = (
            plan.phases[phase].eval,
            samples.div_ceil(plan.phases[phase].batch),
        );
        let zeros = plan.accumulator(&[]);
        self.ex.write_u32(io.eval_state, &[0; state::LEN]);
        self.ex.write_f32(io.loss_acc, &zeros);
        // Evaluation steps are cheaper than training steps; chunks of the training length are safe.
        let chunk = self.chunk_len();
        let mut done = 0;
        while done < steps {
            let n = chunk.min(steps - done);
            self.ex.run(program, n);
            done += n;
        }
        let acc = self.ex.read_f32(io.loss_acc);
        let plan = self.ex.plan();
        plan.summarize_phase(phase, &plan.eval_sums(&acc), samples)
    }

    /// The first `count` test images (at most the test set): clean, as the model sees them in evaluation
    /// (corrupted, for a denoising model), the model's reconstruction of what it saw, and its reconstruction
    /// of the clean image; each image row-major.
    pub fn reconstructions(&mut self, count: usize) -> Reconstructions {
        let plan = self.ex.plan();
        let (io, features, batch) = (plan.io, plan.features, plan.batch);
        let count = count.min(plan.test_samples);
        let batches = count.div_ceil(batch);
        let take = |ex: &mut dyn Executor, program, bufs: &[BufId]| -> Vec<Vec<Vec<f32>>> {
            let mut images = vec![Vec::new(); bufs.len()];
            ex.write_u32(io.eval_state, &[0; state::LEN]);
            for _ in 0..batches {
                ex.run(program, 1);
                for (k, &buf) in bufs.iter().enumerate() {
                    let v = ex.read_f32(buf);
                    // Activations may hold more rows than a batch (a pretraining phase's larger one).
                    images[k].extend(v.chunks(features).take(batch).map(<[f32]>::to_vec));
                }
            }
            for list in &mut images {
                list.truncate(count);
            }
            images
        };
        let mut seen = take(
            &mut *self.ex,
            Program::EVAL,
            &[io.input, io.model_input, io.recon],
        );
        let clean_recon = take(&mut *self.ex, Program::RECONSTRUCT, &[io.recon]).remove(0);
        let recon = seen.pop().expect("three lists");
        let seen_input = seen.pop().expect("two lists");
        let clean = seen.pop().expect("one list");
        Reconstructions {
            clean,
            seen: seen_input,
            recon,
            clean_recon,
        }
    }
}
