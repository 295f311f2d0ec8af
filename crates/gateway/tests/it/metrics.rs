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
