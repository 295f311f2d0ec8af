//! Account policies and opportunistic client keys (issue 71, docs/accounts.md "Policies", docs/operations.md
//! "Client keys") through the real gateway against fake-codex: a preserved account is not spent below its floor, a
//! burn-first account takes new conversations first, an opportunistic key is served only from quota that would
//! otherwise expire (and refused in its client's dialect when there is none), and a policy set through the admin
//! API or the command line is kept in the store across a restart.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, start};
use crate::keys::{ADMIN, ALL, D, admin, assert_refusal, create, retry_after, send};
use crate::stewardship::served;

/// `n` stored accounts, no client key (the admin API is open on loopback).
fn pool(n: usize) -> Setup {
    Setup { accounts: n, linked: false, store_accounts: true, ..Setup::default() }
}

fn chat(text: &str) -> Value {
    json!({"model":"gpt-5.4","messages":[{"role":"user","content":text}]})
}

/// The gateway's id (`acc-...`) of each fake account, in the fake's order.
async fn gateway_ids(env: &TestEnv) -> Vec<String> {
    let listed = env.get_json("/admin/accounts").await;
    env.accounts
        .iter()
        .map(|c| {
            let row = listed.as_array().and_then(|l| l.iter().find(|r| r["email"] == c.email.as_str()));
            row.and_then(|r| r["id"].as_str()).unwrap_or_else(|| panic!("{} not listed: {listed}", c.email)).into()
        })
        .collect()
}

/// POST an admin path with a JSON body (no key: the test gateways have none); (status, body).
async fn post_admin(env: &TestEnv, path: &str, body: Value) -> (u16, Value) {
    let resp = env.http.post(env.url(path)).json(&body).send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    (resp.status().as_u16(), resp.json().await.unwrap_or_default())
}

async fn set_policy(env: &TestEnv, id: &str, policy: &str) {
    let (status, v) = post_admin(env, &format!("/admin/accounts/{id}/policy"), json!({"policy": policy})).await;
    assert_eq!((status, v["policy"].as_str()), (200, Some(policy)), "{v}");
}

async fn set_enabled(env: &TestEnv, id: &str, enabled: bool) {
    let verb = if enabled { "enable" } else { "disable" };
    let (status, v) = post_admin(env, &format!("/admin/accounts/{id}/{verb}"), json!({})).await;
    assert_eq!(status, 200, "{v}");
}

/// `n` chat requests, each a new conversation, all answered.
async fn conversations(env: &TestEnv, prefix: &str, n: usize) {
    for i in 0..n {
        let (status, _, text) = env.post("/v1/chat/completions", &chat(&format!("{prefix} conversation {i}"))).await;
        assert_eq!(status, 200, "{text}");
    }
}

/// A preserved account (`preserve:50`) whose five-hour window is 60% used (40% left, under its floor) serves no
/// request while another account can, and with only it left the client gets the pool's quota error, with the
/// window's reset as Retry-After; under a 30% floor the same account serves.
#[tokio::test]
async fn a_preserved_account_is_never_spent_below_its_floor() {
    let env = start(pool(2)).await;
    let now = codex_gateway::auth::now_unix();
    let (kept, other) = (env.accounts[0].account_id.clone(), env.accounts[1].account_id.clone());
    let ids = gateway_ids(&env).await;
    env.fake.set_quota(&kept, 60.0, 10.0, Some(now + 3600));
    // One request the preserved account alone can serve, so the gateway reads its window.
    set_enabled(&env, &ids[1], false).await;
    conversations(&env, "reading", 1).await;
    assert_eq!(served(&env).get(&kept).copied(), Some(1));
    set_enabled(&env, &ids[1], true).await;
    set_policy(&env, &ids[0], "preserve:50").await;
    let row = env.get_json(&format!("/admin/accounts/{}", ids[0])).await;
    assert_eq!(row["stewardship"]["policy"], "preserve:50", "{row}");
    conversations(&env, "while another serves", 8).await;
    let by = served(&env);
    assert_eq!((by.get(&kept).copied(), by.get(&other).copied()), (Some(1), Some(8)), "{by:?}");
    // Only the preserved account is left: refused as the pool refuses when its quota is used up.
    set_enabled(&env, &ids[1], false).await;
    let resp = env.http.post(env.url("/v1/chat/completions")).json(&chat("only the kept one")).send().await;
    let resp = resp.unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    let wait = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let body: Value = resp.json().await.unwrap_or_default();
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("usage_limit_reached")), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("kept for its owner: preserve:50"), "{message}");
    assert!(wait.is_some_and(|w| (3000..=3600).contains(&w)), "Retry-After is the window's reset: {wait:?}");
    assert_eq!(served(&env).get(&kept).copied(), Some(1), "the kept account was not asked");
    // A lower floor leaves it 10% to give.
    set_policy(&env, &ids[0], "preserve:30").await;
    conversations(&env, "under a lower floor", 1).await;
    assert_eq!(served(&env).get(&kept).copied(), Some(2));
}

/// A burn-first account takes every new conversation before a normal one that has more quota left, whatever the
/// strategy; without the policy `least_used` gives it almost none.
#[tokio::test]
async fn a_burn_first_account_takes_new_conversations_before_a_less_used_one() {
    let now = codex_gateway::auth::now_unix();
    for strategy in ["planner", "least_used"] {
        let toml = format!("[routing]\nstrategy = \"{strategy}\"");
        let env = start(Setup { config_toml: Some(toml), ..pool(2) }).await;
        let (burn, other) = (env.accounts[0].account_id.clone(), env.accounts[1].account_id.clone());
        env.fake.set_quota(&burn, 50.0, 10.0, Some(now + 4 * 3600));
        env.fake.set_quota(&other, 10.0, 10.0, Some(now + 4 * 3600));
        let ids = gateway_ids(&env).await;
        let before = if strategy == "least_used" {
            conversations(&env, "before", 6).await;
            let to_burn = served(&env).get(&burn).copied().unwrap_or(0);
            assert!(to_burn <= 2, "least_used gave the more used account {to_burn} of 6");
            to_burn
        } else {
            0
        };
        set_policy(&env, &ids[0], "burn_first").await;
        conversations(&env, "burn", 10).await;
        let to_burn = served(&env).get(&burn).copied().unwrap_or(0) - before;
        assert_eq!(to_burn, 10, "{strategy}: the burn-first account served {to_burn} of 10");
    }
}

/// The Setup of the opportunistic tests: one account, an admin key (creating keys needs one), the Ollama bridge.
fn keyed() -> Setup {
    Setup { ollama: true, env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.into())], ..pool(1) }
}

/// An opportunistic key and a normal one; (opportunistic secret, normal secret).
async fn two_keys(env: &TestEnv) -> (String, String) {
    let (id, batch) = create(env, json!({"name":"batch","opportunistic":true})).await;
    let (_, interactive) = create(env, json!({"name":"interactive"})).await;
    let (status, v) = admin(env, reqwest::Method::GET, &format!("/admin/keys/{id}"), None, ADMIN).await;
    assert_eq!((status, &v["opportunistic"]), (200, &json!(true)), "{v}");
    (batch, interactive)
}

/// With no quota that would otherwise expire, an opportunistic key is refused with 429 `no_expiring_quota` in
/// each dialect's own error shape (and nothing reaches the upstream), while a normal key is served: first on
/// windows the gateway has not read (a window starts with its first request, so nothing of it expires yet), then
/// on a five-hour window the week's pace will spend in full (the weekly window half used on its first day).
#[tokio::test]
async fn an_opportunistic_key_is_refused_when_no_quota_would_expire() {
    let env = start(keyed()).await;
    let (batch, interactive) = two_keys(&env).await;
    let refused_everywhere = |round: &'static str| {
        let (env, batch) = (&env, batch.clone());
        async move {
            for d in ALL {
                let (status, headers, body) = send(env, d, &batch).await;
                assert_refusal(d, status, &body, 429, "no_expiring_quota", &["opportunistic", "expire"]);
                assert!(retry_after(d, &headers) >= 1, "{round} {d:?}");
            }
        }
    };
    refused_everywhere("unread").await;
    assert_eq!(env.fake.requests_to("/responses").len(), 0, "nothing reached the upstream");
    env.fake.set_quota(&env.accounts[0].account_id, 0.0, 50.0, None);
    let (status, _, body) = send(&env, D::Chat, &interactive).await;
    assert_eq!(status, 200, "a normal key is unaffected: {body}");
    refused_everywhere("paced").await;
    assert_eq!(env.fake.requests_to("/responses").len(), 1, "only the normal key's request reached the upstream");
}

/// An account whose five-hour window is 40% used and resets in ten minutes has quota that would otherwise expire:
/// once the gateway has read it, an opportunistic key's requests are served from it (Chat Completions and
/// Anthropic Messages alike), and a normal key's too.
#[tokio::test]
async fn an_opportunistic_key_is_served_from_quota_about_to_expire() {
    let env = start(keyed()).await;
    let (batch, interactive) = two_keys(&env).await;
    let account = env.accounts[0].account_id.clone();
    env.fake.set_quota(&account, 40.0, 10.0, Some(codex_gateway::auth::now_unix() + 600));
    let (status, _, body) = send(&env, D::Chat, &interactive).await;
    assert_eq!(status, 200, "{body}");
    for d in [D::Chat, D::Anthropic] {
        let (status, _, body) = send(&env, d, &batch).await;
        assert_eq!(status, 200, "{d:?}: {body}");
    }
    let (status, _, body) = send(&env, D::Chat, &interactive).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(served(&env).get(&account).copied(), Some(4));
}

/// The command line against a data directory (`port`: a running gateway's, or one nobody listens on); (success,
/// stdout, stderr).
async fn cli(env: &TestEnv, data: &Path, port: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_codex-gateway"))
        .args(args)
        .env("CODEX_GATEWAY_DATA_DIR", data)
        .env("CODEX_GATEWAY_PORT", port)
        .env("CODEX_HOME", env.dir.join("no-codex-home"))
        .env("CODEX_GATEWAY_AUTH_ISSUER", env.fake.issuer())
        .env("CODEX_GATEWAY_UPSTREAM_BASE_URL", env.fake.codex_base_url())
        .env("CODEX_GATEWAY_CHATGPT_BASE_URL", env.fake.chatgpt_base_url())
        .env("HOME", &env.dir)
        .env_remove("CODEX_GATEWAY_API_KEY")
        .env_remove("CODEX_GATEWAY_ADMIN_KEY")
        .env_remove("OPENAI_API_KEY")
        .output()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The policy as the store holds it.
fn stored_policy(data: &Path, id: &str) -> Option<String> {
    let store = codex_gateway::store::Store::open(&data.join("gateway.db")).unwrap_or_else(|e| panic!("{e:#}"));
    store.get_account(id).unwrap_or_else(|e| panic!("{e:#}")).and_then(|a| a.policy)
}

/// The admin API sets a policy and refuses a bad one in the OpenAI error shape, naming the accepted forms; the
/// command line sets one through a running gateway (seen at once, and in `accounts list`) and on the store
/// itself; the policy is in the store and a restarted gateway applies it.
#[tokio::test]
async fn a_policy_is_set_by_the_admin_api_and_the_cli_and_survives_a_restart() {
    let data = std::env::temp_dir().join(format!("cgw-policy-{}", uuid::Uuid::new_v4().simple()));
    let setup = || Setup { env: vec![("CODEX_GATEWAY_DATA_DIR", data.display().to_string())], ..pool(0) };
    let mut first = start(setup()).await;
    let creds = first.fake.add_account(fake_codex::AccountSpec::default());
    let auth_json = json!({"tokens": {"id_token": creds.id_token, "access_token": creds.access_token,
        "refresh_token": creds.refresh_token, "account_id": creds.account_id}});
    let (status, added) =
        post_admin(&first, "/admin/accounts", json!({"auth_json": auth_json, "label": "laptop"})).await;
    assert_eq!(status, 201, "{added}");
    let id = added[0]["id"].as_str().unwrap_or_default().to_string();
    assert_eq!(added[0]["stewardship"]["policy"], "normal", "{added}");
    // Refused, in the OpenAI shape, naming what is accepted; nothing changes.
    for bad in ["preserve:0", "preserve:150", "keep", ""] {
        let (status, v) = post_admin(&first, &format!("/admin/accounts/{id}/policy"), json!({"policy": bad})).await;
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(
            (&v["error"]["type"], &v["error"]["code"]),
            (&json!("invalid_request_error"), &json!("invalid_policy"))
        );
        assert_eq!(v["error"]["param"], "policy", "{v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            ["normal", "burn_first", "preserve", "preserve:PERCENT"].iter().all(|w| message.contains(w)),
            "{message}"
        );
    }
    let (status, v) = post_admin(&first, &format!("/admin/accounts/{id}/policy"), json!({"policy": 40})).await;
    assert_eq!((status, &v["error"]["type"]), (400, &json!("invalid_request_error")), "{v}");
    let (status, v) = post_admin(&first, "/admin/accounts/acc-nobody/policy", json!({"policy": "normal"})).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(stored_policy(&data, &id).as_deref(), Some("normal"));
    // The command line through the running gateway (by label): in force at once, and listed.
    let port = first.base.rsplit(':').next().unwrap_or_default().to_string();
    let (ok, out, err) = cli(&first, &data, &port, &["accounts", "policy", "laptop", "burn_first"]).await;
    assert!(ok && out.contains(&format!("{id}: policy burn_first")), "{out}{err}");
    let row = first.get_json(&format!("/admin/accounts/{id}")).await;
    assert_eq!(row["stewardship"]["policy"], "burn_first", "{row}");
    let (ok, out, err) = cli(&first, &data, &port, &["accounts", "list"]).await;
    assert!(ok && out.lines().next().is_some_and(|h| h.contains("policy")) && out.contains("burn_first"), "{out}{err}");
    let (ok, _, err) = cli(&first, &data, &port, &["accounts", "policy", "laptop", "preserve:0"]).await;
    assert!(!ok && err.contains("not an account policy") && err.contains("preserve:PERCENT"), "{err}");
    // The admin API; then a restart on the same store.
    set_policy(&first, &id, "preserve:40").await;
    assert_eq!(stored_policy(&data, &id).as_deref(), Some("preserve:40"));
    first.stop_gateway();
    for _ in 0..200 {
        if first.gateway.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(first.gateway.is_finished(), "the first gateway stopped");
    let mut second = start(setup()).await;
    let row = second.get_json(&format!("/admin/accounts/{id}")).await;
    assert_eq!(row["stewardship"]["policy"], "preserve:40", "applied after the restart: {row}");
    second.stop_gateway();
    for _ in 0..200 {
        if second.gateway.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The command line on the store itself (no gateway answers on port 1).
    let (ok, out, err) = cli(&first, &data, "1", &["accounts", "policy", &id, "preserve"]).await;
    assert!(ok && out.contains("policy preserve:30"), "{out}{err}");
    assert_eq!(stored_policy(&data, &id).as_deref(), Some("preserve:30"));
    drop(second);
    let _ = std::fs::remove_dir_all(&data);
}
