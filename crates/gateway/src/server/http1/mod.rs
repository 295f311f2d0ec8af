//! The gateway's own HTTP/1.1 server connection, for the requests clients send on the hot path: a head, a
//! `Content-Length` body of a few hundred KB at most, a response that streams. Everything else on a connection
//! (head.rs lists it: upgrades, `Expect`, chunked or large bodies, HTTP/1.0, malformed heads) is handed to hyper
//! with the connection, at that request (fallback.rs).
//!
//! Why not hyper for all of it (docs/performance.md, "Own HTTP/1.1 server connection"): hyper's HTTP/1 connection holds an 8 KB
//! write buffer for its whole life and an 8 KB read buffer while a response streams (it reads to notice a client
//! that left), with no setting below that; at 10,000 open streams that is 160 MB of the 150 MB the gateway may
//! use. Here the read buffer exists only while a head and body arrive and is freed when the handler drops the
//! body; a streaming response is watched for the client leaving with a read into the stack, and written from the
//! handler's own bytes with the chunk framing beside them (write.rs).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::http::header::CONNECTION;
use axum::http::request::Parts;
use axum::response::Response;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use hyper::body::Frame;
use hyper::server::conn::http1::Builder;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::debug;

use super::direct;
use super::errors::BodyTimedOut;
use super::guard::{Guard, Policy};
use super::routes::ModelCall;
use crate::app::AppState;

mod fallback;
mod head;
mod write;

use head::Head;

/// How long a client may take to send a request's head, counted from when the connection waits for one (as
/// hyper's `header_read_timeout` does; an idle keep-alive connection is closed after it too).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest body read before the handler runs; a larger one is hyper's, which streams it to the handler.
/// A refused request (guard.rs) can make the connection read this much, where hyper would read none of it.
const MAX_INLINE_BODY: usize = 256 * 1024;
/// The largest head this path reads; hyper takes a larger one (and answers 431 past its own limit).
const MAX_HEAD: usize = 64 * 1024;
/// The room one read for a head is given (in a working buffer of the thread's; copied out at its length).
const HEAD_READ: usize = 8192;

/// What every connection of a listener shares.
pub struct Server {
    pub router: Router,
    pub policy: Arc<Policy>,
    /// `request_body_timeout_secs`.
    pub body_timeout: Duration,
    /// For the connections handed to hyper.
    pub hyper: Builder,
    /// Cancelled when the shutdown begins: a connection finishes its response and closes.
    pub draining: CancellationToken,
    /// The main listener's state: its model calls are served without the router (server/direct.rs).
    pub models: Option<Arc<AppState>>,
}

/// Serve one connection until the client closes it, it fails, or the shutdown has it close after a response.
pub async fn serve(tcp: TcpStream, server: Arc<Server>) {
    let mut buf = BytesMut::new();
    loop {
        // Boxed, and freed before the response streams: the connection's own future (alive as long as the
        // stream) is then only the writer's state, 712 bytes instead of 1,968 with the read and the handler
        // inline (docs/performance.md, "Small waiting requests").
        let (response, close) = match Box::pin(respond(&tcp, &mut buf, &server)).await {
            Answer::Response(response, close) => (response, close),
            Answer::Closed => return,
            // Boxed: the rare path does not make every connection's future as large as hyper's connection.
            Answer::Handoff => return Box::pin(fallback::serve(tcp, buf.freeze(), &server)).await,
        };
        if let Err(e) = write::send(&tcp, response, close, &mut buf).await {
            debug!("response not finished: {e}");
            return;
        }
        if close {
            let mut tcp = tcp;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp).await;
            return;
        }
    }
}

/// What reading a request and running its handler produced.
enum Answer {
    /// The handler's response, and whether the connection closes after it.
    Response(Response, bool),
    Closed,
    Handoff,
}

/// Read the next request and run the handler on it, while watching for the client leaving.
async fn respond(tcp: &TcpStream, buf: &mut BytesMut, server: &Server) -> Answer {
    let (parts, body, close) = match read_request(tcp, buf, server).await {
        Next::Request(parts, body, close) => (parts, body, close),
        Next::Closed => return Answer::Closed,
        Next::Handoff => return Answer::Handoff,
        Next::Ambiguous => return Answer::Response(ambiguous_length(), true),
    };
    let direct = server.models.as_ref().zip(body.as_ref()).and_then(|(state, body)| {
        let call = ModelCall::of(&parts.method, parts.uri.path())?;
        (body.len() <= state.config.body_limit).then(|| (call, state.clone()))
    });
    // Each handler is pinned where it is created and watched through a reference, so its future is held once
    // (moved into a watcher, it would be held twice: ~3 KB more per waiting request).
    let response = match (direct, body) {
        (Some((call, state)), Some(body)) => {
            let handler = std::pin::pin!(direct::serve(call, state, &server.policy, parts, body));
            until_client_leaves(tcp, buf, handler).await
        }
        (_, body) => {
            let body = match body {
                Some(bytes) => Body::from(bytes),
                None => Body::new(TimedOut(Some(server.body_timeout))),
            };
            let service = Guard::new(server.router.clone(), server.policy.clone());
            let handler = service.oneshot(Request::from_parts(parts, body));
            let handler = std::pin::pin!(handler.map(|answered| answered.unwrap_or_else(|never| match never {})));
            until_client_leaves(tcp, buf, handler).await
        }
    };
    let Some(response) = response else {
        return Answer::Closed;
    };
    let close = close || server.draining.is_cancelled() || asks_to_close(&response);
    Answer::Response(response, close)
}

// Returned once per request and taken apart at once: boxing the request would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Next {
    /// A request's head, its body (`None`: it did not arrive in time), and whether the connection closes after
    /// its response.
    Request(Parts, Option<Bytes>, bool),
    Closed,
    Handoff,
    /// A head whose body length two fields could each decide ([`Head::Ambiguous`]): a 400, then the connection
    /// closes.
    Ambiguous,
}

/// The answer to [`Next::Ambiguous`]: nothing after the head can be read safely, so the connection closes.
fn ambiguous_length() -> Response {
    let error = dialects::GatewayError::new(
        dialects::ErrorKind::InvalidRequest,
        "The request gives its body's length twice (Content-Length with Transfer-Encoding, or either of them \
         twice); send one.",
    )
    .with_code("ambiguous_body_length");
    super::errors::error_response(super::openai::SHAPE, &error, "")
}

/// Read the next request: its head within [`HEADER_READ_TIMEOUT`], its body within `request_body_timeout_secs`
/// of the first wait for it. A body that does not arrive in time is handed to the handler as a body that fails
/// with [`BodyTimedOut`], which it answers with a 400 in its client's dialect; the connection then closes.
async fn read_request(tcp: &TcpStream, buf: &mut BytesMut, server: &Server) -> Next {
    let deadline = Instant::now() + HEADER_READ_TIMEOUT;
    let (parts, head_len, body_len, close) = loop {
        match head::parse(buf, MAX_INLINE_BODY) {
            Head::Serve { parts, head_len, body_len, close } => break (parts, head_len, body_len, close),
            Head::Handoff => return Next::Handoff,
            Head::Ambiguous => return Next::Ambiguous,
            Head::Partial if buf.len() >= MAX_HEAD => return Next::Handoff,
            Head::Partial => {}
        }
        tokio::select! {
            read = read_more(tcp, buf, 0) => if read == 0 {
                return Next::Closed;
            },
            () = sleep_until(deadline) => return Next::Closed,
            () = server.draining.cancelled(), if buf.is_empty() => return Next::Closed,
        }
    };
    let total = head_len + body_len;
    let mut body_deadline = None;
    while buf.len() < total {
        let deadline = *body_deadline.get_or_insert_with(|| Instant::now() + server.body_timeout);
        tokio::select! {
            read = read_more(tcp, buf, total - buf.len()) => if read == 0 {
                return Next::Closed;
            },
            () = sleep_until(deadline) => return Next::Request(parts, None, true),
        }
    }
    buf.advance(head_len);
    let body = buf.split_to(body_len).freeze();
    if buf.is_empty() {
        // The allocation is the body's now, freed when the handler drops it.
        *buf = BytesMut::new();
    }
    Next::Request(parts, Some(body), close)
}

/// Read what the socket has into `buf`; 0 at its end or on an error. `body_left` bytes of body are still to
/// come: they are read into `buf` directly, reserved at once. A head is read into room of its own and copied at
/// its length, so the buffer the body's bytes later keep alive is no larger than the request (thousands of streams
/// open at once, docs/performance.md, "Own HTTP/1.1 server connection").
async fn read_more(tcp: &TcpStream, buf: &mut BytesMut, body_left: usize) -> usize {
    loop {
        if tcp.readable().await.is_err() {
            return 0;
        }
        let read = if body_left > 0 {
            buf.reserve(body_left);
            tcp.try_read_buf(buf)
        } else {
            // Into room the read fills without zeroing it first (a zeroed 8 KB array on the stack was ~8 K
            // instructions per request).
            let mut room = Vec::with_capacity(HEAD_READ);
            tcp.try_read_buf(&mut room).inspect(|&n| buf.extend_from_slice(&room[..n]))
        };
        match read {
            Ok(n) => return n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return 0,
        }
    }
}

/// Run the handler while watching the client: if it closes the connection first, the handler (and the upstream
/// request it has open) is dropped, as hyper drops it.
async fn until_client_leaves(
    tcp: &TcpStream,
    buf: &mut BytesMut,
    mut handler: Pin<&mut impl Future<Output = Response>>,
) -> Option<Response> {
    std::future::poll_fn(|cx| {
        if let Poll::Ready(response) = handler.as_mut().poll(cx) {
            return Poll::Ready(Some(response));
        }
        write::poll_peer_gone(tcp, buf, cx).map(|()| None)
    })
    .await
}

fn asks_to_close(response: &Response) -> bool {
    response
        .headers()
        .get_all(CONNECTION)
        .iter()
        .any(|v| v.as_bytes().split(|&b| b == b',').any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close")))
}

/// The body of a request whose body did not arrive in time: it fails with [`BodyTimedOut`] when read.
struct TimedOut(Option<Duration>);

impl hyper::body::Body for TimedOut {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|limit| Err(Box::new(BodyTimedOut(limit)) as axum::BoxError)))
    }
}

#[cfg(test)]
mod tests;
