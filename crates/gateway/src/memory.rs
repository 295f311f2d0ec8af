//! Giving memory back to the system after a burst.
//!
//! glibc's allocator keeps pages that freed blocks leave behind whenever they are not at the top of a heap, which
//! after a burst of streams is nearly all of them: 5,000 concurrent streams left the gateway at ~240 MB resident
//! while idle. Every [`CHECK_EVERY`], if more than [`RETAINED_LIMIT`] of resident memory is free allocator space,
//! `malloc_trim` returns those pages. Other allocators (musl builds) return memory themselves; there this does
//! nothing.

use std::time::Duration;

/// How often the allocator's retained memory is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Free-but-resident allocator memory tolerated before trimming: a working set for the next requests.
pub const RETAINED_LIMIT: u64 = 32 * 1024 * 1024;

/// Trim whenever more than [`RETAINED_LIMIT`] is held, forever (a task of the server). Under steady load the
/// allocator reuses its free space and the limit is rarely crossed; after a burst it is, once.
pub async fn return_retained_memory() {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Both calls walk the allocator's free lists under its locks (a few milliseconds after a big burst):
        // off the request workers.
        let _ = tokio::task::spawn_blocking(|| {
            if retained_bytes().is_some_and(|r| r > RETAINED_LIMIT) {
                trim();
            }
        })
        .await;
    }
}

/// Free allocator memory that is resident: the allocator's free bytes, capped by what is not in use.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn retained_bytes() -> Option<u64> {
    // SAFETY: mallinfo2 only reads the allocator's statistics; it has no preconditions.
    let info = unsafe { libc::mallinfo2() };
    let rss = resident_bytes()?;
    let in_use = (info.uordblks as u64).saturating_add(info.hblkhd as u64);
    Some((info.fordblks as u64).min(rss.saturating_sub(in_use)))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn retained_bytes() -> Option<u64> {
    None
}

/// Return free pages of every allocator arena to the system. True if any memory was released.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    // SAFETY: malloc_trim is safe to call at any time from any thread; it takes the arena locks itself.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

/// The process's resident memory, from `/proc/self/statm` (in pages).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Many small blocks freed below one that stays alive: glibc cannot shrink its heap past the live block, so
    /// the pages stay resident until trimmed.
    #[test]
    fn freed_memory_below_a_live_block_is_retained_and_then_returned() {
        std::thread::spawn(|| {
            let blocks: Vec<Vec<u8>> = (0..96 * 1024).map(|i| vec![(i % 251) as u8; 1000]).collect();
            let keep = vec![1u8; 1000];
            let before = resident_bytes().unwrap_or(0);
            drop(blocks);
            let retained = retained_bytes().unwrap_or(0);
            assert!(retained > 64 * 1024 * 1024, "retained {retained} bytes");
            assert!(trim());
            let after = resident_bytes().unwrap_or(u64::MAX);
            assert!(after + 48 * 1024 * 1024 < before, "resident {before} -> {after}");
            // Relative, not against `RETAINED_LIMIT`: the other tests of this process allocate and free in their
            // own threads meanwhile, and what they hold free between the trim and this read is theirs.
            let left = retained_bytes().unwrap_or(u64::MAX);
            assert!(left + 48 * 1024 * 1024 < retained, "retained {retained} -> {left} bytes");
            drop(keep);
        })
        .join()
        .map_err(|_| "the allocation thread panicked")
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
