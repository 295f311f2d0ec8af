//! The dashboard's gate (dashboard/session.rs) and its place behind the request guard: the session cookie's
//! flags, the login delay, CSRF refusals, the page shown when no admin credential exists, the loopback opt-in,
//! the key-free `/dashboard` paths, the browser redirect at `/`, escaping.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, start};

const KEY: &str = "admin-secret";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `name=value` of the cookie `name` among the answer's `Set-Cookie` headers, with its attributes.
fn set_cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or_default().to_string()
}

async fn keyed(setup: Setup) -> TestEnv {
    start(Setup { client_key: Some(KEY.into()), ..setup }).await
}

/// The login form's cookie (`cgw_login=...`) and its CSRF value.
async fn login_form(env: &TestEnv) -> (String, String) {
    let r = client().get(env.url("/dashboard/login")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    let c = cookie_value(&set_cookie(r.headers(), "cgw_login").unwrap_or_else(|| panic!("no login cookie")));
    let csrf = c.trim_start_matches("cgw_login=").to_string();
    (c, csrf)
}

async fn login(env: &TestEnv, key: &str, extra: &[(&str, &str)]) -> (u16, HeaderMap, Duration) {
    let (cookie, csrf) = login_form(env).await;
    let mut req =
        client().post(env.url("/dashboard/login")).header("cookie", cookie).json(&json!({"key": key, "csrf": csrf}));
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let started = Instant::now();
    let r = req.send().await.unwrap_or_else(|e| panic!("{e}"));
    (r.status().as_u16(), r.headers().clone(), started.elapsed())
}

/// Log in; the session cookie and the page's CSRF token.
async fn session(env: &TestEnv) -> (String, String) {
    let (status, h, _) = login(env, KEY, &[]).await;
    assert_eq!(status, 200);
    let cookie = cookie_value(&set_cookie(&h, "cgw_session").unwrap_or_else(|| panic!("no session cookie")));
    let page =
        client().get(env.url("/dashboard")).header("cookie", &cookie).send().await.unwrap_or_else(|e| panic!("{e}"));
    let html = page.text().await.unwrap_or_default();
    let csrf = html
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no csrf meta in {html}"))
        .to_string();
    (cookie, csrf)
}

#[tokio::test]
async fn dashboard_login_refuses_a_wrong_key_after_a_delay_and_sets_a_strict_httponly_cookie() {
    let env = keyed(Setup::default()).await;
    let (status, h, took) = login(&env, "wrong", &[]).await;
    assert_eq!(status, 401);
    assert!(took >= codex_gateway::dashboard::LOGIN_DELAY - Duration::from_millis(50), "answered after {took:?}");
    assert!(set_cookie(&h, "cgw_session").is_none());

    let (status, h, took) = login(&env, KEY, &[]).await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_millis(900), "a right key is not delayed: {took:?}");
    let c = set_cookie(&h, "cgw_session").unwrap_or_else(|| panic!("no session cookie"));
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/dashboard", "Max-Age=43200"] {
        assert!(c.contains(flag), "{flag} missing: {c}");
    }
    assert!(!c.contains("Secure"), "plain HTTP: no Secure flag: {c}");

    let (_, h, _) = login(&env, KEY, &[("x-forwarded-proto", "https")]).await;
    let c = set_cookie(&h, "cgw_session").unwrap_or_else(|| panic!("no session cookie"));
    assert!(c.contains("; Secure"), "behind TLS: Secure: {c}");

    let cookie = cookie_value(&c);
    let page = client()
        .get(env.url("/dashboard/accounts"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.status(), 200);
    let anon = client().get(env.url("/dashboard/accounts")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(anon.status(), 303);
    assert_eq!(anon.headers().get("location").and_then(|v| v.to_str().ok()), Some("/dashboard/login"));
}

#[tokio::test]
async fn dashboard_login_without_its_form_cookie_is_refused() {
    let env = keyed(Setup::default()).await;
    let (_, csrf) = login_form(&env).await;
    let r = client()
        .post(env.url("/dashboard/login"))
        .json(&json!({"key": KEY, "csrf": csrf}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 403);
    assert!(set_cookie(r.headers(), "cgw_session").is_none());
}

#[tokio::test]
async fn dashboard_state_changes_without_the_csrf_token_are_refused() {
    let dir = std::env::temp_dir().join(format!("cgw-dash-{}", uuid::Uuid::new_v4().simple()));
    let config = dir.join("config.toml");
    let env =
        keyed(Setup { env: vec![("CODEX_GATEWAY_CONFIG", config.display().to_string())], ..Setup::default() }).await;
    let (cookie, csrf) = session(&env).await;
    let body = json!({"strategy": "sticky"});
    for token in [None, Some("wrong")] {
        let mut req = client().post(env.url("/dashboard/api/settings")).header("cookie", &cookie).json(&body);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 403, "token {token:?}");
    }
    assert!(!config.exists(), "nothing was written");
    let status = |env: &TestEnv| {
        let http = env.http.clone();
        let url = env.url("/admin/status");
        async move {
            let r = http.get(url).bearer_auth(KEY).send().await.unwrap_or_else(|e| panic!("{e}"));
            r.json::<Value>().await.unwrap_or_default()["strategy"].clone()
        }
    };
    assert_eq!(status(&env).await, "Planner");
    let r = client()
        .post(env.url("/dashboard/api/settings"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    assert_eq!(status(&env).await, "Sticky", "applied at once");
    let file = std::fs::read_to_string(&config).unwrap_or_default();
    assert!(file.contains("strategy = \"sticky\""), "{file}");
    // Logged out: the same call is refused.
    let out = client()
        .post(env.url("/dashboard/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status(), 200);
    let r = client()
        .post(env.url("/dashboard/api/settings"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 401);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn dashboard_without_an_admin_credential_on_loopback_says_how_to_set_one() {
    let env = start(Setup::default()).await;
    let r = client().get(env.url("/dashboard")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 503);
    assert!(set_cookie(r.headers(), "cgw_session").is_none(), "no session without a credential");
    let html = r.text().await.unwrap_or_default();
    assert!(html.contains("CODEX_GATEWAY_API_KEY") && html.contains("loopback_without_login"), "{html}");
    let api = client().get(env.url("/dashboard/api/overview")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(api.status(), 401);
}

#[tokio::test]
async fn dashboard_opens_without_login_on_loopback_only_when_configured() {
    let env =
        start(Setup { config_toml: Some("[dashboard]\nloopback_without_login = true\n".into()), ..Setup::default() })
            .await;
    let r = client().get(env.url("/dashboard")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    assert!(set_cookie(r.headers(), "cgw_session").is_some(), "a session (for its CSRF token)");
    let api = client().get(env.url("/dashboard/api/overview")).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(api.status(), 200);
    let v: Value = api.json().await.unwrap_or_default();
    assert_eq!(v["accounts_total"], 1);
}

#[tokio::test]
async fn dashboard_paths_need_no_client_key_but_other_routes_still_do_and_browsers_at_root_are_redirected() {
    let env = keyed(Setup::default()).await;
    let c = client();
    let get = |path: &str, accept: Option<&str>| {
        let mut req = c.get(env.url(path));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        req.send()
    };
    assert_eq!(get("/dashboard/login", None).await.map(|r| r.status().as_u16()).unwrap_or(0), 200);
    assert_eq!(get("/dashboard/assets/app.css", None).await.map(|r| r.status().as_u16()).unwrap_or(0), 200);
    assert_eq!(get("/v1/models", None).await.map(|r| r.status().as_u16()).unwrap_or(0), 401);
    assert_eq!(get("/dashboardx", None).await.map(|r| r.status().as_u16()).unwrap_or(0), 401);
    let html =
        get("/", Some("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(html.status(), 303);
    assert_eq!(html.headers().get("location").and_then(|v| v.to_str().ok()), Some("/dashboard"));
    let api = get("/", Some("*/*")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(api.status(), 200);
    assert_eq!(api.text().await.unwrap_or_default(), "codex-gateway is running");
}

#[tokio::test]
async fn dashboard_origin_check_refuses_other_sites_and_accepts_its_own_name() {
    let env =
        keyed(Setup { config_toml: Some("[server]\nallowed_hosts = [\"gw.test\"]\n".into()), ..Setup::default() })
            .await;
    let port = env.base.rsplit(':').next().unwrap_or_default().to_string();
    let host = format!("gw.test:{port}");
    let post = |origin: String| {
        client()
            .post(env.url("/dashboard/api/settings"))
            .header("host", &host)
            .header("origin", origin)
            .json(&json!({}))
            .send()
    };
    let evil = post("http://evil.example".into()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(evil.status(), 403);
    assert!(evil.text().await.unwrap_or_default().contains("origin_not_allowed"));
    // The dashboard's own page on that name: past the guard, stopped by the dashboard's gate (no session).
    let own = post(format!("http://{host}")).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(own.status(), 401);
}

#[tokio::test]
async fn dashboard_shows_a_label_with_markup_as_text() {
    let env = keyed(Setup { store_accounts: true, linked: false, ..Setup::default() }).await;
    let id = env.accounts[0].account_id.clone();
    let list: Value = env
        .http
        .get(env.url("/admin/accounts"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    let stored = list[0]["id"].as_str().unwrap_or_else(|| panic!("no account for {id}: {list}")).to_string();
    let r = env
        .http
        .post(env.url(&format!("/admin/accounts/{stored}/label")))
        .bearer_auth(KEY)
        .json(&json!({"label": "<script>alert(1)</script>"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    let (cookie, _) = session(&env).await;
    let page = client()
        .get(env.url("/dashboard/accounts"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let csp =
        page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"), "{html}");
    assert!(!html.contains("<script>alert"), "{html}");
}

#[tokio::test]
async fn dashboard_login_takes_the_admin_key_not_a_client_key_once_an_admin_key_is_set() {
    let env = start(Setup {
        client_key: Some("client-key".into()),
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", KEY.into())],
        ..Setup::default()
    })
    .await;
    let (status, h, _) = login(&env, "client-key", &[]).await;
    assert_eq!(status, 401, "a client key is not the admin credential");
    assert!(set_cookie(&h, "cgw_session").is_none());
    let (status, h, _) = login(&env, KEY, &[]).await;
    assert_eq!(status, 200);
    assert!(set_cookie(&h, "cgw_session").is_some());
}

#[tokio::test]
async fn dashboard_key_secret_is_in_the_creation_answer_only() {
    let env = keyed(Setup::default()).await;
    let (cookie, csrf) = session(&env).await;
    let form = json!({"name": "bot", "models": "", "rpm": 10, "concurrency": null, "daily_tokens": null,
                      "monthly_tokens": null, "expires": ""});
    let bare = client().post(env.url("/dashboard/api/keys")).header("cookie", &cookie).json(&form).send().await;
    assert_eq!(bare.map(|r| r.status().as_u16()).unwrap_or(0), 403, "no CSRF token: refused");
    let r = client()
        .post(env.url("/dashboard/api/keys"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap_or_default();
    let secret = v["secret"].as_str().unwrap_or_else(|| panic!("no secret: {v}")).to_string();
    assert_eq!(v["rpm"], 10);
    let page = client()
        .get(env.url("/dashboard/keys"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("bot") && !html.contains(&secret), "listed, secret not shown");
    let used = env
        .http
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(used.status(), 200);
}

#[tokio::test]
async fn dashboard_usage_and_requests_render_from_the_ledger_with_and_without_prices() {
    for prices in [false, true] {
        let toml = prices.then(|| "[usage.prices.\"gpt-5.4\"]\ninput = 1.25\noutput = 10.0\n".to_string());
        let env = keyed(Setup { config_toml: toml, ..Setup::default() }).await;
        let r = env
            .http
            .post(env.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 200);
        let (cookie, _) = session(&env).await;
        let get = |path: &'static str| client().get(env.url(path)).header("cookie", &cookie).send();
        // The ledger commits in batches: wait for the row.
        let mut html = String::new();
        for _ in 0..40 {
            let page = get("/dashboard/requests").await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(page.status(), 200);
            html = page.text().await.unwrap_or_default();
            if html.contains("requests-table") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(html.contains("gpt-5.4") && html.contains("chat"), "prices {prices}: {html}");
        assert_eq!(html.contains("Cost"), prices, "the cost appears only with a price table");
        let usage = get("/dashboard/usage?range=7d&group_by=dialect").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(usage.status(), 200);
        let html = usage.text().await.unwrap_or_default();
        assert!(html.contains("usage-table") && html.contains("chat"), "{html}");
        assert_eq!(html.contains("API-equivalent cost"), prices, "{html}");
        let csv = get("/dashboard/api/requests.csv").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(csv.status(), 200);
        let anon = client().get(env.url("/dashboard/api/usage.csv")).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(anon.status(), 401, "CSV needs the session");
    }
}

/// Settings: the price table and the quota thresholds are refused with the field the page marks, then saved to
/// the file and applied without a restart (the ledger's cost, the Overview's threshold); the Overview draws the
/// requests-per-minute chart and Setup offers the client keys by name and prefix, never their secrets.
#[tokio::test]
async fn dashboard_price_table_and_quota_thresholds_apply_at_once_and_refusals_name_their_field() {
    let dir = std::env::temp_dir().join(format!("cgw-dash-{}", uuid::Uuid::new_v4().simple()));
    let config = dir.join("config.toml");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&config, "# mine\n[usage]\nretention_days = 30 # a month\n").unwrap_or_else(|e| panic!("{e}"));
    let env =
        keyed(Setup { env: vec![("CODEX_GATEWAY_CONFIG", config.display().to_string())], ..Setup::default() }).await;
    let r = env
        .http
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    let (cookie, csrf) = session(&env).await;
    let save = |body: Value| {
        client()
            .post(env.url("/dashboard/api/settings"))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&body)
            .send()
    };
    for (body, field) in [
        (json!({"prices": [{"model": "gpt-5.4", "input": -1.0, "output": 10.0}]}), "price-0-input"),
        (json!({"prices": [{"model": "gpt-5.4", "input": 1.0}]}), "price-0-output"),
        (json!({"quota_warn_percent": 90.0, "quota_critical_percent": 50.0}), "quota_warn_percent"),
        (json!({"quota_critical_percent": 150.0}), "quota_critical_percent"),
    ] {
        let r = save(body.clone()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap_or_default();
        assert_eq!(v["field"], field, "{v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    let r = save(json!({
        "prices": [{"model": "gpt-5.4", "input": 1.25, "cached_input": 0.125, "output": 10.0}, {"model": ""}],
        "quota_warn_percent": 60.0, "quota_critical_percent": 85.0,
    }))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap_or_default();
    assert_eq!(v["applied"], json!(["quota thresholds", "price table"]), "{v}");
    let file = std::fs::read_to_string(&config).unwrap_or_default();
    assert!(file.starts_with("# mine\n[usage]\nretention_days = 30 # a month\n"), "{file}");
    assert!(file.contains("[usage.prices.\"gpt-5.4\"]\ninput = 1.25\ncached_input = 0.125\noutput = 10.0"), "{file}");
    assert!(file.contains("[dashboard]\nquota_warn_percent = 60.0\nquota_critical_percent = 85.0"), "{file}");
    // The cost is priced at once (the ledger commits in batches: wait for the row).
    let mut cost = Value::Null;
    for _ in 0..40 {
        let r = env.http.get(env.url("/admin/usage?from=24h")).bearer_auth(KEY).send().await;
        let v: Value = r.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
        cost = v["totals"]["cost_usd"].clone();
        if cost.as_f64().is_some_and(|c| c > 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cost.as_f64().is_some_and(|c| c > 0.0), "priced without a restart: {cost}");
    let get = |path: &'static str| client().get(env.url(path)).header("cookie", &cookie).send();
    let html = get("/dashboard/settings").await.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    assert!(html.contains("id=\"quota_warn_percent\"") && html.contains("value=\"60.0\""), "{html}");
    assert!(html.contains("value=\"gpt-5.4\""), "the saved table is shown");
    let html = get("/dashboard").await.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    assert!(html.contains("id=\"rpm-chart\"") && html.contains("No account has used 60%"), "{html}");

    let created = client()
        .post(env.url("/dashboard/api/keys"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "laptop"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created.status(), 201);
    let k: Value = created.json().await.unwrap_or_default();
    let (secret, prefix) = (k["secret"].as_str().unwrap_or_default(), k["prefix"].as_str().unwrap_or_default());
    assert!(!secret.is_empty() && !prefix.is_empty(), "{k}");
    let html = get("/dashboard/setup").await.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    assert!(html.contains(&format!("data-prefix=\"{prefix}\"")) && html.contains(">laptop ("), "{html}");
    assert!(!html.contains(secret), "the secret is never in the page");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The opening tag of the Overview's team-store banner in `html`.
fn outage_banner(html: &str) -> String {
    let tag = html.split("id=\"store-outage\"").nth(1).and_then(|s| s.split('>').next());
    tag.unwrap_or_else(|| panic!("no store-outage banner in {html}")).to_string()
}

/// The team store (PostgreSQL) goes away: the Overview shows a banner saying so, in the page and in its live
/// JSON (as `/ready` and `/metrics` report it), and hides it again once the database answers. The banner was
/// never shown before: an outage was visible only to whoever read `/ready` or the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_shows_a_banner_while_the_team_store_is_unreachable() {
    let db = crate::pg::fresh_database().await;
    let env = keyed(Setup { env: vec![("CODEX_GATEWAY_DATABASE_URL", db.clone())], ..Setup::default() }).await;
    let (cookie, _) = session(&env).await;
    let page = || async {
        let r = client().get(env.url("/dashboard")).header("cookie", &cookie).send().await;
        r.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default()
    };
    let live = || async {
        let r = client().get(env.url("/dashboard/api/overview")).header("cookie", &cookie).send().await;
        let v: Value = r.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
        v["store"].as_str().unwrap_or_default().to_string()
    };
    assert!(outage_banner(&page().await).contains("hidden"), "banner shown while the store is reachable");
    assert_eq!(live().await, "reachable");
    let name = crate::pg::database_name(&db);
    crate::pg::admin(&format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let started = Instant::now();
    while live().await != "unreachable" {
        assert!(started.elapsed() < Duration::from_secs(5), "the Overview's JSON did not report the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let html = page().await;
    assert!(!outage_banner(&html).contains("hidden"), "no banner during the outage: {}", outage_banner(&html));
    assert!(html.contains("The team store is unreachable"));
    crate::pg::admin(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    let started = Instant::now();
    while live().await != "reachable" {
        assert!(started.elapsed() < Duration::from_secs(5), "the Overview's JSON still reports the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(outage_banner(&page().await).contains("hidden"), "banner still shown after the outage");
}

/// Without a team store the Overview has no outage to report: the banner is hidden and the JSON says `null`.
#[tokio::test]
async fn overview_has_no_store_banner_without_a_team_store() {
    let env = keyed(Setup::default()).await;
    let (cookie, _) = session(&env).await;
    let r = client().get(env.url("/dashboard")).header("cookie", &cookie).send().await;
    let html = r.unwrap_or_else(|e| panic!("{e}")).text().await.unwrap_or_default();
    assert!(outage_banner(&html).contains("hidden"));
    let r = client().get(env.url("/dashboard/api/overview")).header("cookie", &cookie).send().await;
    let v: Value = r.unwrap_or_else(|e| panic!("{e}")).json().await.unwrap_or_default();
    assert_eq!(v["store"], Value::Null);
}

/// The Accounts page sets an account's policy (with the CSRF token, as every action), refuses a bad floor naming
/// the accepted forms, and shows the policy; the Keys page creates an opportunistic key and turns it off again.
#[tokio::test]
async fn dashboard_sets_an_accounts_policy_and_an_opportunistic_key() {
    let env = keyed(Setup { store_accounts: true, linked: false, ..Setup::default() }).await;
    let list: Value = env
        .http
        .get(env.url("/admin/accounts"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    let id = list[0]["id"].as_str().unwrap_or_else(|| panic!("no account: {list}")).to_string();
    let (cookie, csrf) = session(&env).await;
    let act = |body: Value, token: Option<&str>| {
        let mut req = client()
            .post(env.url(&format!("/dashboard/api/accounts/{id}/policy")))
            .header("cookie", &cookie)
            .json(&body);
        if let Some(t) = token {
            req = req.header("x-csrf-token", t);
        }
        async move {
            let r = req.send().await.unwrap_or_else(|e| panic!("{e}"));
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default())
        }
    };
    // Every field of the card goes with each action, as the page sends them.
    let form = |policy: &str, floor: &str| json!({"label": "", "proxy": "", "policy": policy, "floor": floor});
    assert_eq!(act(form("burn_first", ""), None).await.0, 403, "no CSRF token: refused");
    let (status, v) = act(form("preserve", "45"), Some(&csrf)).await;
    assert_eq!((status, &v["account"]["stewardship"]["policy"]), (200, &json!("preserve:45")), "{v}");
    let (status, v) = act(form("preserve", "0"), Some(&csrf)).await;
    let message = v["error"].as_str().unwrap_or_default();
    assert!(status == 400 && message.contains("burn_first") && message.contains("preserve:PERCENT"), "{v}");
    let page = client()
        .get(env.url("/dashboard/accounts"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("<dd>preserve 45%</dd>"), "{html}");
    assert!(html.contains("<option value=\"preserve\" selected>") && html.contains("value=\"45\""), "{html}");
    let (status, v) = act(form("normal", "45"), Some(&csrf)).await;
    assert_eq!((status, &v["account"]["stewardship"]["policy"]), (200, &json!("normal")), "{v}");
    // An opportunistic key from the Keys page's form, then turned off by the edit form.
    let key_form = |opportunistic: bool| {
        json!({"name": "night", "models": "", "rpm": null, "concurrency": null, "daily_tokens": null,
               "monthly_tokens": null, "expires": "", "opportunistic": opportunistic})
    };
    let send = |path: String, body: Value| {
        let req =
            client().post(env.url(&path)).header("cookie", &cookie).header("x-csrf-token", &csrf).json(&body).send();
        async move {
            let r = req.await.unwrap_or_else(|e| panic!("{e}"));
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or_default())
        }
    };
    let (status, v) = send("/dashboard/api/keys".into(), key_form(true)).await;
    assert_eq!((status, &v["opportunistic"]), (201, &json!(true)), "{v}");
    let key = v["id"].as_str().unwrap_or_default().to_string();
    let page = client()
        .get(env.url("/dashboard/keys"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("only what would expire") && html.contains("type=\"checkbox\" checked"), "{html}");
    let (status, v) = send(format!("/dashboard/api/keys/{key}"), key_form(false)).await;
    assert_eq!((status, &v["opportunistic"]), (200, &json!(false)), "{v}");
}
