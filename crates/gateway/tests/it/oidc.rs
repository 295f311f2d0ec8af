//! Single sign-on to the dashboard against a real OpenID provider (npm `oidc-provider`, tests/oidc/provider.mjs,
//! installed by scripts/setup-test-deps) on 127.0.0.1: the test plays the browser, with a cookie jar, through the
//! gateway's start, the provider's login form and consent, and the gateway's callback; then checks the user
//! made, their role from the groups, the restrictions by domain and group, a wrong and a replayed state, a
//! disabled user, and every refusal in the audit trail with its reason.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, first_line, start};

pub(crate) const ADMIN_KEY: &str = "oidc-admin-key-5c1e";
pub(crate) const CLIENT_ID: &str = "codex-gateway";
pub(crate) const CLIENT_SECRET: &str = "a-client-secret-for-tests-1f0b";

/// The provider's process, ended when dropped.
pub(crate) struct Idp {
    child: Child,
    port: u16,
    /// Held open: the provider writes to its standard output, and a closed pipe would end it.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    l.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"))
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

/// Start the provider on `port` with one client whose redirect URI is the gateway's callback at `gateway`, signing
/// ID tokens with `alg`; `accounts` gives the claims of login names.
pub(crate) fn idp(port: u16, gateway: &str, alg: &str, accounts: Value) -> Idp {
    idp_with(port, gateway, alg, accounts, false)
}

/// [`idp`]; with `userinfo_only` the e-mail and groups are only in the userinfo answer, not in the ID token.
fn idp_with(port: u16, gateway: &str, alg: &str, accounts: Value, userinfo_only: bool) -> Idp {
    let dir = provider_dir();
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "tests/oidc/node_modules is missing: run scripts/setup-test-deps"
    );
    let config = json!({
        "port": port,
        "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "alg": alg,
                     "redirect_uri": format!("{gateway}/dashboard/sso/callback")}],
        "accounts": accounts,
        "userinfo_only": userinfo_only,
    });
    let mut child = Command::new("node")
        .arg("provider.mjs")
        .current_dir(&dir)
        .env("OIDC_TEST_CONFIG", config.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("node: {e}"));
    let (line, stdout) = first_line(&mut child, PROVIDER_START, "the OpenID provider");
    if !line.starts_with("listening") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the provider did not start: {line:?}");
    }
    Idp { child, port, _stdout: stdout }
}

/// How long the provider may take to listen (node loads `oidc-provider` and makes its keys; seconds on a loaded host).
const PROVIDER_START: Duration = Duration::from_secs(60);

/// A gateway with `[dashboard.oidc]` for the provider on `port` (discovered at the first sign-in), and a provider
/// for it.
async fn setup(extra: &str, alg: &str, accounts: Value) -> (TestEnv, Idp) {
    setup_with(extra, alg, accounts, false).await
}

async fn setup_with(extra: &str, alg: &str, accounts: Value, userinfo_only: bool) -> (TestEnv, Idp) {
    let port = free_port();
    let toml = format!(
        "[dashboard.oidc]\nissuer = \"http://127.0.0.1:{port}\"\nclient_id = \"{CLIENT_ID}\"\n\
         client_secret = \"{CLIENT_SECRET}\"\nscopes = [\"email\", \"profile\", \"groups\"]\n\
         display_name = \"Test IdP\"\n{extra}"
    );
    let env = start(Setup {
        accounts: 0,
        linked: false,
        config_toml: Some(toml),
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN_KEY.to_string())],
        ..Setup::default()
    })
    .await;
    let provider = idp_with(port, &env.base, alg, accounts, userinfo_only);
    (env, provider)
}

/// A browser: no automatic redirects, one cookie jar (browsers share cookies between the ports of a host, and the
/// gateway's and the provider's cookie names differ).
#[derive(Default)]
pub(crate) struct Browser {
    jar: HashMap<String, String>,
    /// A load balancer in front of a team: requests to the first address go to the second.
    pub balancer: Option<(String, String)>,
}

pub(crate) struct Page {
    pub status: u16,
    pub url: String,
    location: Option<String>,
    pub body: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `href` against `base`.
fn join(base: &str, href: &str) -> String {
    let base = url::Url::parse(base).unwrap_or_else(|e| panic!("{base}: {e}"));
    base.join(&href.replace("&amp;", "&")).map(String::from).unwrap_or_else(|e| panic!("{href}: {e}"))
}

impl Browser {
    pub async fn send(&mut self, method: Method, url: &str, form: Option<&[(&str, &str)]>) -> Page {
        let routed = match &self.balancer {
            Some((front, to)) if url.starts_with(front.as_str()) => format!("{to}{}", &url[front.len()..]),
            _ => url.to_string(),
        };
        let url = routed.as_str();
        let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut req = client().request(method, url);
        if !cookies.is_empty() {
            req = req.header("cookie", cookies.join("; "));
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        for c in resp.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let first = c.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else { continue };
            let expired = c.to_ascii_lowercase().contains("max-age=0") || c.contains("1970");
            if expired || value.is_empty() {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(name.trim().to_string(), value.to_string());
            }
        }
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(|l| join(url, l));
        Page { status, url: url.to_string(), location, body: resp.text().await.unwrap_or_default() }
    }

    /// GET `url` and follow redirects.
    pub async fn open(&mut self, url: &str) -> Page {
        let mut page = self.send(Method::GET, url, None).await;
        for _ in 0..10 {
            match page.location.clone() {
                Some(next) if (300..400).contains(&page.status) => page = self.send(Method::GET, &next, None).await,
                _ => break,
            }
        }
        page
    }

    /// Submit the page's form (its `action`) with `fields`, and follow redirects.
    async fn submit(&mut self, page: &Page, fields: &[(&str, &str)]) -> Page {
        let action = page.body.split("action=\"").nth(1).and_then(|s| s.split('"').next());
        let action = action.unwrap_or_else(|| panic!("no form on {}: {}", page.url, page.body));
        let mut next = self.send(Method::POST, &join(&page.url, action), Some(fields)).await;
        for _ in 0..10 {
            match next.location.clone() {
                Some(to) if (300..400).contains(&next.status) => next = self.send(Method::GET, &to, None).await,
                _ => break,
            }
        }
        next
    }

    /// The whole sign-in as `login` from the gateway's button to the gateway's answer, the provider's login form
    /// and consent on the way (the provider skips what it does not need: a session it already has). The last page
    /// is the gateway's; the callback URL it was answered at too.
    async fn sign_in(&mut self, env: &TestEnv, login: &str) -> (Page, String) {
        self.sign_in_at(&env.url("/dashboard/sso/start"), login).await
    }

    /// [`Browser::sign_in`] from the start URL `start`.
    pub async fn sign_in_at(&mut self, start: &str, login: &str) -> (Page, String) {
        let mut page = self.open(start).await;
        let mut callback = String::new();
        for _ in 0..4 {
            if page.url.contains("/dashboard/sso/callback") {
                callback = page.url.clone();
                break;
            }
            page = if page.body.contains("name=\"login\"") {
                self.submit(&page, &[("prompt", "login"), ("login", login), ("password", "any")]).await
            } else if page.body.contains("value=\"consent\"") {
                self.submit(&page, &[("prompt", "consent")]).await
            } else {
                panic!("unexpected page at {} ({}): {}", page.url, page.status, page.body)
            };
        }
        assert!(!callback.is_empty(), "never came back to the gateway: {}", page.url);
        (page, callback)
    }

    pub fn jar_insert(&mut self, name: &str, value: &str) {
        self.jar.insert(name.into(), value.into());
    }

    pub fn session(&self) -> Option<&String> {
        self.jar.get("cgw_session")
    }
}

async fn admin(env: &TestEnv, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client().request(method, env.url(path)).bearer_auth(ADMIN_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn user_named(env: &TestEnv, name: &str) -> Option<Value> {
    let (_, users) = admin(env, Method::GET, "/admin/users", None).await;
    users.as_array().and_then(|u| u.iter().find(|u| u["name"] == name).cloned())
}

/// The single sign-on entries of the audit trail: (outcome, target, reason).
async fn sign_ins(env: &TestEnv) -> Vec<(String, String, String)> {
    let (_, trail) = admin(env, Method::GET, "/admin/audit?action=user.sign_in", None).await;
    let rows = trail["entries"].as_array().cloned().unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    rows.iter()
        .filter(|r| r["details"]["method"] == "oidc")
        .map(|r| (text(&r["outcome"]), text(&r["target"]), text(&r["details"]["reason"])))
        .collect()
}

fn has(rows: &[(String, String, String)], outcome: &str, target: &str, reason: &str) -> bool {
    rows.iter().any(|(o, t, r)| o == outcome && t.starts_with(target) && r == reason)
}

#[tokio::test]
async fn sso_makes_a_user_with_the_default_role_and_refuses_a_wrong_or_replayed_state() {
    let accounts = json!({"ana": {"email": "ana@example.com", "name": "Ana", "groups": ["staff"]}});
    let (env, _idp) = setup("", "RS256", accounts).await;
    let mut b = Browser::default();
    let login = b.open(&env.url("/dashboard/login")).await;
    assert!(login.body.contains("Sign in with Test IdP"), "{}", login.body);
    assert!(login.body.contains("admin key"), "the admin key's form stays");

    let (page, callback) = b.sign_in(&env, "ana").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("url=/dashboard/keys"), "a member's home: {}", page.body);
    assert!(b.session().is_some_and(|s| s.starts_with("cgs_")), "{:?}", b.jar);
    assert!(!b.jar.contains_key("cgw_sso"), "the state cookie is cleared");
    let keys = b.open(&env.url("/dashboard/keys")).await;
    assert_eq!(keys.status, 200, "the session opens the member's pages");
    let user = user_named(&env, "ana@example.com").await.unwrap_or_else(|| panic!("no user made"));
    assert_eq!(user["role"], "member", "{user}");

    // The same answer again: its sign-in was taken by the first use.
    let state = callback.split("state=").nth(1).and_then(|s| s.split('&').next()).unwrap_or_default().to_string();
    b.jar.insert("cgw_sso".into(), state);
    let replay = b.send(Method::GET, &callback, None).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.body.contains("expired or was already used"), "{}", replay.body);
    // An answer whose state is not this browser's.
    b.jar.insert("cgw_sso".into(), "another-browsers-state".into());
    let wrong = b.send(Method::GET, &callback, None).await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.body.contains("does not belong to this browser"), "{}", wrong.body);

    // A second sign-in finds the same user (linked by issuer and subject), with no second user; asked from the
    // Codex CLI's device page (the login page's `?next=`), it goes back there, and never to another site.
    let mut again = Browser::default();
    let asked = env.url("/dashboard/sso/start?next=%2Fdashboard%2Foauth%2Fdevice%3Fuser_code%3DBCDF-GHJK%26x%3D%221");
    let (page, _) = again.sign_in_at(&asked, "ana").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("url=/dashboard/oauth/device?user_code=BCDF-GHJK&amp;x=&quot;1\""), "{}", page.body);
    let mut elsewhere = Browser::default();
    let (page, _) = elsewhere.sign_in_at(&env.url("/dashboard/sso/start?next=https%3A%2F%2Fevil.example"), "ana").await;
    assert!(page.body.contains("url=/dashboard/keys\""), "only the dashboard's own pages: {}", page.body);
    let (_, users) = admin(&env, Method::GET, "/admin/users", None).await;
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");

    let trail = sign_ins(&env).await;
    assert!(has(&trail, "ok", "ana@example.com", ""), "{trail:?}");
    assert!(has(&trail, "refused", "", "state_unknown"), "{trail:?}");
    assert!(has(&trail, "refused", "", "state_mismatch"), "{trail:?}");
    let (_, raw) = admin(&env, Method::GET, "/admin/audit?action=user.sign_in", None).await;
    assert!(!raw.to_string().contains(CLIENT_SECRET) && !raw.to_string().contains("code="), "no secret in the trail");
}

#[tokio::test]
async fn a_group_mapped_to_admin_gives_admin_and_the_map_follows_the_groups() {
    let accounts = json!({
        "bob": {"email": "bob@example.com", "groups": ["staff", "gw-admins"]},
        "eve": {"email": "eve@example.com", "groups": ["auditors"]},
    });
    let extra = "default_role = \"viewer\"\n[dashboard.oidc.role_map]\n\"gw-admins\" = \"admin\"\nstaff = \"member\"";
    // ES256 here (RS256 in the other tests): both kinds of the provider's keys are checked.
    let (env, _idp) = setup(extra, "ES256", accounts).await;
    let (page, _) = Browser::default().sign_in(&env, "bob").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("url=/dashboard\""), "an admin's home: {}", page.body);
    let bob = user_named(&env, "bob@example.com").await.unwrap_or_else(|| panic!("no bob"));
    assert_eq!(bob["role"], "admin", "the highest mapped role wins: {bob}");
    let (page, _) = Browser::default().sign_in(&env, "eve").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let eve = user_named(&env, "eve@example.com").await.unwrap_or_else(|| panic!("no eve"));
    assert_eq!(eve["role"], "viewer", "no mapped group: the default role: {eve}");
}

#[tokio::test]
async fn sign_in_outside_the_allowed_domains_or_groups_is_refused_and_audited() {
    let accounts = json!({
        "carol": {"email": "carol@elsewhere.org", "groups": ["staff"]},
        "dave": {"email": "dave@example.com", "groups": ["guests"]},
        "fay": {"email": "fay@example.com", "groups": ["staff"]},
    });
    let extra = "allowed_domains = [\"example.com\"]\nallowed_groups = [\"staff\"]";
    // The e-mail addresses and groups only in the userinfo answer: the gateway asks for them there.
    let (env, _idp) = setup_with(extra, "RS256", accounts, true).await;
    // The provider's refusal (the person said no at its consent page) comes back as a page that says so.
    let mut b = Browser::default();
    let refused = b.send(Method::GET, &env.url("/dashboard/sso/callback?error=access_denied&state=x"), None).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("refused the sign-in (access_denied)"), "{}", refused.body);
    let (page, _) = Browser::default().sign_in(&env, "carol").await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("restricted to other e-mail domains"), "{}", page.body);
    let (page, _) = Browser::default().sign_in(&env, "dave").await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("restricted to members of other groups"), "{}", page.body);
    let mut fay = Browser::default();
    let (page, _) = fay.sign_in(&env, "fay").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        user_named(&env, "carol@elsewhere.org").await.is_none() && user_named(&env, "dave@example.com").await.is_none()
    );
    let trail = sign_ins(&env).await;
    assert!(has(&trail, "refused", "carol@elsewhere.org", "domain_not_allowed"), "{trail:?}");
    assert!(has(&trail, "refused", "dave@example.com", "group_not_allowed"), "{trail:?}");
    assert!(has(&trail, "ok", "fay@example.com", ""), "{trail:?}");
    assert!(has(&trail, "refused", "", "provider_refused"), "{trail:?}");
}

#[tokio::test]
async fn new_signing_keys_at_the_provider_are_fetched_when_a_token_names_one() {
    let accounts = json!({"hana": {"email": "hana@example.com"}});
    let (env, first) = setup("", "ES256", accounts.clone()).await;
    let port = url::Url::parse(&env.url("/")).ok().and_then(|u| u.port()).unwrap_or_default();
    let issuer_port = first.port;
    let (page, _) = Browser::default().sign_in(&env, "hana").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let keys_fetched = std::time::Instant::now();
    // The provider starts again on its port with new keys (a rotation): the gateway holds the old set.
    drop(first);
    let _second = idp(issuer_port, &format!("http://127.0.0.1:{port}"), "ES256", accounts);
    let wait = codex_gateway::users::oidc::provider::JWKS_REFETCH.saturating_sub(keys_fetched.elapsed());
    tokio::time::sleep(wait).await;
    let (page, _) = Browser::default().sign_in(&env, "hana").await;
    assert_eq!(page.status, 200, "the new key was fetched: {}", page.body);
}

#[tokio::test]
async fn a_disabled_user_is_refused_and_a_user_made_by_hand_is_not_taken_over() {
    let accounts = json!({"gus": {"email": "gus@example.com"}, "ivy": {"email": "ivy@example.com"}});
    let (env, _idp) = setup("", "RS256", accounts).await;
    // A password user of the same name is not linked to the provider's user by the name alone.
    let body = json!({"name": "ivy@example.com", "role": "admin", "password": "a long enough password"});
    assert_eq!(admin(&env, Method::POST, "/admin/users", Some(body)).await.0, 201);
    let mut b = Browser::default();
    let (page, _) = b.sign_in(&env, "ivy").await;
    assert_eq!(page.status, 409, "{}", page.body);
    assert!(page.body.contains("already exists and is not linked"), "{}", page.body);
    assert!(b.session().is_none());
    assert!(has(&sign_ins(&env).await, "refused", "ivy@example.com", "name_taken"));

    let (page, _) = Browser::default().sign_in(&env, "gus").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let gus = user_named(&env, "gus@example.com").await.unwrap_or_else(|| panic!("no gus"));
    let id = gus["id"].as_str().unwrap_or_default();
    let (s, v) = admin(&env, Method::PATCH, &format!("/admin/users/{id}"), Some(json!({"disabled": true}))).await;
    assert_eq!(s, 200, "{v}");
    let mut b = Browser::default();
    let (page, _) = b.sign_in(&env, "gus").await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("this user is disabled"), "{}", page.body);
    assert!(b.session().is_none(), "no session for a disabled user");
    assert!(has(&sign_ins(&env).await, "refused", "gus@example.com", "disabled"));
}

#[tokio::test]
async fn without_oidc_the_login_page_has_no_button_and_the_start_is_not_found() {
    let env = start(Setup {
        accounts: 0,
        linked: false,
        env: vec![("CODEX_GATEWAY_ADMIN_KEY", ADMIN_KEY.to_string())],
        ..Setup::default()
    })
    .await;
    let mut b = Browser::default();
    let login = b.open(&env.url("/dashboard/login")).await;
    assert_eq!(login.status, 200);
    assert!(!login.body.contains("Sign in with"), "{}", login.body);
    let start = b.send(Method::GET, &env.url("/dashboard/sso/start"), None).await;
    assert_eq!(start.status, 404, "{}", start.body);
    assert!(start.body.contains("single sign-on is not configured"), "{}", start.body);
}
