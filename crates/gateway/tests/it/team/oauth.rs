//! The Codex CLI's sign-in on the team store: a token issued on one instance is accepted on the others at once
//! (one they have not seen is looked up in the store), revoked and expired ones stay refused, and the user disabled
//! on one instance is refused on every other within seconds, the refresh token with it. And the leader's prune of
//! what expired.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ADMIN, Instance, ONE_TEAM, SHARED, chat_status, http, instance_with, seed, within};
use crate::oauth::{now_unix, put_sign_ins, sign_ins_left};

const PASSWORD: &str = "team member password";
const VERIFIER: &str = "team-verifier-of-enough-length-0123456789-abcdefghij";
const REDIRECT: &str = "http://127.0.0.1:1457/callback";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A dashboard session of `name` on `at`: its cookie.
async fn dashboard_cookie(at: &Instance, name: &str) -> String {
    let r = no_redirects().get(at.url("/dashboard/login")).send().await.unwrap_or_else(|e| panic!("{e}"));
    let login = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("cgw_login="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
        .unwrap_or_default();
    let r = no_redirects()
        .post(at.url("/dashboard/login"))
        .header("cookie", format!("cgw_login={login}"))
        .json(&json!({"name": name, "password": PASSWORD, "csrf": login}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("cgw_session="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no session"))
}

async fn model_status(at: &Instance, token: &str) -> u16 {
    let r = http()
        .post(at.url("/v1/responses"))
        .header("x-gateway-token", format!("Bearer {token}"))
        .json(&json!({"model": "gpt-5.4", "input": "hi", "stream": false}))
        .send()
        .await;
    r.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn until(within: Duration, mut f: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if f().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The tokens of a code flow: authorized in the browser with `cookie` on `browser`, the code exchanged on `exchange`.
async fn tokens_by_code(browser: &Instance, exchange: &Instance, cookie: &str) -> Value {
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", "codex-cli"),
            ("redirect_uri", REDIRECT),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", "s"),
        ])
        .finish();
    let r = no_redirects()
        .get(browser.url(&format!("/dashboard/oauth/authorize?{query}")))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let back = url::Url::parse(&location).unwrap_or_else(|e| panic!("{location}: {e}"));
    let code = back.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.to_string()).unwrap_or_default();
    token_grant(
        exchange,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "codex-cli"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

/// POST a grant to `at`'s token endpoint: its JSON answer.
async fn token_grant(at: &Instance, pairs: &[(&str, &str)]) -> Value {
    let form: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let r = http()
        .post(at.url("/dashboard/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    r.json().await.unwrap_or(Value::Null)
}

/// A refresh of `refresh_token` on `at`: the new pair (or the error).
async fn refresh_on(at: &Instance, refresh_token: &str) -> Value {
    token_grant(at, &[("grant_type", "refresh_token"), ("client_id", "codex-cli"), ("refresh_token", refresh_token)])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cli_token_issued_on_one_instance_is_honoured_everywhere_and_refused_everywhere_once_disabled() {
    let (fake, _creds, db) = seed(fake_codex::FakeConfig::default(), 1).await;
    let (a, b, c) =
        (instance_with(&fake, &db, "").await, instance_with(&fake, &db, "").await, instance_with(&fake, &db, "").await);
    let r = http()
        .post(a.url("/admin/users"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "dev", "role": "member", "password": PASSWORD}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let user: Value = r.json().await.unwrap_or(Value::Null);
    let id = user["id"].as_str().unwrap_or_default().to_string();
    // The browser signed in on B, the code exchanged on C (a load balancer in front of the three).
    let cookie = dashboard_cookie(&b, "dev").await;
    let tokens = tokens_by_code(&b, &c, &cookie).await;
    let access = tokens["access_token"].as_str().unwrap_or_else(|| panic!("{tokens}")).to_string();
    for at in [&a, &b, &c] {
        let took = until(Duration::from_secs(5), async || model_status(at, &access).await == 200).await;
        assert!(took.is_some(), "the token is not honoured on {}", at.base);
    }
    // Disabled on A: refused on B and C within seconds.
    let r = http()
        .patch(a.url(&format!("/admin/users/{id}")))
        .bearer_auth(ADMIN)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 200);
    for at in [&b, &c] {
        let took = until(Duration::from_secs(5), async || model_status(at, &access).await == 401).await;
        assert!(took.is_some_and(|t| t < Duration::from_secs(3)), "still honoured on {} after {took:?}", at.base);
    }
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "refresh_token"),
            ("client_id", "codex-cli"),
            ("refresh_token", tokens["refresh_token"].as_str().unwrap_or_default()),
        ])
        .finish();
    let r = http()
        .post(b.url("/dashboard/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(v["error"], "invalid_grant", "{v}");
}

/// issue 88: expired refresh tokens were never deleted, codes only when a new one was made, sessions by every
/// instance at each re-read. Now the leader prunes them (when it takes the lease, then every few minutes): A,
/// alone, prunes the first expired rows; B, started while A leads, leaves the second ones alone (its re-reads
/// delete nothing either); when A stops, B takes the lease over and prunes them. Live rows stay throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_sign_ins_are_pruned_by_the_leader_only_and_by_the_next_one() {
    let _one_team_at_a_time = ONE_TEAM.lock().await;
    let (fake, _creds, db) = seed(fake_codex::FakeConfig::default(), 1).await;
    let scratch = std::env::temp_dir().join(format!("cgw-team-prune-{}", uuid::Uuid::new_v4().simple()));
    let store = codex_gateway::store::Store::open_with(&scratch.join("gateway.db"), Some(&db))
        .unwrap_or_else(|e| panic!("open the team store: {e:#}"));
    let fast = "upkeep_interval_secs = 0.2";
    put_sign_ins(&store, "first", now_unix());
    let a = instance_with(&fake, &db, fast).await;
    let pruned = within(Duration::from_secs(5), || async { sign_ins_left(&store, "first").0 == 0 }).await;
    assert!(pruned.is_some(), "the leader did not prune: {:?} left", sign_ins_left(&store, "first"));
    put_sign_ins(&store, "second", now_unix());
    let b = instance_with(&fake, &db, fast).await;
    // B is up (it serves) and has had several upkeep rounds and prune looks, had it been allowed to prune.
    let http = http();
    let serving = within(Duration::from_secs(5), || async { chat_status(&http, &b, SHARED).await == 200 }).await;
    assert!(serving.is_some(), "B did not serve");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        sign_ins_left(&store, "second"),
        (4, 4),
        "pruned by B (not the leader), or by A again within its period"
    );
    drop(a);
    let taken = within(Duration::from_secs(8), || async { sign_ins_left(&store, "second").0 == 0 }).await;
    assert!(taken.is_some(), "B did not take the pruning over when A stopped");
    assert_eq!((sign_ins_left(&store, "first").1, sign_ins_left(&store, "second").1), (4, 4), "live rows kept");
    drop(b);
    drop(store);
    let _ = std::fs::remove_dir_all(&scratch);
}

/// issue 88: a token issued on one instance was accepted on another only after that one's next re-read of the
/// sessions (the change counter's 500 ms poll, then the re-read): a CLI whose next request landed elsewhere was
/// refused 401 for up to a second. Now an instance looks a token it has not seen up in the store at once: each of
/// five tokens, issued on A by a refresh, is accepted on B at the first try, right after its issue. A token whose
/// family was revoked (a reused refresh token), a made-up one and an expired one are refused, and stay refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cli_token_issued_on_one_instance_is_accepted_on_another_at_once_and_revoked_or_expired_ones_stay_refused() {
    let _one_team_at_a_time = ONE_TEAM.lock().await;
    let (fake, _creds, db) = seed(fake_codex::FakeConfig::default(), 1).await;
    // Access tokens live the least the configuration allows, so the test sees one expire.
    let short = "[oauth]\naccess_token_secs = 5";
    let (a, b, c) = (
        instance_with(&fake, &db, short).await,
        instance_with(&fake, &db, short).await,
        instance_with(&fake, &db, short).await,
    );
    let r = http()
        .post(a.url("/admin/users"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "dev", "role": "member", "password": PASSWORD}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 201);
    let cookie = dashboard_cookie(&a, "dev").await;
    let first = tokens_by_code(&a, &a, &cookie).await;
    let mut pair = first.clone();
    let mut took = Vec::new();
    for round in 0..5 {
        let used = pair["refresh_token"].as_str().unwrap_or_else(|| panic!("{pair}")).to_string();
        pair = refresh_on(&a, &used).await;
        let issued = std::time::Instant::now();
        let access = pair["access_token"].as_str().unwrap_or_else(|| panic!("{pair}")).to_string();
        let status = model_status(&b, &access).await;
        took.push(issued.elapsed());
        assert_eq!(status, 200, "token {round} refused on B at the first try, {:?} after its issue", issued.elapsed());
    }
    let slowest = took.iter().max().copied().unwrap_or_default();
    // Well inside the 500 ms poll after which B would have re-read (16–30 ms here, the model call included).
    assert!(slowest < Duration::from_millis(300), "accepted on B only {took:?} after issue");
    // C, which saw none of them either.
    let access = pair["access_token"].as_str().unwrap_or_default().to_string();
    assert_eq!(model_status(&c, &access).await, 200);
    // A made-up token of the issued shape: refused (looked up once, then from memory).
    let made_up = format!("cga_{}", "A".repeat(43));
    assert_eq!((model_status(&b, &made_up).await, model_status(&b, &made_up).await), (401, 401));
    // The first refresh token again: its family is revoked, the newest access token with it, on every instance.
    let v = refresh_on(&b, first["refresh_token"].as_str().unwrap_or_default()).await;
    assert_eq!(v["error"], "invalid_grant", "{v}");
    for at in [&a, &b, &c] {
        let refused = until(Duration::from_secs(5), async || model_status(at, &access).await == 401).await;
        assert!(
            refused.is_some_and(|t| t < Duration::from_secs(3)),
            "revoked but honoured on {} ({refused:?})",
            at.base
        );
    }
    for _ in 0..3 {
        for at in [&a, &b, &c] {
            assert_eq!(model_status(at, &access).await, 401, "a revoked token came back on {}", at.base);
        }
    }
    // A new sign-in's token, accepted on C at once, then expired: refused on every instance, B never having seen it.
    let fresh = tokens_by_code(&a, &a, &cookie).await;
    let issued = std::time::Instant::now();
    let access = fresh["access_token"].as_str().unwrap_or_else(|| panic!("{fresh}")).to_string();
    assert_eq!(model_status(&c, &access).await, 200);
    tokio::time::sleep(Duration::from_millis(5200).saturating_sub(issued.elapsed())).await;
    for at in [&a, &b, &c] {
        assert_eq!(model_status(at, &access).await, 401, "expired but honoured on {}", at.base);
    }
}
