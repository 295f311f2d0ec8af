//! Turning a reply [`Plan`] into the exact SSE byte frames the Codex backend sends: `event:` +
//! `data:` framing, increasing `sequence_number`, the per-item event families (message,
//! reasoning, function call, web search), and the terminal event (completed / incomplete /
//! failed / none when cut). Pure: `responses.rs` builds the plan and streams the [`Step`]s.

use bytes::Bytes;
use serde_json::{Value, json};

/// One thing the streaming task does.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Event(Bytes),
    Sleep(u64),
    /// Abort the connection (no terminal chunk).
    Cut,
    /// Send `: ping` every this many milliseconds, forever (the last step).
    Trickle(u64),
}

/// One output item to emit.
#[derive(Debug, Clone)]
pub enum PlanItem {
    /// `summary` None emits no summary part; `encrypted` None omits encrypted_content.
    Reasoning {
        summary: Option<String>,
        encrypted: Option<String>,
    },
    Message {
        text: String,
    },
    FunctionCall {
        name: String,
        arguments: String,
        call_id: String,
    },
    WebSearch {
        query: String,
    },
    /// A `compaction` item (compaction v2: the answer to a `compaction_trigger` input item).
    Compaction {
        encrypted: String,
    },
}

/// How the stream ends.
#[derive(Debug, Clone)]
pub enum Ending {
    Completed,
    Incomplete(String),
    Failed { code: String, message: String },
    Cut,
}

/// A whole reply.
#[derive(Debug, Clone)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    pub ending: Ending,
    pub deltas: usize,
    pub delay_ms: u64,
    pub silence_ms: u64,
    /// A `keepalive` event every this many ms during the silence (0: plain silence).
    pub silence_keepalive_ms: u64,
    /// Abort after this many text deltas in total.
    pub cut_after_deltas: Option<usize>,
    pub completed_output: bool,
    /// Only comments after the start: (interval in ms, whether `response.created` comes first).
    pub trickle: Option<(u64, bool)>,
    /// The text delta with this number (from 0) is sent as a `data:` line that is not JSON.
    pub malformed_delta_at: Option<usize>,
    /// An event of this (unknown) type after `response.in_progress`.
    pub unknown_event: Option<String>,
}

impl Plan {
    pub fn new(items: Vec<PlanItem>, deltas: usize) -> Self {
        Self {
            items,
            ending: Ending::Completed,
            deltas,
            delay_ms: 0,
            silence_ms: 0,
            silence_keepalive_ms: 0,
            cut_after_deltas: None,
            completed_output: false,
            trickle: None,
            malformed_delta_at: None,
            unknown_event: None,
        }
    }
}

/// How a stream's events are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Every event is its own body chunk: one HTTP/1.1 chunk, one HTTP/2 DATA frame, as the real backend flushes
    /// each event when it is produced. Events with no pause between them are all ready at once, so the server
    /// writes them together (as TCP delivers a burst a fast model produced): each keeps its own framing, so a
    /// reader pays the per-frame cost users' streams have, but not a wake-up per event.
    #[default]
    PerEvent,
    /// One event per chunk / DATA frame as with `PerEvent`, but a burst reaches the socket a few events per write
    /// (at most [`TRICKLE_EVENTS`]), with a task switch between writes: what the fake did before 2026-11-22
    /// (its stream went through a 4-slot channel). A named benchmark scenario (`--framing trickle`), close
    /// to a stream paced at a few microseconds.
    Trickle,
    /// Events with no pause between them go out as one buffer (up to 16 KB): the benchmark's framing before
    /// issue 26, kept as a named scenario (`--framing burst`).
    Burst,
}

/// Response-level facts.
pub struct Meta {
    pub response_id: String,
    pub model: String,
    pub created_at: i64,
    pub input_tokens: u64,
    pub cached_tokens: u64,
    /// Input tokens written to the prompt cache (reported by the models whose catalog entry says so).
    pub cache_write_tokens: u64,
    pub keepalive: bool,
    pub framing: Framing,
}

/// Tokens of a text: ceil(bytes / 4).
pub fn approx_tokens(len: usize) -> u64 {
    len.div_ceil(4) as u64
}

/// Split `text` into at most `n` non-empty pieces on char boundaries (none for ""); the pieces borrow `text`.
pub fn split_deltas(text: &str, n: usize) -> Vec<&str> {
    let count = text.chars().count();
    if count == 0 {
        return Vec::new();
    }
    let n = n.clamp(1, count);
    let base = count / n;
    let extra = count % n;
    let mut out = Vec::with_capacity(n);
    let mut rest = text;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        let end = rest.char_indices().nth(len).map_or(rest.len(), |(at, _)| at);
        let (piece, tail) = rest.split_at(end);
        out.push(piece);
        rest = tail;
    }
    out
}

/// The usage object for a plan.
pub fn usage(plan: &Plan, meta: &Meta) -> Value {
    let mut out_len = 0;
    let mut reasoning = 0u64;
    for item in &plan.items {
        match item {
            PlanItem::Message { text } => out_len += text.len(),
            PlanItem::FunctionCall { arguments, .. } => out_len += arguments.len(),
            PlanItem::Reasoning { .. } => reasoning += 16,
            PlanItem::WebSearch { query } => out_len += query.len(),
            PlanItem::Compaction { encrypted } => out_len += encrypted.len(),
        }
    }
    let output = approx_tokens(out_len) + reasoning;
    json!({
        "input_tokens": meta.input_tokens,
        "input_tokens_details": {"cache_write_tokens": meta.cache_write_tokens, "cached_tokens": meta.cached_tokens},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": meta.input_tokens + output,
        "codex_rollout_budget_units": budget_units(meta, output),
    })
}

/// The response's cost in the backend's budget units (`codex_rollout_budget_units`, 0.171): opaque to clients.
/// The fake's own rule, after the official client's fallback when the backend gives none (uncached input plus
/// output, at weight 1), with cached input at a tenth so that the units are fractional like the real ones.
pub fn budget_units(meta: &Meta, output: u64) -> f64 {
    let uncached = meta.input_tokens.saturating_sub(meta.cached_tokens);
    uncached as f64 + output as f64 + meta.cached_tokens as f64 / 10.0
}

/// Events handed to the server per write in [`Framing::Trickle`].
pub const TRICKLE_EVENTS: usize = 4;

/// Largest chunk the fake writes at once: events with no pause between them go out together, as a server
/// that produces faster than the socket drains would send them.
const MAX_BURST: usize = 16 * 1024;

/// Serialises events straight into the current burst; a pause, a cut or a full burst closes it as one
/// [`Step::Event`]. With [`Framing::PerEvent`] and `Trickle` every event closes its own burst (one step per
/// event); with [`Framing::Burst`] a 200-delta reply is a handful of buffers.
struct Writer {
    seq: u64,
    steps: Vec<Step>,
    burst: Vec<u8>,
    keepalive: bool,
    framing: Framing,
}

/// The bytes of one `response.output_text.delta` frame around its delta, fields in the backend's order (`type`,
/// then the rest sorted: [`Writer::emit`]), so the frame equals that of the generic path. Written by hand because
/// 200-delta benchmark streams are mostly these: only the delta is escaped per event, the rest once per item.
struct TextDeltaFrame {
    /// `,"item_id":…,"logprobs":[],"output_index":N,"sequence_number":`
    middle: String,
}

impl TextDeltaFrame {
    const HEAD: &'static [u8] =
        b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"content_index\":0,\"delta\":";
    const TAIL: &'static [u8] = b"}\n\n";

    fn new(item_id: &str, output_index: usize) -> Self {
        let id = Value::from(item_id).to_string();
        Self {
            middle: format!(",\"item_id\":{id},\"logprobs\":[],\"output_index\":{output_index},\"sequence_number\":"),
        }
    }
}

impl Writer {
    fn new(keepalive: bool, framing: Framing) -> Self {
        Self { seq: 0, steps: Vec::new(), burst: Vec::new(), keepalive, framing }
    }

    /// Close the current burst, then add a non-event step.
    fn push_step(&mut self, step: Step) {
        self.close_burst();
        self.steps.push(step);
    }

    fn close_burst(&mut self) {
        if !self.burst.is_empty() {
            // One exact copy per burst, and the writer keeps its buffer: a reply's steps are all built up front, so
            // no burst keeps slack. (The buffer taken whole grew from nothing for every event, and a vector with
            // spare room becomes a `Bytes` with a shared header: another allocation, and an atomic count on every
            // drop, which over HTTP/2 came on each DATA frame's release.)
            self.steps.push(Step::Event(Bytes::copy_from_slice(&self.burst)));
            self.burst.clear();
        }
    }

    fn finish(mut self) -> Vec<Step> {
        self.close_burst();
        self.steps
    }

    /// `event: <ty>\ndata: <json>\n\n` with `type` and `sequence_number` added, serialised straight into the
    /// current burst: `type` first, then the other members sorted, as the backend writes its events (the
    /// recorded streams in the shared replay set).
    fn emit(&mut self, ty: &str, mut payload: Value) {
        if let Value::Object(map) = &mut payload {
            map.insert("sequence_number".into(), json!(self.seq));
            map.sort_keys();
            map.shift_insert(0, "type".into(), json!(ty));
        }
        let start = self.burst.len();
        self.burst.extend_from_slice(b"event: ");
        self.burst.extend_from_slice(ty.as_bytes());
        self.burst.extend_from_slice(b"\ndata: ");
        if serde_json::to_writer(&mut self.burst, &payload).is_err() {
            self.burst.truncate(start);
            return;
        }
        self.burst.extend_from_slice(b"\n\n");
        self.frame_written();
    }

    /// After a whole frame: the next sequence number, and the burst closed once it is full (or at once, one
    /// event per frame).
    fn frame_written(&mut self) {
        self.seq += 1;
        self.event_written();
    }

    /// After any event's bytes (keepalives included): close the burst if the framing says so.
    fn event_written(&mut self) {
        if self.framing != Framing::Burst || self.burst.len() >= MAX_BURST {
            self.close_burst();
        }
    }

    fn text_delta(&mut self, frame: &TextDeltaFrame, delta: &str) {
        let start = self.burst.len();
        self.burst.extend_from_slice(TextDeltaFrame::HEAD);
        if serde_json::to_writer(&mut self.burst, delta).is_err() {
            self.burst.truncate(start);
            return;
        }
        self.burst.extend_from_slice(frame.middle.as_bytes());
        self.burst.extend_from_slice(itoa::Buffer::new().format(self.seq).as_bytes());
        self.burst.extend_from_slice(TextDeltaFrame::TAIL);
        self.frame_written();
    }

    fn keepalive(&mut self) {
        if self.keepalive {
            self.burst.extend_from_slice(b"event: keepalive\ndata: {\"type\":\"keepalive\"}\n\n");
            self.event_written();
        }
    }
}

fn response_obj(meta: &Meta, status: &str, output: Value, usage: Value) -> Value {
    json!({
        "id": meta.response_id,
        "object": "response",
        "created_at": meta.created_at,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "model": meta.model,
        "output": output,
        "parallel_tool_calls": true,
        "store": false,
        "usage": usage,
    })
}

/// Build every step of the reply.
pub fn build(plan: &Plan, meta: &Meta) -> Vec<Step> {
    let mut w = Writer::new(meta.keepalive, meta.framing);
    let initial = response_obj(meta, "in_progress", json!([]), Value::Null);
    if let Some((interval_ms, after_created)) = plan.trickle {
        if after_created {
            w.emit("response.created", json!({"response": initial}));
        }
        w.push_step(Step::Trickle(interval_ms));
        return w.finish();
    }
    w.emit("response.created", json!({"response": initial}));
    if plan.silence_ms > 0 && plan.silence_keepalive_ms > 0 {
        let mut left = plan.silence_ms;
        while left > 0 {
            let pause = left.min(plan.silence_keepalive_ms);
            w.push_step(Step::Sleep(pause));
            left -= pause;
            w.burst.extend_from_slice(b"event: keepalive\ndata: {\"type\":\"keepalive\"}\n\n");
            w.event_written();
        }
    } else if plan.silence_ms > 0 {
        w.push_step(Step::Sleep(plan.silence_ms));
    }
    w.emit("response.in_progress", json!({"response": initial}));
    if let Some(ty) = &plan.unknown_event {
        w.emit(ty, json!({"note": "an event type fake-codex made up"}));
    }
    w.keepalive();
    let mut done_items = Vec::new();
    let mut deltas_sent = 0usize;
    for (idx, item) in plan.items.iter().enumerate() {
        let cut = emit_item(&mut w, plan, idx, item, &mut deltas_sent, &mut done_items);
        if cut {
            w.push_step(Step::Cut);
            return w.finish();
        }
    }
    w.keepalive();
    let usage = usage(plan, meta);
    let output = if plan.completed_output { Value::Array(done_items) } else { json!([]) };
    match &plan.ending {
        Ending::Completed => {
            let r = response_obj(meta, "completed", output, usage);
            w.emit("response.completed", json!({"response": r}));
        }
        Ending::Incomplete(reason) => {
            let mut r = response_obj(meta, "incomplete", output, usage);
            r["incomplete_details"] = json!({"reason": reason});
            w.emit("response.incomplete", json!({"response": r}));
        }
        Ending::Failed { code, message } => {
            let mut r = response_obj(meta, "failed", json!([]), usage);
            r["error"] = json!({"code": code, "message": message});
            w.emit("response.failed", json!({"response": r}));
        }
        Ending::Cut => w.push_step(Step::Cut),
    }
    w.finish()
}

/// Emit one item's events; true when the stream must be cut here.
fn emit_item(
    w: &mut Writer,
    plan: &Plan,
    idx: usize,
    item: &PlanItem,
    deltas_sent: &mut usize,
    done_items: &mut Vec<Value>,
) -> bool {
    match item {
        PlanItem::Message { text } => {
            let id = crate::tokens::random_id("msg_");
            w.emit(
                "response.output_item.added",
                json!({"output_index": idx, "item": {"id": id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}}),
            );
            let empty = json!({"type": "output_text", "text": "", "annotations": []});
            w.emit(
                "response.content_part.added",
                json!({"item_id": id, "output_index": idx, "content_index": 0, "part": empty}),
            );
            let frame = TextDeltaFrame::new(&id, idx);
            for d in split_deltas(text, plan.deltas) {
                if plan.cut_after_deltas == Some(*deltas_sent) {
                    return true;
                }
                if plan.delay_ms > 0 {
                    w.push_step(Step::Sleep(plan.delay_ms));
                }
                if plan.malformed_delta_at == Some(*deltas_sent) {
                    // Cut off inside the JSON string: a frame no parser can read.
                    w.burst.extend_from_slice(TextDeltaFrame::HEAD);
                    w.burst.extend_from_slice(b"\"unterminated\n\n");
                    w.frame_written();
                } else {
                    w.text_delta(&frame, d);
                }
                *deltas_sent += 1;
            }
            if plan.cut_after_deltas.is_some_and(|n| n <= *deltas_sent) {
                return true;
            }
            w.emit(
                "response.output_text.done",
                json!({"item_id": id, "output_index": idx, "content_index": 0, "text": text, "logprobs": []}),
            );
            let part = json!({"type": "output_text", "text": text, "annotations": []});
            w.emit(
                "response.content_part.done",
                json!({"item_id": id, "output_index": idx, "content_index": 0, "part": part}),
            );
            let full =
                json!({"id": id, "type": "message", "status": "completed", "role": "assistant", "content": [part]});
            w.emit("response.output_item.done", json!({"output_index": idx, "item": full}));
            done_items.push(full);
        }
        PlanItem::Reasoning { summary, encrypted } => {
            let id = crate::tokens::random_id("rs_");
            w.emit(
                "response.output_item.added",
                json!({"output_index": idx, "item": {"id": id, "type": "reasoning", "summary": []}}),
            );
            let mut parts = Vec::new();
            if let Some(text) = summary {
                let empty = json!({"type": "summary_text", "text": ""});
                w.emit(
                    "response.reasoning_summary_part.added",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0, "part": empty}),
                );
                for d in split_deltas(text, plan.deltas) {
                    if plan.delay_ms > 0 {
                        w.push_step(Step::Sleep(plan.delay_ms));
                    }
                    w.emit(
                        "response.reasoning_summary_text.delta",
                        json!({"item_id": id, "output_index": idx, "summary_index": 0, "delta": d}),
                    );
                }
                w.emit(
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0, "text": text}),
                );
                let part = json!({"type": "summary_text", "text": text});
                w.emit(
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": idx, "summary_index": 0, "part": part}),
                );
                parts.push(part);
            }
            let mut full = json!({"id": id, "type": "reasoning", "summary": parts});
            if let Some(enc) = encrypted {
                full["encrypted_content"] = json!(enc);
            }
            w.emit("response.output_item.done", json!({"output_index": idx, "item": full}));
            done_items.push(full);
        }
        PlanItem::FunctionCall { name, arguments, call_id } => {
            let id = crate::tokens::random_id("fc_");
            w.emit(
                "response.output_item.added",
                json!({"output_index": idx, "item": {"id": id, "type": "function_call", "status": "in_progress", "call_id": call_id, "name": name, "arguments": ""}}),
            );
            for d in split_deltas(arguments, plan.deltas.max(3)) {
                if plan.delay_ms > 0 {
                    w.push_step(Step::Sleep(plan.delay_ms));
                }
                w.emit(
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": idx, "delta": d}),
                );
            }
            w.emit(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": idx, "name": name, "arguments": arguments}),
            );
            let full = json!({"id": id, "type": "function_call", "status": "completed", "call_id": call_id, "name": name, "arguments": arguments});
            w.emit("response.output_item.done", json!({"output_index": idx, "item": full}));
            done_items.push(full);
        }
        PlanItem::Compaction { encrypted } => {
            let id = crate::tokens::random_id("cmp_");
            w.emit(
                "response.output_item.added",
                json!({"output_index": idx, "item": {"id": id, "type": "compaction"}}),
            );
            let full = json!({"id": id, "type": "compaction", "encrypted_content": encrypted});
            w.emit("response.output_item.done", json!({"output_index": idx, "item": full}));
            done_items.push(full);
        }
        PlanItem::WebSearch { query } => {
            let id = crate::tokens::random_id("ws_");
            w.emit(
                "response.output_item.added",
                json!({"output_index": idx, "item": {"id": id, "type": "web_search_call", "status": "in_progress"}}),
            );
            for ev in [
                "response.web_search_call.in_progress",
                "response.web_search_call.searching",
                "response.web_search_call.completed",
            ] {
                w.emit(ev, json!({"item_id": id, "output_index": idx}));
            }
            let full = json!({"id": id, "type": "web_search_call", "status": "completed", "action": {"type": "search", "query": query}});
            w.emit("response.output_item.done", json!({"output_index": idx, "item": full}));
            done_items.push(full);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_delta_has_the_bytes_of_the_generic_path() {
        let mut typed = Writer { seq: 7, ..Writer::new(false, Framing::Burst) };
        let mut generic = Writer { seq: 7, ..Writer::new(false, Framing::Burst) };
        typed.text_delta(&TextDeltaFrame::new("msg_1", 2), "a\"b\n\u{e9}");
        generic.emit(
            "response.output_text.delta",
            json!({"item_id": "msg_1", "output_index": 2, "content_index": 0, "delta": "a\"b\n\u{e9}", "logprobs": []}),
        );
        assert_eq!(typed.seq, 8);
        assert_eq!(typed.finish(), generic.finish());
    }

    fn meta() -> Meta {
        Meta {
            response_id: "resp_1".into(),
            model: "gpt-5".into(),
            created_at: 0,
            input_tokens: 10,
            cached_tokens: 0,
            cache_write_tokens: 0,
            keepalive: false,
            framing: Framing::Burst,
        }
    }

    fn events(bytes: &[u8]) -> Vec<String> {
        let text = std::str::from_utf8(bytes).unwrap_or_default();
        text.split_terminator("\n\n").map(str::to_string).collect()
    }

    #[test]
    fn events_without_pauses_are_sent_as_a_few_bursts_and_pauses_split_them() {
        let text = "word ".repeat(400);
        let plan = Plan::new(vec![PlanItem::Message { text: text.clone() }], 200);
        let steps = build(&plan, &meta());
        assert!(steps.len() > 1 && steps.len() < 10, "{} bursts", steps.len());
        let mut all = Vec::new();
        for step in &steps {
            let Step::Event(bytes) = step else { panic!("unexpected step {step:?}") };
            assert!(bytes.len() < MAX_BURST + 1024, "a burst of {} bytes", bytes.len());
            assert!(bytes.ends_with(b"\n\n"), "a burst ends between events");
            all.extend_from_slice(bytes);
        }
        let all = events(&all);
        // created, in_progress, item added, part added, 200 deltas, text done, part done, item done, completed
        assert_eq!(all.len(), 208);
        let deltas: String = all
            .iter()
            .filter(|e| e.starts_with("event: response.output_text.delta\n"))
            .map(|e| {
                let data: Value =
                    serde_json::from_str(e.split_once("data: ").map_or("", |(_, d)| d)).unwrap_or_default();
                data["delta"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        assert_eq!(deltas, text);

        let mut paced = plan;
        paced.delay_ms = 5;
        let steps = build(&paced, &meta());
        assert_eq!(steps.iter().filter(|s| matches!(s, Step::Sleep(5))).count(), 200);
        assert!(
            steps.windows(2).all(|w| !matches!(w, [Step::Event(_), Step::Event(_)])),
            "a pause separates every burst"
        );
    }

    /// The default framing is the real backend's: every event is its own step (one HTTP/1.1 chunk, one HTTP/2
    /// DATA frame), keepalive events included, and the bytes are those of the burst framing.
    #[test]
    fn per_event_framing_sends_every_event_as_its_own_step() {
        let text = "word ".repeat(40);
        let plan = Plan::new(vec![PlanItem::Message { text }], 20);
        let per_event = Meta { framing: Framing::PerEvent, keepalive: true, ..meta() };
        let steps = build(&plan, &per_event);
        let mut all = Vec::new();
        for step in &steps {
            let Step::Event(bytes) = step else { panic!("unexpected step {step:?}") };
            assert_eq!(events(bytes).len(), 1, "one event per step: {:?}", String::from_utf8_lossy(bytes));
            all.extend_from_slice(bytes);
        }
        // created, in_progress, keepalive, item added, part added, 20 deltas, text done, part done, item done,
        // keepalive, completed
        assert_eq!(steps.len(), 30);
        let burst: Vec<u8> = build(&plan, &Meta { framing: Framing::Burst, keepalive: true, ..meta() })
            .into_iter()
            .flat_map(|s| match s {
                Step::Event(b) => b.to_vec(),
                other => panic!("unexpected step {other:?}"),
            })
            .collect();
        // The same events in the same order (item ids are random per build).
        let names = |b: &[u8]| events(b).into_iter().map(|e| e.lines().next().map(str::to_string)).collect::<Vec<_>>();
        assert_eq!(names(&all), names(&burst));
        assert!(all.len() > 4000 && all.len().abs_diff(burst.len()) < 8, "{} and {} bytes", all.len(), burst.len());
        assert_eq!(crate::FakeConfig::default().framing, Framing::PerEvent);
        // Trickle frames exactly as PerEvent does (only how many frames reach a write differs).
        let trickle = build(&plan, &Meta { framing: Framing::Trickle, keepalive: true, ..meta() });
        assert_eq!(trickle.len(), steps.len());
        assert!(trickle.iter().all(|s| matches!(s, Step::Event(b) if events(b).len() == 1)));
    }

    /// A malformed delta is one frame whose `data:` is not JSON; the others parse and the response completes.
    /// A trickle plan is `response.created` (when asked) and then the trickle step only.
    #[test]
    fn misbehaving_plans() {
        let mut plan = Plan::new(vec![PlanItem::Message { text: "one two three four".into() }], 4);
        plan.malformed_delta_at = Some(1);
        let bytes: Vec<u8> = build(&plan, &meta())
            .into_iter()
            .flat_map(|s| match s {
                Step::Event(b) => b.to_vec(),
                other => panic!("unexpected step {other:?}"),
            })
            .collect();
        let frames = events(&bytes);
        let bad: Vec<_> = frames
            .iter()
            .filter(|e| serde_json::from_str::<Value>(e.split_once("data: ").map_or("", |(_, d)| d)).is_err())
            .collect();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].starts_with("event: response.output_text.delta\n"));
        assert!(frames.last().is_some_and(|e| e.starts_with("event: response.completed\n")));

        let mut plan = Plan::new(Vec::new(), 1);
        plan.trickle = Some((100, true));
        let steps = build(&plan, &meta());
        assert_eq!(steps.len(), 2, "{steps:?}");
        assert!(matches!(&steps[0], Step::Event(b) if b.starts_with(b"event: response.created\n")));
        assert_eq!(steps[1], Step::Trickle(100));
        plan.trickle = Some((100, false));
        assert_eq!(build(&plan, &meta()), vec![Step::Trickle(100)]);
    }

    #[test]
    fn split_covers_text() {
        assert_eq!(split_deltas("abcdefghij", 4).concat(), "abcdefghij");
        assert_eq!(split_deltas("abcdefghij", 4).len(), 4);
        assert_eq!(split_deltas("ab", 4).len(), 2);
        assert!(split_deltas("", 4).is_empty());
        assert_eq!(split_deltas("héllo", 2).concat(), "héllo");
    }
}
