//! A user's budget on the team store (docs/configuration.md, "User budgets"): spent through two of the user's
//! keys on two instances, refused on a third that served none of it, within the bound a key's budget has (a
//! ledger flush and a budget poll); the team's ledger names the user on every request.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ADMIN, Instance, ONE_TEAM, admin_json, chat_spend, http, team, within};

const PASSWORD: &str = "team budget password";

async fn send(at: &Instance, bearer: &str, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let r = http().request(method, at.url(path)).bearer_auth(bearer).json(&body).send().await;
    let r = r.unwrap_or_else(|e| panic!("{path}: {e}"));
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_users_budget_spent_through_two_keys_on_a_and_b_is_refused_on_c() {
    let _one_team_at_a_time = ONE_TEAM.lock().await;
    let (_fake, _, [a, b, c], _db) = team(fake_codex::FakeConfig::default(), 1).await;
    let post = reqwest::Method::POST;
    let (s, v) =
        send(&a, ADMIN, post.clone(), "/admin/users", json!({"name": "lea", "role": "member", "password": PASSWORD}))
            .await;
    assert_eq!(s, 201, "{v}");
    let user = v["id"].as_str().unwrap_or_default().to_string();
    let (s, v) = send(&b, "", post.clone(), "/admin/sign-in", json!({"name": "lea", "password": PASSWORD})).await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap_or_default().to_string();
    // Two keys of hers, made on two instances.
    let mut secrets = Vec::new();
    for (at, name) in [(&a, "laptop"), (&b, "ci")] {
        let (s, k) = send(at, &token, post.clone(), "/admin/keys", json!({"name": name})).await;
        assert_eq!((s, &k["owner"]), (201, &json!(user)), "{k}");
        secrets.push(k["secret"].as_str().unwrap_or_default().to_string());
    }
    // What one request costs, then a budget of one and a half of them, set on C.
    let (status, cost, _) = chat_spend(&http(), &a, &secrets[0]).await;
    assert!(status == 200 && cost >= 2, "{status} {cost}");
    let budget = cost * 5 / 2;
    let (s, v) =
        send(&c, ADMIN, reqwest::Method::PATCH, &format!("/admin/users/{user}"), json!({"daily_tokens": budget})).await;
    assert_eq!((s, &v["daily_tokens"]), (200, &json!(budget)), "{v}");
    // Every instance knows the budget before the spend (the change counter's poll).
    let known = within(Duration::from_secs(5), || async {
        let mut all = true;
        for at in [&a, &b, &c] {
            all &= admin_json(&http(), at, &format!("/admin/users/{user}")).await["daily_tokens"] == json!(budget);
        }
        all
    })
    .await;
    assert!(known.is_some(), "not every instance read the budget");
    let client = http();
    let (on_a, on_b) = tokio::join!(chat_spend(&client, &a, &secrets[0]), chat_spend(&client, &b, &secrets[1]));
    assert_eq!((on_a.0, on_b.0), (200, 200), "under the budget on each instance");
    let spent = cost + on_a.1 + on_b.1;
    let started = Instant::now();
    let counted = within(Duration::from_secs(5), || async {
        let u = admin_json(&http(), &c, &format!("/admin/users/{user}")).await;
        u["usage"]["tokens_today"].as_u64().unwrap_or(0) >= spent
    })
    .await;
    assert!(counted.is_some(), "C did not count the user's spend: {}", admin_json(&http(), &c, "/admin/users").await);
    eprintln!("C counted the user's team spend {:?} after the requests", started.elapsed());
    for secret in &secrets {
        let (status, _, code) = chat_spend(&http(), &c, secret).await;
        assert_eq!((status, code.as_str()), (429, "user_daily_token_budget_exceeded"), "C admitted a spent user");
    }
    // The team's ledger names her on each request (the refused ones too), and a report groups by her.
    let path = format!("/admin/usage?group_by=user&user={user}");
    let all_five = within(Duration::from_secs(5), || async {
        admin_json(&http(), &a, &path).await["totals"]["requests"].as_u64() == Some(5)
    })
    .await;
    let report = admin_json(&http(), &a, &path).await;
    assert!(all_five.is_some(), "{report}");
    let series = report["series"].as_array().cloned().unwrap_or_default();
    assert_eq!((series.len(), &series[0]["group"]), (1, &json!(user)), "{report}");
}

/// A member who may hold three keys creates nine at the same moment, three on each instance: three are made in
/// all (the count and the insert are one step under the store's advisory lock), the rest refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_members_key_maximum_holds_when_keys_are_created_on_three_instances_at_once() {
    let _one_team_at_a_time = ONE_TEAM.lock().await;
    let (_fake, _, [a, b, c], _db) = team(fake_codex::FakeConfig::default(), 0).await;
    let post = reqwest::Method::POST;
    let body = json!({"name": "max", "role": "member", "password": PASSWORD, "max_keys": 3});
    let (s, v) = send(&a, ADMIN, post.clone(), "/admin/users", body).await;
    assert_eq!(s, 201, "{v}");
    let (_, v) = send(&a, "", post.clone(), "/admin/sign-in", json!({"name": "max", "password": PASSWORD})).await;
    let token = v["token"].as_str().unwrap_or_default().to_string();
    let at = [&a, &b, &c];
    let creations = (0..9).map(|i| {
        let (token, post, at) = (&token, post.clone(), at[i % 3]);
        async move { send(at, token, post, "/admin/keys", json!({"name": format!("k{i}")})).await }
    });
    let outcomes = futures_util::future::join_all(creations).await;
    assert_eq!(outcomes.iter().filter(|(s, _)| *s == 201).count(), 3, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|(s, v)| *s == 201 || (*s == 403 && v["error"]["code"] == "too_many_keys")),
        "{outcomes:?}"
    );
}
