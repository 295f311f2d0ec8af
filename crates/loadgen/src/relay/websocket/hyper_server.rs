//! `relay --websocket --hyper`: the default path's floor with hyper's HTTP/1.1 server on the client's side instead of
//! the relay's own few lines over httparse. The same upstream work (the WebSocket per client connection, opened at
//! its first request and kept; one `response.create` a request; each event one SSE event), and the events already
//! read handed to hyper as one body frame, so a burst leaves in one write.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::SinkExt;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Frame as BodyFrame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use yawc::{Frame, OpCode};

use super::{BETA, Kind, NOT_FORWARDED, Socket, Upstream, connect, create_message, kind};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;
/// A client connection's upstream WebSocket, between its requests.
type Slot = Arc<Mutex<Option<Socket>>>;

/// One client connection, served by hyper; its requests over one upstream WebSocket.
pub(super) async fn serve(client: TcpStream, up: Arc<Upstream>) {
    let _ = client.set_nodelay(true);
    let slot: Slot = Arc::default();
    let service = hyper::service::service_fn(move |req| {
        let (up, slot) = (up.clone(), slot.clone());
        async move { Ok::<_, Infallible>(answer(req, &up, slot).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(client), service).await {
        eprintln!("loadgen relay --hyper: {e}");
    }
}

/// The request's body sent as one `response.create`; the answer streams the upstream's events.
async fn answer(req: Request<Incoming>, up: &Upstream, slot: Slot) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return failed(format!("reading the request body: {e}")),
    };
    let kept = slot.lock().ok().and_then(|mut s| s.take());
    let mut ws = match kept {
        Some(ws) => ws,
        None => match connect(up, &fields(&parts.headers)).await {
            Ok(ws) => ws,
            Err(e) => return failed(format!("{e:#}")),
        },
    };
    if let Err(e) = ws.send(Frame::text(create_message(&body))).await {
        return failed(format!("sending to the upstream WebSocket: {e}"));
    }
    let mut resp = Response::new(Events { ws: Some(ws), slot }.boxed_unsync());
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// The handshake's forwarded fields, as the relay's own server forwards them.
fn fields(headers: &HeaderMap) -> String {
    let mut out = String::new();
    for (name, value) in headers {
        if NOT_FORWARDED.contains(&name.as_str()) {
            continue;
        }
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(value.to_str().unwrap_or_default());
        out.push_str("\r\n");
    }
    if !headers.contains_key("openai-beta") {
        out.push_str("openai-beta: ");
        out.push_str(BETA);
        out.push_str("\r\n");
    }
    out
}

/// The answer's body: every event already read in one frame; the WebSocket back in its slot after a clean end.
struct Events {
    ws: Option<Socket>,
    slot: Slot,
}

impl hyper::body::Body for Events {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(ws) = this.ws.as_mut() else { return Poll::Ready(None) };
        let mut out = BytesMut::new();
        loop {
            let frame = match ws.poll_next_frame(cx) {
                Poll::Pending if out.is_empty() => return Poll::Pending,
                Poll::Pending => break,
                Poll::Ready(Ok(f)) => f,
                Poll::Ready(Err(e)) => {
                    this.ws = None;
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
            };
            match frame.opcode() {
                OpCode::Text => match kind(frame.payload()) {
                    Kind::Own => {}
                    k => {
                        out.put_slice(b"data: ");
                        out.put_slice(frame.payload());
                        out.put_slice(b"\n\n");
                        if let Kind::Terminal(clean) = k {
                            let ws = this.ws.take();
                            if clean && let Ok(mut slot) = this.slot.lock() {
                                *slot = ws;
                            }
                            break;
                        }
                    }
                },
                OpCode::Close | OpCode::Binary => {
                    this.ws = None;
                    return Poll::Ready(Some(Err(std::io::Error::other("the upstream closed or sent binary"))));
                }
                OpCode::Ping | OpCode::Pong | OpCode::Continuation => {}
            }
        }
        Poll::Ready(Some(Ok(BodyFrame::data(out.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.ws.is_none()
    }
}

fn failed(why: String) -> Response<Body> {
    eprintln!("loadgen relay --hyper: {why}");
    let mut resp = Response::new(Full::new(Bytes::from(why)).map_err(|e| match e {}).boxed_unsync());
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}
