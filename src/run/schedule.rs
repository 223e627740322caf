//! The learning-rate schedule of a run's configuration (`--lr-schedule`), in epochs, and its text form
//! in config.json; the plan gets it in steps from [`super::RunConfig::lr_schedule_steps`].

/// The learning-rate schedule after the warm-up, counted in epochs (the plan converts them to steps, so
/// the rate changes step by step, as PyTorch's schedulers do when stepped every batch).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum ScheduleArg {
    /// The same learning rate throughout.
    #[default]
    Constant,
    /// × `gamma` every `every` epochs (StepLR).
    Step { every: usize, gamma: f32 },
    /// From the learning rate down to 0 along half a cosine, over the `epochs` epochs after the warm-up
    /// ends (CosineAnnealingLR with T_max those epochs' steps).
    Cosine { epochs: usize },
}

impl std::fmt::Display for ScheduleArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScheduleArg::Constant => write!(f, "constant"),
            ScheduleArg::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
            ScheduleArg::Cosine { epochs } => write!(f, "cosine:{epochs}"),
        }
    }
}

/// `constant`, `step:E:γ` or `cosine:N`; `cosine` alone (the run's epochs, which only the command line
/// knows) is the CLI's to resolve, so here it is an error.
pub fn parse_schedule(text: &str) -> Result<ScheduleArg, String> {
    let forms = "constant, step:E:γ (× γ every E epochs, 0 < γ ≤ 1), or cosine[:N] (down to 0 over N epochs; \
                 without N, over --epochs)";
    let mut parts = text.split(':');
    let count = |t: Option<&str>| -> Result<usize, String> {
        match t.map(|t| t.trim().parse::<usize>()) {
            Some(Ok(n)) if n > 0 => Ok(n),
            _ => Err(format!(
                "{text:?}: the epochs must be a whole number ≥ 1; expected {forms}"
            )),
        }
    };
    let schedule = match parts.next() {
        Some("constant") | Some("none") => ScheduleArg::Constant,
        Some("step") => {
            let every = count(parts.next())?;
            let gamma = match parts.next().map(|g| g.trim().parse::<f32>()) {
                Some(Ok(g)) if g.is_finite() && g > 0.0 && g <= 1.0 => g,
                _ => return Err(format!("{text:?}: γ must lie in (0, 1]; expected {forms}")),
            };
            ScheduleArg::Step { every, gamma }
        }
        Some("cosine") => ScheduleArg::Cosine {
            epochs: count(parts.next())?,
        },
        _ => return Err(format!("unknown schedule {text:?}; expected {forms}")),
    };
    match parts.next() {
        Some(_) => Err(format!("{text:?} has a part too many; expected {forms}")),
        None => Ok(schedule),
    }
}

/// `lr_schedule` as text in the JSON: `constant`, `step:E:γ`, `cosine:N`.
pub(super) mod text {
    use super::ScheduleArg;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(schedule: &ScheduleArg, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&schedule.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ScheduleArg, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_schedule(&text).map_err(serde::de::Error::custom)
    }
}
