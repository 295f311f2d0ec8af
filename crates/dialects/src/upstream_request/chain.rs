//! Chaining a conversation's turns on one upstream WebSocket, as the official client does (codex-rs
//! `core/src/client.rs`: `responses_request_properties_match`, `get_incremental_items`): when the request's
//! settings are those of the connection's last completed turn and its input begins with that turn's input and
//! output, only the new items are sent, with `previous_response_id`. The backend keeps the rest per connection.
//!
//! The gateway keeps digests, not items: 16 bytes per item of the conversation. An item's digest is of its
//! meaning (a message's role and texts, a call's id, name and arguments, ...), not of its JSON, so a client that
//! resends its history in its own dialect (a Chat client's assistant message as plain text, with no ids) is
//! recognised. Output items a dialect cannot carry (reasoning, hosted tool calls) may be missing from a client's
//! history: the backend has them, and continuing its chain keeps them in the context, where sending the whole
//! input would have lost them.
//!
//! Pure: a request's digests are taken when its body is written ([`ChainRequest::of`]); the transport keeps each
//! connection's [`Lineage`] (opaque to it) and asks [`ChainRequest::turn`] per send, which plans the turn
//! ([`plan`]), cuts its body ([`chained_body`]) and reads its answer's events for the next lineage ([`Turn`]).

use std::sync::Arc;

use serde_json::{Map, Value};

pub use super::digest::{Digest, item_digest, settings_digest};

/// What a connection remembers of its conversation after a completed turn: the backend's whole context for it,
/// as digests, and the id to chain from.
#[derive(Debug, Clone, PartialEq)]
pub struct Lineage {
    settings: Digest,
    /// The context in order: every input item sent so far and every output item, each with whether a client may
    /// leave it out when it resends its history.
    items: Vec<(Digest, Keep)>,
    response_id: String,
}

/// Whether a client's resent history must hold an item of the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Every dialect resends it (messages, tool calls, inputs the client sent).
    Required,
    /// An output item some dialects cannot carry (reasoning, hosted tool calls): it may be missing.
    Optional,
}

/// How to send a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The whole input, no `previous_response_id`.
    Whole,
    /// `previous_response_id` and the input items from `skip` on: the backend has the ones before.
    Chained { previous_response_id: String, skip: usize },
}

/// What a request brings for chaining: the digests of its settings and of its input items, and where those items
/// are in its serialized body.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRequest {
    pub settings: Digest,
    pub items: Vec<Digest>,
    /// The byte range of each input item in the body, in order (recorded as it is written:
    /// `order::official_order_with_items`).
    pub spans: Vec<std::ops::Range<usize>>,
}

impl ChainRequest {
    /// A finalized body's digests, with where its input items are in the bytes written from it.
    pub fn of(body: &Map<String, Value>, spans: Vec<std::ops::Range<usize>>) -> ChainRequest {
        let items = match body.get("input") {
            Some(Value::Array(items)) => items.iter().map(item_digest).collect(),
            Some(_) | None => Vec::new(),
        };
        ChainRequest { settings: settings_digest(body), items, spans }
    }

    /// One send of the request's `body` over a connection whose last completed turn left `previous` (`None`: a
    /// new connection, the last turn did not complete, or the whole request is wanted).
    pub fn turn(self: &Arc<Self>, body: &[u8], previous: Option<Lineage>) -> Turn {
        let plan = plan(previous.as_ref(), self.settings, &self.items);
        let chained = match &plan {
            Plan::Chained { previous_response_id, skip } => chained_body(body, self, previous_response_id, *skip),
            Plan::Whole => None,
        };
        Turn { request: Arc::clone(self), plan, chained, previous, output: Vec::new(), response_id: None }
    }
}

/// One send of a request on a connection: how it goes, and what its answer's events leave for the next turn.
#[derive(Debug)]
pub struct Turn {
    request: Arc<ChainRequest>,
    plan: Plan,
    /// The chained body, when the plan chains and the spans fit (else the request's body goes whole).
    chained: Option<Vec<u8>>,
    previous: Option<Lineage>,
    output: Vec<(Digest, Keep)>,
    response_id: Option<String>,
}

impl Turn {
    /// Whether the turn continues the connection's chain (a backend that does not hold the response it chains
    /// from refuses it with `previous_response_not_found`).
    pub fn chains(&self) -> bool {
        matches!(self.plan, Plan::Chained { .. })
    }

    /// The body of a chained turn, to send in place of the request's (`None`: the request's body goes).
    pub fn take_body(&mut self) -> Option<Vec<u8>> {
        self.chained.take()
    }

    /// An event of the answer, by its type and JSON data (only an item's end and the response's end are read).
    pub fn see(&mut self, kind: &str, data: &str) {
        #[derive(serde::Deserialize)]
        struct ItemDone {
            item: Value,
        }
        #[derive(serde::Deserialize)]
        struct Completed {
            response: ResponseId,
        }
        #[derive(serde::Deserialize)]
        struct ResponseId {
            id: String,
        }
        match kind {
            "response.output_item.done" => {
                if let Ok(done) = serde_json::from_str::<ItemDone>(data) {
                    self.output.push((item_digest(&done.item), keep_of_output(&done.item)));
                }
            }
            "response.completed" => {
                self.response_id = serde_json::from_str::<Completed>(data).ok().map(|c| c.response.id);
            }
            _ => {}
        }
    }

    /// The connection's lineage after the answer ended; `None` when it did not complete.
    pub fn finish(self) -> Option<Lineage> {
        let id = self.response_id?;
        let r = &self.request;
        Some(completed(self.previous, &self.plan, r.settings, &r.items, id, self.output))
    }
}

/// The body of a chained turn: `previous_response_id` before `input`, and the input items from `skip` on. `None`
/// when the spans do not fit the body (then the whole body goes).
pub fn chained_body(body: &[u8], req: &ChainRequest, previous: &str, skip: usize) -> Option<Vec<u8>> {
    let (first, last) = (req.spans.first()?, req.spans.last()?);
    let head = body.get(..first.start)?;
    let tail = body.get(last.end..)?;
    let input_key = memchr::memmem::rfind(head, br#""input":["#)?;
    let kept = match req.spans.get(skip) {
        Some(from) => body.get(from.start..last.end)?,
        None => &[][..],
    };
    let id = serde_json::to_string(previous).ok()?;
    let mut out = Vec::with_capacity(body.len() + id.len() + 32);
    out.extend_from_slice(&head[..input_key]);
    out.extend_from_slice(br#""previous_response_id":"#);
    out.extend_from_slice(id.as_bytes());
    out.push(b',');
    out.extend_from_slice(&head[input_key..]);
    out.extend_from_slice(kept);
    out.extend_from_slice(tail);
    Some(out)
}

/// Whether an output item of this type may be missing from a client's resent history.
pub fn keep_of_output(item: &Value) -> Keep {
    match item.get("type").and_then(Value::as_str).unwrap_or("message") {
        "message" | "function_call" | "custom_tool_call" => Keep::Required,
        _ => Keep::Optional,
    }
}

/// How to send a turn on a connection whose last completed turn left `lineage` (none: a new connection, or the
/// last turn did not complete), given the turn's settings and input digests.
pub fn plan(lineage: Option<&Lineage>, settings: Digest, input: &[Digest]) -> Plan {
    let Some(last) = lineage.filter(|l| l.settings == settings && !l.response_id.is_empty()) else {
        return Plan::Whole;
    };
    let mut i = 0;
    for (digest, keep) in &last.items {
        if input.get(i) == Some(digest) {
            i += 1;
        } else if *keep == Keep::Required {
            return Plan::Whole;
        }
    }
    // Nothing new: the same request again (a retry, a regenerated answer) asks for a fresh answer to the same
    // context, which chaining would turn into "answer again after your last answer".
    if i >= input.len() {
        return Plan::Whole;
    }
    Plan::Chained { previous_response_id: last.response_id.clone(), skip: i }
}

/// The lineage after a turn sent by `plan` completed with `response_id` and `output` (digests and whether each
/// may be left out). `sent` is the turn's whole input; with a chained turn the context is the previous one plus
/// the items from `skip` on.
pub fn completed(
    previous: Option<Lineage>,
    plan: &Plan,
    settings: Digest,
    sent: &[Digest],
    response_id: String,
    output: Vec<(Digest, Keep)>,
) -> Lineage {
    let mut items = match (plan, previous) {
        (Plan::Chained { skip, .. }, Some(previous)) => {
            let mut items = previous.items;
            items.extend(sent.iter().skip(*skip).map(|d| (*d, Keep::Required)));
            items
        }
        (Plan::Whole, _) | (Plan::Chained { .. }, None) => sent.iter().map(|d| (*d, Keep::Required)).collect(),
    };
    items.extend(output);
    Lineage { settings, items, response_id }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_turn_chains_on_what_the_last_answer_left_and_reads_its_own_answer() {
        let first = object(json!({"model": "m", "input": [{"role": "user", "content": "hi"}]}));
        let (body, spans) = crate::upstream_request::order::official_order_with_items(&first).unwrap_or_default();
        let request = Arc::new(ChainRequest::of(&first, spans));
        let mut t1 = request.turn(&body, None);
        assert!(!t1.chains() && t1.take_body().is_none());
        let answer =
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]});
        t1.see("response.output_item.done", &json!({"item": answer}).to_string());
        t1.see("response.completed", r#"{"response":{"id":"resp_1"}}"#);
        let lineage = t1.finish();
        assert!(lineage.is_some());
        let second = object(json!({"model": "m", "input": [{"role": "user", "content": "hi"}, answer,
            {"role": "user", "content": "more"}]}));
        let (body, spans) = crate::upstream_request::order::official_order_with_items(&second).unwrap_or_default();
        let mut t2 = Arc::new(ChainRequest::of(&second, spans)).turn(&body, lineage);
        assert!(t2.chains());
        let sent: Value = serde_json::from_slice(&t2.take_body().unwrap_or_default()).unwrap_or_default();
        assert_eq!(sent["previous_response_id"], "resp_1");
        assert_eq!(sent["input"], json!([{"role": "user", "content": "more"}]));
        assert!(t2.finish().is_none(), "an answer that did not complete leaves nothing to chain on");
    }

    fn digests(items: &[Value]) -> Vec<Digest> {
        items.iter().map(item_digest).collect()
    }

    fn outputs(items: &[Value]) -> Vec<(Digest, Keep)> {
        items.iter().map(|i| (item_digest(i), keep_of_output(i))).collect()
    }

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn settings(model: &str) -> Digest {
        settings_digest(&object(
            json!({"model": model, "tools": [], "prompt_cache_key": "k", "client_metadata": {"x": 1}}),
        ))
    }

    #[test]
    fn a_chat_clients_resent_history_is_recognised_and_only_the_new_message_goes() {
        let first = vec![json!({"role": "user", "content": "hi"})];
        // The backend's answer: reasoning, then the message with its ids and annotations.
        let answer = vec![
            json!({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "sealed"}),
            json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "hello", "annotations": []}]}),
        ];
        let s = settings("gpt-5.4");
        let lineage = completed(None, &Plan::Whole, s, &digests(&first), "resp_1".into(), outputs(&answer));
        // The Chat client resends the user message, its own plain-text copy of the answer (no reasoning), and a
        // new message.
        let next = vec![
            json!({"role": "user", "content": "hi"}),
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]}),
            json!({"role": "user", "content": [{"type": "input_text", "text": "and now?"}]}),
        ];
        let p = plan(Some(&lineage), s, &digests(&next));
        assert_eq!(p, Plan::Chained { previous_response_id: "resp_1".into(), skip: 2 });
        // A changed setting, a changed earlier message or a missing answer: the whole input.
        assert_eq!(plan(Some(&lineage), settings("gpt-5.5"), &digests(&next)), Plan::Whole);
        let mut edited = next.clone();
        edited[0] = json!({"role": "user", "content": "hi!"});
        assert_eq!(plan(Some(&lineage), s, &digests(&edited)), Plan::Whole);
        let without_answer = vec![next[0].clone(), next[2].clone()];
        assert_eq!(plan(Some(&lineage), s, &digests(&without_answer)), Plan::Whole);
        assert_eq!(plan(None, s, &digests(&next)), Plan::Whole);
        // The first request again (its answer's items are all ones a client may leave out): nothing new to chain.
        let hosted = vec![json!({"type": "apply_patch_call", "call_id": "p1", "operation": {}})];
        let l2 = completed(None, &Plan::Whole, s, &digests(&first), "resp_2".into(), outputs(&hosted));
        assert_eq!(plan(Some(&l2), s, &digests(&first)), Plan::Whole);
    }

    #[test]
    fn a_chain_grows_turn_by_turn_and_keeps_what_the_client_did_not_resend() {
        let s = settings("m");
        let t1 = vec![json!({"role": "user", "content": "run ls"})];
        let o1 = vec![
            json!({"type": "reasoning", "encrypted_content": "r1"}),
            json!({"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "sh", "arguments": "{\"cmd\":\"ls\"}"}),
        ];
        let l1 = completed(None, &Plan::Whole, s, &digests(&t1), "resp_1".into(), outputs(&o1));
        // The official client resends everything, reasoning included, then the tool's output.
        let t2 = vec![
            t1[0].clone(),
            o1[0].clone(),
            o1[1].clone(),
            json!({"type": "function_call_output", "call_id": "c1", "output": "a.txt"}),
        ];
        let p2 = plan(Some(&l1), s, &digests(&t2));
        assert_eq!(p2, Plan::Chained { previous_response_id: "resp_1".into(), skip: 3 });
        let o2 =
            vec![json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]})];
        let l2 = completed(Some(l1), &p2, s, &digests(&t2), "resp_2".into(), outputs(&o2));
        let t3 = [t2.clone(), o2.clone(), vec![json!({"role": "user", "content": "thanks"})]].concat();
        assert_eq!(plan(Some(&l2), s, &digests(&t3)), Plan::Chained { previous_response_id: "resp_2".into(), skip: 5 });
    }

    #[test]
    fn a_chained_body_keeps_every_member_and_only_the_new_items() {
        let items =
            [r#"{"role":"user","content":"a"}"#, r#"{"type":"function_call_output","call_id":"c","output":"x"}"#];
        let body =
            format!(r#"{{"model":"m","input":[{},{}],"tools":[],"client_metadata":{{"k":"v"}}}}"#, items[0], items[1]);
        let start = body.find(items[0]).unwrap_or_default();
        let second = body.find(items[1]).unwrap_or_default();
        let req = ChainRequest {
            settings: [0; 16],
            items: vec![[1; 16], [2; 16]],
            spans: vec![start..start + items[0].len(), second..second + items[1].len()],
        };
        let chained = chained_body(body.as_bytes(), &req, "resp_1", 1).unwrap_or_default();
        let v: Value = serde_json::from_slice(&chained).unwrap_or_default();
        assert_eq!(v["previous_response_id"], "resp_1");
        assert_eq!(v["input"], json!([{"type": "function_call_output", "call_id": "c", "output": "x"}]));
        assert_eq!(v["client_metadata"]["k"], "v");
        assert_eq!(v["tools"], json!([]));
        let none = chained_body(body.as_bytes(), &req, "resp_1", 2).unwrap_or_default();
        let v: Value = serde_json::from_slice(&none).unwrap_or_default();
        assert_eq!(v["input"], json!([]), "nothing new: an empty input");
        let past_the_end = 0..body.len() + 5;
        let bad = ChainRequest { spans: std::iter::once(past_the_end).collect(), ..req };
        assert!(chained_body(body.as_bytes(), &bad, "r", 0).is_none());
    }
}
