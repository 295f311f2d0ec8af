//! `codex-gateway doctor` with the real binary: a healthy setup passes (exit 0, the upstream reached with an
//! account's token), and each problem it claims to detect fails it: an expired token without a refresh token, a
//! store file readable by others, a port taken by another program, the upstream down, a proxy that refuses
//! connections, a config file with an unknown key. Every run uses `--json`, which must parse.

use base64::Engine;
use fake_codex::FakeConfig;
use serde_json::{Value, json};

use crate::service::{Service, text};

/// A port nothing listens on now (bound, then released).
fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    l.local_addr().map(|a| a.port().to_string()).unwrap_or_else(|e| panic!("{e}"))
}

/// `doctor --json ARGS` -> (exit code, the parsed report).
async fn doctor(svc: &Service, args: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
    let port = free_port();
    let mut all = vec![("CODEX_GATEWAY_PORT", port.as_str())];
    all.extend_from_slice(env);
    let mut cmd = vec!["doctor", "--json"];
    cmd.extend_from_slice(args);
    let o = svc.run_with(&cmd, &all).await;
    let report: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("--json must parse: {e}\n{}", text(&o)));
    (o.status.code().unwrap_or(-1), report)
}

/// The checks at `level` whose name contains `check`.
fn checks<'a>(report: &'a Value, level: &str, check: &str) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["level"] == level && c["check"].as_str().unwrap_or_default().contains(check))
        .collect()
}

fn failed<'a>(report: &'a Value, check: &str) -> &'a Value {
    let found = checks(report, "failed", check);
    assert_eq!(found.len(), 1, "one failed `{check}` check expected in {report:#}");
    assert!(found[0]["fix"].as_str().is_some_and(|f| !f.is_empty()), "a failure says its fix: {}", found[0]);
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_setup_passes_and_reaches_the_upstream_with_a_token() {
    let svc = Service::new(FakeConfig::default()).await;
    let (code, report) = doctor(&svc, &[], &[]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["summary"]["failed"], 0);
    assert_eq!(checks(&report, "ok", "GET /models (direct)").len(), 1, "{report:#}");
    assert_eq!(checks(&report, "ok", "upstream Date").len(), 1, "{report:#}");
    assert_eq!(checks(&report, "ok", "migrations").len(), 1, "{report:#}");
    assert!(svc.fake.requests_to("/models").len() == 1, "one authenticated /models call");
    // --offline: nothing goes out.
    svc.fake.reset_requests();
    let (code, report) = doctor(&svc, &["--offline"], &[]).await;
    assert_eq!(code, 0, "{report:#}");
    assert!(svc.fake.requests().is_empty(), "--offline calls nobody");
    assert_eq!(checks(&report, "skipped", "reachability").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_without_a_refresh_token_fails() {
    let svc = Service::new(FakeConfig::default()).await;
    let now = codex_gateway::auth::now_unix();
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = json!({"exp": now - 3600, "iat": now - 7200, "email": "old@example.test",
        "https://api.openai.com/auth": {"chatgpt_account_id": "acc-expired"}});
    let jwt = format!("{}.{}.sig", e.encode(r#"{"alg":"none"}"#), e.encode(payload.to_string()));
    let tokens = codex_gateway::auth::Tokens {
        id_token: jwt.clone(),
        access_token: jwt,
        refresh_token: String::new(),
        account_id: "acc-expired".into(),
        last_refresh: now - 7200,
    };
    let store = codex_gateway::store::Store::open(&svc.data().join("gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    store
        .upsert_account(&codex_gateway::accounts::stored_from_tokens(tokens, Some("expired".into())))
        .unwrap_or_else(|e| panic!("{e}"));
    drop(store);
    let (code, report) = doctor(&svc, &["--offline"], &[]).await;
    assert_eq!(code, 1, "{report:#}");
    let c = failed(&report, "account expired");
    assert_eq!(c["detail"], "access token expired and no refresh token");
    assert_eq!(c["area"], "credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_file_readable_by_others_fails() {
    use std::os::unix::fs::PermissionsExt;
    let svc = Service::new(FakeConfig::default()).await;
    let db = svc.data().join("gateway.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap_or_else(|e| panic!("{e}"));
    let (code, report) = doctor(&svc, &["--offline"], &[]).await;
    assert_eq!(code, 1, "{report:#}");
    let c = failed(&report, "file mode");
    assert!(c["detail"].as_str().unwrap_or_default().contains("gateway.db is 0644"), "{c}");
    assert_eq!(c["fix"], format!("chmod 600 {}", db.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_taken_by_another_program_fails_and_one_held_by_the_gateway_does_not() {
    let svc = Service::new(FakeConfig::default()).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = taken.local_addr().map(|a| a.port().to_string()).unwrap_or_else(|e| panic!("{e}"));
    let (code, report) = doctor(&svc, &["--offline"], &[("CODEX_GATEWAY_PORT", &port)]).await;
    assert_eq!(code, 1, "{report:#}");
    assert!(failed(&report, "port")["detail"].as_str().unwrap_or_default().contains("in use by another program"));
    drop(taken);

    let o = svc.run(&["start", "--port", &port]).await;
    assert!(o.status.success(), "{}", text(&o));
    let (code, report) = doctor(&svc, &["--offline"], &[("CODEX_GATEWAY_PORT", &port)]).await;
    let _ = svc.run(&["stop"]).await;
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(checks(&report, "ok", "port").len(), 1, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_down_fails() {
    let svc = Service::new(FakeConfig::default()).await;
    svc.fake.shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (code, report) = doctor(&svc, &[], &[]).await;
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(failed(&report, "upstream TCP (direct)")["area"], "upstream");
    assert_eq!(checks(&report, "skipped", "GET /models").len(), 1, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_refuses_connections_fails() {
    let svc = Service::new(FakeConfig::default()).await;
    let proxy = format!("http://127.0.0.1:{}", free_port());
    let store = codex_gateway::store::Store::open(&svc.data().join("gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    let id = store.list_accounts().unwrap_or_default().first().map(|a| a.id.clone()).unwrap_or_default();
    assert!(store.set_proxy(&id, Some(&proxy)).unwrap_or(false));
    drop(store);
    let (code, report) = doctor(&svc, &[], &[]).await;
    assert_eq!(code, 1, "{report:#}");
    let c = failed(&report, &format!("proxy TCP (via {proxy})"));
    assert!(c["detail"].as_str().unwrap_or_default().contains("refused"), "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_with_an_unknown_key_fails() {
    let svc = Service::new(FakeConfig::default()).await;
    let file = svc.dir.join("config.toml");
    std::fs::write(&file, "[server]\nno_such_key = 1\n").unwrap_or_else(|e| panic!("{e}"));
    let path = file.to_string_lossy().into_owned();
    let (code, report) = doctor(&svc, &["--offline"], &[("CODEX_GATEWAY_CONFIG", &path)]).await;
    assert_eq!(code, 1, "{report:#}");
    let c = failed(&report, "file");
    assert!(c["detail"].as_str().unwrap_or_default().contains("unknown field `no_such_key`"), "{c}");
    // The other checks still run, on the defaults.
    assert!(!checks(&report, "ok", "migrations").is_empty(), "{report:#}");
}

/// A default config file the gateway cannot reach (here a path through a regular file; under systemd, a
/// directory its user may not enter) is an error in `doctor` and at start, not an absent file whose settings
/// are silently replaced by the defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_that_cannot_be_read_fails_instead_of_being_skipped() {
    let svc = Service::new(FakeConfig::default()).await;
    let blocked = svc.dir.join("not-a-directory");
    std::fs::write(&blocked, "").unwrap_or_else(|e| panic!("{e}"));
    let xdg = blocked.to_string_lossy().into_owned();
    let (code, report) = doctor(&svc, &["--offline"], &[("XDG_CONFIG_HOME", &xdg)]).await;
    assert_eq!(code, 1, "{report:#}");
    let c = failed(&report, "file");
    assert!(c["detail"].as_str().unwrap_or_default().starts_with(&format!("cannot read {xdg}/codex-gateway")), "{c}");
    let o = svc.run_with(&["serve", "--port", "0"], &[("XDG_CONFIG_HOME", &xdg)]).await;
    assert!(!o.status.success() && text(&o).contains("cannot read config file"), "{}", text(&o));
}
