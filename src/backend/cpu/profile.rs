//! Per-op wall-clock breakdown of the CPU backend, for finding where an epoch goes.
//!
//! Set `GPU_AE_CPU_PROFILE=1` and every op [`super::CpuExecutor`] runs is timed; when the executor is dropped
//! it prints one line per op kind and shape to stderr, slowest first. Off by default: then nothing is timed.

use crate::ops::Op;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The environment variable that turns profiling on.
pub const ENV: &str = "GPU_AE_CPU_PROFILE";

#[derive(Default)]
pub struct Profile {
    /// label → (total time, calls)
    totals: HashMap<String, (Duration, u64)>,
}

impl Profile {
    /// A profile when [`ENV`] is set to anything but "0" or "".
    pub fn from_env() -> Option<Profile> {
        match std::env::var(ENV) {
            Ok(v) if !v.is_empty() && v != "0" => Some(Profile::default()),
            _ => None,
        }
    }

    /// Runs `f` and charges its time to `op`.
    pub fn time<R>(&mut self, op: &Op, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let r = f();
        let entry = self.totals.entry(label(op)).or_default();
        entry.0 += start.elapsed();
        entry.1 += 1;
        r
    }

    /// The table, slowest first: op, calls, total seconds, share of the total.
    pub fn report(&self) -> String {
        let total: Duration = self.totals.values().map(|t| t.0).sum();
        let mut rows: Vec<_> = self.totals.iter().collect();
        rows.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
        let mut out = format!("{:<56} {:>8} {:>9} {:>6}\n", "op", "calls", "seconds", "%");
        for (name, (time, calls)) in rows {
            out += &format!(
                "{name:<56} {calls:>8} {:>9.3} {:>5.1}%\n",
                time.as_secs_f64(),
                100.0 * time.as_secs_f64() / total.as_secs_f64().max(1e-12)
            );
        }
        out + &format!("{:<56} {:>8} {:>9.3}\n", "total", "", total.as_secs_f64())
    }
}

/// The op's name plus the shape that sets its cost.
fn label(op: &Op) -> String {
    match op {
        Op::Conv2d { geom: g, .. }
        | Op::Conv2dBackwardData { geom: g, .. }
        | Op::Conv2dBackwardWeight { geom: g, .. }
        | Op::ConvBiasAct { geom: g, .. } => format!(
            "{} {}×{}×{}→{}×{}×{}",
            op.name(),
            g.in_c,
            g.in_h,
            g.in_w,
            g.out_c,
            g.out_h,
            g.out_w
        ),
        Op::Matmul {
            m,
            n,
            k,
            trans_a,
            trans_b,
            ..
        } => format!(
            "matmul {m}×{k}{}·{k}×{n}{}",
            if *trans_a { "ᵀ" } else { "" },
            if *trans_b { "ᵀ" } else { "" }
        ),
        Op::MatmulBiasAct { .. } => format!("matmul_bias_act {}", op.shapes()),
        Op::BiasAct {
            rows,
            channels,
            inner,
            act,
            ..
        } => format!("bias_act {rows}×{channels}×{inner} {}", act.name()),
        Op::ActBackward { len, act, .. } => format!("act_backward {len} {}", act.name()),
        Op::Adam { len, .. } => format!("adam {len}"),
        _ => op.name().to_string(),
    }
}
