//! What every streaming dialect encoder offers the driver that feeds it: events in, client bytes out. The
//! gateway drives any implementation with one adapter instead of one wrapper per dialect.

use crate::anthropic::AnthropicEncoder;
use crate::chat::ChatEncoder;
use crate::gemini::GeminiEncoder;
use crate::ollama::OllamaEncoder;
use crate::{Event, GatewayError};

pub trait StreamTranslator: Send + 'static {
    /// One upstream event.
    fn on_event(&mut self, event: &Event, out: &mut Vec<u8>);
    /// An error after the stream began, in the dialect's in-stream error form.
    fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>);
    /// True once the final frame was written.
    fn is_finished(&self) -> bool;
    /// What to send while the upstream is silent. Nothing by default: Gemini and Ollama clients parse every
    /// frame, so they have no frame a client would ignore.
    fn keepalive(&self, _out: &mut Vec<u8>) {}
}

/// Implements the trait by delegating to the encoder's inherent methods of the same names.
macro_rules! delegate {
    ($ty:ty $(, keepalive = $ka:expr)?) => {
        impl StreamTranslator for $ty {
            fn on_event(&mut self, event: &Event, out: &mut Vec<u8>) {
                <$ty>::on_event(self, event, out)
            }
            fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
                <$ty>::error(self, err, out)
            }
            fn is_finished(&self) -> bool {
                <$ty>::is_finished(self)
            }
            $(fn keepalive(&self, out: &mut Vec<u8>) {
                ($ka)(out)
            })?
        }
    };
}

// SSE comment lines are ignored by every OpenAI client.
delegate!(ChatEncoder, keepalive = |out: &mut Vec<u8>| out.extend_from_slice(b": keepalive\n\n"));
delegate!(AnthropicEncoder, keepalive = AnthropicEncoder::ping);
delegate!(GeminiEncoder);
delegate!(OllamaEncoder);
