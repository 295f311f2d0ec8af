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
//! Built once per request in `relay::exchange::prepare` from what is already known; per send only the account's
//! installation id goes in ([`Turn::client_metadata`], [`Turn::metadata_header`]).

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::ordered::Ordered;

/// What a request is, in the turn metadata's `request_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A model turn.
    Turn,
    /// A compaction (`/responses/compact`, or a turn whose input ends with a compaction trigger).
    Compaction,
}

impl RequestKind {
    fn as_str(self) -> &'static str {
        match self {
            RequestKind::Turn => "turn",
            RequestKind::Compaction => "compaction",
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

/// `client_metadata` keys that only the WebSocket's `response.create` carries (the official client puts there
/// what HTTP sends as headers); kept out of an HTTP body, written fresh for a WebSocket one.
const WEBSOCKET_ONLY: &[&str] = &["x-codex-ws-stream-request-start-ms", "x-codex-turn-state"];
const INSTALLATION: &str = "x-codex-installation-id";
const TURN_METADATA_KEY: &str = "x-codex-turn-metadata";
/// The beta features the official client (0.169) announces by default.
const DEFAULT_BETA_FEATURES: &str = "remote_compaction_v2";

/// One request's turn identity, rendered once: per send only the account's installation id goes in.
#[derive(Debug, Clone)]
pub struct Turn {
    /// `x-codex-routing-hint`: `model=<slug>`, and `;tier=<tier>` when the body asks for one.
    pub routing_hint: Option<HeaderValue>,
    /// `x-codex-window-id`: `<thread id>:<window number>`.
    pub window_id: Option<HeaderValue>,
    /// The caller's own identity headers, when it is the official client.
    pub caller: Option<Box<CallerHeaders>>,
    /// The `x-codex-turn-metadata` header's value ([`MARK`] where the installation id goes).
    metadata_header: String,
    /// `client_metadata`'s members in key order, each written as `"key":value` ([`MARK`] where the installation id
    /// goes; the turn metadata inside is the one with the tool namespaces).
    members: Vec<(String, String)>,
}

/// What stands for the installation id in a turn's rendered metadata until the serving account is known: as long
/// as a UUID, so the account's id takes its place in a copy of the same length.
const MARK: &str = "00000000-0000-0000-0000-installation";

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
    /// Now, in unix milliseconds.
    pub now_ms: i64,
}

impl Turn {
    pub fn new(mut i: TurnInputs<'_>) -> Turn {
        let header = |name: &HeaderName| i.headers.get(name).cloned();
        let official =
            i.headers.get(&ORIGINATOR).and_then(|v| v.to_str().ok()).is_some_and(|o| o.starts_with("codex_"));
        let caller = official.then(|| {
            Box::new(CallerHeaders {
                originator: header(&ORIGINATOR),
                user_agent: header(&axum::http::header::USER_AGENT),
                beta_features: header(&BETA_FEATURES),
                subagent: header(&SUBAGENT),
                parent_thread_id: header(&PARENT_THREAD),
            })
        });
        let mut metadata = if official { i.client_metadata.take().unwrap_or_default() } else { Map::new() };
        // The turn metadata: the body's copy (it has the tool namespaces; over the WebSocket it is the turn's own,
        // while the handshake's header is the warm-up's), else the header.
        let carried = match metadata.remove(TURN_METADATA_KEY) {
            Some(Value::String(text)) => Some(text),
            _ => header(&TURN_METADATA).and_then(|v| v.to_str().ok().map(str::to_string)).filter(|_| official),
        };
        let window = match header(&WINDOW_ID).filter(|_| official) {
            Some(w) => w.to_str().unwrap_or_default().to_string(),
            None => format!("{}:0", i.thread_id),
        };
        let turn_id = uuid::Uuid::now_v7().to_string();
        // The turn metadata's two copies, as JSON text: the body's, and the header's without the tool namespaces.
        let (members, header_copy) = match carried.and_then(|t| serde_json::from_str::<Ordered>(&t).ok()) {
            Some(mut m) => {
                m.remove("installation_id");
                let body = m.with_first("installation_id", MARK);
                m.remove("tool_namespaces_info");
                let header = m.with_first("installation_id", MARK);
                (carried_members(metadata, body), header)
            }
            None => {
                let text = synthesized_turn_metadata(&i, &window, &turn_id);
                match official {
                    true => (carried_members(metadata, text.raw.clone()), text.raw),
                    // Any other caller: everything written here, in the official client's order, with no map in
                    // between (this runs for every request of every other client).
                    false => (synthesized_members(i.thread_id, &turn_id, &window, &text.escaped), text.raw),
                }
            }
        };
        let mut hint = format!("model={}", i.slug);
        if let Some(tier) = i.service_tier {
            hint.push_str(";tier=");
            hint.push_str(tier);
        }
        Turn {
            routing_hint: HeaderValue::from_str(&hint).ok(),
            window_id: HeaderValue::from_str(&window).ok(),
            caller,
            metadata_header: header_copy,
            members,
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
        HeaderValue::from_str(&with_installation(&self.metadata_header, installation_id)).ok()
    }

    /// The body's `client_metadata` for an account, as JSON; over the WebSocket with the members only it carries,
    /// in key order among the others.
    pub fn client_metadata(&self, installation_id: &str, websocket: Option<WebsocketTurn<'_>>) -> String {
        let mut extra: Vec<(&str, String)> = Vec::new();
        if let Some(ws) = websocket {
            if let Some(state) = ws.turn_state {
                extra.push(("x-codex-turn-state", member("x-codex-turn-state", &Value::String(state.to_string()))));
            }
            let start = ws.now_ms.to_string();
            extra.push((
                "x-codex-ws-stream-request-start-ms",
                member("x-codex-ws-stream-request-start-ms", &Value::String(start)),
            ));
        }
        let size = self.members.iter().map(|(_, m)| m.len() + 1).sum::<usize>()
            + extra.iter().map(|(_, m)| m.len() + 1).sum::<usize>();
        let mut out = String::with_capacity(size + 2);
        out.push('{');
        let mut extra = extra.into_iter().peekable();
        for (key, rendered) in &self.members {
            while let Some((_, m)) = extra.next_if(|(k, _)| *k < key.as_str()) {
                push_member(&mut out, &m);
            }
            push_member(&mut out, rendered);
        }
        for (_, m) in extra {
            push_member(&mut out, &m);
        }
        out.push('}');
        with_installation(&out, installation_id)
    }
}

/// `"key":value` as JSON text.
fn member(key: &str, value: &Value) -> String {
    let mut out = String::with_capacity(key.len() + 48);
    push_json_str(&mut out, key);
    out.push(':');
    match value {
        Value::String(v) => push_json_str(&mut out, v),
        other => out.push_str(&other.to_string()),
    }
    out
}

/// `s` as a JSON string, escaped as `serde_json` escapes it (`\"`, `\\`, the short forms of `\n`, `\t`, ...,
/// `\u00xx` for the other control characters), a run of plain bytes at a time: the turn metadata is a JSON text
/// embedded as a string in every request's body, and its quotes made the general serializer the larger part of
/// a turn's identity.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escaped);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// An official caller's `client_metadata` members, its own but for the installation id, the members only a
/// WebSocket turn carries, and the turn metadata (`body_copy`), in key order.
fn carried_members(mut metadata: Map<String, Value>, body_copy: String) -> Vec<(String, String)> {
    metadata.remove(INSTALLATION);
    for key in WEBSOCKET_ONLY {
        metadata.remove(*key);
    }
    // What the official client adds on every ChatGPT-login turn, whatever provider setup the caller had.
    let text = |s: &str| Value::String(s.to_string());
    metadata.entry("guardian_credits_requested").or_insert_with(|| text("true"));
    metadata.entry("mcp_attribution").or_insert_with(|| text(r#"{"status":"none"}"#));
    metadata.insert(INSTALLATION.into(), text(MARK));
    metadata.insert(TURN_METADATA_KEY.into(), Value::String(body_copy));
    // `serde_json`'s map is sorted: the members come out in the order the official client writes them.
    metadata.iter().map(|(k, v)| (k.clone(), member(k, v))).collect()
}

/// The `client_metadata` members the official client writes for a turn, in key order (`turn_metadata` already
/// escaped as the inside of a JSON string).
fn synthesized_members(thread_id: &str, turn_id: &str, window: &str, turn_metadata: &str) -> Vec<(String, String)> {
    let text = |key: &str, value: &str| {
        let mut m = String::with_capacity(key.len() + value.len() + 8);
        push_json_str(&mut m, key);
        m.push(':');
        push_json_str(&mut m, value);
        (key.to_string(), m)
    };
    let mut metadata = String::with_capacity(turn_metadata.len() + 28);
    metadata.push_str("\"x-codex-turn-metadata\":\"");
    metadata.push_str(turn_metadata);
    metadata.push('"');
    vec![
        text("guardian_credits_requested", "true"),
        text("mcp_attribution", r#"{"status":"none"}"#),
        text("root_turn_id", turn_id),
        text("session_id", thread_id),
        text("thread_id", thread_id),
        text("turn_id", turn_id),
        text(INSTALLATION, MARK),
        (TURN_METADATA_KEY.to_string(), metadata),
        text("x-codex-window-id", window),
    ]
}

fn push_member(out: &mut String, member: &str) {
    if out.len() > 1 {
        out.push(',');
    }
    out.push_str(member);
}

/// `text` with the account's installation id where [`MARK`] stands.
fn with_installation(text: &str, installation_id: &str) -> String {
    text.replace(MARK, installation_id)
}

/// What only a WebSocket turn's `client_metadata` carries.
#[derive(Debug, Clone, Copy)]
pub struct WebsocketTurn<'a> {
    pub turn_state: Option<&'a str>,
    pub now_ms: i64,
}

/// The turn metadata the official client (0.169) writes for a turn of a new interactive session, for callers
/// that sent none, as JSON text (members in its order; [`MARK`] for the installation id). The values a gateway
/// can know are the request's own.
fn synthesized_turn_metadata(i: &TurnInputs<'_>, window: &str, turn_id: &str) -> TwoForms {
    let mut out = TwoForms::with_capacity(768);
    let context = context_window_id(i.thread_id);
    for (k, v) in [
        ("installation_id", MARK),
        ("session_id", i.thread_id),
        ("thread_id", i.thread_id),
        ("agent_name", "/root"),
        ("turn_id", turn_id),
        ("window_id", window),
    ] {
        out.key(k);
        out.string(v);
    }
    out.key("window_number");
    out.literal("0");
    for (k, v) in [
        ("context_window_id", context.as_str()),
        ("request_kind", i.kind.as_str()),
        ("history_initialization", "new"),
        ("root_turn_id", turn_id),
        ("thread_source", "user"),
        ("sandbox", "seccomp"),
        ("sandbox_mode", "workspace-write"),
    ] {
        out.key(k);
        out.string(v);
    }
    for k in ["auto_review_enabled", "node_repl_auto_review_required", "node_repl_disabled"] {
        out.key(k);
        out.literal("false");
    }
    out.key("turn_started_at_unix_ms");
    out.literal(&i.now_ms.to_string());
    out.key("analytics_enabled");
    out.literal("true");
    out.key("model");
    out.string(i.slug);
    if let Some(effort) = i.effort {
        out.key("reasoning_effort");
        out.string(effort);
    }
    out.close();
    out
}

/// A JSON object written twice at once: as JSON text (the header's copy), and as that text inside a JSON string
/// (the body's copy, `client_metadata["x-codex-turn-metadata"]`), so the second needs no escaping pass.
struct TwoForms {
    raw: String,
    escaped: String,
}

impl TwoForms {
    fn with_capacity(n: usize) -> TwoForms {
        TwoForms { raw: String::with_capacity(n), escaped: String::with_capacity(n + n / 4) }
    }

    fn key(&mut self, k: &str) {
        let first = self.raw.is_empty();
        self.raw.push(if first { '{' } else { ',' });
        self.escaped.push(if first { '{' } else { ',' });
        self.string(k);
        self.raw.push(':');
        self.escaped.push(':');
    }

    fn string(&mut self, v: &str) {
        if v.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.raw.push('"');
            self.raw.push_str(v);
            self.raw.push('"');
            self.escaped.push_str("\\\"");
            self.escaped.push_str(v);
            self.escaped.push_str("\\\"");
        } else {
            let start = self.raw.len();
            push_json_str(&mut self.raw, v);
            let quoted = self.raw[start..].to_string();
            let mut inner = String::new();
            push_json_str(&mut inner, &quoted);
            self.escaped.push_str(&inner[1..inner.len() - 1]);
        }
    }

    fn literal(&mut self, v: &str) {
        self.raw.push_str(v);
        self.escaped.push_str(v);
    }

    fn close(&mut self) {
        self.raw.push('}');
        self.escaped.push('}');
    }
}

/// The context window's id, stable for the conversation's window 0 (the gateway has no state to number windows).
fn context_window_id(thread_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{thread_id}:window:0").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
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
    }

    #[test]
    fn two_forms_write_the_same_object_as_text_and_as_a_string() {
        let mut two = TwoForms::with_capacity(16);
        two.key("a");
        two.string("plain");
        two.key("b\"q");
        two.string("tab\there \"quoted\"");
        two.key("n");
        two.literal("1");
        two.close();
        let raw: Value = serde_json::from_str(&two.raw).unwrap_or_default();
        assert_eq!(raw, json!({"a": "plain", "b\"q": "tab\there \"quoted\"", "n": 1}));
        let inside: String = serde_json::from_str(&format!("\"{}\"", two.escaped)).unwrap_or_default();
        assert_eq!(inside, two.raw);
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in
            ["plain", "a \"quoted\" \\ path", "tab\tline\nfeed\r\u{8}\u{c}\u{1}\u{1f}", "é ✓ 😀", r#"{"a":"b"}"#, ""]
        {
            let mut out = String::new();
            push_json_str(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap_or_default(), "{text:?}");
        }
    }

    #[test]
    fn the_written_turn_metadata_has_the_official_clients_members_in_its_order() {
        let headers = HeaderMap::new();
        let turn = Turn::new(inputs(&headers, None));
        let text = turn.metadata_header.clone();
        assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
        // The body's copy is the same text as a JSON string.
        let body: Value = serde_json::from_str(&turn.client_metadata("inst", None)).unwrap_or_default();
        assert_eq!(body["x-codex-turn-metadata"].as_str(), Some(text.replace(MARK, "inst").as_str()));
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
        let meta = parse(&turn.client_metadata("inst-b", Some(WebsocketTurn { turn_state: Some("ts"), now_ms: 5 })));
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
