//! The Responses passthrough's stream encoder: upstream frames are forwarded as they are (no re-serialisation),
//! with one exception: the backend's `response.completed` may carry an empty `output`, and SDKs build their final
//! response from it, so that one event gets the items of the `output_item.done` events filled in. A passthrough
//! made with [`Passthrough::keeping`] also hands that completed response over ([`Passthrough::take_completed`]):
//! the gateway keeps it for a later request's `previous_response_id`.

use crate::encoder::StreamEncoder;
use crate::sse::{SseFrame, write_event};
use crate::{Event, GatewayError, Terminal};

use super::stream_error_frame;

#[derive(Debug, Default)]
pub struct Passthrough {
    finished: bool,
    done_items: Vec<(u64, serde_json::Value)>,
    /// Whether to keep the completed response for [`Passthrough::take_completed`].
    keep: bool,
    completed: Option<serde_json::Value>,
}

impl Passthrough {
    pub fn new() -> Passthrough {
        Passthrough::default()
    }

    /// A passthrough that keeps the `response` of `response.completed` (its output filled in as the client gets
    /// it), for [`Passthrough::take_completed`]. A response that failed or ended incomplete is not kept.
    pub fn keeping() -> Passthrough {
        Passthrough { keep: true, ..Passthrough::default() }
    }

    /// The completed response, once its event went out (only for [`Passthrough::keeping`]).
    pub fn take_completed(&mut self) -> Option<serde_json::Value> {
        self.completed.take()
    }
}

impl StreamEncoder for Passthrough {
    fn on_event(&mut self, frame: &SseFrame, event: &Event, out: &mut Vec<u8>) {
        let name = match &frame.event {
            Some(n) => n.as_ref(),
            None => event_type(&frame.data),
        };
        match event {
            Event::ItemDone { output_index, .. } => {
                if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&frame.data) {
                    self.done_items.push((u64::from(*output_index), v["item"].take()));
                }
            }
            Event::Finished { output, .. } if output.is_empty() && !self.done_items.is_empty() => {
                if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&frame.data)
                    && v.get("response").is_some_and(serde_json::Value::is_object)
                {
                    self.done_items.sort_by_key(|(i, _)| *i);
                    v["response"]["output"] = serde_json::Value::Array(
                        std::mem::take(&mut self.done_items).into_iter().map(|(_, i)| i).collect(),
                    );
                    if let Ok(bytes) = serde_json::to_vec(&v) {
                        write_event(out, name, &bytes);
                        self.finished = true;
                        if self.keep && matches!(event, Event::Finished { terminal: Terminal::Completed, .. }) {
                            self.completed = Some(v["response"].take());
                        }
                        return;
                    }
                }
            }
            _ => {}
        }
        write_event(out, name, frame.data.as_bytes());
        if event.is_terminal() {
            self.finished = true;
        }
        if self.keep
            && matches!(event, Event::Finished { terminal: Terminal::Completed, .. })
            && let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&frame.data)
            && v.get("response").is_some_and(serde_json::Value::is_object)
        {
            self.completed = Some(v["response"].take());
        }
    }
    fn on_error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        if !self.finished {
            stream_error_frame(err, out);
            self.finished = true;
        }
    }
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b": keepalive\n\n");
    }
    fn is_finished(&self) -> bool {
        self.finished
    }
    fn forwards_frames(&self) -> bool {
        true
    }
}

/// The `type` of an event payload, for upstream frames that came without an `event:` line.
fn event_type(data: &str) -> &str {
    #[derive(serde::Deserialize)]
    struct T<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
    }
    serde_json::from_str::<T>(data).map(|t| t.kind).unwrap_or("message")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(p: &mut Passthrough, data: serde_json::Value) -> Vec<u8> {
        let data = data.to_string();
        let frame = SseFrame { event: None, data: data.clone() };
        let event = Event::parse(&data).unwrap_or_else(|e| panic!("{e:?}"));
        let mut out = Vec::new();
        p.on_event(&frame, &event, &mut out);
        out
    }

    fn item() -> serde_json::Value {
        json!({"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "hi", "annotations": []}]})
    }

    #[test]
    fn a_keeping_passthrough_hands_over_the_completed_response_with_its_output_filled_in() {
        let mut p = Passthrough::keeping();
        feed(&mut p, json!({"type": "response.output_item.done", "output_index": 0, "item": item()}));
        assert!(p.take_completed().is_none());
        let out = feed(
            &mut p,
            json!({"type": "response.completed", "response": {"id": "resp_1", "status": "completed", "output": []}}),
        );
        let kept = p.take_completed().unwrap_or_else(|| panic!("nothing kept"));
        assert_eq!(kept["id"], "resp_1");
        assert_eq!(kept["output"], json!([item()]));
        // The client got the same filled-in output.
        assert!(String::from_utf8_lossy(&out).contains("\"msg_1\""));
        assert!(p.take_completed().is_none(), "handed over once");
    }

    #[test]
    fn a_completed_output_is_kept_as_sent_and_an_incomplete_response_is_not_kept() {
        let mut p = Passthrough::keeping();
        let done = json!({"type": "response.completed", "response": {"id": "resp_2", "output": [item()]}});
        feed(&mut p, done);
        assert_eq!(p.take_completed().map(|r| r["output"].clone()), Some(json!([item()])));

        let mut p = Passthrough::keeping();
        feed(
            &mut p,
            json!({"type": "response.incomplete", "response": {"id": "resp_3", "output": [],
                "incomplete_details": {"reason": "max_output_tokens"}}}),
        );
        assert!(p.take_completed().is_none());

        let mut p = Passthrough::new();
        feed(&mut p, json!({"type": "response.completed", "response": {"id": "resp_4", "output": [item()]}}));
        assert!(p.take_completed().is_none(), "only a keeping passthrough keeps");
    }
}
