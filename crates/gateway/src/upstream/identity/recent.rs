//! The turn identity of each worker thread's recent conversations, rendered once: a conversation's turns differ
//! only in their id and start (holes filled per request), so a caller that is not the official client pays the
//! writing of its ~2 KB of identity text once per conversation and thread, not once per request
//! (docs/performance.md, "The turn identity").
//!
//! Per thread, so a look-up takes no lock; direct-mapped by the thread id, so it is bounded (a conversation whose
//! slot another took is rendered again, as every request was before).

use std::cell::RefCell;
use std::sync::Arc;

use super::turn::{Rendered, RequestKind, TurnInputs};

/// Conversations kept per worker thread (a few KB each).
const SLOTS: usize = 32;

/// What a conversation's rendering was made from, and the rendering.
struct Entry {
    thread_id: Box<str>,
    slug: Box<str>,
    service_tier: Option<Box<str>>,
    effort: Option<Box<str>>,
    kind: RequestKind,
    rendered: Arc<Rendered>,
}

impl Entry {
    fn made_from(&self, i: &TurnInputs<'_>) -> bool {
        *self.thread_id == *i.thread_id
            && *self.slug == *i.slug
            && self.service_tier.as_deref() == i.service_tier
            && self.effort.as_deref() == i.effort
            && self.kind == i.kind
    }
}

thread_local! {
    static RECENT: RefCell<[Option<Entry>; SLOTS]> = const { RefCell::new([const { None }; SLOTS]) };
}

/// The rendering of `i`'s conversation: this thread's kept one, else `render`'s (kept for the next turn).
pub(super) fn rendered(i: &TurnInputs<'_>, render: fn(&TurnInputs<'_>) -> Rendered) -> Arc<Rendered> {
    let slot = slot_of(i.thread_id);
    let kept = RECENT.try_with(|recent| {
        let recent = recent.try_borrow().ok()?;
        let entry = recent.get(slot)?.as_ref()?;
        entry.made_from(i).then(|| Arc::clone(&entry.rendered))
    });
    if let Ok(Some(rendered)) = kept {
        return rendered;
    }
    let rendered = Arc::new(render(i));
    let entry = Entry {
        thread_id: i.thread_id.into(),
        slug: i.slug.into(),
        service_tier: i.service_tier.map(Into::into),
        effort: i.effort.map(Into::into),
        kind: i.kind,
        rendered: Arc::clone(&rendered),
    };
    // A thread being torn down keeps nothing; the rendering is used all the same.
    let _ = RECENT.try_with(|recent| {
        if let Ok(mut recent) = recent.try_borrow_mut()
            && let Some(place) = recent.get_mut(slot)
        {
            *place = Some(entry);
        }
    });
    rendered
}

/// The slot of a thread id (FNV-1a: thread ids are UUIDs or a caller's cache keys, short and spread).
fn slot_of(thread_id: &str) -> usize {
    let hash =
        thread_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (hash as usize) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static RENDERS: AtomicUsize = AtomicUsize::new(0);

    fn counted(i: &TurnInputs<'_>) -> Rendered {
        RENDERS.fetch_add(1, Ordering::SeqCst);
        super::super::turn::render(i)
    }

    #[test]
    fn a_conversation_is_rendered_once_per_thread_and_again_when_anything_it_was_made_from_changes() {
        let headers = HeaderMap::new();
        let base = |thread_id| TurnInputs {
            headers: &headers,
            client_metadata: None,
            thread_id,
            slug: "gpt-5.4",
            service_tier: None,
            effort: Some("high"),
            kind: RequestKind::Turn,
            lite: false,
            now_ms: 1,
        };
        let before = RENDERS.load(Ordering::SeqCst);
        let first = rendered(&base("conv-1"), counted);
        let again = rendered(&TurnInputs { now_ms: 2, ..base("conv-1") }, counted);
        assert!(Arc::ptr_eq(&first, &again), "the second turn reuses the rendering");
        assert_eq!(RENDERS.load(Ordering::SeqCst) - before, 1);
        let changes = [
            TurnInputs { slug: "gpt-5.5", ..base("conv-1") },
            TurnInputs { service_tier: Some("priority"), ..base("conv-1") },
            TurnInputs { effort: None, ..base("conv-1") },
            TurnInputs { kind: RequestKind::Compaction, ..base("conv-1") },
            base("conv-2"),
        ];
        for (n, changed) in changes.iter().enumerate() {
            let other = rendered(changed, counted);
            assert!(!Arc::ptr_eq(&first, &other), "change {n} renders anew");
            assert_eq!(RENDERS.load(Ordering::SeqCst) - before, n + 2);
        }
        // Another thread has its own.
        let elsewhere = std::thread::scope(|s| s.spawn(|| rendered(&base("conv-1"), counted)).join().ok());
        assert!(elsewhere.is_some_and(|r| !Arc::ptr_eq(&first, &r)));
    }

    #[test]
    fn slots_are_spread() {
        let used: std::collections::HashSet<usize> = (0..256).map(|n| slot_of(&format!("thread-{n}"))).collect();
        assert!(used.len() > SLOTS * 3 / 4, "{} of {SLOTS}", used.len());
    }
}
