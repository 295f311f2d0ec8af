//! The browser attack on the keyless loopback default (cross-site requests, DNS rebinding), the settings that let
//! named hosts and origins through, and the client-key rules (empty keys, `?key=`, secrets over HTTP).
//!
//! Requests are written by hand over TCP: the attack is about headers (`Host`, `Origin`, `Content-Type`,
//! `Sec-Fetch-*`) that an HTTP client library sets or normalizes on its own.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Setup, TestEnv, start};

/// One HTTP/1.1 request with exactly these headers (plus `content-length` and `connection: close`); the status
/// and the body parsed as JSON (`Null` if it is not).
async fn raw(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()));
    tcp.write_all(head.as_bytes()).await.unwrap_or_else(|e| panic!("write: {e}"));
    let mut bytes = Vec::new();
    tcp.read_to_end(&mut bytes).await.unwrap_or_else(|e| panic!("read: {e}"));
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(body) } else { body.to_string() };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn port(env: &TestEnv) -> String {
    env.base.rsplit(':').next().unwrap_or_default().to_string()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    OpenAi,
    Anthropic,
    Gemini,
}

/// The error body of `shape` with this status: OpenAI's `error.type`, Anthropic's `type: error` envelope,
/// Gemini's `google.rpc.Status` (its `code` repeats the HTTP status).
fn assert_refusal(shape: Shape, status: u16, got: (u16, &Value), what: &str) {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    let v = got.1;
    let (openai_type, gemini_status) = match status {
        403 => ("permission_error", "PERMISSION_DENIED"),
        415 => ("invalid_request_error", "INVALID_ARGUMENT"),
        _ => ("authentication_error", "UNAUTHENTICATED"),
    };
    match shape {
        Shape::OpenAi => assert_eq!(v["error"]["type"], openai_type, "{what}: {v}"),
        Shape::Anthropic => {
            assert_eq!((&v["type"], &v["error"]["type"]), (&json!("error"), &json!(openai_type)), "{what}: {v}")
        }
        Shape::Gemini => {
            assert_eq!((&v["error"]["code"], &v["error"]["status"]), (&json!(status), &json!(gemini_status)), "{what}")
        }
    }
}

/// Every route of the admin API (server/admin/), every method, and a model route per dialect, with a body
/// that would do harm if it were served.
fn routes(id: &str, relay: &str) -> Vec<(&'static str, String, String, Shape)> {
    let add = json!({"api_key": "sk-attacker", "base_url": relay, "label": "attacker"}).to_string();
    let chat = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"spend the plan"}]}).to_string();
    let claude = json!({"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]});
    let gemini = json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}]}).to_string();
    let a = |p: &str| format!("/admin/accounts/{id}{p}");
    let none = String::new;
    vec![
        ("GET", "/admin/status".into(), none(), Shape::OpenAi),
        ("GET", "/admin/accounts".into(), none(), Shape::OpenAi),
        ("POST", "/admin/accounts".into(), add, Shape::OpenAi),
        ("GET", "/admin/accounts/export?include_secrets=true".into(), none(), Shape::OpenAi),
        ("GET", a(""), none(), Shape::OpenAi),
        ("DELETE", a(""), none(), Shape::OpenAi),
        ("POST", a("/enable"), "{}".into(), Shape::OpenAi),
        ("POST", a("/disable"), "{}".into(), Shape::OpenAi),
        ("POST", a("/label"), json!({"label": "pwned"}).to_string(), Shape::OpenAi),
        ("POST", a("/proxy"), json!({"proxy": relay}).to_string(), Shape::OpenAi),
        ("POST", a("/refresh"), "{}".into(), Shape::OpenAi),
        ("POST", a("/check"), "{}".into(), Shape::OpenAi),
        ("DELETE", a("/cooldowns"), none(), Shape::OpenAi),
        ("POST", "/v1/chat/completions".into(), chat.clone(), Shape::OpenAi),
        ("POST", "/v1/responses".into(), json!({"model":"gpt-5.4","input":"hi"}).to_string(), Shape::OpenAi),
        ("GET", "/v1/models".into(), none(), Shape::OpenAi),
        ("POST", "/v1/messages".into(), claude.to_string(), Shape::Anthropic),
        ("POST", "/v1beta/models/gemini-2.5-flash:generateContent".into(), gemini, Shape::Gemini),
        ("GET", "/health".into(), none(), Shape::OpenAi),
        ("GET", "/no/such/route".into(), none(), Shape::OpenAi),
    ]
}

/// The issue's proof: with the default configuration (loopback, no key) a page the user visits could add a relay
/// account, read every token through a rebinding name, and spend the plan. Every such request is refused in the
/// route's dialect and nothing changes; the same requests from tools (no `Origin`, a loopback `Host`) still work.
#[tokio::test]
async fn browser_attack_on_the_keyless_default_is_refused_on_every_route() {
    let env = start(Setup { accounts: 1, linked: false, store_accounts: true, ..Setup::default() }).await;
    let before = env.get_json("/admin/accounts").await;
    let id = before[0]["id"].as_str().unwrap_or_else(|| panic!("no account: {before}")).to_string();
    let token_calls = env.fake.token_calls().len();
    let loopback = format!("127.0.0.1:{}", port(&env));
    let rebinding = format!("evil.example:{}", port(&env));
    let relay = env.fake.openai_api_base();
    for (method, path, body, shape) in routes(&id, &relay) {
        // A cross-site page: its `text/plain` POST skips the CORS preflight, so only the server can say no.
        let cross_site =
            [("host", loopback.as_str()), ("origin", "https://evil.example"), ("content-type", "text/plain")];
        let got = raw(&env.base, method, &path, &cross_site, &body).await;
        assert_refusal(shape, 403, (got.0, &got.1), &format!("cross-site {method} {path}"));
        if shape == Shape::OpenAi {
            assert_eq!(got.1["error"]["code"], "origin_not_allowed", "{path}");
        }

        // A page on a name that resolves to 127.0.0.1: same-origin for the browser, so it sends no `Origin` on
        // GET and can read the answer.
        let rebound = [("host", rebinding.as_str()), ("content-type", "application/json")];
        let got = raw(&env.base, method, &path, &rebound, &body).await;
        assert_refusal(shape, 403, (got.0, &got.1), &format!("rebinding {method} {path}"));
        let message = got.1.to_string();
        assert!(message.contains("allowed_hosts"), "the refusal says what to configure: {message}");

        // A browser request without `Origin` (its `Sec-Fetch-*` metadata gives it away) posting a form type.
        if method == "POST" {
            let simple =
                [("host", loopback.as_str()), ("sec-fetch-site", "cross-site"), ("content-type", "text/plain")];
            let got = raw(&env.base, method, &path, &simple, &body).await;
            assert_refusal(shape, 415, (got.0, &got.1), &format!("text/plain from a browser {method} {path}"));
        }
    }
    // Nothing happened: no account added, changed or removed, no token refreshed, nothing sent upstream.
    let after = env.get_json("/admin/accounts").await;
    assert_eq!(after.as_array().map(Vec::len), Some(1), "{after}");
    assert_eq!(
        (&after[0]["label"], &after[0]["status"], &after[0]["proxy"]),
        (&Value::Null, &json!("active"), &Value::Null)
    );
    assert_eq!(env.fake.token_calls().len(), token_calls);
    assert!(env.fake.requests_to("/responses").is_empty());
    assert!(env.fake.requests_to("/v1/responses").is_empty());

    // Tools are not browsers: curl -d sends a form content type, no `Origin`, a loopback `Host`; served.
    let curl = [("host", loopback.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let chat = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}).to_string();
    let (status, v) = raw(&env.base, "POST", "/v1/chat/completions", &curl, &chat).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) =
        raw(&env.base, "POST", &format!("/admin/accounts/{id}/label"), &curl, r#"{"label":"mine"}"#).await;
    assert_eq!((status, &v["label"]), (200, &json!("mine")), "{v}");
    let localhost = format!("localhost:{}", port(&env));
    let (status, v) = raw(&env.base, "GET", "/admin/accounts", &[("host", localhost.as_str())], "").await;
    assert_eq!((status, v.as_array().map(Vec::len)), (200, Some(1)), "{v}");
    // A page on a loopback origin (a local web app) is the user's own, sending JSON.
    let local_page =
        [("host", loopback.as_str()), ("origin", "http://localhost:3000"), ("content-type", "application/json")];
    let (status, v) = raw(&env.base, "GET", "/v1/models", &local_page, "").await;
    assert_eq!(status, 200, "{v}");
    // HTTP/1.0 without `Host`: not a browser (browsers always send it); allowed and documented.
    let mut tcp =
        tokio::net::TcpStream::connect(env.base.trim_start_matches("http://")).await.unwrap_or_else(|e| panic!("{e}"));
    tcp.write_all(b"GET /health HTTP/1.0\r\n\r\n").await.unwrap_or_else(|e| panic!("{e}"));
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
}

#[tokio::test]
async fn allowed_hosts_and_origins_let_the_named_ones_through() {
    let toml = "[server]\nallowed_hosts = [\"gw.example\"]\nallowed_origins = [\"https://app.example\"]";
    let env = start(Setup { config_toml: Some(toml.into()), ..Setup::default() }).await;
    let p = port(&env);
    let named = format!("gw.example:{p}");
    let other = format!("other.example:{p}");
    let loopback = format!("127.0.0.1:{p}");
    assert_eq!(raw(&env.base, "GET", "/v1/models", &[("host", &named)], "").await.0, 200);
    assert_eq!(raw(&env.base, "GET", "/v1/models", &[("host", &other)], "").await.0, 403);
    let chat = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}).to_string();
    let json_from = |origin| [("host", loopback.as_str()), ("origin", origin), ("content-type", "application/json")];
    let (status, v) = raw(&env.base, "POST", "/v1/chat/completions", &json_from("https://app.example"), &chat).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = raw(&env.base, "POST", "/v1/chat/completions", &json_from("https://other.example"), &chat).await;
    assert_eq!(status, 403, "{v}");
    // A named origin still may not use a form content type (no preflight around it).
    let form = [("host", loopback.as_str()), ("origin", "https://app.example"), ("content-type", "text/plain")];
    assert_eq!(raw(&env.base, "POST", "/v1/chat/completions", &form, &chat).await.0, 415);
}

/// The bridge had an `Origin` guard but took any `Host`: a rebinding page could use it.
#[tokio::test]
async fn ollama_bridge_refuses_a_rebinding_host() {
    let env = start(Setup { ollama: true, ..Setup::default() }).await;
    let bridge = env.ollama.clone().unwrap_or_else(|| panic!("bridge not started"));
    let p = bridge.rsplit(':').next().unwrap_or_default().to_string();
    let evil = format!("evil.example:{p}");
    let (status, v) = raw(&bridge, "GET", "/api/tags", &[("host", &evil)], "").await;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().is_some_and(|m| m.contains("allowed_hosts")), "Ollama's error shape: {v}");
    let chat = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}],"stream":false}).to_string();
    let (status, v) = raw(&bridge, "POST", "/api/chat", &[("host", &evil)], &chat).await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = raw(&bridge, "POST", "/v1/chat/completions", &[("host", &evil)], &chat).await;
    assert_eq!((status, &v["error"]["type"]), (403, &json!("permission_error")), "OpenAI's shape under /v1: {v}");
    assert!(env.fake.requests_to("/responses").is_empty());
    let loopback = format!("localhost:{p}");
    let (status, v) = raw(&bridge, "GET", "/api/tags", &[("host", &loopback)], "").await;
    assert_eq!(status, 200, "{v}");
    let cross = [("host", loopback.as_str()), ("origin", "https://evil.example")];
    assert_eq!(raw(&bridge, "POST", "/api/chat", &cross, &chat).await.0, 403);
}

#[tokio::test]
async fn secrets_are_exported_over_http_only_with_a_client_key() {
    let env = start(Setup { accounts: 1, linked: false, store_accounts: true, ..Setup::default() }).await;
    let resp = env.http.get(env.url("/admin/accounts/export?include_secrets=true")).send().await;
    let resp = resp.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 403);
    let text = resp.text().await.unwrap_or_default();
    assert!(!text.contains(&env.accounts[0].refresh_token));
    assert!(text.contains("accounts export --include-secrets"), "says how: {text}");
    // Redacted exports stay open.
    assert!(env.get_json("/admin/accounts/export").await["accounts"].is_array());

    let env =
        start(Setup { store_accounts: true, linked: false, client_key: Some("k".into()), ..Setup::default() }).await;
    let resp = env.http.get(env.url("/admin/accounts/export?include_secrets=true")).bearer_auth("k").send().await;
    let resp = resp.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.text().await.unwrap_or_default().contains(&env.accounts[0].refresh_token));
}

#[tokio::test]
async fn query_keys_are_accepted_only_on_gemini_routes() {
    let env = start(Setup { client_key: Some("k".into()), ..Setup::default() }).await;
    let get = |path: &str| {
        let req = env.http.get(env.url(path));
        async move {
            let resp = req.send().await.unwrap_or_else(|e| panic!("{e}"));
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or_default())
        }
    };
    let (status, v) = get("/admin/accounts?key=k").await;
    assert_eq!(status, 401, "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("only on the Gemini routes")), "{v}");
    assert_eq!(get("/v1/models?key=k").await.0, 401);
    assert_eq!(get("/v1beta/models?key=k").await.0, 200);
    assert_eq!(get("/v1beta/models?key=wrong").await.0, 401);
    let body = json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}]});
    let (status, _, text) = env.post("/v1beta/models/gemini-2.5-flash:generateContent?key=k", &body).await;
    assert_eq!(status, 200, "{text}");
    let resp = env.http.get(env.url("/admin/accounts")).bearer_auth("k").send().await;
    assert_eq!(resp.map(|r| r.status().as_u16()).unwrap_or(0), 200);
}

/// `--api-key ''` used to start a gateway that accepted an empty key (and passed the non-loopback guard).
#[tokio::test]
async fn an_empty_client_key_stops_start_up() {
    let bin = env!("CARGO_BIN_EXE_codex-gateway");
    let dir = std::env::temp_dir().join(format!("cgw-it-emptykey-{}", uuid::Uuid::new_v4().simple()));
    let run = |args: &[&str], key_env: Option<&str>| {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args)
            .env("HOME", &dir)
            .env("CODEX_GATEWAY_DATA_DIR", dir.join("data"))
            .env("CODEX_HOME", dir.join("codex-home"))
            .env_remove("CODEX_GATEWAY_API_KEY")
            .env_remove("CODEX_GATEWAY_CONFIG")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("OPENAI_API_KEY")
            .kill_on_drop(true);
        if let Some(k) = key_env {
            cmd.env("CODEX_GATEWAY_API_KEY", k);
        }
        async move { cmd.output().await.unwrap_or_else(|e| panic!("{e}")) }
    };
    for (args, key_env) in [
        (&["serve", "--host", "0.0.0.0", "--port", "0", "--api-key", ""][..], None),
        (&["serve", "--port", "0", "--api-key", " "][..], None),
        (&["serve", "--host", "0.0.0.0", "--port", "0"][..], Some("k1,,k2")),
    ] {
        let out = tokio::time::timeout(std::time::Duration::from_secs(20), run(args, key_env))
            .await
            .unwrap_or_else(|_| panic!("{args:?} did not stop: it started serving"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {key_env:?}");
        assert!(stderr.contains("empty client key"), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
