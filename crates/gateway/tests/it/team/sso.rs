//! Single sign-on on a team (docs/dashboard.md "Single sign-on"): the sign-in started on one instance comes back,
//! through the balancer, to another, which finds it in the team store (store/identities.rs); the session it opens
//! works on every instance; the same answer replayed to the first instance is refused. The provider is the real
//! one of crates/gateway/tests/it/oidc.rs.

use serde_json::{Value, json};

use super::{ADMIN, instance_with, seed};
use crate::oidc::{Browser, CLIENT_ID, CLIENT_SECRET, free_port, idp};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sign_in_started_on_one_instance_finishes_on_another() {
    let (fake, _creds, db) = seed(fake_codex::FakeConfig::default(), 0).await;
    let (port, front) = (free_port(), free_port());
    // The balancer's address is the public URL: the provider sends the browser back there, and the test's browser
    // routes it to instance B.
    let public = format!("http://127.0.0.1:{front}");
    let toml = format!(
        "[dashboard.oidc]\nissuer = \"http://127.0.0.1:{port}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret = \"{CLIENT_SECRET}\"\npublic_url = \"{public}\"\n"
    );
    let (a, b) = (instance_with(&fake, &db, &toml).await, instance_with(&fake, &db, &toml).await);
    let _idp = idp(port, &public, "RS256", json!({"hal": {"email": "hal@example.com"}}));
    let mut browser = Browser::default();
    browser.balancer = Some((public.clone(), b.url("")));
    let (page, callback) = browser.sign_in_at(&a.url("/dashboard/sso/start"), "hal").await;
    assert!(callback.starts_with(&b.url("/dashboard/sso/callback")), "{callback}");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(browser.session().is_some(), "a session from B");
    browser.balancer = None;
    let keys = browser.open(&a.url("/dashboard/keys")).await;
    assert_eq!(keys.status, 200, "the session works on A too");

    let users: Value = reqwest::Client::new()
        .get(a.url("/admin/users"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or(Value::Null);
    assert!(users.as_array().is_some_and(|u| u.iter().any(|u| u["name"] == "hal@example.com")), "{users}");

    // The same answer at A: B took the sign-in from the store, there is nothing left to finish.
    let state = callback.split("state=").nth(1).and_then(|s| s.split('&').next()).unwrap_or_default().to_string();
    let mut replay = Browser::default();
    replay.jar_insert("cgw_sso", &state);
    let again = replay.send(reqwest::Method::GET, &callback.replacen(&b.url(""), &a.url(""), 1), None).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert!(again.body.contains("expired or was already used"), "{}", again.body);
}
