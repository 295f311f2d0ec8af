//! Connections: the HTTP/1.1 listener's graceful shutdown, HTTP/2 to the upstream, and an account's proxy for its
//! requests and its calls beside them.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Setup, scenario, sse_data, start};

fn chat(stream: bool) -> serde_json::Value {
    json!({"model":"gpt-5.4","stream":stream,"messages":[{"role":"user","content":"hello there"}]})
}

#[tokio::test]
async fn shutdown_lets_open_streams_finish_and_refuses_new_connections() {
    let mut env = start(Setup::default()).await;
    env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"one two three four","deltas":4,"delay_ms":150})));
    let mut resp =
        env.http.post(env.url("/v1/chat/completions")).json(&chat(true)).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 200);
    let mut body = String::new();
    let first = resp.chunk().await.unwrap_or_default().unwrap_or_default();
    body.push_str(&String::from_utf8_lossy(&first));
    env.stop_gateway();
    // New connections are refused once the listener is gone.
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    loop {
        if fresh.get(env.url("/health")).send().await.is_err() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "still accepting connections after shutdown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The stream that was open finishes normally.
    while let Some(chunk) = resp.chunk().await.unwrap_or_else(|e| panic!("the open stream was cut: {e}")) {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{body}");
    let text: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect();
    assert_eq!(text, "one two three four");
}

/// Reads a hyper response body frame by frame; `None` at the end.
async fn next_data(body: &mut hyper::body::Incoming) -> Option<Result<bytes::Bytes, hyper::Error>> {
    use hyper::body::Body;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

fn content_of(sse: &str) -> String {
    sse_data(sse)
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["choices"][0]["delta"]["content"].as_str().map(str::to_string))
        .collect()
}

/// HTTP/2 to the upstream (`upstream_h2c`): two streams share the upstream connection, one of them with a
/// client that stops reading for seconds while the upstream keeps sending small frames. Both finish, whole.
///
/// The failure this configuration guards against (h2 ending the connection with "too_many_data_frames" when
/// unread small frames cost more overhead than half the connection window, which hyper's adaptive windows kept
/// at 64 KB) needs thousands of streams opening at once to show on loopback, where the adaptive window grows
/// fast: the benchmark's HTTP/2 slow-stream scenario reproduces it (4,825 of 5,000 streams lost before the fix).
#[tokio::test]
async fn http2_upstream_shares_a_connection_with_a_stalled_client() {
    let env = start(Setup { env: vec![("CODEX_GATEWAY_UPSTREAM_H2C", "1".into())], ..Setup::default() }).await;
    let stalled_deltas = 2500;
    env.fake.enqueue(
        None,
        scenario(json!({"kind":"slow","text":"x ".repeat(stalled_deltas),"deltas":stalled_deltas,"delay_ms":1})),
    );
    env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"a b c d e f g h i j","deltas":10,"delay_ms":300})));

    // The stalled client: a tiny receive buffer, so the gateway's writes to it block soon.
    let addr: std::net::SocketAddr =
        env.base.trim_start_matches("http://").parse().unwrap_or_else(|e| panic!("gateway address: {e}"));
    let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("{e}"));
    socket.set_recv_buffer_size(4096).unwrap_or_else(|e| panic!("{e}"));
    let tcp = socket.connect(addr).await.unwrap_or_else(|e| panic!("connect: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    tokio::spawn(conn);
    let request = axum::http::Request::post("/v1/chat/completions")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(chat(true).to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    let response = sender.send_request(request).await.unwrap_or_else(|e| panic!("send: {e}"));
    assert_eq!(response.status(), 200);
    let mut stalled_body = response.into_body();
    let mut stalled = String::new();
    if let Some(Ok(first)) = next_data(&mut stalled_body).await {
        stalled.push_str(&String::from_utf8_lossy(&first));
    }

    // Another stream on the same upstream connection, read normally while the first one is stalled.
    let other = tokio::spawn({
        let http = env.http.clone();
        let url = env.url("/v1/chat/completions");
        async move {
            let resp = http.post(url).json(&chat(true)).send().await.unwrap_or_else(|e| panic!("{e}"));
            resp.text().await.unwrap_or_else(|e| panic!("the other stream was cut: {e}"))
        }
    });
    // Long enough for the fake to send every delta of the stalled stream (2,500 at ~1 ms).
    tokio::time::sleep(Duration::from_millis(4000)).await;
    while let Some(chunk) = next_data(&mut stalled_body).await {
        let chunk = chunk.unwrap_or_else(|e| panic!("the stalled stream was cut: {e}"));
        stalled.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(
        sse_data(&stalled).last().map(String::as_str),
        Some("[DONE]"),
        "{}",
        &stalled[stalled.len().saturating_sub(600)..]
    );
    assert_eq!(content_of(&stalled), "x ".repeat(stalled_deltas));
    let other = other.await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(content_of(&other), "a b c d e f g h i j", "{other}");
    // Both streams went over one HTTP/2 connection.
    let responses = env.fake.requests_to("/responses");
    assert_eq!(responses.len(), 2);
    assert!(responses.iter().all(|r| r.http_version == "HTTP/2.0"), "{responses:?}");
    assert_eq!(responses[0].connection, responses[1].connection, "two upstream connections");
}

/// `n` streaming chat requests at once; each task returns its SSE body (status 200 asserted).
fn concurrent_streams(env: &crate::harness::TestEnv, n: usize) -> Vec<tokio::task::JoinHandle<String>> {
    (0..n)
        .map(|_| {
            let http = env.http.clone();
            let url = env.url("/v1/chat/completions");
            tokio::spawn(async move {
                let resp = http.post(url).json(&chat(true)).send().await.unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(resp.status(), 200);
                resp.text().await.unwrap_or_else(|e| panic!("{e}"))
            })
        })
        .collect()
}

/// The fake saw `count` Responses requests, all over `version` and on one connection.
fn assert_one_connection(env: &crate::harness::TestEnv, count: usize, version: &str) {
    let responses = env.fake.requests_to("/responses");
    assert_eq!(responses.len(), count);
    assert!(responses.iter().all(|r| r.http_version == version), "not {version}: {responses:?}");
    assert!(responses.iter().all(|r| r.connection == responses[0].connection), "{responses:?}");
    assert_eq!(env.fake.stats()["tls_handshake_failures"], 0);
}

/// A server that allows few streams at once on a connection (SETTINGS_MAX_CONCURRENT_STREAMS): requests beyond
/// that go on more connections to it instead of waiting for a free stream, since a reply can take minutes.
#[tokio::test]
async fn http2_upstream_stream_limit_opens_more_connections() {
    let fake = fake_codex::FakeConfig { h2_max_concurrent_streams: 2, ..Default::default() };
    // More requests at once than one account takes by default (four): the transport's limit is under test here.
    let config_toml = Some("[routing]\nmax_concurrent_per_account = 16".to_string());
    let env =
        start(Setup { fake, config_toml, env: vec![("CODEX_GATEWAY_UPSTREAM_H2C", "1".into())], ..Setup::default() })
            .await;
    // One request first, so the connection exists and the server's limit has arrived.
    let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{text}");
    for _ in 0..5 {
        env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"a b c d","deltas":4,"delay_ms":500})));
    }
    let started = std::time::Instant::now();
    for stream in concurrent_streams(&env, 5) {
        let body = stream.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(content_of(&body), "a b c d", "{body}");
    }
    // Five two-second replies at once take about two seconds; two at a time on one connection would take six.
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(4000), "the replies waited for each other: {elapsed:?}");
    let responses = env.fake.requests_to("/responses");
    let connections: std::collections::HashSet<_> = responses.iter().map(|r| r.connection).collect();
    assert!(
        connections.len() >= 3,
        "{} connections for 5 streams at once, 2 allowed per connection",
        connections.len()
    );
    assert!(responses.iter().all(|r| r.http_version == "HTTP/2.0"), "{responses:?}");
}

fn chat_text(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string()
}

/// The real backend is reached over TLS, with ALPN choosing HTTP/2: the gateway trusts the configured CA bundle
/// (here the TLS fake's certificate), negotiates h2, and runs concurrent streams over one connection.
#[tokio::test]
async fn tls_upstream_negotiates_http2_and_shares_one_connection() {
    let env =
        start(Setup { fake: fake_codex::FakeConfig { tls: true, ..Default::default() }, ..Setup::default() }).await;
    // The first request opens the connection; until ALPN has answered, the pool cannot know it may share it.
    let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{text}");
    assert!(!chat_text(&text).is_empty(), "{text}");
    for stream in concurrent_streams(&env, 3) {
        let body = stream.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sse_data(&body).last().map(String::as_str), Some("[DONE]"), "{body}");
        assert!(!content_of(&body).is_empty(), "{body}");
    }
    assert_one_connection(&env, 4, "HTTP/2.0");
}

/// An upstream that offers only HTTP/1.1 in the TLS handshake is served over HTTP/1.1, and the gateway
/// remembers it: later requests go straight to pooled HTTP/1.1 connections.
#[tokio::test]
async fn tls_upstream_offering_only_http1_is_served_over_http1() {
    let fake = fake_codex::FakeConfig { tls: true, tls_http1_only: true, ..Default::default() };
    let env = start(Setup { fake, ..Setup::default() }).await;
    for _ in 0..3 {
        let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
        assert_eq!(status, 200, "{text}");
        assert!(!chat_text(&text).is_empty(), "{text}");
    }
    // One handshake learnt the origin's protocol; after it, one pooled connection carried the requests in turn.
    assert_one_connection(&env, 3, "HTTP/1.1");
}

/// An upstream whose certificate the gateway does not trust is refused at the handshake, and the client gets a
/// clear 502 in its own dialect that names the certificate problem.
#[tokio::test]
async fn untrusted_upstream_certificate_is_a_clear_error() {
    // Trust a different TLS fake's certificate than the one serving.
    let other = fake_codex::FakeCodex::start(fake_codex::FakeConfig { tls: true, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("cgw-ca-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let wrong = dir.join("other-ca.pem");
    std::fs::write(&wrong, other.ca_pem().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    let env = start(Setup {
        fake: fake_codex::FakeConfig { tls: true, ..Default::default() },
        env: vec![("CODEX_GATEWAY_CA_BUNDLE", wrong.display().to_string())],
        ..Setup::default()
    })
    .await;
    let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status, 502, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let message = v["error"]["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(message.contains("certificate"), "{text}");
    assert!(env.fake.requests_to("/responses").is_empty());
    assert!(env.fake.stats()["tls_handshake_failures"].as_u64().unwrap_or(0) >= 1, "{}", env.fake.stats());
}

/// A minimal HTTP CONNECT proxy on loopback. Returns its URL and the targets it was asked to tunnel to.
async fn connect_proxy() -> (String, std::sync::Arc<parking_lot::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    let targets = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = targets.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    match client.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let Some(target) = head.strip_prefix("CONNECT ").and_then(|r| r.split(' ').next()) else { return };
                seen.lock().push(target.to_string());
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else { return };
                if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (url, targets)
}

/// An account's own proxy carries its TLS traffic to the upstream (a CONNECT tunnel), with the same trust and
/// ALPN as the direct path.
#[tokio::test]
async fn per_account_proxy_tunnels_tls_to_the_upstream() {
    let env = start(Setup {
        fake: fake_codex::FakeConfig { tls: true, ..Default::default() },
        linked: false,
        store_accounts: true,
        ..Setup::default()
    })
    .await;
    let (proxy, targets) = connect_proxy().await;
    let accounts = env.get_json("/admin/accounts").await;
    let id = accounts[0]["id"].as_str().unwrap_or_default().to_string();
    let (status, _, text) = env.post(&format!("/admin/accounts/{id}/proxy"), &json!({ "proxy": proxy })).await;
    assert_eq!(status, 200, "{text}");
    env.fake.reset_requests();
    let (status, _, text) = env.post("/v1/chat/completions", &chat(false)).await;
    assert_eq!(status, 200, "{text}");
    assert!(!chat_text(&text).is_empty(), "{text}");
    let fake_addr = env.fake.base_url().trim_start_matches("https://").to_string();
    let targets = targets.lock().clone();
    assert!(targets.contains(&fake_addr), "not tunnelled: {targets:?}");
    let responses = env.fake.requests_to("/responses");
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].http_version, "HTTP/2.0");
}

/// A minimal forward proxy for plain-HTTP targets on loopback: one request per connection, its request line in
/// absolute form; it records `METHOD path` and relays the request to its target with `Connection: close`.
async fn forward_proxy() -> (String, std::sync::Arc<parking_lot::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
                    match client.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap_or_default().split(' ');
                let (method, target) = (first.next().unwrap_or_default(), first.next().unwrap_or_default());
                let Some(rest) = target.strip_prefix("http://") else { return };
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                let path = if path.is_empty() { "/" } else { path };
                let headers: Vec<&str> = lines
                    .filter(|l| !l.is_empty())
                    .filter(|l| {
                        let name = l.split(':').next().unwrap_or_default().to_ascii_lowercase();
                        name != "connection" && name != "proxy-connection"
                    })
                    .collect();
                let length = headers
                    .iter()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                if client.read_exact(&mut body).await.is_err() {
                    return;
                }
                log.lock().push(format!("{method} {}", path.split('?').next().unwrap_or_default()));
                let Ok(mut upstream) = tokio::net::TcpStream::connect(authority).await else { return };
                let mut request = format!("{method} {path} HTTP/1.1\r\n");
                for h in headers {
                    request.push_str(h);
                    request.push_str("\r\n");
                }
                request.push_str("Connection: close\r\n\r\n");
                if upstream.write_all(request.as_bytes()).await.is_err() || upstream.write_all(&body).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy(&mut upstream, &mut client).await;
                let _ = client.shutdown().await;
            });
        }
    });
    (url, seen)
}

/// Issue 71: an account behind a proxy makes every call through it, not only its turns: the quota poll, the
/// workspace check and the catalog fetch of the upkeep round, and the token refresh. Nothing goes around it (each
/// such call the upstream saw came through the proxy), so the upstream never sees the account from two addresses.
#[tokio::test]
async fn an_accounts_calls_beside_its_turns_go_through_its_proxy() {
    let env = start(Setup {
        linked: false,
        store_accounts: true,
        config_toml: Some("upkeep_interval_secs = 0.3\n".into()),
        ..Setup::default()
    })
    .await;
    let (proxy, seen) = forward_proxy().await;
    let accounts = env.get_json("/admin/accounts").await;
    let id = accounts[0]["id"].as_str().unwrap_or_default().to_string();
    // A new proxy rebuilds the account: no quota reading, no catalog, so the next upkeep round reads both.
    let (status, _, text) = env.post(&format!("/admin/accounts/{id}/proxy"), &json!({ "proxy": proxy })).await;
    assert_eq!(status, 200, "{text}");
    let calls = ["GET /backend-api/wham/usage", "GET /backend-api/wham/accounts/check", "/models"];
    let saw = |call: &str| seen.lock().iter().any(|s| s.ends_with(call) || s == call);
    for _ in 0..200 {
        if calls.iter().all(|c| saw(c)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for call in calls {
        assert!(saw(call), "{call} not through the proxy: {:?}", seen.lock());
    }
    let (status, _, text) = env.post(&format!("/admin/accounts/{id}/refresh"), &json!({})).await;
    assert_eq!(status, 200, "{text}");
    assert!(seen.lock().iter().any(|s| s == "POST /oauth/token"), "the refresh: {:?}", seen.lock());
    // Every one the upstream saw passed the proxy first (it records before it forwards).
    for fragment in ["/wham/usage", "/wham/accounts/check", "/models", "/oauth/token"] {
        let upstream = env.fake.requests_to(fragment).len();
        let proxied = seen.lock().iter().filter(|s| s.contains(fragment)).count();
        assert!(upstream >= 1 && upstream <= proxied, "{fragment}: {upstream} at the upstream, {proxied} proxied");
    }
}
