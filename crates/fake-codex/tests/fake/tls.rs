//! TLS mode: a self-signed certificate, ALPN h2, failed handshakes counted, and the recorded HTTP version.

use super::*;

fn trusting_client(fake: &FakeCodex) -> reqwest::Client {
    trusting(fake.ca_pem().expect("TLS mode has a certificate").as_bytes())
}

async fn start_tls() -> (FakeCodex, AccountCreds) {
    start_with(FakeConfig { tls: true, ..FakeConfig::default() }).await
}

#[tokio::test]
async fn tls_fake_negotiates_h2_with_a_client_trusting_its_certificate() {
    let (fake, c) = start_tls().await;
    assert!(fake.base_url().starts_with("https://127.0.0.1:"));
    assert!(fake.codex_base_url().starts_with("https://"));
    assert!(fake.ca_pem().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    let client = trusting_client(&fake);
    let r = client
        .get(format!("{}/models?client_version=0.169.0", fake.codex_base_url()))
        .bearer_auth(&c.access_token)
        .header("ChatGPT-Account-ID", &c.account_id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let cat: Value = r.json().await.unwrap();
    assert!(!cat["models"].as_array().unwrap().is_empty());
    let rec = fake.requests_to("/models").pop().unwrap();
    assert_eq!(rec.http_version, "HTTP/2.0");
    assert_eq!(rec.account_id.as_deref(), Some(c.account_id.as_str()));

    // A streamed answer over the same TLS connection.
    let r = client
        .post(format!("{}/responses", fake.codex_base_url()))
        .bearer_auth(&c.access_token)
        .header("ChatGPT-Account-ID", &c.account_id)
        .header("originator", "codex_cli_rs")
        .header("accept", "text/event-stream")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let evs = sse(&r.text().await.unwrap());
    assert_eq!(types(&evs).last(), Some(&"response.completed"));
    assert_eq!(fake.requests_to("/responses").pop().unwrap().http_version, "HTTP/2.0");

    let stats: Value =
        client.get(format!("{}/_fake/stats", fake.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["tls_handshake_failures"], 0);

    // What the client sent first on that connection: reqwest's HTTP/2 preface (hyper's settings).
    let connection = rec.connection;
    let preface: Value = client
        .get(format!("{}/_fake/connections/{connection}/preface", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(preface["http2"], true, "{preface}");
    assert!(preface["settings"].as_array().is_some_and(|s| s.contains(&json!([2, 0]))), "push off: {preface}");
    assert!(preface["window_update"].as_u64().is_some_and(|w| w > 0), "{preface}");
    let names: Vec<&str> = preface["headers"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(names[..4], [":method", ":scheme", ":authority", ":path"], "{preface}");
}

#[tokio::test]
async fn tls_fake_counts_the_failed_handshake_of_a_client_without_its_root() {
    let (fake, c) = start_tls().await;
    let err = client()
        .get(format!("{}/models", fake.codex_base_url()))
        .bearer_auth(&c.access_token)
        .header("ChatGPT-Account-ID", &c.account_id)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(fake.requests().is_empty());
    let mut failures = 0;
    for _ in 0..100 {
        failures = fake.stats()["tls_handshake_failures"].as_u64().unwrap();
        if failures >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failures >= 1, "{}", fake.stats());
    // The listener keeps serving clients that trust the certificate.
    let r = trusting_client(&fake).get(format!("{}/v1/models", fake.base_url())).bearer_auth(&c.access_token);
    assert_eq!(r.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn clear_text_fake_records_the_http_version() {
    let (fake, c) = start().await;
    assert!(fake.ca_pem().is_none());
    assert!(fake.base_url().starts_with("http://"));
    let get = |client: reqwest::Client| {
        client
            .get(format!("{}/models", fake.codex_base_url()))
            .bearer_auth(&c.access_token)
            .header("ChatGPT-Account-ID", &c.account_id)
            .send()
    };
    assert_eq!(get(client()).await.unwrap().status(), 200);
    assert_eq!(fake.requests().pop().unwrap().http_version, "HTTP/1.1");
    // h2c by prior knowledge, as the benchmark's gateway speaks it.
    let h2c = reqwest::Client::builder().http2_prior_knowledge().no_proxy().build().unwrap();
    assert_eq!(get(h2c).await.unwrap().status(), 200);
    assert_eq!(fake.requests().pop().unwrap().http_version, "HTTP/2.0");
    assert_eq!(fake.stats()["tls_handshake_failures"], 0);
}

#[tokio::test]
async fn binary_serves_tls_and_writes_its_certificate() {
    let dir = std::env::temp_dir().join(format!("fake-codex-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let (mut child, _, url) = spawn_binary(&["--tls".as_ref(), "--tls-ca-out".as_ref(), ca.as_os_str()]).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let client = trusting(&std::fs::read(&ca).unwrap());
    let stats: Value = client.get(format!("{url}/_fake/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["tls_handshake_failures"], 0);
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
