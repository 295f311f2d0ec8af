//! Token refresh: single-flight under load, 401 retry, linked auth.json write-back, permanent failure.

use serde_json::json;

use crate::harness::{Setup, json, start};

fn chat() -> serde_json::Value {
    json!({"model":"gpt-5.4","messages":[{"role":"user","content":"x"}]})
}

fn refreshes(env: &crate::harness::TestEnv) -> usize {
    env.fake.token_calls().iter().filter(|c| c.grant_type == "refresh_token").count()
}

/// 100 concurrent requests on an account whose token the upstream just refused: exactly one token call, and
/// every request succeeds. Both for the Codex CLI's linked login and for an account in the gateway's store.
#[tokio::test]
async fn refresh_storm_after_401_makes_exactly_one_token_call() {
    for store_mode in [false, true] {
        let mut setup = Setup { linked: !store_mode, store_accounts: store_mode, ..Setup::default() };
        setup.fake.token_delay_ms = 200;
        let env = start(setup).await;
        let account = env.accounts[0].account_id.clone();
        env.fake.expire_access_tokens(&account);
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (http, url) = (env.http.clone(), env.url("/v1/chat/completions"));
            tasks.push(tokio::spawn(async move {
                let r = http.post(url).json(&chat()).send().await;
                r.map(|r| r.status().as_u16()).unwrap_or(0)
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap_or(0), 200, "store_mode={store_mode}");
        }
        assert_eq!(refreshes(&env), 1, "store_mode={store_mode}: {:?}", env.fake.token_calls());
    }
}

#[tokio::test]
async fn proactive_refresh_of_a_token_about_to_expire_is_single_flight() {
    let mut setup = Setup::default();
    setup.fake.access_token_ttl_secs = 60; // inside the 5-minute window
    setup.fake.token_delay_ms = 100;
    let env = start(setup).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (http, url) = (env.http.clone(), env.url("/v1/chat/completions"));
        tasks.push(tokio::spawn(async move {
            http.post(url).json(&chat()).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap_or(0), 200);
    }
    // Every refreshed token is again within 60 s of expiry, so later requests refresh again, but one at a time
    // and never with a reused token.
    assert!(refreshes(&env) >= 1);
    assert!(env.fake.token_calls().iter().all(|c| c.outcome == "ok"), "{:?}", env.fake.token_calls());
}

#[tokio::test]
async fn linked_mode_writes_rotated_tokens_back_privately() {
    let env = start(Setup::default()).await;
    let account = env.accounts[0].account_id.clone();
    env.fake.expire_access_tokens(&account);
    let (status, _, text) = env.post("/v1/chat/completions", &chat()).await;
    assert_eq!(status, 200, "{text}");
    let path = env.dir.join("codex-home/auth.json");
    let file = json(&std::fs::read_to_string(&path).unwrap_or_default());
    let new_refresh = file["tokens"]["refresh_token"].as_str().unwrap_or_default().to_string();
    assert_ne!(new_refresh, env.accounts[0].refresh_token, "auth.json holds the rotated token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        assert_eq!(mode, 0o600);
    }
}

#[tokio::test]
async fn linked_mode_rereads_auth_json_before_refreshing() {
    // Access tokens live 60 s, so every use is inside the 5-minute window and needs a refresh.
    let mut setup = Setup::default();
    setup.fake.access_token_ttl_secs = 60;
    let env = start(setup).await;
    // The Codex CLI refreshes on its own and rewrites auth.json: the gateway's refresh token is now spent.
    let fresh: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/oauth/token", env.fake.issuer()))
        .json(&json!({"client_id":"app_EMoamEEZ73f0CkXaXp7hrann","grant_type":"refresh_token","refresh_token":env.accounts[0].refresh_token}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    let mut creds = env.accounts[0].clone();
    creds.access_token = fresh["access_token"].as_str().unwrap_or_default().into();
    creds.refresh_token = fresh["refresh_token"].as_str().unwrap_or_default().into();
    creds.id_token = fresh["id_token"].as_str().unwrap_or_default().into();
    crate::harness::write_auth_json(&env.dir.join("codex-home/auth.json"), &creds);
    let (status, _, text) = env.post("/v1/chat/completions", &chat()).await;
    assert_eq!(status, 200, "{text}");
    let calls = env.fake.token_calls();
    assert!(
        calls.iter().all(|c| c.outcome == "ok"),
        "the gateway must use the CLI's new token, not its spent one: {calls:?}"
    );
}

#[tokio::test]
async fn dead_refresh_token_means_needs_login_without_a_retry_storm() {
    let env = start(Setup::default()).await;
    // Someone else spends the refresh token and does not tell us (no shared file).
    let http = reqwest::Client::new();
    let _ = http
        .post(format!("{}/oauth/token", env.fake.issuer()))
        .json(&json!({"client_id":"app_EMoamEEZ73f0CkXaXp7hrann","grant_type":"refresh_token","refresh_token":env.accounts[0].refresh_token}))
        .send()
        .await;
    // Put the original (now spent) token back in the file, as if nothing happened.
    crate::harness::write_auth_json(&env.dir.join("codex-home/auth.json"), &env.accounts[0]);
    env.fake.expire_access_tokens(&env.accounts[0].account_id);
    let (status, _, text) = env.post("/v1/chat/completions", &chat()).await;
    assert_eq!(status, 401, "{text}");
    let msg = json(&text)["error"]["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("Log in again"), "{msg}");
    let calls = refreshes(&env);
    for _ in 0..5 {
        let (status, _, _) = env.post("/v1/chat/completions", &chat()).await;
        assert_eq!(status, 401);
    }
    assert_eq!(refreshes(&env), calls, "no further refresh attempts once the login is dead");
    let ready = env.http.get(env.url("/ready")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ready.status().as_u16(), 503);
}

#[tokio::test]
async fn store_accounts_commit_rotated_tokens() {
    let env = start(Setup { linked: false, store_accounts: true, ..Setup::default() }).await;
    env.fake.expire_access_tokens(&env.accounts[0].account_id);
    let (status, _, text) = env.post("/v1/chat/completions", &chat()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(refreshes(&env), 1);
    let store = codex_gateway::store::Store::open(&env.dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    let accounts = store.list_accounts().unwrap_or_default();
    let saved = accounts[0].tokens.clone().map(|t| t.refresh_token).unwrap_or_default();
    assert_ne!(saved, env.accounts[0].refresh_token, "the rotated refresh token is committed");
    assert!(!env.dir.join("codex-home/auth.json").exists(), "store accounts never write the Codex CLI's file");
}

#[tokio::test]
async fn background_refresh_renews_tokens_ahead_of_expiry_only() {
    // The access token lives an hour: a 10-minute look-ahead leaves it alone, a 2-hour one refreshes it.
    let env = start(Setup { linked: false, store_accounts: true, ..Setup::default() }).await;
    let mut vars = std::collections::HashMap::new();
    vars.insert("HOME".to_string(), env.dir.display().to_string());
    vars.insert("CODEX_HOME".to_string(), env.dir.join("none").display().to_string());
    vars.insert("CODEX_GATEWAY_DATA_DIR".to_string(), env.dir.join("data").display().to_string());
    vars.insert("CODEX_GATEWAY_AUTH_ISSUER".to_string(), env.fake.issuer());
    let config = codex_gateway::config::Config::resolve(Default::default(), &Default::default(), &vars)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let store =
        std::sync::Arc::new(codex_gateway::store::Store::open(&config.db_path()).unwrap_or_else(|e| panic!("{e}")));
    let pool = codex_gateway::accounts::Pool::load(std::sync::Arc::new(config), store, reqwest::Client::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let account = pool.accounts()[0].clone();
    pool.refresh_ahead(&account, 600).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refreshes(&env), 0, "an hour-long token is not refreshed 10 minutes ahead");
    pool.refresh_ahead(&account, 7200).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refreshes(&env), 1);
    pool.refresh_ahead(&account, 600).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refreshes(&env), 1, "the renewed token is fresh again");
}

/// The refresh token the store holds for the first account.
fn stored_refresh_token(env: &crate::harness::TestEnv) -> String {
    let store = codex_gateway::store::Store::open(&env.dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    let accounts = store.list_accounts().unwrap_or_else(|e| panic!("{e}"));
    accounts[0].tokens.clone().map(|t| t.refresh_token).unwrap_or_default()
}

/// Poll the first account's listing until `done` holds (the upkeep runs every 0.2 s here).
async fn listing_until(env: &crate::harness::TestEnv, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let listed = env.get_json("/admin/accounts").await;
        if done(&listed[0]) || std::time::Instant::now() > deadline {
            return listed[0].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A rotation whose store commit failed used to be logged and forgotten: the gateway served with tokens the store
/// did not have, nothing showed it, and a restart went back to the spent refresh token. Now the new tokens are
/// kept and used, the account shows `tokens_not_saved`, and the commit is retried until the store takes it. The
/// failure is a real one inside SQLite: a trigger refuses every token update, as a full disk would.
#[tokio::test]
async fn a_rotation_whose_commit_fails_is_flagged_used_and_committed_later() {
    let setup = Setup {
        linked: false,
        store_accounts: true,
        config_toml: Some("upkeep_interval_secs = 0.2".into()),
        ..Setup::default()
    };
    let env = start(setup).await;
    let original = env.accounts[0].refresh_token.clone();
    let db = rusqlite::Connection::open(env.dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    db.execute_batch(
        "CREATE TRIGGER refuse_tokens BEFORE UPDATE OF refresh_token ON accounts \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full (test)'); END;",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    env.fake.expire_access_tokens(&env.accounts[0].account_id);
    let (status, _, text) = env.post("/v1/chat/completions", &chat()).await;
    assert_eq!(status, 200, "the new tokens serve although they are not saved: {text}");
    assert_eq!(refreshes(&env), 1);
    let shown = listing_until(&env, |a| a["tokens_not_saved"]["attempts"].as_u64() >= Some(4)).await;
    let flag = &shown["tokens_not_saved"];
    assert!(flag["error"].as_str().is_some_and(|e| e.contains("disk is full (test)")), "{shown}");
    assert!(flag["attempts"].as_u64() >= Some(4), "the upkeep keeps retrying: {shown}");
    assert_eq!(shown["status"], "active");
    assert_eq!(stored_refresh_token(&env), original, "the store could not take them");
    let (status, _, text) = env.post("/v1/chat/completions", &chat()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(refreshes(&env), 1, "served from memory: no refresh with the spent token");

    db.execute_batch("DROP TRIGGER refuse_tokens").unwrap_or_else(|e| panic!("{e}"));
    let shown = listing_until(&env, |a| a["tokens_not_saved"].is_null()).await;
    assert!(shown["tokens_not_saved"].is_null(), "the retry succeeded once the store took writes: {shown}");
    let saved = stored_refresh_token(&env);
    assert_ne!(saved, original);
    // What was saved is the live login: the issuer accepts it.
    let answer = reqwest::Client::new()
        .post(format!("{}/oauth/token", env.fake.issuer()))
        .json(&json!({"client_id":"app_EMoamEEZ73f0CkXaXp7hrann","grant_type":"refresh_token","refresh_token":saved}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status().as_u16(), 200);
}

/// Linked mode, the same failure writing back to the Codex CLI's auth.json: a directory sits where the atomic
/// write puts its temporary file (`.auth.json.tmp-<pid>`, this process's id: the gateway runs in-process), so
/// the write fails for real while the file stays readable.
#[tokio::test]
async fn linked_mode_keeps_tokens_it_cannot_write_back_and_retries() {
    let env = start(Setup { config_toml: Some("upkeep_interval_secs = 0.2".into()), ..Setup::default() }).await;
    let path = env.dir.join("codex-home/auth.json");
    let blocker = env.dir.join(format!("codex-home/.auth.json.tmp-{}", std::process::id()));
    std::fs::create_dir(&blocker).unwrap_or_else(|e| panic!("{e}"));

    env.fake.expire_access_tokens(&env.accounts[0].account_id);
    let (status, _, text) = env.post("/v1/chat/completions", &chat()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(refreshes(&env), 1);
    let shown = listing_until(&env, |a| a["tokens_not_saved"]["attempts"].as_u64() >= Some(3)).await;
    assert!(shown["tokens_not_saved"]["error"].as_str().is_some_and(|e| e.contains("cannot write")), "{shown}");
    let file = || json(&std::fs::read_to_string(&path).unwrap_or_default())["tokens"]["refresh_token"].clone();
    assert_eq!(file(), env.accounts[0].refresh_token.as_str());
    let (status, _, text) = env.post("/v1/chat/completions", &chat()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(refreshes(&env), 1, "served from memory");
    // The next rotation starts from the unsaved tokens, not from the spent ones auth.json still holds.
    env.fake.expire_access_tokens(&env.accounts[0].account_id);
    let (status, _, text) = env.post("/v1/chat/completions", &chat()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(refreshes(&env), 2);
    assert!(env.fake.token_calls().iter().all(|c| c.outcome == "ok"), "{:?}", env.fake.token_calls());

    std::fs::remove_dir(&blocker).unwrap_or_else(|e| panic!("{e}"));
    let shown = listing_until(&env, |a| a["tokens_not_saved"].is_null()).await;
    assert!(shown["tokens_not_saved"].is_null(), "{shown}");
    assert_ne!(file(), env.accounts[0].refresh_token.as_str(), "auth.json holds the rotated token now");
}
