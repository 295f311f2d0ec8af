//! Rate limits seen by the client (issue 25): the serving account's `x-codex-*` headers on `/v1/responses`
//! answers, and the pooled usage endpoint in the backend's shape that the Codex CLI reads.

use serde_json::json;

use crate::harness::{Setup, json, start};

fn now() -> i64 {
    codex_gateway::auth::now_unix()
}

/// Header value as text ("" when absent).
fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

#[tokio::test]
async fn responses_answers_carry_the_serving_accounts_limit_headers() {
    let env = start(Setup::default()).await;
    let reset = now() + 1234;
    env.fake.set_quota(&env.accounts[0].account_id, 37.5, 12.0, Some(reset));
    for stream in [true, false] {
        let (status, h, text) =
            env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"hi","stream":stream})).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(header(&h, "x-codex-primary-used-percent"), "37.5", "stream={stream}: {h:?}");
        assert_eq!(header(&h, "x-codex-primary-window-minutes"), "300");
        assert_eq!(header(&h, "x-codex-primary-reset-at"), reset.to_string());
        assert_eq!(header(&h, "x-codex-secondary-used-percent"), "12");
        assert_eq!(header(&h, "x-codex-secondary-window-minutes"), "10080");
        assert_eq!(header(&h, "x-codex-credits-has-credits"), "false");
        assert_eq!(header(&h, "x-codex-credits-balance"), "0");
    }
}

#[tokio::test]
async fn usage_endpoint_reports_the_account_a_request_would_use_in_the_backend_shape() {
    let env = start(Setup::default()).await;
    let reset = now() + 900;
    env.fake.set_quota(&env.accounts[0].account_id, 37.5, 12.0, Some(reset));
    // The pool learns the numbers from an answer's headers.
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"hi"})).await;
    assert_eq!(status, 200, "{text}");
    for path in ["/backend-api/wham/usage", "/api/codex/usage", "/wham/usage"] {
        let v = env.get_json(path).await;
        assert_eq!(v["plan_type"], "plus", "{path}: {v}");
        assert_eq!(v["rate_limit"]["allowed"], true, "{path}: {v}");
        assert_eq!(v["rate_limit"]["limit_reached"], false);
        let p = &v["rate_limit"]["primary_window"];
        assert_eq!(p["used_percent"], 38, "{v}");
        assert_eq!(p["reset_at"], reset);
        assert_eq!(p["limit_window_seconds"], 18_000);
        assert!(p["reset_after_seconds"].as_i64().is_some_and(|s| (890..=900).contains(&s)), "{v}");
        assert_eq!(v["rate_limit"]["secondary_window"]["used_percent"], 12);
    }
}

#[tokio::test]
async fn usage_endpoint_names_the_soonest_reset_when_every_account_is_out() {
    let env = start(Setup { accounts: 2, store_accounts: true, linked: false, ..Setup::default() }).await;
    let (late, soon) = (now() + 5_000, now() + 3_000);
    env.fake.set_quota(&env.accounts[0].account_id, 100.0, 10.0, Some(late));
    env.fake.set_quota(&env.accounts[1].account_id, 100.0, 10.0, Some(soon));
    let (status, _, text) = env.post("/v1/responses", &json!({"model":"gpt-5.4","input":"hi"})).await;
    assert_eq!(status, 429, "both accounts are out: {text}");
    let v = env.get_json("/backend-api/wham/usage").await;
    assert_eq!(v["rate_limit"]["allowed"], false, "{v}");
    assert_eq!(v["rate_limit"]["limit_reached"], true, "{v}");
    assert_eq!(v["rate_limit"]["primary_window"]["used_percent"], 100, "{v}");
    assert_eq!(v["rate_limit"]["primary_window"]["reset_at"], soon, "{v}");
    assert_eq!(v["rate_limit_reached_type"], "rate_limit_reached");
}

#[tokio::test]
async fn usage_endpoint_without_accounts_is_an_openai_error() {
    let env = start(Setup { accounts: 0, linked: false, ..Setup::default() }).await;
    let resp = env.http.get(env.url("/api/codex/usage")).send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    let v = json(&resp.text().await.unwrap_or_default());
    assert_eq!(v["error"]["code"], "not_logged_in", "{status} {v}");
    assert!(status >= 400, "{status}");
}
