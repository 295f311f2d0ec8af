//! The upstream side: pooled HTTP clients (`transport`, `http1` with its body framing in `chunked`, `http2`,
//! `tls`), the Responses WebSocket (`ws` for the wire facts and settings, `ws_pool` for the connections), the
//! official client's headers, and the classification of
//! upstream failures into client-visible errors.

mod chunked;
mod classify;
mod client;
mod compact;
mod http1;
mod http2;
pub mod identity;
mod names;
pub mod ratelimits;
pub(crate) mod tls;
mod transport;
pub mod ws;
mod ws_pool;

pub use classify::classify;
pub use client::{CallContext, Upstream, build_http_client, build_http_client_with_proxy};
pub use http2::resets_sent as http2_resets_sent;
pub use identity::CODEX_CLIENT_VERSION;
pub(crate) use transport::with_causes;
pub use transport::{Body, BodyStream, Plain, TransportError, UpstreamResponse};
