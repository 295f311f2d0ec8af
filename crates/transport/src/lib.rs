//! The gateway's connections to its upstream, knowing nothing of accounts, the model catalog or the store: a
//! request is a URI, a header map (the credential is one of its values) and a body; the answer is an
//! [`UpstreamResponse`] whose body streams. README.md says what this crate owns and what it does not.
//!
//! Two transports give the same [`UpstreamResponse`]:
//! - [`Direct`]: HTTP/2 on the h2 crate ([`http2`]: TLS with ALPN h2, or h2c by configuration), and hyper's
//!   pooled HTTP/1.1 client ([`http1`]) for upstreams that speak HTTP/1.1, both over this crate's TLS. Every
//!   request goes this way unless a proxy is involved: the protocol is chosen per origin (ALPN, `upstream_h2c`)
//!   and h2's connections are pooled as the HTTP/2 settings need (docs/performance.md, "HTTP/2 upstream
//!   settings"), which reqwest's client does not let its caller do.
//! - reqwest ([`post_via_reqwest`]), for accounts behind a proxy (HTTP CONNECT or SOCKS, with `NO_PROXY` for the
//!   global one), which reqwest handles and the request path does not need to re-implement.
//!
//! And the Responses WebSocket ([`ws`] for its wire facts and settings, [`ws_handshake`] for its opening with the
//! official client's permessage-deflate offer, [`ws_pool`] for the connections), whose answers come back in the
//! same shape. One TLS configuration serves them all ([`tls`]).

mod body;
pub mod chain;
pub mod decode;
mod direct;
mod error;
mod http1;
mod http2;
pub mod tls;
pub mod ws;
pub mod ws_handshake;
pub mod ws_pool;

pub use body::{Body, BodyStream, Plain, UpstreamResponse};
pub use direct::{
    CONNECT_TIMEOUT, Direct, POOL_IDLE_TIMEOUT, POOL_MAX_IDLE_PER_HOST, post_via_reqwest, reqwest_client,
};
pub use error::{TransportError, TransportKind, with_causes};
pub use http2::resets_sent as http2_resets_sent;
