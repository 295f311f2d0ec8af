//! The classifier against real upstream error bodies (spec/codex-upstream.md, spec/field-notes.md), and every
//! decision for every variant: failover, cooldown, account status, and the client's status in each dialect.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::error::ErrorKind;

const NOW: i64 = 1_000;

fn http(status: u16, body: &str) -> UpstreamFailure {
    classify_http(
        &HttpAnswer { status, body: body.as_bytes(), html: false, cf_mitigated: false, retry_after: None },
        NOW,
    )
}

fn event(code: Option<&str>, message: &str) -> UpstreamFailure {
    classify_event(code, message)
}

/// The client's status in OpenAI, Anthropic, Gemini and Ollama renderings.
fn statuses(e: &GatewayError) -> [u16; 4] {
    [
        e.status(),
        crate::anthropic::error_response(e, "req_1").0,
        crate::gemini::error_body(e).0,
        crate::ollama::error_body(e).0,
    ]
}

struct Row {
    what: &'static str,
    failure: UpstreamFailure,
    reason: Option<Reason>,
    failover: Failover,
    /// OpenAI, Anthropic, Gemini, Ollama.
    status: [u16; 4],
    code: Option<&'static str>,
}

fn row(
    what: &'static str,
    failure: UpstreamFailure,
    reason: Option<Reason>,
    failover: Failover,
    status: [u16; 4],
    code: Option<&'static str>,
) -> Row {
    Row { what, failure, reason, failover, status, code }
}

const RATE: [u16; 4] = [429, 429, 429, 429];
const FORBIDDEN: [u16; 4] = [403, 403, 403, 403];
const BAD: [u16; 4] = [400, 400, 400, 400];
const MISSING: [u16; 4] = [404, 404, 404, 404];
const BAD_GATEWAY: [u16; 4] = [502, 500, 502, 502];
const OVERLOADED: [u16; 4] = [503, 529, 503, 503];
const LOGIN: [u16; 4] = [401, 401, 401, 401];
const TIMEOUT: [u16; 4] = [504, 504, 504, 504];

fn policy(kind: PolicyKind) -> Reason {
    Reason::PolicyRefused { kind }
}

fn table() -> Vec<Row> {
    use Failover::{OtherAccount as Other, Stop};
    let quota = |resets_in, plan: Option<&str>| Reason::QuotaExhausted { resets_in, plan: plan.map(str::to_string) };
    let cloudflare = classify_http(
        &HttpAnswer {
            status: 403,
            body: b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>challenge-platform</body></html>",
            html: true,
            cf_mitigated: true,
            retry_after: None,
        },
        NOW,
    );
    let rate_limited_429 = classify_http(
        &HttpAnswer {
            status: 429,
            body: br#"{"error":{"type":"rate_limit_exceeded","message":"Rate limit reached for requests"}}"#,
            html: false,
            cf_mitigated: false,
            retry_after: Some("7"),
        },
        NOW,
    );
    vec![
        // HTTP answers (spec/codex-upstream.md "HTTP errors").
        row(
            "429 usage_limit_reached with resets_at and plan_type",
            http(
                429,
                r#"{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"plus","resets_at":1100}}"#,
            ),
            Some(quota(Some(100), Some("plus"))),
            Other,
            RATE,
            Some("usage_limit_reached"),
        ),
        row(
            "429 usage_limit_reached, older resets_in_seconds",
            http(429, r#"{"error":{"type":"usage_limit_reached","message":"limit","resets_in_seconds":300}}"#),
            Some(quota(Some(300), None)),
            Other,
            RATE,
            Some("usage_limit_reached"),
        ),
        row(
            "429 usage_not_included",
            http(429, r#"{"error":{"type":"usage_not_included","message":"Your plan does not include Codex."}}"#),
            Some(Reason::UsageNotIncluded),
            Other,
            FORBIDDEN,
            Some("usage_not_included"),
        ),
        row(
            "429 rate limit, Retry-After header",
            rate_limited_429,
            Some(Reason::RateLimited { retry_after: Some(7) }),
            Other,
            RATE,
            Some("rate_limit_exceeded"),
        ),
        row(
            "401 FastAPI detail",
            http(401, r#"{"detail":"Unauthorized"}"#),
            Some(Reason::Unauthorized),
            Other,
            LOGIN,
            None,
        ),
        row("403 empty", http(403, ""), Some(Reason::Forbidden), Other, FORBIDDEN, None),
        row("403 Unknown error", http(403, "Unknown error"), Some(Reason::Forbidden), Other, FORBIDDEN, None),
        row(
            "403 Cloudflare challenge page",
            cloudflare,
            Some(Reason::CloudflareChallenge),
            Other,
            BAD_GATEWAY,
            Some("cloudflare_challenge"),
        ),
        // Sent on, the conversation would flag the next account too (issue 71): the client gets the refusal.
        row(
            "403 account deactivated",
            http(403, r#"{"error":{"code":"account_deactivated","message":"This account has been deactivated."}}"#),
            Some(Reason::AccountDeactivated),
            Stop,
            FORBIDDEN,
            Some("account_deactivated"),
        ),
        row(
            "400 cyber_policy",
            http(
                400,
                r#"{"error":{"message":"This request has been flagged for potentially high-risk cyber activity.","type":"invalid_request_error","param":null,"code":"cyber_policy"}}"#,
            ),
            Some(policy(PolicyKind::Cyber)),
            Stop,
            BAD,
            Some("cyber_policy"),
        ),
        row(
            "400 invalid_prompt",
            http(
                400,
                r#"{"error":{"message":"Invalid prompt: your prompt was flagged as potentially violating our usage policy.","type":"invalid_request_error","param":null,"code":"invalid_prompt"}}"#,
            ),
            Some(policy(PolicyKind::InvalidPrompt)),
            Stop,
            BAD,
            Some("invalid_prompt"),
        ),
        row(
            "403 carrying a policy code (the code decides, not the status)",
            http(403, r#"{"error":{"message":"Flagged.","type":"invalid_request_error","code":"bio_policy"}}"#),
            Some(policy(PolicyKind::Bio)),
            Stop,
            BAD,
            Some("bio_policy"),
        ),
        row(
            "400 FastAPI validation detail",
            http(400, r#"{"detail":"Unsupported parameter: temperature"}"#),
            Some(Reason::InvalidRequest),
            Stop,
            BAD,
            None,
        ),
        row(
            "400 strict schema (field note 15: passed through, never retried)",
            http(
                400,
                r#"{"error":{"message":"Invalid schema for response_format","code":"invalid_json_schema","type":"invalid_request_error","param":"text.format.schema"}}"#,
            ),
            Some(Reason::InvalidRequest),
            Stop,
            BAD,
            Some("invalid_json_schema"),
        ),
        row(
            "400 model not supported with a ChatGPT account (field note 24)",
            http(
                400,
                r#"{"detail":"The 'gpt-5.4-pro' model is not supported when using Codex with a ChatGPT account."}"#,
            ),
            Some(Reason::ModelNotSupportedByPlan),
            Other,
            MISSING,
            Some("model_not_supported_by_plan"),
        ),
        row(
            "400 context_length_exceeded",
            http(
                400,
                r#"{"error":{"code":"context_length_exceeded","message":"Your input exceeds the context window of this model.","param":"input"}}"#,
            ),
            Some(Reason::ContextTooLong),
            Stop,
            BAD,
            Some("context_length_exceeded"),
        ),
        row("413", http(413, "Request Entity Too Large"), Some(Reason::ContextTooLong), Stop, BAD, None),
        row(
            "404 model_not_found",
            http(404, r#"{"error":{"code":"model_not_found","message":"The model `gpt-x` does not exist."}}"#),
            Some(Reason::ModelNotFound),
            Stop,
            MISSING,
            Some("model_not_found"),
        ),
        row("404 other", http(404, r#"{"detail":"Not Found"}"#), Some(Reason::NotFound), Stop, MISSING, None),
        row(
            "400 encrypted reasoning from another account",
            http(
                400,
                r#"{"error":{"message":"The encrypted content for item rs_1 could not be verified.","type":"invalid_request_error"}}"#,
            ),
            Some(Reason::ForeignReasoning),
            Stop,
            BAD,
            Some("invalid_request_error"),
        ),
        row(
            "500",
            http(500, r#"{"error":{"message":"Internal server error"}}"#),
            Some(Reason::ServerError),
            Other,
            BAD_GATEWAY,
            None,
        ),
        row("502 HTML", http(502, "<html>Bad Gateway</html>"), Some(Reason::ServerError), Other, BAD_GATEWAY, None),
        row(
            "503 server_is_overloaded",
            http(503, r#"{"error":{"code":"server_is_overloaded","message":"The server is overloaded."}}"#),
            Some(Reason::Overloaded),
            Other,
            OVERLOADED,
            Some("server_is_overloaded"),
        ),
        row(
            "503 slow_down",
            http(503, r#"{"error":{"code":"slow_down","message":"Slow down."}}"#),
            Some(Reason::Overloaded),
            Other,
            OVERLOADED,
            Some("slow_down"),
        ),
        // In-stream `response.failed` / `error` events (spec/codex-upstream.md, the `response.failed` row).
        row(
            "event context_length_exceeded",
            event(Some("context_length_exceeded"), "Your input exceeds the context window of this model."),
            Some(Reason::ContextTooLong),
            Stop,
            BAD,
            Some("context_length_exceeded"),
        ),
        row(
            "event insufficient_quota",
            event(Some("insufficient_quota"), "You exceeded your current quota."),
            Some(Reason::RateLimited { retry_after: None }),
            Other,
            RATE,
            Some("insufficient_quota"),
        ),
        row(
            "event rate_limit_exceeded with a retry hint",
            event(Some("rate_limit_exceeded"), "Rate limit reached. Please try again in 11.054s."),
            Some(Reason::RateLimited { retry_after: Some(12) }),
            Other,
            RATE,
            Some("rate_limit_exceeded"),
        ),
        row(
            "event usage_limit_reached",
            event(Some("usage_limit_reached"), "The usage limit has been reached. Please try again in 30s."),
            Some(quota(Some(30), None)),
            Other,
            RATE,
            Some("usage_limit_reached"),
        ),
        // The two classifiers disagreed here: the event now fails over and cools down, as the HTTP answer did.
        row(
            "event usage_not_included",
            event(Some("usage_not_included"), "Your plan does not include Codex."),
            Some(Reason::UsageNotIncluded),
            Other,
            FORBIDDEN,
            Some("usage_not_included"),
        ),
        row(
            "event server_is_overloaded",
            event(Some("server_is_overloaded"), "busy"),
            Some(Reason::Overloaded),
            Other,
            OVERLOADED,
            Some("server_is_overloaded"),
        ),
        row(
            "event slow_down",
            event(Some("slow_down"), "slow down"),
            Some(Reason::Overloaded),
            Other,
            OVERLOADED,
            Some("slow_down"),
        ),
        row(
            "event invalid_prompt",
            event(
                Some("invalid_prompt"),
                "Invalid prompt: your prompt was flagged as potentially violating our usage policy.",
            ),
            Some(policy(PolicyKind::InvalidPrompt)),
            Stop,
            BAD,
            Some("invalid_prompt"),
        ),
        row(
            "event cyber_policy (response.failed)",
            event(Some("cyber_policy"), "This request has been flagged for potentially high-risk cyber activity."),
            Some(policy(PolicyKind::Cyber)),
            Stop,
            BAD,
            Some("cyber_policy"),
        ),
        row(
            "event bio_policy",
            event(Some("bio_policy"), "This request has been flagged for potentially high-risk biological content."),
            Some(policy(PolicyKind::Bio)),
            Stop,
            BAD,
            Some("bio_policy"),
        ),
        row(
            "event misalignment_policy_violation",
            event(Some("misalignment_policy_violation"), "This request violates the usage policy."),
            Some(policy(PolicyKind::Misalignment)),
            Stop,
            BAD,
            Some("misalignment_policy_violation"),
        ),
        row(
            "response.incomplete content_filter before any output",
            UpstreamFailure::Refused(
                Refusal::before_output(&crate::responses::event::IncompleteReason::ContentFilter)
                    .unwrap_or_else(|| panic!("a content filter's end is a refusal")),
            ),
            Some(policy(PolicyKind::ContentFilter)),
            Stop,
            BAD,
            Some("content_filter"),
        ),
        row(
            "event model not supported with a ChatGPT account",
            event(
                Some("invalid_request_error"),
                "The 'gpt-5.4-pro' model is not supported when using Codex with a ChatGPT account.",
            ),
            Some(Reason::ModelNotSupportedByPlan),
            Other,
            MISSING,
            Some("model_not_supported_by_plan"),
        ),
        row(
            "event account deactivated",
            event(Some("account_deactivated"), "This account has been deactivated."),
            Some(Reason::AccountDeactivated),
            Stop,
            FORBIDDEN,
            Some("account_deactivated"),
        ),
        row("event without a code", event(None, "boom"), Some(Reason::ServerError), Other, BAD_GATEWAY, None),
        row(
            "event the reader could not parse",
            UpstreamFailure::Refused(Refusal::malformed_event(
                "The upstream sent an event the gateway cannot read (x).".into(),
            )),
            Some(Reason::MalformedEvent),
            // Not the account's failure (issue 59): another account would only be asked the same thing again.
            Stop,
            BAD_GATEWAY,
            Some("malformed_event"),
        ),
        // The connection's own failures (the gateway builds these).
        row(
            "transport, sending",
            UpstreamFailure::Transport {
                stage: Stage::Request,
                kind: TransportKind::Connect,
                cause: Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
            },
            None,
            Other,
            BAD_GATEWAY,
            None,
        ),
        row(
            "transport, reading the body",
            UpstreamFailure::Transport {
                stage: Stage::Body,
                kind: TransportKind::Reset,
                cause: Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            },
            None,
            Other,
            BAD_GATEWAY,
            None,
        ),
        row(
            "header timeout",
            UpstreamFailure::HeaderTimeout { limit: Duration::from_secs(30) },
            None,
            Other,
            TIMEOUT,
            Some("upstream_timeout"),
        ),
        row("idle", UpstreamFailure::Idle, None, Other, TIMEOUT, None),
        row("stream cut", UpstreamFailure::StreamCut, None, Other, BAD_GATEWAY, Some("stream_cut")),
        row(
            "malformed stream",
            UpstreamFailure::MalformedStream(crate::sse::FrameTooLarge { limit: 1024 }),
            None,
            Stop,
            BAD_GATEWAY,
            None,
        ),
        row(
            "login refused after a refresh",
            UpstreamFailure::LoginRefused {
                account: "a@example.com (chatgpt)".into(),
                credential: Credential::ChatgptLogin,
            },
            None,
            Other,
            BAD_GATEWAY,
            Some("account_login_refused"),
        ),
        row(
            "credentials not ready",
            UpstreamFailure::Credentials(GatewayError::new(ErrorKind::NotLoggedIn, "log in").with_code("needs_login")),
            None,
            Other,
            LOGIN,
            Some("needs_login"),
        ),
    ]
}

#[test]
fn classifies_real_bodies_and_decides_failover_and_client_status() {
    for r in table() {
        let e = r.failure.to_error();
        assert_eq!(r.failure.reason(), r.reason.as_ref(), "{}", r.what);
        assert_eq!(r.failure.failover(), r.failover, "{}", r.what);
        assert_eq!(statuses(&e), r.status, "{}: {e:?}", r.what);
        assert_eq!(e.code.as_deref(), r.code, "{}", r.what);
    }
}

#[test]
fn cooldowns_and_status_changes() {
    use CooldownReason as C;
    use CooldownScope::{Account, AccountQuota, Model};
    for r in table() {
        let cooldown = r.failure.cooldown().map(|c| (c.scope, c.secs, c.reason));
        let expected = match (r.failure.reason(), &r.failure) {
            (Some(Reason::QuotaExhausted { resets_in, .. }), _) => {
                Some((AccountQuota, resets_in.unwrap_or(60), C::QuotaExhausted))
            }
            (Some(Reason::RateLimited { retry_after }), _) => {
                Some((Account, retry_after.unwrap_or(60), C::RateLimited))
            }
            (Some(Reason::UsageNotIncluded), _) => Some((Account, 3600, C::UsageNotIncluded)),
            (Some(Reason::ModelNotSupportedByPlan), _) => Some((Model, 3600, C::ModelNotSupportedByPlan)),
            (Some(Reason::CloudflareChallenge), _) => Some((Account, 60, C::CloudflareChallenge)),
            (Some(Reason::Forbidden), _) => Some((Account, 60, C::Forbidden)),
            (None, UpstreamFailure::LoginRefused { .. }) => Some((Account, 60, C::LoginRefused)),
            _ => None,
        };
        assert_eq!(cooldown, expected, "{}", r.what);
        let disabled = r.failure.account_status() == Some(StatusChange::Deactivated);
        assert_eq!(disabled, r.failure.reason() == Some(&Reason::AccountDeactivated), "{}", r.what);
    }
}

/// The notes `accounts list` and the pool's error show, as before the failure type.
#[test]
fn cooldown_notes_keep_their_words() {
    let note = |f: &UpstreamFailure| f.cooldown().map(|c| c.note).unwrap_or_default();
    let limit = http(429, r#"{"error":{"type":"usage_limit_reached","message":"limit","resets_at":1100}}"#);
    assert_eq!(note(&limit), "usage_limit_reached: Upstream limit reached: limit");
    assert_eq!(note(&http(429, "{}")), "rate_limited: Upstream limit reached: {}");
    assert_eq!(note(&http(403, "")), "forbidden: The upstream refused access: HTTP 403");
    let refused = UpstreamFailure::LoginRefused { account: "k (api_key)".into(), credential: Credential::ApiKey };
    assert_eq!(note(&refused), "the upstream refused the account's API key");
}

/// Every account cooling down: a rate limit or a used-up quota is the pooled 429 `usage_limit_reached` (field
/// note 34), anything else a 503.
#[test]
fn pool_error_by_cooldown_reason() {
    use CooldownReason as C;
    for reason in [C::QuotaExhausted, C::RateLimited, C::QuotaWindow] {
        assert_eq!(reason.pool_error(), (ErrorKind::RateLimited, "usage_limit_reached"));
    }
    for reason in
        [C::UsageNotIncluded, C::ModelNotSupportedByPlan, C::CloudflareChallenge, C::Forbidden, C::LoginRefused]
    {
        assert_eq!(reason.pool_error(), (ErrorKind::Overloaded, "accounts_cooling_down"));
    }
}

/// Moved from the Anthropic route, where this was decided on the error's code and message.
#[test]
fn recognises_foreign_reasoning_refusals() {
    let foreign = |f: &UpstreamFailure| f.reason() == Some(&Reason::ForeignReasoning);
    assert!(foreign(&http(
        400,
        r#"{"error":{"message":"The encrypted content for item rs_1 could not be verified."}}"#
    )));
    assert!(foreign(&http(400, r#"{"error":{"code":"invalid_encrypted_content","message":"x"}}"#)));
    assert!(foreign(&event(Some("invalid_request_error"), "encrypted_content could not be decrypted")));
    assert!(!foreign(&http(400, r#"{"error":{"message":"Unsupported parameter: metadata"}}"#)));
    assert!(!foreign(&http(429, r#"{"error":{"message":"encrypted content"}}"#)));
}

/// The client's words, per path, as each classifier always wrote them.
#[test]
fn messages_keep_their_wording() {
    let m = |f: UpstreamFailure| f.to_error().message;
    assert_eq!(m(http(429, r#"{"error":{"message":"limit"}}"#)), "Upstream limit reached: limit");
    assert_eq!(m(event(Some("rate_limit_exceeded"), "limit")), "limit");
    assert_eq!(m(http(500, "")), "The upstream failed (HTTP 500): HTTP 500");
    assert_eq!(m(event(None, "boom")), "The upstream response failed: boom");
    assert_eq!(m(http(413, "too big")), "too big");
    assert_eq!(m(http(400, r#"{"detail":"bad"}"#)), "The upstream rejected the request: bad");
    assert_eq!(m(http(503, r#"{"error":{"message":"busy"}}"#)), "The upstream is overloaded: busy");
    let context = http(400, r#"{"error":{"message":"exceeds the context window"}}"#).to_error();
    assert_eq!(context.code.as_deref(), Some("context_length_exceeded"));
    let param = http(400, r#"{"error":{"message":"bad","param":"tools[0]"}}"#).to_error();
    assert_eq!(param.param.as_deref(), Some("tools[0]"));
    let long = "x".repeat(400);
    assert_eq!(m(http(502, &long)).len(), "The upstream failed (HTTP 502): ".len() + 300);
}

/// The reader's failure for an event it cannot parse used to travel as the code `malformed_event` and be read
/// back by the classifier, so an upstream event carrying that code was taken for the gateway's own failure. Now the
/// reader builds the failure typed, and a failure event is classified once, as it is parsed: the upstream's code
/// is only shown.
#[test]
fn an_upstream_code_never_stands_for_the_readers_own_failure() {
    let parsed = crate::Event::parse(r#"{"type":"error","code":"malformed_event","message":"spoofed"}"#).ok();
    let Some(crate::Event::Failed(refusal)) = parsed else { panic!("not a failure event") };
    assert_eq!(refusal.reason, Reason::ServerError, "an unknown code is the upstream's failure");
    assert_eq!(refusal.code.as_deref(), Some("malformed_event"), "shown as the upstream sent it");
    let own = Refusal::malformed_event("The upstream sent an event the gateway cannot read (x).".into());
    assert_eq!(own.reason, Reason::MalformedEvent);
    let err = own.to_error();
    assert_eq!((err.kind, err.code.as_deref()), (ErrorKind::UpstreamUnavailable, Some("malformed_event")));
}

/// The signal each failure gives the pool (issue 71): overload, a policy refusal of a kind, a deactivation; the
/// connection's own failures and every other refusal give none.
#[test]
fn risk_signals_follow_the_reason() {
    for r in table() {
        let expected = match r.failure.reason() {
            Some(Reason::Overloaded) => Some(RiskSignal::Overload),
            Some(Reason::PolicyRefused { kind }) => Some(RiskSignal::PolicyRefusal(*kind)),
            Some(Reason::AccountDeactivated) => Some(RiskSignal::Deactivated),
            _ => None,
        };
        assert_eq!(r.failure.risk_signal(), expected, "{}", r.what);
    }
    // Each path gives it: a 503 and an overload inside a stream alike.
    assert_eq!(http(503, "").risk_signal(), Some(RiskSignal::Overload));
    assert_eq!(event(Some("slow_down"), "x").risk_signal(), Some(RiskSignal::Overload));
    let cyber = |f: UpstreamFailure| f.risk_signal() == Some(RiskSignal::PolicyRefusal(PolicyKind::Cyber));
    assert!(cyber(http(400, r#"{"error":{"code":"cyber_policy","message":"x"}}"#)));
    assert!(cyber(event(Some("cyber_policy"), "x")));
}

/// A policy refusal is the client's: its words and code as the upstream gave them, no retry hint, and the same
/// 400-class error in every dialect; the content filter's end, which carries no error, gets its own code.
#[test]
fn a_policy_refusal_reaches_the_client_as_an_invalid_request_with_the_upstreams_words() {
    let e = http(400, r#"{"error":{"code":"cyber_policy","message":"Flagged for cyber activity."}}"#).to_error();
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    assert_eq!(e.message, "The upstream refused the request under its usage policy: Flagged for cyber activity.");
    assert_eq!((e.code.as_deref(), e.retry_after), (Some("cyber_policy"), None));
    let e = event(Some("bio_policy"), "Flagged for bio content.").to_error();
    assert_eq!((e.message.as_str(), e.code.as_deref()), ("Flagged for bio content.", Some("bio_policy")));
    use crate::responses::event::IncompleteReason;
    assert!(Refusal::before_output(&IncompleteReason::MaxOutputTokens).is_none(), "an empty answer, not a refusal");
    assert!(Refusal::before_output(&IncompleteReason::Other("x".into())).is_none());
    for kind in PolicyKind::ALL {
        assert_eq!(PolicyKind::from_name(kind.name()), Some(kind));
        assert_eq!(PolicyKind::ALL[kind.index()], kind);
    }
}

/// A response the content filter ended is read as such where the event is parsed: the finish each dialect reports.
#[test]
fn the_content_filters_end_is_typed_where_it_is_parsed() {
    use crate::responses::event::{IncompleteReason, Terminal};
    let parsed = crate::Event::parse(
        r#"{"type":"response.incomplete","response":{"id":"resp_1","incomplete_details":{"reason":"content_filter"},"output":[]}}"#,
    )
    .ok();
    let Some(crate::Event::Finished { terminal, .. }) = parsed else { panic!("not a terminal event") };
    assert_eq!(terminal, Terminal::Incomplete { reason: IncompleteReason::ContentFilter });
    let finish = crate::outcome::Finish::from_terminal(&terminal, false);
    assert_eq!(finish, crate::outcome::Finish::ContentFilter);
}

/// A message over the upstream WebSocket's advertised size (`websocket_message_too_large`, Codex CLI 0.171): the
/// request goes over HTTP on the same account; nothing is said of the account (no failover, cooldown, status or
/// risk signal), whether the refusal came as the wrapped error frame's status or inside a stream.
#[test]
fn a_websocket_message_too_large_falls_back_to_http_and_is_never_the_accounts_failure() {
    let body = r#"{"error":{"type":"invalid_request_error","code":"websocket_message_too_large","message":"The WebSocket message is 90000 bytes, more than the 65536 this connection takes."}}"#;
    for failure in [http(400, body), http(413, body), event(Some("websocket_message_too_large"), "too large")] {
        assert_eq!(failure.reason(), Some(&Reason::WebsocketMessageTooLarge), "{failure:?}");
        assert_eq!(failure.transport_fallback(), TransportFallback::Http);
        assert_eq!(failure.failover(), Failover::Stop);
        assert!(failure.cooldown().is_none());
        assert!(failure.account_status().is_none());
        assert!(failure.risk_signal().is_none());
        assert_eq!(failure.to_error().kind, ErrorKind::InvalidRequest);
    }
    // Every other failure keeps its transport.
    assert_eq!(http(413, r#"{"error":{"message":"too long"}}"#).transport_fallback(), TransportFallback::None);
    assert_eq!(http(503, "").transport_fallback(), TransportFallback::None);
    assert_eq!(UpstreamFailure::StreamCut.transport_fallback(), TransportFallback::None);
}
