//! Stewardship with the defaults (issue 71): one careful person's pace per account, an account in trouble left
//! alone, and quota spent where it would otherwise expire, through the real gateway against fake-codex.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, scenario, start};

fn pool(n: usize, plans: Vec<&'static str>) -> Setup {
    Setup { accounts: n, linked: false, store_accounts: true, plans, ..Setup::default() }
}

fn chat(text: &str) -> Value {
    json!({"model":"gpt-5.4","messages":[{"role":"user","content":text}]})
}

/// Successful `/responses` answers per fake account id.
pub(crate) fn served(env: &TestEnv) -> HashMap<String, usize> {
    let mut by = HashMap::new();
    for r in env.fake.requests_to("/responses").into_iter().filter(|r| r.status == 200) {
        *by.entry(r.account_id.unwrap_or_default()).or_insert(0) += 1;
    }
    by
}

/// 24 requests at once on one account: at most four reach the upstream together (one heavy user of the official
/// client), the rest wait in the account's queue and are all served.
#[tokio::test]
async fn an_account_takes_no_more_requests_at_once_than_one_person_and_the_rest_wait() {
    let env = start(pool(1, vec![])).await;
    for _ in 0..24 {
        env.fake.enqueue(None, scenario(json!({"kind":"slow","text":"step done","deltas":4,"delay_ms":120})));
    }
    let mut tasks = Vec::new();
    for i in 0..24 {
        let (http, url) = (env.http.clone(), env.url("/v1/chat/completions"));
        tasks.push(tokio::spawn(async move {
            match http.post(url).json(&chat(&format!("a separate task {i}"))).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            }
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap_or(0));
    }
    assert!(statuses.iter().all(|s| *s == 200), "every request is served, none refused: {statuses:?}");
    let account = &env.accounts[0].account_id;
    let peak = env.fake.peak_streaming(account);
    assert_eq!(peak, planner::defaults::MAX_IN_FLIGHT, "the most answers streaming at once on the account");
}

/// An account that answers "overloaded" is left alone: its pace halves at once, and the second overload in a
/// row rests it (a cooldown with its reason), so no third request reaches it and the next ten all go to another
/// account; the admin API and the metrics show it.
#[tokio::test]
async fn an_overloaded_account_slows_down_then_rests() {
    let env = start(pool(2, vec![])).await;
    let a = env.accounts[0].account_id.clone();
    let listed = env.get_json("/admin/accounts").await;
    let id_of = |email: &str| {
        listed
            .as_array()
            .and_then(|l| l.iter().find(|r| r["email"] == email))
            .map(|r| r["id"].as_str().unwrap_or("").to_string())
    };
    let (first, other) =
        (id_of(&env.accounts[0].email).unwrap_or_default(), id_of(&env.accounts[1].email).unwrap_or_default());
    // Only the first account serves while the upstream is overloaded.
    let post = |path: String| env.http.post(env.url(&path)).json(&json!({})).send();
    assert!(post(format!("/admin/accounts/{other}/disable")).await.is_ok_and(|r| r.status() == 200));
    for _ in 0..3 {
        env.fake.enqueue(Some(&a), scenario(json!({"kind":"overloaded"})));
    }
    for i in 0..3 {
        let (status, _, text) = env.post("/v1/chat/completions", &chat(&format!("busy moment {i}"))).await;
        assert_eq!(status, 503, "{text}");
    }
    let reached = env.fake.requests_to("/responses").iter().filter(|r| r.account_id.as_deref() == Some(&a)).count();
    assert_eq!(reached, 2, "the second overload in a row rests the account: the third request does not reach it");
    let row = env.get_json(&format!("/admin/accounts/{first}")).await;
    assert_eq!(row["cooldowns"][0]["kind"], "overloaded", "{row}");
    assert_eq!(row["stewardship"]["limit"], 1, "the pace halved twice: {row}");
    assert_eq!(row["stewardship"]["overload_streak"], 2, "{row}");
    // Another account comes back: the next ten requests all go there.
    assert!(post(format!("/admin/accounts/{other}/enable")).await.is_ok_and(|r| r.status() == 200));
    for i in 0..10 {
        let (status, _, text) = env.post("/v1/chat/completions", &chat(&format!("after the storm {i}"))).await;
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(served(&env).get(&a).copied().unwrap_or(0), 0, "the resting account served none of the ten");
    let metrics = match env.http.get(env.url("/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let limit_line =
        metrics.lines().find(|l| l.starts_with("codex_gateway_account_concurrency_limit{") && l.contains(&first));
    let limit = limit_line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse::<f64>().ok());
    assert_eq!(limit, Some(1.0), "{metrics}");
}

/// Quota that would otherwise expire is spent first: an account whose five-hour window is 40% used and resets in
/// ten minutes takes the new conversations, not one 20% used with four hours to go (least_used, the previous
/// default, gives it none); and a Pro at 50% takes them before a Plus at 40%.
#[tokio::test]
async fn new_conversations_spend_what_would_otherwise_expire() {
    let now = codex_gateway::auth::now_unix();
    for (strategy, expiring_share) in [("planner", 10..=12), ("least_used", 0..=2)] {
        let toml = format!("[routing]\nstrategy = \"{strategy}\"");
        let env = start(Setup { config_toml: Some(toml), ..pool(2, vec![]) }).await;
        let (a, b) = (env.accounts[0].account_id.clone(), env.accounts[1].account_id.clone());
        env.fake.set_quota(&a, 40.0, 10.0, Some(now + 600));
        env.fake.set_quota(&b, 20.0, 10.0, Some(now + 4 * 3600));
        for i in 0..12 {
            let (status, _, text) = env.post("/v1/chat/completions", &chat(&format!("conversation {i}"))).await;
            assert_eq!(status, 200, "{text}");
        }
        let to_a = served(&env).get(&a).copied().unwrap_or(0);
        assert!(expiring_share.contains(&to_a), "{strategy}: the expiring account served {to_a} of 12");
    }
    for (strategy, pro_share) in [("planner", 10..=12), ("least_used", 0..=2)] {
        let toml = format!("[routing]\nstrategy = \"{strategy}\"");
        let env = start(Setup { config_toml: Some(toml), ..pool(2, vec!["plus", "pro"]) }).await;
        let (plus, pro) = (env.accounts[0].account_id.clone(), env.accounts[1].account_id.clone());
        env.fake.set_quota(&plus, 40.0, 10.0, Some(now + 3 * 3600));
        env.fake.set_quota(&pro, 50.0, 10.0, Some(now + 3 * 3600));
        for i in 0..12 {
            let (status, _, text) = env.post("/v1/chat/completions", &chat(&format!("conversation {i}"))).await;
            assert_eq!(status, 200, "{text}");
        }
        let to_pro = served(&env).get(&pro).copied().unwrap_or(0);
        assert!(pro_share.contains(&to_pro), "{strategy}: the Pro account served {to_pro} of 12");
    }
}
