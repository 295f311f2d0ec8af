//! THE table of the model routes with a fixed path, and all that is read from it: the router's POST routes
//! ([`model_routes`]), the main listener's direct path ([`ModelCall`]: direct.rs serves these calls without the
//! router), and the error shape of a path no handler has taken yet ([`shape_of`]).
//!
//! Adding a dialect: its module in `dialects`, its `Dialect` impl (dialect.rs), and one line in the table below.
//! A dialect whose path carries parameters (Gemini: the model and method in the last segment) routes itself
//! instead (its `model_routes`, merged in server/mod.rs) and says which paths are its own ([`shape_of`]).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::{MethodRouter, post};
use bytes::Bytes;
use futures_util::future::Either::{Left, Right};

use super::anthropic::Anthropic;
use super::dialect::Shape;
use super::gemini::{self, Gemini};
use super::handler::handle;
use super::openai::{self, Chat, Responses};
use crate::app::AppState;
use crate::keys::Caller;

model_table! {
    // call:   its Dialect impl => its POST paths (the first names the route in records) [boxed on the direct path]
    Chat: Chat => ["/v1/chat/completions", "/chat/completions"];
    Responses: Responses => ["/v1/responses", "/responses"];
    // Larger (its own retry, ~4.4 KB) and rarer: boxed, so the direct path's other calls do not carry its size.
    Messages: Anthropic => ["/v1/messages"] boxed;
}

/// The error shape of a request no handler has taken: the dialect whose paths it is under, else OpenAI's.
pub fn shape_of(path: &str) -> Shape {
    match ModelCall::under(path) {
        Some(call) => call.shape(),
        None if gemini::owns(path) => Shape::of::<Gemini>(),
        None => openai::SHAPE,
    }
}

/// Builds the table's uses from its lines (`call: Dialect => [paths] boxed?;`): the [`ModelCall`] enum, its
/// lookup by path, its POST route, its direct call, the shape of its paths, and [`model_routes`].
macro_rules! model_table {
    ($($(#[$doc:meta])* $call:ident: $dialect:ty => [$first:literal $(, $more:literal)*] $($boxed:ident)?;)+) => {
        /// A model call of the table, served by the router and, on the main listener, without it (direct.rs).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ModelCall {
            $($(#[$doc])* $call,)+
        }

        impl ModelCall {
            /// The model call a request is: a POST to one of the table's paths.
            pub fn of(method: &Method, path: &str) -> Option<ModelCall> {
                if method != Method::POST {
                    return None;
                }
                match path {
                    $($first $(| $more)* => Some(ModelCall::$call),)+
                    _ => None,
                }
            }

            /// Its POST route, for a router.
            pub fn route(self) -> MethodRouter<Arc<AppState>> {
                match self {
                    $(ModelCall::$call => post(
                        |State(state): State<Arc<AppState>>,
                         caller: Option<Caller>,
                         headers: HeaderMap,
                         body: Result<Bytes, BytesRejection>| {
                            handle::<$dialect>(state, (), $first, caller, headers, body)
                        },
                    ),)+
                }
            }

            /// Serve it: its dialect's handler, chosen by a `match`, held in one enum's room (or boxed, where the
            /// table says so); no route, no boxed future, no dynamic call.
            pub fn serve(
                self,
                state: Arc<AppState>,
                caller: Option<Caller>,
                headers: HeaderMap,
                body: Result<Bytes, BytesRejection>,
            ) -> impl Future<Output = Response> + Send + 'static {
                either!(self, (state, caller, headers, body); $($call: $dialect, $first $(, $boxed)?;)+)
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

/// One call's future in the chain of `Either`s [`ModelCall::serve`] returns: `Left` if it is this call, else
/// `Right` of the next; the last is the rest.
macro_rules! either {
    ($self:ident, $args:tt; $call:ident: $dialect:ty, $name:literal $(, $boxed:ident)?;) => {
        held!($($boxed)? handled!($dialect, $name, $args))
    };
    ($self:ident, $args:tt; $call:ident: $dialect:ty, $name:literal $(, $boxed:ident)?; $($rest:tt)+) => {
        if $self == ModelCall::$call {
            Left(held!($($boxed)? handled!($dialect, $name, $args)))
        } else {
            Right(either!($self, $args; $($rest)+))
        }
    };
}
use either;

macro_rules! handled {
    ($dialect:ty, $name:literal, ($state:ident, $caller:ident, $headers:ident, $body:ident)) => {
        handle::<$dialect>($state, (), $name, $caller, $headers, $body)
    };
}
use handled;

macro_rules! held {
    (boxed $future:expr) => {
        Box::pin($future)
    };
    ($future:expr) => {
        $future
    };
}
use held;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_posts_to_the_tables_paths_are_model_calls() {
        let post = Method::POST;
        assert_eq!(ModelCall::of(&post, "/v1/chat/completions"), Some(ModelCall::Chat));
        assert_eq!(ModelCall::of(&post, "/chat/completions"), Some(ModelCall::Chat));
        assert_eq!(ModelCall::of(&post, "/v1/responses"), Some(ModelCall::Responses));
        assert_eq!(ModelCall::of(&post, "/responses"), Some(ModelCall::Responses));
        assert_eq!(ModelCall::of(&post, "/v1/messages"), Some(ModelCall::Messages));
        for path in ["/v1/chat/completions/", "/v1/messages/count_tokens", "/v1/responses/compact", "/v1/models"] {
            assert_eq!(ModelCall::of(&post, path), None, "{path}");
        }
        for method in [Method::GET, Method::HEAD, Method::PUT, Method::OPTIONS] {
            assert_eq!(ModelCall::of(&method, "/v1/responses"), None, "{method}");
        }
    }
}
