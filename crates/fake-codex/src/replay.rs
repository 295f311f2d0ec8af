//! Recorded streams played back verbatim (`Scenario::Replay`): raw SSE text cut into its events, each one a
//! [`Step::Event`] of its own, so it reaches the client as its own HTTP chunk or WebSocket text frame, the way the
//! backend flushed it. Nothing is added, changed or reordered; the recordings are the real backend's bytes
//! (the gateway's replay tests read them from `../shared/replay/`, see docs/testing.md).

use bytes::Bytes;

use crate::sse::Step;

/// Event types after which the backend sends nothing more for the response.
const TERMINAL: [&str; 4] = ["response.completed", "response.incomplete", "response.failed", "error"];

/// A recording as the steps of a reply, and whether it ends as the backend ends a finished response (completed or
/// incomplete: what the fake charges to the account's quota). A recording without a terminal event ends with
/// [`Step::Cut`]: it stopped there, so the connection does too.
pub fn steps(sse: &str) -> (Vec<Step>, bool) {
    let text = sse.replace("\r\n", "\n");
    let mut steps = Vec::new();
    let mut ending: Option<&str> = None;
    for block in text.split("\n\n") {
        let block = block.trim_matches('\n');
        if block.is_empty() {
            continue;
        }
        if let Some(kind) = terminal_type(block) {
            ending = Some(kind);
        }
        let mut bytes = Vec::with_capacity(block.len() + 2);
        bytes.extend_from_slice(block.as_bytes());
        bytes.extend_from_slice(b"\n\n");
        steps.push(Step::Event(Bytes::from(bytes)));
    }
    if ending.is_none() {
        steps.push(Step::Cut);
    }
    (steps, matches!(ending, Some("response.completed" | "response.incomplete")))
}

/// The terminal type an event block carries, read from its `data:` payload's `type` (its `event:` name when the
/// payload is not JSON).
fn terminal_type(block: &str) -> Option<&'static str> {
    let mut name = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(n) = line.strip_prefix("event:") {
            name = Some(n.trim().to_string());
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    let kind = match serde_json::from_str::<serde_json::Value>(&data) {
        Ok(v) => v.get("type").and_then(serde_json::Value::as_str).map(str::to_string),
        Err(_) => name,
    }?;
    TERMINAL.iter().copied().find(|t| *t == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::Event(b) => String::from_utf8_lossy(b).into_owned(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_event_is_a_step_of_its_own_byte_for_byte() {
        let sse = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{}}\n\n\
                   data: {\"type\":\"response.output_text.delta\",\"delta\":\"a\\n\\nb\"}\n\n\
                   event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n";
        let (played, finished) = steps(sse);
        assert!(finished);
        assert_eq!(
            events(&played),
            vec![
                "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{}}\n\n",
                "data: {\"type\":\"response.output_text.delta\",\"delta\":\"a\\n\\nb\"}\n\n",
                "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n",
            ]
        );
    }

    #[test]
    fn a_recording_without_a_terminal_event_ends_cut() {
        let (played, finished) = steps("data: {\"type\":\"response.created\"}\n\ndata: not json\n\n");
        assert!(!finished);
        assert_eq!(played.last(), Some(&Step::Cut));
        let (played, finished) = steps("event: response.failed\ndata: {\"type\":\"response.failed\"}\n\n");
        assert!(!finished, "a failure is not charged");
        assert!(!played.contains(&Step::Cut));
    }
}
