//! One request's turn identity, as the official client sends it to the ChatGPT backend (codex-rs
//! `core/src/client.rs`, `core/src/responses_metadata.rs`; docs/protocol.md "Identity"): the routing hint, the
//! window id, the turn metadata (a header without the tool namespaces, and a `client_metadata` copy with them),
//! and the body's `client_metadata` with the account's installation id.
//!
//! A caller that is itself the official client (a Codex CLI behind the gateway) has sent all of this: its values
//! are passed on, but for the installation id, which is always the serving account's own (one per account, so
//! that the accounts of a pool are never tied together by one machine's id). For every other caller the gateway
//! writes what the official client would write for a turn with that content, from the conversation key.
//!
//! Built once per request in `relay::exchange::prepare` from what is already known, its text rendered then; per
//! send the account's installation id goes in ([`Turn::client_metadata`], [`Turn::metadata_header`]).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use serde_json::{Map, Value};

use super::ordered::Ordered;
use super::template::{Hole, ObjectWriter, Template, Values};

/// What a request is, in the turn metadata's `request_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A model turn.
    Turn,
    /// A compaction (`/responses/compact`, or a turn whose input ends with a compaction trigger).
    Compaction,
    /// A warm-up (`generate: false`): the official client's first message on a new WebSocket.
    Prewarm,
}

impl RequestKind {
    /// What a Responses body is: a warm-up (`generate: false`), a compaction when its input ends with the
    /// compaction trigger (compaction v2), else a turn.
    pub fn of(body: &Map<String, Value>) -> RequestKind {
        if dialects::upstream_request::is_warm_up(body) {
            return RequestKind::Prewarm;
        }
        let last = body.get("input").and_then(Value::as_array).and_then(|items| items.last());
        match last.and_then(|item| item.get("type")).and_then(Value::as_str) {
            Some("compaction_trigger") => RequestKind::Compaction,
            Some(_) | None => RequestKind::Turn,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            RequestKind::Turn => "turn",
            RequestKind::Compaction => "compaction",
            RequestKind::Prewarm => "prewarm",
        }
    }
}

/// The identity headers of an official-client caller, passed on as they came.
#[derive(Debug, Clone, Default)]
pub struct CallerHeaders {
    pub originator: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
    pub beta_features: Option<HeaderValue>,
    pub subagent: Option<HeaderValue>,
    pub parent_thread_id: Option<HeaderValue>,
}

static ORIGINATOR: HeaderName = HeaderName::from_static("originator");
static WINDOW_ID: HeaderName = HeaderName::from_static("x-codex-window-id");
static TURN_METADATA: HeaderName = HeaderName::from_static("x-codex-turn-metadata");
static BETA_FEATURES: HeaderName = HeaderName::from_static("x-codex-beta-features");
static SUBAGENT: HeaderName = HeaderName::from_static("x-openai-subagent");
static PARENT_THREAD: HeaderName = HeaderName::from_static("x-codex-parent-thread-id");

const INSTALLATION: &str = "x-codex-installation-id";
const TURN_METADATA_KEY: &str = "x-codex-turn-metadata";
/// The beta features the official client (0.169) announces by default.
const DEFAULT_BETA_FEATURES: &str = "remote_compaction_v2";

/// One request's turn identity: its texts rendered once per request, per send the account's installation id (and
/// over the WebSocket the members only `response.create` carries) go into their holes.
#[derive(Debug, Clone)]
pub struct Turn {
    /// `x-codex-routing-hint`: `model=<slug>`, and `;tier=<tier>` when the body asks for one.
    pub routing_hint: Option<HeaderValue>,
    /// `x-codex-window-id`: `<thread id>:<window number>`.
    pub window_id: Option<HeaderValue>,
    /// The caller's own identity headers, when it is the official client.
    pub caller: Option<Box<CallerHeaders>>,
    /// A Responses Lite turn (`lite.rs`): a header over HTTP, a `client_metadata` member over the WebSocket.
    pub lite: bool,
    texts: Arc<Texts>,
    /// This turn's id (the written turn metadata's `turn_id` and `root_turn_id`).
    turn_id: uuid::Uuid,
}

/// A turn's identity texts with holes.
#[derive(Debug)]
pub(super) struct Texts {
    /// The `x-codex-turn-metadata` header's value.
    metadata_header: Template,
    /// The body's `client_metadata` object (the turn metadata inside it is the one with the tool namespaces).
    client_metadata: Template,
}

/// What a turn's identity is made from.
pub struct TurnInputs<'a> {
    /// The caller's request headers.
    pub headers: &'a HeaderMap,
    /// The `client_metadata` the caller's body carried (taken out of it).
    pub client_metadata: Option<Map<String, Value>>,
    /// The thread (and session) id: the caller's, or derived from the conversation key.
    pub thread_id: &'a str,
    pub slug: &'a str,
    pub service_tier: Option<&'a str>,
    pub effort: Option<&'a str>,
    pub kind: RequestKind,
    /// The model's catalog entry flags `use_responses_lite` (the body was shaped by `lite::shape`).
    pub lite: bool,
    /// Now, in unix milliseconds.
    pub now_ms: i64,
}

impl Turn {
    pub fn new(mut i: TurnInputs<'_>) -> Turn {
        let turn_id = uuid::Uuid::now_v7();
        let official =
            i.headers.get(&ORIGINATOR).and_then(|v| v.to_str().ok()).is_some_and(|o| o.starts_with("codex_"));
        let mut id = uuid::Uuid::encode_buffer();
        let ids = TurnIds { turn_id: turn_id.hyphenated().encode_lower(&mut id), started_ms: i.now_ms };
        if !official {
            // Everything is written here, in the official client's order, with no map in between.
            let window = default_window(i.thread_id);
            let (metadata_header, escaped) = synthesized_turn_metadata(&i, &window, ids);
            let client_metadata = synthesized_client_metadata(i.thread_id, &window, &escaped, ids.turn_id);
            return Turn {
                routing_hint: routing_hint(&i),
                window_id: HeaderValue::from_maybe_shared(Bytes::from(window)).ok(),
                caller: None,
                lite: i.lite,
                texts: Arc::new(Texts { metadata_header, client_metadata }),
                turn_id,
            };
        }
        let header = |name: &HeaderName| i.headers.get(name).cloned();
        let caller = Box::new(CallerHeaders {
            originator: header(&ORIGINATOR),
            user_agent: header(&axum::http::header::USER_AGENT),
            beta_features: header(&BETA_FEATURES),
            subagent: header(&SUBAGENT),
            parent_thread_id: header(&PARENT_THREAD),
        });
        let mut metadata = i.client_metadata.take().unwrap_or_default();
        // The turn metadata: the body's copy (it has the tool namespaces; over the WebSocket it is the turn's own,
        // while the handshake's header is the warm-up's), else the header.
        let carried = match metadata.remove(TURN_METADATA_KEY) {
            Some(Value::String(text)) => Some(text),
            _ => header(&TURN_METADATA).and_then(|v| v.to_str().ok().map(str::to_string)),
        };
        let window = match header(&WINDOW_ID) {
            Some(w) => w.to_str().unwrap_or_default().to_string(),
            None => default_window(i.thread_id),
        };
        // The turn metadata as the header's text and as the body's `client_metadata`.
        let (metadata_header, client_metadata) = match carried.and_then(|t| serde_json::from_str::<Ordered>(&t).ok()) {
            Some(mut m) => {
                m.remove("installation_id");
                let body = m.with_first_installation();
                m.remove("tool_namespaces_info");
                (m.with_first_installation(), carried_client_metadata(metadata, Embed::Escape(&body)))
            }
            None => {
                let (text, escaped) = synthesized_turn_metadata(&i, &window, ids);
                (text, carried_client_metadata(metadata, Embed::Twin(&escaped)))
            }
        };
        Turn {
            routing_hint: routing_hint(&i),
            window_id: HeaderValue::from_maybe_shared(Bytes::from(window)).ok(),
            caller: Some(caller),
            lite: i.lite,
            texts: Arc::new(Texts { metadata_header, client_metadata }),
            turn_id,
        }
    }

    /// The same turn as another account gets it when the conversation's own identifiers went to a different one
    /// (issue 71: identifiers are never carried from one account to another). `thread` is the conversation's
    /// thread id and `own` gives each identifier its value for the account: the thread id, the window and context
    /// window ids derived from it, and a sub-agent caller's parent thread id are replaced in every text and header;
    /// the turn gets an id of its own, since the other account may have seen this one in a failed attempt.
    pub fn for_account(&self, thread: &str, own: impl Fn(&str) -> String) -> Turn {
        let to = own(thread);
        let mut from_window = uuid::Uuid::encode_buffer();
        let mut to_window = uuid::Uuid::encode_buffer();
        let from_window = context_window_id(thread, &mut from_window);
        let to_window = context_window_id(&to, &mut to_window);
        let turn_id = uuid::Uuid::now_v7();
        let (mut from_turn, mut to_turn) = (uuid::Uuid::encode_buffer(), uuid::Uuid::encode_buffer());
        let from_turn = self.turn_id.hyphenated().encode_lower(&mut from_turn);
        let to_turn = turn_id.hyphenated().encode_lower(&mut to_turn);
        let pairs = [(thread, to.as_str()), (from_window, to_window), (from_turn, to_turn)];
        let texts = Texts {
            metadata_header: self.texts.metadata_header.replaced(&pairs),
            client_metadata: self.texts.client_metadata.replaced(&pairs),
        };
        let header = |v: &HeaderValue| {
            let text = v.to_str().unwrap_or_default().replace(thread, &to);
            HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
        };
        let caller = self.caller.as_deref().map(|c| {
            let parent = c.parent_thread_id.as_ref().and_then(|p| p.to_str().ok()).map(&own);
            Box::new(CallerHeaders {
                parent_thread_id: parent.and_then(|p| HeaderValue::from_str(&p).ok()),
                ..c.clone()
            })
        });
        Turn {
            routing_hint: self.routing_hint.clone(),
            window_id: self.window_id.as_ref().and_then(header),
            caller,
            lite: self.lite,
            texts: Arc::new(texts),
            turn_id,
        }
    }

    /// The official client's beta features: the caller's, else the default set.
    pub fn beta_features(&self) -> HeaderValue {
        self.caller
            .as_ref()
            .and_then(|c| c.beta_features.clone())
            .unwrap_or(HeaderValue::from_static(DEFAULT_BETA_FEATURES))
    }

    /// `x-codex-turn-metadata` for an account: the turn metadata with its installation id, without the tool
    /// namespaces (which only the body's copy carries).
    pub fn metadata_header(&self, installation_id: &str) -> Option<HeaderValue> {
        self.with_values(installation_id, |t, v| {
            let mut out = Vec::with_capacity(t.metadata_header.filled_len(v));
            t.metadata_header.fill(&mut out, v, None);
            HeaderValue::from_maybe_shared(Bytes::from(out)).ok()
        })
    }

    /// About how long [`Turn::write_client_metadata`]'s text is, for sizing the body it goes into.
    pub fn client_metadata_len(&self, installation_id: &str) -> usize {
        self.with_values(installation_id, |t, v| t.client_metadata.filled_len(v))
    }

    /// `f` of the texts and what fills their holes for an account.
    fn with_values<R>(&self, installation: &str, f: impl FnOnce(&Texts, &Values<'_>) -> R) -> R {
        f(&self.texts, &Values { installation })
    }

    /// The body's `client_metadata` for an account, as JSON appended to `out`; over the WebSocket with the members
    /// only it carries, in key order among the others.
    pub fn write_client_metadata(
        &self,
        out: &mut Vec<u8>,
        installation_id: &str,
        websocket: Option<WebsocketTurn<'_>>,
    ) {
        self.with_values(installation_id, |t, v| t.client_metadata.fill(out, v, websocket));
    }

    /// [`Turn::write_client_metadata`] as a string.
    pub fn client_metadata(&self, installation_id: &str, websocket: Option<WebsocketTurn<'_>>) -> String {
        let mut out = Vec::with_capacity(self.client_metadata_len(installation_id));
        self.write_client_metadata(&mut out, installation_id, websocket);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The turn's own identifiers, written into its texts.
#[derive(Clone, Copy)]
struct TurnIds<'a> {
    turn_id: &'a str,
    /// When the turn started, unix milliseconds.
    started_ms: i64,
}

/// `x-codex-routing-hint`: `model=<slug>[;tier=<tier>]`.
fn routing_hint(i: &TurnInputs<'_>) -> Option<HeaderValue> {
    let mut hint = String::with_capacity(6 + i.slug.len() + i.service_tier.map_or(0, |t| t.len() + 6));
    hint.push_str("model=");
    hint.push_str(i.slug);
    if let Some(tier) = i.service_tier {
        hint.push_str(";tier=");
        hint.push_str(tier);
    }
    HeaderValue::from_maybe_shared(Bytes::from(hint)).ok()
}

/// The window id of a conversation the gateway numbers no windows of: its thread's window 0.
fn default_window(thread_id: &str) -> String {
    format!("{thread_id}:0")
}

/// The members only a WebSocket turn's `client_metadata` carries, in key order (the official client puts there
/// what HTTP sends as headers): kept out of an HTTP body, written fresh for a WebSocket one.
const WEBSOCKET_MEMBERS: &[(&str, Hole)] = &[
    (super::lite::WEBSOCKET_MEMBER, Hole::Lite),
    ("x-codex-turn-state", Hole::TurnState),
    ("x-codex-ws-stream-request-start-ms", Hole::StreamStart),
];

/// `client_metadata` as it is written: members in key order, a hole for each WebSocket-only member where its key
/// falls.
struct ClientMetadata {
    w: ObjectWriter,
    pending: &'static [(&'static str, Hole)],
}

impl ClientMetadata {
    fn with_capacity(n: usize) -> ClientMetadata {
        ClientMetadata { w: ObjectWriter::with_capacity(n), pending: WEBSOCKET_MEMBERS }
    }

    /// The writer, for a member named `key` (the holes of WebSocket members that sort before it first).
    fn at(&mut self, key: &str) -> &mut ObjectWriter {
        while let Some(((name, hole), rest)) = self.pending.split_first()
            && *name < key
        {
            self.w.t.hole(*hole);
            self.pending = rest;
        }
        &mut self.w
    }

    fn close(mut self) -> Template {
        for (_, hole) in self.pending {
            self.w.t.hole(*hole);
        }
        self.w.close()
    }
}

/// An official caller's `client_metadata` members, its own but for the installation id and the members only a
/// WebSocket turn carries, and the turn metadata (`turn_metadata`), in key order.
fn carried_client_metadata(mut metadata: Map<String, Value>, turn_metadata: Embed<'_>) -> Template {
    metadata.remove(INSTALLATION);
    for (key, _) in WEBSOCKET_MEMBERS {
        metadata.remove(*key);
    }
    // What the official client adds on every ChatGPT-login turn, whatever provider setup the caller had.
    let text = |s: &str| Value::String(s.to_string());
    metadata.entry("guardian_credits_requested").or_insert_with(|| text("true"));
    metadata.entry("mcp_attribution").or_insert_with(|| text(r#"{"status":"none"}"#));
    // Places in the order: written from the turn, not from these values.
    metadata.insert(INSTALLATION.into(), Value::Null);
    metadata.insert(TURN_METADATA_KEY.into(), Value::Null);
    let mut out = ClientMetadata::with_capacity(turn_metadata.len() + 512);
    // `serde_json`'s map is sorted: the members come out in the order the official client writes them.
    for (key, value) in &metadata {
        let w = out.at(key);
        match (key.as_str(), value) {
            (INSTALLATION, _) => w.hole_string(key, Hole::Installation),
            (TURN_METADATA_KEY, _) => match turn_metadata {
                Embed::Escape(json) => w.embedded(key, json),
                Embed::Twin(escaped) => w.embedded_twin(key, escaped),
            },
            (_, Value::String(s)) => w.string(key, s),
            (_, other) => w.literal(key, &other.to_string()),
        }
    }
    out.close()
}

/// The turn metadata as it goes into `client_metadata`: its JSON text (escaped on the way), or that text already
/// escaped.
#[derive(Clone, Copy)]
enum Embed<'a> {
    Escape(&'a Template),
    Twin(&'a Template),
}

impl Embed<'_> {
    fn len(self) -> usize {
        match self {
            Embed::Escape(t) => t.text.len() * 5 / 4,
            Embed::Twin(t) => t.text.len(),
        }
    }
}

/// The `client_metadata` the official client writes for a turn, in key order (`turn_metadata` escaped).
fn synthesized_client_metadata(thread_id: &str, window: &str, turn_metadata: &Template, turn_id: &str) -> Template {
    let mut out = ClientMetadata::with_capacity(turn_metadata.text.len() + 320);
    out.at("guardian_credits_requested").plain_string("guardian_credits_requested", "true");
    out.at("mcp_attribution").literal("mcp_attribution", r#""{\"status\":\"none\"}""#);
    out.at("root_turn_id").plain_string("root_turn_id", turn_id);
    out.at("session_id").string("session_id", thread_id);
    out.at("thread_id").string("thread_id", thread_id);
    out.at("turn_id").plain_string("turn_id", turn_id);
    out.at(INSTALLATION).hole_string(INSTALLATION, Hole::Installation);
    out.at(TURN_METADATA_KEY).embedded_twin(TURN_METADATA_KEY, turn_metadata);
    out.at("x-codex-window-id").string("x-codex-window-id", window);
    out.close()
}

/// What only a WebSocket turn's `client_metadata` carries.
#[derive(Debug, Clone, Copy)]
pub struct WebsocketTurn<'a> {
    pub turn_state: Option<&'a str>,
    pub now_ms: i64,
    /// A Responses Lite turn (`lite.rs`): over the WebSocket its `client_metadata` says so.
    pub lite: bool,
}

/// The turn metadata the official client (0.169) writes for a turn of a new interactive session, for callers
/// that sent none, as JSON text (members in its order; a hole for the installation id). The values a gateway
/// can know are the request's own.
fn synthesized_turn_metadata(i: &TurnInputs<'_>, window: &str, ids: TurnIds<'_>) -> (Template, Template) {
    let mut out = ObjectWriter::with_twin(640 + 3 * i.thread_id.len() + i.slug.len());
    let mut context = uuid::Uuid::encode_buffer();
    let context = context_window_id(i.thread_id, &mut context);
    out.hole_string("installation_id", Hole::Installation);
    out.string("session_id", i.thread_id);
    out.string("thread_id", i.thread_id);
    out.plain_string("agent_name", "/root");
    out.plain_string("turn_id", ids.turn_id);
    out.string("window_id", window);
    out.plain_literal("window_number", "0");
    for (k, v) in [("context_window_id", context), ("request_kind", i.kind.as_str()), ("history_initialization", "new")]
    {
        out.plain_string(k, v);
    }
    out.plain_string("root_turn_id", ids.turn_id);
    for (k, v) in [("thread_source", "user"), ("sandbox", "seccomp"), ("sandbox_mode", "workspace-write")] {
        out.plain_string(k, v);
    }
    for k in ["auto_review_enabled", "node_repl_auto_review_required", "node_repl_disabled"] {
        out.plain_literal(k, "false");
    }
    out.plain_literal("turn_started_at_unix_ms", itoa::Buffer::new().format(ids.started_ms));
    out.plain_literal("analytics_enabled", "true");
    out.string("model", i.slug);
    if let Some(effort) = i.effort {
        out.string("reasoning_effort", effort);
    }
    out.close_with_twin()
}

/// The context window's id, stable for the conversation's window 0 (the gateway has no state to number windows).
fn context_window_id<'b>(thread_id: &str, buffer: &'b mut [u8; 45]) -> &'b str {
    use sha2::{Digest, Sha256};
    let d = Sha256::new().chain_update(thread_id.as_bytes()).chain_update(b":window:0").finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().hyphenated().encode_lower(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs<'a>(headers: &'a HeaderMap, client_metadata: Option<Map<String, Value>>) -> TurnInputs<'a> {
        TurnInputs {
            headers,
            client_metadata,
            thread_id: "t-1",
            slug: "gpt-5.4",
            service_tier: None,
            effort: Some("high"),
            kind: RequestKind::Turn,
            lite: false,
            now_ms: 1_700_000_000_000,
        }
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    #[test]
    fn a_plain_client_gets_the_official_clients_turn_identity() {
        let headers = HeaderMap::new();
        let mut i = inputs(&headers, None);
        i.service_tier = Some("priority");
        let turn = Turn::new(i);
        assert_eq!(turn.routing_hint, Some(HeaderValue::from_static("model=gpt-5.4;tier=priority")));
        assert_eq!(turn.window_id, Some(HeaderValue::from_static("t-1:0")));
        assert!(turn.caller.is_none());
        assert_eq!(turn.beta_features(), HeaderValue::from_static(DEFAULT_BETA_FEATURES));
        let meta = parse(&turn.client_metadata("inst-a", None));
        assert_eq!(meta["x-codex-installation-id"], "inst-a");
        assert_eq!(meta["session_id"], "t-1");
        assert_eq!(meta["x-codex-window-id"], "t-1:0");
        assert_eq!(meta["guardian_credits_requested"], "true");
        assert!(meta.get("x-codex-ws-stream-request-start-ms").is_none());
        let turn_meta = parse(meta["x-codex-turn-metadata"].as_str().unwrap_or_default());
        assert_eq!(turn_meta["installation_id"], "inst-a");
        assert_eq!(turn_meta["request_kind"], "turn");
        assert_eq!(turn_meta["reasoning_effort"], "high");
        assert_eq!(turn_meta["turn_id"], meta["turn_id"]);
        let header = turn.metadata_header("inst-a").and_then(|h| h.to_str().ok().map(parse)).unwrap_or_default();
        assert_eq!(header, turn_meta, "the header and the body's copy agree");
        // Members in key order, the WebSocket's own among them.
        for ws in [None, Some(WebsocketTurn { turn_state: Some("ts"), now_ms: 9, lite: false })] {
            let text = turn.client_metadata("inst-a", ws);
            let ordered: Ordered = serde_json::from_str(&text).unwrap_or_default();
            let mut sorted = ordered.keys();
            sorted.sort_unstable();
            assert_eq!(ordered.keys(), sorted, "{text}");
            assert_eq!(ordered.keys().len(), if ws.is_some() { 11 } else { 9 }, "{text}");
        }
    }

    #[test]
    fn the_written_turn_metadata_has_the_official_clients_members_in_its_order() {
        let headers = HeaderMap::new();
        let turn = Turn::new(inputs(&headers, None));
        let header = turn.metadata_header("inst").unwrap_or_else(|| panic!("a header value"));
        let text = header.to_str().unwrap_or_default().to_string();
        assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
        // The body's copy is the same text as a JSON string.
        let body: Value = serde_json::from_str(&turn.client_metadata("inst", None)).unwrap_or_default();
        assert_eq!(body["x-codex-turn-metadata"].as_str(), Some(text.as_str()));
        // Each member name is the text between the last quote before a `":` and that `":`.
        let parts: Vec<&str> = text.split("\":").collect();
        let names: Vec<&str> = parts[..parts.len() - 1].iter().filter_map(|part| part.rsplit('"').next()).collect();
        let expected = [
            "installation_id",
            "session_id",
            "thread_id",
            "agent_name",
            "turn_id",
            "window_id",
            "window_number",
            "context_window_id",
            "request_kind",
            "history_initialization",
            "root_turn_id",
            "thread_source",
            "sandbox",
            "sandbox_mode",
            "auto_review_enabled",
            "node_repl_auto_review_required",
            "node_repl_disabled",
            "turn_started_at_unix_ms",
            "analytics_enabled",
            "model",
            "reasoning_effort",
        ];
        assert_eq!(names, expected, "{text}");
    }

    #[test]
    fn each_turn_of_a_conversation_has_its_own_id_and_start() {
        let headers = HeaderMap::new();
        let first = Turn::new(TurnInputs { now_ms: 1_700_000_000_001, ..inputs(&headers, None) });
        let second = Turn::new(TurnInputs { now_ms: 1_700_000_000_002, ..inputs(&headers, None) });
        let read = |t: &Turn| {
            let meta = parse(&t.client_metadata("inst", None));
            let header = t.metadata_header("inst").and_then(|h| h.to_str().ok().map(parse)).unwrap_or_default();
            (meta, header)
        };
        let (meta1, header1) = read(&first);
        let (meta2, header2) = read(&second);
        for (t, meta, header, started) in [(&first, meta1, header1, 1), (&second, meta2, header2, 2)] {
            let id = t.turn_id.to_string();
            let body_meta = parse(meta["x-codex-turn-metadata"].as_str().unwrap_or_default());
            for v in [&meta["turn_id"], &meta["root_turn_id"], &header["turn_id"], &header["root_turn_id"]] {
                assert_eq!(v, &json!(id));
            }
            assert_eq!(body_meta, header);
            assert_eq!(header["turn_started_at_unix_ms"], json!(1_700_000_000_000_i64 + started));
        }
        assert_ne!(first.turn_id, second.turn_id);
        // Another model in the same conversation is written with it.
        let other = Turn::new(TurnInputs { slug: "gpt-5.5", ..inputs(&headers, None) });
        assert_eq!(read(&other).1["model"], "gpt-5.5");
        assert_eq!(other.routing_hint, Some(HeaderValue::from_static("model=gpt-5.5")));
        // On another account the turn has an id of its own, everywhere the first one was.
        let moved = first.for_account("t-1", |id| format!("{id}-b"));
        let (meta, header) = read(&moved);
        let id = moved.turn_id.to_string();
        assert_ne!(moved.turn_id, first.turn_id);
        for v in [&meta["turn_id"], &meta["root_turn_id"], &header["turn_id"], &header["root_turn_id"]] {
            assert_eq!(v, &json!(id));
        }
        assert_eq!((meta["session_id"].as_str(), header["thread_id"].as_str()), (Some("t-1-b"), Some("t-1-b")));
        assert!(!moved.client_metadata("inst", None).contains(&first.turn_id.to_string()));
    }

    #[test]
    fn an_official_caller_without_turn_metadata_gets_the_written_one_beside_its_own_members() {
        let mut headers = HeaderMap::new();
        headers.insert("originator", HeaderValue::from_static("codex_exec"));
        let metadata = json!({"x-codex-installation-id": "the-clients", "zz-own": {"n": 1}, "a-own": "x \"y\""});
        let turn = Turn::new(inputs(&headers, metadata.as_object().cloned()));
        let meta = parse(&turn.client_metadata("inst-c", None));
        assert_eq!(meta["x-codex-installation-id"], "inst-c");
        assert_eq!(meta["zz-own"], json!({"n": 1}));
        assert_eq!(meta["a-own"], "x \"y\"");
        let turn_meta = parse(meta["x-codex-turn-metadata"].as_str().unwrap_or_default());
        let header = turn.metadata_header("inst-c").and_then(|h| h.to_str().ok().map(parse)).unwrap_or_default();
        assert_eq!(turn_meta, header);
        assert_eq!(turn_meta["installation_id"], "inst-c");
    }

    #[test]
    fn an_official_caller_keeps_its_identity_but_the_installation_id_is_the_accounts() {
        let mut headers = HeaderMap::new();
        headers.insert("originator", HeaderValue::from_static("codex_exec"));
        headers.insert("user-agent", HeaderValue::from_static("codex_exec/0.169.0 (Debian 12.0.0; x86_64) unknown"));
        headers.insert("x-codex-window-id", HeaderValue::from_static("t-1:2"));
        headers.insert("x-codex-beta-features", HeaderValue::from_static("a,b"));
        let carried = json!({"installation_id": "the-clients", "turn_id": "u-9", "request_kind": "turn",
            "tool_namespaces_info": {"ns": {}}});
        let metadata = json!({"x-codex-installation-id": "the-clients", "turn_id": "u-9", "session_id": "t-1",
            "x-codex-turn-metadata": carried.to_string(), "x-codex-ws-stream-request-start-ms": "1"});
        let turn = Turn::new(inputs(&headers, metadata.as_object().cloned()));
        let caller = turn.caller.as_deref().cloned().unwrap_or_default();
        assert_eq!(caller.originator, Some(HeaderValue::from_static("codex_exec")));
        assert_eq!(turn.window_id, Some(HeaderValue::from_static("t-1:2")));
        assert_eq!(turn.beta_features(), HeaderValue::from_static("a,b"));
        let meta = parse(
            &turn.client_metadata("inst-b", Some(WebsocketTurn { turn_state: Some("ts"), now_ms: 5, lite: false })),
        );
        assert_eq!(meta["x-codex-installation-id"], "inst-b");
        assert_eq!(meta["turn_id"], "u-9");
        assert_eq!(meta["x-codex-ws-stream-request-start-ms"], "5", "written fresh for the upstream socket");
        assert_eq!(meta["x-codex-turn-state"], "ts");
        let turn_meta = parse(meta["x-codex-turn-metadata"].as_str().unwrap_or_default());
        assert_eq!(turn_meta["installation_id"], "inst-b");
        assert!(turn_meta.get("tool_namespaces_info").is_some(), "the body's copy keeps the namespaces");
        let header = turn.metadata_header("inst-b").and_then(|h| h.to_str().ok().map(parse)).unwrap_or_default();
        assert!(header.get("tool_namespaces_info").is_none(), "the header omits them");
        assert!(!turn.client_metadata("inst-b", None).contains("the-clients"));
    }
}
