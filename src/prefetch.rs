//! Cache-line prefetch hints for the loops bound by memory latency (the hot path across many
//! series, and the render across many families): loads known a few steps ahead are issued
//! early so that their misses overlap instead of following one another.

/// Hints that the `len` bytes at `p` will be read soon. A no-op off x86_64.
#[inline(always)]
pub(crate) fn prefetch_bytes<T: ?Sized>(p: *const T, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = p.cast::<i8>();
        let mut off = 0;
        while off < len {
            // SAFETY: a prefetch is a hint that never faults nor reads into the program,
            // whatever the address; `sse` is part of every x86_64 target.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off)) };
            off += 64;
        }
        // The range's last line, when it does not start 64-aligned.
        if len > 0 {
            // SAFETY: as above.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(len - 1)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// Hints that `*r` will be read soon.
#[inline(always)]
pub(crate) fn prefetch<T>(r: &T) {
    prefetch_bytes(std::ptr::from_ref(r), std::mem::size_of::<T>());
}
