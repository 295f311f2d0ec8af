//! Client keys with limits through the real server: each refusal (unknown, revoked, expired, model not allowed,
//! rate, concurrency, token budget) in each of the five dialects' error shapes, a revoke that applies to the next
//! request, the secret shown once, and the admin key kept apart from client keys.

use std::time::Duration;

use codex_gateway::record::Api;
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, scenario, start};

pub(crate) const ADMIN: &str = "admin-key";
const SHARED: &str = "shared-key";

async fn gateway() -> TestEnv {
    start(Setup {
        ollama: true,
        client_key: Some(SHARED.into()),
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.into())],
        ..Setup::default()
    })
    .await
}

pub(crate) async fn admin(
    env: &TestEnv,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    key: &str,
) -> (u16, Value) {
    let mut req = env.http.request(method, env.url(path)).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    (resp.status().as_u16(), resp.json().await.unwrap_or_default())
}

/// Create a key through `/admin/keys`; returns (id, secret).
pub(crate) async fn create(env: &TestEnv, spec: Value) -> (String, String) {
    let (status, v) = admin(env, reqwest::Method::POST, "/admin/keys", Some(spec), ADMIN).await;
    assert_eq!(status, 201, "{v}");
    let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{k} missing: {v}")).to_string();
    (s("id"), s("secret"))
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum D {
    Chat,
    Responses,
    Anthropic,
    Gemini,
    Ollama,
}

pub(crate) const ALL: [D; 5] = [D::Chat, D::Responses, D::Anthropic, D::Gemini, D::Ollama];

/// One model request in dialect `d` with `key` (sent the way that dialect's clients send it); `stream` asks for
/// a streaming answer. Models all resolve to gpt-5.4 (catalog and alias defaults).
fn request(env: &TestEnv, d: D, key: &str, stream: bool) -> reqwest::RequestBuilder {
    let user = json!([{"role":"user","content":"hello"}]);
    let (url, body) = match d {
        D::Chat => (env.url("/v1/chat/completions"), json!({"model":"gpt-5.4","messages":user,"stream":stream})),
        D::Responses => (env.url("/v1/responses"), json!({"model":"gpt-5.4","input":"hello","stream":stream})),
        D::Anthropic => (
            env.url("/v1/messages"),
            json!({"model":"claude-sonnet-4-5","max_tokens":256,"messages":user,"stream":stream}),
        ),
        D::Gemini => {
            let method = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
            (
                env.url(&format!("/v1beta/models/gemini-2.5-flash:{method}")),
                json!({"contents":[{"role":"user","parts":[{"text":"hello"}]}]}),
            )
        }
        D::Ollama => {
            let base = env.ollama.clone().unwrap_or_else(|| panic!("bridge not started"));
            (format!("{base}/api/chat"), json!({"model":"gpt-5.4","messages":user,"stream":stream}))
        }
    };
    let req = env.http.post(url).json(&body);
    match d {
        D::Anthropic => req.header("x-api-key", key),
        D::Gemini => req.header("x-goog-api-key", key),
        D::Chat | D::Responses | D::Ollama => req.bearer_auth(key),
    }
}

pub(crate) async fn send(env: &TestEnv, d: D, key: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = request(env, d, key, false).send().await.unwrap_or_else(|e| panic!("{d:?}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// What a refusal must look like in `d`'s shape: its status, its error type (OpenAI, Anthropic) or status name
/// (Gemini), its code (OpenAI; Gemini's ErrorInfo reason) and words of its message (every shape has a message;
/// Ollama's body is only that).
pub(crate) fn assert_refusal(d: D, status: u16, body: &Value, want: u16, code: &str, words: &[&str]) {
    assert_eq!(status, want, "{d:?}: {body}");
    let (kind, status_name) = match want {
        401 => ("authentication_error", "UNAUTHENTICATED"),
        403 => ("permission_error", "PERMISSION_DENIED"),
        429 => ("rate_limit_error", "RESOURCE_EXHAUSTED"),
        other => panic!("unexpected status {other}"),
    };
    let message = match d {
        D::Chat | D::Responses => {
            assert_eq!(body["error"]["type"], kind, "{d:?}: {body}");
            assert_eq!(body["error"]["code"], code, "{d:?}: {body}");
            &body["error"]["message"]
        }
        D::Anthropic => {
            assert_eq!(body["type"], "error", "{body}");
            assert_eq!(body["error"]["type"], kind, "{body}");
            &body["error"]["message"]
        }
        D::Gemini => {
            assert_eq!(body["error"]["status"], status_name, "{body}");
            assert_eq!(body["error"]["code"], want, "{body}");
            let reasons: Vec<&str> = body["error"]["details"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["reason"].as_str())
                .collect();
            assert!(reasons.contains(&code.to_ascii_uppercase().as_str()), "{body}");
            &body["error"]["message"]
        }
        D::Ollama => &body["error"],
    };
    let message = message.as_str().unwrap_or_else(|| panic!("{d:?}: no message in {body}"));
    for w in words {
        assert!(message.contains(w), "{d:?}: `{w}` not in {message}");
    }
}

pub(crate) fn retry_after(d: D, headers: &reqwest::header::HeaderMap) -> u64 {
    let v = headers.get("retry-after").unwrap_or_else(|| panic!("{d:?}: no Retry-After"));
    v.to_str().ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{d:?}: Retry-After {v:?}"))
}

#[tokio::test]
async fn unknown_revoked_and_expired_keys_get_401_in_each_dialect() {
    let env = gateway().await;
    let (revoked_id, revoked) = create(&env, json!({"name":"gone"})).await;
    let (_, expired) = create(&env, json!({"name":"old","expires":"2020-01-31"})).await;
    let (live_id, live) = create(&env, json!({"name":"live"})).await;
    // A name another key that is not revoked holds is refused, naming that key; nothing is created.
    let (status, v) = admin(&env, reqwest::Method::POST, "/admin/keys", Some(json!({"name":"live"})), ADMIN).await;
    assert_eq!((status, &v["error"]["code"]), (400, &json!("name_taken")), "{v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains(&live_id)), "{v}");
    let (status, _) =
        admin(&env, reqwest::Method::POST, &format!("/admin/keys/{revoked_id}/revoke"), None, ADMIN).await;
    assert_eq!(status, 200);
    // A revoked key's name is free again.
    let (status, v) = admin(&env, reqwest::Method::POST, "/admin/keys", Some(json!({"name":"gone"})), ADMIN).await;
    assert_eq!(status, 201, "{v}");
    let (_, list) = admin(&env, reqwest::Method::GET, "/admin/keys", None, ADMIN).await;
    assert_eq!(list.as_array().map(Vec::len), Some(4), "{list}");
    for d in ALL {
        let (status, _, body) = send(&env, d, &revoked).await;
        assert_refusal(d, status, &body, 401, "key_revoked", &["revoked"]);
        let (status, _, body) = send(&env, d, &expired).await;
        assert_refusal(d, status, &body, 401, "key_expired", &["expired"]);
        if d != D::Ollama {
            // The bridge asks for no key (like Ollama): an unknown one is ignored there.
            let (status, _, body) = send(&env, d, "cgw_not-a-key").await;
            assert_refusal(d, status, &body, 401, "invalid_api_key", &["Invalid API key"]);
        }
        let (status, _, body) = send(&env, d, &live).await;
        assert_eq!(status, 200, "{d:?}: {body}");
    }
}

#[tokio::test]
async fn a_revoke_applies_to_the_next_request() {
    let env = gateway().await;
    let (id, secret) = create(&env, json!({"name":"soon-gone"})).await;
    let (status, _, body) = send(&env, D::Chat, &secret).await;
    assert_eq!(status, 200, "{body}");
    // Google's clients may send the key in `?key=`, which the Gemini routes accept.
    let gemini = |key: &str| {
        env.http
            .post(env.url(&format!("/v1beta/models/gemini-2.5-flash:generateContent?key={key}")))
            .json(&json!({"contents":[{"role":"user","parts":[{"text":"hello"}]}]}))
            .send()
    };
    let resp = gemini(&secret).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);
    let (status, v) = admin(&env, reqwest::Method::POST, &format!("/admin/keys/{id}/revoke"), None, ADMIN).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("revoked")), "{v}");
    let (status, _, body) = send(&env, D::Chat, &secret).await;
    assert_refusal(D::Chat, status, &body, 401, "key_revoked", &["revoked"]);
    let resp = gemini(&secret).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 401);
    // Every other route too, not only model calls.
    let resp = env.http.get(env.url("/v1/models")).bearer_auth(&secret).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 401);
}

/// A revoke written straight to the store (what the command line does when it finds no gateway to ask) reaches
/// a running gateway at its next upkeep round, not only at its next start.
#[tokio::test]
async fn a_revoke_written_to_the_store_applies_within_an_upkeep_period() {
    let env = start(Setup {
        client_key: Some(SHARED.into()),
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.into())],
        config_toml: Some("upkeep_interval_secs = 0.2\n".into()),
        ..Setup::default()
    })
    .await;
    let (id, secret) = create(&env, json!({"name":"behind-its-back"})).await;
    assert_eq!(send(&env, D::Chat, &secret).await.0, 200);
    let store = codex_gateway::store::Store::open(&env.dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    codex_gateway::keys::manage::revoke(&store, &id, codex_gateway::auth::now_unix())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = send(&env, D::Chat, &secret).await;
        if status == 401 {
            assert_refusal(D::Chat, status, &body, 401, "key_revoked", &["revoked"]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still served 10 s after the revoke: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_model_outside_the_allow_list_gets_403_in_each_dialect() {
    let env = gateway().await;
    let (_, narrow) = create(&env, json!({"name":"narrow","models":["gpt-5.2"]})).await;
    let (_, wide) = create(&env, json!({"name":"wide","models":["gpt-5.4"]})).await;
    for d in ALL {
        let (status, _, body) = send(&env, d, &narrow).await;
        assert_refusal(d, status, &body, 403, "model_not_allowed", &["narrow", "gpt-5.2"]);
        // The resolved model counts: every dialect's default name resolves to gpt-5.4.
        let (status, _, body) = send(&env, d, &wide).await;
        assert_eq!(status, 200, "{d:?}: {body}");
    }
    // Nothing reached the upstream for the refused requests.
    assert_eq!(env.upstream_bodies().len(), ALL.len());
}

#[tokio::test]
async fn over_the_request_rate_gets_429_with_retry_after_in_each_dialect() {
    let env = gateway().await;
    for d in ALL {
        let (_, secret) = create(&env, json!({"name":format!("slow-lane-{d:?}"),"rpm":2})).await;
        for _ in 0..2 {
            let (status, _, body) = send(&env, d, &secret).await;
            assert_eq!(status, 200, "{d:?}: {body}");
        }
        let (status, headers, body) = send(&env, d, &secret).await;
        assert_refusal(d, status, &body, 429, "key_rate_limit_exceeded", &["2 requests per minute"]);
        let wait = retry_after(d, &headers);
        assert!((55..=60).contains(&wait), "{d:?}: Retry-After {wait}");
    }
}

#[tokio::test]
async fn over_the_token_budget_gets_429_naming_the_budget_and_its_reset_in_each_dialect() {
    let env = gateway().await;
    for d in ALL {
        // One request uses more than one token: the next is refused (the first overshoots by its own size).
        let (_, daily) = create(&env, json!({"name":format!("daily-{d:?}"),"daily_tokens":1})).await;
        let (status, _, body) = send(&env, d, &daily).await;
        assert_eq!(status, 200, "{d:?}: {body}");
        let (status, headers, body) = send(&env, d, &daily).await;
        assert_refusal(
            d,
            status,
            &body,
            429,
            "daily_token_budget_exceeded",
            &["daily token budget", "resets at", "T00:00:00Z"],
        );
        assert!((1..=86_400).contains(&retry_after(d, &headers)));
        let (_, monthly) = create(&env, json!({"name":format!("monthly-{d:?}"),"monthly_tokens":1})).await;
        let (status, _, body) = send(&env, d, &monthly).await;
        assert_eq!(status, 200, "{d:?}: {body}");
        let (status, headers, body) = send(&env, d, &monthly).await;
        assert_refusal(
            d,
            status,
            &body,
            429,
            "monthly_token_budget_exceeded",
            &["monthly token budget", "-01T00:00:00Z"],
        );
        assert!((1..=31 * 86_400).contains(&retry_after(d, &headers)));
    }
    // The key's use is visible to the admin.
    let (_, keys) = admin(&env, reqwest::Method::GET, "/admin/keys", None, ADMIN).await;
    let used = keys[0]["usage"]["tokens_today"].as_u64().unwrap_or_default();
    assert!(used > 1, "{keys}");
}

#[tokio::test]
async fn over_the_concurrency_limit_gets_429_until_the_stream_ends_in_each_dialect() {
    let env = gateway().await;
    for d in ALL {
        let (_, secret) = create(&env, json!({"name":format!("one-at-a-time-{d:?}"),"concurrency":1})).await;
        env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"a b c d e f","deltas":6,"delay_ms":200})));
        let first = request(&env, d, &secret, true).send().await.unwrap_or_else(|e| panic!("{d:?}: {e}"));
        assert_eq!(first.status().as_u16(), 200, "{d:?}");
        let (status, headers, body) = send(&env, d, &secret).await;
        assert_refusal(d, status, &body, 429, "key_concurrency_limit_exceeded", &["1 requests in flight"]);
        assert_eq!(retry_after(d, &headers), 1);
        // The slot is held until the stream ends: read it to its end, then the next request is served.
        let text = first.text().await.unwrap_or_default();
        assert!(!text.is_empty(), "{d:?}");
        let (status, _, body) = send(&env, d, &secret).await;
        assert_eq!(status, 200, "{d:?}: {body}");
    }
}

#[tokio::test]
async fn a_client_that_leaves_gives_its_concurrency_slot_back() {
    let env = gateway().await;
    let (_, secret) = create(&env, json!({"name":"leaver","concurrency":1})).await;
    env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"a b c d e f g h","deltas":8,"delay_ms":200})));
    let first = request(&env, D::Chat, &secret, true).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.status().as_u16(), 200);
    drop(first);
    let mut status = 0;
    for _ in 0..40 {
        status = send(&env, D::Chat, &secret).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_secret_is_shown_once_and_stored_as_a_hash() {
    let env = gateway().await;
    let spec = json!({"name":"ci","models":["gpt-5.4"],"rpm":60,"concurrency":4,"daily_tokens":1000,
                      "monthly_tokens":20000,"expires":"2027-01-31"});
    let (status, created) = admin(&env, reqwest::Method::POST, "/admin/keys", Some(spec), ADMIN).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap_or_default().to_string();
    let id = created["id"].as_str().unwrap_or_default().to_string();
    assert!(secret.starts_with("cgw_") && secret.len() > 40, "{created}");
    assert!(secret.starts_with(created["prefix"].as_str().unwrap_or("?")), "{created}");
    assert_eq!(created["expires_at"], "2027-02-01T00:00:00Z");
    let (_, list) = admin(&env, reqwest::Method::GET, "/admin/keys", None, ADMIN).await;
    let (_, one) = admin(&env, reqwest::Method::GET, &format!("/admin/keys/{id}"), None, ADMIN).await;
    for shown in [&list, &one] {
        assert!(!shown.to_string().contains(&secret), "{shown}");
        assert!(!shown.to_string().contains(&secret[12..]), "{shown}");
        assert!(shown.to_string().contains(created["prefix"].as_str().unwrap_or("?")), "{shown}");
    }
    assert_eq!(one["rpm"], 60);
    let db = std::fs::read(env.dir.join("data/gateway.db")).unwrap_or_default();
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is in the database file");
    // An update changes limits without a new secret; null removes one.
    let (status, v) = admin(
        &env,
        reqwest::Method::PATCH,
        &format!("/admin/keys/{id}"),
        Some(json!({"rpm":null,"name":"ci-2"})),
        ADMIN,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["rpm"].clone(), v["name"].clone(), v.get("secret")), (Value::Null, json!("ci-2"), None));
    let (status, _, body) = send(&env, D::Chat, &secret).await;
    assert_eq!(status, 200, "{body}");
    // Bad input is the caller's error.
    let (status, v) = admin(&env, reqwest::Method::POST, "/admin/keys", Some(json!({"name":"x","rpm":0})), ADMIN).await;
    assert_eq!(status, 400, "{v}");
    let (status, _) = admin(&env, reqwest::Method::POST, "/admin/keys/key_nope/revoke", None, ADMIN).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn client_keys_never_reach_admin_routes_when_an_admin_key_is_set() {
    let env = gateway().await;
    let (_, created) = create(&env, json!({"name":"client"})).await;
    for path in ["/admin/status", "/admin/keys", "/admin/accounts", "/metrics"] {
        for key in [created.as_str(), SHARED] {
            let (status, body) = admin(&env, reqwest::Method::GET, path, None, key).await;
            assert_eq!(status, 403, "{path}: {body}");
            assert_eq!(body["error"]["code"], "admin_key_required", "{path}: {body}");
            assert_eq!(body["error"]["type"], "permission_error");
        }
        let resp = env.http.get(env.url(path)).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status().as_u16(), 401, "{path}");
        let (status, _) = admin(&env, reqwest::Method::GET, path, None, "wrong").await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, _) =
        admin(&env, reqwest::Method::POST, "/admin/keys", Some(json!({"name":"self-made"})), &created).await;
    assert_eq!(status, 403);
    let (status, _) = admin(&env, reqwest::Method::GET, "/admin/status", None, ADMIN).await;
    assert_eq!(status, 200);
    // The shared key and the admin key stay unrestricted client keys; keyless model calls are refused.
    for key in [SHARED, ADMIN] {
        let (status, _, body) = send(&env, D::Chat, key).await;
        assert_eq!(status, 200, "{body}");
    }
    let resp = env
        .http
        .post(env.url("/v1/chat/completions"))
        .json(&json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn the_shared_key_is_the_admin_key_when_none_is_set() {
    let env = start(Setup { client_key: Some(SHARED.into()), ..Setup::default() }).await;
    let (status, v) = admin(&env, reqwest::Method::POST, "/admin/keys", Some(json!({"name":"k"})), SHARED).await;
    assert_eq!(status, 201, "{v}");
    let secret = v["secret"].as_str().unwrap_or_default();
    let (status, _) = admin(&env, reqwest::Method::GET, "/admin/keys", None, secret).await;
    assert_eq!(status, 403);
    let (status, _, body) = send(&env, D::Chat, secret).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn keys_are_not_created_without_an_admin_credential() {
    // Keyless loopback: a created key would be worthless, since any client could call /admin itself.
    let env = start(Setup::default()).await;
    let resp =
        env.http.post(env.url("/admin/keys")).json(&json!({"name":"k"})).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.unwrap_or_default();
    assert_eq!(body["error"]["code"], "admin_key_required", "{body}");
    // Model calls stay keyless as before.
    let (status, _, body) = send(&env, D::Chat, "anything").await;
    assert_eq!(status, 200, "{body}");
}

/// Collects the records of finished requests.
#[derive(Default)]
struct Records(std::sync::Mutex<Vec<codex_gateway::record::RequestRecord>>);

impl codex_gateway::record::RecordSink for Records {
    fn record(&self, r: &codex_gateway::record::RequestRecord) {
        if let Ok(mut v) = self.0.lock() {
            v.push(r.clone());
        }
    }
}

#[tokio::test]
async fn each_record_names_the_key_and_refusals_are_recorded_too() {
    // The key id (never the secret) is what records carry: the access log, the ledger and metrics read it.
    let records = std::sync::Arc::new(Records::default());
    let env = start(Setup {
        client_key: Some(SHARED.into()),
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.into())],
        record_sinks: vec![records.clone()],
        ..Setup::default()
    })
    .await;
    let (id, secret) = create(&env, json!({"name":"attributed","rpm":1})).await;
    assert_eq!(send(&env, D::Responses, &secret).await.0, 200);
    assert_eq!(send(&env, D::Anthropic, &secret).await.0, 429);
    assert_eq!(send(&env, D::Chat, SHARED).await.0, 200);
    let all = records.0.lock().map(|v| v.clone()).unwrap_or_default();
    // Calls that are not model calls are recorded too (the admin ones carry no created key).
    assert!(all.iter().any(|r| r.api == Api::Other && r.client_key.is_none()));
    let seen: Vec<_> = all.into_iter().filter(|r| r.api != Api::Other).collect();
    let keys: Vec<(Option<&str>, u16)> = seen.iter().map(|r| (r.client_key.as_deref(), r.status)).collect();
    assert_eq!(keys, [(Some(id.as_str()), 200), (Some(id.as_str()), 429), (None, 200)]);
    assert_eq!(seen[1].error.as_ref().and_then(|e| e.code.as_deref()), Some("key_rate_limit_exceeded"));
    assert!(seen[0].usage.input_tokens > 0);
    let (_, v) = admin(&env, reqwest::Method::GET, &format!("/admin/keys/{id}"), None, ADMIN).await;
    let charged = seen[0].usage.input_tokens + seen[0].usage.output_tokens;
    assert_eq!(v["usage"]["tokens_today"].as_u64(), Some(charged), "{v}");
    assert_eq!(v["usage"]["in_flight"], 0);
    // A created key on a route that is not a model call is named in that call's record.
    let resp = env.http.get(env.url("/v1/models")).bearer_auth(&secret).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);
    let all = records.0.lock().map(|v| v.clone()).unwrap_or_default();
    let last = all.iter().rfind(|r| r.api == Api::Other).map(|r| r.client_key.clone());
    assert_eq!(last, Some(Some(id.as_str().into())));
}

/// A key's budget holds across a restart: its use today is read back from the usage ledger at start.
#[tokio::test]
async fn a_spent_budget_stays_spent_after_a_restart() {
    let data = std::env::temp_dir().join(format!("cg-budget-{}", uuid::Uuid::new_v4().simple()));
    let setup = || Setup {
        client_key: Some(SHARED.into()),
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.into()), ("CODEX_GATEWAY_DATA_DIR", data.display().to_string())],
        ..Setup::default()
    };
    let mut first = start(setup()).await;
    let (_, secret) = create(&first, json!({"name":"daily","daily_tokens":1})).await;
    let (status, _, body) = send(&first, D::Chat, &secret).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = send(&first, D::Chat, &secret).await;
    assert_eq!(status, 429);
    // Stop, and wait for the run to end (the ledger drains its last batch before it returns).
    first.stop_gateway();
    for _ in 0..200 {
        if first.gateway.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(first.gateway.is_finished(), "the first gateway stopped");
    let second = start(setup()).await;
    let (status, _, body) = send(&second, D::Chat, &secret).await;
    assert_eq!(status, 429, "still spent after the restart: {body}");
    assert_eq!(body["error"]["code"], "daily_token_budget_exceeded", "{body}");
    let _ = std::fs::remove_dir_all(&data);
}
