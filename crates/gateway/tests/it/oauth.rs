//! The Codex CLI's gateway sign-in (oauth/, docs/dashboard.md "The Codex CLI's sign-in") over HTTP, playing the
//! CLI and the browser: the authorization code with PKCE to a loopback redirect, the device code approved on its
//! page, refresh with rotation, and each refusal in its RFC 6749/8628 shape; the token on the model routes served
//! as the user in place of a client key, refused once the user is disabled or their role lowered.
//! (tests/clients/test_gateway_oauth.py drives the official CLI itself through the same endpoints.)

use base64::Engine;
use codex_gateway::store::Store;
use codex_gateway::store::users::StoredSession;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{Setup, TestEnv, start};
use crate::users::{ADMIN, add_user, call, client, dashboard_sign_in};

const CLIENT_KEY: &str = "sk-oauth-client-key-5e1b";
const VERIFIER: &str = "a-verifier-of-enough-length-0123456789-abcdefghijkl";
const REDIRECT: &str = "http://127.0.0.1:1457/callback";

/// A form's fields, as the CLI sends them.
type Form<'a> = &'a [(&'a str, &'a str)];

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn gateway() -> TestEnv {
    start(Setup {
        accounts: 1,
        client_key: Some(CLIENT_KEY.into()),
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.to_string())],
        ..Setup::default()
    })
    .await
}

fn authorize_path(q: &[(&str, &str)]) -> String {
    let query: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(q).finish();
    format!("/dashboard/oauth/authorize?{query}")
}

fn good_query(state: &str, challenge: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", "codex-cli".into()),
        ("redirect_uri", REDIRECT.into()),
        ("code_challenge", challenge.into()),
        ("code_challenge_method", "S256".into()),
        ("state", state.into()),
        ("scope", "models".into()),
    ]
}

/// GET the authorization URL as the browser: the status and `Location`.
async fn browse(env: &TestEnv, cookie: Option<&str>, path: &str) -> (u16, String, String) {
    let mut req = client().get(env.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = r.status().as_u16();
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (status, location, r.text().await.unwrap_or_default())
}

/// A code for the signed-in `cookie`.
async fn code_for(env: &TestEnv, cookie: &str) -> String {
    let q = good_query("st-1", &challenge(VERIFIER));
    let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, location, body) = browse(env, Some(cookie), &authorize_path(&pairs)).await;
    assert!((300..400).contains(&status), "{status} {body}");
    let back = url::Url::parse(&location).unwrap_or_else(|e| panic!("{location}: {e}"));
    assert_eq!(&back[..url::Position::AfterPath], REDIRECT, "back to the CLI's loopback port");
    let q: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"), "state echoed");
    q.get("code").cloned().unwrap_or_else(|| panic!("no code: {location}"))
}

/// POST a form to the token (or device) endpoint as the CLI does.
async fn form(env: &TestEnv, path: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
    let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let r = client()
        .post(env.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = r.status().as_u16();
    assert_eq!(r.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"), "{path}");
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn exchange(env: &TestEnv, code: &str, verifier: &str) -> (u16, Value) {
    form(
        env,
        "/dashboard/oauth/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "codex-cli"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn refresh(env: &TestEnv, token: &str) -> (u16, Value) {
    form(
        env,
        "/dashboard/oauth/token",
        &[("grant_type", "refresh_token"), ("client_id", "codex-cli"), ("refresh_token", token)],
    )
    .await
}

/// A model call with the CLI's token in its header (and no client key): the status and the error code.
async fn model_call(env: &TestEnv, token: &str) -> (u16, String) {
    let r = client()
        .post(env.url("/v1/responses"))
        .header("x-gateway-token", format!("Bearer {token}"))
        .json(&json!({"model": "gpt-5.4", "input": "hi", "stream": false}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or_default().to_string())
}

fn str_of(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("no {k}: {v}")).to_string()
}

#[tokio::test]
async fn a_code_with_pkce_gives_tokens_once_and_a_second_use_revokes_them() {
    let env = gateway().await;
    add_user(&env, "mia", "member", json!({})).await;
    // No session: the login, with the way back.
    let q = good_query("st-1", &challenge(VERIFIER));
    let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, location, _) = browse(&env, None, &authorize_path(&pairs)).await;
    assert!((300..400).contains(&status), "{status}");
    assert!(location.starts_with("/dashboard/login?next=%2Fdashboard%2Foauth%2Fauthorize%3F"), "{location}");
    let (cookie, _) = dashboard_sign_in(&env, "mia", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    let code = code_for(&env, &cookie).await;
    // Without a client key nothing is served; the code's token stands in for one.
    let (no_key, _) = model_call(&env, "cga_not-a-token").await;
    assert_eq!(no_key, 401);
    let (s, v) = exchange(&env, &code, "b-wrong-verifier-of-enough-length-0123456789-abcdefg").await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    let (s, v) = exchange(&env, &code, VERIFIER).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    let access = str_of(&v, "access_token");
    assert!(access.starts_with("cga_"), "{v}");
    assert_eq!(model_call(&env, &access).await, (200, String::new()));
    // The same code again: refused, and what it was exchanged for is revoked (RFC 6749 §4.1.2).
    let (s, v) = exchange(&env, &code, VERIFIER).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    assert_eq!(model_call(&env, &access).await, (401, "invalid_token".into()));
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_family() {
    let env = gateway().await;
    add_user(&env, "mia", "member", json!({})).await;
    let (cookie, _) = dashboard_sign_in(&env, "mia", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    let code = code_for(&env, &cookie).await;
    let (_, first) = exchange(&env, &code, VERIFIER).await;
    let (s, second) = refresh(&env, &str_of(&first, "refresh_token")).await;
    assert_eq!(s, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"], "rotated");
    assert_eq!(model_call(&env, &str_of(&second, "access_token")).await.0, 200);
    // The first refresh token again: a leaked copy; the whole family goes.
    let (s, v) = refresh(&env, &str_of(&first, "refresh_token")).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    assert_eq!(model_call(&env, &str_of(&second, "access_token")).await, (401, "invalid_token".into()));
    let (_, v) = refresh(&env, &str_of(&second, "refresh_token")).await;
    assert_eq!(v["error"], "invalid_grant");
    // Every issue, refresh and refusal is in the audit trail, without a token.
    let (_, audit) = call(&env, ADMIN, reqwest::Method::GET, "/admin/audit?limit=200", None).await;
    let text = audit.to_string();
    for action in ["oauth.authorize", "oauth.token.issue", "oauth.token.refresh", "oauth.token.refused"] {
        assert!(text.contains(action), "{action} in {text}");
    }
    for secret in [&first["access_token"], &first["refresh_token"], &second["refresh_token"]] {
        let secret = secret.as_str().unwrap_or("missing");
        assert!(!text.contains(secret), "no token in the trail");
    }
}

#[tokio::test]
async fn bad_authorization_and_token_requests_get_the_rfc_errors() {
    let env = gateway().await;
    add_user(&env, "mia", "member", json!({})).await;
    let (cookie, _) = dashboard_sign_in(&env, "mia", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    let ch = challenge(VERIFIER);
    let with = |k: &'static str, v: &'static str| {
        let mut q = good_query("st-9", &ch);
        q.retain(|(n, _)| *n != k);
        if !v.is_empty() {
            q.push((k, v.into()));
        }
        q
    };
    // A redirect that is not loopback, or another client: a page, never a redirect.
    for q in [
        with("redirect_uri", "https://evil.example/cb"),
        with("redirect_uri", "http://127.0.0.1/cb"),
        with("client_id", "other"),
    ] {
        let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, location, _) = browse(&env, Some(&cookie), &authorize_path(&pairs)).await;
        assert_eq!((status, location.as_str()), (400, ""), "{q:?}");
    }
    // No PKCE, or plain: back to the CLI with the error and the state.
    for q in [with("code_challenge_method", "plain"), with("code_challenge", "")] {
        let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (_, location, _) = browse(&env, Some(&cookie), &authorize_path(&pairs)).await;
        assert!(location.starts_with(REDIRECT) && location.contains("error=invalid_request"), "{location}");
        assert!(location.contains("state=st-9"), "{location}");
    }
    let token = "/dashboard/oauth/token";
    let cases: &[(Form, u16, &str)] = &[
        (&[("grant_type", "authorization_code"), ("client_id", "other"), ("code", "x")], 401, "invalid_client"),
        (&[("grant_type", "password"), ("client_id", "codex-cli")], 400, "unsupported_grant_type"),
        (&[("client_id", "codex-cli")], 400, "invalid_request"),
        (&[("grant_type", "refresh_token")], 400, "invalid_request"),
        (
            &[("grant_type", "refresh_token"), ("grant_type", "refresh_token"), ("client_id", "codex-cli")],
            400,
            "invalid_request",
        ),
        (
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "codex-cli"),
                ("code", "unknown"),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
            400,
            "invalid_grant",
        ),
        (
            &[("grant_type", "refresh_token"), ("client_id", "codex-cli"), ("refresh_token", "cgr_unknown")],
            400,
            "invalid_grant",
        ),
        (
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", "codex-cli"),
                ("device_code", "unknown"),
            ],
            400,
            "invalid_grant",
        ),
    ];
    for (pairs, status, error) in cases {
        let (s, v) = form(&env, token, pairs).await;
        assert_eq!((s, v["error"].as_str()), (*status, Some(*error)), "{pairs:?}: {v}");
        assert!(v["error_description"].is_string(), "{v}");
    }
    // A code for another redirect than the one it was made for.
    let code = code_for(&env, &cookie).await;
    let (s, v) = form(
        &env,
        token,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "codex-cli"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9999/callback"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    let (s, v) = form(&env, "/dashboard/oauth/device/code", &[("client_id", "other")]).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")), "{v}");
}

async fn poll(env: &TestEnv, device_code: &str) -> (u16, Value) {
    form(
        env,
        "/dashboard/oauth/token",
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", "codex-cli"),
        ],
    )
    .await
}

async fn decide(env: &TestEnv, cookie: &str, csrf: &str, user_code: &str, approve: bool) -> (u16, Value) {
    let r = client()
        .post(env.url("/dashboard/api/oauth/device"))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .json(&json!({"user_code": user_code, "approve": approve}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_device_code_waits_for_approval_and_expires() {
    let env = gateway().await;
    add_user(&env, "mia", "member", json!({})).await;
    add_user(&env, "vic", "viewer", json!({})).await;
    let (s, start) =
        form(&env, "/dashboard/oauth/device/code", &[("client_id", "codex-cli"), ("scope", "models")]).await;
    assert_eq!(s, 200, "{start}");
    let (device, user_code) = (str_of(&start, "device_code"), str_of(&start, "user_code"));
    assert_eq!(start["verification_uri"], env.url("/dashboard/oauth/device"));
    assert_eq!(start["interval"], 2);
    assert_eq!(poll(&env, &device).await.1["error"], "authorization_pending");
    assert_eq!(poll(&env, &device).await.1["error"], "slow_down", "polled at once again");
    // The page wants a session; a viewer may not approve; a member may.
    let (status, location, _) = browse(&env, None, &format!("/dashboard/oauth/device?user_code={user_code}")).await;
    assert!((300..400).contains(&status) && location.starts_with("/dashboard/login?next="), "{location}");
    let (vic, vic_csrf) = dashboard_sign_in(&env, "vic", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(browse(&env, Some(&vic), "/dashboard/oauth/device").await.0, 403);
    assert_eq!(decide(&env, &vic, &vic_csrf, &user_code, true).await.0, 403);
    let (mia, mia_csrf) = dashboard_sign_in(&env, "mia", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    let (status, _, page) = browse(&env, Some(&mia), &format!("/dashboard/oauth/device?user_code={user_code}")).await;
    assert_eq!(status, 200);
    assert!(page.contains(&user_code), "the code is filled in");
    assert_eq!(decide(&env, &mia, "wrong-csrf", &user_code, true).await.0, 403);
    assert_eq!(decide(&env, &mia, &mia_csrf, "BCDF-GHJK", true).await.0, 400, "not a live code");
    let (s, v) = decide(&env, &mia, &mia_csrf, &user_code.to_lowercase(), true).await;
    assert_eq!(s, 200, "{v}");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, v) = poll(&env, &device).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(model_call(&env, &str_of(&v, "access_token")).await.0, 200);
    assert_eq!(poll(&env, &device).await.1["error"], "invalid_grant", "a device code is used once");
    // Denied.
    let (_, start) = form(&env, "/dashboard/oauth/device/code", &[("client_id", "codex-cli")]).await;
    assert_eq!(decide(&env, &mia, &mia_csrf, &str_of(&start, "user_code"), false).await.0, 200);
    assert_eq!(poll(&env, &str_of(&start, "device_code")).await.1["error"], "access_denied");
    // Expired (its row moved into the past, as ten minutes would).
    let (_, start) = form(&env, "/dashboard/oauth/device/code", &[("client_id", "codex-cli")]).await;
    let store = codex_gateway::store::Store::open(&env.dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    store
        .with_conn(|c| {
            c.execute("UPDATE oauth_grants SET expires_at = 1 WHERE kind = 'device' AND state = 'pending'", [])
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(poll(&env, &str_of(&start, "device_code")).await.1["error"], "expired_token");
    assert_eq!(decide(&env, &mia, &mia_csrf, &str_of(&start, "user_code"), true).await.0, 400);
}

#[tokio::test]
async fn a_token_is_refused_once_its_user_is_disabled_or_made_a_viewer() {
    let env = gateway().await;
    let mia = add_user(&env, "mia", "member", json!({})).await;
    let (cookie, _) = dashboard_sign_in(&env, "mia", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    let (_, v) = exchange(&env, &code_for(&env, &cookie).await, VERIFIER).await;
    let access = str_of(&v, "access_token");
    assert_eq!(model_call(&env, &access).await.0, 200);
    let (s, _) =
        call(&env, ADMIN, reqwest::Method::PATCH, &format!("/admin/users/{mia}"), Some(json!({"role": "viewer"})))
            .await;
    assert_eq!(s, 200);
    assert_eq!(model_call(&env, &access).await, (403, "role_forbidden".into()));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, audit) = call(&env, ADMIN, reqwest::Method::GET, "/admin/audit?limit=50", None).await;
    assert!(audit.to_string().contains("role_forbidden"), "the refusal is in the trail: {audit}");
    let (s, v) = refresh(&env, &str_of(&v, "refresh_token")).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("access_denied")), "a viewer gets no new token: {v}");
    let (s, _) = call(
        &env,
        ADMIN,
        reqwest::Method::PATCH,
        &format!("/admin/users/{mia}"),
        Some(json!({"role": "member", "disabled": true})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(model_call(&env, &access).await, (401, "invalid_token".into()));
}

/// Rows of the Codex CLI's sign-in and sessions tagged `tag`, in `store`: expired ones at `now` (a refresh token, a
/// device code two days past its expiry, a dashboard session and an access token) and as many live ones.
pub(crate) fn put_sign_ins(store: &Store, tag: &str, now: i64) {
    use codex_gateway::store::oauth::{StoredGrant, StoredRefresh};
    for (state, expires_at, grant_expires_at) in
        [("expired", now - 1, now - 2 * 86_400), ("live", now + 3600, now + 600)]
    {
        let id = |what: &str| format!("{tag}-{state}-{what}");
        let put = store
            .insert_grant(&StoredGrant {
                id_sha256: id("grant"),
                kind: "device".into(),
                user_code_sha256: Some(id("user-code")),
                client_id: "codex-cli".into(),
                user_id: None,
                redirect_uri: None,
                code_challenge: None,
                scope: None,
                state: "pending".into(),
                family: None,
                created_at: grant_expires_at - 600,
                expires_at: grant_expires_at,
                polled_at: None,
            })
            .and_then(|()| {
                store.insert_refresh(&StoredRefresh {
                    token_sha256: id("refresh"),
                    family: id("family"),
                    user_id: "usr_gone".into(),
                    client_id: "codex-cli".into(),
                    scope: None,
                    access_sha256: id("oauth"),
                    created_at: now - 86_400,
                    expires_at,
                    used_at: None,
                })
            });
        put.unwrap_or_else(|e| panic!("{e:#}"));
        for method in ["password", "oauth"] {
            let session = StoredSession {
                token_sha256: id(method),
                user_id: "usr_gone".into(),
                method: method.into(),
                created_at: now - 86_400,
                expires_at,
            };
            store.insert_session(&session).unwrap_or_else(|e| panic!("{e:#}"));
        }
    }
}

/// How many of [`put_sign_ins`]'s rows tagged `tag` are left in `store`: (expired, live), four of each put.
pub(crate) fn sign_ins_left(store: &Store, tag: &str) -> (usize, usize) {
    let left = |state: &str| {
        let id = |what: &str| format!("{tag}-{state}-{what}");
        let found = [
            store.find_grant(&id("grant")).map(|g| g.is_some()),
            store.find_refresh(&id("refresh")).map(|r| r.is_some()),
            store.find_session(&id("password"), 0).map(|s| s.is_some()),
            store.find_session(&id("oauth"), 0).map(|s| s.is_some()),
        ];
        found.into_iter().map(|f| f.unwrap_or_else(|e| panic!("{e:#}"))).filter(|f| *f).count()
    };
    (left("expired"), left("live"))
}

pub(crate) fn now_unix() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map(|d| d.as_secs() as i64).unwrap_or_else(|e| panic!("{e}"))
}

/// issue 88: expired refresh tokens were never deleted, device and authorization codes only when a new one was
/// made, sessions only at a re-read. The gateway on its own file prunes them when it starts (and every few minutes):
/// the expired rows go, the live ones stay.
#[tokio::test]
async fn expired_refresh_tokens_codes_and_sessions_are_pruned_and_live_ones_kept() {
    let env = start(Setup { seed: Some(|store| put_sign_ins(store, "file", now_unix())), ..Setup::default() }).await;
    let store = Store::open(&env.dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(sign_ins_left(&store, "file").1, 4, "seeded");
    let started = std::time::Instant::now();
    while sign_ins_left(&store, "file").0 > 0 && started.elapsed() < std::time::Duration::from_secs(5) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sign_ins_left(&store, "file"), (0, 4), "expired rows pruned, live ones kept");
}
