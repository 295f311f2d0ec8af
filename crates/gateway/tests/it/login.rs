//! `codex-gateway login` end to end against fake-codex: the browser flow (driven programmatically through the
//! fake's auto-approving authorize endpoint and the loopback callback server), the device flow, the paste flow,
//! state checks, time limits, and a stored login serving a request through the gateway.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use codex_gateway::auth::Tokens;
use codex_gateway::auth::login::{self, LoginError, LoginOptions, Prompt};
use codex_gateway::config::{Config, Overrides, RawConfig};
use codex_gateway::store::{AccountStatus, Store};
use fake_codex::{FakeCodex, FakeConfig};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

async fn fake() -> FakeCodex {
    FakeCodex::start(FakeConfig::default()).await.unwrap_or_else(|e| panic!("fake-codex: {e}"))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("client: {e}"))
}

/// Like a browser that shows us where it is sent instead of going there.
fn no_redirect() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"))
}

/// Production options except: an ephemeral callback port, no browser, short windows.
fn options(fake: &FakeCodex) -> LoginOptions {
    let mut o = LoginOptions::new(&fake.issuer());
    o.callback_ports = vec![0];
    o.open_browser = false;
    o.timeout = Duration::from_secs(20);
    o.device_timeout = Duration::from_secs(20);
    o
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("cgw-login-{}", uuid::Uuid::new_v4().simple()))
}

/// The prompts a flow emits, as a channel.
fn prompts() -> (impl FnMut(Prompt) + Send + 'static, mpsc::UnboundedReceiver<Prompt>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        move |p| {
            let _ = tx.send(p);
        },
        rx,
    )
}

/// Open the authorize URL like a browser would; return where the issuer redirects to.
async fn authorize(url: &str) -> String {
    let resp = no_redirect().get(url).send().await.unwrap_or_else(|e| panic!("GET authorize: {e}"));
    assert_eq!(resp.status().as_u16(), 302, "{:?}", resp.text().await);
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no Location"))
}

/// The redirect names `localhost`; tests only ever talk to 127.0.0.1.
fn on_loopback(location: &str) -> url::Url {
    let mut u = url::Url::parse(location).unwrap_or_else(|e| panic!("{location}: {e}"));
    assert_eq!(u.host_str(), Some("localhost"));
    u.set_host(Some("127.0.0.1")).unwrap_or_else(|e| panic!("{e}"));
    u
}

fn with_state(location: &str, state: &str) -> String {
    let mut u = url::Url::parse(location).unwrap_or_else(|e| panic!("{e}"));
    let pairs: Vec<(String, String)> =
        u.query_pairs().into_owned().map(|(k, v)| if k == "state" { (k, state.to_string()) } else { (k, v) }).collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap_or_else(|e| panic!("{e}")).query_pairs().into_owned().collect()
}

fn code_exchanges(fake: &FakeCodex) -> Vec<String> {
    fake.token_calls().into_iter().filter(|c| c.grant_type == "authorization_code").map(|c| c.outcome).collect()
}

/// The gateway on a free port with `dir/data` as its store and no Codex CLI login to fall back on.
async fn start_gateway(fake: &FakeCodex, dir: &Path) -> (String, tokio::sync::oneshot::Sender<()>) {
    let mut env: HashMap<String, String> = HashMap::new();
    for (k, v) in [
        ("HOME", dir.display().to_string()),
        ("CODEX_HOME", dir.join("codex-home").display().to_string()),
        ("CODEX_GATEWAY_DATA_DIR", dir.join("data").display().to_string()),
        ("CODEX_GATEWAY_UPSTREAM_BASE_URL", fake.codex_base_url()),
        ("CODEX_GATEWAY_CHATGPT_BASE_URL", fake.chatgpt_base_url()),
        ("CODEX_GATEWAY_AUTH_ISSUER", fake.issuer()),
        ("CODEX_GATEWAY_OPENAI_BASE_URL", fake.openai_api_base()),
    ] {
        env.insert(k.to_string(), v);
    }
    let overrides = Overrides { port: Some(0), ..Default::default() };
    let config = Config::resolve(RawConfig::default(), &overrides, &env).unwrap_or_else(|e| panic!("config: {e:#}"));
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        if let Err(e) = codex_gateway::server::run(config, listener, shutdown).await {
            eprintln!("gateway stopped: {e:#}");
        }
    });
    (format!("http://{addr}"), tx)
}

#[tokio::test]
async fn browser_login_end_to_end_then_the_stored_account_serves_a_request() {
    let fake = fake().await;
    let opts = options(&fake);
    let (prompt, mut rx) = prompts();
    let flow = tokio::spawn({
        let opts = opts.clone();
        async move { login::browser_login(&http(), &opts, prompt).await }
    });
    let Some(Prompt::Browser { url }) = rx.recv().await else { panic!("no browser prompt") };
    assert!(url.starts_with(&format!("{}/oauth/authorize?", fake.issuer())), "{url}");
    let q = query(&url);
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    assert!(redirect_uri.starts_with("http://localhost:") && redirect_uri.ends_with("/auth/callback"));
    assert_eq!(q.get("code_challenge_method").map(String::as_str), Some("S256"));

    let location = authorize(&url).await;
    assert!(location.starts_with(&format!("{redirect_uri}?code=")), "{location}");
    let callback = on_loopback(&location);
    let page = http().get(callback.clone()).send().await.unwrap_or_else(|e| panic!("callback: {e}"));
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap_or_default().contains("You can close this tab"));

    let tokens: Tokens = flow.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("login: {e}"));
    assert!(fake.account_ids().contains(&tokens.account_id), "{tokens:?}");
    assert_eq!(code_exchanges(&fake), ["ok"]);
    // One-shot: the callback server is gone once the login is done.
    assert!(http().get(callback).timeout(Duration::from_secs(2)).send().await.is_err());

    // Into the store, and back out after reopening it.
    let dir = temp_dir();
    let db = dir.join("data/gateway.db");
    let saved = codex_gateway::accounts::manage::save_login(
        &Store::open(&db).unwrap_or_else(|e| panic!("{e}")),
        tokens.clone(),
        Some("work".into()),
    )
    .unwrap_or_else(|e| panic!("save: {e:#}"));
    assert!(!saved.replaced);
    let store = Store::open(&db).unwrap_or_else(|e| panic!("{e}"));
    let back = store.get_account(&saved.account.id).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("gone"));
    assert_eq!(back.tokens.as_ref().map(|t| t.refresh_token.as_str()), Some(tokens.refresh_token.as_str()));
    assert_eq!(back.tokens.as_ref().map(|t| t.account_id.as_str()), Some(tokens.account_id.as_str()));
    assert_eq!(back.label.as_deref(), Some("work"));
    assert_eq!(back.plan.as_deref(), Some("plus"));
    assert!(back.email.is_some());
    assert_eq!(back.status, AccountStatus::Active);
    // A re-login of the same identity replaces the tokens and keeps the label.
    let again =
        codex_gateway::accounts::manage::save_login(&store, tokens.clone(), None).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(again.replaced);
    let back = store.get_account(&saved.account.id).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("gone"));
    assert_eq!(back.label.as_deref(), Some("work"));
    drop(store);

    // The gateway serves a request with the stored login.
    let (base, stop) = start_gateway(&fake, &dir).await;
    let resp = http()
        .post(format!("{base}/v1/chat/completions"))
        .json(&json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("chat: {e}"));
    let status = resp.status().as_u16();
    assert_eq!(status, 200, "{}", resp.text().await.unwrap_or_default());
    let upstream = fake.requests_to("/responses");
    assert_eq!(upstream.last().and_then(|r| r.account_id.clone()), Some(tokens.account_id.clone()));
    let _ = stop.send(());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn browser_callback_with_a_forged_state_is_rejected() {
    let fake = fake().await;
    let opts = options(&fake);
    let (prompt, mut rx) = prompts();
    let flow = tokio::spawn(async move { login::browser_login(&http(), &opts, prompt).await });
    let Some(Prompt::Browser { url }) = rx.recv().await else { panic!("no browser prompt") };
    let location = with_state(&authorize(&url).await, "forged");
    let page = http().get(on_loopback(&location)).send().await.unwrap_or_else(|e| panic!("callback: {e}"));
    assert_eq!(page.status().as_u16(), 400);
    assert!(page.text().await.unwrap_or_default().contains("state mismatch"));
    let result = flow.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(result, Err(LoginError::StateMismatch)), "{result:?}");
    assert!(code_exchanges(&fake).is_empty(), "a forged callback must not reach the token endpoint");
}

#[tokio::test]
async fn browser_login_times_out_clearly() {
    let fake = fake().await;
    let mut opts = options(&fake);
    opts.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let result = login::browser_login(&http(), &opts, |_| {}).await;
    assert!(matches!(result, Err(LoginError::TimedOut(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("--device") && message.contains("--paste"), "{message}");
}

#[tokio::test]
async fn callback_port_falls_back_when_the_first_is_busy() {
    let fake = fake().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let busy_port = busy.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"));

    let mut opts = options(&fake);
    opts.callback_ports = vec![busy_port];
    let result = login::browser_login(&http(), &opts, |_| {}).await;
    assert!(matches!(result, Err(LoginError::CallbackPortsBusy { .. })), "{result:?}");

    opts.callback_ports = vec![busy_port, 0];
    let (prompt, mut rx) = prompts();
    let flow = tokio::spawn(async move { login::browser_login(&http(), &opts, prompt).await });
    let Some(Prompt::Browser { url }) = rx.recv().await else { panic!("no browser prompt") };
    let redirect = url::Url::parse(&query(&url).get("redirect_uri").cloned().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(redirect.port(), Some(busy_port));
    // Finish the login through the fallback port.
    http().get(on_loopback(&authorize(&url).await)).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(flow.await.unwrap_or_else(|e| panic!("{e}")).is_ok());
    drop(busy);
}

#[tokio::test]
async fn device_login_polls_until_approved() {
    let fake = fake().await;
    let opts = options(&fake);
    let (prompt, mut rx) = prompts();
    let tokens = login::device_login(&http(), &opts, prompt).await.unwrap_or_else(|e| panic!("device login: {e}"));
    match rx.recv().await {
        Some(Prompt::Device { verification_url, user_code }) => {
            assert_eq!(verification_url, format!("{}/codex/device", fake.issuer()));
            assert!(!user_code.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.account_ids().contains(&tokens.account_id));
    // The fake answers "pending" twice, then approves.
    let polls = fake.requests_to("/api/accounts/deviceauth/token");
    assert_eq!(polls.iter().map(|r| r.status).collect::<Vec<_>>(), [403, 403, 200]);
    assert_eq!(code_exchanges(&fake), ["ok"]);
    // The code exchange is form-encoded (the refresh call is JSON).
    let exchange = fake.requests_to("/oauth/token");
    let content_type =
        exchange.last().and_then(|r| r.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone()));
    assert_eq!(content_type.as_deref(), Some("application/x-www-form-urlencoded"));
}

#[tokio::test]
async fn device_login_gives_up_after_its_window() {
    let fake = fake().await;
    let mut opts = options(&fake);
    opts.device_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let result = login::device_login(&http(), &opts, |_| {}).await;
    assert!(matches!(result, Err(LoginError::DeviceTimedOut(_))), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(code_exchanges(&fake).is_empty());
}

#[tokio::test]
async fn paste_login_accepts_the_redirect_address() {
    let fake = fake().await;
    let opts = options(&fake);
    let (prompt, mut rx) = prompts();
    let (mut keyboard, input) = tokio::io::duplex(4096);
    let flow =
        tokio::spawn(async move { login::paste_login(&http(), &opts, prompt, tokio::io::BufReader::new(input)).await });
    let Some(Prompt::Paste { url }) = rx.recv().await else { panic!("no paste prompt") };
    assert_eq!(query(&url).get("redirect_uri").map(String::as_str), Some("http://localhost:1455/auth/callback"));
    // The browser would now fail to load localhost:1455; the user copies the address instead.
    let location = authorize(&url).await;
    assert!(location.starts_with("http://localhost:1455/auth/callback?code="), "{location}");
    keyboard.write_all(format!("\n  {location}  \n").as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    let tokens = flow.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("paste login: {e}"));
    assert!(fake.account_ids().contains(&tokens.account_id));
    assert_eq!(code_exchanges(&fake), ["ok"]);
}

#[tokio::test]
async fn paste_login_rejects_a_foreign_state_and_empty_input() {
    let fake = fake().await;
    let opts = options(&fake);
    let (prompt, mut rx) = prompts();
    let (mut keyboard, input) = tokio::io::duplex(4096);
    let flow = tokio::spawn({
        let opts = opts.clone();
        async move { login::paste_login(&http(), &opts, prompt, tokio::io::BufReader::new(input)).await }
    });
    let Some(Prompt::Paste { url }) = rx.recv().await else { panic!("no paste prompt") };
    let location = with_state(&authorize(&url).await, "from-another-login");
    keyboard.write_all(format!("{location}\n").as_bytes()).await.unwrap_or_else(|e| panic!("{e}"));
    let result = flow.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(result, Err(LoginError::StateMismatch)), "{result:?}");
    assert!(code_exchanges(&fake).is_empty());

    let result = login::paste_login(&http(), &opts, |_| {}, tokio::io::BufReader::new(&b""[..])).await;
    assert!(matches!(result, Err(LoginError::BadPaste(_))), "{result:?}");
}
