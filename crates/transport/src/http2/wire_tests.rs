//! The HTTP/2 client's behaviour on the wire: its connection preface against the official client's stack
//! (reqwest over hyper over h2), the server's stream limit, a GOAWAY below the streams in flight (a raw server,
//! since h2's own server counts every stream it received as processed), unread small DATA frames, and how
//! streams end: read to END_STREAM once answered, reset only when not, within a bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::tests::{H2cConnection, answer_ok, h2c_server, h2c_server_with, h2c_target, post_h2c};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;

/// One frame as the tests read it: type, flags, stream, payload.
type Frame = (u8, u8, u32, Vec<u8>);

/// The frames in `bytes` (a connection's bytes from the client, the preface first), whole ones only.
fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut rest = bytes.strip_prefix(PREFACE).unwrap_or(bytes);
    let mut out = Vec::new();
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        if rest.len() < 9 + len {
            break;
        }
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        out.push((rest[3], rest[4], stream, rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    out
}

/// A TCP relay to `port` that records, per connection, what the client sent.
async fn recording_relay(port: u16) -> (u16, Arc<parking_lot::Mutex<Vec<Arc<parking_lot::Mutex<Vec<u8>>>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let relay_port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let connections = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let recorded = connections.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return };
            let bytes = Arc::new(parking_lot::Mutex::new(Vec::new()));
            recorded.lock().push(bytes.clone());
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                    bytes.lock().extend_from_slice(&buf[..n]);
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (relay_port, connections)
}

/// What a client sends before its first request: the frames up to its first HEADERS, SETTINGS acknowledgements
/// left out (the gateway's client answers the server's SETTINGS before its first request, hyper's after).
fn preface_of(bytes: &[u8]) -> Vec<Frame> {
    frames(bytes)
        .into_iter()
        .take_while(|(kind, ..)| *kind != HEADERS)
        .filter(|(kind, flags, ..)| !(*kind == SETTINGS && flags & 1 == 1))
        .collect()
}

/// Cloudflare, in front of the backend, can tell HTTP/2 clients apart by their preface: the gateway's SETTINGS
/// (values and order) and WINDOW_UPDATE are exactly what reqwest 0.12 (the official client's HTTP stack) sends.
#[tokio::test]
async fn the_preface_is_the_official_clients() {
    let server = h2c_server(|mut conn: H2cConnection| async move {
        while let Some(Ok((_request, respond))) = conn.accept().await {
            answer_ok(respond);
        }
    })
    .await;
    let (relay, recorded) = recording_relay(server).await;
    let response = post_h2c(relay).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status, StatusCode::OK);
    let official = reqwest::Client::builder().http2_prior_knowledge().no_proxy().build();
    let official = official.unwrap_or_else(|e| panic!("{e}"));
    let answer = official.post(format!("http://127.0.0.1:{relay}/responses")).body("{}").send().await;
    assert_eq!(answer.map(|a| a.status()).ok(), Some(StatusCode::OK));
    let connections = recorded.lock().iter().map(|c| c.lock().clone()).collect::<Vec<_>>();
    assert_eq!(connections.len(), 2);
    let (ours, theirs) = (preface_of(&connections[0]), preface_of(&connections[1]));
    assert!(connections.iter().all(|c| c.starts_with(PREFACE)));
    assert_eq!(ours, theirs, "the gateway's preface differs from reqwest's");
    // What that is, for the reader: SETTINGS push off, 2 MB stream window, 16 KB frames and header lists; the
    // connection window raised to 5 MB.
    let settings = [(2u16, 0u32), (4, 2 * 1024 * 1024), (5, 16 * 1024), (6, 16 * 1024)];
    let payload: Vec<u8> =
        settings.iter().flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes())).collect();
    assert_eq!(ours[0], (SETTINGS, 0, 0, payload));
    assert_eq!(ours[1], (0x8, 0, 0, (5 * 1024 * 1024 - 65_535u32).to_be_bytes().to_vec()));
    assert_eq!(ours.len(), 2);
}

/// Against a server that allows 4 streams per connection, 32 requests at once on a fresh client: none is sent
/// beyond the limit (every HEADERS frame the server received is one request, none refused and sent again), and
/// the requests spread over new connections rather than waiting.
#[tokio::test]
async fn a_fresh_client_keeps_to_the_servers_stream_limit() {
    let mut builder = h2::server::Builder::new();
    builder.max_concurrent_streams(4);
    let server = h2c_server_with(builder, |mut conn: H2cConnection| async move {
        while let Some(Ok((_request, respond))) = conn.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                answer_ok(respond);
            });
        }
    })
    .await;
    let (relay, recorded) = recording_relay(server).await;
    let (direct, uri) = h2c_target(relay);
    let direct = Arc::new(direct);
    let started = Instant::now();
    let requests = (0..32).map(|_| {
        let (direct, uri) = (direct.clone(), uri.clone());
        tokio::spawn(
            async move { direct.post(uri, HeaderMap::new(), Bytes::from_static(b"{}")).await.map(|r| r.status) },
        )
    });
    for request in futures_util::future::join_all(requests).await {
        assert_eq!(request.ok().and_then(Result::ok), Some(StatusCode::OK));
    }
    let elapsed = started.elapsed();
    let connections = recorded.lock().iter().map(|c| frames(&c.lock())).collect::<Vec<_>>();
    let heads = connections.iter().flatten().filter(|(kind, ..)| *kind == HEADERS).count();
    assert_eq!(heads, 32, "requests were refused and sent again");
    assert!(connections.len() >= 8, "{} connections for 32 streams at 4 each", connections.len());
    assert!(elapsed < Duration::from_millis(1500), "the requests waited in line: {elapsed:?}");
}

/// A raw HTTP/2 server: the first connection takes three requests, answers GOAWAY naming the first as the last
/// it processed, answers that one and closes; later connections answer every request. Counts requests (HEADERS)
/// and connections.
async fn goaway_below_streams_server() -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let (requests, connections) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (counted, opened) = (requests.clone(), connections.clone());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let first = opened.fetch_add(1, Ordering::SeqCst) == 0;
            let counted = counted.clone();
            tokio::spawn(async move {
                let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
                    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
                    out.extend([kind, flags]);
                    out.extend(stream.to_be_bytes());
                    out.extend(payload);
                    out
                };
                // ":status: 200" is entry 8 of HPACK's static table.
                let answer =
                    |stream: u32| [frame(HEADERS, 0x4, stream, &[0x88]), frame(0x0, 0x1, stream, b"ok")].concat();
                let _ = tcp.write_all(&frame(SETTINGS, 0, 0, &[])).await;
                let (mut received, mut handled) = (Vec::new(), 0);
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                    received.extend_from_slice(&buf[..n]);
                    let all = frames(&received);
                    let mut out = Vec::new();
                    for (kind, flags, stream, _) in all.iter().skip(handled) {
                        handled += 1;
                        match *kind {
                            SETTINGS if flags & 1 == 0 => out.extend(frame(SETTINGS, 1, 0, &[])),
                            HEADERS => {
                                counted.fetch_add(1, Ordering::SeqCst);
                            }
                            // A request's body ended: answer it (not on the first connection).
                            0x0 if flags & 1 == 1 && !first => out.extend(answer(*stream)),
                            _ => {}
                        }
                    }
                    if first && all.iter().filter(|(kind, ..)| *kind == HEADERS).count() == 3 {
                        let goaway = [1u32.to_be_bytes(), 0u32.to_be_bytes()].concat();
                        out.extend(frame(0x7, 0, 0, &goaway));
                        out.extend(answer(1));
                        let _ = tcp.write_all(&out).await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                    if tcp.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, requests, connections)
}

/// Streams above the last one a GOAWAY names were not processed: they go again on a new connection, and the
/// client sees no error. The stream at the limit is answered on the closing connection.
#[tokio::test]
async fn streams_above_a_goaways_last_stream_are_sent_again() {
    let (port, requests, connections) = goaway_below_streams_server().await;
    let (direct, uri) = h2c_target(port);
    let direct = Arc::new(direct);
    let sends = (0..3).map(|_| {
        let (direct, uri) = (direct.clone(), uri.clone());
        tokio::spawn(async move {
            let mut response = direct.post(uri, HeaderMap::new(), Bytes::from_static(b"{}")).await?;
            let data = response.body.next().await.and_then(Result::ok);
            Ok::<_, crate::TransportError>((response.status, data))
        })
    });
    for send in futures_util::future::join_all(sends).await {
        let answer = send.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("a client-visible error: {e}"));
        assert_eq!(answer, (StatusCode::OK, Some(Bytes::from_static(b"ok"))));
    }
    assert_eq!(requests.load(Ordering::SeqCst), 5, "two requests sent again");
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

/// 300 streams at once whose answers (100 SSE-sized DATA frames each) are left unread for a moment: the
/// connection stays up. With h2's default budget for the framing overhead of unread frames (half the connection
/// window) it ended with GOAWAY `ENHANCE_YOUR_CALM` ("too_many_data_frames") while flow control still had room.
#[tokio::test]
async fn unread_small_data_frames_do_not_close_the_connection() {
    const FRAMES: usize = 100;
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let port = h2c_server(move |mut conn: H2cConnection| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            while let Some(Ok((_request, mut respond))) = conn.accept().await {
                if let Ok(mut body) = respond.send_response(http::Response::new(()), false) {
                    for i in 0..FRAMES {
                        let _ = body.send_data(Bytes::from(vec![b'x'; 150]), i == FRAMES - 1);
                    }
                }
            }
        }
    })
    .await;
    let (direct, uri) = h2c_target(port);
    let direct = Arc::new(direct);
    let heads = (0..300).map(|_| {
        let (direct, uri) = (direct.clone(), uri.clone());
        tokio::spawn(async move { direct.post(uri, HeaderMap::new(), Bytes::from_static(b"{}")).await })
    });
    let mut responses = Vec::new();
    for head in futures_util::future::join_all(heads).await {
        responses.push(head.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}")));
    }
    // Every answer's frames arrive and wait unread.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for mut response in responses {
        let mut read = 0;
        while let Some(data) = response.body.next().await {
            read += data.unwrap_or_else(|e| panic!("the connection failed: {e}")).len();
        }
        assert_eq!(read, FRAMES * 150);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

/// An h2c server that answers each stream with one event, then ends it `end_after` later (never, if `None`),
/// and counts the streams the client reset before their end.
async fn late_ending_server(end_after: Option<Duration>) -> (u16, Arc<AtomicUsize>) {
    let resets = Arc::new(AtomicUsize::new(0));
    let counted = resets.clone();
    let port = h2c_server(move |mut conn: H2cConnection| {
        let counted = counted.clone();
        async move {
            while let Some(Ok((_request, mut respond))) = conn.accept().await {
                let Ok(mut body) = respond.send_response(http::Response::new(()), false) else { continue };
                let _ = body.send_data(Bytes::from_static(b"data: {\"type\":\"response.completed\"}\n\n"), false);
                let counted = counted.clone();
                tokio::spawn(async move {
                    let end = async {
                        match end_after {
                            Some(after) => tokio::time::sleep(after).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        reset = std::future::poll_fn(|cx| body.poll_reset(cx)) => {
                            if reset.is_ok() {
                                counted.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        () = end => {
                            let _ = body.send_data(Bytes::new(), true);
                        }
                    }
                });
            }
        }
    })
    .await;
    (port, resets)
}

/// Bodies dropped once their answer was read (`answered`) are read on to their END_STREAM, which comes 100 ms
/// later: the server sees no reset. Bodies dropped before (a client that left) are reset at once, and counted.
#[tokio::test]
async fn answered_streams_end_cleanly_and_abandoned_ones_are_reset_and_counted() {
    let (port, resets) = late_ending_server(Some(Duration::from_millis(100))).await;
    let (direct, uri) = h2c_target(port);
    let direct = Arc::new(direct);
    let run = |answered: bool| {
        let (direct, uri) = (direct.clone(), uri.clone());
        futures_util::future::join_all((0..50).map(move |_| {
            let (direct, uri) = (direct.clone(), uri.clone());
            async move {
                let mut response = direct.post(uri, HeaderMap::new(), Bytes::from_static(b"{}")).await?;
                let event = response.body.next().await;
                assert!(matches!(event, Some(Ok(_))), "no event");
                if answered {
                    response.body.as_mut().answered();
                }
                Ok::<_, crate::TransportError>(())
            }
        }))
    };
    for sent in run(true).await {
        sent.unwrap_or_else(|e| panic!("{e}"));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(resets.load(Ordering::SeqCst), 0, "answered streams were reset");

    let before = super::resets_sent();
    for sent in run(false).await {
        sent.unwrap_or_else(|e| panic!("{e}"));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(resets.load(Ordering::SeqCst), 50, "abandoned streams were not reset");
    // Other tests in this process reset streams too: at least these 50 were counted.
    assert!(super::resets_sent() - before >= 50);
}

/// An answered stream whose END_STREAM never comes is reset after the drain bound, not held forever.
#[tokio::test]
async fn an_answered_stream_that_never_ends_is_reset_after_the_bound() {
    let (port, resets) = late_ending_server(None).await;
    let mut response = post_h2c(port).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(response.body.next().await, Some(Ok(_))));
    response.body.as_mut().answered();
    let dropped = Instant::now();
    drop(response);
    while resets.load(Ordering::SeqCst) == 0 {
        assert!(dropped.elapsed() < super::body::DRAIN * 2, "never reset");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waited = dropped.elapsed();
    assert!(waited >= super::body::DRAIN - Duration::from_millis(100), "reset after {waited:?}");
}
