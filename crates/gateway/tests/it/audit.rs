//! The audit trail (audit/, docs/operations.md "Audit trail"): the admin API's and the dashboard's changes
//! recorded with actor, source, target and outcome, never a secret; `codex-gateway audit export` (JSON lines) and
//! `audit verify` on the SQLite file, whole and after a row was edited or removed behind its back.

use std::path::Path;

use codex_gateway::audit::{self, Actor, Entry};
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, start};

const ADMIN: &str = "audit-admin-key-5b1e9c";

async fn admin(env: &TestEnv, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = env.http.request(method, env.url(path)).bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post(env: &TestEnv, path: &str, body: Value) -> (u16, Value) {
    admin(env, reqwest::Method::POST, path, Some(body)).await
}

async fn trail(env: &TestEnv, query: &str) -> Vec<Value> {
    let (status, v) = admin(env, reqwest::Method::GET, &format!("/admin/audit{query}"), None).await;
    assert_eq!(status, 200, "{v}");
    v["entries"].as_array().cloned().unwrap_or_default()
}

/// The command line on the data directory `data` (no gateway answers at port 1: the store is read directly).
async fn cli(args: &[&str], data: &Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_codex-gateway"))
        .args(args)
        .env("CODEX_GATEWAY_DATA_DIR", data)
        .env("HOME", data)
        .env("CODEX_HOME", data.join("no-codex-home"))
        .env("CODEX_GATEWAY_PORT", "1")
        .env_remove("CODEX_GATEWAY_DATABASE_URL")
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn admin_changes_are_recorded_with_actor_and_target_and_no_secret_reaches_the_trail() {
    let env = start(Setup {
        accounts: 0,
        linked: false,
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.to_string())],
        ..Setup::default()
    })
    .await;
    let by_token = env.fake.add_account(fake_codex::AccountSpec::default());
    let by_file = env.fake.add_account(fake_codex::AccountSpec::default());
    let (s, v) = post(&env, "/admin/accounts", json!({"refresh_token": by_token.refresh_token, "label": "rt"})).await;
    assert_eq!(s, 201, "{v}");
    let id = v[0]["id"].as_str().unwrap_or_default().to_string();
    let auth_json = json!({"tokens": {"id_token": by_file.id_token, "access_token": by_file.access_token,
        "refresh_token": by_file.refresh_token, "account_id": by_file.account_id}});
    assert_eq!(post(&env, "/admin/accounts", json!({"auth_json": auth_json})).await.0, 201);
    assert_eq!(post(&env, &format!("/admin/accounts/{id}/disable"), json!({})).await.0, 200);
    assert_eq!(post(&env, "/admin/accounts/nope/enable", json!({})).await.0, 404);
    let proxy = "socks5://proxyuser:proxy-pass-9d2@127.0.0.1:1080";
    assert_eq!(post(&env, &format!("/admin/accounts/{id}/proxy"), json!({"proxy": proxy})).await.0, 200);
    let (s, key) = post(&env, "/admin/keys", json!({"name": "ci", "rpm": 60})).await;
    assert_eq!(s, 201, "{key}");
    let (key_id, secret) = (key["id"].as_str().unwrap_or_default(), key["secret"].as_str().unwrap_or_default());
    assert!(secret.len() > 16);
    assert_eq!(post(&env, &format!("/admin/keys/{key_id}/revoke"), json!({})).await.0, 200);

    let rows = trail(&env, "").await;
    let actions: Vec<&str> = rows.iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "account.add",
            "account.add",
            "account.disable",
            "account.enable",
            "account.proxy",
            "key.create",
            "key.revoke"
        ],
        "{rows:#?}"
    );
    assert!(rows.iter().all(|r| r["actor"] == "admin-key"), "{rows:#?}");
    // The gateway's own listener hands the client's address to every request.
    assert!(rows.iter().all(|r| r["source"] == "127.0.0.1"), "{rows:#?}");
    assert_eq!((&rows[2]["target"], &rows[2]["outcome"]), (&json!(id), &json!("ok")));
    assert_eq!((&rows[3]["target"], &rows[3]["outcome"]), (&json!("nope"), &json!("refused")));
    assert_eq!(rows[0]["details"]["from"], "refresh token");
    assert_eq!(rows[0]["details"]["accounts"][0]["label"], "rt");
    assert_eq!(rows[4]["details"]["proxy"], "socks5://***@127.0.0.1:1080");
    assert_eq!(
        (&rows[5]["target"], &rows[5]["details"]["name"], &rows[5]["details"]["rpm"]),
        (&json!(key_id), &json!("ci"), &json!(60))
    );
    assert_eq!(rows[6]["details"]["revoked"], true);
    // Filters: an actor, an action prefix, a limit (the newest).
    assert_eq!(trail(&env, "?action=key.").await.len(), 2);
    assert_eq!(trail(&env, "?actor=gateway").await.len(), 0);
    let last = trail(&env, "?limit=1").await;
    assert_eq!(last.first().map(|r| &r["action"]), Some(&json!("key.revoke")));
    assert_eq!(admin(&env, reqwest::Method::GET, "/admin/audit?since=soon", None).await.0, 400);

    // The export, from the store while the gateway runs, is JSON lines, one per entry, and holds no secret: not
    // the admin key, the client key's secret, a proxy password, nor any token (those sent and those stored).
    let data = env.dir.join("data");
    let out = env.dir.join("audit.jsonl");
    let o = cli(&["audit", "export", "--out", out.to_str().unwrap_or_default()], &data).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or(Value::Null)).collect();
    assert_eq!(lines.len(), rows.len());
    assert!(lines.iter().all(|l| l["hash"].as_str().is_some_and(|h| h.len() == 64)), "{text}");
    let store = codex_gateway::store::Store::open(&data.join("gateway.db")).unwrap_or_else(|e| panic!("{e:#}"));
    let mut secrets = vec![ADMIN.to_string(), secret.to_string(), "proxy-pass-9d2".into(), "proxyuser".into()];
    for c in [&by_token, &by_file] {
        secrets.extend([c.refresh_token.clone(), c.access_token.clone(), c.id_token.clone()]);
    }
    for a in store.list_accounts().unwrap_or_default() {
        let t = a.tokens.unwrap_or_else(|| panic!("tokens of {}", a.id));
        secrets.extend([t.refresh_token, t.access_token, t.id_token]);
    }
    let api = serde_json::to_string(&rows).unwrap_or_default();
    for s in &secrets {
        assert!(!text.contains(s.as_str()) && !api.contains(s.as_str()), "a secret in the trail: {s}");
    }
    let o = cli(&["audit", "verify"], &data).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("whole: {} entries", rows.len())));
}

#[tokio::test]
async fn dashboard_logins_failed_and_opened_are_recorded() {
    let env = start(Setup { client_key: Some(ADMIN.into()), ..Setup::default() }).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
    let form = http.get(env.url("/dashboard/login")).send().await.unwrap_or_else(|e| panic!("{e}"));
    let cookie = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("cgw_login="))
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_string();
    let csrf = cookie.trim_start_matches("cgw_login=").to_string();
    for key in ["guess-4e1d0a", ADMIN] {
        let r = http
            .post(env.url("/dashboard/login"))
            .header("cookie", &cookie)
            .json(&json!({"key": key, "csrf": csrf}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status().as_u16(), if key == ADMIN { 200 } else { 401 });
    }
    let rows = trail(&env, "?action=dashboard.login").await;
    let seen: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (r["actor"].as_str().unwrap_or(""), r["outcome"].as_str().unwrap_or(""), r["action"].as_str().unwrap_or(""))
        })
        .collect();
    assert_eq!(seen, [("anonymous", "refused", "dashboard.login"), ("dashboard:admin-key", "ok", "dashboard.login")]);
    let text = serde_json::to_string(&rows).unwrap_or_default();
    assert!(!text.contains("guess-4e1d0a") && !text.contains(ADMIN), "{text}");

    // The Audit page shows them to the session the login opened (its cookie), filtered by action.
    let session = http
        .post(env.url("/dashboard/login"))
        .header("cookie", &cookie)
        .json(&json!({"key": ADMIN, "csrf": csrf}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let session = session
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("cgw_session="))
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_string();
    let page = http
        .get(env.url("/dashboard/audit?action=dashboard.login"))
        .header("cookie", session)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap_or_default();
    assert_eq!(html.matches("<td>dashboard.login</td>").count(), 3, "{html}");
    assert!(html.contains("<td>anonymous</td>") && !html.contains("guess-4e1d0a"), "{html}");
}

/// The client's address is the `source` whichever server passes it (axum's `ConnectInfo`), here axum's own in
/// front of the router (an embedding program's); the actor of an admin API with no admin credential is named so.
#[tokio::test]
async fn the_source_is_the_clients_address() {
    let dir = std::env::temp_dir().join(format!("cgw-it-audit-{}", uuid::Uuid::new_v4().simple()));
    let env: std::collections::HashMap<String, String> = [
        ("HOME", dir.display().to_string()),
        ("CODEX_HOME", dir.join("codex-home").display().to_string()),
        ("CODEX_GATEWAY_DATA_DIR", dir.join("data").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let overrides = codex_gateway::config::Overrides { port: Some(0), ..Default::default() };
    let config = codex_gateway::config::Config::resolve(Default::default(), &overrides, &env)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let state = std::sync::Arc::new(codex_gateway::app::AppState::new(config).unwrap_or_else(|e| panic!("{e:#}")));
    let router = codex_gateway::server::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
    let base = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
    let served = tokio::spawn(async move {
        let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
    let r = http.post(format!("{base}/admin/accounts/none/disable")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 404);
    let v: Value = http
        .get(format!("{base}/admin/audit"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    let row = &v["entries"][0];
    assert_eq!(
        (&row["source"], &row["actor"], &row["target"]),
        (&json!("127.0.0.1"), &json!("admin-api-open"), &json!("none")),
        "{v}"
    );
    served.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn verify_names_an_edited_row_and_a_removed_one() {
    let root = std::env::temp_dir().join(format!("cgw-it-audit-{}", uuid::Uuid::new_v4().simple()));
    let (edited, removed) = (root.join("edited"), root.join("removed"));
    {
        let store = codex_gateway::store::Store::open(&edited.join("gateway.db")).unwrap_or_else(|e| panic!("{e:#}"));
        for i in 1..=4 {
            let mut e = Entry::new(Actor::Cli { user: "ana".into() }, "account.label");
            e.target = Some(format!("acct{i}"));
            audit::record(&store, e);
        }
    }
    let o = cli(&["audit", "verify"], &edited).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::create_dir_all(&removed).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(edited.join("gateway.db"), removed.join("gateway.db")).unwrap_or_else(|e| panic!("{e}"));

    let sql = |dir: &Path, sql: &str| {
        let c = rusqlite::Connection::open(dir.join("gateway.db")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.execute(sql, []).unwrap_or_else(|e| panic!("{e}")), 1);
    };
    sql(&edited, "UPDATE audit_log SET target = 'acct9' WHERE id = 2");
    let o = cli(&["audit", "verify"], &edited).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("row 2: its hash does not match"), "{o:?}");

    sql(&removed, "DELETE FROM audit_log WHERE id = 3");
    let o = cli(&["audit", "verify"], &removed).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("row 4: ids jump from 2 to 4"), "{o:?}");

    // The export is JSON lines, oldest first, the edited row as it now reads.
    let o = cli(&["audit", "export", "--since", "1d"], &edited).await;
    let lines: Vec<Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap_or(Value::Null)).collect();
    let targets: Vec<&str> = lines.iter().filter_map(|l| l["target"].as_str()).collect();
    assert_eq!(targets, ["acct1", "acct9", "acct3", "acct4"]);
    assert!(lines.iter().all(|l| l["actor"] == "cli:ana"));
    let _ = std::fs::remove_dir_all(&root);
}
