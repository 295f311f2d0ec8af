//! The admin API and the `accounts` CLI: management on a running gateway and offline.

use serde_json::{Value, json};

use crate::harness::{Setup, json, start};

async fn post(env: &crate::harness::TestEnv, path: &str, body: Value) -> (u16, Value) {
    let (status, _, text) = env.post(path, &body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn manage_accounts_on_a_running_gateway() {
    let env = start(Setup { accounts: 2, linked: false, store_accounts: true, ..Setup::default() }).await;
    let accounts = env.get_json("/admin/accounts").await;
    // ids[i] is the gateway's id of the fake's account i.
    let id_of = |email: &str| {
        accounts
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["email"] == email)
            .and_then(|a| a["id"].as_str())
            .map(str::to_string)
    };
    let ids: Vec<String> = env.accounts.iter().filter_map(|c| id_of(&c.email)).collect();
    assert_eq!(ids.len(), 2);
    assert!(accounts[0]["email"].as_str().is_some());
    assert!(!accounts.to_string().contains(&env.accounts[0].refresh_token), "no secrets in listings");

    // Disable one: every request goes to the other.
    let (status, v) = post(&env, &format!("/admin/accounts/{}/disable", ids[0]), json!({})).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("disabled")));
    for i in 0..4 {
        let (s, _, t) = env
            .post(
                "/v1/chat/completions",
                &json!({"model":"gpt-5.4","messages":[{"role":"user","content":format!("q{i}")}]}),
            )
            .await;
        assert_eq!(s, 200, "{t}");
    }
    let other = env.accounts[1].account_id.clone();
    assert!(env.fake.requests_to("/responses").iter().all(|r| r.account_id.as_deref() == Some(other.as_str())));
    let (status, _) = post(&env, &format!("/admin/accounts/{}/enable", ids[0]), json!({})).await;
    assert_eq!(status, 200);

    // Label, refresh, check, cooldowns.
    let (status, _) = post(&env, &format!("/admin/accounts/{}/label", ids[1]), json!({"label":"  work "})).await;
    assert_eq!(status, 200);
    assert_eq!(env.get_json(&format!("/admin/accounts/{}", ids[1])).await["label"], "work");
    // The dashboard's rule: at most 100 characters, refused in the admin API's shape.
    let long = "x".repeat(101);
    let (status, v) = post(&env, &format!("/admin/accounts/{}/label", ids[1]), json!({"label": long})).await;
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("label")), "{v}");
    assert_eq!(env.get_json(&format!("/admin/accounts/{}", ids[1])).await["label"], "work");
    let before = env.fake.token_calls().len();
    let (status, _) = post(&env, &format!("/admin/accounts/{}/refresh", ids[1]), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(env.fake.token_calls().len(), before + 1);
    let (status, v) = post(&env, &format!("/admin/accounts/{}/check", ids[1]), json!({})).await;
    assert_eq!((status, v["ok"].as_bool()), (200, Some(true)), "{v}");
    let (status, _) = post(&env, "/admin/accounts/nope/enable", json!({})).await;
    assert_eq!(status, 404);

    // Export: redacted by default, complete on request.
    let redacted = env.get_json("/admin/accounts/export").await;
    assert!(!redacted.to_string().contains(&env.accounts[0].access_token));
    // Secrets need a client key over HTTP (security::secrets_are_exported_over_http_only_with_a_client_key).
    let full = env.get_json("/admin/accounts/export?include_secrets=true").await;
    assert_eq!(full["error"]["code"], "secrets_need_a_key", "{full}");

    // Remove.
    let resp =
        env.http.delete(env.url(&format!("/admin/accounts/{}", ids[0]))).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(env.get_json("/admin/accounts").await.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn import_refresh_tokens_and_relays_through_the_admin_api() {
    let env = start(Setup { accounts: 0, linked: false, ..Setup::default() }).await;
    let creds = env.fake.add_account(fake_codex::AccountSpec::default());
    let (status, v) =
        post(&env, "/admin/accounts", json!({"refresh_token": creds.refresh_token, "label": "bare"})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v[0]["label"], "bare");
    assert_eq!(v[0]["email"].as_str(), Some(creds.email.as_str()));
    let (s, _, t) =
        env.post("/v1/chat/completions", &json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]})).await;
    assert_eq!(s, 200, "{t}");

    // A relay: any Responses-compatible base URL + key, serving only the models it is given.
    env.fake.add_api_key("sk-relay-1");
    let (status, v) = post(
        &env,
        "/admin/accounts",
        json!({"api_key":"sk-relay-1","base_url": env.fake.openai_api_base(),"models":["relay-model"]}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v[0]["kind"], "relay");
    let (s, _, t) = env
        .post("/v1/chat/completions", &json!({"model":"relay-model","messages":[{"role":"user","content":"hi"}]}))
        .await;
    // The fake's API mode knows its own catalog; what matters is that the relay got the request with its key.
    let relayed = env.fake.requests_to("/v1/responses");
    assert_eq!(relayed.len(), 1, "{s} {t}");
    let auth = relayed[0].headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone());
    assert_eq!(auth.as_deref(), Some("Bearer sk-relay-1"));
    let bad = post(&env, "/admin/accounts", json!({"refresh_token":"rt_not_real"})).await;
    assert_eq!(bad.0, 400, "{}", bad.1);
}

#[tokio::test]
async fn cli_export_and_import_move_accounts_between_stores() {
    let env = start(Setup { accounts: 2, linked: false, store_accounts: true, ..Setup::default() }).await;
    let bin = env!("CARGO_BIN_EXE_codex-gateway");
    let out = env.dir.join("export.json");
    // tokio's Command: the fake runs on this test's runtime, so a blocking wait would starve it.
    let run = |args: Vec<String>, data: std::path::PathBuf| {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args)
            .env("CODEX_GATEWAY_DATA_DIR", data)
            .env("CODEX_HOME", env.dir.join("no-codex-home"))
            .env("CODEX_GATEWAY_PORT", "1") // nothing listens there: the CLI works offline
            .env("CODEX_GATEWAY_AUTH_ISSUER", env.fake.issuer())
            .env("CODEX_GATEWAY_UPSTREAM_BASE_URL", env.fake.codex_base_url())
            .env("CODEX_GATEWAY_CHATGPT_BASE_URL", env.fake.chatgpt_base_url())
            .env("HOME", &env.dir)
            .env_remove("OPENAI_API_KEY");
        async move { cmd.output().await.unwrap_or_else(|e| panic!("{e}")) }
    };
    let run =
        |args: &[&str], data: &std::path::Path| run(args.iter().map(|a| a.to_string()).collect(), data.to_path_buf());
    let data = env.dir.join("data");
    let o = run(&["accounts", "export", "--include-secrets", "-o", out.to_str().unwrap_or_default()], &data).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&out).map(|m| m.permissions().mode() & 0o777).unwrap_or(0), 0o600);
    }
    let other = env.dir.join("other-data");
    let o = run(&["accounts", "import", out.to_str().unwrap_or_default()], &other).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["accounts", "list", "--json"], &other).await;
    let listed = json(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert!(listed[0]["quota"]["primary_used_percent"].as_f64().is_some(), "list polls quota: {listed}");
    let id = listed[0]["id"].as_str().unwrap_or_default().to_string();
    let o = run(&["accounts", "disable", &id], &other).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains("disabled"));
    let o = run(&["accounts", "label", &id, "laptop"], &other).await;
    assert!(o.status.success());
    let o = run(&["accounts", "check"], &other).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains(": ok"), "{}", String::from_utf8_lossy(&o.stdout));
    let o = run(&["accounts", "remove", &id], &other).await;
    assert!(o.status.success());
    let o = run(&["accounts", "list", "--json"], &other).await;
    assert_eq!(json(&String::from_utf8_lossy(&o.stdout)).as_array().map(Vec::len), Some(1));
}

/// `accounts import` next to a running gateway used to write the store and only GET the account list, so the
/// gateway saw the account at its next re-read, up to 30 s later; it now imports through the admin API.
#[tokio::test]
async fn cli_import_against_a_running_gateway_is_seen_at_once() {
    let env = start(Setup { accounts: 1, linked: false, store_accounts: true, ..Setup::default() }).await;
    let creds = env.fake.add_account(fake_codex::AccountSpec::default());
    let auth = env.dir.join("other-auth.json");
    crate::harness::write_auth_json(&auth, &creds);
    let port = env.base.rsplit(':').next().unwrap_or_default().to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_codex-gateway"))
        .args(["accounts", "import", auth.to_str().unwrap_or_default(), "--label", "second"])
        .env("CODEX_GATEWAY_DATA_DIR", env.dir.join("data"))
        .env("CODEX_GATEWAY_PORT", &port)
        .env("CODEX_HOME", env.dir.join("no-codex-home"))
        .env("CODEX_GATEWAY_AUTH_ISSUER", env.fake.issuer())
        .env("HOME", &env.dir)
        .env_remove("CODEX_GATEWAY_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("imported {}", creds.email)));
    // At once: no re-read has happened (the first one is 30 s after start).
    let listed = env.get_json("/admin/accounts").await;
    let second = listed.as_array().into_iter().flatten().find(|a| a["email"] == creds.email.as_str());
    assert_eq!(second.map(|a| a["label"].clone()), Some(json!("second")), "{listed}");
}

#[tokio::test]
async fn per_account_proxy_carries_that_accounts_traffic() {
    let env = start(Setup { accounts: 2, linked: false, store_accounts: true, ..Setup::default() }).await;
    let accounts = env.get_json("/admin/accounts").await;
    let id = accounts[0]["id"].as_str().unwrap_or_default().to_string();
    // A proxy nobody listens on: this account can no longer reach the upstream; the other still can.
    let (status, v) =
        post(&env, &format!("/admin/accounts/{id}/proxy"), json!({"proxy":"http://user:pw@127.0.0.1:9"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["proxy"], "http://***@127.0.0.1:9", "credentials in proxy URLs are redacted");
    let (status, v) = post(&env, &format!("/admin/accounts/{id}/check"), json!({})).await;
    assert_eq!((status, v["ok"].as_bool()), (200, Some(false)), "{v}");
    // The failure says why (with its causes), and never the proxy's credentials.
    let error = v["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("refused"), "{v}");
    assert!(!error.contains("pw") && !error.contains("user:"), "{v}");
    for i in 0..3 {
        let (s, _, t) = env
            .post(
                "/v1/chat/completions",
                &json!({"model":"gpt-5.4","messages":[{"role":"user","content":format!("p{i}")}]}),
            )
            .await;
        assert_eq!(s, 200, "requests fail over to the reachable account: {t}");
    }
    let (status, _) = post(&env, &format!("/admin/accounts/{id}/proxy"), json!({"proxy":"not a url"})).await;
    assert_eq!(status, 400);
    let (status, v) = post(&env, &format!("/admin/accounts/{id}/proxy"), json!({"proxy": null})).await;
    assert_eq!(status, 200);
    let (_, v2) =
        post(&env, &format!("/admin/accounts/{}/check", v["id"].as_str().unwrap_or_default()), json!({})).await;
    assert_eq!(v2["ok"], true, "{v2}");
}

/// A status the store cannot read (here one a newer version might write) used to read as `active`, and the
/// account was served. It is now `unrecognized` in the listing with the stored value as its reason, not usable,
/// never leased; enabling it writes a known status again.
#[tokio::test]
async fn an_unknown_stored_status_is_shown_and_never_served() {
    let env = start(Setup { accounts: 2, linked: false, store_accounts: true, ..Setup::default() }).await;
    let accounts = env.get_json("/admin/accounts").await;
    let id_of = |email: &str| {
        accounts
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["email"] == email)
            .and_then(|a| a["id"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no account {email}: {accounts}"))
    };
    let (parked, other) = (id_of(&env.accounts[0].email), id_of(&env.accounts[1].email));
    let db = rusqlite::Connection::open(env.dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    db.execute("UPDATE accounts SET status = 'paused' WHERE id = ?1", [&parked]).unwrap_or_else(|e| panic!("{e}"));
    // Any management call re-reads the store (the upkeep would, within 30 s).
    let (status, _) = post(&env, &format!("/admin/accounts/{other}/label"), json!({"label": "other"})).await;
    assert_eq!(status, 200);

    let shown = env.get_json(&format!("/admin/accounts/{parked}")).await;
    assert_eq!(shown["status"], "unrecognized", "{shown}");
    assert!(shown["status_reason"].as_str().is_some_and(|r| r.contains("\"paused\"")), "{shown}");
    assert_eq!(env.get_json("/admin/status").await["usable"], 1);
    for i in 0..4 {
        let chat = json!({"model":"gpt-5.4","messages":[{"role":"user","content":format!("u{i}")}]});
        let (s, _, t) = env.post("/v1/chat/completions", &chat).await;
        assert_eq!(s, 200, "{t}");
    }
    let served = env.accounts[1].account_id.clone();
    let requests = env.fake.requests_to("/responses");
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| r.account_id.as_deref() == Some(served.as_str())), "never the parked account");

    let (status, v) = post(&env, &format!("/admin/accounts/{parked}/enable"), json!({})).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("active")), "{v}");
    assert_eq!(env.get_json("/admin/status").await["usable"], 2);
}

/// A kind the store holds that this build does not know (here one a newer version might write) used to read as
/// `chatgpt`, and the account was served with whatever credentials its row had. It is now listed as
/// `unrecognized` with the stored kind in its reason, never leased, and enabling it changes nothing: the row stays
/// as it is.
#[tokio::test]
async fn an_unknown_stored_kind_is_listed_and_never_served() {
    let env = start(Setup { accounts: 2, linked: false, store_accounts: true, ..Setup::default() }).await;
    let accounts = env.get_json("/admin/accounts").await;
    let id_of = |email: &str| {
        accounts
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["email"] == email)
            .and_then(|a| a["id"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no account {email}: {accounts}"))
    };
    let (parked, other) = (id_of(&env.accounts[0].email), id_of(&env.accounts[1].email));
    let db = rusqlite::Connection::open(env.dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    db.execute("UPDATE accounts SET kind = 'passkey' WHERE id = ?1", [&parked]).unwrap_or_else(|e| panic!("{e}"));
    // Any management call re-reads the store.
    let (status, _) = post(&env, &format!("/admin/accounts/{other}/label"), json!({"label": "other"})).await;
    assert_eq!(status, 200);

    let listed = env.get_json("/admin/accounts").await;
    let shown = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["id"] == parked.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("the account is not listed: {listed}"));
    assert_eq!(
        (shown["kind"].as_str(), shown["status"].as_str()),
        (Some("unrecognized"), Some("unrecognized")),
        "{shown}"
    );
    assert!(shown["status_reason"].as_str().is_some_and(|r| r.contains("\"passkey\"")), "{shown}");
    assert_eq!(env.get_json("/admin/status").await["usable"], 1);
    for i in 0..4 {
        let chat = json!({"model":"gpt-5.4","messages":[{"role":"user","content":format!("k{i}")}]});
        let (s, _, t) = env.post("/v1/chat/completions", &chat).await;
        assert_eq!(s, 200, "{t}");
    }
    let served = env.accounts[1].account_id.clone();
    let requests = env.fake.requests_to("/responses");
    assert_eq!(requests.len(), 4);
    assert!(requests.iter().all(|r| r.account_id.as_deref() == Some(served.as_str())), "never the parked account");
    // Nor does it open the catalog to any model id, as an API-key account without a model list would: the
    // catalog itself refuses an unknown model (it was let through to the leasing, which found no account for it).
    let (s, _, t) = env
        .post("/v1/chat/completions", &json!({"model":"no-such-model","messages":[{"role":"user","content":"x"}]}))
        .await;
    assert_eq!(s, 404, "{t}");
    assert!(t.contains("does not exist or is not served by this gateway"), "{t}");
    assert_eq!(env.fake.requests_to("/responses").len(), 4, "the gateway refused the model itself");

    let (status, v) = post(&env, &format!("/admin/accounts/{parked}/enable"), json!({})).await;
    assert_eq!((status, v["status"].as_str()), (200, Some("unrecognized")), "{v}");
    assert_eq!(env.get_json("/admin/status").await["usable"], 1);
    let raw: (String, String) = db
        .query_row("SELECT kind, status FROM accounts WHERE id = ?1", [&parked], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(raw, ("passkey".to_string(), "active".to_string()), "the row is kept as it was");
}
