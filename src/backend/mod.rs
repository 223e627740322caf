//! Backends execute a [`Plan`]: the GPU backend records WGSL dispatches, the CPU backend runs the twins.
//!
//! Both implement [`Executor`], so the training loop, the tests and the benchmarks are written once.

pub mod cpu;
pub mod gpu;

use crate::ops::BufId;
use crate::plan::Plan;

pub use crate::plan::Program;

/// A copy of a buffer as a queued run leaves it ([`Executor::run_and_snapshot`]), to be read with
/// [`Executor::read_snapshot`].
#[must_use = "a snapshot holds a read-back slot until it is read"]
#[derive(Debug)]
pub struct Snapshot {
    /// The GPU's number for its pending copy.
    ticket: usize,
    /// Backends that run synchronously take the copy at once.
    values: Option<Vec<f32>>,
}

pub trait Executor {
    /// A one-line description, e.g. "cpu (2 threads)" or "NVIDIA H100 (Vulkan)".
    fn describe(&self) -> String;
    fn plan(&self) -> &Plan;
    /// Queue `repeats` back-to-back runs of `program`. The GPU returns once they are recorded and submitted.
    fn run(&mut self, program: Program, repeats: usize);
    fn write_f32(&mut self, buf: BufId, data: &[f32]);
    fn write_u32(&mut self, buf: BufId, data: &[u32]);
    /// Waits for queued work, then copies the buffer out.
    fn read_f32(&mut self, buf: BufId) -> Vec<f32>;
    fn read_u32(&mut self, buf: BufId) -> Vec<u32>;
    /// Waits for every queued run to finish.
    fn finish(&mut self);
    /// Queues `repeats` runs of `program` (none is fine) and a copy of `buf` as they leave it, and returns
    /// without waiting: the host can record the next runs while the device works through these. The
    /// training loop reads its loss accumulator this way, one chunk behind.
    fn run_and_snapshot(&mut self, program: Program, repeats: usize, buf: BufId) -> Snapshot {
        self.run(program, repeats);
        Snapshot {
            ticket: 0,
            values: Some(self.read_f32(buf)),
        }
    }
    /// The copy `snapshot` took, waiting for the runs queued before it (not those queued after).
    fn read_snapshot(&mut self, snapshot: Snapshot) -> Vec<f32> {
        snapshot.values.unwrap_or_default()
    }
    /// Queues op `index` of the training step (the forward-backward ops, then the update ops) on its own.
    /// Running every index in order is one [`Program::TRAIN_STEP`]: the slow path of `--detect-anomaly`.
    fn run_step_op(&mut self, index: usize);
    /// The device's failure, once it has one (a lost GPU): from then on reads return NaNs and nothing that
    /// was read can be trusted. The CPU never fails this way.
    fn fault(&self) -> Option<String> {
        None
    }
    /// Test hook: makes the device fail as a lost GPU does (`GPU_AE_LOSE_DEVICE_AT_STEP`). No-op on the CPU.
    fn lose_device(&mut self) {}
}

/// The ops of one training step, in the order [`Executor::run_step_op`] numbers them.
pub fn step_ops(plan: &Plan) -> impl Iterator<Item = &crate::ops::Op> {
    plan.program_ops(Program::TRAIN_STEP)
}

/// Uploads the packed u8 training and test sets, identity test order, initial parameters, the plan's scalars
/// and zeroed state.
pub fn load_initial_state(
    ex: &mut dyn Executor,
    train_pixels: &[u8],
    test_pixels: &[u8],
    seed: u64,
) {
    let io = ex.plan().io;
    let test_samples = ex.plan().test_samples;
    ex.write_u32(io.train_data, &pack_bytes(train_pixels));
    ex.write_u32(io.test_data, &pack_bytes(test_pixels));
    ex.write_u32(
        io.test_perm,
        &(0..test_samples as u32).collect::<Vec<u32>>(),
    );
    let params = ex.plan().initial_params(seed);
    for (index, values) in params.iter().enumerate() {
        write_param(ex, index, values);
    }
    if let Some(amp) = io.amp {
        let scale = crate::ops::optim::amp::INITIAL_SCALE;
        ex.write_u32(amp, &crate::ops::optim::amp::initial(scale));
    }
    let stats: Vec<(BufId, Vec<f32>)> = ex
        .plan()
        .stats
        .iter()
        .map(|s| (s.buf, vec![s.init; s.shape.iter().product()]))
        .collect();
    for (buf, values) in &stats {
        ex.write_f32(*buf, values);
    }
    let scalars: Vec<f32> = ex.plan().scalars.iter().map(|s| s.init).collect();
    if !scalars.is_empty() {
        ex.write_f32(io.scalars, &scalars);
    }
}

/// Writes parameter `index` of the plan, and its f16 copy where it has one (mixed precision).
pub fn write_param(ex: &mut dyn Executor, index: usize, values: &[f32]) {
    let p = &ex.plan().params[index];
    let (buf, half) = (p.buf, p.half);
    ex.write_f32(buf, values);
    if let Some(half) = half {
        ex.write_f32(half, values);
    }
}

/// Uploads a classifier's labels, one u32 per sample; a plan without label buffers ignores them.
pub fn load_labels(ex: &mut dyn Executor, train_labels: &[u8], test_labels: &[u8]) {
    let io = ex.plan().io;
    let widen = |labels: &[u8]| labels.iter().map(|&l| u32::from(l)).collect::<Vec<u32>>();
    if let Some(buf) = io.train_labels {
        ex.write_u32(buf, &widen(train_labels));
    }
    if let Some(buf) = io.test_labels {
        ex.write_u32(buf, &widen(test_labels));
    }
}

/// Packs bytes little-endian into u32 words (the layout `shaders/data.wgsl` unpacks), zero-padded.
pub fn pack_bytes(bytes: &[u8]) -> Vec<u32> {
    let mut words = vec![0u32; crate::plan::packed_words(bytes.len())];
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let mut w = [0u8; 4];
        w[..chunk.len()].copy_from_slice(chunk);
        words[i] = u32::from_le_bytes(w);
    }
    words
}
