//! The turn identity the gateway writes for a caller that sent none (every client but the official one): the turn
//! metadata and `client_metadata` laid out as the official client (0.169) writes them for a turn of a new
//! interactive session, with the runs between values written whole. This runs for every request of every other
//! client, so it is one copy per run instead of one per quote and name (docs/performance.md, "Turn identity
//! layout"); a test holds it to the general writer ([`super::template::ObjectWriter`]).

use super::template::{Hole, Template, plain, push_json_inside};
use super::turn::RequestKind;

/// What a written turn is made of: the values a gateway can know are the request's own.
pub(super) struct Written<'a> {
    /// The thread (and session) id, a UUID.
    pub thread_id: &'a str,
    /// The turn id, a UUID.
    pub turn_id: &'a str,
    /// `<thread id>:0`.
    pub window: &'a str,
    /// The context window id, a UUID.
    pub context: &'a str,
    pub kind: RequestKind,
    pub now_ms: i64,
    pub slug: &'a str,
    pub effort: Option<&'a str>,
}

/// The turn metadata as JSON text (the header's copy) and as the inside of a JSON string (the body's copy), each
/// with a hole for the installation id.
struct Pair {
    raw: Template,
    escaped: Template,
}

impl Pair {
    /// A run of JSON text, given in both forms.
    fn run(&mut self, raw: &str, escaped: &str) {
        self.raw.text.push_str(raw);
        self.escaped.text.push_str(escaped);
    }

    /// A string's value (inside its quotes).
    fn value(&mut self, v: &str) {
        if plain(v) {
            self.raw.text.push_str(v);
            self.escaped.text.push_str(v);
        } else {
            let start = self.raw.text.len();
            push_json_inside(&mut self.raw.text, v);
            let once = self.raw.text.get(start..).unwrap_or_default().to_string();
            push_json_inside(&mut self.escaped.text, &once);
        }
    }

    fn installation(&mut self) {
        self.raw.hole(Hole::Installation);
        self.escaped.hole(Hole::InstallationTwice);
    }
}

/// The turn metadata: the header's text and the body's escaped copy.
pub(super) fn turn_metadata(w: &Written<'_>) -> (Template, Template) {
    let size = 600 + 3 * w.thread_id.len() + w.slug.len();
    let mut p = Pair { raw: Template::with_capacity(size), escaped: Template::with_capacity(size + size / 4) };
    p.run(r#"{"installation_id":""#, r#"{\"installation_id\":\""#);
    p.installation();
    p.run(r#"","session_id":""#, r#"\",\"session_id\":\""#);
    p.value(w.thread_id);
    p.run(r#"","thread_id":""#, r#"\",\"thread_id\":\""#);
    p.value(w.thread_id);
    p.run(r#"","agent_name":"/root","turn_id":""#, r#"\",\"agent_name\":\"/root\",\"turn_id\":\""#);
    p.value(w.turn_id);
    p.run(r#"","window_id":""#, r#"\",\"window_id\":\""#);
    p.value(w.window);
    p.run(r#"","window_number":0,"context_window_id":""#, r#"\",\"window_number\":0,\"context_window_id\":\""#);
    p.value(w.context);
    p.run(r#"","request_kind":""#, r#"\",\"request_kind\":\""#);
    p.value(w.kind.as_str());
    p.run(
        r#"","history_initialization":"new","root_turn_id":""#,
        r#"\",\"history_initialization\":\"new\",\"root_turn_id\":\""#,
    );
    p.value(w.turn_id);
    p.run(
        r#"","thread_source":"user","sandbox":"seccomp","sandbox_mode":"workspace-write","auto_review_enabled":false,"node_repl_auto_review_required":false,"node_repl_disabled":false,"turn_started_at_unix_ms":"#,
        r#"\",\"thread_source\":\"user\",\"sandbox\":\"seccomp\",\"sandbox_mode\":\"workspace-write\",\"auto_review_enabled\":false,\"node_repl_auto_review_required\":false,\"node_repl_disabled\":false,\"turn_started_at_unix_ms\":"#,
    );
    let mut n = itoa::Buffer::new();
    let n = n.format(w.now_ms);
    p.run(n, n);
    p.run(r#","analytics_enabled":true,"model":""#, r#",\"analytics_enabled\":true,\"model\":\""#);
    p.value(w.slug);
    if let Some(effort) = w.effort {
        p.run(r#"","reasoning_effort":""#, r#"\",\"reasoning_effort\":\""#);
        p.value(effort);
    }
    p.run(r#""}"#, r#"\"}"#);
    (p.raw, p.escaped)
}

/// `client_metadata`, in key order, with the body's copy of the turn metadata (`escaped`) inside and holes for the
/// WebSocket-only members where their keys fall.
pub(super) fn client_metadata(w: &Written<'_>, escaped: &Template) -> Template {
    let mut t = Template::with_capacity(escaped.text.len() + 320);
    let value = |t: &mut Template, v: &str| {
        if plain(v) {
            t.text.push_str(v);
        } else {
            push_json_inside(&mut t.text, v);
        }
    };
    t.text
        .push_str(r#"{"guardian_credits_requested":"true","mcp_attribution":"{\"status\":\"none\"}","root_turn_id":""#);
    value(&mut t, w.turn_id);
    t.text.push_str(r#"","session_id":""#);
    value(&mut t, w.thread_id);
    t.text.push_str(r#"","thread_id":""#);
    value(&mut t, w.thread_id);
    t.text.push_str(r#"","turn_id":""#);
    value(&mut t, w.turn_id);
    t.text.push_str(r#"","x-codex-installation-id":""#);
    t.hole(Hole::Installation);
    t.text.push_str(r#"","x-codex-turn-metadata":""#);
    t.append(escaped);
    t.text.push('"');
    t.hole(Hole::TurnState);
    t.text.push_str(r#","x-codex-window-id":""#);
    value(&mut t, w.window);
    t.text.push('"');
    t.hole(Hole::StreamStart);
    t.text.push('}');
    t
}

#[cfg(test)]
mod tests {
    use super::super::template::ObjectWriter;
    use super::*;

    /// The general writer's text of the same turn metadata and `client_metadata` (the turn metadata escaped by
    /// the general escaping): the reference.
    fn general(w: &Written<'_>) -> (Template, Template) {
        let mut out = ObjectWriter::with_capacity(64);
        out.installation("installation_id", Hole::Installation);
        out.string("session_id", w.thread_id);
        out.string("thread_id", w.thread_id);
        out.string("agent_name", "/root");
        out.string("turn_id", w.turn_id);
        out.string("window_id", w.window);
        out.literal("window_number", "0");
        for (k, v) in [
            ("context_window_id", w.context),
            ("request_kind", w.kind.as_str()),
            ("history_initialization", "new"),
            ("root_turn_id", w.turn_id),
            ("thread_source", "user"),
            ("sandbox", "seccomp"),
            ("sandbox_mode", "workspace-write"),
        ] {
            out.string(k, v);
        }
        for k in ["auto_review_enabled", "node_repl_auto_review_required", "node_repl_disabled"] {
            out.literal(k, "false");
        }
        out.literal("turn_started_at_unix_ms", &w.now_ms.to_string());
        out.literal("analytics_enabled", "true");
        out.string("model", w.slug);
        if let Some(effort) = w.effort {
            out.string("reasoning_effort", effort);
        }
        let raw = out.close();
        let mut cm = ObjectWriter::with_capacity(64);
        for (k, v) in [
            ("guardian_credits_requested", "true"),
            ("mcp_attribution", r#"{"status":"none"}"#),
            ("root_turn_id", w.turn_id),
            ("session_id", w.thread_id),
            ("thread_id", w.thread_id),
            ("turn_id", w.turn_id),
        ] {
            cm.string(k, v);
        }
        cm.installation("x-codex-installation-id", Hole::Installation);
        cm.embedded("x-codex-turn-metadata", &raw);
        cm.t.hole(Hole::TurnState);
        cm.string("x-codex-window-id", w.window);
        cm.t.hole(Hole::StreamStart);
        (raw, cm.close())
    }

    fn filled(t: &Template, ws: bool) -> String {
        let mut out = Vec::new();
        let websocket = ws.then_some(super::super::turn::WebsocketTurn { turn_state: Some("s"), now_ms: 3 });
        t.fill(&mut out, "2f0d1e33-8a4c-4a53-9b35-1d0d3c2e5f10", websocket);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn the_layout_is_what_the_general_writer_writes() {
        let thread = "0f8e2c3a-1b2c-4d5e-8f90-a1b2c3d4e5f6";
        for (slug, effort, kind) in [
            ("gpt-5.4", Some("high"), RequestKind::Turn),
            ("gpt-5.5", None, RequestKind::Compaction),
            ("odd \"model\"\\name", Some("x\ny"), RequestKind::Turn),
        ] {
            let w = Written {
                thread_id: thread,
                turn_id: "019a0000-0000-7000-8000-000000000001",
                window: &format!("{thread}:0"),
                context: "5b6c7d8e-9f00-4a1b-8c2d-3e4f5a6b7c8d",
                kind,
                now_ms: 1_764_000_000_123,
                slug,
                effort,
            };
            let (raw, escaped) = turn_metadata(&w);
            let cm = client_metadata(&w, &escaped);
            let (g_raw, g_cm) = general(&w);
            for ws in [false, true] {
                assert_eq!(filled(&raw, ws), filled(&g_raw, ws), "{slug}");
                assert_eq!(filled(&cm, ws), filled(&g_cm, ws), "{slug}");
            }
            let text = filled(&raw, false);
            assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "{text}");
        }
    }
}
