//! How an HTTP/2 stream or connection to the upstream failed, as a type: the pool decides on a retry, a new
//! connection and the transport kind by matching on it.

use std::sync::Arc;

use super::frame::Reason;
use super::hpack::Malformed;

#[derive(Debug, Clone, thiserror::Error)]
pub enum H2Error {
    /// The server reset the stream (RST_STREAM).
    #[error("the upstream reset the HTTP/2 stream: {0}")]
    Reset(Reason),
    /// The server is closing the connection (GOAWAY). `unprocessed`: the stream was above the server's last
    /// processed stream, so it was not acted on and may be sent again (RFC 9113 §6.8).
    #[error("the upstream is closing the HTTP/2 connection: {reason}")]
    GoAway { reason: Reason, unprocessed: bool },
    /// The server broke the protocol on the connection; this client ended it.
    #[error("the upstream broke the HTTP/2 protocol: {0}")]
    Protocol(&'static str),
    /// The server's answer on this stream was malformed; this client reset the stream.
    #[error(transparent)]
    Malformed(Malformed),
    /// Reading or writing the connection failed.
    #[error("the upstream HTTP/2 connection failed")]
    Io(#[source] Arc<std::io::Error>),
    /// The connection ended (the server closed it, or this side dropped it).
    #[error("the upstream closed the HTTP/2 connection")]
    Closed,
}

impl H2Error {
    /// The server declined the request before processing it, so it is safe to send again on another stream or
    /// connection (RFC 9113 §8.7): the stream was refused, or it was above a GOAWAY's last stream.
    pub fn unprocessed(&self) -> bool {
        matches!(self, H2Error::Reset(Reason::REFUSED_STREAM) | H2Error::GoAway { unprocessed: true, .. })
    }

    /// The connection is over for new streams.
    pub fn ends_connection(&self) -> bool {
        matches!(self, H2Error::GoAway { .. } | H2Error::Protocol(_) | H2Error::Io(_) | H2Error::Closed)
    }
}
