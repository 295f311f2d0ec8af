//! Per-user attribution and budgets (docs/configuration.md, "User budgets"): a request made with a key a user owns
//! is the user's in its record, the ledger, the usage reports and the metrics; a member reads only their own
//! usage; a user's budget holds across all their keys and is refused in the client's dialect like a key's limit,
//! and every change of it is audited; a member's key maximum holds when keys are created at the same moment.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, start};
use crate::keys::{D, assert_refusal, send};
use crate::records::Collect;
use crate::users::{ADMIN, add_user, call, dashboard_sign_in, page_of, sign_in};

async fn gateway(sink: Option<Arc<Collect>>) -> TestEnv {
    start(Setup {
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.to_string())],
        record_sinks: sink.into_iter().map(|s| s as Arc<dyn codex_gateway::record::RecordSink>).collect(),
        ..Setup::default()
    })
    .await
}

/// A member, signed in, with a key of their own: (user id, session token, key id, key secret).
async fn member_with_key(env: &TestEnv, name: &str) -> (String, String, String, String) {
    let id = add_user(env, name, "member", json!({})).await;
    let token = sign_in(env, name).await;
    let (s, k) = call(env, &token, Method::POST, "/admin/keys", Some(json!({"name": format!("{name} laptop")}))).await;
    assert_eq!((s, &k["owner"]), (201, &json!(id)), "{k}");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (id, token, text(&k["id"]), text(&k["secret"]))
}

/// A chat request with `secret`, under `request_id`: its status.
async fn chat(env: &TestEnv, secret: &str, request_id: &str) -> u16 {
    let body = json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hello"}]});
    let r = env.http.post(env.url("/v1/chat/completions")).bearer_auth(secret).header("x-request-id", request_id);
    r.json(&body).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Poll the admin API at `path` until `ok` holds of its answer (the ledger writes within 250 ms).
async fn eventually(env: &TestEnv, bearer: &str, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (_, v) = call(env, bearer, Method::GET, path, None).await;
        if ok(&v) || started.elapsed() > Duration::from_secs(5) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_users_requests_are_theirs_in_the_record_ledger_reports_and_metrics_and_a_member_reads_only_their_own() {
    let sink = Arc::new(Collect::default());
    let env = gateway(Some(sink.clone())).await;
    let (ana, ana_token, ana_key, ana_secret) = member_with_key(&env, "ana@example.com").await;
    let (bob, _, _, bob_secret) = member_with_key(&env, "bob@example.com").await;
    // A key of nobody's (the admin key's) is nobody's request.
    let (_, gw) = call(&env, ADMIN, Method::POST, "/admin/keys", Some(json!({"name": "gateway's"}))).await;
    let gw_secret = gw["secret"].as_str().unwrap_or_default().to_string();
    for (secret, id) in [(&ana_secret, "ana-1"), (&ana_secret, "ana-2"), (&bob_secret, "bob-1"), (&gw_secret, "gw-1")] {
        assert_eq!(chat(&env, secret, id).await, 200, "{id}");
    }
    // The record (which the access log, the ledger and the metrics read) names the user.
    assert_eq!(sink.one("ana-1").await.user.as_deref(), Some(ana.as_str()));
    assert_eq!(sink.one("bob-1").await.user.as_deref(), Some(bob.as_str()));
    assert_eq!(sink.one("gw-1").await.user, None);

    // The ledger: request rows filtered by user, each naming the user and the key.
    let rows = eventually(&env, ADMIN, &format!("/admin/requests?user={ana}"), |v| {
        v["requests"].as_array().is_some_and(|r| r.len() == 2)
    })
    .await;
    let rows = rows["requests"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["user"] == json!(ana) && r["key"] == json!(ana_key)), "{rows:?}");
    // The report grouped by user: each user's requests, the keyless request under no user.
    let report = eventually(&env, ADMIN, "/admin/usage?group_by=user", |v| v["totals"]["requests"] == json!(4)).await;
    let by: Vec<(Value, Value)> = report["series"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| (s["group"].clone(), s["totals"]["requests"].clone()))
        .collect();
    assert!(by.contains(&(json!(ana), json!(2))) && by.contains(&(json!(bob), json!(1))), "{report}");
    assert!(by.contains(&(Value::Null, json!(1))), "{report}");
    let one = call(&env, ADMIN, Method::GET, &format!("/admin/usage?user={bob}"), None).await.1;
    assert_eq!(one["totals"]["requests"], 1, "{one}");

    // A member reads their own usage only: by key unless they ask, and never another user's.
    let (s, mine) = call(&env, &ana_token, Method::GET, "/admin/usage", None).await;
    assert_eq!((s, &mine["group_by"], &mine["totals"]["requests"]), (200, &json!("key"), &json!(2)), "{mine}");
    let (s, v) = call(&env, &ana_token, Method::GET, "/admin/usage?group_by=model", None).await;
    assert_eq!((s, &v["totals"]["requests"]), (200, &json!(2)), "{v}");
    let (s, v) = call(&env, &ana_token, Method::GET, &format!("/admin/usage?user={bob}"), None).await;
    assert_eq!((s, &v["error"]["code"]), (403, &json!("not_your_usage")), "{v}");
    // The Usage page: the member's own, without a choice of user.
    let (cookie, _) = dashboard_sign_in(&env, "ana@example.com", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    let (s, html) = page_of(&env, &cookie, "/dashboard/usage?group_by=user").await;
    assert_eq!(s, 200, "{html:.500}");
    assert!(html.contains("id=\"usage-requests\">2<"), "{html:.4000}");
    assert!(!html.contains(&bob) && !html.contains("id=\"user\""), "a member is offered no other user");

    // The metrics: requests and tokens per user, labelled by id.
    let metrics = env.http.get(env.url("/metrics")).bearer_auth(ADMIN).send().await;
    let metrics = metrics.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    assert!(metrics.contains(&format!("codex_gateway_user_requests_total{{user=\"{ana}\"}} 2")), "{metrics}");
    assert!(metrics.contains(&format!("codex_gateway_user_requests_total{{user=\"{bob}\"}} 1")), "{metrics}");
    assert!(metrics.contains(&format!("codex_gateway_user_tokens_total{{user=\"{ana}\",kind=\"input\"}}")));
}

/// With `[metrics] user_labels = 1`, the second user's requests count as `other`.
#[tokio::test]
async fn users_past_the_labelled_maximum_count_as_other_in_the_metrics() {
    let env = start(Setup {
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.to_string())],
        config_toml: Some("[metrics]\nuser_labels = 1\n".into()),
        ..Setup::default()
    })
    .await;
    let (ana, _, _, ana_secret) = member_with_key(&env, "ana").await;
    let (bob, _, _, bob_secret) = member_with_key(&env, "bob").await;
    assert_eq!(chat(&env, &ana_secret, "a").await, 200);
    assert_eq!(chat(&env, &bob_secret, "b").await, 200);
    let metrics = env.http.get(env.url("/metrics")).bearer_auth(ADMIN).send().await;
    let metrics = metrics.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    assert!(metrics.contains(&format!("codex_gateway_user_requests_total{{user=\"{ana}\"}} 1")), "{metrics}");
    assert!(metrics.contains("codex_gateway_user_requests_total{user=\"other\"} 1"), "{metrics}");
    assert!(!metrics.contains(&bob), "{metrics}");
}

/// A budget set on a user holds across all their keys, refused in each client's shape as a key's limit is
/// (OpenAI's code, Anthropic's error type), with a message that names the user; the change is audited as
/// `user.budget`; removing the limit admits them again.
#[tokio::test]
async fn a_users_budget_holds_across_their_keys_and_is_refused_in_the_clients_dialect() {
    let env = gateway(None).await;
    let (ana, token, _, first) = member_with_key(&env, "ana@example.com").await;
    let (_, k) = call(&env, &token, Method::POST, "/admin/keys", Some(json!({"name": "second"}))).await;
    let second = k["secret"].as_str().unwrap_or_default().to_string();
    let path = format!("/admin/users/{ana}");
    let (s, v) = call(&env, ADMIN, Method::PATCH, &path, Some(json!({"daily_tokens": 1, "rpm": 0}))).await;
    assert_eq!((s, &v["error"]["type"]), (400, &json!("invalid_request_error")), "rpm 0 is refused: {v}");
    let (s, v) = call(&env, ADMIN, Method::PATCH, &path, Some(json!({"daily_tokens": 1}))).await;
    assert_eq!((s, &v["daily_tokens"], &v["rpm"]), (200, &json!(1), &Value::Null), "{v}");
    // A member may not set their own budget.
    let (s, _) = call(&env, &token, Method::PATCH, &path, Some(json!({"daily_tokens": null}))).await;
    assert_eq!(s, 403);
    // The first request runs (nothing spent yet) and spends the day's budget for both keys.
    assert_eq!(send(&env, D::Chat, &first).await.0, 200);
    let (_, one) = call(&env, ADMIN, Method::GET, &path, None).await;
    assert!(one["usage"]["tokens_today"].as_u64().unwrap_or(0) >= 1, "{one}");
    for (d, secret) in [(D::Chat, &second), (D::Anthropic, &first), (D::Anthropic, &second), (D::Responses, &first)] {
        let (status, headers, body) = send(&env, d, secret).await;
        let words = ["ana@example.com", "across all their keys", "daily token budget"];
        assert_refusal(d, status, &body, 429, "user_daily_token_budget_exceeded", &words);
        assert!(headers.get("retry-after").is_some(), "{d:?}");
    }
    // Audited as a budget change, by the admin key, with the limits and nothing secret.
    let (_, trail) = call(&env, ADMIN, Method::GET, "/admin/audit?action=user.", None).await;
    let rows = trail["entries"].as_array().cloned().unwrap_or_default();
    let budget = |r: &&Value| r["action"] == "user.budget" && r["outcome"] == "ok";
    let ok = rows.iter().find(budget).cloned().unwrap_or_default();
    assert_eq!((&ok["target"], &ok["actor"]), (&json!(ana), &json!("admin-key")), "{rows:#?}");
    assert_eq!(ok["details"]["daily_tokens"], 1, "{ok}");
    let refused = |r: &&Value| r["outcome"] == "refused" && r["actor"] == "user:ana@example.com";
    assert!(rows.iter().any(|r| refused(&r)), "the member's attempt is in the trail: {rows:#?}");
    assert!(!trail.to_string().contains(&first) && !trail.to_string().contains("argon2"), "{trail}");
    // No limit: admitted again.
    let (s, _) = call(&env, ADMIN, Method::PATCH, &path, Some(json!({"daily_tokens": null}))).await;
    assert_eq!(s, 200);
    assert_eq!(send(&env, D::Anthropic, &second).await.0, 200);
}

/// Twelve creations at once by a member who may hold three keys: three are made, the rest refused, on the SQLite
/// store (the check and the insert are one step).
#[tokio::test]
async fn a_members_key_maximum_holds_when_keys_are_created_at_the_same_moment() {
    let env = gateway(None).await;
    let id = add_user(&env, "max", "member", json!({"max_keys": 3})).await;
    let token = sign_in(&env, "max").await;
    let creations = (0..12).map(|i| {
        let (env, token) = (&env, &token);
        async move { call(env, token, Method::POST, "/admin/keys", Some(json!({"name": format!("k{i}")}))).await }
    });
    let outcomes = futures_util::future::join_all(creations).await;
    let made = outcomes.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(made, 3, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|(s, v)| *s == 201 || (*s == 403 && v["error"]["code"] == "too_many_keys")),
        "{outcomes:?}"
    );
    let (_, all) = call(&env, ADMIN, Method::GET, "/admin/keys", None).await;
    let owned = all.as_array().into_iter().flatten().filter(|k| k["owner"] == json!(id)).count();
    assert_eq!(owned, 3, "{all}");
}

/// `codex-gateway users set-budget` on the store: the limits set (`none` removes one), a call without a limit or
/// with a 0 rate refused with a clear message, each change audited as `user.budget` by the OS user.
#[tokio::test]
async fn the_users_command_sets_a_budget_and_audits_it() {
    let data = std::env::temp_dir().join(format!("cgw-budget-cli-{}", uuid::Uuid::new_v4().simple()));
    let ok = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    ok(&crate::users::cli(&["users", "add", "ana"], &data, None).await);
    let out =
        ok(&crate::users::cli(&["users", "set-budget", "ana", "--daily-tokens", "100", "--rpm", "5"], &data, None)
            .await);
    assert!(out.contains("rpm 5") && out.contains("daily tokens 100"), "{out}");
    let out = ok(&crate::users::cli(&["users", "set-budget", "ana", "--rpm", "none"], &data, None).await);
    assert!(out.contains("rpm none") && out.contains("daily tokens 100"), "{out}");
    for (args, words) in [
        (vec!["users", "set-budget", "ana"], "set at least one"),
        (vec!["users", "set-budget", "ana", "--rpm", "0"], "at least 1"),
        (vec!["users", "set-budget", "ana", "--daily-tokens", "lots"], "not a number"),
    ] {
        let o = crate::users::cli(&args, &data, None).await;
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(words), "{args:?}: {err}");
    }
    let list = ok(&crate::users::cli(&["users", "list"], &data, None).await);
    assert!(list.contains("daily") && list.contains("100"), "{list}");
    let store = codex_gateway::store::Store::open(&data.join("gateway.db")).unwrap_or_else(|e| panic!("{e:#}"));
    let rows = store.audit_rows(&Default::default()).unwrap_or_else(|e| panic!("{e:#}"));
    let budgets = rows.iter().filter(|r| r.action == "user.budget" && r.actor.starts_with("cli:")).count();
    assert_eq!(budgets, 2, "{rows:#?}");
    let _ = std::fs::remove_dir_all(&data);
}

/// Issue 88: a member's `/admin/requests` needed `key=` one of their keys. Without it now: the member's own requests
/// across all their keys, none of anyone else's; naming another user's key (or user) is refused.
#[tokio::test]
async fn a_member_lists_their_own_requests_across_their_keys_without_naming_one() {
    let env = gateway(None).await;
    let (ana, ana_token, ana_key, ana_secret) = member_with_key(&env, "ana@example.com").await;
    let (s, k2) = call(&env, &ana_token, Method::POST, "/admin/keys", Some(json!({"name": "ana desktop"}))).await;
    assert_eq!(s, 201, "{k2}");
    let (ana_key2, ana_secret2) = (k2["id"].as_str().unwrap_or_default(), k2["secret"].as_str().unwrap_or_default());
    let (bob, _, bob_key, bob_secret) = member_with_key(&env, "bob@example.com").await;
    for (secret, id) in [(&ana_secret, "a1"), (&ana_secret2.to_string(), "a2"), (&bob_secret, "b1")] {
        assert_eq!(chat(&env, secret, id).await, 200, "{id}");
    }
    eventually(&env, ADMIN, "/admin/requests", |v| v["requests"].as_array().is_some_and(|r| r.len() == 3)).await;

    let (s, mine) = call(&env, &ana_token, Method::GET, "/admin/requests", None).await;
    let rows = mine["requests"].as_array().cloned().unwrap_or_default();
    assert_eq!((s, rows.len()), (200, 2), "{mine}");
    assert!(rows.iter().all(|r| r["user"] == json!(ana)), "{mine}");
    let keys: Vec<&Value> = rows.iter().map(|r| &r["key"]).collect();
    assert!(keys.contains(&&json!(ana_key)) && keys.contains(&&json!(ana_key2)), "both of ana's keys: {mine}");
    // Narrowed to one of theirs, and the CSV form.
    let (s, one) = call(&env, &ana_token, Method::GET, &format!("/admin/requests?key={ana_key2}"), None).await;
    assert_eq!((s, one["requests"].as_array().map(Vec::len)), (200, Some(1)), "{one}");
    let csv = env.http.get(env.url("/admin/requests?format=csv")).bearer_auth(&ana_token).send().await;
    let csv = csv.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    assert_eq!(csv.lines().count(), 3, "a header and ana's two rows: {csv}");
    assert!(!csv.contains(&bob_key), "{csv}");
    // Someone else's: refused, not emptied.
    let (s, v) = call(&env, &ana_token, Method::GET, &format!("/admin/requests?key={bob_key}"), None).await;
    assert_eq!((s, &v["error"]["code"]), (403, &json!("not_your_key")), "{v}");
    let (s, v) = call(&env, &ana_token, Method::GET, &format!("/admin/requests?user={bob}"), None).await;
    assert_eq!((s, &v["error"]["code"]), (403, &json!("not_your_usage")), "{v}");
}
