//! The record of one request while it runs: the handler creates it, the exchange and the pump fill it in, and
//! it is handed to the sinks exactly once: by `finish`, or when it is dropped (the client went away and the
//! request's future or its response body was dropped with it).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use dialects::failure::{PolicyKind, RiskSignal};
use dialects::{GatewayError, UpstreamFailure, Usage};

use super::{Api, Hold, RecordError, RequestRecord, Sinks};

/// Status recorded when the client left before any status line was sent (nginx's "client closed request").
pub const CLIENT_CLOSED: u16 = 499;

/// A concurrency slot a request takes (its key's, its user's: keys/), given back when the request's record ends.
pub trait Slot: Send + Sync + std::fmt::Debug {
    fn release(&self);
}

/// The concurrency slots of a request, held until the request's record ends.
#[derive(Debug, Default)]
pub struct Permit {
    pub(crate) key: Option<Arc<dyn Slot>>,
    pub(crate) user: Option<Arc<dyn Slot>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        for slot in [&self.key, &self.user].into_iter().flatten() {
            slot.release();
        }
    }
}

pub struct Recorder {
    /// Boxed: the record rides in every request's future and stream body, which should carry a pointer. `None`
    /// once it was handed to the sinks (the last one keeps it; nothing changes it after).
    record: Option<Box<RequestRecord>>,
    started: Instant,
    sinks: Sinks,
    /// The last upstream failure seen, kept until the request's error is known.
    failure: Option<UpstreamFailure>,
    /// The status line was sent (a streaming answer): a later end is no longer a 499.
    status_sent: bool,
    /// The client key's concurrency slot: held as long as the record is open, so it is given back exactly when
    /// the request ends (finished, failed, or the client left), wherever the record is then.
    permit: Option<Permit>,
}

impl Recorder {
    pub fn new(sinks: Sinks, api: Api, route: impl Into<Cow<'static, str>>, request_id: String) -> Recorder {
        let record = RequestRecord {
            request_id,
            started_at: SystemTime::now(),
            api,
            route: route.into(),
            client_key: None,
            user: None,
            model_requested: None,
            model: None,
            effort: None,
            stream: false,
            accounts_tried: Vec::new(),
            account: None,
            moved_from: None,
            refusal: None,
            held: None,
            attempts: 0,
            failovers: 0,
            attempt_failures: Vec::new(),
            status: CLIENT_CLOSED,
            error: None,
            time_to_first_byte: None,
            duration: Default::default(),
            usage: Usage::default(),
            client_disconnected: false,
        };
        Recorder {
            record: Some(Box::new(record)),
            started: Instant::now(),
            sinks,
            failure: None,
            status_sent: false,
            permit: None,
        }
    }

    /// `f` of the record while it is open.
    fn with(&mut self, f: impl FnOnce(&mut RequestRecord)) {
        if let Some(r) = self.record.as_deref_mut() {
            f(r);
        }
    }

    /// When the request began (monotonic): a token refresh that ended since is one it waited through.
    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn request_id(&self) -> &str {
        self.record.as_deref().map_or("", |r| &r.request_id)
    }

    /// Who the request is for: the client key, and the user it is attributed to (`set_caller`, keys/mod.rs, reads
    /// both from the guard's caller in one place, so the ledger, the log and the metrics agree).
    pub fn attribute(&mut self, key: Option<Arc<str>>, user: Option<Arc<str>>) {
        self.with(|r| {
            r.client_key = key;
            r.user = user;
        });
    }

    /// Hold the client key's concurrency slot until the request ends.
    pub fn hold(&mut self, permit: Permit) {
        self.permit = Some(permit);
    }

    /// The decoded request: the model as the client named it, and whether it streams.
    pub fn set_request(&mut self, requested: &str, stream: bool) {
        if let Some(r) = self.record.as_deref_mut() {
            r.model_requested = Some(requested.to_string());
            r.stream = stream;
        }
    }

    pub fn set_effort(&mut self, effort: Option<&str>) {
        self.with(|r| r.effort = effort.map(str::to_string));
    }

    /// An attempt on `account` (a first one, a failover, or a dialect's own retry). Another account than the
    /// previous attempt's is a failover.
    pub fn attempt(&mut self, account: &str) {
        let Some(r) = self.record.as_deref_mut() else { return };
        r.attempts += 1;
        let last = r.accounts_tried.last();
        if last.is_none_or(|last| last != account) {
            r.failovers += u32::from(last.is_some());
            r.accounts_tried.push(account.to_string());
        }
    }

    /// The model passed the catalog check: `slug` is what the request is served as.
    pub fn set_resolved(&mut self, slug: &str) {
        self.with(|r| r.model = Some(slug.to_string()));
    }

    /// The current attempt failed with `failure` (another account may take over).
    pub fn attempt_failed(&mut self, failure: &UpstreamFailure) {
        self.with(|r| r.attempt_failures.push(failure.name()));
        self.upstream_failure(failure);
    }

    /// The upstream failure the request will end with (its error is set by [`Recorder::error`]). A refusal under
    /// the usage policy is noted as such.
    pub fn upstream_failure(&mut self, failure: &UpstreamFailure) {
        if let Some(RiskSignal::PolicyRefusal(kind)) = failure.risk_signal() {
            self.refused(kind);
        }
        self.failure = Some(failure.clone());
    }

    /// The upstream refused the request under its usage policy (or its content filter ended the answer).
    pub fn refused(&mut self, kind: PolicyKind) {
        self.with(|r| r.refusal = Some(kind));
    }

    /// The request was refused because its conversation is held (`hold` says why).
    pub fn held(&mut self, hold: &Hold) {
        self.with(|r| r.held = Some(hold.clone()));
    }

    /// The account whose answer is being relayed.
    pub fn served_by(&mut self, account: &str) {
        self.with(|r| r.account = Some(account.to_string()));
    }

    /// The conversation moved here from `account`, its previous home (`relay::moves`).
    pub fn moved_from(&mut self, account: &str) {
        self.with(|r| r.moved_from = Some(account.to_string()));
    }

    /// A streaming answer's status line went out.
    pub fn status_sent(&mut self, status: u16) {
        self.with(|r| r.status = status);
        self.status_sent = true;
    }

    /// The first byte of the body is ready (the first call counts).
    pub fn first_byte(&mut self) {
        if let Some(r) = self.record.as_deref_mut()
            && r.time_to_first_byte.is_none()
        {
            r.time_to_first_byte = Some(self.started.elapsed());
        }
    }

    pub fn usage(&mut self, usage: Usage) {
        self.with(|r| r.usage = usage);
    }

    /// The error the client sees. The last upstream failure goes with it: for an error the request itself caused
    /// (a bad body, an unknown model) there is none, since nothing was sent.
    pub fn error(&mut self, err: &GatewayError) {
        let failure = self.failure.take();
        self.with(|r| r.error = Some(RecordError::new(err, failure)));
    }

    /// The answer is complete with `status`: hand the record to the sinks.
    pub fn finish(mut self, status: u16) {
        if !self.status_sent
            && let Some(r) = self.record.as_deref_mut()
        {
            r.status = status;
        }
        self.first_byte();
        self.emit(false);
    }

    fn emit(&mut self, disconnected: bool) {
        // Taken: the sinks get it once, and the last of them keeps it.
        let Some(mut record) = self.record.take() else { return };
        record.duration = self.started.elapsed();
        record.client_disconnected = disconnected;
        self.sinks.record(record);
    }
}

impl Drop for Recorder {
    /// Dropped before `finish`: the client closed the connection (the request's future or its body went away).
    fn drop(&mut self) {
        self.emit(true);
    }
}
