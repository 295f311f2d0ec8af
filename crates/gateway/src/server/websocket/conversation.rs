//! One inbound WebSocket's conversation state, and how a client message becomes a whole Responses request.
//!
//! Over WebSocket the official client sends, after the first turn, only what is new: `previous_response_id` = the
//! last response's id and `input` = the items after the previous request's input and that response's output
//! items (openai/codex `codex-rs/core/src/client.rs`: `get_incremental_items`, `prepare_websocket_request`),
//! relying on the backend to keep the rest per connection. The gateway relays each turn as a full HTTP request
//! (`store: false` upstream keeps nothing), so it keeps, per socket, the last request's input and the output of
//! its answer, and rebuilds the full input from them. A turn whose request did not say `store: false` is also
//! kept among the gateway's recent responses (`stored_responses.rs`, the same entry, not a copy), which a later
//! `previous_response_id` on any socket or over HTTP may name, as OpenAI's stored responses can be. The client's
//! warm-up (`generate: false`, a connection set-up the backend completes without running the model) is relayed
//! like a turn, so that the upstream connection opens with it as the official client's does (`upstream::warmup`),
//! and its (empty) response is kept like a turn's, for the first turn to chain on. No I/O; `session.rs` drives it.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::stored_responses::{Stored, StoredResponses};

/// Why a message was refused: each is a wrapped `invalid_request_error` frame (`frames::request_error`).
#[derive(Debug, PartialEq)]
pub enum MessageError {
    /// Not a JSON object.
    NotJson,
    /// No `type`, or one the endpoint does not take.
    UnknownType(String),
    /// A field with the wrong JSON type (`input`, `previous_response_id`, `generate`, `store`).
    BadField(&'static str),
    /// `previous_response_id` names no response this socket answered last, nor one the gateway keeps (or its
    /// state was too large to keep).
    PreviousNotFound(String),
}

impl MessageError {
    /// The error's `code`, `message` and `param`.
    pub fn parts(&self) -> (&'static str, String, Option<&'static str>) {
        match self {
            MessageError::NotJson => ("invalid_json", "A message must be a JSON object.".into(), None),
            MessageError::UnknownType(t) => (
                "unsupported_message_type",
                format!("Unsupported message type '{t}': send 'response.create'."),
                Some("type"),
            ),
            MessageError::BadField(f) => ("invalid_type", format!("Invalid type for '{f}'."), Some(f)),
            MessageError::PreviousNotFound(id) => (
                "previous_response_not_found",
                format!("Previous response with id '{id}' not found."),
                Some("previous_response_id"),
            ),
        }
    }
}

/// A client message, read.
#[derive(Debug)]
pub enum Message {
    /// A turn to relay (or a warm-up, `generate: false` kept in it): the full Responses body (as the HTTP route
    /// takes it, with `store: false`: the socket keeps its turns itself), and whether the client asked for the
    /// response to be kept (`store`, true by default).
    Create { body: Value, store: bool },
    /// `response.processed`: the client's acknowledgement; nothing to answer.
    Processed,
}

/// What a socket remembers of its last completed turn, and where the gateway's kept responses are.
#[derive(Debug)]
pub struct Conversation {
    last: Option<Last>,
    /// The most this state may hold, in bytes of JSON (the body limit: a full request cannot be larger anyway).
    limit: usize,
    /// The gateway's kept responses: read when `previous_response_id` is not this socket's last, filled with the
    /// turns the client asked to keep.
    shared: Arc<StoredResponses>,
    /// The socket's client key id: what it keeps is its own, and it finds only its own.
    owner: Option<Box<str>>,
}

#[derive(Debug)]
struct Last {
    id: String,
    stored: Arc<Stored>,
}

impl Conversation {
    pub fn new(limit: usize, shared: Arc<StoredResponses>, owner: Option<&str>) -> Conversation {
        Conversation { last: None, limit, shared, owner: owner.map(Box::from) }
    }

    /// Read one text message. For `response.create`, the conversation so far is put in front of an incremental
    /// input; the state itself changes only when the turn completes ([`Conversation::completed`]).
    pub fn read(&self, text: &str) -> Result<Message, MessageError> {
        let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(text) else {
            return Err(MessageError::NotJson);
        };
        match body.shift_remove("type") {
            Some(Value::String(t)) if t == "response.create" => {}
            Some(Value::String(t)) if t == "response.processed" => return Ok(Message::Processed),
            Some(Value::String(t)) => return Err(MessageError::UnknownType(t)),
            Some(_) | None => return Err(MessageError::UnknownType(String::new())),
        }
        // `generate` and `store`: true unless the client says false.
        let mut flag = |name: &'static str| match body.shift_remove(name) {
            None | Some(Value::Null) => Ok(true),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(MessageError::BadField(name)),
        };
        let (generate, store) = (flag("generate")?, flag("store")?);
        let previous = match body.shift_remove("previous_response_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id),
            Some(_) => return Err(MessageError::BadField("previous_response_id")),
        };
        let input = match body.shift_remove("input") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            // A bare string is one user message, as on the HTTP route.
            Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
            Some(_) => return Err(MessageError::BadField("input")),
        };
        let input = match previous {
            None => input,
            Some(id) => {
                let found = match &self.last {
                    Some(last) if last.id == id => Some(last.stored.clone()),
                    Some(_) | None => self.shared.get(&id, self.owner.as_deref()),
                };
                match found.as_deref().and_then(Stored::items) {
                    Some(mut full) => {
                        full.extend(input);
                        full
                    }
                    None => return Err(MessageError::PreviousNotFound(id)),
                }
            }
        };
        if !generate {
            body.insert("generate".into(), Value::Bool(false));
        }
        body.insert("input".into(), Value::Array(input));
        // A socket's answers are always streamed, one frame per event.
        body.insert("stream".into(), Value::Bool(true));
        body.insert("store".into(), Value::Bool(false));
        Ok(Message::Create { body: Value::Object(body), store })
    }

    /// A turn completed: remember its input and the response's id and output (both JSON arrays' text), if they
    /// fit in the limit; and keep them among the gateway's responses when the client asked to (`store`).
    pub fn completed(&mut self, id: String, input: &str, output: &str, store: bool) {
        let stored = Arc::new(Stored::new(self.owner.as_deref(), input, output));
        if stored.items_json().len() > self.limit {
            self.last = None;
            return;
        }
        if store {
            // Refused only when keeping is off or the entry is too large: the socket still has it as its last.
            let _ = self.shared.put(id.clone(), stored.clone());
        }
        self.last = Some(Last { id, stored });
    }

    /// A turn failed or was refused: a later `previous_response_id` has nothing to refer to on this socket.
    pub fn forget(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stored_responses::Bounds;

    fn shared() -> Arc<StoredResponses> {
        Arc::new(StoredResponses::new(Bounds { responses: 16, bytes: 1 << 20 }))
    }

    fn conversation() -> Conversation {
        Conversation::new(1 << 20, shared(), None)
    }

    fn create(v: Value) -> Value {
        match conversation().read(&v.to_string()) {
            Ok(Message::Create { body, .. }) => body,
            other => panic!("{other:?}"),
        }
    }

    fn text(v: Value) -> String {
        v.to_string()
    }

    #[test]
    fn a_first_turn_is_the_http_body_without_the_envelope() {
        let body =
            create(json!({"type": "response.create", "model": "m", "input": [{"role": "user", "content": "hi"}]}));
        assert!(body.get("type").is_none());
        assert_eq!(body["stream"], true);
        assert_eq!(body["store"], false, "the socket keeps its turns, the route does not");
        assert_eq!(body["input"][0]["content"], "hi");
    }

    #[test]
    fn a_later_turn_gets_the_previous_input_and_output_in_front_of_its_new_items() {
        let mut c = conversation();
        let first = json!([{"role": "user", "content": "run ls"}]);
        let output = json!([{"type": "function_call", "call_id": "c1", "name": "sh", "arguments": "{}"}]);
        c.completed("resp_1".into(), &text(first), &text(output), false);
        let next = json!({"type": "response.create", "model": "m", "previous_response_id": "resp_1",
            "input": [{"type": "function_call_output", "call_id": "c1", "output": "ok"}]});
        let Ok(Message::Create { body, store }) = c.read(&next.to_string()) else { panic!() };
        assert!(store);
        let items = body["input"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 3);
        assert_eq!(items[1]["type"], "function_call");
        assert_eq!(items[2]["type"], "function_call_output");
        assert!(body.get("previous_response_id").is_none());
    }

    #[test]
    fn a_kept_turn_is_found_from_another_socket_of_the_same_key_only() {
        let kept = shared();
        let mut one = Conversation::new(1 << 20, kept.clone(), Some("key-1"));
        one.completed("resp_k".into(), "[{\"role\":\"user\",\"content\":\"a\"}]", "[]", true);
        one.completed("resp_n".into(), "[]", "[]", false);
        let m = |id: &str| json!({"type": "response.create", "previous_response_id": id, "input": []}).to_string();
        let two = Conversation::new(1 << 20, kept.clone(), Some("key-1"));
        assert!(matches!(two.read(&m("resp_k")), Ok(Message::Create { .. })));
        assert_eq!(two.read(&m("resp_n")).err(), Some(MessageError::PreviousNotFound("resp_n".into())));
        let other = Conversation::new(1 << 20, kept, Some("key-2"));
        assert_eq!(other.read(&m("resp_k")).err(), Some(MessageError::PreviousNotFound("resp_k".into())));
    }

    #[test]
    fn an_unknown_previous_response_or_a_bad_message_is_refused() {
        let c = conversation();
        let m = json!({"type": "response.create", "previous_response_id": "resp_x", "input": []});
        assert_eq!(c.read(&m.to_string()).err(), Some(MessageError::PreviousNotFound("resp_x".into())));
        assert_eq!(c.read("nope").err(), Some(MessageError::NotJson));
        assert_eq!(
            c.read(r#"{"type":"session.update"}"#).err(),
            Some(MessageError::UnknownType("session.update".into()))
        );
        assert_eq!(c.read(r#"{"type":"response.create","input":5}"#).err(), Some(MessageError::BadField("input")));
        assert_eq!(c.read(r#"{"type":"response.create","store":1}"#).err(), Some(MessageError::BadField("store")));
    }

    #[test]
    fn state_larger_than_the_limit_is_not_kept() {
        let mut c = Conversation::new(10, shared(), None);
        c.completed("resp_1".into(), "[\"a long item\"]", "[]", true);
        let m = json!({"type": "response.create", "previous_response_id": "resp_1", "input": []});
        assert!(matches!(c.read(&m.to_string()), Err(MessageError::PreviousNotFound(_))));
    }

    #[test]
    fn a_warmup_is_relayed_as_a_request_that_does_not_generate() {
        let c = conversation();
        let m = json!({"type": "response.create", "model": "m", "generate": false, "store": false, "input": [{"role": "user", "content": "hi"}]});
        let Ok(Message::Create { body, store }) = c.read(&m.to_string()) else { panic!() };
        assert_eq!(body["generate"], false);
        assert_eq!(body["store"], false);
        assert!(!store);
        assert_eq!(body["input"].as_array().map(Vec::len), Some(1));
        let turn = json!({"type": "response.create", "model": "m", "generate": true, "input": []});
        let Ok(Message::Create { body, store }) = c.read(&turn.to_string()) else { panic!() };
        assert!(body.get("generate").is_none(), "generating is the default");
        assert!(store);
    }

    #[test]
    fn a_warmups_empty_response_is_what_the_first_turn_chains_on_here_and_elsewhere() {
        let kept = shared();
        let mut c = Conversation::new(1 << 20, kept.clone(), Some("key-1"));
        // The warm-up's completed response: its input, no output (session.rs calls this as for any turn).
        c.completed("resp_w".into(), "[{\"role\":\"user\",\"content\":\"hi\"}]", "[]", true);
        let next = json!({"type": "response.create", "model": "m", "previous_response_id": "resp_w",
            "input": [{"role": "user", "content": "go"}]});
        let Ok(Message::Create { body, .. }) = c.read(&next.to_string()) else { panic!() };
        assert_eq!(body["input"].as_array().map(Vec::len), Some(2));
        let other = Conversation::new(1 << 20, kept, Some("key-1"));
        assert!(matches!(other.read(&next.to_string()), Ok(Message::Create { .. })));
    }
}
