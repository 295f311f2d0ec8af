//! A conversation that moves to another account (issue 61; docs/protocol.md "Long sessions"): what of its
//! history can go with it. The visible history does; the state the previous account sealed does not: encrypted
//! reasoning is readable only by the account (and organization) that produced it, and so is a compaction item,
//! which stands for the history it replaced. A turn that moves is sent without its reasoning items (the model
//! loses its hidden thoughts of those turns, not the conversation); a history that holds a compaction item
//! cannot move at all, since what it summarises exists nowhere else, and the client gets a clear error instead.
//!
//! The same unsealing serves a turn the backend refused for a foreign reasoning item (`invalid_encrypted_content`):
//! a conversation that moved earlier still carries the previous account's reasoning in the client's history.

use dialects::{ErrorKind, GatewayError};
use serde_json::{Map, Value};

use super::exchange::Prepared;

/// Why a conversation cannot move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealed {
    /// Its history holds a compaction item, which only the account that made it can read.
    Compaction,
}

impl Sealed {
    /// The client's error: the history cannot be served elsewhere; the account that holds it may come back.
    pub fn error(&self, home: &str) -> GatewayError {
        match self {
            Sealed::Compaction => GatewayError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "This conversation was compacted on account {home}, which cannot serve it now, and a compacted \
                     history can only be read by the account that made it. Retry when that account is available \
                     again, or start a new conversation."
                ),
            )
            .with_code("conversation_sealed_to_another_account"),
        }
    }
}

/// The request without the state sealed to another account: `Ok(None)` when it holds none (it goes as it is),
/// `Ok(Some(..))` without its reasoning items, `Err` when its history is a compaction.
pub fn unseal(prepared: &Prepared) -> Result<Option<Prepared>, Sealed> {
    let mut sealed = None;
    let edited = prepared.edited(|body| match strip(body) {
        Ok(removed) => removed > 0,
        Err(s) => {
            sealed = Some(s);
            false
        }
    });
    match sealed {
        Some(s) => Err(s),
        None => Ok(edited),
    }
}

/// Remove the reasoning items of a body's input; how many went. A compaction item refuses the move.
fn strip(body: &mut Map<String, Value>) -> Result<usize, Sealed> {
    let Some(Value::Array(items)) = body.get_mut("input") else {
        return Ok(0);
    };
    let kind = |item: &Value| item.get("type").and_then(Value::as_str).map(str::to_string);
    if items.iter().any(|item| kind(item).as_deref() == Some("compaction")) {
        return Err(Sealed::Compaction);
    }
    let before = items.len();
    items.retain(|item| kind(item).as_deref() != Some("reasoning"));
    Ok(before - items.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reasoning_stays_behind_and_a_compaction_cannot_move() {
        let mut body = json!({"input": [
            {"role": "user", "content": "a"},
            {"type": "reasoning", "encrypted_content": "sealed", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "b"}]},
        ]})
        .as_object()
        .cloned()
        .unwrap_or_default();
        assert_eq!(strip(&mut body), Ok(1));
        assert_eq!(body["input"].as_array().map(Vec::len), Some(2));
        assert_eq!(strip(&mut body), Ok(0), "nothing sealed: nothing to remove");
        let mut compacted =
            json!({"input": [{"type": "compaction", "encrypted_content": "x"}, {"role": "user", "content": "c"}]})
                .as_object()
                .cloned()
                .unwrap_or_default();
        assert_eq!(strip(&mut compacted), Err(Sealed::Compaction));
        assert_eq!(Sealed::Compaction.error("acc-1").kind, ErrorKind::InvalidRequest);
    }
}
