//! Compressed answers for a request that accepts them (`accept-encoding: zstd,gzip`, which the official client
//! sends on every HTTP call since 0.171): a JSON answer zstd-encoded whole, and an event stream of the ChatGPT
//! Responses endpoint as it streams, each frame flushed so that an event reaches the client when it is sent. The
//! backend may answer so; the fake does, so the gateway is held to decoding it.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use http_body::Frame;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The request lists `zstd` among the codings it accepts.
pub(crate) fn accepts_zstd(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| coding.split(';').next().map(str::trim).is_some_and(|c| c.eq_ignore_ascii_case("zstd")))
}

/// The answer's content type starts with `prefix`.
fn typed(resp: &Response, prefix: &str) -> bool {
    resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with(prefix))
}

/// A JSON answer (any status) zstd-encoded whole; any other answer, or one already encoded, as it is.
pub(crate) async fn zstd_json(resp: Response) -> Response {
    if !typed(&resp, "application/json") || resp.headers().contains_key(header::CONTENT_ENCODING) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(plain) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    match zstd::stream::encode_all(&plain[..], 3) {
        Ok(encoded) => {
            parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("zstd"));
            parts.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(encoded))
        }
        Err(_) => Response::from_parts(parts, Body::from(plain)),
    }
}

/// A successful event stream zstd-encoded; any other answer as it is.
pub(crate) fn zstd_stream(resp: Response) -> Response {
    if !resp.status().is_success() || !typed(&resp, "text/event-stream") {
        return resp;
    }
    let Ok(encoder) = zstd::stream::write::Encoder::new(Vec::new(), 3) else { return resp };
    let (mut parts, body) = resp.into_parts();
    parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("zstd"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::new(Zstd { inner: body, encoder: Some(encoder) }))
}

struct Zstd {
    inner: Body,
    encoder: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
}

impl http_body::Body for Zstd {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else { return Poll::Ready(None) };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                // A cut stream stays cut: the client sees the compressed stream end inside a frame.
                Poll::Ready(Some(Err(e))) => {
                    this.encoder = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    if let Err(e) = encoder.write_all(&data).and_then(|()| encoder.flush()) {
                        this.encoder = None;
                        return Poll::Ready(Some(Err(axum::Error::new(e))));
                    }
                    let out = std::mem::take(encoder.get_mut());
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Poll::Ready(None) => {
                    return match this.encoder.take().map(|e| e.finish()) {
                        Some(Ok(tail)) if !tail.is_empty() => Poll::Ready(Some(Ok(Frame::data(Bytes::from(tail))))),
                        Some(Err(e)) => Poll::Ready(Some(Err(axum::Error::new(e)))),
                        Some(Ok(_)) | None => Poll::Ready(None),
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_is_accepted_in_any_place_of_the_list() {
        let accepts = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_zstd(&h)
        };
        assert!(accepts("zstd,gzip") && accepts("gzip, ZSTD;q=0.5"));
        assert!(!accepts("gzip, br") && !accepts_zstd(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn an_event_stream_is_encoded_frame_by_frame() {
        use futures_util::StreamExt;
        let events = futures_util::stream::iter(["data: a\n\n", "data: b\n\n"].map(Ok::<_, std::io::Error>));
        let mut resp = Response::new(Body::from_stream(events));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        let mut body = zstd_stream(resp).into_body().into_data_stream();
        let mut pieces = Vec::new();
        while let Some(Ok(data)) = body.next().await {
            pieces.push(data);
        }
        assert!(pieces.len() >= 2, "one compressed frame per event");
        let whole: Vec<u8> = pieces.concat();
        assert_eq!(zstd::decode_all(&whole[..]).ok().as_deref(), Some(&b"data: a\n\ndata: b\n\n"[..]));
    }
}
