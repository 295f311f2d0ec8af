//! Public data types of the fake: configuration, account specs and credentials, recorded
//! requests and token calls, and the scripted [`Scenario`]s a test enqueues. Everything here is
//! plain serde data; the same shapes travel over the `/_fake/*` control API (see `control.rs`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// How the fake behaves. `Default` gives the documented defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FakeConfig {
    /// Lifetime of issued access tokens (the JWT `exp` and the server-side check).
    pub access_token_ttl_secs: u64,
    /// Reject requests that carry no `instructions` at all, as older backends did ("Instructions are required").
    /// Off by default: the official client (0.169) sends none. An explicit `null` is refused either way.
    pub require_instructions: bool,
    /// Number of `response.output_text.delta` events for default (unscripted) answers.
    pub default_deltas: usize,
    /// Pause before each delta of `text` replies that set no `delay_ms` (default answers included).
    pub default_delay_ms: u64,
    /// Keep at most this many recorded requests (the oldest go first); `None` keeps all.
    /// Long benchmark runs set it so the log does not grow without bound.
    pub max_recorded: Option<usize>,
    /// Interleave `keepalive` events in streams, as the real backend sometimes does.
    pub keepalive_events: bool,
    /// Address to bind; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Artificial latency of `POST /oauth/token`, to widen refresh races in tests.
    pub token_delay_ms: u64,
    /// SETTINGS_MAX_CONCURRENT_STREAMS for HTTP/2 clients (h2c, or h2 over TLS): hyper's default of 200, like a typical
    /// front end; the benchmark raises it to hold thousands of streams on one connection.
    pub h2_max_concurrent_streams: u32,
    /// Serve TLS with a fresh self-signed certificate (see `FakeCodex::ca_pem`) and ALPN h2 / http/1.1, as the
    /// real backend is reached; the base URL becomes `https://`.
    pub tls: bool,
    /// In TLS mode, offer only `http/1.1` in ALPN, as some TLS-intercepting proxies and older front ends do.
    pub tls_http1_only: bool,
    /// How stream events are framed on the wire (`sse::Framing`): one event per HTTP/1.1 chunk and HTTP/2 DATA
    /// frame, as the real backend flushes them (the default), or events with no pause between them as one buffer.
    pub framing: crate::sse::Framing,
    /// Extra header fields (`x-extra-0: ...`) on every Responses stream answer, as the CDN in front of the real
    /// backend adds its own: the interop suite's answers of 45 more fields exercise HPACK and CONTINUATION.
    pub extra_response_headers: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 3600,
            require_instructions: false,
            default_deltas: 4,
            default_delay_ms: 0,
            max_recorded: None,
            keepalive_events: false,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_delay_ms: 0,
            h2_max_concurrent_streams: 200,
            tls: false,
            tls_http1_only: false,
            framing: crate::sse::Framing::PerEvent,
            extra_response_headers: 0,
        }
    }
}

/// How a side endpoint (`/oauth/token`, the model catalog) answers; set with `FakeCodex::set_token_endpoint` /
/// `set_catalog_endpoint` or `POST /_fake/token-endpoint`, `/_fake/catalog-endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum EndpointMode {
    /// As the real endpoint does.
    #[default]
    Normal,
    /// An error status with a JSON error body.
    Fail {
        #[serde(default = "default_500")]
        status: u16,
    },
    /// Accept the request and never answer (until the client gives up).
    Hang,
}

/// What account to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountSpec {
    /// ChatGPT plan: free, plus, pro, team, business, enterprise.
    pub plan: String,
    /// Email claim; generated when absent.
    pub email: Option<String>,
    /// Overrides the plan's model catalog (list of slugs from the known catalog, or new slugs).
    pub models: Option<Vec<String>>,
    /// Lifetime of this account's access tokens, the first and every refreshed one (default:
    /// `FakeConfig::access_token_ttl_secs`). 0 issues tokens already expired, as a login left unused for days
    /// holds.
    pub access_token_ttl_secs: Option<u64>,
}

impl Default for AccountSpec {
    fn default() -> Self {
        Self { plan: "plus".to_string(), email: None, models: None, access_token_ttl_secs: None }
    }
}

/// Credentials of a freshly created account, as a Codex login would store them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountCreds {
    pub account_id: String,
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: String,
    pub email: String,
    pub plan: String,
}

/// One request the fake received (control API calls under `/_fake/` are not recorded).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Arrival order, starting at 1.
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (after zstd decoding), or `Null` when it is not JSON.
    pub body: serde_json::Value,
    /// The account the request was authenticated as, when it was.
    pub account_id: Option<String>,
    /// HTTP status the fake answered with.
    pub status: u16,
    /// Arrival time, unix milliseconds.
    pub at_ms: u64,
    /// The protocol spoken, `HTTP/1.1` or `HTTP/2.0` (over TLS, what ALPN negotiated).
    #[serde(default)]
    pub http_version: String,
    /// The connection it came on, numbered from 1 in the order connections were accepted.
    #[serde(default)]
    pub connection: u64,
    /// A WebSocket message chained with `previous_response_id`: the whole input the backend answered, the items
    /// the connection held in front of the message's own (`body` keeps the message as it was sent).
    #[serde(default)]
    pub chained_input: Option<serde_json::Value>,
}

impl RecordedRequest {
    /// The body as the backend answered it: for a chained message, the whole input and no `previous_response_id`.
    pub fn answered_body(&self) -> serde_json::Value {
        let mut body = self.body.clone();
        if let (Some(input), Some(obj)) = (&self.chained_input, body.as_object_mut()) {
            obj.shift_remove("previous_response_id");
            obj.insert("input".into(), input.clone());
        }
        body
    }
}

/// The number of the connection a request came on (a request extension set by the accept loop).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionNumber(pub u64);

/// One call of `POST /oauth/token` and what the fake made of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCall {
    pub grant_type: String,
    pub account_id: Option<String>,
    /// "ok", "refresh_token_reused", "refresh_token_expired", "invalid_client",
    /// "invalid_grant", "unsupported_grant_type", "invalid_request", or "failed_on_purpose" (the endpoint was
    /// set to fail; a hanging call is never recorded).
    pub outcome: String,
    pub at_ms: u64,
}

/// Arguments of a scripted tool call: a JSON value (serialised) or a ready string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolArgs {
    Text(String),
    Json(serde_json::Value),
}

impl Default for ToolArgs {
    fn default() -> Self {
        ToolArgs::Json(serde_json::json!({}))
    }
}

impl ToolArgs {
    /// The `arguments` string as sent on the wire.
    pub fn to_wire(&self) -> String {
        match self {
            ToolArgs::Text(s) => s.clone(),
            ToolArgs::Json(v) => v.to_string(),
        }
    }
}

/// One call of a parallel `tool_calls` scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallSpec {
    pub name: String,
    #[serde(default)]
    pub arguments: ToolArgs,
    #[serde(default)]
    pub call_id: Option<String>,
}

/// One output item of a `custom` scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReplyItem {
    Reasoning {
        summary: String,
    },
    Text {
        text: String,
    },
    FunctionCall {
        name: String,
        #[serde(default)]
        arguments: ToolArgs,
        #[serde(default)]
        call_id: Option<String>,
    },
    WebSearchCall {
        query: String,
    },
    /// A `compaction` item, sealed for the caller (the answer to a `compaction_trigger`, issue 25).
    Compaction,
}

/// How a `custom` scenario ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum End {
    #[default]
    Completed,
    Incomplete {
        #[serde(default = "default_incomplete_reason")]
        reason: String,
    },
    Failed {
        code: String,
        message: String,
    },
    /// The connection is aborted after the items' events; no terminal event.
    Cut,
}

fn default_incomplete_reason() -> String {
    "max_output_tokens".to_string()
}
fn default_text() -> String {
    "Hello from fake-codex.".to_string()
}
fn default_500() -> u16 {
    500
}
fn default_overloaded() -> String {
    "server_is_overloaded".to_string()
}
fn default_failed_message() -> String {
    "An error occurred while processing your request.".to_string()
}
fn default_policy() -> String {
    "cyber_policy".to_string()
}
fn default_slow_deltas() -> usize {
    8
}
fn default_slow_delay() -> u64 {
    100
}

/// A scripted answer to one `/responses` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scenario {
    /// A plain text answer.
    Text {
        #[serde(default = "default_text")]
        text: String,
        #[serde(default)]
        deltas: Option<usize>,
        /// Pause before each delta.
        #[serde(default)]
        delay_ms: Option<u64>,
        /// Fill `response.completed.output` (empty by default, like the real backend).
        #[serde(default)]
        completed_output: bool,
    },
    /// A reasoning item (always emitted) followed by a text answer.
    ReasoningThenText {
        #[serde(default)]
        summary: String,
        #[serde(default = "default_text")]
        text: String,
        /// Fill `response.completed.output` (empty by default, like the real backend).
        #[serde(default)]
        completed_output: bool,
    },
    /// One function call, optionally preceded by a text message.
    ToolCall {
        name: String,
        #[serde(default)]
        arguments: ToolArgs,
        #[serde(default)]
        call_id: Option<String>,
        #[serde(default)]
        text_before: Option<String>,
        /// Fill `response.completed.output` (empty by default, like the real backend).
        #[serde(default)]
        completed_output: bool,
    },
    /// Several function calls in one answer (parallel tool calls).
    ToolCalls {
        calls: Vec<CallSpec>,
        /// Fill `response.completed.output` (empty by default, like the real backend).
        #[serde(default)]
        completed_output: bool,
    },
    /// Free composition of items and an ending.
    Custom {
        items: Vec<ReplyItem>,
        #[serde(default)]
        end: End,
        /// Fill `response.completed.output` (empty by default, like the real backend).
        #[serde(default)]
        completed_output: bool,
    },
    /// Any HTTP error with the given JSON body and headers.
    HttpError {
        status: u16,
        #[serde(default)]
        body: serde_json::Value,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// 429 usage_limit_reached.
    UsageLimit {
        #[serde(default)]
        resets_in_secs: Option<u64>,
    },
    /// 401 as for an expired token.
    Unauthorized,
    /// 5xx with an OpenAI-style error body.
    ServerError {
        #[serde(default = "default_500")]
        status: u16,
    },
    /// 503 server_is_overloaded as an HTTP error.
    Overloaded,
    /// HTTP 200, response.created, then response.failed (server_is_overloaded) before any output.
    OverloadInStream,
    /// HTTP 200, response.created, then response.failed with this error.
    Failed {
        #[serde(default = "default_overloaded")]
        code: String,
        #[serde(default = "default_failed_message")]
        message: String,
    },
    /// response.failed with code context_length_exceeded.
    ContextLengthExceeded,
    /// HTTP 400 refusing the request under the usage policy, with the code the backend gives (`cyber_policy` by
    /// default; `bio_policy`, `invalid_prompt`, `misalignment_policy_violation`) in an OpenAI error object.
    PolicyRefusal {
        #[serde(default = "default_policy")]
        code: String,
    },
    /// HTTP 200, `response.created`, then `response.failed` with a policy code, before any output: the same
    /// refusal inside a stream.
    PolicyRefusalInStream {
        #[serde(default = "default_policy")]
        code: String,
    },
    /// HTTP 200, `response.created`, then `response.incomplete` with `incomplete_details.reason:
    /// "content_filter"` and no output: the content filter stopped the answer before it began.
    ContentFiltered,
    /// HTTP 403: the account was deactivated (`error.code` `account_deactivated`).
    Deactivated,
    /// A text stream that is aborted after `after_deltas` deltas.
    Cut {
        #[serde(default)]
        after_deltas: usize,
    },
    /// Text, then response.incomplete with incomplete_details.reason.
    Incomplete {
        #[serde(default = "default_incomplete_reason")]
        reason: String,
        #[serde(default = "default_text")]
        text: String,
    },
    /// Headers and response.created, then nothing for `ms`, then `then`.
    Silence {
        ms: u64,
        then: Box<Scenario>,
        /// During the silence of a stream, a `keepalive` event every this many ms, as the real backend sends
        /// while a model reasons without output (0: none).
        #[serde(default)]
        keepalive_every_ms: u64,
    },
    /// A text answer dripped slowly.
    Slow {
        #[serde(default = "default_text")]
        text: String,
        #[serde(default = "default_slow_deltas")]
        deltas: usize,
        #[serde(default = "default_slow_delay")]
        delay_ms: u64,
        /// Fill `response.completed.output` (empty by default, like the real backend).
        #[serde(default)]
        completed_output: bool,
    },
    /// 403 Cloudflare challenge page (text/html).
    Cloudflare,
    /// Accept the request and send nothing, not even a status line, for `ms` (forever when absent, until the
    /// client gives up), then answer with `then` (default: the unscripted answer).
    HangBeforeHeaders {
        #[serde(default)]
        ms: Option<u64>,
        #[serde(default)]
        then: Option<Box<Scenario>>,
    },
    /// The status line and headers of a JSON error (with the whole body's `content-length`), the first half of
    /// the body, then nothing, forever.
    HangInErrorBody {
        #[serde(default = "default_500")]
        status: u16,
    },
    /// HTTP 200 (and `response.created` when `after_created`), then only SSE comments (`: ping`) every
    /// `interval_ms`, forever: a stream that looks alive and makes no progress.
    TrickleComments {
        #[serde(default = "default_slow_delay")]
        interval_ms: u64,
        #[serde(default)]
        after_created: bool,
    },
    /// A text answer whose delta number `at` (from 0) is a `data:` line that is not JSON; the others are sent
    /// as usual and the response completes.
    MalformedDelta {
        #[serde(default = "default_text")]
        text: String,
        #[serde(default)]
        at: usize,
    },
    /// A text answer with one event of a type the protocol does not define (`event_type`) after
    /// `response.in_progress`; otherwise as usual. A gateway must neither drop the answer nor the event silently.
    UnknownEvent {
        #[serde(default = "default_text")]
        text: String,
        event_type: String,
    },
    /// A recorded stream played back verbatim: `sse` is raw SSE text (`event:` / `data:` lines, events
    /// separated by a blank line, as the backend sends it), each event written as its own frame (one HTTP chunk,
    /// one WebSocket text frame) with nothing added, changed or reordered. A recording that ends without a
    /// terminal event (`response.completed` / `.incomplete` / `.failed`, `error`) ends as a cut connection, as a
    /// stream that stopped there would. The request is validated as for every scenario.
    Replay { sse: String },
    /// Deltas of the given text regardless of the requested format.
    JsonText {
        text: String,
        /// Fill `response.completed.output` (empty by default, like the real backend).
        #[serde(default)]
        completed_output: bool,
    },
}

impl Scenario {
    /// A text answer with default deltas.
    pub fn text(text: impl Into<String>) -> Self {
        Scenario::Text { text: text.into(), deltas: None, delay_ms: None, completed_output: false }
    }

    /// One function call with JSON arguments.
    pub fn tool_call(name: impl Into<String>, arguments: serde_json::Value) -> Self {
        Scenario::ToolCall {
            name: name.into(),
            arguments: ToolArgs::Json(arguments),
            call_id: None,
            text_before: None,
            completed_output: false,
        }
    }

    /// A reasoning item then a text answer.
    pub fn reasoning_then_text(summary: impl Into<String>, text: impl Into<String>) -> Self {
        Scenario::ReasoningThenText { summary: summary.into(), text: text.into(), completed_output: false }
    }

    /// 429 usage_limit_reached.
    pub fn usage_limit(resets_in_secs: u64) -> Self {
        Scenario::UsageLimit { resets_in_secs: Some(resets_in_secs) }
    }

    /// HTTP 200 stream that fails with `code` after response.created.
    pub fn failed(code: impl Into<String>, message: impl Into<String>) -> Self {
        Scenario::Failed { code: code.into(), message: message.into() }
    }
}
