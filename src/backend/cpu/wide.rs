//! Element-wise loops compiled for the widest vectors the CPU has.
//!
//! The crate is built for baseline x86-64, where the auto-vectorizer has 4-lane SSE2. [`wide`] runs a loop
//! inside a function compiled for AVX-512 (16 lanes) or AVX2 (8 lanes) when the CPU reports them at run
//! time. AVX-512F implies FMA in LLVM, but Rust never fuses a multiply and an add on its own (only
//! `mul_add` does, and these loops do not call it): every multiply and add stays a separately rounded IEEE
//! operation, so the result is bit for bit the same on every path and every machine.

/// Runs `f` (an element-wise loop) compiled for AVX-512 or AVX2 when available, else as it is.
#[inline(always)]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU reports AVX-512F.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU reports AVX2.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}
