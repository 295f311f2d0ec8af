//! Recent Responses answers, kept so that a later request can name one in `previous_response_id` (docs/protocol.md,
//! "Chained responses").
//!
//! The backend keeps nothing (every request goes upstream with `store: false` and the whole input), while
//! OpenAI's own API keeps each response by default and lets the next request send only what is new. Clients
//! built on that (agno's and Semantic Kernel's Responses agents chain every turn of a tool loop) get the same
//! here: a response is kept as the conversation it ends, the request's input items followed by the response's
//! output items, and a request that names it gets those items in front of its own input before it goes upstream.
//!
//! Bounded by count and by bytes, least recently used first out: memory, not time, is what a busy gateway runs
//! short of. Each instance keeps its own; with a team store a kept response is also shared through the team's
//! table, and a request that names one this instance does not keep asks there first (`server/chaining.rs`,
//! `store/postgres/responses.rs`).
//! Pure bookkeeping behind one mutex: the HTTP route (`server/chaining.rs`) and the inbound WebSocket
//! (`server/websocket/conversation.rs`) both read and fill it.

use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use serde_json::Value;

/// What an entry costs besides its id and items: the map's node, the `Arc`, the owner (an estimate, so that a
/// flood of tiny responses is bounded by the byte limit as well as by the count).
const ENTRY_OVERHEAD: usize = 160;

/// One kept response: the conversation it ends.
#[derive(Debug)]
pub struct Stored {
    /// The created client key that made it (`None` without one): another caller naming it finds nothing, as
    /// another project does at OpenAI.
    owner: Option<Box<str>>,
    /// The request's input items then the response's output items, as one JSON array (text is several times
    /// smaller than the parsed tree, and is parsed only when a request names it).
    items: Box<str>,
}

impl Stored {
    /// `input` and `output` are JSON arrays as `serde_json` writes them (`[...]`).
    pub fn new(owner: Option<&str>, input: &str, output: &str) -> Stored {
        Stored { owner: owner.map(Box::from), items: join_arrays(input, output).into_boxed_str() }
    }

    /// An entry from a conversation already joined (as another instance of the team shared it).
    pub fn joined(owner: Option<&str>, items: String) -> Stored {
        Stored { owner: owner.map(Box::from), items: items.into_boxed_str() }
    }

    /// Who made it.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// The conversation as one JSON array's text.
    pub fn items_json(&self) -> &str {
        &self.items
    }

    /// The conversation's items, parsed; `None` if they no longer parse (they were written by this process, so
    /// only memory corruption could do that; the request is then refused as if nothing were kept).
    pub fn items(&self) -> Option<Vec<Value>> {
        serde_json::from_str(&self.items).ok()
    }

    /// The bytes this entry holds under `id`, as the bounds count them.
    pub fn size(&self, id: &str) -> usize {
        id.len() + self.items.len() + self.owner.as_deref().map_or(0, str::len) + ENTRY_OVERHEAD
    }
}

/// Two JSON arrays' text joined into one array: `[a,b]` and `[c]` give `[a,b,c]`.
pub fn join_arrays(first: &str, second: &str) -> String {
    fn inner(s: &str) -> &str {
        let s = s.trim();
        s.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or_default().trim()
    }
    let (a, b) = (inner(first), inner(second));
    let comma = if a.is_empty() || b.is_empty() { "" } else { "," };
    format!("[{a}{comma}{b}]")
}

/// How much may be kept: both bounds hold at once; either at 0 keeps nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub responses: usize,
    pub bytes: usize,
}

impl Bounds {
    /// The largest single entry kept: a quarter of the byte bound, so that one long conversation cannot push out
    /// every other one.
    pub fn largest_entry(&self) -> usize {
        self.bytes / 4
    }
}

/// Why a response was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotKept {
    /// Keeping is off (a bound is 0).
    Off,
    /// The entry alone is larger than [`Bounds::largest_entry`].
    TooLarge,
}

/// The kept responses of this instance.
pub struct StoredResponses {
    bounds: Bounds,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Unbounded by count here: [`StoredResponses::put`] evicts by both bounds itself.
    map: LruCache<String, Arc<Stored>>,
    bytes: usize,
}

impl std::fmt::Debug for StoredResponses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (count, bytes) = self.usage();
        f.debug_struct("StoredResponses")
            .field("bounds", &self.bounds)
            .field("count", &count)
            .field("bytes", &bytes)
            .finish()
    }
}

impl StoredResponses {
    pub fn new(bounds: Bounds) -> StoredResponses {
        StoredResponses { bounds, inner: Mutex::new(Inner { map: LruCache::unbounded(), bytes: 0 }) }
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// Whether anything is kept at all.
    pub fn enabled(&self) -> bool {
        self.bounds.responses > 0 && self.bounds.bytes > 0
    }

    /// The response `id` if it is kept and `owner` made it; it becomes the most recently used.
    pub fn get(&self, id: &str, owner: Option<&str>) -> Option<Arc<Stored>> {
        let mut inner = self.inner.lock();
        let stored = inner.map.get(id)?;
        (stored.owner.as_deref() == owner).then(|| stored.clone())
    }

    /// Keep `stored` under `id` (replacing an entry of that id), evicting the least recently used entries until
    /// both bounds hold.
    pub fn put(&self, id: String, stored: Arc<Stored>) -> Result<(), NotKept> {
        if !self.enabled() {
            return Err(NotKept::Off);
        }
        let size = stored.size(&id);
        if size > self.bounds.largest_entry() {
            return Err(NotKept::TooLarge);
        }
        let mut inner = self.inner.lock();
        if let Some(old) = inner.map.pop(&id) {
            inner.bytes -= old.size(&id);
        }
        while (inner.map.len() + 1 > self.bounds.responses || inner.bytes + size > self.bounds.bytes)
            && let Some((old_id, old)) = inner.map.pop_lru()
        {
            inner.bytes -= old.size(&old_id);
        }
        inner.bytes += size;
        inner.map.put(id, stored);
        Ok(())
    }

    /// How many responses are kept, and the bytes they count for.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.map.len(), inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(responses: usize, bytes: usize) -> StoredResponses {
        StoredResponses::new(Bounds { responses, bytes })
    }

    fn entry(text: &str) -> Arc<Stored> {
        Arc::new(Stored::new(None, &format!("[{{\"role\":\"user\",\"content\":\"{text}\"}}]"), "[]"))
    }

    #[test]
    fn arrays_are_joined_whatever_is_empty() {
        assert_eq!(join_arrays("[1,2]", "[3]"), "[1,2,3]");
        assert_eq!(join_arrays("[]", "[3]"), "[3]");
        assert_eq!(join_arrays("[1]", "[]"), "[1]");
        assert_eq!(join_arrays("[]", "[]"), "[]");
        let joined: Value = serde_json::from_str(&join_arrays("[{\"a\":[1]}]", "[{\"b\":2}]")).unwrap_or_default();
        assert_eq!(joined, serde_json::json!([{"a": [1]}, {"b": 2}]));
    }

    #[test]
    fn the_least_recently_used_goes_first_when_the_count_is_reached() {
        let s = store(2, 1 << 20);
        for id in ["a", "b"] {
            assert_eq!(s.put(id.into(), entry(id)), Ok(()));
        }
        // `a` was read, so `b` is the least recently used when `c` comes.
        assert!(s.get("a", None).is_some());
        assert_eq!(s.put("c".into(), entry("c")), Ok(()));
        assert!(s.get("b", None).is_none());
        assert!(s.get("a", None).is_some() && s.get("c", None).is_some());
        assert_eq!(s.usage().0, 2);
    }

    #[test]
    fn the_byte_bound_holds_and_counts_what_was_evicted_or_replaced() {
        let one = entry("x").size("a");
        let s = store(100, one * 4 + one / 2);
        for id in ["a", "b", "c", "d", "e"] {
            assert_eq!(s.put(id.into(), entry("x")), Ok(()));
            assert!(s.usage().1 <= s.bounds().bytes);
        }
        assert_eq!(s.usage(), (4, one * 4));
        assert!(s.get("a", None).is_none(), "the oldest went");
        // Replacing an id does not count it twice.
        assert_eq!(s.put("e".into(), entry("x")), Ok(()));
        assert_eq!(s.usage(), (4, one * 4));
    }

    #[test]
    fn an_entry_too_large_or_a_store_turned_off_keeps_nothing() {
        let s = store(10, 400);
        let big = Arc::new(Stored::new(None, &format!("[\"{}\"]", "y".repeat(200)), "[]"));
        assert_eq!(s.put("big".into(), big), Err(NotKept::TooLarge));
        assert_eq!(store(0, 1 << 20).put("a".into(), entry("a")), Err(NotKept::Off));
        assert_eq!(store(10, 0).put("a".into(), entry("a")), Err(NotKept::Off));
    }

    #[test]
    fn another_owner_finds_nothing() {
        let s = store(10, 1 << 20);
        let mine = Arc::new(Stored::new(Some("key-1"), "[1]", "[2]"));
        assert_eq!(s.put("r".into(), mine), Ok(()));
        assert!(s.get("r", Some("key-2")).is_none());
        assert!(s.get("r", None).is_none());
        let found = s.get("r", Some("key-1")).map(|e| e.items());
        assert_eq!(found, Some(Some(vec![serde_json::json!(1), serde_json::json!(2)])));
    }
}
