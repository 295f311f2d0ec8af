//! Guessing at the sign-in pages (issue 88; docs/security.md, "Guessing at the sign-in pages"): brute force that
//! the tests show failing (wrong device codes from one session, wrong passwords against one account, a flood of
//! refused single sign-on answers), a real user signing in at once while a guesser runs elsewhere, and the audit
//! trail holding bursts rather than one row per guess. Short waits come from `[dashboard.attempts]`; the client
//! addresses from `X-Forwarded-For` behind a trusted proxy (the test itself, on loopback).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, start};
use crate::users::{ADMIN, PASSWORD, add_user, cli, client, dashboard_sign_in};

async fn gateway(toml: &str) -> TestEnv {
    let config = format!("[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{toml}");
    start(Setup {
        accounts: 1,
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.to_string())],
        config_toml: Some(config),
        ..Setup::default()
    })
    .await
}

/// `POST /admin/sign-in` from `from`: status, `Retry-After`, body.
async fn sign_in_from(env: &TestEnv, from: &str, name: &str, password: &str) -> (u16, Option<u64>, Value) {
    let r = client()
        .post(env.url("/admin/sign-in"))
        .header("x-forwarded-for", from)
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    (r.status().as_u16(), retry, r.json().await.unwrap_or(Value::Null))
}

async fn admin(env: &TestEnv, method: Method, path: &str) -> (u16, Value) {
    let r = client().request(method, env.url(path)).bearer_auth(ADMIN).send().await.unwrap_or_else(|e| panic!("{e}"));
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The trail's entries whose action starts with `action`.
async fn trail(env: &TestEnv, action: &str) -> Vec<Value> {
    // Appends go out before the answers; a short pause covers the task that writes a summary.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, v) = admin(env, Method::GET, &format!("/admin/audit?action={action}&limit=1000")).await;
    v["entries"].as_array().cloned().unwrap_or_default()
}

async fn decide(env: &TestEnv, cookie: &str, csrf: &str, code: &str) -> (u16, Option<u64>, Value) {
    let r = client()
        .post(env.url("/dashboard/api/oauth/device"))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .json(&json!({"user_code": code, "approve": true}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    (r.status().as_u16(), retry, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn wrong_device_codes_from_one_session_are_refused_with_429_until_the_wait_is_over() {
    let env =
        gateway("[dashboard.attempts]\nfailure_delay_ms = 0\nbackoff_ms = 4000\naddress_free_failures = 100\n").await;
    add_user(&env, "mia", "member", json!({})).await;
    let (mia, csrf) = dashboard_sign_in(&env, "mia", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    let form = [("client_id", "codex-cli"), ("scope", "models")];
    let r = client().post(env.url("/dashboard/oauth/device/code")).form(&form).send().await;
    let start: Value = r.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or(Value::Null);
    let right = start["user_code"].as_str().unwrap_or_default().to_string();
    assert_eq!(right.len(), 9, "{start}");

    // Three free, then 429 for every code, the right one too.
    for (i, wrong) in ["BCDF-GHJK", "BCDF-GHJL", "BCDF-GHJM"].iter().enumerate() {
        let (s, _, v) = decide(&env, &mia, &csrf, wrong).await;
        assert_eq!(s, 400, "wrong code {i}: {v}");
    }
    let started = Instant::now();
    let mut limited = 0;
    for _ in 0..20 {
        let (s, retry, v) = decide(&env, &mia, &csrf, "BCDF-GHJP").await;
        assert!(s == 429 && retry.is_some_and(|r| (1..=4).contains(&r)), "{s} {retry:?} {v}");
        assert!(v["error"].as_str().unwrap_or_default().contains("try again"), "{v}");
        limited += 1;
    }
    let (s, retry, v) = decide(&env, &mia, &csrf, &right).await;
    assert!(s == 429 && retry.is_some(), "the right code is refused while the session waits: {s} {v}");
    // Well inside the 4 s wait even on a loaded machine (a debug build beside the rest of the suite).
    assert!(started.elapsed() < Duration::from_millis(3500), "the refusals come at once: {:?}", started.elapsed());
    // The verification page says so too, as a page.
    let page = client()
        .get(env.url(&format!("/dashboard/oauth/device?user_code={right}")))
        .header("cookie", &mia)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((page.status().as_u16(), page.headers().contains_key("retry-after")), (429, true));
    assert!(page.text().await.unwrap_or_default().contains("Too many failed attempts"));

    tokio::time::sleep(Duration::from_millis(4000).saturating_sub(started.elapsed()) + Duration::from_millis(100))
        .await;
    let (s, _, v) = decide(&env, &mia, &csrf, &right).await;
    assert_eq!(s, 200, "after the wait the right code is taken: {v}");

    // 24 wrong codes and a right one refused, in the trail: a few rows, not one per guess.
    let rows = trail(&env, "oauth.device").await;
    let refused = rows.iter().filter(|r| r["outcome"] == "refused").count();
    assert!(refused <= 3, "{limited} limited guesses left {refused} rows: {rows:#?}");
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_until_an_admin_unlocks_it_and_the_trail_sums_them_up() {
    let limits = "free_failures = 10\naddress_free_failures = 1000\nfailure_delay_ms = 0\nlockout_minutes = 30\n";
    let env = gateway(&format!("[dashboard.attempts]\n{limits}")).await;
    let ana = add_user(&env, "ana", "member", json!({})).await;
    let from = "198.51.100.7";
    for i in 0..10 {
        let (s, _, v) = sign_in_from(&env, from, "ana", &format!("guess number {i:04}")).await;
        assert_eq!((s, &v["error"]["code"]), (401, &json!("sign_in_failed")), "guess {i}: {v}");
    }
    // Locked: the right password too, from anywhere, on the admin API and on the login form.
    let (s, retry, v) = sign_in_from(&env, "203.0.113.5", "ana", PASSWORD).await;
    assert_eq!((s, &v["error"]["code"]), (429, &json!("account_locked")), "{v}");
    assert!(retry.is_some_and(|r| r > 25 * 60), "{retry:?}");
    let refused = dashboard_sign_in(&env, "ana", None).await.err().unwrap_or_default();
    assert_eq!((refused.0, &refused.1["locked"]), (429, &json!(true)), "{refused:?}");
    let (_, users) = admin(&env, Method::GET, "/admin/users").await;
    let shown = users.as_array().and_then(|u| u.iter().find(|u| u["id"] == ana.as_str()).cloned()).unwrap_or_default();
    assert!(shown["locked_until"].is_string() && shown["sign_in_failures"] == 10, "{shown}");

    // A name that is nobody's reads alike: locked after as many failures, with the same answer.
    for i in 0..10 {
        assert_eq!(sign_in_from(&env, from, "nobody", &format!("guess number {i:04}")).await.0, 401);
    }
    let (s, _, v) = sign_in_from(&env, from, "nobody", PASSWORD).await;
    assert_eq!((s, &v["error"]["code"]), (429, &json!("account_locked")), "{v}");

    // The admin lifts it; the right password works and the count starts again.
    assert_eq!(admin(&env, Method::POST, &format!("/admin/users/{ana}/unlock")).await.0, 200);
    assert_eq!(sign_in_from(&env, "203.0.113.5", "ana", PASSWORD).await.0, 200);
    let (_, users) = admin(&env, Method::GET, "/admin/users").await;
    let shown = users.as_array().and_then(|u| u.iter().find(|u| u["id"] == ana.as_str()).cloned()).unwrap_or_default();
    assert_eq!((&shown["sign_in_failures"], &shown["locked_until"]), (&json!(0), &Value::Null), "{shown}");

    // The trail: a few of the refusals one by one, one summary of the burst with its count, the lockout, the unlock.
    let rows = trail(&env, "user.").await;
    let one_by_one = rows.iter().filter(|r| r["action"] == "user.sign_in" && r["outcome"] == "refused").count();
    let summaries: Vec<&Value> = rows.iter().filter(|r| r["action"] == "user.sign_in.failures").collect();
    // Three at most of each burst: ana's guesses until the lockout, the right password from another address, the
    // login form, the guesses at `nobody`.
    assert!(one_by_one <= 8, "{one_by_one} rows for 23 refusals: {rows:#?}");
    let ana_summary = summaries.iter().find(|r| r["target"] == "ana").unwrap_or_else(|| panic!("{summaries:#?}"));
    assert_eq!(ana_summary["details"]["count"], 10, "{ana_summary}");
    assert_eq!(ana_summary["source"], from);
    let message = ana_summary["details"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("10 failed attempts from 198.51.100.7 for ana between "), "{message}");
    assert_eq!(rows.iter().filter(|r| r["action"] == "user.lockout" && r["target"] == ana.as_str()).count(), 1);
    assert_eq!(rows.iter().filter(|r| r["action"] == "user.unlock").count(), 1);

    // Locked again; the command line lifts it too.
    for i in 0..10 {
        assert_eq!(sign_in_from(&env, from, "ana", &format!("another guess {i:04}")).await.0, 401);
    }
    assert_eq!(sign_in_from(&env, "203.0.113.5", "ana", PASSWORD).await.0, 429);
    let out = cli(&["users", "unlock", "ana"], &env.dir.join("data"), None).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ana is unlocked"));
    assert_eq!(sign_in_from(&env, "203.0.113.5", "ana", PASSWORD).await.0, 200);
}

#[tokio::test]
async fn a_real_user_signs_in_at_once_while_a_guesser_runs_twelve_wrong_sign_ins_elsewhere() {
    // The default limits: a failed attempt waits 1 s, which used to hold up every other sign-in in one line.
    let env = gateway("").await;
    add_user(&env, "ana", "member", json!({})).await;
    let guesses: Vec<_> = (0..12)
        .map(|i| {
            let env = &env;
            async move {
                let started = Instant::now();
                let (s, _, _) =
                    sign_in_from(env, "198.51.100.7", &format!("made-up-{i}"), "wrong password guess").await;
                (s, started.elapsed())
            }
        })
        .collect();
    let real = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started = Instant::now();
        let (s, _, v) = sign_in_from(&env, "203.0.113.5", "ana", PASSWORD).await;
        (s, v, started.elapsed())
    };
    let (guessed, (status, v, took)) = tokio::join!(futures_util::future::join_all(guesses), real);
    assert_eq!(status, 200, "{v}");
    assert!(took < Duration::from_millis(1500), "the real sign-in took {took:?}");
    let refused = guessed.iter().filter(|(s, _)| *s == 401).count();
    let limited = guessed.iter().filter(|(s, _)| *s == 429).count();
    assert_eq!((refused, limited), (10, 2), "ten free failures per address, then 429: {guessed:?}");
    assert!(
        guessed.iter().filter(|(s, _)| *s == 401).all(|(_, t)| *t >= Duration::from_millis(950)),
        "each failure served its own delay: {guessed:?}"
    );
}

#[tokio::test]
async fn a_flood_of_refused_single_sign_on_answers_is_slowed_per_address() {
    // Nothing listens at the issuer: answers with a state that is not the browser's are refused before it is asked.
    let toml = "[dashboard.oidc]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"codex-gateway\"\n\
                [dashboard.attempts]\nfailure_delay_ms = 0\naddress_free_failures = 5\nbackoff_ms = 60000\n";
    let env = gateway(toml).await;
    let callback = |from: &'static str| {
        let env = &env;
        async move {
            let r = client()
                .request(Method::GET, env.url("/dashboard/sso/callback?state=forged&code=forged"))
                .header("x-forwarded-for", from)
                .header("cookie", "cgw_sso=another-state")
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let retry: Option<u64> =
                r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
            (r.status().as_u16(), retry, r.text().await.unwrap_or_default())
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(callback("198.51.100.7").await);
    }
    assert!(statuses[..5].iter().all(|(s, _, _)| *s == 400), "{:?}", &statuses[..5]);
    let (s, retry, page) = &statuses[5];
    assert_eq!(*s, 429, "{page}");
    assert!(retry.is_some_and(|r| r > 50), "{retry:?}");
    assert!(page.contains("Too many failed attempts"), "the login page says so: {page}");
    assert!(statuses[5..].iter().all(|(s, _, _)| *s == 429));
    // Another address is not held up.
    assert_eq!(callback("203.0.113.5").await.0, 400);
    // 41 refusals, a few rows.
    let rows = trail(&env, "user.sign_in").await;
    let refused = rows.iter().filter(|r| r["outcome"] == "refused").count();
    assert!(refused <= 4, "{refused} rows: {rows:#?}");
}
