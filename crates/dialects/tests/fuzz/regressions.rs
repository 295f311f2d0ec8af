//! Inputs the fuzz targets found that panicked, replayed as plain tests (each fails on the code before its fix).

use crate::encoders::run_everything;

/// `response.incomplete` whose usage sums past u64 with no total: `Event::parse` added the two counts
/// unchecked ("attempt to add with overflow").
#[test]
fn usage_sum_past_u64_does_not_overflow() {
    let max = u64::MAX;
    let payload = format!(
        r#"{{"type":"response.incomplete","response":{{"id":"r","incomplete_details":{{"reason":"max_output_tokens"}},"output":[],"usage":{{"input_tokens":{max},"output_tokens":{max},"total_tokens":0}}}}}}"#
    );
    run_everything(&[payload], None);
}

/// A `response.completed` whose `response` is an array: `ResponsesAssembler::finish` (the non-streaming
/// Responses passthrough) assigned `response["output"]` and panicked ("cannot access key \"output\" in JSON
/// array"). Now the upstream's malformed answer is an error.
#[test]
fn completed_with_a_non_object_response_then_a_message() {
    let payloads = [
        r#"{"response":[],"sequence_number":8,"type":"response.completed"}"#.to_string(),
        r#"{"item":{"content":[{"annotations":[],"text":"It is 18°C in Paris.","type":"output_text"}],"id":"msg_1","role":"assistant","status":"completed","type":"message"},"output_index":1,"sequence_number":13,"type":"response.output_item.done"}"#.to_string(),
    ];
    run_everything(&payloads, None);
}

#[test]
fn assembler_reports_a_non_object_final_response_as_an_upstream_error() {
    let mut a = dialects::responses::ResponsesAssembler::new();
    a.on_payload(serde_json::json!({"type":"response.output_item.done","output_index":0,"item":{"type":"message"}}));
    a.on_payload(serde_json::json!({"type":"response.completed","response":[]}));
    let err = a.finish().err().map(|e| e.kind);
    assert_eq!(err, Some(dialects::ErrorKind::UpstreamUnavailable));
}
