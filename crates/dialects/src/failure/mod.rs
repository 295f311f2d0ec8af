//! Every way an upstream exchange can fail, as one type, and every decision taken on it.
//!
//! [`classify`] turns what the upstream said (an HTTP error answer, or a `response.failed` / `error` event
//! inside a 200 stream) into an [`UpstreamFailure`]; the gateway adds the failures of the connection itself
//! (transport, header timeout, cut stream). What happens next is decided here, each by one exhaustive `match`,
//! so a new variant forces a decision everywhere:
//!
//! - [`UpstreamFailure::failover`]: may another account try (only while nothing reached the client);
//! - [`UpstreamFailure::cooldown`]: is the account (or the model on it) left out for a while, and why;
//! - [`UpstreamFailure::account_status`]: does the account's stored status change;
//! - [`UpstreamFailure::to_error`]: the [`GatewayError`] the client sees (each dialect renders it);
//! - [`UpstreamFailure::risk_signal`]: what the failure says about the account's standing with the upstream (an
//!   overload, a refusal under the usage policy, a deactivation), which the pool acts on (docs/accounts.md,
//!   "Risk signals").
//!
//! Nothing here reads an error's `code` or message after classification: the codes the upstream sent are kept
//! only to be shown to clients.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{ErrorKind, GatewayError};

mod classify;
mod name;
#[cfg(test)]
mod tests;

pub use classify::{HttpAnswer, classify_event, classify_event_refusal, classify_http, retry_after_from_message};

/// What went wrong with one upstream attempt.
#[derive(Debug, Clone)]
pub enum UpstreamFailure {
    /// The upstream answered with an error: an HTTP error status, or a failure event inside a 200 stream.
    Refused(Refusal),
    /// The connection failed while sending the request (`Stage::Request`) or reading the answer (`Stage::Body`).
    Transport { stage: Stage, kind: TransportKind, cause: Arc<dyn std::error::Error + Send + Sync> },
    /// No response headers within `upstream_header_timeout_secs`.
    HeaderTimeout { limit: Duration },
    /// Nothing arrived within `upstream_idle_timeout_secs` in the middle of an answer.
    Idle,
    /// The body ended without `response.completed` / `response.failed`.
    StreamCut,
    /// The SSE framing could not be read (an event over the size limit): what the upstream answered, not a
    /// failure of the account, so no other account is asked (see [`UpstreamFailure::failover`]).
    MalformedStream(crate::sse::FrameTooLarge),
    /// The upstream refused a credential the gateway had just renewed (a second 401 after a refresh).
    LoginRefused { account: String, credential: Credential },
    /// The account's credentials could not be made ready (the token refresh failed or needs a new login): the
    /// pool's own error, shown as it is.
    Credentials(GatewayError),
}

/// Which request phase a transport failure interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before any response headers: the upstream could not be reached.
    Request,
    /// While reading the response body.
    Body,
}

/// What the connection failure was, read from the error's cause chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Connect,
    Timeout,
    Reset,
    Tls,
    /// Anything else (HTTP/2 protocol errors, a bad URL).
    Other,
}

/// The credential the upstream refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    ChatgptLogin,
    ApiKey,
}

/// An error answer from the upstream, classified.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: Reason,
    /// Where it came from; only the wording of the client's message depends on it.
    pub via: Via,
    /// The upstream's own message, shown to the client.
    pub message: String,
    /// The upstream's own error code, passed on to the client as `code` (never read back).
    pub code: Option<String>,
    /// The request field the upstream named, passed on as `param`.
    pub param: Option<String>,
}

/// How an upstream error arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An HTTP error status.
    Http(u16),
    /// A `response.failed` / `error` event inside a 200 stream.
    Event,
}

/// What the upstream said went wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// The plan's usage window is used up (`usage_limit_reached`); `resets_in` seconds from classification.
    QuotaExhausted { resets_in: Option<u64>, plan: Option<String> },
    /// Any other rate limit or quota (`rate_limit_exceeded`, `insufficient_quota`, a bare 429).
    RateLimited { retry_after: Option<u64> },
    /// The account's plan does not include Codex (`usage_not_included`).
    UsageNotIncluded,
    /// 503, `server_is_overloaded`, `slow_down`.
    Overloaded,
    /// The upstream refused the request under its usage policy (`cyber_policy`, `bio_policy`, `invalid_prompt`,
    /// `misalignment_policy_violation`), or its content filter ended the response before any output. The official
    /// client retries none of these: every account would refuse the same conversation, and each refusal counts
    /// against the account that made it.
    PolicyRefused { kind: PolicyKind },
    /// 5xx, or a failure event without a code the gateway knows.
    ServerError,
    /// An event the gateway could not parse: built by the relay's reader ([`Refusal::malformed_event`]), never
    /// read from a code. Not the account's failure: no failover, no cooldown, no status change.
    MalformedEvent,
    /// A 403 Cloudflare challenge page: not an account ban.
    CloudflareChallenge,
    /// 401: the access token was refused (the gateway refreshes once and retries).
    Unauthorized,
    /// 403 for another reason.
    Forbidden,
    /// 403 whose code says the account is deactivated.
    AccountDeactivated,
    /// "not supported when using Codex with a ChatGPT account": this plan lacks the model, another may have it.
    ModelNotSupportedByPlan,
    /// 404 `model_not_found`.
    ModelNotFound,
    /// Another 404.
    NotFound,
    /// The conversation does not fit the model's context window (also 413).
    ContextTooLong,
    /// Encrypted reasoning the upstream cannot verify: produced by another account (Anthropic retries without).
    ForeignReasoning,
    /// The request was larger than the upstream WebSocket connection takes (`websocket_message_too_large`; the
    /// limit is advertised on the handshake as `x-codex-websocket-max-message-bytes`). Neither the account's
    /// failure nor the request's: the same request goes over HTTP, as the official client (0.171) then sends it
    /// ([`UpstreamFailure::transport_fallback`]).
    WebsocketMessageTooLarge,
    /// Any other refusal of the request itself (400, 422, ...).
    InvalidRequest,
}

/// Which usage-policy refusal the upstream gave (its code, typed once by the classifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    /// `cyber_policy`.
    Cyber,
    /// `bio_policy`.
    Bio,
    /// `invalid_prompt`.
    InvalidPrompt,
    /// `misalignment_policy_violation`.
    Misalignment,
    /// `response.incomplete` with `incomplete_details.reason: "content_filter"`.
    ContentFilter,
}

impl PolicyKind {
    /// Every kind, in a fixed order (metrics, counters).
    pub const ALL: [PolicyKind; 5] = [
        PolicyKind::Cyber,
        PolicyKind::Bio,
        PolicyKind::InvalidPrompt,
        PolicyKind::Misalignment,
        PolicyKind::ContentFilter,
    ];

    /// A stable snake_case name (records, the ledger, metrics labels; never read back as a decision).
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Cyber => "cyber",
            PolicyKind::Bio => "bio",
            PolicyKind::InvalidPrompt => "invalid_prompt",
            PolicyKind::Misalignment => "misalignment",
            PolicyKind::ContentFilter => "content_filter",
        }
    }

    /// The kind a stable name stands for (the ledger's column, a team store's row).
    pub fn from_name(name: &str) -> Option<PolicyKind> {
        PolicyKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Its index in [`PolicyKind::ALL`] (a counter per kind).
    pub fn index(self) -> usize {
        match self {
            PolicyKind::Cyber => 0,
            PolicyKind::Bio => 1,
            PolicyKind::InvalidPrompt => 2,
            PolicyKind::Misalignment => 3,
            PolicyKind::ContentFilter => 4,
        }
    }

    /// The code a client sees when the upstream gave none (the content filter's end carries no error object).
    fn code(self) -> &'static str {
        match self {
            PolicyKind::Cyber => "cyber_policy",
            PolicyKind::Bio => "bio_policy",
            PolicyKind::InvalidPrompt => "invalid_prompt",
            PolicyKind::Misalignment => "misalignment_policy_violation",
            PolicyKind::ContentFilter => "content_filter",
        }
    }
}

/// What a failure says about the account's standing with the upstream: signals a careful operator watches, so
/// that one flagged conversation does not flag every account of a pool in turn (the pool acts on them:
/// `accounts/lease.rs`, `Pool::record_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskSignal {
    /// The upstream is overloaded (an HTTP 503 or the same failure inside a stream): pressure worth easing.
    Overload,
    /// The upstream refused the request under its usage policy: the conversation is held on its account.
    PolicyRefusal(PolicyKind),
    /// The upstream deactivated the account: its conversations are held, never moved elsewhere.
    Deactivated,
}

/// Whether another account may take the request (asked only while nothing has reached the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failover {
    /// The account (or the upstream right now) could not serve: try the next account.
    OtherAccount,
    /// The request itself was refused: every account would refuse it.
    Stop,
}

/// Whether a refused request goes again over another transport ([`UpstreamFailure::transport_fallback`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFallback {
    /// The answer stands (failover and the client's error are decided as usual).
    None,
    /// Send the same request over HTTP on the same account.
    Http,
}

/// A period for which an account is left out after a failure.
#[derive(Debug, Clone, PartialEq)]
pub struct CooldownRule {
    pub scope: CooldownScope,
    pub secs: u64,
    pub reason: CooldownReason,
    /// Shown in `accounts list` and in the pool-exhausted error.
    pub note: String,
}

/// What a cooldown covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CooldownScope {
    /// The whole account.
    Account,
    /// The whole account, and its quota reading is marked used up until then.
    AccountQuota,
    /// Only the requested model on this account.
    Model,
}

/// Why an account is cooling down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CooldownReason {
    QuotaExhausted,
    RateLimited,
    /// The quota reading says a window is used up (no failure needed).
    QuotaWindow,
    UsageNotIncluded,
    ModelNotSupportedByPlan,
    CloudflareChallenge,
    Forbidden,
    LoginRefused,
    /// Overload answers in a row: the account rests (the gateway's governor, `planner::governor`).
    Overloaded,
}

/// A change of an account's stored status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// The upstream says the account is deactivated: disabled until an operator enables it again.
    Deactivated,
}

/// How long an account whose login the upstream refused after a refresh is left out: long enough that requests
/// meanwhile fail fast with the reason (503 naming it), short enough that a fresh login (`codex-gateway login`
/// keeps the account's runtime state, cooldowns included) or an upstream hiccup is picked up soon without a
/// restart. A cooldown, not `needs_login`: that state answers later requests 401, which is what must not reach
/// clients for an account problem.
const LOGIN_REFUSED_SECS: u64 = 60;
/// A rate limit that names no reset time.
const DEFAULT_RATE_LIMIT_SECS: u64 = 60;
/// A plan that lacks Codex or a model does not change within a request's lifetime; an hour, then ask again.
const PLAN_SECS: u64 = 3600;
/// A Cloudflare challenge or a plain 403 usually passes; ask again after a minute.
const FORBIDDEN_SECS: u64 = 60;

impl UpstreamFailure {
    /// The classified refusal, if the upstream answered at all.
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            UpstreamFailure::Refused(r) => Some(&r.reason),
            UpstreamFailure::Transport { .. }
            | UpstreamFailure::HeaderTimeout { .. }
            | UpstreamFailure::Idle
            | UpstreamFailure::StreamCut
            | UpstreamFailure::MalformedStream(_)
            | UpstreamFailure::LoginRefused { .. }
            | UpstreamFailure::Credentials(_) => None,
        }
    }

    /// May another account take the request? Failures of the account or of the upstream right now: yes. A
    /// refusal of the request itself: no, every account would refuse it. An answer the gateway cannot read (an
    /// event it cannot parse, a frame over the size limit) is neither: the account served it, and sending the
    /// same request to every account of a pool in turn only generates it again (issue 59), so no.
    pub fn failover(&self) -> Failover {
        let reason = match self {
            UpstreamFailure::Refused(r) => &r.reason,
            UpstreamFailure::Transport { .. }
            | UpstreamFailure::HeaderTimeout { .. }
            | UpstreamFailure::Idle
            | UpstreamFailure::StreamCut
            | UpstreamFailure::LoginRefused { .. }
            | UpstreamFailure::Credentials(_) => return Failover::OtherAccount,
            UpstreamFailure::MalformedStream(_) => return Failover::Stop,
        };
        match reason {
            Reason::QuotaExhausted { .. }
            | Reason::RateLimited { .. }
            | Reason::UsageNotIncluded
            | Reason::Overloaded
            | Reason::ServerError
            | Reason::CloudflareChallenge
            | Reason::Unauthorized
            | Reason::Forbidden
            // Plan routing: this account's plan lacks the model; another account's may have it.
            | Reason::ModelNotSupportedByPlan => Failover::OtherAccount,
            // A deactivated account or a policy refusal is about the conversation as much as the account: sent on
            // to the next account it would flag that one too, so the client gets the refusal instead.
            Reason::AccountDeactivated
            | Reason::PolicyRefused { .. }
            | Reason::MalformedEvent
            | Reason::ModelNotFound
            | Reason::NotFound
            | Reason::ContextTooLong
            | Reason::ForeignReasoning
            // The size is the request's, whichever account sends it: it goes over HTTP instead (see
            // `transport_fallback`), never to the next account's WebSocket.
            | Reason::WebsocketMessageTooLarge
            | Reason::InvalidRequest => Failover::Stop,
        }
    }

    /// Is the same request sent again over HTTP on the same account (asked only while nothing has reached the
    /// client)? Only when the WebSocket itself could not carry it: a message over the connection's advertised
    /// size. The official client (0.171) then says "Falling back from WebSockets to HTTPS transport. websocket
    /// request exceeds the peer's message size limit" and sends the whole request over HTTPS.
    pub fn transport_fallback(&self) -> TransportFallback {
        let reason = match self {
            UpstreamFailure::Refused(r) => &r.reason,
            UpstreamFailure::Transport { .. }
            | UpstreamFailure::HeaderTimeout { .. }
            | UpstreamFailure::Idle
            | UpstreamFailure::StreamCut
            | UpstreamFailure::MalformedStream(_)
            | UpstreamFailure::LoginRefused { .. }
            | UpstreamFailure::Credentials(_) => return TransportFallback::None,
        };
        match reason {
            Reason::WebsocketMessageTooLarge => TransportFallback::Http,
            Reason::QuotaExhausted { .. }
            | Reason::RateLimited { .. }
            | Reason::UsageNotIncluded
            | Reason::Overloaded
            | Reason::PolicyRefused { .. }
            | Reason::ServerError
            | Reason::MalformedEvent
            | Reason::CloudflareChallenge
            | Reason::Unauthorized
            | Reason::Forbidden
            | Reason::AccountDeactivated
            | Reason::ModelNotSupportedByPlan
            | Reason::ModelNotFound
            | Reason::NotFound
            | Reason::ContextTooLong
            | Reason::ForeignReasoning
            | Reason::InvalidRequest => TransportFallback::None,
        }
    }

    /// Is the account left out for a while? Transient upstream trouble is not: the request already moved on to
    /// another account, and later requests may try this one again at once (a cooldown there would turn one 500
    /// into a minute of 429s).
    pub fn cooldown(&self) -> Option<CooldownRule> {
        let rule = |scope, secs, reason, note: String| Some(CooldownRule { scope, secs, reason, note });
        let refusal = match self {
            UpstreamFailure::Refused(r) => r,
            UpstreamFailure::LoginRefused { credential, .. } => {
                let note = format!("the upstream refused the account's {}", credential.what());
                return rule(CooldownScope::Account, LOGIN_REFUSED_SECS, CooldownReason::LoginRefused, note);
            }
            UpstreamFailure::Transport { .. }
            | UpstreamFailure::HeaderTimeout { .. }
            | UpstreamFailure::Idle
            | UpstreamFailure::StreamCut
            | UpstreamFailure::MalformedStream(_)
            | UpstreamFailure::Credentials(_) => return None,
        };
        // The note starts with the upstream's code, as `accounts list` always showed it.
        let limited = |what: &str| {
            let code = refusal.code.as_deref().unwrap_or(what);
            format!("{code}: {}", self.to_error().message)
        };
        match &refusal.reason {
            Reason::QuotaExhausted { resets_in, .. } => rule(
                CooldownScope::AccountQuota,
                resets_in.unwrap_or(DEFAULT_RATE_LIMIT_SECS),
                CooldownReason::QuotaExhausted,
                limited("usage_limit_reached"),
            ),
            Reason::RateLimited { retry_after } => rule(
                CooldownScope::Account,
                retry_after.unwrap_or(DEFAULT_RATE_LIMIT_SECS),
                CooldownReason::RateLimited,
                limited("rate_limited"),
            ),
            Reason::UsageNotIncluded => rule(
                CooldownScope::Account,
                PLAN_SECS,
                CooldownReason::UsageNotIncluded,
                "usage_not_included: the plan does not include Codex".into(),
            ),
            Reason::ModelNotSupportedByPlan => rule(
                CooldownScope::Model,
                PLAN_SECS,
                CooldownReason::ModelNotSupportedByPlan,
                "the account's plan does not serve this model".into(),
            ),
            Reason::CloudflareChallenge => rule(
                CooldownScope::Account,
                FORBIDDEN_SECS,
                CooldownReason::CloudflareChallenge,
                "cloudflare challenge (not a ban)".into(),
            ),
            Reason::Forbidden => rule(
                CooldownScope::Account,
                FORBIDDEN_SECS,
                CooldownReason::Forbidden,
                format!("forbidden: {}", self.to_error().message),
            ),
            // Disabled instead (see `account_status`).
            Reason::AccountDeactivated
            // The request's content, not the account's state: the account serves other conversations as before.
            | Reason::PolicyRefused { .. }
            | Reason::Overloaded
            | Reason::ServerError
            | Reason::MalformedEvent
            | Reason::Unauthorized
            | Reason::ModelNotFound
            | Reason::NotFound
            | Reason::ContextTooLong
            | Reason::ForeignReasoning
            // The request's size on one transport: nothing about the account.
            | Reason::WebsocketMessageTooLarge
            | Reason::InvalidRequest => None,
        }
    }

    /// Does the account's stored status change?
    pub fn account_status(&self) -> Option<StatusChange> {
        let reason = match self {
            UpstreamFailure::Refused(r) => &r.reason,
            // A refused login after a refresh cools down instead (see `LOGIN_REFUSED_SECS`); a refresh token the
            // issuer rejects is marked `needs_login` by the pool's refresh itself.
            UpstreamFailure::LoginRefused { .. }
            | UpstreamFailure::Credentials(_)
            | UpstreamFailure::Transport { .. }
            | UpstreamFailure::HeaderTimeout { .. }
            | UpstreamFailure::Idle
            | UpstreamFailure::StreamCut
            | UpstreamFailure::MalformedStream(_) => return None,
        };
        match reason {
            Reason::AccountDeactivated => Some(StatusChange::Deactivated),
            Reason::QuotaExhausted { .. }
            | Reason::RateLimited { .. }
            | Reason::UsageNotIncluded
            | Reason::Overloaded
            | Reason::PolicyRefused { .. }
            | Reason::ServerError
            | Reason::MalformedEvent
            | Reason::CloudflareChallenge
            | Reason::Unauthorized
            | Reason::Forbidden
            | Reason::ModelNotSupportedByPlan
            | Reason::ModelNotFound
            | Reason::NotFound
            | Reason::ContextTooLong
            | Reason::ForeignReasoning
            | Reason::WebsocketMessageTooLarge
            | Reason::InvalidRequest => None,
        }
    }

    /// What the failure says about the account's standing with the upstream, if anything. Failures of the
    /// connection say nothing: they are the network's, not the account's.
    pub fn risk_signal(&self) -> Option<RiskSignal> {
        let reason = match self {
            UpstreamFailure::Refused(r) => &r.reason,
            UpstreamFailure::Transport { .. }
            | UpstreamFailure::HeaderTimeout { .. }
            | UpstreamFailure::Idle
            | UpstreamFailure::StreamCut
            | UpstreamFailure::MalformedStream(_)
            | UpstreamFailure::LoginRefused { .. }
            | UpstreamFailure::Credentials(_) => return None,
        };
        match reason {
            Reason::Overloaded => Some(RiskSignal::Overload),
            Reason::PolicyRefused { kind } => Some(RiskSignal::PolicyRefusal(*kind)),
            Reason::AccountDeactivated => Some(RiskSignal::Deactivated),
            Reason::QuotaExhausted { .. }
            | Reason::RateLimited { .. }
            | Reason::UsageNotIncluded
            | Reason::ServerError
            | Reason::MalformedEvent
            | Reason::CloudflareChallenge
            | Reason::Unauthorized
            | Reason::Forbidden
            | Reason::ModelNotSupportedByPlan
            | Reason::ModelNotFound
            | Reason::NotFound
            | Reason::ContextTooLong
            | Reason::ForeignReasoning
            | Reason::WebsocketMessageTooLarge
            | Reason::InvalidRequest => None,
        }
    }

    /// The error the client sees.
    pub fn to_error(&self) -> GatewayError {
        match self {
            UpstreamFailure::Refused(r) => r.to_error(),
            UpstreamFailure::Transport { stage: Stage::Request, cause, .. } => {
                GatewayError::new(ErrorKind::UpstreamUnavailable, format!("Cannot reach the upstream: {cause}"))
            }
            UpstreamFailure::Transport { stage: Stage::Body, cause, .. } => GatewayError::new(
                ErrorKind::UpstreamUnavailable,
                format!("The upstream connection failed mid-response: {cause}"),
            ),
            UpstreamFailure::HeaderTimeout { limit } => GatewayError::new(
                ErrorKind::Timeout,
                format!("The upstream did not answer within {} s (upstream_header_timeout_secs).", limit.as_secs_f64()),
            )
            .with_code("upstream_timeout"),
            UpstreamFailure::Idle => GatewayError::new(ErrorKind::Timeout, "The upstream stopped sending data."),
            UpstreamFailure::StreamCut => GatewayError::new(
                ErrorKind::UpstreamUnavailable,
                "The upstream stream ended before the response was complete.",
            )
            .with_code("stream_cut"),
            UpstreamFailure::MalformedStream(e) => GatewayError::new(ErrorKind::UpstreamUnavailable, e.to_string()),
            UpstreamFailure::LoginRefused { account, credential } => {
                let fix = match credential {
                    Credential::ChatgptLogin => {
                        "log in again: `codex-gateway login` (or `codex login`, then `codex-gateway accounts import`)"
                    }
                    Credential::ApiKey => "check the key: `codex-gateway accounts list`",
                };
                GatewayError::new(
                    ErrorKind::UpstreamUnavailable,
                    format!("The upstream refused the {} of account {account}; {fix}.", credential.what()),
                )
                .with_code("account_login_refused")
            }
            UpstreamFailure::Credentials(e) => e.clone(),
        }
    }
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.to_error(), f)
    }
}

/// A transport failure's cause chain stays reachable through `source`.
impl std::error::Error for UpstreamFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamFailure::Transport { cause, .. } => Some(&**cause),
            UpstreamFailure::Refused(_)
            | UpstreamFailure::HeaderTimeout { .. }
            | UpstreamFailure::Idle
            | UpstreamFailure::StreamCut
            | UpstreamFailure::MalformedStream(_)
            | UpstreamFailure::LoginRefused { .. }
            | UpstreamFailure::Credentials(_) => None,
        }
    }
}

impl Credential {
    fn what(self) -> &'static str {
        match self {
            Credential::ChatgptLogin => "login after a token refresh",
            Credential::ApiKey => "API key",
        }
    }
}

impl Refusal {
    /// A response the upstream ended as incomplete before any output was produced, if that is a refusal: the
    /// content filter's end is (a policy refusal the client gets as an error, like the other policy codes); a
    /// token cap or another reason is an empty answer, which the dialect reports as it is.
    pub fn before_output(reason: &crate::responses::event::IncompleteReason) -> Option<Refusal> {
        use crate::responses::event::IncompleteReason;
        match reason {
            IncompleteReason::ContentFilter => Some(Refusal {
                reason: Reason::PolicyRefused { kind: PolicyKind::ContentFilter },
                via: Via::Event,
                message: "The upstream's content filter stopped the response before any output.".into(),
                code: Some(PolicyKind::ContentFilter.code().into()),
                param: None,
            }),
            IncompleteReason::MaxOutputTokens | IncompleteReason::Other(_) => None,
        }
    }

    /// An event inside the stream that the gateway could not parse (`message` says what and why). The client
    /// sees the code `malformed_event`; nothing reads it back.
    pub fn malformed_event(message: String) -> Refusal {
        Refusal { reason: Reason::MalformedEvent, via: Via::Event, message, code: None, param: None }
    }

    /// The client's error. The wording follows how the failure arrived, as each path always worded it: an HTTP
    /// answer's message says what the gateway saw, an event's message is the upstream's own.
    pub fn to_error(&self) -> GatewayError {
        let m = &self.message;
        let http = match self.via {
            Via::Http(status) => Some(status),
            Via::Event => None,
        };
        let said = |prefix: &str| match http {
            Some(_) => format!("{prefix}: {m}"),
            None => m.clone(),
        };
        let rejected = || said("The upstream rejected the request");
        let mut code = self.code.clone();
        let mut retry_after = None;
        let (kind, message) = match &self.reason {
            Reason::QuotaExhausted { resets_in: secs, .. } | Reason::RateLimited { retry_after: secs } => {
                retry_after = *secs;
                (ErrorKind::RateLimited, said("Upstream limit reached"))
            }
            Reason::UsageNotIncluded => {
                (ErrorKind::PermissionDenied, said("This account's plan does not include Codex usage"))
            }
            Reason::Overloaded => (ErrorKind::Overloaded, said("The upstream is overloaded")),
            // The client's own request was refused: an invalid-request error with the upstream's words and code,
            // as the official client shows it (never a retry hint).
            Reason::PolicyRefused { kind } => {
                code = code.or_else(|| Some(kind.code().into()));
                (ErrorKind::InvalidRequest, said("The upstream refused the request under its usage policy"))
            }
            Reason::ServerError => match http {
                Some(status) => (ErrorKind::UpstreamUnavailable, format!("The upstream failed (HTTP {status}): {m}")),
                None => (ErrorKind::UpstreamUnavailable, format!("The upstream response failed: {m}")),
            },
            Reason::MalformedEvent => {
                code = Some("malformed_event".into());
                (ErrorKind::UpstreamUnavailable, format!("The upstream response failed: {m}"))
            }
            Reason::CloudflareChallenge => {
                code = Some("cloudflare_challenge".into());
                (
                    ErrorKind::UpstreamUnavailable,
                    "The upstream answered with a Cloudflare challenge (not an account ban); try again later or use a \
                     different network/proxy."
                        .into(),
                )
            }
            Reason::Unauthorized => (ErrorKind::NotLoggedIn, format!("The upstream refused the account's login: {m}")),
            Reason::Forbidden | Reason::AccountDeactivated => {
                (ErrorKind::PermissionDenied, format!("The upstream refused access: {m}"))
            }
            Reason::ModelNotSupportedByPlan => {
                code = Some("model_not_supported_by_plan".into());
                (ErrorKind::NotFound, format!("The account's plan does not serve this model: {m}"))
            }
            Reason::ModelNotFound | Reason::NotFound => (ErrorKind::NotFound, rejected()),
            Reason::ContextTooLong => match http {
                // A 413 is the upstream's own words about the size.
                Some(413) | None => (ErrorKind::ContextTooLong, m.clone()),
                Some(_) => {
                    code = code.or_else(|| Some("context_length_exceeded".into()));
                    (ErrorKind::ContextTooLong, rejected())
                }
            },
            Reason::ForeignReasoning | Reason::InvalidRequest => (ErrorKind::InvalidRequest, rejected()),
            // Reaches a client only where no HTTP fallback could be made (the request was already answered in part).
            Reason::WebsocketMessageTooLarge => (ErrorKind::InvalidRequest, rejected()),
        };
        GatewayError { kind, message, code, param: self.param.clone(), retry_after }
    }
}

impl CooldownReason {
    /// The pool's answer when every account that serves a model is cooling down, by the soonest one's reason:
    /// a rate limit or a used-up quota is the client's 429 `usage_limit_reached` (clients such as Codex read it
    /// as "usage limited", not "blocked"), anything else a 503.
    pub fn pool_error(self) -> (ErrorKind, &'static str) {
        match self {
            CooldownReason::QuotaExhausted | CooldownReason::RateLimited | CooldownReason::QuotaWindow => {
                (ErrorKind::RateLimited, "usage_limit_reached")
            }
            CooldownReason::UsageNotIncluded
            | CooldownReason::ModelNotSupportedByPlan
            | CooldownReason::CloudflareChallenge
            | CooldownReason::Forbidden
            | CooldownReason::LoginRefused
            | CooldownReason::Overloaded => (ErrorKind::Overloaded, "accounts_cooling_down"),
        }
    }
}
