//! The connection state against frames a server sends, frame by frame, without a socket: what it answers
//! (the frames it queues) and what each stream sees. The whole client against real HTTP/2 servers (the h2
//! crate's; fake-codex's hyper server over TLS) is tested in `transport.rs` and the integration tests.

use std::task::Waker;

use axum::http::{HeaderMap, StatusCode, Uri};
use bytes::Bytes;

use super::connection::{End, Head2, Shared, State};
use super::error::H2Error;
use super::frame::{self, HEADER_LEN, Head, Reason, flag, kind, setting};

const STREAM_WINDOW: u32 = 256 * 1024;

fn uri() -> Uri {
    "https://chatgpt.com/backend-api/codex/responses".parse().unwrap_or_else(|e| panic!("{e}"))
}

/// The frames in `out`, emptied.
fn sent(state: &mut State) -> Vec<(Head, Vec<u8>)> {
    let out = std::mem::take(&mut state.out);
    let mut frames = Vec::new();
    let mut rest = &out[..];
    if rest.starts_with(frame::PREFACE) {
        rest = &rest[frame::PREFACE.len()..];
    }
    while let Some(head) = Head::parse(rest) {
        frames.push((head, rest[HEADER_LEN..HEADER_LEN + head.len].to_vec()));
        rest = &rest[HEADER_LEN + head.len..];
    }
    assert!(rest.is_empty(), "a partial frame was queued");
    frames
}

/// A connection with its preface and SETTINGS taken off, and a stream open with `body`.
fn connection_with_stream(body: &'static [u8]) -> (std::sync::Arc<Shared>, u32) {
    let shared = Shared::new(STREAM_WINDOW, 16 * 1024 * 1024);
    let id = {
        let mut state = shared.state.lock();
        let id = state.open(Waker::noop(), &mut None, &uri(), &HeaderMap::new(), &Bytes::from_static(body));
        let id = id.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("no stream"));
        sent(&mut state);
        id
    };
    (shared, id)
}

/// Feed a frame; returns whether the connection is still open.
fn receive(state: &mut State, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> bool {
    let head = Head { len: payload.len(), kind, flags, stream };
    let mut wake = Vec::new();
    state.receive(head, Bytes::copy_from_slice(payload), &mut wake)
}

fn response_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut encoder = loona_hpack::Encoder::new();
    encoder.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    params.iter().flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes())).collect()
}

fn kinds(frames: &[(Head, Vec<u8>)]) -> Vec<(u8, u8, u32, usize)> {
    frames.iter().map(|(h, _)| (h.kind, h.flags, h.stream, h.len)).collect()
}

#[test]
fn the_preface_sets_windows_and_disables_push() {
    let shared = Shared::new(STREAM_WINDOW, 16 * 1024 * 1024);
    let mut state = shared.state.lock();
    assert!(state.out.starts_with(frame::PREFACE));
    let frames = sent(&mut state);
    assert_eq!(kinds(&frames), [(kind::SETTINGS, 0, 0, 12), (kind::WINDOW_UPDATE, 0, 0, 4)]);
    assert_eq!(frames[0].1, settings(&[(setting::ENABLE_PUSH, 0), (setting::INITIAL_WINDOW_SIZE, STREAM_WINDOW)]));
    assert_eq!(frame::u32_at(&frames[1].1, 0), 16 * 1024 * 1024 - 65_535);
}

/// The server's SETTINGS are acknowledged and bind what follows: its stream limit holds requests back, its
/// initial window splits a body, and a WINDOW_UPDATE lets the rest go.
#[test]
fn settings_limit_streams_and_windows_split_bodies() {
    let shared = Shared::new(STREAM_WINDOW, 16 * 1024 * 1024);
    let mut state = shared.state.lock();
    sent(&mut state);
    let params = settings(&[(setting::MAX_CONCURRENT_STREAMS, 1), (setting::INITIAL_WINDOW_SIZE, 10)]);
    assert!(receive(&mut state, kind::SETTINGS, 0, 0, &params));
    state.publish(&shared);
    assert_eq!(shared.max_streams.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(kinds(&sent(&mut state)), [(kind::SETTINGS, flag::ACK, 0, 0)]);

    let body = Bytes::from_static(b"0123456789abcdefghijklmno");
    let id = state.open(Waker::noop(), &mut None, &uri(), &HeaderMap::new(), &body).ok().flatten();
    assert_eq!(id, Some(1));
    let frames = sent(&mut state);
    assert_eq!(kinds(&frames)[1..], [(kind::DATA, 0, 1, 10)]);
    assert_eq!(frames[0].0.kind, kind::HEADERS);
    assert_eq!(frames[0].0.flags, flag::END_HEADERS, "a body follows: no END_STREAM on the HEADERS");
    // At the server's limit the next request waits.
    assert!(matches!(state.open(Waker::noop(), &mut None, &uri(), &HeaderMap::new(), &body), Ok(None)));
    assert!(receive(&mut state, kind::WINDOW_UPDATE, 0, 1, &100u32.to_be_bytes()));
    let frames = sent(&mut state);
    assert_eq!(kinds(&frames), [(kind::DATA, flag::END_STREAM, 1, 15)]);
    assert_eq!(frames[0].1, b"abcdefghijklmno");
}

/// A response as servers send it: an interim 103 skipped, the head split over CONTINUATION with padding and
/// priority, padded DATA handed on without its padding, and trailers ending the stream.
#[test]
fn heads_continuations_padding_and_trailers() {
    let (shared, id) = connection_with_stream(b"{}");
    let mut state = shared.state.lock();
    let interim = response_block(&[(":status", "103")]);
    assert!(receive(&mut state, kind::HEADERS, flag::END_HEADERS, id, &interim));
    assert!(matches!(state.streams[&id].head, Head2::Waiting));

    let block = response_block(&[(":status", "200"), ("content-type", "text/event-stream")]);
    let (first, rest) = block.split_at(3);
    let mut headers = vec![2u8];
    headers.extend_from_slice(&[0, 0, 0, 0, 16]);
    headers.extend_from_slice(first);
    headers.extend_from_slice(&[0, 0]);
    assert!(receive(&mut state, kind::HEADERS, flag::PADDED | flag::PRIORITY, id, &headers));
    assert!(matches!(state.streams[&id].head, Head2::Waiting), "the block is not complete yet");
    assert!(receive(&mut state, kind::CONTINUATION, flag::END_HEADERS, id, rest));
    match &state.streams[&id].head {
        Head2::Ready(status, fields) => {
            assert_eq!(*status, StatusCode::OK);
            assert_eq!(fields.get("content-type").map(|v| v.as_bytes()), Some(&b"text/event-stream"[..]));
        }
        _ => panic!("no head"),
    }
    assert!(receive(&mut state, kind::DATA, flag::PADDED, id, b"\x03data: 1\n\nPAD"));
    assert!(receive(&mut state, kind::DATA, 0, id, b"data: 2\n\n"));
    let trailers = response_block(&[("x-trailer", "1")]);
    assert!(receive(&mut state, kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, id, &trailers));
    let stream = &state.streams[&id];
    assert_eq!(stream.data, [Bytes::from_static(b"data: 1\n\n"), Bytes::from_static(b"data: 2\n\n")]);
    assert!(matches!(stream.end, End::Done));
    assert!(sent(&mut state).is_empty(), "nothing to answer");
}

/// Streams above a GOAWAY's last stream fail as unprocessed (safe to send again); the ones below go on; no new
/// stream opens.
#[test]
fn goaway_fails_the_streams_it_did_not_process() {
    let (shared, first) = connection_with_stream(b"");
    let mut state = shared.state.lock();
    let second = state.open(Waker::noop(), &mut None, &uri(), &HeaderMap::new(), &Bytes::new()).ok().flatten();
    let second = second.unwrap_or_else(|| panic!("no stream"));
    let mut goaway = first.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0u32.to_be_bytes());
    assert!(receive(&mut state, kind::GOAWAY, 0, 0, &goaway));
    assert!(matches!(state.streams[&first].end, End::Open));
    match &state.streams[&second].end {
        End::Failed(e) => assert!(e.unprocessed() && e.ends_connection(), "{e}"),
        _ => panic!("the stream above the last one goes on"),
    }
    let refused = state.open(Waker::noop(), &mut None, &uri(), &HeaderMap::new(), &Bytes::new());
    assert!(matches!(refused, Err(H2Error::GoAway { unprocessed: true, .. })));
}

/// What breaks the protocol ends the connection with a GOAWAY naming why, and every stream gets the error.
#[test]
fn protocol_errors_end_the_connection() {
    let never_opened = |state: &mut State| receive(state, kind::DATA, 0, 7, b"x");
    let push = |state: &mut State| receive(state, kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2]);
    let lone_continuation = |state: &mut State| receive(state, kind::CONTINUATION, flag::END_HEADERS, 1, b"");
    let zero_update = |state: &mut State| receive(state, kind::WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes());
    let bad_block = |state: &mut State| receive(state, kind::HEADERS, flag::END_HEADERS, 1, &[0xff, 0xff, 0xff]);
    let small_frame_size =
        |state: &mut State| receive(state, kind::SETTINGS, 0, 0, &settings(&[(setting::MAX_FRAME_SIZE, 100)]));
    let short_ping = |state: &mut State| receive(state, kind::PING, 0, 0, b"1234");
    type Feed<'a> = &'a dyn Fn(&mut State) -> bool;
    let cases: [(&str, Feed, Reason); 7] = [
        ("DATA on a stream never opened", &never_opened, Reason::PROTOCOL_ERROR),
        ("PUSH_PROMISE", &push, Reason::PROTOCOL_ERROR),
        ("CONTINUATION alone", &lone_continuation, Reason::PROTOCOL_ERROR),
        ("WINDOW_UPDATE of 0", &zero_update, Reason::PROTOCOL_ERROR),
        ("an undecodable header block", &bad_block, Reason::COMPRESSION_ERROR),
        ("a frame size below the minimum", &small_frame_size, Reason::PROTOCOL_ERROR),
        ("a PING of 4 bytes", &short_ping, Reason::FRAME_SIZE_ERROR),
    ];
    for (what, feed, reason) in cases {
        let (shared, id) = connection_with_stream(b"");
        let mut state = shared.state.lock();
        assert!(!feed(&mut state), "{what}: the connection went on");
        let frames = sent(&mut state);
        let goaway = frames.iter().find(|(h, _)| h.kind == kind::GOAWAY);
        let code = goaway.map(|(_, payload)| frame::u32_at(payload, 4));
        assert_eq!(code, Some(reason.0), "{what}: {:?}", kinds(&frames));
        assert!(matches!(state.streams[&id].end, End::Failed(H2Error::Protocol(_))), "{what}");
        assert!(state.open(Waker::noop(), &mut None, &uri(), &HeaderMap::new(), &Bytes::new()).is_err(), "{what}");
    }
}

/// A malformed answer on one stream resets that stream only; the connection and its other streams go on.
#[test]
fn stream_errors_reset_only_their_stream() {
    let (shared, id) = connection_with_stream(b"");
    let mut state = shared.state.lock();
    let other = state.open(Waker::noop(), &mut None, &uri(), &HeaderMap::new(), &Bytes::new()).ok().flatten();
    let other = other.unwrap_or_else(|| panic!("no stream"));
    sent(&mut state);
    assert!(receive(&mut state, kind::DATA, 0, id, b"data before headers"));
    assert!(receive(&mut state, kind::HEADERS, flag::END_HEADERS, other, &response_block(&[("x-a", "1")])));
    let frames = sent(&mut state);
    let resets: Vec<(u32, u32)> = frames
        .iter()
        .filter(|(h, _)| h.kind == kind::RST_STREAM)
        .map(|(h, p)| (h.stream, frame::u32_at(p, 0)))
        .collect();
    assert_eq!(resets, [(id, Reason::PROTOCOL_ERROR.0), (other, Reason::PROTOCOL_ERROR.0)]);
    assert!(matches!(state.streams[&other].end, End::Failed(H2Error::Malformed(_))));
    assert!(state.ended.is_none());
    assert!(state.open(Waker::noop(), &mut None, &uri(), &HeaderMap::new(), &Bytes::new()).is_ok());
}

/// PINGs are answered with their payload; the server's RST_STREAM fails its stream with the reason.
#[test]
fn pings_are_answered_and_resets_reach_the_stream() {
    let (shared, id) = connection_with_stream(b"");
    let mut state = shared.state.lock();
    assert!(receive(&mut state, kind::PING, 0, 0, b"12345678"));
    assert!(receive(&mut state, kind::PING, flag::ACK, 0, b"abcdefgh"));
    let frames = sent(&mut state);
    assert_eq!(kinds(&frames), [(kind::PING, flag::ACK, 0, 8)]);
    assert_eq!(frames[0].1, b"12345678");
    assert!(receive(&mut state, kind::RST_STREAM, 0, id, &Reason::REFUSED_STREAM.0.to_be_bytes()));
    match &state.streams[&id].end {
        End::Failed(e) => assert!(e.unprocessed() && !e.ends_connection(), "{e}"),
        _ => panic!("the reset did not reach the stream"),
    }
}

/// Windows are given back once half is taken (per stream and for the connection); data beyond a stream's
/// window resets it; a stream dropped early is reset (CANCEL) and its unread data gives the connection its
/// window back.
#[test]
fn windows_are_given_back_and_enforced() {
    let (shared, id) = connection_with_stream(b"");
    let mut state = shared.state.lock();
    assert!(receive(&mut state, kind::HEADERS, flag::END_HEADERS, id, &response_block(&[(":status", "200")])));
    let chunk = vec![b'x'; 16_384];
    for _ in 0..8 {
        assert!(receive(&mut state, kind::DATA, 0, id, &chunk));
    }
    state.consumed(id, 8 * 16_384);
    let frames = sent(&mut state);
    assert_eq!(kinds(&frames), [(kind::WINDOW_UPDATE, 0, id, 4)]);
    assert_eq!(frame::u32_at(&frames[0].1, 0), 8 * 16_384);
    // The window is 256 KB again: 16 more frames fit, the 17th does not.
    for _ in 0..16 {
        assert!(receive(&mut state, kind::DATA, 0, id, &chunk));
    }
    assert!(matches!(state.streams[&id].end, End::Open));
    assert!(receive(&mut state, kind::DATA, 0, id, &chunk));
    assert!(matches!(state.streams[&id].end, End::Failed(H2Error::Protocol(_))));
    let resets: Vec<u32> =
        sent(&mut state).iter().filter(|(h, _)| h.kind == kind::RST_STREAM).map(|(_, p)| frame::u32_at(p, 0)).collect();
    assert_eq!(resets, [Reason::FLOW_CONTROL_ERROR.0]);

    let second = state.open(Waker::noop(), &mut None, &uri(), &HeaderMap::new(), &Bytes::new()).ok().flatten();
    let second = second.unwrap_or_else(|| panic!("no stream"));
    assert!(receive(&mut state, kind::HEADERS, flag::END_HEADERS, second, &response_block(&[(":status", "200")])));
    for _ in 0..16 {
        assert!(receive(&mut state, kind::DATA, 0, second, &chunk));
    }
    sent(&mut state);
    state.drop_stream(second);
    let frames = sent(&mut state);
    assert_eq!(kinds(&frames)[0], (kind::RST_STREAM, 0, second, 4));
    assert_eq!(frame::u32_at(&frames[0].1, 0), Reason::CANCEL.0);
    assert!(!state.streams.contains_key(&second));
}

/// Every byte of DATA a stream received counts toward the connection's window again once its body is done
/// with it: read, held in the body unread, or left in the stream when the body was dropped. A byte lost here
/// would shrink the connection's window for good, and the connection would stall once it reached zero.
#[tokio::test]
async fn dropped_bodies_give_the_connection_its_window_back() {
    use futures_util::StreamExt;
    let shared = Shared::new(STREAM_WINDOW, 16 * 1024 * 1024);
    let handle = super::stream::Handle::new(shared.clone());
    let block = response_block(&[(":status", "200")]);
    for (read, received) in [(0, 3), (1, 3), (3, 3), (2, 5)] {
        let stream = handle.open(&uri(), &HeaderMap::new(), &Bytes::new()).await.unwrap_or_else(|e| panic!("{e}"));
        {
            let mut state = shared.state.lock();
            let id = *state.streams.keys().max().unwrap_or(&0);
            assert!(receive(&mut state, kind::HEADERS, flag::END_HEADERS, id, &block));
            for _ in 0..received {
                assert!(receive(&mut state, kind::DATA, 0, id, &[b'x'; 1000]));
            }
        }
        let (status, _) = stream.head().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, StatusCode::OK);
        let mut body = super::stream::Body::new(stream, ());
        for _ in 0..read {
            assert_eq!(body.next().await.and_then(Result::ok).map(|b| b.len()), Some(1000));
        }
        drop(body);
        assert_eq!(shared.state.lock().window_held(), 0, "read {read} of {received}");
    }
}

/// At the server's stream limit requests wait in line; one dropped after it was woken for a freed stream passes
/// its turn on, so the next one opens instead of waiting for another stream to end.
#[tokio::test]
async fn a_request_dropped_after_its_wake_passes_its_turn_on() {
    let shared = Shared::new(STREAM_WINDOW, 16 * 1024 * 1024);
    {
        let mut state = shared.state.lock();
        assert!(receive(&mut state, kind::SETTINGS, 0, 0, &settings(&[(setting::MAX_CONCURRENT_STREAMS, 1)])));
    }
    let handle = std::sync::Arc::new(super::stream::Handle::new(shared.clone()));
    let first = handle.open(&uri(), &HeaderMap::new(), &Bytes::new()).await.unwrap_or_else(|e| panic!("{e}"));
    let request = |handle: std::sync::Arc<super::stream::Handle>| {
        tokio::spawn(async move { handle.open(&uri(), &HeaderMap::new(), &Bytes::new()).await.map(drop) })
    };
    let in_line = request(handle.clone());
    tokio::task::yield_now().await;
    let next = request(handle.clone());
    tokio::task::yield_now().await;
    assert!(!in_line.is_finished() && !next.is_finished(), "the limit did not hold them back");
    // The stream ends; the first in line is woken but dropped before it runs.
    drop(first);
    in_line.abort();
    let opened = tokio::time::timeout(std::time::Duration::from_secs(2), next).await;
    assert!(matches!(opened, Ok(Ok(Ok(())))), "the turn was lost: {opened:?}");
}

/// A request header block larger than the server's frame size goes out as HEADERS and CONTINUATION frames
/// that carry it whole.
#[test]
fn a_request_block_larger_than_a_frame_is_continued() {
    let shared = Shared::new(STREAM_WINDOW, 16 * 1024 * 1024);
    let mut state = shared.state.lock();
    sent(&mut state);
    let mut headers = HeaderMap::new();
    let big = "a".repeat(40_000);
    headers.insert("x-big", axum::http::HeaderValue::from_str(&big).unwrap_or_else(|e| panic!("{e}")));
    let id = state.open(Waker::noop(), &mut None, &uri(), &headers, &Bytes::new()).ok().flatten();
    let frames = sent(&mut state);
    let id = id.unwrap_or_else(|| panic!("no stream"));
    assert_eq!(
        kinds(&frames).iter().map(|(k, f, s, _)| (*k, *f, *s)).collect::<Vec<_>>(),
        [
            (kind::HEADERS, flag::END_STREAM, id),
            (kind::CONTINUATION, 0, id),
            (kind::CONTINUATION, flag::END_HEADERS, id)
        ]
    );
    let block: Vec<u8> = frames.iter().flat_map(|(_, payload)| payload.clone()).collect();
    let mut decoder = loona_hpack::Decoder::new();
    let fields = decoder.decode(&block).unwrap_or_else(|e| panic!("{e}"));
    assert!(fields.iter().any(|(n, v)| n == b"x-big" && v.len() == 40_000));
}
