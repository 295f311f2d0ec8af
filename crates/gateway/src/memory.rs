//! Giving memory back to the system after a burst, and keeping the binary's own resident pages few at idle.
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

/// Keep the kernel from mapping in the binary's neighbouring pages with each one the gateway touches.
///
/// On a page fault in a file mapping Linux maps cached pages around the one asked for ("fault-around") and reads
/// ahead, so code run once at start costs more resident memory than its own pages: ~14 MB of the 23 MB binary
/// was resident while idle. With `MADV_RANDOM` on the binary's own mappings (the libraries and the heap are left
/// alone) it was ~12.5 MB, and idle RSS fell from 16.0–16.3 to 14.4–14.9 MB (docs/performance.md, "Binary pages on demand").
/// Page-cache hits stay minor faults, so the cost is some more of them at start. Best effort: any failure
/// leaves the default.
#[cfg(target_os = "linux")]
pub fn map_only_the_binary_pages_used() {
    let (Ok(exe), Ok(maps)) = (std::env::current_exe(), std::fs::read_to_string("/proc/self/maps")) else {
        return;
    };
    let Some(exe) = exe.to_str() else { return };
    for line in maps.lines() {
        // `start-end perms offset dev inode path`
        let mut fields = line.split_whitespace();
        let (Some(range), Some(path)) = (fields.next(), fields.nth(4)) else { continue };
        if path != exe {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        // SAFETY: madvise with MADV_RANDOM only changes the kernel's paging policy for a range this process has
        // mapped (read from its own maps); it does not change the memory's contents or its mapping.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end.saturating_sub(start), libc::MADV_RANDOM);
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn map_only_the_binary_pages_used() {}

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
            assert!(retained_bytes().unwrap_or(u64::MAX) < RETAINED_LIMIT);
            drop(keep);
        })
        .join()
        .map_err(|_| "the allocation thread panicked")
        .unwrap_or_else(|e| panic!("{e}"));
    }
}
