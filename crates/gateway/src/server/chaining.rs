//! `previous_response_id` and `store` on the Responses route, as OpenAI serves them (docs/protocol.md, "Chained
//! responses"): a request that names a response the gateway keeps (`stored_responses.rs`) gets that response's
//! conversation in front of its input, and goes upstream whole (`store: false`, as the backend requires); one that
//! names a response the gateway does not hold is answered with OpenAI's own `previous_response_not_found`, on
//! which clients send the whole input again. A response whose request did not say `store: false` is kept when it
//! completes, from the stream ([`KeepingEncoder`]) or from the whole answer ([`Keep::completed`]).
//!
//! With a team store a kept response is shared with the other instances too (in the background), and a request
//! that names one this instance does not keep asks the team's table before it is refused ([`fetch_shared`]): a
//! client's chained turns may land on any instance behind a balancer.

use std::sync::Arc;

use dialects::encoder::StreamEncoder;
use dialects::responses::{Chain, Passthrough};
use dialects::sse::SseFrame;
use dialects::{Event, GatewayError, UpstreamRequest};
use serde_json::Value;

use crate::keys::Caller;
use crate::store::Store;
use crate::store::team::{AskedResponse, SharedResponse};
use crate::stored_responses::{Stored, StoredResponses};

/// How long a request waits for the team's table to say whether it keeps a response: some round trips to a
/// database on the same network.
const ASK_WITHIN: std::time::Duration = std::time::Duration::from_millis(200);
/// A response just completed on another instance may still be on its way to the table (its writer's queue): a
/// request that names one the table does not have asks once more after this.
const ASK_AGAIN_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// OpenAI's answer to a `previous_response_id` it does not hold: 400, `invalid_request_error`, with this code,
/// message and param (the body clients' fallbacks look for).
pub fn not_found(id: &str) -> GatewayError {
    GatewayError::invalid_param("previous_response_id", format!("Previous response with id '{id}' not found."))
        .with_code("previous_response_not_found")
}

/// What keeping a response needs once it completes: where, for whom, and the conversation before its output.
#[derive(Clone)]
pub struct Keep {
    stored: Arc<StoredResponses>,
    owner: Option<Arc<str>>,
    /// The whole input that went upstream (the named response's conversation and this request's items), as a
    /// JSON array's text.
    input: Arc<str>,
    /// The team store a kept response is shared through (`None`: this instance keeps it alone).
    team: Option<Arc<Store>>,
}

impl std::fmt::Debug for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keep").field("owner", &self.owner).field("input_bytes", &self.input.len()).finish()
    }
}

/// The caller's key id, which owns what it stores.
pub fn owner(caller: Option<&Caller>) -> Option<&str> {
    caller.map(|c| &*c.0.id)
}

/// Put the named response's conversation in front of the request's input, and say whether (and how) this
/// response is to be kept. The request's input is already normalised (`dialects::responses::decode`).
pub fn resolve(
    stored: &Arc<StoredResponses>,
    caller: Option<&Caller>,
    req: &mut UpstreamRequest,
    chain: Chain,
) -> Result<Option<Keep>, GatewayError> {
    let owner = owner(caller);
    let keep = chain.store && stored.enabled();
    let previous = match chain.previous_response_id {
        Some(id) => Some(stored.get(&id, owner).ok_or_else(|| not_found(&id))?),
        None => None,
    };
    // This request's own items, as text, before the earlier ones go in front: what is kept is the named
    // conversation's text joined with them, never parsed and written again.
    let own = if keep { Some(input_json(req)?) } else { None };
    if let Some(previous) = &previous {
        let Some(mut items) = previous.items() else {
            return Err(GatewayError::internal("A kept response could not be read back"));
        };
        dialects::responses::normalize_items(&mut items)?;
        match req.body.get_mut("input") {
            Some(Value::Array(input)) => {
                items.append(input);
                *input = items;
            }
            Some(_) | None => {
                req.body.insert("input".into(), Value::Array(items));
            }
        }
    }
    Ok(own.map(|own| {
        let input = match &previous {
            Some(previous) => crate::stored_responses::join_arrays(previous.items_json(), &own),
            None => own,
        };
        Keep { stored: stored.clone(), owner: owner.map(Arc::from), input: Arc::from(input), team: None }
    }))
}

/// Before [`resolve`]: a named response this instance does not keep is asked of the team's table (on a team store
/// only), and kept here when an instance shared it for the same caller. The table not answering in time is as if
/// it did not hold it.
pub async fn fetch_shared(store: &Store, stored: &StoredResponses, caller: Option<&Caller>, chain: &Chain) {
    let Some(id) = chain.previous_response_id.as_deref() else { return };
    let owner = owner(caller);
    if !stored.enabled() || stored.get(id, owner).is_some() {
        return;
    }
    let mut asked_again = false;
    let found = loop {
        match store.ask_response(id, ASK_WITHIN).await {
            Ok(AskedResponse::Known(found)) => break found,
            Ok(AskedResponse::Unknown) if !asked_again => {
                asked_again = true;
                tokio::time::sleep(ASK_AGAIN_AFTER).await;
            }
            Ok(AskedResponse::Alone | AskedResponse::Unknown) => return,
            Err(e) => {
                tracing::debug!(response = id, "the team store did not say whether it keeps the response: {e:#}");
                return;
            }
        }
    };
    let SharedResponse { id, owner: made_by, items } = found;
    if made_by.as_deref() != owner {
        return;
    }
    if let Err(why) = stored.put(id.clone(), Arc::new(Stored::joined(owner, items))) {
        tracing::debug!(response = id, ?why, "a response the team keeps could not be kept here");
    }
}

/// The request's input array as JSON text (`[]` when it has none).
fn input_json(req: &UpstreamRequest) -> Result<String, GatewayError> {
    match req.body.get("input") {
        Some(input) => serde_json::to_string(input)
            .map_err(|e| GatewayError::internal(format!("The input could not be encoded: {e}"))),
        None => Ok("[]".to_string()),
    }
}

impl Keep {
    /// Share what is kept through `team` as well (a team store; the SQLite file shares nothing).
    pub fn shared_through(mut self, team: &Arc<Store>) -> Keep {
        self.team = Some(team.clone());
        self
    }

    /// A completed response (`response.completed`'s `response`, or the whole answer): keep its conversation under
    /// its id. A response without an id, or one too large to keep, is not kept (a later request naming it gets
    /// `previous_response_not_found`, and clients then send the whole input).
    pub fn completed(self, response: &Value) {
        let Some(id) = response.get("id").and_then(Value::as_str) else { return };
        let output = match response.get("output") {
            Some(output @ Value::Array(_)) => serde_json::to_string(output).unwrap_or_else(|_| "[]".into()),
            Some(_) | None => "[]".to_string(),
        };
        let entry = Arc::new(Stored::new(self.owner.as_deref(), &self.input, &output));
        match self.stored.put(id.to_string(), entry.clone()) {
            Ok(()) => {
                if let Some(team) = &self.team {
                    let owner = entry.owner().map(str::to_string);
                    team.share_response(SharedResponse { id: id.to_string(), owner, items: entry.items_json().into() });
                }
            }
            Err(why) => tracing::debug!(response = id, ?why, "a completed response was not kept for chaining"),
        }
    }
}

/// The Responses passthrough, which also keeps the completed response when the request asked for it.
pub struct KeepingEncoder {
    inner: Passthrough,
    keep: Option<Keep>,
}

impl KeepingEncoder {
    pub fn new(keep: Option<Keep>) -> KeepingEncoder {
        let inner = if keep.is_some() { Passthrough::keeping() } else { Passthrough::new() };
        KeepingEncoder { inner, keep }
    }
}

impl StreamEncoder for KeepingEncoder {
    fn on_event(&mut self, frame: &SseFrame, event: &Event, out: &mut Vec<u8>) {
        self.inner.on_event(frame, event, out);
        // Kept before the completed event's bytes leave: a client that names the response as soon as it sees it
        // finds it.
        if let Some(response) = self.inner.take_completed()
            && let Some(keep) = self.keep.take()
        {
            keep.completed(&response);
        }
    }
    fn on_error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        self.inner.on_error(err, out);
    }
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        self.inner.keepalive(out);
    }
    fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
    fn forwards_frames(&self) -> bool {
        self.inner.forwards_frames()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stored_responses::Bounds;
    use serde_json::json;

    fn request(input: Value) -> UpstreamRequest {
        let body = json!({"model": "gpt-5.4", "input": input});
        let Ok((req, _)) = dialects::responses::decode(body.to_string().as_bytes()) else { panic!("decode") };
        req
    }

    fn stored() -> Arc<StoredResponses> {
        Arc::new(StoredResponses::new(Bounds { responses: 8, bytes: 1 << 20 }))
    }

    #[test]
    fn a_chained_request_gets_the_kept_conversation_in_front_and_is_kept_whole() {
        let s = stored();
        let mut first = request(json!("run ls"));
        let keep = resolve(&s, None, &mut first, Chain { previous_response_id: None, store: true });
        let keep = keep.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("not kept"));
        let call = json!({"type": "function_call", "call_id": "c1", "name": "sh", "arguments": "{}"});
        keep.completed(&json!({"id": "resp_1", "output": [call]}));

        let mut second = request(json!([{"type": "function_call_output", "call_id": "c1", "output": "ok"}]));
        let chain = Chain { previous_response_id: Some("resp_1".into()), store: true };
        let keep = resolve(&s, None, &mut second, chain).unwrap_or_else(|e| panic!("{e}"));
        let types: Vec<_> = second.body["input"]
            .as_array()
            .map(|a| a.iter().map(|i| i["type"].as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default();
        assert_eq!(types, ["message", "function_call", "function_call_output"]);
        // What is kept of the second is everything that went upstream, then its output.
        keep.unwrap_or_else(|| panic!("not kept")).completed(&json!({"id": "resp_2", "output": []}));
        let kept = s.get("resp_2", None).and_then(|e| e.items()).unwrap_or_default();
        assert_eq!(Value::Array(kept), second.body["input"]);
    }

    #[test]
    fn an_unknown_id_is_openais_not_found_and_store_false_keeps_nothing() {
        let s = stored();
        let mut req = request(json!("x"));
        let chain = Chain { previous_response_id: Some("resp_x".into()), store: true };
        let err = resolve(&s, None, &mut req, chain).err().unwrap_or_else(|| panic!("found"));
        assert_eq!(
            (err.status(), err.openai_body()),
            (
                400,
                json!({"error": {"message": "Previous response with id 'resp_x' not found.",
                    "type": "invalid_request_error", "param": "previous_response_id",
                    "code": "previous_response_not_found"}})
            )
        );
        let keep = resolve(&s, None, &mut req, Chain { previous_response_id: None, store: false });
        assert!(matches!(keep, Ok(None)));
    }
}
