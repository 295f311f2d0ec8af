//! Refused sign-in attempts in the audit trail as bursts (docs/operations.md, "Audit trail"), not one row per
//! guess: the first few refusals of a key (a surface and a client address) are recorded one by one, as any
//! request; the rest are counted, and one entry says how many there were, from where, for which names and when,
//! once the burst ends: at the key's next success or lockout, after a quiet minute, after ten minutes of a
//! burst that goes on, or when the key is pushed out of the bounded map. users/limits.rs holds the bursts;
//! the surfaces (dashboard/signin.rs, sso.rs, oauth.rs, server/admin/users.rs) report to it and write what it
//! returns.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use lru::LruCache;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::{Actor, Entry, Outcome};

/// Refusals of a burst recorded one by one before the rest are counted.
pub const RECORDED_ONE_BY_ONE: u32 = 3;
/// A burst with no refusal for this long has ended.
pub const QUIET_MS: i64 = 60_000;
/// A burst that goes on is summed up at least this often.
pub const LONGEST_MS: i64 = 10 * 60_000;
/// Names a summary lists (it counts the rest).
const NAMES: usize = 10;
/// Bursts open at once.
const OPEN: usize = 4096;

struct Burst {
    action: String,
    source: Option<String>,
    first_ms: i64,
    last_ms: i64,
    count: u64,
    recorded: u32,
    names: Vec<String>,
    more_names: bool,
    reasons: BTreeMap<String, u64>,
}

impl Burst {
    /// The summary, when the burst counted refusals the trail does not have one by one.
    fn summary(self) -> Option<Entry> {
        if self.count <= u64::from(self.recorded) {
            return None;
        }
        let from = self.source.as_deref().unwrap_or("an unknown address");
        let whom = match self.names.as_slice() {
            [] => String::new(),
            [one] if !self.more_names => format!(" for {one}"),
            _ => format!(
                " for {} names",
                if self.more_names { format!("{}+", NAMES) } else { self.names.len().to_string() }
            ),
        };
        let at = |ms: i64| crate::auth::codex_file::format_rfc3339(ms.div_euclid(1000));
        let message = format!(
            "{} failed attempts from {from}{whom} between {} and {}",
            self.count,
            at(self.first_ms),
            at(self.last_ms)
        );
        let mut e = Entry::new(Actor::Anonymous, format!("{}.failures", self.action));
        e.outcome = Outcome::Refused;
        e.source = self.source;
        e.target = match self.names.as_slice() {
            [one] if !self.more_names => Some(one.clone()),
            _ => None,
        };
        let details = [
            ("count", json!(self.count)),
            ("recorded_one_by_one", json!(self.recorded)),
            ("first_at_ms", json!(self.first_ms)),
            ("last_at_ms", json!(self.last_ms)),
            ("names", json!(self.names)),
            ("more_names", json!(self.more_names)),
            ("reasons", json!(self.reasons)),
            ("message", Value::String(message)),
        ];
        e.details.extend(details.into_iter().map(|(k, v)| (k.to_string(), v)));
        Some(e)
    }
}

/// On an answer: the request's refusal is counted into a burst, so the audit layer leaves it out
/// (users/trail.rs).
#[derive(Debug, Clone, Copy)]
pub struct InBurst;

impl axum::response::IntoResponseParts for InBurst {
    type Error = std::convert::Infallible;

    fn into_response_parts(
        self,
        mut res: axum::response::ResponseParts,
    ) -> Result<axum::response::ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}

/// What to do with a refusal's own entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// One of the first of its burst: record it as any request.
    RecordIt,
    /// Counted into its burst's summary: leave it out.
    Counted,
}

/// The open bursts of one instance.
pub struct Bursts {
    open: Mutex<LruCache<String, Burst>>,
}

impl Default for Bursts {
    fn default() -> Self {
        Bursts::new()
    }
}

impl Bursts {
    pub fn new() -> Bursts {
        Bursts { open: Mutex::new(LruCache::new(NonZeroUsize::new(OPEN).unwrap_or(NonZeroUsize::MIN))) }
    }

    /// A refusal of `key` (`action` as the trail names the surface's sign-in, `name` the name tried): whether to
    /// record it, and the summaries of bursts it ended (its own, over; another, pushed out of the map).
    pub fn refused(
        &self,
        key: &str,
        action: &str,
        source: Option<&str>,
        name: Option<&str>,
        reason: &str,
        now_ms: i64,
    ) -> (Refusal, Vec<Entry>) {
        let mut ended = Vec::new();
        let mut open = self.open.lock();
        if let Some(b) = open.peek(key)
            && (now_ms - b.last_ms >= QUIET_MS || now_ms - b.first_ms >= LONGEST_MS)
        {
            ended.extend(open.pop(key).and_then(Burst::summary));
        }
        if !open.contains(key) {
            let fresh = Burst {
                action: action.to_string(),
                source: source.map(str::to_string),
                first_ms: now_ms,
                last_ms: now_ms,
                count: 0,
                recorded: 0,
                names: Vec::new(),
                more_names: false,
                reasons: BTreeMap::new(),
            };
            if let Some((_, pushed_out)) = open.push(key.to_string(), fresh) {
                ended.extend(pushed_out.summary());
            }
        }
        let Some(b) = open.get_mut(key) else { return (Refusal::RecordIt, ended) };
        b.count += 1;
        b.last_ms = now_ms;
        *b.reasons.entry(reason.to_string()).or_default() += 1;
        if let Some(n) = name.map(|n| n.chars().take(200).collect::<String>())
            && !b.names.contains(&n)
        {
            if b.names.len() < NAMES { b.names.push(n) } else { b.more_names = true }
        }
        let refusal = if b.recorded < RECORDED_ONE_BY_ONE {
            b.recorded += 1;
            Refusal::RecordIt
        } else {
            Refusal::Counted
        };
        (refusal, ended)
    }

    /// The burst of `key` ends (a success, a lockout): its summary, if it counted anything.
    pub fn close(&self, key: &str) -> Option<Entry> {
        self.open.lock().pop(key).and_then(Burst::summary)
    }

    /// Bursts quiet for [`QUIET_MS`] or longer than [`LONGEST_MS`] at `now_ms`: their summaries.
    pub fn sweep(&self, now_ms: i64) -> Vec<Entry> {
        let mut open = self.open.lock();
        let over: Vec<String> = open
            .iter()
            .filter(|(_, b)| now_ms - b.last_ms >= QUIET_MS || now_ms - b.first_ms >= LONGEST_MS)
            .map(|(k, _)| k.clone())
            .collect();
        over.iter().filter_map(|k| open.pop(k)).filter_map(Burst::summary).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_a_few_rows_and_one_summary_with_its_count() {
        let b = Bursts::new();
        let mut recorded = 0;
        for i in 0..100 {
            let (r, ended) = b.refused("sign-in 10.0.0.9", "user.sign_in", Some("10.0.0.9"), Some("ana"), "wrong", i);
            assert!(ended.is_empty());
            recorded += u32::from(r == Refusal::RecordIt);
        }
        assert_eq!(recorded, RECORDED_ONE_BY_ONE);
        let s = b.close("sign-in 10.0.0.9").unwrap_or_else(|| panic!("a summary"));
        assert_eq!((s.action.as_str(), s.target.as_deref()), ("user.sign_in.failures", Some("ana")));
        assert_eq!(s.details["count"], 100);
        let message = s.details["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("100 failed attempts from 10.0.0.9 for ana between "), "{message}");
        assert!(b.close("sign-in 10.0.0.9").is_none(), "closed once");
    }

    #[test]
    fn a_quiet_burst_is_summed_up_by_the_sweep_and_a_short_one_needs_no_summary() {
        let b = Bursts::new();
        for i in 0..5 {
            let _ = b.refused("k", "oauth.device", None, None, "unknown_code", i);
        }
        let _ = b.refused("short", "oauth.device", None, None, "unknown_code", 0);
        assert!(b.sweep(QUIET_MS - 1).is_empty());
        let swept = b.sweep(QUIET_MS + 10);
        assert_eq!(swept.len(), 1, "the short burst is all in the trail already");
        assert_eq!(swept[0].details["count"], 5);
    }
}
