//! The warm-up (`generate: false`): a `response.create` the backend takes like any request (validated, its
//! prompt read) and completes at once, with no model run and no output. The official client opens each upstream
//! WebSocket with one and chains its first turn on it (`previous_response_id`); the gateway passes a client's
//! warm-up on the same way over the WebSocket. Over HTTP there is no warm-up (the official client never sends
//! one there): the gateway answers it itself, with the two events the backend would have sent.

use bytes::Bytes;
use serde_json::{Value, json};

use super::transport::{BodyStream, Plain, UpstreamResponse};

/// The `response.created` and `response.completed` events of a warm-up, with a fresh response id.
pub fn events(id: &str, model: &Value, created_at: i64) -> [String; 2] {
    let response = |status: &str| {
        json!({
            "id": id, "object": "response", "created_at": created_at, "status": status, "model": model,
            "output": [], "usage": {"input_tokens": 0, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 0},
        })
    };
    [
        json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress")}).to_string(),
        json!({"type": "response.completed", "sequence_number": 1, "response": response("completed")}).to_string(),
    ]
}

/// The answer to a warm-up that does not go over the WebSocket: its events as the SSE stream the HTTP endpoint
/// would have sent, made here.
pub fn answered_here(model: &str) -> UpstreamResponse {
    let id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    let [created, completed] = events(&id, &Value::String(model.to_string()), crate::auth::now_unix());
    let sse = format!("event: response.created\ndata: {created}\n\nevent: response.completed\ndata: {completed}\n\n");
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("text/event-stream"));
    let body: BodyStream = Box::pin(Plain::new(futures_util::stream::once(async move { Ok(Bytes::from(sse)) })));
    UpstreamResponse { status: axum::http::StatusCode::OK, headers, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warm_up_answered_here_is_created_and_completed_with_no_output() {
        let [created, done] = events("resp_w", &json!("m"), 1);
        let created: Value = serde_json::from_str(&created).unwrap_or_default();
        let done: Value = serde_json::from_str(&done).unwrap_or_default();
        assert_eq!(created["response"]["status"], "in_progress");
        assert_eq!(done["type"], "response.completed");
        assert_eq!(done["response"]["id"], "resp_w");
        assert_eq!(done["response"]["output"], json!([]));
    }
}
