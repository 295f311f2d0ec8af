//! The client identity presented upstream (issue 25): configurable version and User-Agent, a caller's newer
//! official-client version presented for its request, and fake-codex refusing clients older than a model's
//! minimum the way the backend does.

use serde_json::json;

use crate::harness::{Setup, json, start};

fn header(r: &fake_codex::RecordedRequest, name: &str) -> String {
    r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).unwrap_or_default()
}

#[tokio::test]
async fn configured_version_and_user_agent_reach_the_upstream_and_the_catalog_query() {
    let ua = "codex_cli_rs/0.171.0 (Test OS 1.0; x86_64) test-terminal";
    let toml = format!("[upstream]\nclient_version = \"0.171.0\"\nuser_agent = \"{ua}\"\n");
    let env = start(Setup { config_toml: Some(toml), ..Setup::default() }).await;
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"hi"})).await;
    assert_eq!(status, 200, "{text}");
    let sent = env.fake.requests_to("/responses");
    assert_eq!(header(&sent[0], "version"), "0.171.0");
    assert_eq!(header(&sent[0], "user-agent"), ua);
    let catalog = env.fake.requests_to("/models");
    assert!(
        catalog.iter().any(|r| r.query.as_deref() == Some("client_version=0.171.0")),
        "{:?}",
        catalog.iter().map(|r| r.query.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_bad_client_version_in_the_config_is_refused_at_start() {
    let raw: codex_gateway::config::RawConfig =
        toml::from_str("[upstream]\nclient_version = \"latest\"\n").unwrap_or_else(|e| panic!("{e}"));
    let env = std::collections::HashMap::from([("HOME".to_string(), "/nonexistent".to_string())]);
    let err = codex_gateway::config::Config::resolve(raw, &Default::default(), &env).err();
    assert!(err.is_some_and(|e| e.to_string().contains("client_version")));
}

#[tokio::test]
async fn a_newer_official_client_is_presented_for_its_request() {
    let env = start(Setup::default()).await;
    // The catalog is fetched (gpt-5.4 listed), then the backend starts to require a newer client for it.
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"hi"})).await;
    assert_eq!(status, 200, "{text}");
    env.fake.set_min_client_version("gpt-5.4", "0.171.0");

    // The gateway's own version is too old: the backend's refusal names the model, in the client's dialect.
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"hi"})).await;
    assert_eq!(status, 400, "{text}");
    let v = json(&text);
    assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("requires a newer version of Codex")), "{v}");

    // A Codex CLI 0.171.0 behind the gateway: its version is presented, so it is served.
    env.fake.reset_requests();
    let (status, _, text) = env
        .post_with(
            "/v1/responses",
            &json!({"model":"gpt-5.4","input":"hi"}),
            &[("user-agent", "codex_exec/0.171.0 (Linux 6.1; x86_64) xterm")],
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let sent = env.fake.requests_to("/responses");
    assert_eq!(header(&sent[0], "version"), "0.171.0");
    assert!(header(&sent[0], "user-agent").starts_with("codex_cli_rs/0.171.0 ("), "{:?}", sent[0].headers);
}

/// From 0.171 the official client asks for a compressed event stream (docs/protocol.md, "Identity"): the gateway
/// asks the same when it presents 0.171 or newer, and reads the zstd stream fake-codex then sends; presenting its
/// own 0.169 it asks for none.
#[tokio::test]
async fn a_compressed_event_stream_is_asked_for_from_0_171_and_read_as_it_streams() {
    let env = start(Setup::default()).await;
    let body = json!({"model":"gpt-5.4","input":"hi","stream":true});
    let (status, _, text) = env.post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{text}");
    let sent = env.fake.requests_to("/responses");
    assert_eq!(header(&sent[0], "accept-encoding"), "", "0.169 asks for no coding: {:?}", sent[0].headers);

    env.fake.reset_requests();
    let newer = [("user-agent", "codex_exec/0.171.0 (Linux 6.1; x86_64) xterm"), ("originator", "codex_exec")];
    let (status, _, streamed) = env.post_with("/v1/responses", &body, &newer).await;
    assert_eq!(status, 200, "{streamed}");
    let sent = env.fake.requests_to("/responses");
    let names: Vec<&str> = sent[0].headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(header(&sent[0], "accept-encoding"), "zstd,gzip", "{names:?}");
    let at = |name: &str| names.iter().position(|n| n.eq_ignore_ascii_case(name));
    assert_eq!(at("accept-encoding"), at("user-agent").map(|i| i + 1), "right after user-agent: {names:?}");
    // The fake compressed the stream; the client gets the same events as without a coding.
    assert!(streamed.contains("event: response.completed") && text.contains("event: response.completed"));
    let deltas = |t: &str| t.matches("event: response.output_text.delta").count();
    assert_eq!(deltas(&streamed), deltas(&text), "{streamed}");
    let (status, _, whole) = env.post_with("/v1/responses", &json!({"model":"gpt-5.4","input":"hi"}), &newer).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(json(&whole)["status"], "completed", "{whole}");
}

#[tokio::test]
async fn fake_catalog_hides_models_that_need_a_newer_client() {
    let env = start(Setup::default()).await;
    env.fake.set_min_client_version("gpt-5.5", "0.170.0");
    let token = &env.accounts[0].access_token;
    let get = |v: &'static str| {
        env.http
            .get(format!("{}/models?client_version={v}", env.fake.codex_base_url()))
            .bearer_auth(token)
            .header("chatgpt-account-id", &env.accounts[0].account_id)
            .send()
    };
    let slugs = |v: serde_json::Value| -> Vec<String> {
        v["models"].as_array().into_iter().flatten().filter_map(|m| m["slug"].as_str().map(str::to_string)).collect()
    };
    let old: serde_json::Value =
        get("0.169.0").await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
    assert!(!slugs(old.clone()).contains(&"gpt-5.5".to_string()), "{old}");
    let new: serde_json::Value =
        get("0.170.0").await.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
    let entry = new["models"].as_array().into_iter().flatten().find(|m| m["slug"] == "gpt-5.5").cloned();
    assert_eq!(entry.map(|e| e["minimal_client_version"].clone()), Some(json!("0.170.0")), "{new}");
}

/// From 0.171 every HTTP call of the official client asks for compressed answers, after its other headers (the
/// real CLI 0.171 against fake-codex; docs/protocol.md "Identity"). A gateway presenting 0.171 asks the same on its
/// calls beside the turns, and reads what fake-codex then sends zstd-encoded: the quota, the workspace check, the
/// catalog, a token refresh and a compaction.
#[tokio::test]
async fn from_0_171_the_calls_beside_the_turns_ask_for_compressed_answers_and_read_them() {
    let toml = "upkeep_interval_secs = 0.2\n[upstream]\nclient_version = \"0.171.0\"\n";
    let env = start(Setup { config_toml: Some(toml.into()), ..Setup::default() }).await;
    // Before the gateway's task first runs (this test's runtime has one thread): its catalog never lists gpt-5.5.
    env.fake.set_min_client_version("gpt-5.5", "0.172.0");
    let account = env.accounts[0].account_id.clone();
    // The fake answers a request that accepts zstd with a zstd body.
    let catalog = env
        .http
        .get(format!("{}/models?client_version=0.171.0", env.fake.codex_base_url()))
        .bearer_auth(&env.accounts[0].access_token)
        .header("chatgpt-account-id", &account)
        .header("accept-encoding", "zstd,gzip")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(catalog.headers().get("content-encoding").map(|v| v.as_bytes()), Some(&b"zstd"[..]));
    let raw = catalog.bytes().await.unwrap_or_default();
    assert!(raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "a zstd frame");
    env.fake.reset_requests();

    // The quota of a quiet account is read from the compressed `/wham/usage` answer (no turn has run, so no
    // response header could have told it).
    env.fake.set_quota(&account, 42.0, 7.0, None);
    let mut polled = false;
    for _ in 0..100 {
        let v = env.get_json("/backend-api/wham/usage").await;
        if v["rate_limit"]["primary_window"]["used_percent"] == 42 {
            polled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(polled, "the quota poll was not read: {}", env.get_json("/backend-api/wham/usage").await);

    // The catalog is read compressed: a model it omits for 0.171 is refused by the gateway itself (unread, the
    // account would be taken to serve every model and the backend's own 400 would come back).
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"hi"})).await;
    assert_eq!(status, 200, "{text}");
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.5","input":"hi"})).await;
    assert_eq!((status, json(&text)["error"]["code"].clone()), (404, json!("model_not_found")), "{text}");

    // A token refresh, and a compaction, read compressed.
    env.fake.expire_access_tokens(&account);
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"after expiry"})).await;
    assert_eq!(status, 200, "{text}");
    let input = json!([{"type":"message","role":"user","content":[{"type":"input_text","text":"remember 7"}]}]);
    let (status, _, text) = env.post("/v1/responses/compact", &json!({"model":"gpt-5.4","input":input})).await;
    assert_eq!(status, 200, "{text}");
    assert!(json(&text)["output"].as_array().is_some_and(|o| o.iter().any(|i| i["type"] == "compaction")), "{text}");

    // Every call asked, `accept-encoding` after the headers it had before.
    // As the official client's were recorded: the transport's own `host` and `content-length` left out.
    let names = |r: &fake_codex::RecordedRequest| {
        r.headers
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !["host", "content-length"].contains(&k.as_str()))
            .collect::<Vec<_>>()
    };
    let tail = |r: &fake_codex::RecordedRequest| names(r).into_iter().rev().take(2).rev().collect::<Vec<_>>();
    for path in ["/wham/usage", "/wham/accounts/check", "/codex/models", "/oauth/token"] {
        let sent = env.fake.requests_to(path);
        assert!(!sent.is_empty(), "no call to {path}");
        for r in &sent {
            assert_eq!(header(r, "accept-encoding"), "zstd,gzip", "{path}: {:?}", names(r));
            assert_eq!(tail(r), ["accept", "accept-encoding"], "{path}: {:?}", names(r));
        }
    }
    let token = env.fake.requests_to("/oauth/token");
    assert_eq!(names(&token[0]), ["content-type", "originator", "user-agent", "accept", "accept-encoding"]);
    let compact = env.fake.requests_to("/responses/compact");
    assert_eq!(header(&compact[0], "accept-encoding"), "zstd,gzip", "{:?}", names(&compact[0]));
}

/// The backend's refusal of a turn that asked for a compressed answer may come compressed too: its message still
/// reaches the client as text.
#[tokio::test]
async fn a_compressed_refusal_reaches_the_client_readable() {
    let env = start(Setup::default()).await;
    // The catalog read first (gpt-5.4 listed), then the backend starts to require a client newer than the caller.
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"hi"})).await;
    assert_eq!(status, 200, "{text}");
    env.fake.set_min_client_version("gpt-5.4", "0.172.0");
    env.fake.reset_requests();
    let newer = [("user-agent", "codex_exec/0.171.0 (Linux 6.1; x86_64) xterm"), ("originator", "codex_exec")];
    for stream in [false, true] {
        let body = json!({"model":"gpt-5.4","input":"hi","stream":stream});
        let (status, _, text) = env.post_with("/v1/responses", &body, &newer).await;
        assert_eq!(status, 400, "{text}");
        let message = json(&text)["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("requires a newer version of Codex"), "stream {stream}: {text}");
    }
    let sent = env.fake.requests_to("/responses");
    assert!(sent.iter().all(|r| header(r, "accept-encoding") == "zstd,gzip"), "every turn asked");
}
