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
