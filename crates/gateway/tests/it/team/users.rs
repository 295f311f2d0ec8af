//! Users on the team store: a session opened on one instance is honoured on another at once (looked up in the
//! store), and a user removed or disabled on one instance is refused on every other within a poll of the change
//! counter (store/postgres/watch.rs), their keys with them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{ADMIN, Instance, http, instance_with, seed};

const PASSWORD: &str = "team member password";

async fn call(at: &Instance, bearer: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, at.url(path)).bearer_auth(bearer);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// Poll `f` until it is true, for at most `within`; how long it took.
async fn until(within: Duration, mut f: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if f().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_signed_in_on_one_instance_is_honoured_on_the_others_and_refused_everywhere_once_removed() {
    let (fake, _creds, db) = seed(fake_codex::FakeConfig::default(), 0).await;
    let (a, b, c) =
        (instance_with(&fake, &db, "").await, instance_with(&fake, &db, "").await, instance_with(&fake, &db, "").await);
    let get = reqwest::Method::GET;
    let (s, v) = call(
        &a,
        ADMIN,
        reqwest::Method::POST,
        "/admin/users",
        Some(json!({"name": "dev", "role": "member", "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap_or_default().to_string();
    // Signed in on B the moment the user exists (B reads the user from the store), the token used on C at once.
    let (s, v) =
        call(&b, "", reqwest::Method::POST, "/admin/sign-in", Some(json!({"name": "dev", "password": PASSWORD}))).await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap_or_default().to_string();
    for at in [&a, &b, &c] {
        let (s, me) = call(at, &token, get.clone(), "/admin/me", None).await;
        assert_eq!((s, &me["actor"]), (200, &json!("user:dev")), "{me}");
    }
    let (s, key) = call(&c, &token, reqwest::Method::POST, "/admin/keys", Some(json!({"name": "dev laptop"}))).await;
    assert_eq!((s, &key["owner"]), (201, &json!(id)), "{key}");
    let secret = key["secret"].as_str().unwrap_or_default().to_string();
    // A member is refused an admin's route on every instance.
    for at in [&a, &b, &c] {
        assert_eq!(call(at, &token, get.clone(), "/admin/accounts", None).await.0, 403);
    }

    // Removed on A: refused on B and C within a poll, its key with it.
    let (s, v) = call(&a, ADMIN, reqwest::Method::DELETE, &format!("/admin/users/{id}"), None).await;
    assert_eq!(
        (s, &v["sessions_ended"], &v["keys_revoked"].as_array().map(Vec::len)),
        (200, &json!(1), &Some(1)),
        "{v}"
    );
    for at in [&b, &c] {
        let took =
            until(Duration::from_secs(5), async || call(at, &token, get.clone(), "/admin/me", None).await.0 == 401)
                .await;
        assert!(took.is_some_and(|t| t < Duration::from_secs(3)), "session still honoured after removal: {took:?}");
        let models = async || {
            let r = http().get(at.url("/v1/models")).bearer_auth(&secret).send().await;
            r.map(|r| r.status().as_u16()).unwrap_or(0) == 401
        };
        assert!(until(Duration::from_secs(5), models).await.is_some(), "the removed user's key still served");
    }

    // Disabled on C: a new session of another user opened on A ends everywhere too.
    let (s, v) = call(
        &c,
        ADMIN,
        reqwest::Method::POST,
        "/admin/users",
        Some(json!({"name": "ops", "role": "viewer", "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let ops = v["id"].as_str().unwrap_or_default().to_string();
    let (_, v) =
        call(&a, "", reqwest::Method::POST, "/admin/sign-in", Some(json!({"name": "ops", "password": PASSWORD}))).await;
    let token = v["token"].as_str().unwrap_or_default().to_string();
    assert_eq!(call(&b, &token, get.clone(), "/admin/accounts", None).await.0, 200, "a viewer reads the accounts");
    let (s, _) =
        call(&c, ADMIN, reqwest::Method::PATCH, &format!("/admin/users/{ops}"), Some(json!({"disabled": true}))).await;
    assert_eq!(s, 200);
    for at in [&a, &b] {
        let refused = until(Duration::from_secs(5), async || {
            call(at, &token, get.clone(), "/admin/accounts", None).await.0 == 401
        });
        assert!(refused.await.is_some_and(|t| t < Duration::from_secs(3)), "a disabled user's session still honoured");
    }
}
