//! How reaching the upstream, or reading from it, failed: [`TransportError`], with its cause chain and the
//! [`TransportKind`] read off it once. The gateway turns it into its own failure type (the classifier in
//! `dialects::failure` decides what happens next); this crate only says what happened on the wire.

use std::sync::Arc;

/// What the connection failure was, read from the error's cause chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The connection could not be made (refused, unreachable).
    Connect,
    Timeout,
    /// The connection or stream was cut (reset, closed, GOAWAY, RST_STREAM).
    Reset,
    Tls,
    /// Anything else (an invalid answer, a bad URL).
    Other,
}

/// A failure to reach the upstream or to read from it: the error itself, with its cause chain, and what kind of
/// failure the chain shows. Shown as the error and its causes (a top-level message alone, such as "error
/// decoding response body", does not say whether the connection was reset, timed out or refused by HTTP/2 flow
/// control), and never the URL, which can carry query parameters.
#[derive(Debug, Clone)]
pub struct TransportError {
    kind: TransportKind,
    cause: Arc<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&with_causes(&*self.cause))
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}

impl From<reqwest::Error> for TransportError {
    fn from(e: reqwest::Error) -> TransportError {
        TransportError::of(e.without_url())
    }
}

/// A failure the gateway itself describes (no underlying error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Described(&'static str);

impl TransportError {
    /// A failure the gateway noticed itself, of a known kind.
    pub fn described(kind: TransportKind, text: &'static str) -> TransportError {
        TransportError { kind, cause: Arc::new(Described(text)) }
    }

    /// A failure of a kind its error does not show by itself (a WebSocket's protocol errors).
    pub(crate) fn of_kind(kind: TransportKind, e: impl std::error::Error + Send + Sync + 'static) -> TransportError {
        TransportError { kind, cause: Arc::new(e) }
    }

    pub fn of(e: impl std::error::Error + Send + Sync + 'static) -> TransportError {
        TransportError { kind: kind_of(&e), cause: Arc::new(e) }
    }

    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// The error with its cause chain, shared (the caller keeps it as the cause of its own failure type).
    pub fn into_cause(self) -> Arc<dyn std::error::Error + Send + Sync> {
        Arc::new(self)
    }
}

/// What kind of failure an error's cause chain shows: the first cause that says.
fn kind_of(e: &(dyn std::error::Error + 'static)) -> TransportKind {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(kind) = err.downcast_ref::<std::io::Error>().and_then(io_kind) {
            return kind;
        }
        if err.is::<rustls::Error>() {
            return TransportKind::Tls;
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if let Some(io) = h2.get_io() {
                return io_kind(io).unwrap_or(TransportKind::Reset);
            }
            if h2.is_reset() || h2.is_go_away() {
                return TransportKind::Reset;
            }
        }
        if let Some(r) = err.downcast_ref::<reqwest::Error>() {
            if r.is_timeout() {
                return TransportKind::Timeout;
            }
            if r.is_connect() {
                return TransportKind::Connect;
            }
        }
        if let Some(h) = err.downcast_ref::<hyper_util::client::legacy::Error>()
            && h.is_connect()
        {
            return TransportKind::Connect;
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                return TransportKind::Timeout;
            }
            if h.is_incomplete_message() || h.is_canceled() {
                return TransportKind::Reset;
            }
        }
        next = err.source();
    }
    TransportKind::Other
}

/// What kind of failure an I/O error is, if it says.
fn io_kind(io: &std::io::Error) -> Option<TransportKind> {
    use std::io::ErrorKind as Io;
    match io.kind() {
        Io::ConnectionRefused | Io::HostUnreachable | Io::NetworkUnreachable | Io::AddrNotAvailable => {
            Some(TransportKind::Connect)
        }
        Io::TimedOut => Some(TransportKind::Timeout),
        Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof => Some(TransportKind::Reset),
        _ => None,
    }
}

/// `message: cause: cause…`, skipping causes whose text the message already holds.
pub fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
