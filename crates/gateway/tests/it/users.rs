//! Users and roles (users/, docs/dashboard.md "Users and roles"): every admin route and dashboard page walked
//! for every role over HTTP, as the access table decides; sign-in by password and one-time code on the admin API
//! and the dashboard, failures delayed and audited without a secret; a member's own keys within their maximum;
//! a disabled or removed user's sessions and keys ended at once; `codex-gateway users` on the store; and an
//! install without users working as before.

use std::path::Path;
use std::time::{Duration, Instant};

use codex_gateway::server::access_table::{self, Surface};
use codex_gateway::users::Role;
use codex_gateway::users::access::Decision;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, start};

pub(crate) const ADMIN: &str = "users-admin-key-8f3a1d";
pub(crate) const PASSWORD: &str = "a long enough password";

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) async fn call(env: &TestEnv, bearer: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client().request(method, env.url(path)).bearer_auth(bearer);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn gateway() -> TestEnv {
    start(Setup {
        accounts: 0,
        linked: false,
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.to_string())],
        ..Setup::default()
    })
    .await
}

/// Create a user with the admin key: its id.
pub(crate) async fn add_user(env: &TestEnv, name: &str, role: &str, extra: Value) -> String {
    let mut body = json!({"name": name, "role": role, "password": PASSWORD});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (s, v) = call(env, ADMIN, Method::POST, "/admin/users", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap_or_default().to_string()
}

/// Sign in on the admin API: the session token.
pub(crate) async fn sign_in(env: &TestEnv, name: &str) -> String {
    let (s, v) = call(env, "", Method::POST, "/admin/sign-in", Some(json!({"name": name, "password": PASSWORD}))).await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap_or_default().to_string();
    assert!(token.starts_with("cgs_"), "{v}");
    token
}

/// Sign in on the dashboard: the session cookie (`cgw_session=cgs_...`) and its CSRF token.
pub(crate) async fn dashboard_sign_in(
    env: &TestEnv,
    name: &str,
    code: Option<&str>,
) -> Result<(String, String), (u16, Value)> {
    let r = client().get(env.url("/dashboard/login")).send().await.unwrap_or_else(|e| panic!("{e}"));
    let html_cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("cgw_login="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
        .unwrap_or_default();
    let page = r.text().await.unwrap_or_default();
    assert!(page.contains("id=\"user-login-form\""), "the user form is offered: {page}");
    let csrf = html_cookie.trim_start_matches("cgw_login=").to_string();
    let mut body = json!({"name": name, "password": PASSWORD, "csrf": csrf});
    if let Some(c) = code {
        body["code"] = c.into();
    }
    let r = client()
        .post(env.url("/dashboard/login"))
        .header("cookie", &html_cookie)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = r.status().as_u16();
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("cgw_session="))
        .map(|c| c.split(';').next().unwrap_or_default().to_string());
    let v: Value = r.json().await.unwrap_or(Value::Null);
    let Some(cookie) = session.filter(|_| status == 200) else { return Err((status, v)) };
    assert!(cookie.starts_with("cgw_session=cgs_"), "{cookie}");
    let page = page_of(env, &cookie, "/dashboard/setup").await;
    assert_eq!(page.0, 200, "{}", page.1);
    let csrf = page
        .1
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_string();
    Ok((cookie, csrf))
}

pub(crate) async fn page_of(env: &TestEnv, cookie: &str, path: &str) -> (u16, String) {
    let r = client().get(env.url(path)).header("cookie", cookie).send().await.unwrap_or_else(|e| panic!("{e}"));
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// A route's path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/")
}

/// Every admin route and dashboard page x every role, over HTTP: a refused one answers 403 with the role's
/// refusal (the admin API's `role_forbidden` in its JSON error shape; the dashboard's refusal page or JSON
/// error), an allowed one anything but that. The routes are the routers' own listing.
#[tokio::test]
async fn every_route_and_page_answers_each_role_as_the_table_decides() {
    let env = gateway().await;
    add_user(&env, "ada", "admin", json!({})).await;
    add_user(&env, "mia", "member", json!({})).await;
    add_user(&env, "vic", "viewer", json!({})).await;
    let mut walked = 0;
    for (role, name) in [(Role::Admin, "ada"), (Role::Member, "mia"), (Role::Viewer, "vic")] {
        let token = sign_in(&env, name).await;
        let (cookie, csrf) = dashboard_sign_in(&env, name, None).await.unwrap_or_else(|e| panic!("{e:?}"));
        for (surface, entry) in access_table::entries() {
            let (method, route, action) = (entry.method, entry.path, entry.action);
            // Signing out would end the session the walk goes on with (sign-out is tested on its own).
            if matches!(route, "/admin/sign-out" | "/dashboard/logout") {
                continue;
            }
            let refused = codex_gateway::users::access::decide(role, action) == Decision::Refuse;
            let path = concrete(route);
            let body = (method != Method::GET).then(|| json!({}));
            match surface {
                Surface::Admin => {
                    let (s, v) = call(&env, &token, method.clone(), &path, body).await;
                    let is_refusal = s == 403 && v["error"]["code"] == "role_forbidden";
                    assert_eq!(is_refusal, refused, "{role:?} {method} {route}: {s} {v}");
                    // A read that is allowed answers (a member's requests are their own, without naming a key).
                    if !refused && method == Method::GET && !route.contains('{') {
                        assert_eq!(s, 200, "{role:?} {route}: {v}");
                    }
                    if refused {
                        assert_eq!(v["error"]["type"], "permission_error", "{v}");
                    }
                }
                Surface::Dashboard => {
                    let mut req = client().request(method.clone(), env.url(&path)).header("cookie", &cookie);
                    if let Some(b) = body {
                        req = req.header("x-csrf-token", &csrf).json(&b);
                    }
                    let r = req.send().await.unwrap_or_else(|e| panic!("{e}"));
                    let s = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    let is_refusal =
                        s == 403 && (text.contains("is not open to the") || text.contains("role may not do this"));
                    assert_eq!(is_refusal, refused, "{role:?} {method} {route}: {s} {text:.300}");
                    // A page that is allowed renders (a member's requests export names one of their keys); single
                    // sign-on is not configured here, so its pages say so (tests/it/oidc.rs).
                    let sso = route.starts_with("/dashboard/sso/");
                    if !refused && method == Method::GET && !route.contains('{') && route != "/dashboard/login" && !sso
                    {
                        let own_export = role == Role::Member && route == "/dashboard/api/requests.csv";
                        // The Codex CLI's authorization needs the CLI's query (tests/it/oauth.rs).
                        let want = match route {
                            _ if own_export => 403,
                            "/dashboard/oauth/authorize" => 400,
                            _ => 200,
                        };
                        assert_eq!(s, want, "{role:?} {route}: {text:.500}");
                    }
                }
            }
            walked += 1;
        }
    }
    assert!(walked > 150, "{walked} route x role pairs walked");
}

/// A member holds keys of their own, up to the maximum an admin set; sees, revokes and counts only theirs; cannot
/// change limits. Removing the member ends their session and revokes their keys at once.
#[tokio::test]
async fn a_member_manages_only_their_own_keys_and_removing_them_ends_everything() {
    let env = gateway().await;
    let (s, theirs) = call(&env, ADMIN, Method::POST, "/admin/keys", Some(json!({"name": "gateway's"}))).await;
    assert_eq!(s, 201, "{theirs}");
    assert_eq!(theirs["owner"], Value::Null, "a key made with the admin key belongs to nobody");
    let mia = add_user(&env, "mia@example.com", "member", json!({"max_keys": 2})).await;
    let token = sign_in(&env, "mia@example.com").await;
    let (s, me) = call(&env, &token, Method::GET, "/admin/me", None).await;
    assert_eq!((s, &me["role"], &me["actor"]), (200, &json!("member"), &json!("user:mia@example.com")), "{me}");
    let mut mine = Vec::new();
    for n in ["laptop", "ci"] {
        let (s, k) = call(&env, &token, Method::POST, "/admin/keys", Some(json!({"name": n}))).await;
        assert_eq!((s, &k["owner"]), (201, &json!(mia)), "{k}");
        mine.push((
            k["id"].as_str().unwrap_or_default().to_string(),
            k["secret"].as_str().unwrap_or_default().to_string(),
        ));
    }
    let (s, v) = call(&env, &token, Method::POST, "/admin/keys", Some(json!({"name": "third"}))).await;
    assert_eq!((s, &v["error"]["code"]), (403, &json!("too_many_keys")), "{v}");
    let (_, list) = call(&env, &token, Method::GET, "/admin/keys", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let (_, all) = call(&env, ADMIN, Method::GET, "/admin/keys", None).await;
    assert_eq!(all.as_array().map(Vec::len), Some(3), "{all}");
    let other = theirs["id"].as_str().unwrap_or_default();
    assert_eq!(call(&env, &token, Method::GET, &format!("/admin/keys/{other}"), None).await.0, 404);
    assert_eq!(call(&env, &token, Method::POST, &format!("/admin/keys/{other}/revoke"), Some(json!({}))).await.0, 404);
    let (s, v) =
        call(&env, &token, Method::PATCH, &format!("/admin/keys/{}", mine[0].0), Some(json!({"rpm": 1}))).await;
    assert_eq!((s, &v["error"]["code"]), (403, &json!("role_forbidden")), "{v}");
    // A refusal by role is in the audit trail, with the person as the actor.
    let (_, trail) = call(&env, ADMIN, Method::GET, "/admin/audit?action=key.", None).await;
    let rows = trail["entries"].as_array().cloned().unwrap_or_default();
    let refusal = rows.iter().find(|r| r["action"] == "key.update").cloned().unwrap_or_default();
    assert_eq!(
        (&refusal["actor"], &refusal["outcome"]),
        (&json!("user:mia@example.com"), &json!("refused")),
        "{rows:#?}"
    );
    let creates = rows.iter().filter(|r| r["action"] == "key.create" && r["actor"] == "user:mia@example.com").count();
    assert_eq!(creates, 3, "two made, one over the maximum refused: {rows:#?}");
    // Their usage is their keys' (grouped by key); their requests those of a key of theirs.
    let (s, u) = call(&env, &token, Method::GET, "/admin/usage", None).await;
    assert_eq!((s, &u["group_by"]), (200, &json!("key")), "{u}");
    let (s, v) = call(&env, &token, Method::GET, &format!("/admin/requests?key={other}"), None).await;
    assert_eq!((s, &v["error"]["code"]), (403, &json!("not_your_key")), "{v}");
    assert_eq!(call(&env, &token, Method::GET, &format!("/admin/requests?key={}", mine[0].0), None).await.0, 200);
    // Revoking one frees a place.
    assert_eq!(
        call(&env, &token, Method::POST, &format!("/admin/keys/{}/revoke", mine[0].0), Some(json!({}))).await.0,
        200
    );
    assert_eq!(call(&env, &token, Method::POST, "/admin/keys", Some(json!({"name": "third"}))).await.0, 201);

    // The Keys and Setup pages show a member their own keys only.
    let (cookie, _) = dashboard_sign_in(&env, "mia@example.com", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    for page in ["/dashboard/keys", "/dashboard/setup"] {
        let (s, html) = page_of(&env, &cookie, page).await;
        assert!(s == 200 && html.contains("third") && !html.contains("gateway&#x27;s"), "{page}: {html:.3000}");
        assert!(!html.contains(other), "{page} shows another's key");
    }
    // A key of theirs serves requests until they are removed; then it and the session are refused at once.
    let models = |secret: String| {
        let env = &env;
        async move { client().get(env.url("/v1/models")).bearer_auth(secret).send().await.map(|r| r.status().as_u16()) }
    };
    assert_eq!(models(mine[1].1.clone()).await.ok(), Some(200));
    let (s, v) = call(&env, ADMIN, Method::DELETE, &format!("/admin/users/{mia}"), None).await;
    assert_eq!((s, v["keys_revoked"].as_array().map(Vec::len), &v["sessions_ended"]), (200, Some(2), &json!(2)), "{v}");
    assert_eq!(page_of(&env, &cookie, "/dashboard/keys").await.0, 303, "the dashboard session ended too");
    let (s, v) = call(&env, &token, Method::GET, "/admin/me", None).await;
    assert_eq!((s, &v["error"]["code"]), (401, &json!("session_ended")), "{v}");
    assert_eq!(models(mine[1].1.clone()).await.ok(), Some(401));
    // The gateway's own key still works.
    assert_eq!(call(&env, ADMIN, Method::GET, &format!("/admin/keys/{other}"), None).await.1["status"], "active");
}

/// Password and one-time code on the admin API and the dashboard; every failure waits, answers a clear error and
/// is in the audit trail with the name tried and why, never the password, the code or the TOTP secret.
#[tokio::test]
async fn sign_in_by_password_and_one_time_code_and_failures_audited_without_secrets() {
    let env = gateway().await;
    let id = add_user(&env, "tom", "viewer", json!({})).await;
    let (s, v) = call(&env, ADMIN, Method::POST, &format!("/admin/users/{id}/totp"), Some(json!({}))).await;
    assert_eq!(s, 200, "{v}");
    let uri = v["otpauth_uri"].as_str().unwrap_or_default().to_string();
    let secret = uri.split("secret=").nth(1).and_then(|s| s.split('&').next()).unwrap_or_default().to_string();
    assert_eq!(secret.len(), 32, "{uri}");
    let (_, one) = call(&env, ADMIN, Method::GET, &format!("/admin/users/{id}"), None).await;
    assert_eq!(one["totp"], true);
    assert!(!one.to_string().contains(&secret), "the secret is shown once: {one}");

    let attempt = |body: Value| {
        let env = &env;
        async move {
            let started = Instant::now();
            let (s, v) = call(env, "", Method::POST, "/admin/sign-in", Some(body)).await;
            (s, v, started.elapsed())
        }
    };
    let (s, v, took) = attempt(json!({"name": "tom", "password": "wrong password here"})).await;
    assert_eq!((s, &v["error"]["code"]), (401, &json!("sign_in_failed")), "{v}");
    assert!(took >= codex_gateway::users::SIGN_IN_DELAY - Duration::from_millis(50), "{took:?}");
    let (s, v, _) = attempt(json!({"name": "nobody", "password": PASSWORD})).await;
    assert_eq!((s, &v["error"]["code"]), (401, &json!("sign_in_failed")), "a missing name reads alike: {v}");
    let (s, v, _) = attempt(json!({"name": "tom", "password": PASSWORD})).await;
    assert_eq!((s, &v["error"]["code"]), (401, &json!("code_needed")), "{v}");
    let (s, v, _) = attempt(json!({"name": "tom", "password": PASSWORD, "code": "000000"})).await;
    assert_eq!((s, &v["error"]["code"]), (401, &json!("wrong_code")), "{v}");
    let (s, v, _) = attempt(json!({"name": "tom"})).await;
    assert_eq!((s, &v["error"]["type"]), (400, &json!("invalid_request_error")), "a bad body: {v}");
    let key = codex_gateway::users::totp::unbase32(&secret).unwrap_or_default();
    let code = codex_gateway::users::totp::code_at(&key, codex_gateway::auth::now_unix());
    let (s, v, _) = attempt(json!({"name": "tom", "password": PASSWORD, "code": code})).await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap_or_default().to_string();
    assert_eq!(v["user"]["role"], "viewer");

    // The dashboard: the code is asked for, then the viewer lands on the Overview, and may not see Users.
    let refused = dashboard_sign_in(&env, "tom", None).await.err().unwrap_or_default();
    assert_eq!((refused.0, &refused.1["code_needed"]), (401, &json!(true)), "{refused:?}");
    let (cookie, csrf) = dashboard_sign_in(&env, "tom", Some(&code)).await.unwrap_or_else(|e| panic!("{e:?}"));
    let (s, html) = page_of(&env, &cookie, "/dashboard/users").await;
    assert!(s == 403 && html.contains("is not open to the <strong>viewer</strong> role"), "{s} {html:.400}");
    let (s, html) = page_of(&env, &cookie, "/dashboard/accounts").await;
    assert_eq!(s, 200, "{html:.300}");
    assert!(html.contains("tom (viewer)") && !html.contains("href=\"/dashboard/users\""), "{html:.2000}");
    // Sign-out ends the session everywhere it is sent.
    let out = client()
        .post(env.url("/dashboard/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({}))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(out.ok(), Some(200));
    assert_eq!(page_of(&env, &cookie, "/dashboard/accounts").await.0, 303);
    assert_eq!(call(&env, &token, Method::POST, "/admin/sign-out", Some(json!({}))).await.0, 200);
    assert_eq!(call(&env, &token, Method::GET, "/admin/me", None).await.0, 401);

    let (_, trail) = call(&env, ADMIN, Method::GET, "/admin/audit?action=user.", None).await;
    let rows = trail["entries"].as_array().cloned().unwrap_or_default();
    let reasons: Vec<(String, String, String)> = rows
        .iter()
        .filter(|r| r["action"] == "user.sign_in")
        .map(|r| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (text(&r["outcome"]), text(&r["target"]), text(&r["details"]["reason"]))
        })
        .collect();
    let want = |o: &str, t: &str, r: &str| (o.to_string(), t.to_string(), r.to_string());
    for row in [
        want("refused", "tom", "wrong_name_or_password"),
        want("refused", "nobody", "wrong_name_or_password"),
        want("refused", "tom", "code_needed"),
        want("refused", "tom", "wrong_code"),
        want("ok", "tom", ""),
    ] {
        assert!(reasons.contains(&row), "{row:?} not in {reasons:#?}");
    }
    let creates: Vec<&Value> = rows.iter().filter(|r| r["action"] == "user.create").collect();
    assert_eq!(creates.first().map(|r| &r["actor"]), Some(&json!("admin-key")));
    let text = trail.to_string();
    for secret_text in [PASSWORD, "wrong password here", &secret, &code, &token, ADMIN, "$argon2id$"] {
        assert!(!text.contains(secret_text), "{secret_text:?} is in the trail: {text}");
    }
}

/// Disabling a user ends their dashboard session at once (the next page is the login), and bad changes answer
/// clear errors in the admin API's shape.
#[tokio::test]
async fn disabling_a_user_ends_their_session_and_bad_input_is_refused_clearly() {
    let env = gateway().await;
    let id = add_user(&env, "mia", "member", json!({})).await;
    let (cookie, _) = dashboard_sign_in(&env, "mia", None).await.unwrap_or_else(|e| panic!("{e:?}"));
    let (s, html) = page_of(&env, &cookie, "/dashboard/login").await;
    assert_eq!(s, 303, "a member already signed in goes to their keys: {html}");
    assert_eq!(page_of(&env, &cookie, "/dashboard/keys").await.0, 200);
    let (s, v) = call(&env, ADMIN, Method::PATCH, &format!("/admin/users/{id}"), Some(json!({"disabled": true}))).await;
    assert_eq!((s, &v["sessions_ended"], &v["disabled_at"].is_number()), (200, &json!(1), &true), "{v}");
    assert_eq!(page_of(&env, &cookie, "/dashboard/keys").await.0, 303);
    assert!(dashboard_sign_in(&env, "mia", None).await.is_err(), "a disabled user cannot sign in");

    for (method, path, body, status, code) in [
        (Method::POST, "/admin/users".to_string(), json!({"name": "x", "role": "owner"}), 400, "invalid_request_error"),
        (Method::POST, "/admin/users".into(), json!({"name": "mia", "role": "viewer"}), 400, "name_taken"),
        (
            Method::POST,
            "/admin/users".into(),
            json!({"name": "z", "role": "viewer", "password": "short"}),
            400,
            "weak_password",
        ),
        (
            Method::POST,
            "/admin/users".into(),
            json!({"name": "z", "role": "viewer", "extra": 1}),
            400,
            "invalid_request_error",
        ),
        (Method::PATCH, "/admin/users/usr_missing".into(), json!({"role": "viewer"}), 404, "invalid_request_error"),
        (Method::POST, format!("/admin/users/{id}/password"), json!({"password": "short"}), 400, "weak_password"),
    ] {
        let (s, v) = call(&env, ADMIN, method.clone(), &path, Some(body)).await;
        assert_eq!(s, status, "{method} {path}: {v}");
        assert!(v["error"]["code"] == code || v["error"]["type"] == code, "{method} {path}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
}

/// With no users, nothing changes: the admin API answers the admin key, the dashboard's login asks for it alone,
/// and the sign-in refuses whatever it is sent.
#[tokio::test]
async fn without_users_the_gateway_works_as_before() {
    let env = gateway().await;
    let (s, me) = call(&env, ADMIN, Method::GET, "/admin/me", None).await;
    assert_eq!((s, &me["actor"], &me["role"]), (200, &json!("admin-key"), &json!("admin")), "{me}");
    let page = client().get(env.url("/dashboard/login")).send().await.unwrap_or_else(|e| panic!("{e}"));
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("id=\"login-form\"") && !html.contains("user-login-form"), "{html}");
    let (s, v) = call(&env, "", Method::POST, "/admin/sign-in", Some(json!({"name": "a", "password": PASSWORD}))).await;
    assert_eq!((s, &v["error"]["code"]), (401, &json!("sign_in_failed")), "{v}");
    // A keyless install's admin API stays open until a user exists; then it asks for a credential.
    let open = start(Setup { accounts: 0, linked: false, ..Setup::default() }).await;
    assert_eq!(call(&open, "", Method::GET, "/admin/status", None).await.0, 200);
    let (s, _) = call(
        &open,
        "",
        Method::POST,
        "/admin/users",
        Some(json!({"name": "ana", "role": "admin", "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, v) = call(&open, "", Method::GET, "/admin/status", None).await;
    assert_eq!((s, &v["error"]["code"]), (401, &json!("admin_key_required")), "{v}");
    let token = sign_in(&open, "ana").await;
    assert_eq!(call(&open, &token, Method::GET, "/admin/status", None).await.0, 200);
}

/// `codex-gateway users` on the store: add (password from stdin), list, set-role, passwd, disable, remove, each
/// change audited as the OS user's, no password anywhere in the output or the trail.
#[tokio::test]
async fn the_users_command_manages_the_store_and_audits_each_change() {
    let data = std::env::temp_dir().join(format!("cgw-users-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    let ok = |o: &std::process::Output| {
        assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let out =
        ok(&cli(&["users", "add", "ana@example.com", "--role", "member", "--password-stdin"], &data, Some(PASSWORD))
            .await);
    assert!(out.contains("added ana@example.com"), "{out}");
    let out = ok(&cli(&["users", "set-role", "ana@example.com", "viewer"], &data, None).await);
    assert!(out.contains("is now viewer"), "{out}");
    ok(&cli(&["users", "passwd", "ana@example.com"], &data, Some("another long password")).await);
    let list = ok(&cli(&["users", "list"], &data, None).await);
    assert!(list.contains("ana@example.com") && list.contains("viewer") && list.contains("set"), "{list}");
    let bad = cli(&["users", "set-role", "ana@example.com", "owner"], &data, None).await;
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("not admin, member or viewer"));
    let short = cli(&["users", "passwd", "ana@example.com"], &data, Some("short")).await;
    assert!(!short.status.success() && String::from_utf8_lossy(&short.stderr).contains("at least 10"));
    ok(&cli(&["users", "remove", "ana@example.com"], &data, None).await);
    let list = ok(&cli(&["users", "list"], &data, None).await);
    assert!(!list.contains("ana@example.com"), "{list}");

    let store = codex_gateway::store::Store::open(&data.join("gateway.db")).unwrap_or_else(|e| panic!("{e:#}"));
    let rows = store.audit_rows(&Default::default()).unwrap_or_else(|e| panic!("{e:#}"));
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["user.create", "user.update", "user.password", "user.remove"], "{rows:#?}");
    assert!(rows.iter().all(|r| r.actor.starts_with("cli:")), "{rows:#?}");
    let text = format!("{rows:?}");
    assert!(!text.contains(PASSWORD) && !text.contains("another long password") && !text.contains("argon2"), "{text}");
    let _ = std::fs::remove_dir_all(&data);
}

/// A user the command line disables in the SQLite file while a gateway serves it is refused by that gateway
/// within a few seconds (`users::USERS_POLL`), their keys with them.
#[tokio::test]
async fn a_user_disabled_by_the_command_line_is_refused_by_the_running_gateway() {
    let env = gateway().await;
    add_user(&env, "mia", "member", json!({})).await;
    let token = sign_in(&env, "mia").await;
    assert_eq!(call(&env, &token, Method::GET, "/admin/me", None).await.0, 200);
    let o = cli(&["users", "disable", "mia"], &env.dir.join("data"), None).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let started = Instant::now();
    while call(&env, &token, Method::GET, "/admin/me", None).await.0 != 401 {
        assert!(started.elapsed() < Duration::from_secs(6), "still signed in after the command disabled the user");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The command line on the data directory `data`, `stdin` written to its standard input.
pub(crate) async fn cli(args: &[&str], data: &Path, stdin: Option<&str>) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_codex-gateway"))
        .args(args)
        .env("CODEX_GATEWAY_DATA_DIR", data)
        .env("HOME", data)
        .env("CODEX_HOME", data.join("no-codex-home"))
        .env("CODEX_GATEWAY_PORT", "1")
        .env_remove("CODEX_GATEWAY_DATABASE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut input) = child.stdin.take() {
        if let Some(text) = stdin {
            let _ = input.write_all(format!("{text}\n").as_bytes()).await;
        }
        drop(input);
    }
    child.wait_with_output().await.unwrap_or_else(|e| panic!("{e}"))
}

/// A viewer reads the Accounts page, cooldowns included, without a control that changes anything; an admin sees
/// the controls on the same page.
#[tokio::test]
async fn a_viewer_sees_accounts_without_their_controls() {
    let env = start(Setup {
        accounts: 1,
        linked: false,
        store_accounts: true,
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN.to_string())],
        ..Setup::default()
    })
    .await;
    let id = env.accounts[0].account_id.clone();
    let reset = codex_gateway::auth::now_unix() + 600;
    env.fake.set_quota(&id, 100.0, 10.0, Some(reset));
    let (_, key) = call(&env, ADMIN, Method::POST, "/admin/keys", Some(json!({"name": "k"}))).await;
    let chat = json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]});
    let secret = key["secret"].as_str().unwrap_or_default();
    let r = client().post(env.url("/v1/chat/completions")).bearer_auth(secret).json(&chat).send().await;
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 429, "the account's quota is spent");
    add_user(&env, "vic", "viewer", json!({})).await;
    add_user(&env, "ada", "admin", json!({})).await;
    for (name, controls) in [("vic", false), ("ada", true)] {
        let (cookie, _) = dashboard_sign_in(&env, name, None).await.unwrap_or_else(|e| panic!("{e:?}"));
        let (s, html) = page_of(&env, &cookie, "/dashboard/accounts").await;
        assert_eq!(s, 200);
        assert!(html.contains("Cooldowns"), "the cooldown is shown to {name}: {html:.2000}");
        assert_eq!(html.contains("data-act="), controls, "{name}'s page: {html:.3000}");
    }
}

/// A method a route's path does not serve passes the role check and the audit layer as an admin's only route: a
/// member is refused, an admin gets the 405 with its `Allow`, and both are recorded by method and path.
#[tokio::test]
async fn a_method_the_path_does_not_serve_is_checked_and_recorded() {
    let env = gateway().await;
    add_user(&env, "mia", "member", json!({})).await;
    let token = sign_in(&env, "mia").await;
    let (s, v) = call(&env, &token, Method::PUT, "/admin/keys", None).await;
    assert_eq!((s, &v["error"]["code"]), (403, &json!("role_forbidden")), "{v}");
    let r = client().request(Method::PUT, env.url("/admin/keys")).bearer_auth(ADMIN).send().await;
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers().get("allow").and_then(|v| v.to_str().ok()), Some("GET,HEAD,POST"));
    let (_, v) = call(&env, ADMIN, Method::GET, "/admin/audit?action=admin.put", None).await;
    let seen: Vec<(&str, &str, u64)> = v["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["actor"].as_str().unwrap_or(""),
                e["details"]["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(seen, [("admin.put /admin/keys", "user:mia", 403), ("admin.put /admin/keys", "admin-key", 405)]);
}
