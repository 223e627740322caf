//! The one test hook of the GPU backend: a deliberately broken kernel.
//!
//! `GPU_AE_SELFTEST_BREAK=<op name>` (an [`crate::ops::Op::name`], e.g. `matmul`, `conv2d_bias_act`,
//! `softmax_cross_entropy`) makes every dispatch of that op add 1 to the first element of its first f32
//! output, on the device, after the op's own kernels. It exists to prove that the checks would catch a
//! kernel a driver miscompiles: `gpu-ae selftest` and the parity tests (which run the same case table,
//! `crate::selftest::cases`) must then fail and name that op. Ops without an f32 output (`advance_step`,
//! `gather_labels`) cannot be broken this way.

use super::kernels::{Dispatch, Kernels};
use crate::ops::{Act, Op};

/// The environment variable that names the op to break.
pub const BREAK_ENV: &str = "GPU_AE_SELFTEST_BREAK";

/// Which op's output to perturb, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelFault {
    pub op: Option<String>,
}

impl KernelFault {
    /// The op `GPU_AE_SELFTEST_BREAK` names (none when unset or empty).
    pub fn from_env() -> KernelFault {
        KernelFault {
            op: std::env::var(BREAK_ENV).ok().filter(|v| !v.is_empty()),
        }
    }

    /// Breaks the op named `op` (tests set it without touching the process's environment).
    pub fn breaking(op: &str) -> KernelFault {
        KernelFault {
            op: Some(op.to_string()),
        }
    }

    /// `dispatch` as it is, or followed by the perturbation when `op` is the one to break.
    pub(super) fn apply(
        &self,
        k: &mut Kernels,
        bufs: &[wgpu::Buffer],
        op: &Op,
        dispatch: Dispatch,
    ) -> Dispatch {
        let target = match (&self.op, op.float_outputs().first()) {
            (Some(name), Some(out)) if name == op.name() => &bufs[out.0],
            _ => return dispatch,
        };
        // y[0] += 1 with the bias kernel: one row, one channel, one element, identity activation.
        let one = k.constant("selftest break", &[1.0]);
        let mut perturb = k.bias_act(target, &one, 1, 1, 1, Act::Identity);
        perturb.name = "GPU_AE_SELFTEST_BREAK";
        dispatch.then_finally(perturb)
    }
}
