//! One inbound WebSocket's conversation state, and how a client message becomes a whole Responses request.
//!
//! Over WebSocket the official client sends, after the first turn, only what is new: `previous_response_id` = the
//! last response's id and `input` = the items after the previous request's input and that response's output
//! items (openai/codex `codex-rs/core/src/client.rs`: `get_incremental_items`, `prepare_websocket_request`),
//! relying on the backend to keep the rest per connection. The gateway relays each turn as a full HTTP request
//! (`store: false` upstream keeps nothing), so it keeps, per socket, the last request's input and the output of
//! its answer, and rebuilds the full input from them. The client's warm-up (`generate: false`, a connection set-up
//! the backend completes without running the model) is relayed like a turn, so that the upstream connection opens
//! with it as the official client's does (`upstream::warmup`). Pure: no I/O; `session.rs` drives it.

use serde_json::{Value, json};

/// Why a message was refused: each is a wrapped `invalid_request_error` frame (`frames::request_error`).
#[derive(Debug, PartialEq)]
pub enum MessageError {
    /// Not a JSON object.
    NotJson,
    /// No `type`, or one the endpoint does not take.
    UnknownType(String),
    /// A field with the wrong JSON type (`input`, `previous_response_id`, `generate`).
    BadField(&'static str),
    /// `previous_response_id` names no response this socket answered last (or its state was too large to keep).
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
    /// takes it) and its input, kept for the next.
    Create { body: Value },
    /// `response.processed`: the client's acknowledgement; nothing to answer.
    Processed,
}

/// What a socket remembers of its last completed turn.
#[derive(Debug, Default)]
pub struct Conversation {
    last: Option<Last>,
    /// The most this state may hold, in bytes of JSON (the body limit: a full request cannot be larger anyway).
    limit: usize,
}

#[derive(Debug)]
struct Last {
    id: String,
    input: Vec<Value>,
    output: Vec<Value>,
}

impl Conversation {
    pub fn new(limit: usize) -> Conversation {
        Conversation { last: None, limit }
    }

    /// Read one text message. For `response.create`, the conversation so far is put in front of an incremental
    /// input; the state itself changes only when the turn completes ([`Conversation::completed`]).
    pub fn read(&self, text: &str) -> Result<Message, MessageError> {
        let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(text) else {
            return Err(MessageError::NotJson);
        };
        match body.remove("type") {
            Some(Value::String(t)) if t == "response.create" => {}
            Some(Value::String(t)) if t == "response.processed" => return Ok(Message::Processed),
            Some(Value::String(t)) => return Err(MessageError::UnknownType(t)),
            Some(_) | None => return Err(MessageError::UnknownType(String::new())),
        }
        let generate = match body.remove("generate") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(MessageError::BadField("generate")),
        };
        let previous = match body.remove("previous_response_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id),
            Some(_) => return Err(MessageError::BadField("previous_response_id")),
        };
        let input = match body.remove("input") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            // A bare string is one user message, as on the HTTP route.
            Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
            Some(_) => return Err(MessageError::BadField("input")),
        };
        let input = match previous {
            None => input,
            Some(id) => match &self.last {
                Some(last) if last.id == id => {
                    let mut full = Vec::with_capacity(last.input.len() + last.output.len() + input.len());
                    full.extend(last.input.iter().cloned());
                    full.extend(last.output.iter().cloned());
                    full.extend(input);
                    full
                }
                Some(_) | None => return Err(MessageError::PreviousNotFound(id)),
            },
        };
        if !generate {
            body.insert("generate".into(), Value::Bool(false));
        }
        body.insert("input".into(), Value::Array(input));
        // A socket's answers are always streamed, one frame per event.
        body.insert("stream".into(), Value::Bool(true));
        Ok(Message::Create { body: Value::Object(body) })
    }

    /// A turn completed: remember its input and the response's id and output, if they fit in the limit
    /// (`size`: the bytes of the request and of the completed event, a bound on what is kept).
    pub fn completed(&mut self, id: String, input: Vec<Value>, output: Vec<Value>, size: usize) {
        self.last = (size <= self.limit).then_some(Last { id, input, output });
    }

    /// A turn failed or was refused: a later `previous_response_id` has nothing to refer to.
    pub fn forget(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(v: Value) -> Value {
        match Conversation::new(1 << 20).read(&v.to_string()) {
            Ok(Message::Create { body }) => body,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_first_turn_is_the_http_body_without_the_envelope() {
        let body =
            create(json!({"type": "response.create", "model": "m", "input": [{"role": "user", "content": "hi"}]}));
        assert!(body.get("type").is_none());
        assert_eq!(body["stream"], true);
        assert_eq!(body["input"][0]["content"], "hi");
    }

    #[test]
    fn a_later_turn_gets_the_previous_input_and_output_in_front_of_its_new_items() {
        let mut c = Conversation::new(1 << 20);
        let first = vec![json!({"role": "user", "content": "run ls"})];
        let output = vec![json!({"type": "function_call", "call_id": "c1", "name": "sh", "arguments": "{}"})];
        c.completed("resp_1".into(), first, output, 100);
        let next = json!({"type": "response.create", "model": "m", "previous_response_id": "resp_1",
            "input": [{"type": "function_call_output", "call_id": "c1", "output": "ok"}]});
        let Ok(Message::Create { body }) = c.read(&next.to_string()) else { panic!() };
        let items = body["input"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 3);
        assert_eq!(items[1]["type"], "function_call");
        assert_eq!(items[2]["type"], "function_call_output");
        assert!(body.get("previous_response_id").is_none());
    }

    #[test]
    fn an_unknown_previous_response_or_a_bad_message_is_refused() {
        let c = Conversation::new(1 << 20);
        let m = json!({"type": "response.create", "previous_response_id": "resp_x", "input": []});
        assert_eq!(c.read(&m.to_string()).err(), Some(MessageError::PreviousNotFound("resp_x".into())));
        assert_eq!(c.read("nope").err(), Some(MessageError::NotJson));
        assert_eq!(
            c.read(r#"{"type":"session.update"}"#).err(),
            Some(MessageError::UnknownType("session.update".into()))
        );
        assert_eq!(c.read(r#"{"type":"response.create","input":5}"#).err(), Some(MessageError::BadField("input")));
    }

    #[test]
    fn state_larger_than_the_limit_is_not_kept() {
        let mut c = Conversation::new(10);
        c.completed("resp_1".into(), vec![json!("x")], vec![], 11);
        let m = json!({"type": "response.create", "previous_response_id": "resp_1", "input": []});
        assert!(matches!(c.read(&m.to_string()), Err(MessageError::PreviousNotFound(_))));
    }

    #[test]
    fn a_warmup_is_relayed_as_a_request_that_does_not_generate() {
        let c = Conversation::new(1 << 20);
        let m = json!({"type": "response.create", "model": "m", "generate": false, "input": [{"role": "user", "content": "hi"}]});
        let Ok(Message::Create { body }) = c.read(&m.to_string()) else { panic!() };
        assert_eq!(body["generate"], false);
        assert_eq!(body["input"].as_array().map(Vec::len), Some(1));
        let turn = json!({"type": "response.create", "model": "m", "generate": true, "input": []});
        let Ok(Message::Create { body }) = c.read(&turn.to_string()) else { panic!() };
        assert!(body.get("generate").is_none(), "generating is the default");
    }
}
