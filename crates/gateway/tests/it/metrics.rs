//! `GET /metrics`: request counters and histograms follow the request records; per-account gauges come from the
//! pool at each scrape.

use std::sync::Arc;

use serde_json::json;

use crate::harness::{Setup, scenario, start};
use crate::records::Collect;

/// The value of the sample `name{labels}` (labels as written in the exposition, in order), if present.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels).and_then(|rest| rest.trim().parse().ok()))
}

#[tokio::test]
async fn counters_follow_the_records_and_gauges_follow_the_pool() {
    let sink = Arc::new(Collect::default());
    let setup = Setup {
        accounts: 2,
        linked: false,
        store_accounts: true,
        record_sinks: vec![sink.clone()],
        ..Setup::default()
    };
    let env = start(setup).await;
    let ids: Vec<String> = env.accounts.iter().map(|a| a.account_id.clone()).collect();
    let chat = |text: &str| json!({"model":"gpt-5.4","messages":[{"role":"user","content":text}]});
    for i in 0..3 {
        let (status, _, text) = env
            .post_with("/v1/chat/completions", &chat(&format!("m{i}")), &[("x-request-id", &format!("m-{i}"))])
            .await;
        assert_eq!(status, 200, "{text}");
    }
    // One refused request (both accounts fail: a failover, then a 502).
    for id in &ids {
        env.fake.enqueue(Some(id), scenario(json!({"kind":"server_error","status":500})));
    }
    let (status, _, _) = env.post_with("/v1/chat/completions", &chat("fails"), &[("x-request-id", "m-err")]).await;
    assert_eq!(status, 502);
    let gem = json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}]});
    let (status, _, _) =
        env.post_with("/v1beta/models/gpt-5.4:generateContent", &gem, &[("x-request-id", "m-gem")]).await;
    assert_eq!(status, 200);
    let mut records = Vec::new();
    for id in ["m-0", "m-1", "m-2", "m-err", "m-gem"] {
        records.push(sink.one(id).await);
    }

    let resp = env.http.get(env.url("/metrics")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = resp.text().await.unwrap_or_default();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    let ok =
        records.iter().filter(|r| r.api == codex_gateway::record::Api::named("chat") && r.status == 200).count() as f64;
    assert_eq!(
        sample(&text, r#"codex_gateway_requests_total{dialect="chat",model="gpt-5.4",status="200"}"#),
        Some(ok),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"codex_gateway_requests_total{dialect="chat",model="gpt-5.4",status="502"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"codex_gateway_requests_total{dialect="gemini",model="gpt-5.4",status="200"}"#),
        Some(1.0)
    );
    let output: u64 = records.iter().map(|r| r.usage.output_tokens).sum();
    assert_eq!(sample(&text, r#"codex_gateway_tokens_total{kind="output"}"#), Some(output as f64));
    let input: u64 = records.iter().map(|r| r.usage.input_tokens).sum();
    assert_eq!(sample(&text, r#"codex_gateway_tokens_total{kind="input"}"#), Some(input as f64));
    assert_eq!(sample(&text, "codex_gateway_failovers_total"), Some(1.0));
    assert_eq!(sample(&text, r#"codex_gateway_upstream_attempts_total{outcome="server_error"}"#), Some(2.0));
    assert_eq!(sample(&text, r#"codex_gateway_upstream_attempts_total{outcome="ok"}"#), Some(4.0));
    assert_eq!(sample(&text, r#"codex_gateway_request_duration_seconds_count{dialect="chat"}"#), Some(4.0));
    // The buckets' bounds are the round numbers docs/operations.md lists, not products of floats.
    let bounds: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("codex_gateway_time_to_first_byte_seconds_bucket{") && l.contains(r#"dialect="chat""#)
        })
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
        .collect();
    let documented = [
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "60.0",
        "240.0", "+Inf",
    ];
    assert_eq!(bounds, documented, "{text}");
    // Process-wide (other tests stream beside this one): present, not a fixed value.
    assert!(text.lines().any(|l| l.starts_with("codex_gateway_active_streams ")), "{text}");
    for reason in ["switch", "closing"] {
        let series = format!(r#"codex_gateway_upstream_websocket_fallbacks_total{{reason="{reason}"}}"#);
        assert!(sample(&text, &series).is_some(), "{series}: {text}");
    }
    // Every account is named by its id (no labels set, emails not configured) and can serve.
    let stored: Vec<String> = records.iter().filter_map(|r| r.account.clone()).collect();
    for account in &stored {
        assert_eq!(sample(&text, &format!(r#"codex_gateway_account_up{{account="{account}"}}"#)), Some(1.0), "{text}");
        assert_eq!(sample(&text, &format!(r#"codex_gateway_account_in_flight{{account="{account}"}}"#)), Some(0.0));
    }
    assert!(!text.contains('@'), "no email in the labels: {text}");
    assert_eq!(sample(&text, "codex_gateway_usage_records_dropped_total"), Some(0.0), "{text}");
    for outcome in ["ok", "login_gone", "failed"] {
        let line = format!(r#"codex_gateway_token_refreshes_total{{outcome="{outcome}"}}"#);
        assert!(sample(&text, &line).is_some(), "{line}: {text}");
    }
    // The fake reports quota headers on every answer: the 5-hour window's ratio is there, as a share.
    let ratio = text
        .lines()
        .find(|l| l.starts_with("codex_gateway_account_quota_used_ratio{") && l.contains(r#"window="5h""#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("a 5h ratio: {text}"));
    assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    // A whole-account cooldown (the 502's accounts rested?) shows as a timestamp or 0.
    assert!(text.contains("codex_gateway_account_cooldown_until_timestamp_seconds{"), "{text}");
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let env = start(Setup { config_toml: Some("[metrics]\nenabled = false\n".into()), ..Setup::default() }).await;
    let resp = env.http.get(env.url("/metrics")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 404);
}

const SCRAPE: &str = "scrape-key-for-prometheus-51c9";

/// GET /metrics with `headers`: the status and the body.
async fn scrape_with(env: &crate::harness::TestEnv, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = crate::users::client().get(env.url("/metrics"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{e}"));
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

/// Issue 88: `/metrics` answered the admin key only. An admin user's session (the admin API's bearer token or the
/// dashboard's cookie) and the scraper's own key read it now; a member's session is refused with 403 in the
/// gateway's error shape, and the scraper's key opens nothing else.
#[tokio::test]
async fn an_admins_session_and_the_scrape_key_read_metrics_and_a_members_session_is_refused() {
    use crate::users::{ADMIN, add_user, dashboard_sign_in, sign_in};
    let env = start(Setup {
        accounts: 0,
        linked: false,
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.to_string())],
        config_toml: Some(format!("[metrics]\nscrape_key = \"{SCRAPE}\"\n")),
        ..Setup::default()
    })
    .await;
    add_user(&env, "ada", "admin", json!({})).await;
    add_user(&env, "mo", "member", json!({})).await;
    let metric = "codex_gateway_";
    let bearer = |t: &str| format!("Bearer {t}");

    let (s, body) = scrape_with(&env, &[("authorization", &bearer(ADMIN))]).await;
    assert!(s == 200 && body.contains(metric), "the admin key as before: {s} {body}");
    let ada = sign_in(&env, "ada").await;
    let (s, body) = scrape_with(&env, &[("authorization", &bearer(&ada))]).await;
    assert!(s == 200 && body.contains(metric), "an admin's session token: {s} {body}");
    let (ada_cookie, _) = dashboard_sign_in(&env, "ada", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    let (s, body) = scrape_with(&env, &[("cookie", &ada_cookie)]).await;
    assert!(s == 200 && body.contains(metric), "an admin's dashboard session: {s} {body}");
    let (s, body) = scrape_with(&env, &[("authorization", &bearer(SCRAPE))]).await;
    assert!(s == 200 && body.contains(metric), "the scrape key: {s} {body}");

    // A member's session, either way: 403 role_forbidden in the gateway's JSON error shape.
    let mo = sign_in(&env, "mo").await;
    let (mo_cookie, _) = dashboard_sign_in(&env, "mo", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    for h in [("authorization", bearer(&mo)), ("cookie", mo_cookie.clone())] {
        let (s, body) = scrape_with(&env, &[(h.0, &h.1)]).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(s, 403, "{body}");
        assert_eq!(v["error"]["code"], "role_forbidden", "{body}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| m.contains("member")), "{body}");
        assert!(!body.contains(metric), "{body}");
    }
    // A session that ended, nothing at all, and the scrape key where it has no right.
    let (s, body) = scrape_with(&env, &[("authorization", &bearer("cgs_not-a-session"))]).await;
    assert!(s == 401 && body.contains("session_ended"), "{s} {body}");
    assert_eq!(scrape_with(&env, &[]).await.0, 401);
    let (s, _) = crate::users::call(&env, SCRAPE, reqwest::Method::GET, "/admin/status", None).await;
    assert_eq!(s, 401, "the scrape key opens /metrics alone");
    let (s, _) = crate::users::call(&env, SCRAPE, reqwest::Method::POST, "/v1/responses", Some(json!({}))).await;
    assert_eq!(s, 401, "nor the models");
}
