//! One record per request: what was asked, what served it and how it ended, completed at one place
//! ([`Recorder`]) and handed to the [`RecordSink`]s (the access log; the usage ledger and metrics build on it).
//!
//! A record is filled from what the request path already knows (the decoded request, the exchange's attempts,
//! the pump's usage and first-byte time), never per event: building it costs one allocation per request.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dialects::failure::PolicyKind;
use dialects::{ErrorKind, GatewayError, UpstreamFailure, Usage};

pub mod access_log;
mod recorder;

pub use recorder::{Permit, Recorder, Slot};

/// Which client API a request spoke: its name in records, the usage ledger and the metrics. A dialect names
/// itself (`Dialect::API`, server/dialect.rs), so a new one needs nothing here; the names below are the gateway's own
/// routes' (`images`, `other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Api(&'static str);

// Named like the variants of a closed set: they are the names the ledger holds, compared as such (`Api::Other`).
#[allow(non_upper_case_globals)]
impl Api {
    /// The OpenAI Images API (`/v1/images/generations`, `/v1/images/edits`): usage in image tokens.
    pub const Images: Api = Api("images");
    /// A route that is not a model call (model lists, token counts, admin, health, refusals before routing).
    pub const Other: Api = Api("other");

    /// A dialect's name: lower case, stable (the ledger stores it).
    pub const fn named(name: &'static str) -> Api {
        Api(name)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// Why a conversation is held on its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// The upstream refused one of its turns under its usage policy.
    Policy(PolicyKind),
    /// The upstream deactivated its account.
    Deactivated,
    /// A hold a newer build wrote to the team's table, kept as it was written: still a hold, since moving a
    /// conversation someone held on a guess is what holds exist to prevent.
    Unrecognized(String),
}

impl Hold {
    /// Its stable name (records, the ledger, the team's table): `policy:cyber`, `deactivated`, ...
    pub fn as_str(&self) -> &str {
        match self {
            Hold::Policy(PolicyKind::Cyber) => "policy:cyber",
            Hold::Policy(PolicyKind::Bio) => "policy:bio",
            Hold::Policy(PolicyKind::InvalidPrompt) => "policy:invalid_prompt",
            Hold::Policy(PolicyKind::Misalignment) => "policy:misalignment",
            Hold::Policy(PolicyKind::ContentFilter) => "policy:content_filter",
            Hold::Deactivated => "deactivated",
            Hold::Unrecognized(text) => text,
        }
    }

    pub fn parse(text: &str) -> Hold {
        match text.strip_prefix("policy:").and_then(PolicyKind::from_name) {
            Some(kind) => Hold::Policy(kind),
            None if text == "deactivated" => Hold::Deactivated,
            None => Hold::Unrecognized(text.to_string()),
        }
    }

    /// Why, in words, for the client and the operator.
    pub(crate) fn why(&self) -> String {
        match self {
            Hold::Policy(kind) => {
                format!("the upstream refused one of its turns under its usage policy ({})", kind.name())
            }
            Hold::Deactivated => "the upstream deactivated that account".into(),
            Hold::Unrecognized(text) => format!("of a hold this version does not know (`{text}`)"),
        }
    }
}

/// Everything known about one request when it ended.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// The `x-request-id` the client sent or the router made.
    pub request_id: String,
    /// When the request reached its handler.
    pub started_at: SystemTime,
    pub api: Api,
    /// The route's path pattern (`/v1/chat/completions`, `/v1beta/models/{model}:{method}`), never the raw path
    /// (which may carry ids or keys); `(none)` for a path no route serves.
    pub route: Cow<'static, str>,
    /// The client key that made the request (`None`: the shared key or no key).
    pub client_key: Option<Arc<str>>,
    /// The user the request was for (`keys::Caller::user`: the owner of its key, or the user of its token).
    pub user: Option<Arc<str>>,
    /// The model as the client named it; `None` when the request was refused before it was read.
    pub model_requested: Option<String>,
    /// The Codex model it was resolved to.
    pub model: Option<String>,
    /// The reasoning effort sent upstream.
    pub effort: Option<String>,
    pub stream: bool,
    /// Every account an attempt went to, in order (the last one served when the request succeeded).
    pub accounts_tried: Vec<String>,
    /// The account whose answer reached the client.
    pub account: Option<String>,
    /// The account the conversation moved from (its previous turn's), when it moved for this request.
    pub moved_from: Option<String>,
    /// The upstream refused the request under its usage policy, or its content filter ended the answer: which
    /// kind (docs/accounts.md, "Risk signals"). The conversation is held on its account from then on.
    pub refusal: Option<PolicyKind>,
    /// The request was refused because its conversation is held on an account that cannot serve it now: why the
    /// conversation is held.
    pub held: Option<Hold>,
    /// Attempts on an account: the first, each failover, a dialect's own retry (a resend after a token refresh
    /// is part of its attempt).
    pub attempts: u32,
    /// Times another account took over after one failed.
    pub failovers: u32,
    /// The name of each failed attempt's failure, in order (empty when none failed).
    pub attempt_failures: Vec<&'static str>,
    /// The HTTP status the client got (a stream that failed after its status line keeps its 200; see
    /// `error`). 499 when the client went away before any status was sent.
    pub status: u16,
    /// The error the client saw, in the stream or as the answer.
    pub error: Option<RecordError>,
    /// From the handler's start to the first byte of the answer's body.
    pub time_to_first_byte: Option<Duration>,
    pub duration: Duration,
    /// What the upstream reported (zero when it reported nothing).
    pub usage: Usage,
    /// The client closed the connection before the answer was complete.
    pub client_disconnected: bool,
}

#[derive(Debug, Clone)]
pub struct RecordError {
    pub kind: ErrorKind,
    /// The code the client saw (`rate_limit_exceeded`, `stream_cut`, ...): shown, never branched on.
    pub code: Option<String>,
    /// The typed upstream failure behind it, when the upstream (or the connection to it) caused it.
    pub failure: Option<UpstreamFailure>,
}

impl RecordError {
    pub fn new(err: &GatewayError, failure: Option<UpstreamFailure>) -> RecordError {
        RecordError { kind: err.kind, code: err.code.clone(), failure }
    }

    /// A stable name for logs and the ledger: the upstream failure's when there is one, else the error kind's.
    pub fn name(&self) -> &'static str {
        self.failure.as_ref().map_or(self.kind.name(), UpstreamFailure::name)
    }
}

/// Where finished records go. Called once per request on the request's own task: implementations must not
/// block (hand the record to a channel, bump counters, write one log line).
pub trait RecordSink: Send + Sync + 'static {
    fn record(&self, record: &RequestRecord);

    /// The record itself, handed to the last sink: one that keeps records (the usage ledger, placed last) takes
    /// it as it is instead of a copy (a copy was seven allocations per request). By default, [`RecordSink::record`].
    fn take(&self, record: Box<RequestRecord>) {
        self.record(&record);
    }
}

#[derive(Clone, Default)]
pub struct Sinks(Arc<Vec<Arc<dyn RecordSink>>>);

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sinks({})", self.0.len())
    }
}

impl Sinks {
    pub fn new(sinks: Vec<Arc<dyn RecordSink>>) -> Sinks {
        Sinks(Arc::new(sinks))
    }

    /// Every sink sees the record, in order; the last one is given it ([`RecordSink::take`]).
    pub fn record(&self, record: Box<RequestRecord>) {
        if let Some((last, rest)) = self.0.split_last() {
            for sink in rest {
                sink.record(&record);
            }
            last.take(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Keeps what it is shown (`record`) and given (`take`).
    #[derive(Default)]
    struct Keeper {
        seen: Mutex<Vec<String>>,
        taken: Mutex<Vec<RequestRecord>>,
    }

    impl RecordSink for Keeper {
        fn record(&self, record: &RequestRecord) {
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).push(record.request_id.clone());
        }
        fn take(&self, record: Box<RequestRecord>) {
            self.taken.lock().unwrap_or_else(|e| e.into_inner()).push(*record);
        }
    }

    #[test]
    fn every_sink_sees_the_record_once_and_the_last_is_given_the_record_itself() {
        let (first, last) = (Arc::new(Keeper::default()), Arc::new(Keeper::default()));
        let sinks = Sinks::new(vec![first.clone(), last.clone()]);
        let mut recorder = Recorder::new(sinks, Api::named("chat"), "/v1/chat/completions", "req-1".into());
        recorder.set_request("gpt-5.4", true);
        recorder.attempt("acc-1");
        recorder.served_by("acc-1");
        recorder.finish(200);
        assert_eq!(*first.seen.lock().unwrap_or_else(|e| e.into_inner()), ["req-1"]);
        assert!(first.taken.lock().unwrap_or_else(|e| e.into_inner()).is_empty());
        assert!(last.seen.lock().unwrap_or_else(|e| e.into_inner()).is_empty(), "the last sink is given it instead");
        let taken = last.taken.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(taken.len(), 1);
        assert_eq!((taken[0].request_id.as_str(), taken[0].status), ("req-1", 200));
        assert_eq!(taken[0].account.as_deref(), Some("acc-1"));
        assert_eq!(taken[0].model_requested.as_deref(), Some("gpt-5.4"));
        assert!(!taken[0].client_disconnected);
    }

    #[test]
    fn a_record_dropped_unfinished_is_handed_over_once_as_a_departure() {
        let last = Arc::new(Keeper::default());
        let mut recorder =
            Recorder::new(Sinks::new(vec![last.clone()]), Api::named("chat"), "/v1/chat/completions", "r".into());
        recorder.status_sent(200);
        drop(recorder);
        let taken = last.taken.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(taken.len(), 1);
        assert!(taken[0].client_disconnected);
        assert_eq!(taken[0].status, 200, "a stream cut after its status line keeps it");
    }
}
