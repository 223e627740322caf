//! Working memory the CPU kernels reuse from call to call (im2col matrices, packed gradients, partial sums),
//! so a training step allocates nothing once the first step has sized the buffers.
//!
//! Scratch never carries values between calls: every user overwrites what it reads, so which buffer a piece
//! of work gets (it depends on the thread that runs it) cannot change a result.

use super::real::Real;
use std::sync::Mutex;

pub struct Scratch<T> {
    /// One buffer per worker thread, picked by rayon's thread index.
    per_thread: Vec<Mutex<Vec<T>>>,
    /// One buffer for work outside parallel regions (e.g. per-piece partial sums).
    shared: Mutex<Vec<T>>,
}

impl<T: Real> Default for Scratch<T> {
    fn default() -> Self {
        Scratch {
            per_thread: (0..rayon::current_num_threads().max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
            shared: Mutex::new(Vec::new()),
        }
    }
}

/// Runs `f` on `buf` grown to at least `len` elements (contents unspecified).
fn with_buffer<T: Real, R>(buf: &mut Vec<T>, len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    f(&mut buf[..len])
}

impl<T: Real> Scratch<T> {
    /// Runs `f` with this thread's buffer of `len` elements. `f` must not start parallel work (a stolen job
    /// could then want the same buffer); if the buffer is busy anyway, `f` gets a fresh one.
    pub fn thread<R>(&self, len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
        let slot = rayon::current_thread_index().unwrap_or(0) % self.per_thread.len();
        match self.per_thread[slot].try_lock() {
            Ok(mut buf) => with_buffer(&mut buf, len, f),
            Err(_) => f(&mut vec![T::zero(); len]),
        }
    }

    /// Runs `f` with the shared buffer of `len` elements; `f` may start parallel work that uses
    /// [`Scratch::thread`].
    pub fn shared<R>(&self, len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
        match self.shared.try_lock() {
            Ok(mut buf) => with_buffer(&mut buf, len, f),
            Err(_) => f(&mut vec![T::zero(); len]),
        }
    }
}
