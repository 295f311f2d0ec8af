//! Which dialect a path belongs to, for an error raised before any handler ran (the guard's refusals, 404, 405).

use super::anthropic::Anthropic;
use super::dialect::Shape;
use super::gemini::{self, Gemini};
use super::openai;

/// The error shape of a request no handler has taken: the dialect whose paths it is under, else OpenAI's.
pub fn shape_of(path: &str) -> Shape {
    if path.starts_with("/v1/messages") {
        Shape::of::<Anthropic>()
    } else if gemini::owns(path) {
        Shape::of::<Gemini>()
    } else {
        openai::SHAPE
    }
}
