//! The CPU backend: runs a plan's ops with the twins in [`kernels`], in f32 (the reference and the
//! benchmark baseline) or f64 (gradient checks).

pub mod classify;
pub mod conv;
mod conv_single;
pub mod kernels;
pub mod optim;
pub mod real;

pub mod noise;
pub mod norm;
pub mod pool;
pub mod profile;
pub mod rbm;
pub mod scratch;
pub mod terms;
pub mod vae;
pub mod wide;

use super::{Executor, Program};
use crate::ops::{AdamHyper, BufId, Op, state};
use crate::plan::{Elem, Plan};
pub use real::Real;

enum Storage<T> {
    Float(Vec<T>),
    Words(Vec<u32>),
}

pub struct CpuExecutor<T: Real = f32> {
    plan: Plan,
    buffers: Vec<Storage<T>>,
    /// Which buffers are f16 on the GPU: every write to one is rounded to f16 here (mixed precision).
    halves: Vec<bool>,
    /// Working memory reused by the conv kernels.
    scratch: scratch::Scratch<T>,
    /// Per-op timings, when `GPU_AE_CPU_PROFILE` is set.
    profile: Option<profile::Profile>,
}

impl<T: Real> CpuExecutor<T> {
    pub fn new(plan: Plan) -> Self {
        let buffers = plan
            .buffers
            .iter()
            .map(|b| match b.elem {
                Elem::F32 | Elem::F16 => Storage::Float(vec![T::zero(); b.len]),
                Elem::U32 => Storage::Words(vec![0; b.len]),
            })
            .collect();
        let halves = plan.buffers.iter().map(|b| b.elem == Elem::F16).collect();
        CpuExecutor {
            plan,
            buffers,
            halves,
            scratch: scratch::Scratch::default(),
            profile: profile::Profile::from_env(),
        }
    }

    pub fn floats(&self, id: BufId) -> &[T] {
        match &self.buffers[id.0] {
            Storage::Float(v) => v,
            Storage::Words(_) => panic!(
                "buffer {} holds u32 words, not floats",
                self.plan.buffers[id.0].name
            ),
        }
    }

    pub fn floats_mut(&mut self, id: BufId) -> &mut Vec<T> {
        let name = &self.plan.buffers[id.0].name;
        match &mut self.buffers[id.0] {
            Storage::Float(v) => v,
            Storage::Words(_) => panic!("buffer {name} holds u32 words, not floats"),
        }
    }

    pub fn words(&self, id: BufId) -> &[u32] {
        match &self.buffers[id.0] {
            Storage::Words(v) => v,
            Storage::Float(_) => panic!(
                "buffer {} holds floats, not u32 words",
                self.plan.buffers[id.0].name
            ),
        }
    }

    pub(super) fn words_mut(&mut self, id: BufId) -> &mut Vec<u32> {
        match &mut self.buffers[id.0] {
            Storage::Words(v) => v,
            Storage::Float(_) => panic!(
                "buffer {} holds floats, not u32 words",
                self.plan.buffers[id.0].name
            ),
        }
    }

    /// Runs `f` with float buffer `out` taken out of the table, so it can read the others.
    fn with_out<R>(&mut self, out: BufId, f: impl FnOnce(&Self, &mut [T]) -> R) -> R {
        let mut taken = std::mem::take(self.floats_mut(out));
        let r = f(self, &mut taken);
        *self.floats_mut(out) = taken;
        r
    }

    /// Executes one op: the CPU twin of one GPU dispatch. What it writes to an f16 buffer is rounded to f16
    /// after it, where the GPU rounds as it stores.
    pub fn execute(&mut self, op: &Op) {
        self.execute_op(op);
        if self.halves.iter().any(|&h| h) {
            for out in op.float_outputs() {
                if self.halves[out.0] {
                    self.round_to_f16(out);
                }
            }
        }
    }

    /// Every value of float buffer `id` rounded to f16, as the GPU stores an f16 buffer.
    fn round_to_f16(&mut self, id: BufId) {
        for v in self.floats_mut(id).iter_mut() {
            *v = optim::round_to_f16(*v);
        }
    }

    fn execute_op(&mut self, op: &Op) {
        match *op {
            Op::GatherBatch {
                data,
                perm,
                state: st,
                out,
                batch,
                features,
                samples,
            } => {
                let batch_index = self.words(st)[state::BATCH] as usize;
                let valid = self.with_out(out, |s, out| {
                    kernels::gather_batch(
                        s.words(data),
                        s.words(perm),
                        batch_index,
                        out,
                        batch,
                        features,
                        samples,
                    )
                });
                self.words_mut(st)[state::VALID_ROWS] = valid as u32;
            }
            Op::Matmul {
                a,
                b,
                c,
                m,
                n,
                k,
                trans_a,
                trans_b,
                accumulate,
            } => {
                self.with_out(c, |s, c| {
                    kernels::matmul(
                        s.floats(a),
                        s.floats(b),
                        c,
                        m,
                        n,
                        k,
                        trans_a,
                        trans_b,
                        accumulate,
                    )
                });
            }
            Op::MatmulBiasAct {
                x,
                w,
                bias,
                y,
                m,
                n,
                k,
                trans_b,
                act,
            } => {
                self.with_out(y, |s, y| {
                    kernels::matmul(s.floats(x), s.floats(w), y, m, n, k, false, trans_b, false);
                    kernels::bias_act(y, s.floats(bias), m, n, 1, act);
                });
            }
            Op::BiasAct {
                y,
                bias,
                rows,
                channels,
                inner,
                act,
            } => {
                self.with_out(y, |s, y| {
                    kernels::bias_act(y, s.floats(bias), rows, channels, inner, act)
                });
            }
            Op::ActBackward { y, grad, len, act } => {
                self.with_out(grad, |s, g| {
                    kernels::act_backward(&s.floats(y)[..len], &mut g[..len], act)
                });
            }
            Op::BiasGrad {
                grad,
                db,
                rows,
                channels,
                inner,
            } => {
                self.with_out(db, |s, db| {
                    kernels::bias_grad(s.floats(grad), db, rows, channels, inner)
                });
            }
            Op::Loss {
                kind,
                output_act,
                logits,
                target,
                grad,
                recon,
                partials,
                state: st,
                rows,
                cols,
                samples,
                per_sample,
                amp,
            } => {
                let valid =
                    kernels::valid_rows(rows, samples, self.words(st)[state::BATCH] as usize);
                let mut g = std::mem::take(self.floats_mut(grad));
                let mut r = std::mem::take(self.floats_mut(recon));
                let mut p = std::mem::take(self.floats_mut(partials));
                kernels::loss(
                    kind,
                    output_act,
                    self.floats(logits),
                    self.floats(target),
                    &mut g,
                    &mut r,
                    &mut p,
                    valid,
                    cols,
                    per_sample,
                );
                if let Some(amp) = amp {
                    let scale = T::from_f32(f32::from_bits(
                        self.words(amp)[crate::ops::optim::amp::SCALE],
                    ));
                    for v in &mut g {
                        *v *= scale;
                    }
                }
                *self.floats_mut(grad) = g;
                *self.floats_mut(recon) = r;
                *self.floats_mut(partials) = p;
            }
            Op::ReduceSum {
                partials,
                first,
                count,
                scale,
                acc,
                slot,
                state: st,
                log,
            } => {
                let mut sum = kernels::reduce_sum(&self.floats(partials)[first..first + count]);
                if let Some(scale) = scale {
                    sum *= self.floats(scale.buf)[scale.index];
                }
                self.floats_mut(acc)[slot] += sum;
                let step = self.words(st)[state::BATCH] as usize;
                if let Some(entry) = self.floats_mut(log).get_mut(step) {
                    *entry = sum;
                }
            }
            Op::Adam {
                param,
                grad,
                m,
                v,
                state: st,
                step_word,
                len,
                hyper,
                lr_scale,
            } => {
                let t = self.words(st)[step_word] + 1;
                let hyper = AdamHyper {
                    lr: hyper.lr * self.lr_scale(lr_scale),
                    ..hyper
                };
                let mut p = std::mem::take(self.floats_mut(param));
                let mut mm = std::mem::take(self.floats_mut(m));
                let mut vv = std::mem::take(self.floats_mut(v));
                kernels::adam(
                    &mut p[..len],
                    &self.floats(grad)[..len],
                    &mut mm[..len],
                    &mut vv[..len],
                    t,
                    hyper,
                );
                *self.floats_mut(param) = p;
                *self.floats_mut(m) = mm;
                *self.floats_mut(v) = vv;
            }
            Op::Sgd {
                param,
                grad,
                velocity,
                len,
                lr,
                momentum,
                weight_decay,
                lr_scale,
            } => {
                let lr = lr * self.lr_scale(lr_scale);
                let mut p = std::mem::take(self.floats_mut(param));
                let mut vel = std::mem::take(self.floats_mut(velocity));
                kernels::sgd(
                    &mut p[..len],
                    &self.floats(grad)[..len],
                    &mut vel[..len],
                    lr,
                    momentum,
                    weight_decay,
                );
                *self.floats_mut(param) = p;
                *self.floats_mut(velocity) = vel;
            }
            Op::AdvanceStep { state: st } => {
                let s = self.words_mut(st);
                s[state::GLOBAL_STEP] += 1;
                s[state::BATCH] += 1;
            }
            Op::MaxPool2x2 {
                x,
                y,
                argmax,
                batch,
                channels,
                in_h,
                in_w,
            } => {
                let mut indices = std::mem::take(self.words_mut(argmax));
                self.with_out(y, |s, y| {
                    pool::max_pool2x2(s.floats(x), y, &mut indices, batch * channels, in_h, in_w)
                });
                *self.words_mut(argmax) = indices;
            }
            Op::MaxPool2x2Backward {
                dy,
                argmax,
                dx,
                batch,
                channels,
                in_h,
                in_w,
            } => {
                self.with_out(dx, |s, dx| {
                    pool::scatter_to_argmax(
                        s.floats(dy),
                        s.words(argmax),
                        dx,
                        batch * channels,
                        in_h,
                        in_w,
                    )
                });
            }
            Op::MaxUnpool2x2 {
                x,
                argmax,
                y,
                batch,
                channels,
                out_h,
                out_w,
            } => {
                self.with_out(y, |s, y| {
                    pool::scatter_to_argmax(
                        s.floats(x),
                        s.words(argmax),
                        y,
                        batch * channels,
                        out_h,
                        out_w,
                    )
                });
            }
            Op::MaxUnpool2x2Backward {
                dy,
                argmax,
                dx,
                batch,
                channels,
                out_h,
                out_w,
            } => {
                self.with_out(dx, |s, dx| {
                    pool::gather_from_argmax(
                        s.floats(dy),
                        s.words(argmax),
                        dx,
                        batch * channels,
                        out_h,
                        out_w,
                    )
                });
            }
            Op::UpsampleNearest {
                x,
                y,
                batch,
                channels,
                in_h,
                in_w,
                factor,
            } => {
                self.with_out(y, |s, y| {
                    pool::upsample_nearest(s.floats(x), y, batch * channels, in_h, in_w, factor)
                });
            }
            Op::UpsampleNearestBackward {
                dy,
                dx,
                batch,
                channels,
                in_h,
                in_w,
                factor,
            } => {
                self.with_out(dx, |s, dx| {
                    pool::upsample_nearest_backward(
                        s.floats(dy),
                        dx,
                        batch * channels,
                        in_h,
                        in_w,
                        factor,
                    )
                });
            }
            Op::BatchNorm2d {
                x,
                y,
                gamma,
                beta,
                mean,
                inv_std,
                running_mean,
                running_var,
                state: st,
                batch,
                channels,
                inner,
                samples,
                momentum,
                eps,
                training,
            } => {
                let valid =
                    kernels::valid_rows(batch, samples, self.words(st)[state::BATCH] as usize);
                let [mut m, mut inv, mut rm, mut rv] = [mean, inv_std, running_mean, running_var]
                    .map(|b| std::mem::take(self.floats_mut(b)));
                self.with_out(y, |s, y| {
                    let (x, gamma, beta) = (s.floats(x), s.floats(gamma), s.floats(beta));
                    let sizes = (batch, channels, inner, valid);
                    norm::batch_norm2d(
                        x, y, gamma, beta, &mut m, &mut inv, &mut rm, &mut rv, sizes, momentum,
                        eps, training,
                    )
                });
                for (b, v) in [
                    (mean, m),
                    (inv_std, inv),
                    (running_mean, rm),
                    (running_var, rv),
                ] {
                    *self.floats_mut(b) = v;
                }
            }
            Op::BatchNorm2dBackward {
                x,
                dy,
                dx,
                gamma,
                dgamma,
                dbeta,
                mean,
                inv_std,
                state: st,
                batch,
                channels,
                inner,
                samples,
            } => {
                let valid =
                    kernels::valid_rows(batch, samples, self.words(st)[state::BATCH] as usize);
                let [mut dg, mut db] = [dgamma, dbeta].map(|b| std::mem::take(self.floats_mut(b)));
                self.with_out(dx, |s, dx| {
                    let (x, dy, gamma, mean, inv) = (
                        s.floats(x),
                        s.floats(dy),
                        s.floats(gamma),
                        s.floats(mean),
                        s.floats(inv_std),
                    );
                    norm::batch_norm2d_backward(
                        x,
                        dy,
                        dx,
                        gamma,
                        &mut dg,
                        &mut db,
                        mean,
                        inv,
                        (batch, channels, inner, valid),
                    )
                });
                *self.floats_mut(dgamma) = dg;
                *self.floats_mut(dbeta) = db;
            }
            Op::Corrupt {
                x,
                y,
                mask,
                state: st,
                len,
                image,
                noise,
                seed,
                stream,
            } => {
                let step = self.words(st)[state::GLOBAL_STEP];
                let key = noise::Key {
                    seed,
                    stream,
                    step,
                    image,
                };
                self.with_out(y, |s, y| {
                    noise::corrupt(&s.floats(x)[..len], &mut y[..len], noise, key)
                });
                if let Some(mask) = mask {
                    self.with_out(mask, |_, m| {
                        noise::corruption_mask(&mut m[..len], noise, key)
                    });
                }
            }
            Op::Conv2d { geom, x, w, y } => {
                self.with_out(y, |s, y| {
                    conv::conv2d(&geom, s.floats(x), s.floats(w), y, &s.scratch)
                });
            }
            // The unfused pair, exactly: the CPU is the reference the GPU's fused store is checked against.
            Op::ConvBiasAct {
                geom,
                x,
                w,
                bias,
                y,
                act,
                transposed,
            } => {
                let (channels, inner) = if transposed {
                    self.with_out(y, |s, y| {
                        conv::conv2d_backward_data(
                            &geom,
                            s.floats(x),
                            s.floats(w),
                            y,
                            false,
                            &s.scratch,
                        )
                    });
                    (geom.in_c, geom.in_h * geom.in_w)
                } else {
                    self.with_out(y, |s, y| {
                        conv::conv2d(&geom, s.floats(x), s.floats(w), y, &s.scratch)
                    });
                    (geom.out_c, geom.out_h * geom.out_w)
                };
                // The GPU's two-pass form stores the convolution first: in f16, rounded there too.
                if self.halves[y.0] && geom.bias_act_in_second_pass(transposed) {
                    self.round_to_f16(y);
                }
                self.with_out(y, |s, y| {
                    kernels::bias_act(y, s.floats(bias), geom.batch, channels, inner, act)
                });
            }
            Op::Conv2dBackwardData {
                geom,
                dy,
                w,
                dx,
                accumulate,
            } => {
                self.with_out(dx, |s, dx| {
                    conv::conv2d_backward_data(
                        &geom,
                        s.floats(dy),
                        s.floats(w),
                        dx,
                        accumulate,
                        &s.scratch,
                    )
                });
            }
            Op::Conv2dBackwardWeight {
                geom,
                dy,
                x,
                dw,
                accumulate,
            } => {
                self.with_out(dw, |s, dw| {
                    conv::conv2d_backward_weight(
                        &geom,
                        s.floats(dy),
                        s.floats(x),
                        dw,
                        accumulate,
                        &s.scratch,
                    )
                });
            }
            Op::Term(ref term) => self.execute_term(term),
            Op::Vae(ref op) => self.execute_vae(op),
            Op::Rbm(ref op) => self.execute_rbm(op),
            Op::Classify(ref op) => self.execute_classify(op),
            Op::Optim(ref op) => self.execute_optim(op),
        }
    }

    /// Runs `op`, timed when profiling.
    fn execute_profiled(&mut self, op: &Op) {
        match self.profile.take() {
            Some(mut profile) => {
                profile.time(op, || self.execute(op));
                self.profile = Some(profile);
            }
            None => self.execute(op),
        }
    }

    /// Runs segment `index` of the plan; its ops are borrowed out of the plan meanwhile (no op reads
    /// them).
    fn run_segment(&mut self, index: usize) {
        let ops = std::mem::take(&mut self.plan.segments[index].ops);
        for op in &ops {
            self.execute_profiled(op);
        }
        self.plan.segments[index].ops = ops;
    }
}

impl<T: Real> Drop for CpuExecutor<T> {
    fn drop(&mut self) {
        if let Some(profile) = &self.profile {
            eprint!("{}", profile.report());
        }
    }
}

impl<T: Real> Executor for CpuExecutor<T> {
    fn describe(&self) -> String {
        format!(
            "cpu ({} threads, {})",
            rayon::current_num_threads(),
            std::any::type_name::<T>()
        )
    }
    fn plan(&self) -> &Plan {
        &self.plan
    }
    fn run(&mut self, program: Program, repeats: usize) {
        let segments = self.plan.programs[program.0].segments.clone();
        for _ in 0..repeats {
            for &s in &segments {
                self.run_segment(s);
            }
        }
    }
    fn write_f32(&mut self, buf: BufId, data: &[f32]) {
        let half = self.halves[buf.0];
        let dst = self.floats_mut(buf);
        for (d, &s) in dst.iter_mut().zip(data) {
            *d = match half {
                true => optim::round_to_f16(T::from_f32(s)),
                false => T::from_f32(s),
            };
        }
    }
    fn write_u32(&mut self, buf: BufId, data: &[u32]) {
        let dst = self.words_mut(buf);
        dst[..data.len()].copy_from_slice(data);
    }
    fn read_f32(&mut self, buf: BufId) -> Vec<f32> {
        self.floats(buf).iter().map(|v| v.to_f32()).collect()
    }
    fn read_u32(&mut self, buf: BufId) -> Vec<u32> {
        self.words(buf).to_vec()
    }
    fn finish(&mut self) {}
    fn run_step_op(&mut self, index: usize) {
        let op = crate::backend::step_ops(&self.plan)
            .nth(index)
            .expect("the training step has this op")
            .clone();
        self.execute_profiled(&op);
    }
}
