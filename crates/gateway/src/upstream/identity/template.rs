//! A turn's identity text, written once per request with holes for what only the send knows: the serving
//! account's installation id, and over the WebSocket the members only `response.create` carries. Filling a hole is
//! a copy of the text around it, so a send (and a failover's second send) costs one buffer, not a re-rendering.

use super::turn::WebsocketTurn;

/// What goes in a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hole {
    /// The installation id, inside a JSON string.
    Installation,
    /// The installation id inside a JSON string that is itself inside one (the body's copy of the turn metadata).
    InstallationTwice,
    /// `,"x-codex-turn-state":"…"` when the send has a sticky-routing token (WebSocket only).
    TurnState,
    /// `,"x-codex-ws-stream-request-start-ms":"…"` (WebSocket only).
    StreamStart,
    /// `,"ws_request_header_x_openai_internal_codex_responses_lite":"true"` for a Responses Lite turn (WebSocket
    /// only; `lite.rs`).
    Lite,
}

/// The most holes a text has: `client_metadata` has the installation id twice (its own member and the turn
/// metadata inside it) and the three WebSocket-only members.
const MOST: usize = 5;

/// What a send's holes are filled with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Values<'a> {
    pub(super) installation: &'a str,
}

/// Text with holes at byte offsets, in the order they were made.
#[derive(Debug, Clone, Default)]
pub(super) struct Template {
    pub(super) text: String,
    holes: [(usize, Option<Hole>); MOST],
}

impl Template {
    pub(super) fn with_capacity(n: usize) -> Template {
        Template { text: String::with_capacity(n), holes: [(0, None); MOST] }
    }

    /// A hole at the end of the text written so far (a text never needs more than [`MOST`]; a further one is not
    /// made, and its value is left out).
    pub(super) fn hole(&mut self, hole: Hole) {
        if let Some(slot) = self.holes.iter_mut().find(|(_, h)| h.is_none()) {
            *slot = (self.text.len(), Some(hole));
        }
    }

    /// The text's length with its holes filled: exact for an installation id that needs no escaping (a UUID)
    /// and text without WebSocket members, an estimate otherwise (for sizing the buffer it goes into).
    pub(super) fn filled_len(&self, v: &Values<'_>) -> usize {
        let hole = |h: &Option<Hole>| match h {
            Some(Hole::Installation | Hole::InstallationTwice) => v.installation.len(),
            Some(Hole::TurnState | Hole::StreamStart | Hole::Lite) => 72,
            None => 0,
        };
        self.text.len() + self.holes.iter().map(|(_, h)| hole(h)).sum::<usize>()
    }

    /// The same text with every `from` replaced by its `to` (identifiers of a conversation that moved to another
    /// account: `relay/exchange/prepare.rs`), its holes kept where they were in the text around them.
    pub(super) fn replaced(&self, pairs: &[(&str, &str)]) -> Template {
        let mut text = self.text.clone();
        let mut holes = self.holes;
        for (from, to) in pairs {
            if from.is_empty() || from == to {
                continue;
            }
            let mut out = String::with_capacity(text.len());
            let mut last = 0;
            // Offsets in the text before this pass, each moved by the growth of the replacements before it.
            let mut shift: Vec<(usize, isize)> = Vec::new();
            for (at, _) in text.match_indices(from) {
                out.push_str(&text[last..at]);
                out.push_str(to);
                last = at + from.len();
                shift.push((last, to.len() as isize - from.len() as isize));
            }
            out.push_str(&text[last..]);
            for (offset, hole) in holes.iter_mut() {
                if hole.is_none() {
                    continue;
                }
                let grown: isize = shift.iter().filter(|(end, _)| *end <= *offset).map(|(_, d)| d).sum();
                *offset = offset.saturating_add_signed(grown);
            }
            text = out;
        }
        Template { text, holes }
    }

    /// The text with its holes filled, appended to `out`; the WebSocket-only holes stay empty over HTTP.
    pub(super) fn fill(&self, out: &mut Vec<u8>, v: &Values<'_>, websocket: Option<WebsocketTurn<'_>>) {
        let mut from = 0;
        for &(at, hole) in &self.holes {
            let Some(hole) = hole else { break };
            let text = self.text.as_bytes();
            out.extend_from_slice(text.get(from..at).unwrap_or_default());
            from = at;
            match (hole, websocket) {
                (Hole::Installation, _) => push_escaped(out, v.installation, 1),
                (Hole::InstallationTwice, _) => push_escaped(out, v.installation, 2),
                (Hole::TurnState, Some(WebsocketTurn { turn_state: Some(state), .. })) => {
                    extra_member(out, text, at, "x-codex-turn-state", state)
                }
                (Hole::StreamStart, Some(ws)) => extra_member(
                    out,
                    text,
                    at,
                    "x-codex-ws-stream-request-start-ms",
                    itoa::Buffer::new().format(ws.now_ms),
                ),
                (Hole::Lite, Some(WebsocketTurn { lite: true, .. })) => {
                    extra_member(out, text, at, super::lite::WEBSOCKET_MEMBER, "true")
                }
                (Hole::TurnState | Hole::StreamStart | Hole::Lite, _) => {}
            }
        }
        out.extend_from_slice(self.text.as_bytes().get(from..).unwrap_or_default());
    }
}

/// The hole for the same value inside one more string: only the installation id may need escaping.
fn deeper(hole: Hole) -> Hole {
    match hole {
        Hole::Installation => Hole::InstallationTwice,
        other => other,
    }
}

/// `"key":"value"` at `at` of an object's text: after a comma unless it is the object's first member.
fn extra_member(out: &mut Vec<u8>, text: &[u8], at: usize, key: &str, value: &str) {
    let first = at.checked_sub(1).and_then(|i| text.get(i)) == Some(&b'{');
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    let mut quoted = String::with_capacity(value.len() + 2);
    push_json_str(&mut quoted, value);
    out.extend_from_slice(quoted.as_bytes());
    if first {
        out.push(b',');
    }
}

/// `s` as the inside of a JSON string, `times` strings deep (an installation id is a UUID, which needs nothing).
fn push_escaped(out: &mut Vec<u8>, s: &str, times: usize) {
    if plain(s) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    let mut text = s.to_string();
    for _ in 0..times {
        let mut quoted = String::with_capacity(text.len() + 8);
        push_json_str(&mut quoted, &text);
        text = quoted.get(1..quoted.len() - 1).unwrap_or_default().to_string();
    }
    out.extend_from_slice(text.as_bytes());
}

/// Nothing in `s` needs escaping in a JSON string.
pub(super) fn plain(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// `s` as a JSON string, escaped as `serde_json` escapes it (`\"`, `\\`, the short forms of `\n`, `\t`, ...,
/// `\u00xx` for the other control characters), a run of plain bytes at a time.
pub(super) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    push_json_inside(out, s);
    out.push('"');
}

/// `s` escaped as the inside of a JSON string (the turn metadata's JSON text goes into the body as a string: its
/// quotes are most of what this escapes).
pub(super) fn push_json_inside(out: &mut String, s: &str) {
    if plain(s) {
        out.push_str(s);
        return;
    }
    // Without control characters (the usual JSON text) only quotes and backslashes are escaped: found with memchr
    // a run at a time, not byte by byte.
    if !s.bytes().any(|b| b < 0x20) {
        let mut from = 0;
        for i in memchr::memchr2_iter(b'"', b'\\', s.as_bytes()) {
            out.push_str(s.get(from..i).unwrap_or_default());
            out.push('\\');
            from = i;
        }
        out.push_str(s.get(from..).unwrap_or_default());
        return;
    }
    let mut from = 0;
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
        out.push_str(s.get(from..i).unwrap_or_default());
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escaped);
        }
        from = i + 1;
    }
    out.push_str(s.get(from..).unwrap_or_default());
}

/// An object's text written member by member, in the order given (the caller's order is the official one).
pub(super) struct ObjectWriter {
    pub(super) t: Template,
    /// The same object as the inside of a JSON string, written along when asked for: the turn metadata goes into
    /// the body as a string, and written twice at once it needs no escaping pass (its values are nearly all UUIDs
    /// and names, which need no escaping).
    twin: Option<Template>,
}

impl ObjectWriter {
    pub(super) fn with_capacity(n: usize) -> ObjectWriter {
        ObjectWriter { t: Template::with_capacity(n), twin: None }
    }

    /// A writer that also writes the object's escaped twin ([`ObjectWriter::close_with_twin`]).
    pub(super) fn with_twin(n: usize) -> ObjectWriter {
        ObjectWriter { t: Template::with_capacity(n), twin: Some(Template::with_capacity(n + n / 4)) }
    }

    /// JSON text `raw`, and in the twin the same escaped.
    fn both(&mut self, raw: &str) {
        self.t.text.push_str(raw);
        if let Some(twin) = &mut self.twin {
            push_json_inside(&mut twin.text, raw);
        }
    }

    /// A string needing no escaping, quoted (`\"` in the twin).
    fn quoted_plain(&mut self, s: &str) {
        self.t.text.push('"');
        self.t.text.push_str(s);
        self.t.text.push('"');
        if let Some(twin) = &mut self.twin {
            twin.text.push_str("\\\"");
            twin.text.push_str(s);
            twin.text.push_str("\\\"");
        }
    }

    /// A string, quoted and escaped.
    fn quoted(&mut self, s: &str) {
        if plain(s) {
            return self.quoted_plain(s);
        }
        let mut text = String::with_capacity(s.len() + 8);
        push_json_str(&mut text, s);
        self.both(&text);
    }

    /// JSON punctuation, the same in the twin.
    fn punct(&mut self, c: char) {
        self.t.text.push(c);
        if let Some(twin) = &mut self.twin {
            twin.text.push(c);
        }
    }

    /// The separator before a member.
    fn separator(&mut self) {
        self.punct(if self.t.text.is_empty() { '{' } else { ',' });
    }

    /// `"key":` after the separator.
    pub(super) fn key(&mut self, key: &str) {
        self.separator();
        self.quoted(key);
        self.punct(':');
    }

    /// [`ObjectWriter::key`] for a key that needs no escaping (a name of the official client's): not checked.
    fn plain_key(&mut self, key: &str) {
        debug_assert!(plain(key), "{key:?}");
        self.separator();
        self.quoted_plain(key);
        self.punct(':');
    }

    pub(super) fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        self.quoted(value);
    }

    /// A string member whose key and value need no escaping (names, UUIDs, numbers): not checked.
    pub(super) fn plain_string(&mut self, key: &str, value: &str) {
        debug_assert!(plain(value), "{key:?}: {value:?}");
        self.plain_key(key);
        self.quoted_plain(value);
    }

    /// A value written as it is (a number, `true`) under a key, neither needing escaping: not checked.
    pub(super) fn plain_literal(&mut self, key: &str, value: &str) {
        debug_assert!(plain(value), "{key:?}: {value:?}");
        self.plain_key(key);
        self.t.text.push_str(value);
        if let Some(twin) = &mut self.twin {
            twin.text.push_str(value);
        }
    }

    /// A value written as it is (a number, `true`, a JSON text).
    pub(super) fn literal(&mut self, key: &str, value: &str) {
        self.key(key);
        self.both(value);
    }

    /// A string whose value goes in a hole (the twin's hole one string deeper).
    pub(super) fn hole_string(&mut self, key: &str, hole: Hole) {
        self.key(key);
        self.t.text.push('"');
        self.t.hole(hole);
        self.t.text.push('"');
        if let Some(twin) = &mut self.twin {
            twin.text.push_str("\\\"");
            twin.hole(deeper(hole));
            twin.text.push_str("\\\"");
        }
    }

    /// A string whose value is `json` (a JSON object's text with holes), escaped; its installation-id holes become
    /// [`Hole::InstallationTwice`].
    pub(super) fn embedded(&mut self, key: &str, json: &Template) {
        self.key(key);
        self.t.text.push('"');
        let mut from = 0;
        for &(at, hole) in &json.holes {
            let Some(hole) = hole else { break };
            push_json_inside(&mut self.t.text, json.text.get(from..at).unwrap_or_default());
            from = at;
            self.t.hole(deeper(hole));
        }
        push_json_inside(&mut self.t.text, json.text.get(from..).unwrap_or_default());
        self.t.text.push('"');
    }

    /// A string whose value is an object's escaped twin ([`ObjectWriter::close_with_twin`]), as it is.
    pub(super) fn embedded_twin(&mut self, key: &str, twin: &Template) {
        self.key(key);
        self.t.text.push('"');
        let offset = self.t.text.len();
        self.t.text.push_str(&twin.text);
        for &(at, hole) in &twin.holes {
            let Some(hole) = hole else { break };
            if let Some(slot) = self.t.holes.iter_mut().find(|(_, h)| h.is_none()) {
                *slot = (offset + at, Some(hole));
            }
        }
        self.t.text.push('"');
    }

    pub(super) fn close(mut self) -> Template {
        if self.t.text.is_empty() {
            self.punct('{');
        }
        self.punct('}');
        self.t
    }

    /// The object, and its escaped twin (empty without one).
    pub(super) fn close_with_twin(self) -> (Template, Template) {
        let mut w = self;
        if w.t.text.is_empty() {
            w.punct('{');
        }
        w.punct('}');
        (w.t, w.twin.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn filled(t: &Template, installation: &str, ws: Option<WebsocketTurn<'_>>) -> Value {
        let mut out = Vec::new();
        t.fill(&mut out, &Values { installation }, ws);
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn holes_are_filled_escaped_as_deep_as_they_sit() {
        let mut inner = ObjectWriter::with_capacity(16);
        inner.hole_string("installation_id", Hole::Installation);
        inner.string("q", "a \"quoted\" \\ value\twith\u{1} controls");
        inner.literal("n", "5");
        let inner = inner.close();
        let mut outer = ObjectWriter::with_capacity(16);
        outer.string("a", "1");
        outer.hole_string("id", Hole::Installation);
        outer.embedded("meta", &inner);
        outer.t.hole(Hole::TurnState);
        outer.string("w", "2");
        outer.t.hole(Hole::StreamStart);
        let outer = outer.close();
        for id in ["2f0d1e33-8a4c-4a53-9b35-1d0d3c2e5f10", "odd \"id\""] {
            let v = filled(&outer, id, None);
            assert_eq!(v["id"], id);
            let meta: Value = serde_json::from_str(v["meta"].as_str().unwrap_or_default()).unwrap_or_default();
            assert_eq!(meta, json!({"installation_id": id, "q": "a \"quoted\" \\ value\twith\u{1} controls", "n": 5}));
            assert!(v.get("x-codex-turn-state").is_none() && v.get("x-codex-ws-stream-request-start-ms").is_none());
        }
        let ws = WebsocketTurn { turn_state: Some("ts \"1\""), now_ms: 1234, lite: false };
        let v = filled(&outer, "i", Some(ws));
        assert_eq!(v["x-codex-turn-state"], "ts \"1\"");
        assert_eq!(v["x-codex-ws-stream-request-start-ms"], "1234");
        let v = filled(&outer, "i", Some(WebsocketTurn { turn_state: None, now_ms: 7, lite: false }));
        assert!(v.get("x-codex-turn-state").is_none());
        assert_eq!(v["x-codex-ws-stream-request-start-ms"], "7");
    }

    #[test]
    fn the_twin_is_the_object_escaped_with_its_holes() {
        let mut w = ObjectWriter::with_twin(8);
        w.hole_string("installation_id", Hole::Installation);
        w.plain_string("id", "0d4c");
        w.plain_string("turn", "0");
        w.plain_literal("started", "1");
        w.string("q", "say \"hi\"\n");
        w.literal("n", "12");
        let (raw, twin) = w.close_with_twin();
        let mut outer = ObjectWriter::with_capacity(8);
        outer.embedded("a", &raw);
        outer.embedded_twin("b", &twin);
        let v = filled(&outer.close(), "in\"st", None);
        assert_eq!(v["a"], v["b"]);
        let inner: Value = serde_json::from_str(v["b"].as_str().unwrap_or_default()).unwrap_or_default();
        let expected = json!({"installation_id": "in\"st", "id": "0d4c", "turn": "0", "started": 1, "q": "say \"hi\"\n",
            "n": 12});
        assert_eq!(inner, expected);
    }

    #[test]
    fn a_websocket_member_may_open_an_object() {
        let mut w = ObjectWriter::with_capacity(8);
        w.t.text.push('{');
        w.t.hole(Hole::StreamStart);
        w.t.text.push_str("\"z\":1");
        let t = w.close();
        let v = filled(&t, "i", Some(WebsocketTurn { turn_state: None, now_ms: 3, lite: false }));
        assert_eq!(v, json!({"x-codex-ws-stream-request-start-ms": "3", "z": 1}));
        assert_eq!(filled(&ObjectWriter::with_capacity(0).close(), "i", None), json!({}));
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
}
