//! The downstream raw-byte battery: the same bytes to the gateway's own HTTP/1.1 server and to nginx, and the
//! gateway must refuse what nginx refuses and serve what nginx serves (Content-Length / Transfer-Encoding
//! conflicts, obs-fold, chunk-size overflow, Host missing or twice, pipelining, a slow client). A status counts
//! as a refusal of the bytes when it is one a server gives malformed HTTP (400, 411, 413, 414, 431, 501, 505),
//! or when the connection closes without an answer; anything else means the request was read and served (nginx
//! answers `200 ok` to everything, the gateway what its route answers).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::servers::{Kind, Server};
use crate::harness::{Setup, start};

/// The body of the battery's model calls.
const CHAT: &str = r#"{"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}"#;

/// Statuses that refuse the bytes themselves.
const REFUSALS: [u16; 7] = [400, 411, 413, 414, 431, 501, 505];

/// (name, bytes, how many answers a server that accepts them gives)
fn cases() -> Vec<(&'static str, String, usize)> {
    let h = "Host: 127.0.0.1\r\n";
    // A model call, which reads its body: framing errors surface as they would for a client.
    let post = |headers: &str, body: &str| format!("POST /v1/chat/completions HTTP/1.1\r\n{h}{headers}\r\n{body}");
    let length = |extra: &str| format!("Content-Length: {}\r\n{extra}", CHAT.len());
    let chunked = |body: &str| post("Transfer-Encoding: chunked\r\n", body);
    let one_chunk = format!("{:x}\r\n{CHAT}\r\n0\r\n\r\n", CHAT.len());
    let te = |headers: &str| post(headers, &one_chunk);
    let get = |fields: &str| format!("GET /health HTTP/1.1\r\n{h}{fields}\r\n");
    let then_get = |first: String| format!("{first}{}", get(""));
    vec![
        ("plain GET", get(""), 1),
        ("POST with Content-Length", post(&length(""), CHAT), 1),
        ("Content-Length and Transfer-Encoding", te(&length("Transfer-Encoding: chunked\r\n")), 1),
        ("Transfer-Encoding then Content-Length", te(&format!("Transfer-Encoding: chunked\r\n{}", length(""))), 1),
        ("chunked body", chunked(&one_chunk), 1),
        ("chunked body with an extension", chunked(&one_chunk.replacen("\r\n", ";ext=1\r\n", 1)), 1),
        ("unknown transfer coding", post("Transfer-Encoding: gzip\r\n", CHAT), 1),
        ("chunked not the last coding", te("Transfer-Encoding: chunked, gzip\r\n"), 1),
        ("Transfer-Encoding twice", te("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 1),
        ("space before the colon", te("Transfer-Encoding : chunked\r\n"), 1),
        ("obs-fold in Transfer-Encoding", te("Transfer-Encoding:\r\n chunked\r\n"), 1),
        ("obs-fold in another field", get("X-A: b\r\n c\r\n"), 1),
        ("Content-Length twice, equal", post(&length(&length("")), CHAT), 1),
        ("Content-Length twice, different", post(&length("Content-Length: 1\r\n"), CHAT), 1),
        ("Content-Length as a list", post(&format!("Content-Length: {0}, {0}\r\n", CHAT.len()), CHAT), 1),
        ("Content-Length with a sign", post(&format!("Content-Length: +{}\r\n", CHAT.len()), CHAT), 1),
        ("negative Content-Length", post("Content-Length: -5\r\n", CHAT), 1),
        ("Content-Length overflow", post("Content-Length: 99999999999999999999999\r\n", CHAT), 1),
        ("Content-Length in hex", post("Content-Length: 0x05\r\n", CHAT), 1),
        ("chunk size overflow", chunked(&format!("fffffffffffffffff1\r\n{CHAT}\r\n0\r\n\r\n")), 1),
        ("chunk size not hex", chunked(&format!("zz\r\n{CHAT}\r\n0\r\n\r\n")), 1),
        ("chunk without its CRLF", chunked(&format!("{:x}\r\n{CHAT}XX0\r\n\r\n", CHAT.len())), 1),
        ("HTTP/1.1 without Host", "GET /health HTTP/1.1\r\n\r\n".into(), 1),
        ("HTTP/1.0 without Host", "GET /health HTTP/1.0\r\n\r\n".into(), 1),
        ("Host twice", get(h), 1),
        ("Host twice, different", get("Host: 127.0.0.2\r\n"), 1),
        ("absolute-form target", format!("GET http://127.0.0.1/health HTTP/1.1\r\n{h}\r\n"), 1),
        ("NUL in a field value", get("X-A: a\0b\r\n"), 1),
        ("space in a field name", get("Bad Name: x\r\n"), 1),
        ("HTTP/2.0 on the HTTP/1.1 port", format!("GET /health HTTP/2.0\r\n{h}\r\n"), 1),
        ("two GETs pipelined", then_get(get("")), 2),
        ("POST then GET pipelined", then_get(post(&length(""), CHAT)), 2),
        ("chunked POST then GET pipelined", then_get(chunked(&one_chunk)), 2),
    ]
}

/// The statuses of the answers to `bytes` (written at once, or a byte at a time 5 ms apart), read until the
/// server closes or goes quiet.
async fn answers(port: u16, bytes: &[u8], slowly: bool) -> Vec<u16> {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return Vec::new() };
    if slowly {
        for byte in bytes {
            if tcp.write_all(std::slice::from_ref(byte)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    } else {
        let _ = tcp.write_all(bytes).await;
    }
    let mut received = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    while let Ok(Ok(n @ 1..)) = tokio::time::timeout(Duration::from_millis(700), tcp.read(&mut buf)).await {
        received.extend_from_slice(&buf[..n]);
    }
    statuses(&received)
}

/// The status of each whole answer in `bytes`.
fn statuses(mut bytes: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(head)) = response.parse(bytes) else { return out };
        out.push(response.code.unwrap_or_default());
        let field = |name: &str| {
            response.headers.iter().find(|f| f.name.eq_ignore_ascii_case(name)).map(|f| f.value.to_ascii_lowercase())
        };
        let body = if field("transfer-encoding").is_some_and(|v| v.ends_with(b"chunked")) {
            chunked_len(&bytes[head..])
        } else {
            let length = field("content-length").and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok());
            length.unwrap_or(0)
        };
        let Some(rest) = bytes.get(head + body..) else { return out };
        bytes = rest;
    }
}

/// The length of the chunked body at the start of `bytes`, framing included.
fn chunked_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(line_end) = bytes[at..].windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&bytes[at..at + line_end]).ok();
        let size = size.and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok()).unwrap_or(0);
        at += line_end + 2 + size + 2;
        if size == 0 || at >= bytes.len() {
            return at.min(bytes.len());
        }
    }
    bytes.len()
}

/// Whether the server read and served the request (`Some(answers)`), or refused the bytes (`None`).
fn verdict(statuses: &[u16]) -> Option<usize> {
    match statuses.first() {
        Some(status) if !REFUSALS.contains(status) => Some(statuses.len()),
        Some(_) | None => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_refuses_and_serves_raw_bytes_as_nginx_does() {
    let env = start(Setup::default()).await;
    let origin = env.fake.base_url();
    let nginx = tokio::task::spawn_blocking(move || Server::start(Kind::Nginx, &origin)).await;
    let nginx = nginx.unwrap_or_else(|e| panic!("{e}"));
    let reference = nginx.plain_port.unwrap_or_else(|| panic!("nginx has no plain port"));
    let gateway: u16 = env.base.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_default();
    let mut table = Vec::new();
    let mut differ = Vec::new();
    let mut run = |name: String, theirs: Vec<u16>, ours: Vec<u16>, want: usize| {
        let (v_theirs, v_ours) = (verdict(&theirs), verdict(&ours));
        table.push(format!("{name}: nginx {theirs:?}, gateway {ours:?}"));
        // nginx serving the bytes must mean every pipelined request was answered, by both.
        if v_theirs != v_ours || v_theirs.is_some_and(|n| n != want) {
            differ.push(format!("{name}: nginx {theirs:?}, gateway {ours:?}"));
        }
    };
    for (name, bytes, want) in cases() {
        let theirs = answers(reference, bytes.as_bytes(), false).await;
        let ours = answers(gateway, bytes.as_bytes(), false).await;
        run(name.to_string(), theirs, ours, want);
    }
    // A slow client: the head and body a byte at a time.
    let slow = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{CHAT}",
        CHAT.len()
    );
    let theirs = answers(reference, slow.as_bytes(), true).await;
    let ours = answers(gateway, slow.as_bytes(), true).await;
    run("a byte at a time".into(), theirs, ours, 1);
    println!("downstream battery ({} cases):\n  {}", table.len(), table.join("\n  "));
    assert!(
        differ.is_empty(),
        "{} of {} cases answered unlike nginx:\n{}",
        differ.len(),
        table.len(),
        differ.join("\n")
    );
}
