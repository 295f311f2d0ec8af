//! What one Responses WebSocket connection remembers between its messages, as the backend keeps it: the last
//! response's id, the input it answered and its output items. The official client sends, on a connection it has
//! used before, `previous_response_id` and only the items that are new since (codex-rs `core/src/client.rs`);
//! the backend puts the remembered input and output in front of them. A `previous_response_id` the connection
//! does not hold (another connection's, an older one, one whose turn failed) is refused with
//! `previous_response_not_found`, on which the official client sends the whole input again.
//!
//! Also the warm-up: `generate: false` asks the backend to take the request (validated like any other) and
//! complete it at once with no output and no model run; its id can be chained from like any response's.

use serde_json::{Map, Value, json};

/// A message the connection cannot take; answered with a wrapped 400 error frame.
#[derive(Debug, PartialEq)]
pub(crate) enum Refused {
    /// Not a JSON object.
    NotJson,
    /// A `type` other than `response.create` / `response.processed`.
    UnknownType(String),
    /// A field of the wrong JSON type.
    BadField(&'static str),
    /// `previous_response_id` names no response this connection holds.
    PreviousNotFound(String),
}

impl Refused {
    /// The error object of the wrapped frame.
    pub(crate) fn error(&self) -> Value {
        let (code, message, param) = match self {
            Refused::NotJson => ("invalid_json", "We could not parse the JSON body of your request.".into(), None),
            Refused::UnknownType(t) => {
                ("unknown_message_type", format!("Unsupported message type: '{t}'."), Some("type"))
            }
            Refused::BadField(f) => ("invalid_type", format!("Invalid type for '{f}'."), Some(*f)),
            Refused::PreviousNotFound(id) => (
                "previous_response_not_found",
                format!("Previous response with id '{id}' not found."),
                Some("previous_response_id"),
            ),
        };
        json!({"type": "invalid_request_error", "code": code, "message": message, "param": param})
    }
}

/// A message, read against the connection's state.
#[derive(Debug)]
pub(crate) enum Message {
    /// A request: the whole Responses body (the chain's items in front of the new input), whether the model
    /// runs (`false`: a warm-up), and how many leading input items the connection held (the backend's own
    /// record of the chain: validated as input only when the client sent them).
    Create { body: Map<String, Value>, generate: bool, held: usize },
    /// `response.processed`: the client's acknowledgement of a response; nothing is answered.
    Processed,
}

#[derive(Debug, Default)]
pub(crate) struct Chain {
    last: Option<Last>,
}

#[derive(Debug)]
struct Last {
    id: String,
    input: Vec<Value>,
    output: Vec<Value>,
}

impl Chain {
    /// Read one text message.
    pub(crate) fn read(&self, text: &str) -> Result<Message, Refused> {
        let Ok(Value::Object(mut body)) = serde_json::from_str::<Value>(text) else {
            return Err(Refused::NotJson);
        };
        match body.shift_remove("type") {
            Some(Value::String(t)) if t == "response.create" => {}
            Some(Value::String(t)) if t == "response.processed" => return Ok(Message::Processed),
            Some(Value::String(t)) => return Err(Refused::UnknownType(t)),
            Some(_) | None => return Err(Refused::UnknownType(String::new())),
        }
        let generate = match body.shift_remove("generate") {
            None => true,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(Refused::BadField("generate")),
        };
        let previous = match body.shift_remove("previous_response_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id),
            Some(_) => return Err(Refused::BadField("previous_response_id")),
        };
        let mut held = 0;
        if let Some(id) = previous {
            let Some(last) = self.last.as_ref().filter(|l| l.id == id) else {
                return Err(Refused::PreviousNotFound(id));
            };
            let new = match body.shift_remove("input") {
                None => Vec::new(),
                Some(Value::Array(items)) => items,
                Some(_) => return Err(Refused::BadField("input")),
            };
            let mut input = Vec::with_capacity(last.input.len() + last.output.len() + new.len());
            input.extend(last.input.iter().cloned());
            input.extend(last.output.iter().cloned());
            held = input.len();
            input.extend(new);
            body.insert("input".into(), Value::Array(input));
        }
        Ok(Message::Create { body, generate, held })
    }

    /// A response completed: later messages may chain from it.
    pub(crate) fn completed(&mut self, id: String, input: Vec<Value>, output: Vec<Value>) {
        self.last = Some(Last { id, input, output });
    }

    /// A request failed or was refused: nothing to chain from (the backend keeps only completed responses).
    pub(crate) fn forget(&mut self) {
        self.last = None;
    }
}

/// The two events of a warm-up: created and completed at once, with no output.
pub(crate) fn warmup_events(id: &str, model: &Value, created_at: i64) -> [Value; 2] {
    let response = |status: &str| {
        json!({
            "id": id, "object": "response", "created_at": created_at, "status": status, "model": model,
            "output": [], "usage": {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0},
        })
    };
    [
        json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress")}),
        json!({"type": "response.completed", "sequence_number": 1, "response": response("completed")}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chain: &Chain, v: Value) -> Result<Message, Refused> {
        chain.read(&v.to_string())
    }

    #[test]
    fn a_chained_message_gets_the_previous_input_and_output_in_front() {
        let mut chain = Chain::default();
        let first = vec![json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"}]})];
        let out = vec![json!({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"})];
        chain.completed("resp_1".into(), first, out);
        let msg = json!({"type": "response.create", "model": "m", "previous_response_id": "resp_1",
            "input": [{"type": "function_call_output", "call_id": "c", "output": "ok"}]});
        match read(&chain, msg) {
            Ok(Message::Create { body, generate: true, .. }) => {
                let input = body["input"].as_array().cloned().unwrap_or_default();
                assert_eq!(input.len(), 3);
                assert_eq!(input[1]["type"], "function_call");
                assert!(!body.contains_key("previous_response_id") && !body.contains_key("type"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_or_forgotten_previous_response_is_refused() {
        let mut chain = Chain::default();
        let msg = json!({"type": "response.create", "previous_response_id": "resp_1", "input": []});
        assert_eq!(read(&chain, msg.clone()).err(), Some(Refused::PreviousNotFound("resp_1".into())));
        chain.completed("resp_1".into(), vec![], vec![]);
        assert!(read(&chain, msg.clone()).is_ok());
        chain.forget();
        assert_eq!(read(&chain, msg).err(), Some(Refused::PreviousNotFound("resp_1".into())));
        assert_eq!(
            read(&chain, json!({"type": "session.update"})).err(),
            Some(Refused::UnknownType("session.update".into()))
        );
        assert_eq!(
            read(&chain, json!({"type": "response.create", "generate": 1})).err(),
            Some(Refused::BadField("generate"))
        );
        assert!(matches!(read(&chain, json!({"type": "response.processed"})), Ok(Message::Processed)));
        assert_eq!(chain.read("[").err(), Some(Refused::NotJson));
    }

    #[test]
    fn a_warm_up_is_read_as_a_request_that_does_not_generate() {
        let chain = Chain::default();
        let msg = json!({"type": "response.create", "model": "m", "generate": false, "input": []});
        assert!(matches!(read(&chain, msg), Ok(Message::Create { generate: false, .. })));
    }
}
