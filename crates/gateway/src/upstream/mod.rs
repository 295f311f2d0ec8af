//! The upstream side as the gateway sees it: the official client's headers (`client`, `identity`), the
//! backend's `responses/compact` call, the `x-codex-*` limit headers passed to clients (`ratelimits`), and the
//! classification of error answers (`classify`). The connections themselves (HTTP/1.1, HTTP/2, the Responses
//! WebSocket, TLS, pooling) are the `upstream-transport` crate's (crates/transport), which knows nothing of
//! accounts, the catalog or the store; this module maps its failures and gives it the account.

use std::sync::Arc;

use axum::http::HeaderMap;
use dialects::UpstreamFailure;
use dialects::failure::{Stage, TransportKind};
use dialects::upstream_request::chain;

mod classify;
mod client;
mod compact;
mod compress;
pub mod identity;
mod images;
pub mod ratelimits;
pub mod warmup;

// The transport crate's modules under the names this module's files have always used.
use upstream_transport as transport;
pub use upstream_transport::ws;
use upstream_transport::{tls, ws_pool};

pub use classify::classify;
pub use client::{CallContext, Upstream, build_http_client};
pub use identity::CODEX_CLIENT_VERSION;
pub use upstream_transport::ws_pool::fallbacks as websocket_fallbacks;
pub use upstream_transport::{
    Body, BodyStream, Plain, TransportError, UpstreamResponse, http2_resets_sent, with_causes,
};

use crate::accounts::{Account, QuotaSnapshot};

/// A transport failure as the failure of an exchange.
pub trait IntoFailure {
    /// This failure of the exchange at `stage` (the classifier in `dialects::failure` decides what follows).
    fn failure(self, stage: Stage) -> UpstreamFailure;
}

impl IntoFailure for TransportError {
    fn failure(self, stage: Stage) -> UpstreamFailure {
        use upstream_transport::TransportKind as Wire;
        let kind = match self.kind() {
            Wire::Connect => TransportKind::Connect,
            Wire::Timeout => TransportKind::Timeout,
            Wire::Reset => TransportKind::Reset,
            Wire::Tls => TransportKind::Tls,
            Wire::Other => TransportKind::Other,
        };
        UpstreamFailure::Transport { stage, kind, cause: self.into_cause() }
    }
}

/// An account as the owner of Responses WebSocket connections: they are kept per account, and the limits a
/// `codex.rate_limits` frame carries update its quota as an HTTP answer's headers do.
impl ws_pool::Owner for Account {
    fn id(&self) -> &str {
        &self.id
    }

    fn rate_limits(&self, headers: &HeaderMap) {
        if let Some(quota) = QuotaSnapshot::from_headers(headers, crate::auth::now_unix()) {
            self.observe_quota(quota, None);
        }
    }
}

/// A request's chaining on the upstream WebSocket as the transport takes it (`CallContext::chain`): the digests
/// and plan are `dialects::upstream_request::chain`'s, each connection keeps the lineage it leaves.
#[derive(Debug)]
pub struct Chaining(pub Arc<chain::ChainRequest>);

impl transport::chain::Chain for Chaining {
    fn turn(&self, body: &[u8], lineage: Option<transport::chain::Lineage>) -> Box<dyn transport::chain::Turn> {
        // Only this type puts lineages on the connections: another one would be nothing to chain on.
        let previous = lineage.and_then(|l| l.downcast::<chain::Lineage>().ok()).map(|l| *l);
        Box::new(ChainedTurn(self.0.turn(body, previous)))
    }
}

/// One send of a chained request, as the transport drives it.
struct ChainedTurn(chain::Turn);

impl transport::chain::Turn for ChainedTurn {
    fn chains(&self) -> bool {
        self.0.chains()
    }

    fn take_body(&mut self) -> Option<Vec<u8>> {
        self.0.take_body()
    }

    fn see(&mut self, kind: &str, data: &str) {
        self.0.see(kind, data);
    }

    fn finish(self: Box<Self>) -> Option<transport::chain::Lineage> {
        self.0.finish().map(|l| Box::new(l) as transport::chain::Lineage)
    }
}

/// For the call sites that hold an `Arc<Account>`.
fn owner(account: &Arc<Account>) -> Arc<dyn ws_pool::Owner> {
    account.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The failure keeps the transport error as its cause and the kind read off the wire.
    #[test]
    fn transport_failures_keep_their_cause_and_kind() {
        use std::error::Error as _;
        let reset = TransportError::of(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "peer reset"));
        let failure = reset.failure(Stage::Body);
        assert!(matches!(failure, UpstreamFailure::Transport { stage: Stage::Body, kind: TransportKind::Reset, .. }));
        assert_eq!(failure.to_error().message, "The upstream connection failed mid-response: peer reset");
        assert!(failure.source().is_some(), "the chain goes on from the failure");
    }
}
