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
//! Built once per request in `relay::exchange::prepare` from what is already known; each send writes it with the
//! serving account's installation id ([`Turn::client_metadata`], [`Turn::metadata_header`]).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use serde_json::{Map, Value};

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
/// The members only a WebSocket turn's `client_metadata` carries (the official client puts there what HTTP sends
/// as headers): kept out of an HTTP body, written fresh for a WebSocket one.
const TURN_STATE: &str = "x-codex-turn-state";
const STREAM_START: &str = "x-codex-ws-stream-request-start-ms";
const WEBSOCKET_MEMBERS: [&str; 3] = [super::lite::WEBSOCKET_MEMBER, TURN_STATE, STREAM_START];

/// One request's turn identity; each send writes it with the serving account's installation id (and over the
/// WebSocket the members only `response.create` carries).
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

/// A turn's identity but for what each send adds.
#[derive(Debug)]
pub(super) struct Texts {
    /// The turn metadata's members after its first, `installation_id`, as JSON text (`"session_id":"…",…`), for
    /// the `x-codex-turn-metadata` header: without the tool namespaces.
    header_members: String,
    /// The same for the body's copy, the one with the tool namespaces.
    body_members: String,
    /// The body's `client_metadata` but for the installation id, the turn metadata and the WebSocket members.
    client_metadata: Map<String, Value>,
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
        let official = official(i.headers);
        let mut id = uuid::Uuid::encode_buffer();
        let id = turn_id.hyphenated().encode_lower(&mut id);
        let header = |name: &HeaderName| i.headers.get(name).cloned();
        let (caller, window, texts) = if official {
            let caller = Box::new(CallerHeaders {
                originator: header(&ORIGINATOR),
                user_agent: header(&axum::http::header::USER_AGENT),
                beta_features: header(&BETA_FEATURES),
                subagent: header(&SUBAGENT),
                parent_thread_id: header(&PARENT_THREAD),
            });
            let mut metadata = i.client_metadata.take().unwrap_or_default();
            // The turn metadata: the body's copy (it has the tool namespaces; over the WebSocket it is the turn's
            // own, while the handshake's header is the warm-up's), else the header.
            let carried = match metadata.shift_remove(TURN_METADATA_KEY) {
                Some(Value::String(text)) => Some(text),
                _ => header(&TURN_METADATA).and_then(|v| v.to_str().ok().map(str::to_string)),
            };
            let window = match header(&WINDOW_ID) {
                Some(w) => w.to_str().unwrap_or_default().to_string(),
                None => default_window(i.thread_id),
            };
            metadata.shift_remove(INSTALLATION);
            for key in WEBSOCKET_MEMBERS {
                metadata.shift_remove(key);
            }
            // What the official client adds on every ChatGPT-login turn, whatever provider setup the caller had.
            metadata.entry("guardian_credits_requested").or_insert_with(|| "true".into());
            metadata.entry("mcp_attribution").or_insert_with(|| r#"{"status":"none"}"#.into());
            let carried = carried.and_then(|t| serde_json::from_str::<Map<String, Value>>(&t).ok());
            let (header_members, body_members) = match carried {
                Some(mut m) => {
                    m.shift_remove("installation_id");
                    (members_but(&m, "tool_namespaces_info"), members_but(&m, "installation_id"))
                }
                None => {
                    let members = written_turn_metadata(&i, &window, id);
                    (members.clone(), members)
                }
            };
            (Some(caller), window, Texts { header_members, body_members, client_metadata: metadata })
        } else {
            // Everything is written here, as the official client writes it.
            let window = default_window(i.thread_id);
            let members = written_turn_metadata(&i, &window, id);
            let client_metadata = Map::from_iter(
                [
                    ("guardian_credits_requested", "true"),
                    ("mcp_attribution", r#"{"status":"none"}"#),
                    ("root_turn_id", id),
                    ("session_id", i.thread_id),
                    ("thread_id", i.thread_id),
                    ("turn_id", id),
                    ("x-codex-window-id", window.as_str()),
                ]
                .map(|(k, v)| (k.to_string(), Value::from(v))),
            );
            (None, window, Texts { header_members: members.clone(), body_members: members, client_metadata })
        };
        Turn {
            routing_hint: routing_hint(&i),
            window_id: HeaderValue::from_maybe_shared(Bytes::from(window)).ok(),
            caller,
            lite: i.lite,
            texts: Arc::new(texts),
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
        let mut client_metadata = self.texts.client_metadata.clone();
        client_metadata.values_mut().for_each(|v| replace_in(v, &pairs));
        let texts = Texts {
            header_members: replaced(&self.texts.header_members, &pairs),
            body_members: replaced(&self.texts.body_members, &pairs),
            client_metadata,
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
        let text = turn_metadata(installation_id, &self.texts.header_members);
        HeaderValue::from_maybe_shared(Bytes::from(text)).ok()
    }

    /// About how long [`Turn::write_client_metadata`]'s text is, for sizing the body it goes into.
    pub fn client_metadata_len(&self, installation_id: &str) -> usize {
        let m = &self.texts.client_metadata;
        let members: usize = m.iter().map(|(k, v)| k.len() + v.as_str().map_or(32, str::len) + 6).sum();
        members + self.texts.body_members.len() * 5 / 4 + 2 * installation_id.len() + 256
    }

    /// The body's `client_metadata` for an account, as JSON appended to `out`; over the WebSocket with the members
    /// only it carries, in key order among the others.
    pub fn write_client_metadata(
        &self,
        out: &mut Vec<u8>,
        installation_id: &str,
        websocket: Option<WebsocketTurn<'_>>,
    ) {
        let mut m = self.texts.client_metadata.clone();
        m.insert(INSTALLATION.into(), installation_id.into());
        m.insert(TURN_METADATA_KEY.into(), turn_metadata(installation_id, &self.texts.body_members).into());
        if let Some(ws) = websocket {
            if ws.lite {
                m.insert(super::lite::WEBSOCKET_MEMBER.into(), "true".into());
            }
            if let Some(state) = ws.turn_state {
                m.insert(TURN_STATE.into(), state.into());
            }
            m.insert(STREAM_START.into(), ws.now_ms.to_string().into());
        }
        // The official client writes these members in key order.
        m.sort_keys();
        // A map of strings and JSON values always serializes.
        let _ = serde_json::to_writer(out, &m);
    }

    /// [`Turn::write_client_metadata`] as a string.
    pub fn client_metadata(&self, installation_id: &str, websocket: Option<WebsocketTurn<'_>>) -> String {
        let mut out = Vec::with_capacity(self.client_metadata_len(installation_id));
        self.write_client_metadata(&mut out, installation_id, websocket);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The caller is itself the official client: its `originator` is one of the official client's (`codex_cli_rs`,
/// `codex_exec`, ...).
pub fn official(headers: &HeaderMap) -> bool {
    headers.get(&ORIGINATOR).and_then(|v| v.to_str().ok()).is_some_and(|o| o.starts_with("codex_"))
}

/// A JSON object's members but `skip`, in their order, as JSON text without the braces (`"a":1,"b":2`): the turn
/// metadata is a header whose member order is part of what it looks like.
fn members_but(m: &Map<String, Value>, skip: &str) -> String {
    let members = m.iter().filter(|(k, _)| k.as_str() != skip);
    members.map(|(k, v)| format!("{}:{v}", Value::from(k.as_str()))).collect::<Vec<_>>().join(",")
}

/// The turn metadata's JSON text: the installation id first, then `members`.
fn turn_metadata(installation_id: &str, members: &str) -> String {
    let mut out = Vec::with_capacity(members.len() + installation_id.len() + 24);
    out.extend_from_slice(br#"{"installation_id":"#);
    // Writing a string into a vector cannot fail.
    let _ = serde_json::to_writer(&mut out, installation_id);
    if !members.is_empty() {
        out.push(b',');
        out.extend_from_slice(members.as_bytes());
    }
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
}

/// `text` with every `from` replaced by its `to`, pair after pair.
fn replaced(text: &str, pairs: &[(&str, &str)]) -> String {
    let keep = |from: &str, to: &str| from.is_empty() || from == to;
    pairs.iter().fold(text.to_string(), |t, (from, to)| if keep(from, to) { t } else { t.replace(from, to) })
}

/// [`replaced`] in every string of `v`.
fn replace_in(v: &mut Value, pairs: &[(&str, &str)]) {
    match v {
        Value::String(s) => *s = replaced(s, pairs),
        Value::Array(items) => items.iter_mut().for_each(|item| replace_in(item, pairs)),
        Value::Object(m) => m.values_mut().for_each(|item| replace_in(item, pairs)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `x-codex-routing-hint`: `model=<slug>[;tier=<tier>]`.
fn routing_hint(i: &TurnInputs<'_>) -> Option<HeaderValue> {
    let hint = match i.service_tier {
        Some(tier) => format!("model={};tier={tier}", i.slug),
        None => format!("model={}", i.slug),
    };
    HeaderValue::from_maybe_shared(Bytes::from(hint)).ok()
}

/// The window id of a conversation the gateway numbers no windows of: its thread's window 0.
fn default_window(thread_id: &str) -> String {
    format!("{thread_id}:0")
}

/// What only a WebSocket turn's `client_metadata` carries.
#[derive(Debug, Clone, Copy)]
pub struct WebsocketTurn<'a> {
    pub turn_state: Option<&'a str>,
    pub now_ms: i64,
    /// A Responses Lite turn (`lite.rs`): over the WebSocket its `client_metadata` says so.
    pub lite: bool,
}

/// The members of the turn metadata the official client (0.169) writes for a turn of a new interactive session
/// after its installation id, for callers that sent none, as JSON text in its order. The values a gateway can
/// know are the request's own.
fn written_turn_metadata(i: &TurnInputs<'_>, window: &str, turn_id: &str) -> String {
    let mut context = uuid::Uuid::encode_buffer();
    let context = context_window_id(i.thread_id, &mut context);
    let members: [(&str, Member<'_>); 19] = [
        ("session_id", Member::Text(i.thread_id)),
        ("thread_id", Member::Text(i.thread_id)),
        ("agent_name", Member::Text("/root")),
        ("turn_id", Member::Text(turn_id)),
        ("window_id", Member::Text(window)),
        ("window_number", Member::Number(0)),
        ("context_window_id", Member::Text(context)),
        ("request_kind", Member::Text(i.kind.as_str())),
        ("history_initialization", Member::Text("new")),
        ("root_turn_id", Member::Text(turn_id)),
        ("thread_source", Member::Text("user")),
        ("sandbox", Member::Text("seccomp")),
        ("sandbox_mode", Member::Text("workspace-write")),
        ("auto_review_enabled", Member::Flag(false)),
        ("node_repl_auto_review_required", Member::Flag(false)),
        ("node_repl_disabled", Member::Flag(false)),
        ("turn_started_at_unix_ms", Member::Number(i.now_ms)),
        ("analytics_enabled", Member::Flag(true)),
        ("model", Member::Text(i.slug)),
    ];
    let effort = i.effort.map(|effort| ("reasoning_effort", Member::Text(effort)));
    // One buffer for the whole text: it is written for every request of a caller that sent no turn metadata.
    let mut out = Vec::with_capacity(640);
    for (n, (key, value)) in members.into_iter().chain(effort).enumerate() {
        if n > 0 {
            out.push(b',');
        }
        value.write(&mut out, key);
    }
    String::from_utf8(out).unwrap_or_default()
}

/// A value of the written turn metadata.
enum Member<'a> {
    Text(&'a str),
    Number(i64),
    Flag(bool),
}

impl Member<'_> {
    /// `"key":value` appended to `out` (strings escaped as JSON).
    fn write(&self, out: &mut Vec<u8>, key: &str) {
        // Writing strings, numbers and booleans into a vector cannot fail.
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
        let _ = match self {
            Member::Text(text) => serde_json::to_writer(&mut *out, text),
            Member::Number(n) => serde_json::to_writer(&mut *out, n),
            Member::Flag(b) => serde_json::to_writer(&mut *out, b),
        };
    }
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
            let ordered: Map<String, Value> = serde_json::from_str(&text).unwrap_or_default();
            let keys: Vec<&String> = ordered.keys().collect();
            let mut sorted = keys.clone();
            sorted.sort_unstable();
            assert_eq!(keys, sorted, "{text}");
            assert_eq!(keys.len(), if ws.is_some() { 11 } else { 9 }, "{text}");
        }
    }

    #[test]
    fn carried_members_keep_their_order_and_one_can_be_left_out() {
        let parsed: Map<String, Value> =
            serde_json::from_str(r#"{"zeta":1,"alpha":{"b":2,"a":1},"installation_id":"old"}"#).unwrap_or_default();
        assert_eq!(members_but(&parsed, "installation_id"), r#""zeta":1,"alpha":{"b":2,"a":1}"#);
        let read: Map<String, Value> = serde_json::from_str(r#"{"b":"x\"y","a":3}"#).unwrap_or_default();
        assert_eq!(members_but(&read, "a"), r#""b":"x\"y""#);
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
