//! THE table of the model routes with a fixed path, and all that is read from it: the router's POST routes
//! ([`model_routes`], [`ModelCall::route`] for a router of its own: the Ollama bridge), and the error shape of a
//! path no handler has taken yet ([`shape_of`]).
//!
//! Adding a dialect: its module in `dialects`, its `Dialect` impl (dialect.rs), and one line in the table below.
//! A dialect whose path carries parameters (Gemini: the model and method in the last segment) routes itself
//! instead (its `model_routes`, merged in server/mod.rs) and says which paths are its own ([`shape_of`]).

use std::sync::Arc;

use axum::Router;
use axum::routing::MethodRouter;

use super::anthropic::Anthropic;
use super::dialect::Shape;
use super::gemini::{self, Gemini};
use super::handler::post_route;
use super::openai::{self, Chat, Responses};
use crate::app::AppState;

model_table! {
    // call:   its Dialect impl => its POST paths (the first names the route in records)
    Chat: Chat => ["/v1/chat/completions", "/chat/completions"];
    Responses: Responses => ["/v1/responses", "/responses"];
    Messages: Anthropic => ["/v1/messages"];
}

/// The error shape of a request no handler has taken: the dialect whose paths it is under, else OpenAI's.
pub fn shape_of(path: &str) -> Shape {
    match ModelCall::under(path) {
        Some(call) => call.shape(),
        None if gemini::owns(path) => Shape::of::<Gemini>(),
        None => openai::SHAPE,
    }
}

/// Builds the table's uses from its lines (`call: Dialect => [paths];`): the [`ModelCall`] enum, its POST route,
/// the shape of its paths, and [`model_routes`].
macro_rules! model_table {
    ($($(#[$doc:meta])* $call:ident: $dialect:ty => [$first:literal $(, $more:literal)*];)+) => {
        /// A model call of the table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ModelCall {
            $($(#[$doc])* $call,)+
        }

        impl ModelCall {
            /// Its POST route, for a router.
            pub fn route(self) -> MethodRouter<Arc<AppState>> {
                match self {
                    $(ModelCall::$call => post_route::<$dialect>((), $first),)+
                }
            }

            /// The call whose paths `path` is at or under.
            fn under(path: &str) -> Option<ModelCall> {
                $(if path.starts_with($first) $(|| path.starts_with($more))* {
                    return Some(ModelCall::$call);
                })+
                None
            }

            fn shape(self) -> Shape {
                match self {
                    $(ModelCall::$call => Shape::of::<$dialect>(),)+
                }
            }
        }

        /// Every path of the table, with its call's POST route.
        pub fn model_routes() -> Router<Arc<AppState>> {
            Router::new()
                $(.route($first, ModelCall::$call.route()) $(.route($more, ModelCall::$call.route()))*)+
        }
    };
}
use model_table;
