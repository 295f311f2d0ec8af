//! The thread's working byte buffers, the one place per-thread buffers of the request path live
//! (docs/performance.md, "Per-thread buffers"): a shelf ([`take`] / [`give_back`]: a chunk being built, a write
//! being framed), each taken within a poll and given back before anything waits, so a stream
//! waiting for its next event holds none of them.

use std::cell::RefCell;

/// A working buffer that grew past this (a burst's chunk) is freed, not shelved, so the thread does not hold a
/// large allocation for small events.
const MAX_KEEP: usize = 64 * 1024;

/// Working buffers kept on a thread's shelf: a poll takes at most two at once (a chunk being built and a write
/// being framed are taken one after the other, so one is the common case).
const SHELF: usize = 2;

thread_local! {
    static WORK: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A working buffer, empty: the one given back last on this thread (its lines likely still in the cache), else a
/// new one with no room.
pub fn take() -> Vec<u8> {
    WORK.try_with(|shelf| shelf.borrow_mut().pop()).ok().flatten().unwrap_or_default()
}

/// Give a working buffer back to the thread's shelf, emptied, unless it has no room or grew past [`MAX_KEEP`] (a
/// burst's buffer is freed, so the thread does not hold a large allocation for small events).
pub fn give_back(mut buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > MAX_KEEP {
        return;
    }
    buffer.clear();
    let _ = WORK.try_with(|shelf| {
        let mut shelf = shelf.borrow_mut();
        if shelf.len() < SHELF {
            shelf.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_buffers_come_back_empty_and_large_ones_are_not_kept() {
        let mut a = take();
        a.extend_from_slice(b"chunk");
        let at = a.as_ptr() as usize;
        give_back(a);
        let again = take();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr() as usize, at, "the buffer given back last is taken first");
        let mut big = Vec::with_capacity(1 << 20);
        big.push(1);
        give_back(big);
        give_back(again);
        assert!(take().capacity() <= MAX_KEEP, "the burst's buffer was freed, not shelved");
    }
}
