//! A plan's programs: named op segments, the programs that run lists of them ([`Program`]), and the
//! [`Codec`] through which the host meets the encode and decode programs.

use super::layers::LayerBufs;
use crate::model::Model;
use crate::ops::{BufId, Op};

/// A named list of ops, run in order.
#[derive(Clone, Debug)]
pub struct Segment {
    pub name: String,
    pub ops: Vec<Op>,
}

/// A program: the segments it runs, in order.
#[derive(Clone, Debug)]
pub struct ProgramDesc {
    pub name: String,
    pub segments: Vec<usize>,
}

/// A program of a plan: an index into [`super::Plan::programs`]. Every plan has the six below (a plan made
/// by [`super::Plan::from_ops`] runs its ops as `FORWARD_BACKWARD` and `TRAIN_STEP`; `ENCODE` and `DECODE` are
/// empty where the plan has no [`Codec`]); later families add their own (a pretraining phase) after them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Program(pub usize);

impl Program {
    /// Gather, corrupt, forward, every term's value, backward: every gradient written, no parameter
    /// changed.
    pub const FORWARD_BACKWARD: Program = Program(0);
    /// One full training step: `FORWARD_BACKWARD`, then the optimizer and the step counter.
    pub const TRAIN_STEP: Program = Program(1);
    /// One evaluation batch: gather a test batch (in order), corrupt, forward, every term's value.
    pub const EVAL: Program = Program(2);
    /// The forward pass on the clean test batch (no corruption, no terms), for pictures.
    pub const RECONSTRUCT: Program = Program(3);
    /// The clean test batch (in order) up to the code: [`Codec::code`].
    pub const ENCODE: Program = Program(4);
    /// The decoder from the codes in [`Codec::latent`] to images in [`Codec::decoded`].
    pub const DECODE: Program = Program(5);
}

/// The segments, in order, and the six programs of a plan: forward-backward (segment 0), train step (0
/// then 1), and one program for each later segment (eval, reconstruct, encode, decode).
pub(super) fn standard_programs(
    segments: [(&'static str, Vec<Op>); 6],
) -> (Vec<Segment>, Vec<ProgramDesc>) {
    let mut programs = vec![
        ProgramDesc {
            name: "forward_backward".into(),
            segments: vec![0],
        },
        ProgramDesc {
            name: "train_step".into(),
            segments: vec![0, 1],
        },
    ];
    for (index, (name, _)) in segments.iter().enumerate().skip(2) {
        programs.push(ProgramDesc {
            name: name.to_string(),
            segments: vec![index],
        });
    }
    let segments = segments
        .into_iter()
        .map(|(name, ops)| Segment {
            name: name.into(),
            ops,
        })
        .collect();
    (segments, programs)
}

/// How the host meets a plan's `encode` and `decode` programs ([`Program::ENCODE`], [`Program::DECODE`]):
/// present for a model with a code whose decoder needs nothing but the code (not a decoder that unpools
/// through the encoder's pooling indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    /// Where `encode` leaves the test batch's codes: `batch` rows of `stride` values, the code being the
    /// first `width` of each (μ of [μ | log σ²], for a variational model).
    pub code: BufId,
    pub stride: usize,
    pub width: usize,
    /// Where `decode` reads `batch` rows of `width` code values (z, for a variational model)…
    pub latent: BufId,
    /// …and where it leaves the images, act(logits): `batch` rows of `features` values in [0, 1].
    pub decoded: BufId,
    /// Whether the code is the mean of a Gaussian posterior, with the prior N(0, I) to sample codes from.
    pub variational: bool,
}

/// The encode and decode programs' buffers, for a model with a code that the decoder can start from
/// alone (none of its layers unpools through an encoder's indices).
pub(super) fn codec(model: &Model, bufs: &[LayerBufs]) -> Option<Codec> {
    let code = model.code?;
    let start = model.decoder_start()?;
    let last = model.layers.len() - 1;
    let self_contained = model.layers[start..]
        .iter()
        .all(|l| !matches!(l, crate::model::Layer::MaxUnpool2 { .. }));
    if start > last || !self_contained {
        return None;
    }
    let stride = model.shapes[code + 1].numel();
    let gaussian = model.gaussian_latent();
    Some(Codec {
        code: bufs[code].output,
        stride,
        width: gaussian.unwrap_or(stride),
        latent: bufs[start].input,
        decoded: bufs[last].output,
        variational: gaussian.is_some(),
    })
}

/// A stretch of training with programs, a batch and meters of its own: the pretraining of one layer, or
/// the training of the whole model (the fine-tuning, every plan's last phase). A run trains its phases in
/// order; a checkpoint records which one it is in.
#[derive(Clone, Debug)]
pub struct Phase {
    /// `pretrain-1` … `pretrain-K`, then `fine-tune`: the `phase` column of metrics.csv.
    pub name: String,
    /// One line on what the phase trains and how.
    pub description: String,
    /// One training step, and one evaluation batch.
    pub train: Program,
    pub eval: Program,
    pub batch: usize,
    /// The meters the phase feeds (indices into the plan's meters); its loss is their total.
    pub meters: Vec<usize>,
    /// Epochs the phase trains; `None` for the fine-tuning, which trains the run's `--epochs`.
    pub epochs: Option<usize>,
    /// When the phase ends, parameter `.1` receives the transpose of parameter `.0` (an RBM's weight
    /// unrolled into the mirrored decoder layer).
    pub unroll: Option<(usize, usize)>,
}

impl Phase {
    /// The training of the whole model: the standard programs, the run's batch, the objective's meters.
    pub fn fine_tune(batch: usize, meters: Vec<usize>) -> Phase {
        Phase {
            name: FINE_TUNE.into(),
            description: String::new(),
            train: Program::TRAIN_STEP,
            eval: Program::EVAL,
            batch,
            meters,
            epochs: None,
            unroll: None,
        }
    }
}

/// The name of every plan's last phase.
pub const FINE_TUNE: &str = "fine-tune";
