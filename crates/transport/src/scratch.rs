//! The thread's byte buffers, the one place per-thread buffers of the request path live (docs/performance.md,
//! "Per-thread buffers"): short-lived owned pieces (`Bytes`) cut from one reusable allocation ([`cut`]: a paced
//! stream's decoded upstream read and its outgoing chunk, each handed on and dropped within a poll or two), and a
//! shelf of working buffers ([`take`] / [`give_back`]: a chunk being built, a write being framed, a head being
//! read), each taken within a poll and given back before anything waits.
//!
//! A performance trick, measured (docs/performance.md, "Upstream byte scratch"): each of those was an allocation and a
//! free per event (`Bytes::from(Vec)` or `Bytes::copy_from_slice`). Here a piece is split off the thread's
//! buffer (one shared reference count, no allocation); once every piece cut from it has been dropped, the next
//! cut rewinds to its front. A piece that is still held when the buffer runs out only costs what it did before:
//! the buffer moves to a fresh allocation and the held one is freed with its last piece. So nothing depends on
//! when a holder lets go, only the cost does. The gain is small (about 1% at paced 2 ms; a twenty-sixth-session
//! variant that used big buffers front to back and made the reader copy what it kept was 1-2% slower): keep the
//! buffer small and rewound while hot, and keep the reader from copying.

use std::cell::{Cell, RefCell};

use bytes::{Bytes, BytesMut};

/// Room made at least when the buffer has to be reclaimed or replaced: a few paced events' worth, so most cuts
/// only move a pointer, and a replacement is rare.
const MIN_ROOM: usize = 8 * 1024;
/// After a piece larger than this the buffer is not kept for the thread: released with the piece, so the thread
/// does not hold a large allocation for small events.
const MAX_KEEP: usize = 64 * 1024;

/// Working buffers kept on a thread's shelf: a poll takes at most two at once (a chunk being built and a write
/// being framed are taken one after the other, so one is the common case).
const SHELF: usize = 2;

thread_local! {
    static BUFFER: Cell<BytesMut> = Cell::new(BytesMut::new());
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

/// A `Bytes` holding what `fill` appends (given room for `room` bytes at least; it may append more, at the cost of
/// a reallocation), cut from the thread's buffer.
pub fn cut(room: usize, fill: impl FnOnce(&mut BytesMut)) -> Bytes {
    // `try_with`: a body dropped while the thread's locals are torn down still gets its bytes (a buffer of its own).
    let mut buffer = BUFFER.try_with(Cell::take).unwrap_or_default();
    // Back to the front of the allocation when every piece cut before has been let go of (asking for more than
    // the rest holds rewinds without allocating, and does nothing while a piece is held): the next piece then
    // reuses the lines just written, still in the cache, as an allocator hands back the chunk just freed (cut
    // after cut through the whole buffer, each paced event touched lines not used since the buffer's last round).
    let _ = buffer.try_reclaim(buffer.capacity() + 1);
    if buffer.capacity() < room {
        buffer.reserve(room.max(MIN_ROOM));
    }
    fill(&mut buffer);
    let piece = buffer.split().freeze();
    if piece.len() <= MAX_KEEP {
        let _ = BUFFER.try_with(|kept| kept.set(buffer));
    }
    piece
}

/// [`cut`] of a copy of `bytes`.
pub fn copy(bytes: &[u8]) -> Bytes {
    cut(bytes.len(), |buffer| buffer.extend_from_slice(bytes))
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

    /// A piece dropped before the next cut leaves the buffer to be rewound: every cut then starts at the front of
    /// the same allocation. Held pieces keep their bytes (the next cut comes after them, or from a new buffer).
    #[test]
    fn dropped_pieces_are_reclaimed_and_held_ones_stay_intact() {
        let first = copy(b"warm");
        let base = first.as_ptr() as usize;
        drop(first);
        for i in 0..10_000u32 {
            let piece = copy(format!("event {i}").as_bytes());
            assert_eq!(piece, format!("event {i}").as_bytes());
            assert_eq!(piece.as_ptr() as usize, base, "cut {i} did not reuse the front of the buffer");
        }
        // While a piece is held, the next one comes after it, from the same allocation.
        let kept = copy(b"kept");
        let next = copy(b"next");
        assert_eq!((kept.as_ptr() as usize, next.as_ptr() as usize), (base, base + 4));
        drop((kept, next));
        let held: Vec<Bytes> = (0..4000u32).map(|i| copy(&i.to_be_bytes())).collect();
        for (i, piece) in (0..4000u32).zip(&held) {
            assert_eq!(&piece[..], &i.to_be_bytes());
        }
        drop(held);
        let large = cut(200_000, |b| b.resize(200_000, 7));
        assert!(large.len() == 200_000 && large.iter().all(|b| *b == 7));
        let large_at = large.as_ptr() as usize;
        drop(large);
        // Kept, the buffer would be reclaimed in place here (nothing holds it); let go of, the next cut is a new
        // small allocation (the large one was mapped on its own and is unmapped).
        let next = copy(b"x");
        assert_ne!(next.as_ptr() as usize, large_at, "the large buffer was kept");
    }
}
