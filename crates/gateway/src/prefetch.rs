//! Asking the CPU to start loading a stream's state before the code that reads it runs, so the loads overlap
//! each other and the system call in between instead of waiting one after another.
//!
//! A performance trick for paced streams at high concurrency (docs/performance.md, "Prefetch hints"): between two
//! events of a stream, hundreds of other streams pass through the core and its caches, so every event begins by
//! fetching the stream's own state from memory, a chain of dependent misses (the pump, the upstream body, the
//! parsed-frame queue, the encoder's head). A prefetch is only a hint: it never faults and never changes what a
//! program computes, whatever the address.

/// The cache line size of x86-64 cores (and of most AArch64 ones; where lines are larger, fewer hints are needed).
const LINE: usize = 64;

/// Ask for the cache lines of `value` (at most `max_lines` of them) to be loaded: a value, or a slice's elements.
#[inline(always)]
pub fn value<T: ?Sized>(value: &T, max_lines: usize) {
    let size = std::mem::size_of_val(value);
    let start = (value as *const T).cast::<u8>();
    let lines = size.div_ceil(LINE).min(max_lines);
    for i in 0..lines {
        line(start.wrapping_add(i * LINE));
    }
}

/// Ask for the cache line at `address` to be loaded (an empty slice's pointer is where its next element goes).
#[inline(always)]
pub fn at<T>(address: *const T) {
    line(address.cast::<u8>());
}

#[inline(always)]
fn line(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is a hint: it reads nothing the program sees and never faults, for any address
    // (Intel SDM, PREFETCHh). SSE is part of the x86-64 baseline, so the instruction exists on every target.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
