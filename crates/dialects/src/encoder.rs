//! The one streaming-encoder trait: upstream frames and their events in, client bytes out. The gateway's pump
//! drives every dialect through it: the translating encoders (Chat, Anthropic, Gemini, Ollama) read the parsed
//! event, the Responses passthrough forwards the frame itself.

use crate::sse::SseFrame;
use crate::{Event, GatewayError};

pub trait StreamEncoder: Send + 'static {
    /// One upstream event; `frame` is the raw upstream frame it was parsed from.
    fn on_event(&mut self, frame: &SseFrame, event: &Event, out: &mut Vec<u8>);
    /// An error after the stream began, in the dialect's in-stream error form.
    fn on_error(&mut self, err: &GatewayError, out: &mut Vec<u8>);
    /// What to send while the upstream is silent. Nothing by default: Gemini and Ollama clients parse every
    /// frame, so they have no frame a client would ignore.
    fn keepalive(&mut self, _out: &mut Vec<u8>) {}
    /// True once the final frame was written.
    fn is_finished(&self) -> bool;
    /// Whether the encoder forwards the upstream's frames as they came (the Responses passthrough): a frame that
    /// cannot be parsed is then passed on rather than failing the answer.
    fn forwards_frames(&self) -> bool {
        false
    }
}

/// Implements the trait for a translating encoder by delegating to its inherent methods (`on_event`, `error`,
/// `is_finished`), which read only the event: the raw frame is the passthrough's business. Each dialect's module
/// says it beside its encoder, so this file names none of them.
macro_rules! delegate {
    ($ty:ty $(, keepalive = $ka:expr)?) => {
        impl $crate::encoder::StreamEncoder for $ty {
            fn on_event(&mut self, _frame: &$crate::sse::SseFrame, event: &$crate::Event, out: &mut Vec<u8>) {
                <$ty>::on_event(self, event, out)
            }
            fn on_error(&mut self, err: &$crate::GatewayError, out: &mut Vec<u8>) {
                <$ty>::error(self, err, out)
            }
            fn is_finished(&self) -> bool {
                <$ty>::is_finished(self)
            }
            $(fn keepalive(&mut self, out: &mut Vec<u8>) {
                ($ka)(out)
            })?
        }
    };
}

pub(crate) use delegate;
