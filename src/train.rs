//! The training loop: epochs of shuffled batches, recorded many steps per submit, the loss read back
//! once per chunk of steps: one chunk behind, so that the device runs the next chunk meanwhile.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::backend::{Executor, Program, Snapshot, load_initial_state, step_ops};
use crate::ops::state;
use crate::plan::{EVAL_SLOT, TRAIN_SLOT};
use crate::rng::epoch_permutation;

/// What the progress callback sees after each chunk of steps.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub epoch: usize,
    pub steps_done: usize,
    pub steps_total: usize,
    /// Mean loss per element over the epoch so far.
    pub loss: f64,
    pub samples_per_second: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct EpochResult {
    /// 1-based.
    pub epoch: usize,
    /// Optimizer steps completed since the start of training.
    pub global_step: usize,
    /// Mean loss per element over the epoch's training batches.
    pub train_loss: f64,
    pub seconds: f64,
    /// Of `seconds`, the host's time inside [`Executor::run_and_snapshot`]: recording and submitting the
    /// steps, while the GPU runs the chunk before; on the CPU backend it is the work itself.
    pub recording_seconds: f64,
    pub samples_per_second: f64,
}

/// What [`Trainer::time_steps`] measured.
#[derive(Clone, Copy, Debug)]
pub struct StepTiming {
    pub steps: usize,
    pub seconds: f64,
    /// Of `seconds`, the host's time inside [`Executor::run_and_snapshot`] (see
    /// [`EpochResult::recording_seconds`]).
    pub recording_seconds: f64,
    /// Mean loss per element over the timed steps (a sanity check that real work was done).
    pub train_loss: f64,
}

/// Test images next to what the model made of them.
pub struct Reconstructions {
    pub clean: Vec<Vec<f32>>,
    /// The model's input: equal to `clean` unless the model is denoising.
    pub seen: Vec<Vec<f32>>,
    pub recon: Vec<Vec<f32>>,
}

/// How an epoch ended.
#[derive(Clone, Copy, Debug)]
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
        "the training loss became {value} at epoch {epoch}, step {global_step} (batch {batch} of the epoch); \
         stopped before saving anything from this state. Try a smaller --lr"
    )]
    NonFinite {
        epoch: usize,
        global_step: usize,
        batch: usize,
        value: f32,
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

/// Where training stands: enough, with the seed, to continue exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Position {
    /// Epochs completed.
    pub epoch: usize,
    /// Steps done in the current (unfinished) epoch.
    pub batch_in_epoch: usize,
    /// Optimizer steps since the start of training.
    pub global_step: usize,
    /// The current epoch's summed training loss so far (the device's loss accumulator).
    pub epoch_loss_sum: f64,
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

pub struct Trainer<'e> {
    ex: &'e mut dyn Executor,
    seed: u64,
    pub position: Position,
    /// Steps recorded into one command buffer between loss read-backs; [`AUTO_STEPS`] (0): as many as
    /// take about [`AUTO_CHUNK_SECONDS`], learned from the chunks so far.
    pub steps_per_submit: usize,
    /// Seconds per training step of the last chunk (read-back included): what automatic chunks are cut by.
    seconds_per_step: Option<f64>,
    /// Test hook: before global step N + 1 runs, the output layer's bias is overwritten with NaN, so the
    /// non-finite guard can be exercised end to end (`GPU_AE_INJECT_NAN_AT_STEP=N`).
    pub inject_nan_at_step: Option<usize>,
    /// The slow path: one step at a time, one op at a time, every op's f32 outputs read back and checked, so
    /// the first op that produces a NaN or an infinity is named (`--detect-anomaly`).
    pub detect_anomaly: bool,
    /// Test hook: before global step N + 1 runs, the device is made to fail as a lost GPU does
    /// (`GPU_AE_LOSE_DEVICE_AT_STEP=N`).
    pub lose_device_at_step: Option<usize>,
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
        Trainer {
            ex,
            seed,
            position: Position::default(),
            steps_per_submit: AUTO_STEPS,
            seconds_per_step: None,
            inject_nan_at_step: None,
            detect_anomaly: false,
            lose_device_at_step: None,
        }
    }

    pub fn executor(&mut self) -> &mut dyn Executor {
        self.ex
    }

    /// Runs the rest of the current epoch (all of it, unless resuming mid-epoch) in its seeded order.
    /// Checks `stop` between submissions; a non-finite loss stops training with the step that caused it.
    pub fn train_epoch(
        &mut self,
        progress: &mut dyn FnMut(Progress),
        stop: &AtomicBool,
    ) -> Result<EpochOutcome, TrainError> {
        let plan = self.ex.plan();
        let (batch, samples, features) = (plan.batch, plan.train_samples, plan.features);
        let steps_total = plan.steps_per_epoch();
        let pos = self.position;
        let epoch = pos.epoch + 1;
        self.start_pass();
        let start = Instant::now();
        let first = pos.batch_in_epoch;
        let mut done = first;
        let mut loss_sum = pos.epoch_loss_sum;
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
                let hooks = [self.inject_nan_at_step, self.lose_device_at_step];
                // The test hooks act between chunks with nothing in flight, as without pipelining.
                if hooks.contains(&Some(global)) && !in_flight.is_empty() {
                    break;
                }
                let mut len = self.chunk_len().min(steps_total - queued);
                for hook in hooks.into_iter().flatten() {
                    if global < hook {
                        len = len.min(hook - global);
                    }
                }
                if self.inject_nan_at_step == Some(global) {
                    let p = self
                        .ex
                        .plan()
                        .params
                        .last()
                        .expect("a model has parameters")
                        .clone();
                    self.ex
                        .write_f32(p.buf, &vec![f32::NAN; p.shape.iter().product()]);
                }
                if self.lose_device_at_step == Some(global) {
                    self.ex.lose_device();
                }
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
            let sum = self.finish_chunk(chunk, &mut last_finish);
            self.check_device(epoch, pos.global_step + (chunk_start - first) + 1)?;
            if !sum.is_finite() {
                return Err(self.locate_non_finite(epoch, done, chunk_len));
            }
            done += chunk_len;
            loss_sum = sum as f64;
            self.position = Position {
                epoch: pos.epoch,
                batch_in_epoch: done,
                global_step: pos.global_step + (done - first),
                epoch_loss_sum: loss_sum,
            };
            let seen = (done * batch).min(samples);
            let timed = ((done - first) * batch).min(samples);
            progress(Progress {
                epoch,
                steps_done: done,
                steps_total,
                loss: loss_sum / (seen * features) as f64,
                samples_per_second: timed as f64 / start.elapsed().as_secs_f64().max(1e-9),
            });
        }
        let seconds = start.elapsed().as_secs_f64();
        let timed = ((steps_total - first) * batch).min(samples);
        self.position = Position {
            epoch,
            batch_in_epoch: 0,
            global_step: pos.global_step + (steps_total - first),
            epoch_loss_sum: 0.0,
        };
        Ok(EpochOutcome::Completed(EpochResult {
            epoch,
            global_step: self.position.global_step,
            train_loss: loss_sum / (samples * features) as f64,
            seconds,
            recording_seconds: recording,
            samples_per_second: timed as f64 / seconds.max(1e-9),
        }))
    }

    /// Queues `len` training steps, the epoch's steps from `start` on, with the copy of the loss
    /// accumulator they end with; adds the host's time recording them to `recording`.
    fn queue_chunk(&mut self, start: usize, len: usize, recording: &mut f64) -> Chunk {
        let queued_at = Instant::now();
        let acc = self.ex.plan().io.loss_acc;
        let loss = self.ex.run_and_snapshot(Program::TrainStep, len, acc);
        *recording += queued_at.elapsed().as_secs_f64();
        Chunk {
            loss,
            start,
            len,
            queued_at,
        }
    }

    /// The epoch's summed training loss after a chunk, waiting for it; times the chunk from when the
    /// device could start it (queued, or the chunk before it finished) for the automatic chunk length.
    fn finish_chunk(&mut self, chunk: Chunk, last_finish: &mut Instant) -> f32 {
        let sum = self.ex.read_snapshot(chunk.loss)[TRAIN_SLOT];
        self.observe(chunk.len, chunk.queued_at.max(*last_finish));
        *last_finish = Instant::now();
        sum
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

    /// The first step of the chunk [start, start + len) whose loss is not finite, from the device's log.
    fn locate_non_finite(&mut self, epoch: usize, start: usize, len: usize) -> TrainError {
        let log = self.ex.read_f32(self.ex.plan().io.train_log);
        let (batch, value) = (start..start + len)
            .map(|b| (b, log[b]))
            .find(|(_, v)| !v.is_finite())
            .unwrap_or((start + len - 1, f32::NAN));
        let global_step = self.position.global_step + (batch - self.position.batch_in_epoch) + 1;
        TrainError::NonFinite {
            epoch,
            global_step,
            batch: batch + 1,
            value,
        }
    }

    /// Runs `steps` untimed training steps from the start of the current epoch's order (at most one epoch),
    /// waiting for them: first use of every pipeline and buffer before anything is timed.
    pub fn warm_up(&mut self, steps: usize) {
        let steps = steps.min(self.ex.plan().steps_per_epoch());
        if steps == 0 {
            return;
        }
        self.start_pass();
        self.ex.run(Program::TrainStep, steps);
        self.ex.finish();
        self.position.global_step += steps;
    }

    /// Times the first `steps` training steps of the current epoch's order (at most one epoch), recorded
    /// and read back exactly as [`Trainer::train_epoch`] does: chunks of `steps_per_submit` steps, the loss
    /// read back after each, the clock stopped after the executor has finished.
    pub fn time_steps(&mut self, steps: usize) -> StepTiming {
        let plan = self.ex.plan();
        let (batch, samples, features) = (plan.batch, plan.train_samples, plan.features);
        let steps = steps.clamp(1, plan.steps_per_epoch());
        self.start_pass();
        let start = Instant::now();
        let mut done = 0;
        let mut queued = 0;
        let mut loss_sum = 0.0;
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
            loss_sum = self.finish_chunk(chunk, &mut last_finish) as f64;
        }
        self.ex.finish();
        let seconds = start.elapsed().as_secs_f64();
        self.position.global_step += steps;
        StepTiming {
            steps,
            seconds,
            recording_seconds: recording,
            train_loss: loss_sum / ((steps * batch).min(samples) * features) as f64,
        }
    }

    /// Uploads the current epoch's order and points the device at the current position: the state words
    /// (global step, batch within the epoch) and the epoch's loss sum so far.
    fn start_pass(&mut self) {
        let pos = self.position;
        let io = self.ex.plan().io;
        let samples = self.ex.plan().train_samples;
        self.ex.write_u32(
            io.train_perm,
            &epoch_permutation(samples, self.seed, pos.epoch as u64),
        );
        let mut words = [0; state::LEN];
        words[state::GLOBAL_STEP] = pos.global_step as u32;
        words[state::BATCH] = pos.batch_in_epoch as u32;
        self.ex.write_u32(io.train_state, &words);
        self.ex
            .write_f32(io.loss_acc, &[pos.epoch_loss_sum as f32, 0.0]);
    }

    /// Mean loss per element over the whole test set.
    pub fn evaluate(&mut self) -> f64 {
        let plan = self.ex.plan();
        let (io, steps, denom) = (
            plan.io,
            plan.eval_steps(),
            (plan.test_samples * plan.features) as f64,
        );
        self.ex.write_u32(io.eval_state, &[0; state::LEN]);
        self.ex.write_f32(io.loss_acc, &[0.0, 0.0]);
        // Evaluation steps are cheaper than training steps; chunks of the training length are safe.
        let chunk = self.chunk_len();
        let mut done = 0;
        while done < steps {
            let n = chunk.min(steps - done);
            self.ex.run(Program::Eval, n);
            done += n;
        }
        self.ex.read_f32(io.loss_acc)[EVAL_SLOT] as f64 / denom
    }

    /// The first `count` test images: clean, as the model sees them (corrupted, for denoising models), and
    /// reconstructed; each image row-major.
    pub fn reconstructions(&mut self, count: usize) -> Reconstructions {
        let plan = self.ex.plan();
        let (io, features) = (plan.io, plan.features);
        let count = count.min(plan.batch).min(plan.test_samples);
        self.ex.write_u32(io.eval_state, &[0; state::LEN]);
        self.ex.run(Program::Eval, 1);
        let mut rows = |buf| -> Vec<Vec<f32>> {
            let v = self.ex.read_f32(buf);
            v.chunks(features)
                .take(count)
                .map(<[f32]>::to_vec)
                .collect()
        };
        Reconstructions {
            clean: rows(io.input),
            seen: rows(io.model_input),
            recon: rows(io.recon),
        }
    }
}
