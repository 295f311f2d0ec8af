//! The Responses passthrough's stream encoder: upstream frames are forwarded as they are (no re-serialisation),
//! with one exception: the backend's `response.completed` may carry an empty `output`, and SDKs build their final
//! response from it, so that one event gets the items of the `output_item.done` events filled in.

use crate::encoder::StreamEncoder;
use crate::sse::{SseFrame, write_event};
use crate::{Event, GatewayError};

use super::stream_error_frame;

#[derive(Debug, Default)]
pub struct Passthrough {
    finished: bool,
    done_items: Vec<(u64, serde_json::Value)>,
}

impl Passthrough {
    pub fn new() -> Passthrough {
        Passthrough::default()
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
    fn needs_delta_payloads(&self) -> bool {
        false
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
