//! The training loop: epochs of shuffled batches, recorded many steps per submit, with the loss read
//! back once per chunk of steps.

use std::time::Instant;

use crate::backend::{Executor, Program, load_initial_state};
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
    pub samples_per_second: f64,
}

/// What [`Trainer::time_steps`] measured.
#[derive(Clone, Copy, Debug)]
pub struct StepTiming {
    pub steps: usize,
    pub seconds: f64,
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

pub struct Trainer<'e> {
    ex: &'e mut dyn Executor,
    seed: u64,
    /// Epochs completed.
    pub epoch: usize,
    pub global_step: usize,
    /// Steps recorded into one command buffer between loss read-backs.
    pub steps_per_submit: usize,
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
            epoch: 0,
            global_step: 0,
            steps_per_submit: 50,
        }
    }

    pub fn executor(&mut self) -> &mut dyn Executor {
        self.ex
    }

    /// One pass over the training set in the epoch's seeded order.
    pub fn train_epoch(&mut self, progress: &mut dyn FnMut(Progress)) -> EpochResult {
        let plan = self.ex.plan();
        let (io, batch, samples, features) =
            (plan.io, plan.batch, plan.train_samples, plan.features);
        let steps_total = plan.steps_per_epoch();
        let epoch = self.epoch + 1;
        self.start_pass();
        let start = Instant::now();
        let mut done = 0;
        let mut loss_sum = 0.0;
        while done < steps_total {
            let chunk = self.steps_per_submit.max(1).min(steps_total - done);
            self.ex.run(Program::TrainStep, chunk);
            done += chunk;
            loss_sum = self.ex.read_f32(io.loss_acc)[TRAIN_SLOT] as f64;
            let seen = (done * batch).min(samples);
            progress(Progress {
                epoch,
                steps_done: done,
                steps_total,
                loss: loss_sum / (seen * features) as f64,
                samples_per_second: seen as f64 / start.elapsed().as_secs_f64().max(1e-9),
            });
        }
        let seconds = start.elapsed().as_secs_f64();
        self.epoch = epoch;
        self.global_step += steps_total;
        EpochResult {
            epoch,
            global_step: self.global_step,
            train_loss: loss_sum / (samples * features) as f64,
            seconds,
            samples_per_second: samples as f64 / seconds.max(1e-9),
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
        self.global_step += steps;
    }

    /// Times the first `steps` training steps of the current epoch's order (at most one epoch), recorded
    /// and read back exactly as [`Trainer::train_epoch`] does: chunks of `steps_per_submit` steps, the loss
    /// read back after each, the clock stopped after the executor has finished.
    pub fn time_steps(&mut self, steps: usize) -> StepTiming {
        let plan = self.ex.plan();
        let (io, batch, samples, features) =
            (plan.io, plan.batch, plan.train_samples, plan.features);
        let steps = steps.clamp(1, plan.steps_per_epoch());
        self.start_pass();
        let start = Instant::now();
        let mut done = 0;
        let mut loss_sum = 0.0;
        while done < steps {
            let chunk = self.steps_per_submit.max(1).min(steps - done);
            self.ex.run(Program::TrainStep, chunk);
            done += chunk;
            loss_sum = self.ex.read_f32(io.loss_acc)[TRAIN_SLOT] as f64;
        }
        self.ex.finish();
        let seconds = start.elapsed().as_secs_f64();
        self.global_step += steps;
        StepTiming {
            steps,
            seconds,
            train_loss: loss_sum / ((steps * batch).min(samples) * features) as f64,
        }
    }

    /// Uploads the current epoch's order, points the state at its first batch, zeroes the loss sums.
    fn start_pass(&mut self) {
        let io = self.ex.plan().io;
        let samples = self.ex.plan().train_samples;
        self.ex.write_u32(
            io.train_perm,
            &epoch_permutation(samples, self.seed, self.epoch as u64),
        );
        self.ex.write_u32(io.train_state, &self.state_words(0));
        self.ex.write_f32(io.loss_acc, &[0.0, 0.0]);
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
        let chunk = self.steps_per_submit.max(1);
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

    fn state_words(&self, batch_index: u32) -> [u32; state::LEN] {
        let mut s = [0; state::LEN];
        s[state::GLOBAL_STEP] = self.global_step as u32;
        s[state::BATCH] = batch_index;
        s
    }
}
