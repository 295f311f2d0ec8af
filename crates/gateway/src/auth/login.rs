//! `codex-gateway login`: getting a new ChatGPT login for the gateway's own store.
//!
//! Three ways to the same authorization code, then one code exchange (spec/codex-upstream.md, "Credentials and
//! OAuth"):
//! - browser: PKCE S256 with a one-shot callback server on 127.0.0.1:1455 (or 1457), state checked;
//! - device: the device-code flow for machines without a browser;
//! - paste: print the URL, then read back the address the browser ended on, for remote servers whose
//!   localhost the browser cannot reach.
//!
//! Each flow returns [`Tokens`]; [`save`] commits them to the store (through `accounts::stored_from_tokens`) and
//! [`run`] is the command-line front end. Everything a test must control (callback ports, opening a browser,
//! time limits, where prompts go, where pasted input comes from) is passed in, never read from globals.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::{mpsc, oneshot};

use super::{CLIENT_ID, Tokens, jwt, now_unix};
use crate::accounts::stored_from_tokens;
use crate::config::{Config, Env, ProcessEnv};
use crate::store::{Store, StoredAccount};

/// The callback ports the issuer accepts for this client, in order of preference.
pub const DEFAULT_CALLBACK_PORTS: [u16; 2] = [1455, 1457];
/// How long the browser flow waits for the callback.
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long the device flow polls before giving up.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The `redirect_uri` for a callback server on `port`. The issuer matches it literally, hence `localhost`.
pub fn callback_redirect_uri(port: u16) -> String {
    format!("http://localhost:{port}/auth/callback")
}

/// Which way to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginMode {
    Browser,
    Device,
    Paste,
}

impl LoginMode {
    /// From the `--device` / `--paste` flags (clap keeps them exclusive).
    pub fn from_flags(device: bool, paste: bool) -> LoginMode {
        match (device, paste) {
            (true, _) => LoginMode::Device,
            (false, true) => LoginMode::Paste,
            (false, false) => LoginMode::Browser,
        }
    }
}

/// What the flows need from their caller. [`LoginOptions::new`] gives the production values.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// e.g. `https://auth.openai.com` (no trailing slash needed).
    pub issuer: String,
    /// Tried in order; the first free one is used. Tests pass `[0]` for an ephemeral port.
    pub callback_ports: Vec<u16>,
    /// Launch a browser on the authorize URL (the URL is always handed to the prompt as well).
    pub open_browser: bool,
    /// The browser flow's window.
    pub timeout: Duration,
    /// The device flow's window.
    pub device_timeout: Duration,
}

impl LoginOptions {
    pub fn new(issuer: &str) -> LoginOptions {
        LoginOptions {
            issuer: issuer.trim_end_matches('/').to_string(),
            callback_ports: DEFAULT_CALLBACK_PORTS.to_vec(),
            open_browser: false,
            timeout: BROWSER_TIMEOUT,
            device_timeout: DEVICE_TIMEOUT,
        }
    }

    fn issuer(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }
}

/// What a flow asks the user to do. The CLI prints it; tests act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Browser flow: sign in at `url`; the callback server is waiting.
    Browser { url: String },
    /// Paste flow: sign in at `url`, then paste the address the browser ended on.
    Paste { url: String },
    /// Device flow: open `verification_url` and enter `user_code`.
    Device { verification_url: String, user_code: String },
}

/// Why a login failed. Messages say what to do next; none contains a token.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid issuer URL {0:?}")]
    BadIssuer(String),
    #[error(
        "cannot listen for the login callback on 127.0.0.1 port {ports} ({reason}); another login may be running. \
         Use `codex-gateway login --device` or `--paste` instead"
    )]
    CallbackPortsBusy { ports: String, reason: String },
    #[error(
        "no sign-in arrived within {}; run `codex-gateway login` again (on a remote machine, use --device or --paste)",
        human(*.0)
    )]
    TimedOut(Duration),
    #[error("the sign-in answer does not belong to this login (state mismatch: a stale tab or a forged request)")]
    StateMismatch,
    #[error("the sign-in answer carries no authorization code")]
    MissingCode,
    #[error("the login callback server stopped unexpectedly; run the login again")]
    CallbackServerStopped,
    #[error("the sign-in was refused: {0}")]
    Denied(String),
    #[error("{0}")]
    BadPaste(String),
    #[error("the device code was not approved within {}; run `codex-gateway login --device` again", human(*.0))]
    DeviceTimedOut(Duration),
    #[error("cannot reach {endpoint}: {reason}")]
    Network { endpoint: &'static str, reason: String },
    #[error("{endpoint} refused the request (HTTP {status}{})", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Refused { endpoint: &'static str, status: u16, code: Option<String> },
    #[error("{endpoint} returned an unreadable answer")]
    BadResponse { endpoint: &'static str },
    #[error("cannot read the pasted address: {0}")]
    Input(#[source] std::io::Error),
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{} ms", d.as_millis()),
        s if s % 60 == 0 && s >= 60 => format!("{} minute{}", s / 60, if s == 60 { "" } else { "s" }),
        s => format!("{s} second{}", if s == 1 { "" } else { "s" }),
    }
}

const TOKEN_ENDPOINT: &str = "the token endpoint";
const DEVICE_ENDPOINT: &str = "the device-code endpoint";

// ---------------------------------------------------------------------------------------------------------------
// PKCE, state and the authorize URL

/// A PKCE S256 pair (RFC 7636).
#[derive(Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce").field("challenge", &self.challenge).finish_non_exhaustive()
    }
}

impl Pkce {
    /// A fresh verifier: 64 random bytes, base64url (86 characters).
    pub fn generate() -> Pkce {
        Pkce::from_verifier(random_base64url(64))
    }

    pub fn from_verifier(verifier: String) -> Pkce {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce { verifier, challenge }
    }
}

/// A fresh `state`: 32 random bytes, base64url.
pub fn random_state() -> String {
    random_base64url(32)
}

fn random_base64url(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// `{issuer}/oauth/authorize?...` with the parameters (and their order) of the official client.
pub fn authorize_url(issuer: &str, redirect_uri: &str, challenge: &str, state: &str) -> Result<String, LoginError> {
    let issuer = issuer.trim_end_matches('/');
    let mut url =
        url::Url::parse(&format!("{issuer}/oauth/authorize")).map_err(|_| LoginError::BadIssuer(issuer.into()))?;
    let params = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", redirect_uri),
        ("scope", "openid profile email offline_access"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("id_token_add_organizations", "true"),
        ("codex_cli_simplified_flow", "true"),
        ("state", state),
        ("originator", "codex_cli_rs"),
    ];
    // Percent-encode like the official client (`%20`, not `+`, for spaces). `byte_serialize` escapes a literal
    // `+` as `%2B`, so every `+` it leaves stands for a space.
    let query = params
        .iter()
        .map(|(k, v)| format!("{k}={}", url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()))
        .collect::<Vec<_>>()
        .join("&")
        .replace('+', "%20");
    url.set_query(Some(&query));
    Ok(url.to_string())
}

/// The authorization code from a callback's query, after checking `state` (first, so nothing from a forged
/// request is trusted).
pub fn code_from_callback(params: &HashMap<String, String>, expected_state: &str) -> Result<String, LoginError> {
    if params.get("state").map(String::as_str) != Some(expected_state) {
        return Err(LoginError::StateMismatch);
    }
    if let Some(error) = params.get("error") {
        let detail = params.get("error_description").map(|d| format!(": {d}")).unwrap_or_default();
        return Err(LoginError::Denied(format!("{error}{detail}")));
    }
    match params.get("code") {
        Some(code) if !code.is_empty() => Ok(code.clone()),
        _ => Err(LoginError::MissingCode),
    }
}

/// The code from what a user pasted: the full redirect address, or just its `code=...&state=...` query.
pub fn code_from_paste(input: &str, expected_state: &str) -> Result<String, LoginError> {
    let s = input.trim().trim_matches(|c| matches!(c, '"' | '\'' | '<' | '>'));
    if s.is_empty() {
        return Err(LoginError::BadPaste("nothing was pasted".into()));
    }
    let query = match s.split_once('?') {
        Some((_, q)) => q,
        None => s,
    };
    let query = query.split('#').next().unwrap_or_default();
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    if !params.contains_key("code") && !params.contains_key("error") {
        return Err(LoginError::BadPaste(
            "expected the address the browser ended on, like http://localhost:1455/auth/callback?code=...&state=..."
                .into(),
        ));
    }
    code_from_callback(&params, expected_state)
}

// ---------------------------------------------------------------------------------------------------------------
// Code exchange

#[derive(Deserialize)]
struct CodeTokens {
    id_token: String,
    access_token: String,
    refresh_token: String,
}

/// `POST {issuer}/oauth/token` (form-encoded, grant_type=authorization_code) -> [`Tokens`].
pub async fn exchange_code(
    http: &reqwest::Client,
    issuer: &str,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> Result<Tokens, LoginError> {
    let url = format!("{}/oauth/token", issuer.trim_end_matches('/'));
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", CLIENT_ID),
        ("code_verifier", code_verifier),
    ];
    let resp = http.post(&url).form(&form).send().await.map_err(|e| network(TOKEN_ENDPOINT, e))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| network(TOKEN_ENDPOINT, e))?;
    if !status.is_success() {
        return Err(LoginError::Refused {
            endpoint: TOKEN_ENDPOINT,
            status: status.as_u16(),
            code: error_code(&bytes),
        });
    }
    let t: CodeTokens =
        serde_json::from_slice(&bytes).map_err(|_| LoginError::BadResponse { endpoint: TOKEN_ENDPOINT })?;
    let account_id = jwt::claims(&t.id_token)
        .and_then(|c| c.account_id)
        .or_else(|| jwt::claims(&t.access_token).and_then(|c| c.account_id))
        .unwrap_or_default();
    Ok(Tokens {
        id_token: t.id_token,
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        account_id,
        last_refresh: now_unix(),
    })
}

fn network(endpoint: &'static str, e: reqwest::Error) -> LoginError {
    LoginError::Network { endpoint, reason: e.without_url().to_string() }
}

/// The machine-readable code of an OAuth error body: `{"error":{"code":..}}`, `{"error":"..."}` or `{"code":..}`.
fn error_code(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let err = v.get("error");
    err.and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .or_else(|| err.and_then(Value::as_str))
        .or_else(|| v.get("code").and_then(Value::as_str))
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------------------------------
// Browser flow

/// Sign in through a browser: serve the callback on loopback, hand the authorize URL to `prompt` (and to a
/// browser when `opts.open_browser`), wait for the redirect, exchange the code.
pub async fn browser_login(
    http: &reqwest::Client,
    opts: &LoginOptions,
    mut prompt: impl FnMut(Prompt),
) -> Result<Tokens, LoginError> {
    let pkce = Pkce::generate();
    let state = random_state();
    let server = CallbackServer::bind(&opts.callback_ports, state.clone()).await?;
    let redirect_uri = callback_redirect_uri(server.port);
    let url = authorize_url(opts.issuer(), &redirect_uri, &pkce.challenge, &state)?;
    prompt(Prompt::Browser { url: url.clone() });
    if opts.open_browser {
        open_in_browser(&url);
    }
    let code = server.wait(opts.timeout).await?;
    exchange_code(http, opts.issuer(), &code, &redirect_uri, &pkce.verifier).await
}

/// A one-shot HTTP server on 127.0.0.1 answering `GET /auth/callback` once.
struct CallbackServer {
    port: u16,
    results: mpsc::Receiver<Result<String, LoginError>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

struct CallbackState {
    expected_state: String,
    results: mpsc::Sender<Result<String, LoginError>>,
}

impl CallbackServer {
    async fn bind(ports: &[u16], expected_state: String) -> Result<CallbackServer, LoginError> {
        let mut last_error = String::from("no port to try");
        let mut bound = None;
        for &port in ports {
            // Loopback only: the callback carries a live authorization code.
            match tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        let ports_text = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
        let Some(listener) = bound else {
            return Err(LoginError::CallbackPortsBusy { ports: ports_text, reason: last_error });
        };
        let port = listener
            .local_addr()
            .map_err(|e| LoginError::CallbackPortsBusy { ports: ports_text, reason: e.to_string() })?
            .port();
        let (tx, results) = mpsc::channel(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let app = axum::Router::new()
            .route("/auth/callback", axum::routing::get(callback))
            .with_state(Arc::new(CallbackState { expected_state, results: tx }));
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app.into_make_service()).with_graceful_shutdown(shutdown).await {
                tracing::warn!("login callback server stopped: {e}");
            }
        });
        Ok(CallbackServer { port, results, stop, task })
    }

    /// The first callback's outcome, or a timeout; then the server stops.
    async fn wait(mut self, timeout: Duration) -> Result<String, LoginError> {
        let outcome = match tokio::time::timeout(timeout, self.results.recv()).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => Err(LoginError::CallbackServerStopped),
            Err(_) => Err(LoginError::TimedOut(timeout)),
        };
        let _ = self.stop.send(());
        // The page has been answered with `Connection: close`; give the connection a moment to drain.
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task).await.is_err() {
            self.task.abort();
        }
        outcome
    }
}

async fn callback(State(s): State<Arc<CallbackState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let outcome = code_from_callback(&q, &s.expected_state);
    let (status, page) = match &outcome {
        Ok(_) => {
            (StatusCode::OK, page("Signed in", "Sign-in received. You can close this tab and go back to the terminal."))
        }
        Err(e) => (StatusCode::BAD_REQUEST, page("Sign-in failed", &format!("{e}. Run the login again."))),
    };
    // Only the first answer counts; later ones (a reload) still get a page.
    let _ = s.results.try_send(outcome);
    (status, [(header::CONNECTION, "close")], Html(page)).into_response()
}

fn page(title: &str, message: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>{t}</h1><p>{m}</p></body></html>",
        t = html_escape(title),
        m = html_escape(message)
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Whether launching a browser makes sense here: not with `BROWSER=none`, and on Linux only with a display.
pub fn browser_available(env: &dyn Env) -> bool {
    if env.get("BROWSER").as_deref() == Some("none") {
        return false;
    }
    if cfg!(target_os = "linux") {
        return env.get("DISPLAY").is_some() || env.get("WAYLAND_DISPLAY").is_some();
    }
    true
}

/// Best effort: the URL has been printed already, so a missing opener is not an error.
fn open_in_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    let spawned = tokio::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        tracing::debug!("could not start {opener}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Paste flow

/// Sign in on any machine's browser, then paste the redirect address into `input` (one line).
pub async fn paste_login(
    http: &reqwest::Client,
    opts: &LoginOptions,
    mut prompt: impl FnMut(Prompt),
    mut input: impl AsyncBufRead + Unpin,
) -> Result<Tokens, LoginError> {
    let pkce = Pkce::generate();
    let state = random_state();
    let redirect_uri = callback_redirect_uri(DEFAULT_CALLBACK_PORTS[0]);
    let url = authorize_url(opts.issuer(), &redirect_uri, &pkce.challenge, &state)?;
    prompt(Prompt::Paste { url });
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).await.map_err(LoginError::Input)? == 0 {
            return Err(LoginError::BadPaste("the input ended before an address was pasted".into()));
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let code = code_from_paste(&line, &state)?;
    exchange_code(http, opts.issuer(), &code, &redirect_uri, &pkce.verifier).await
}

// ---------------------------------------------------------------------------------------------------------------
// Device flow

#[derive(Deserialize)]
struct UserCode {
    device_auth_id: String,
    #[serde(alias = "usercode")]
    user_code: String,
    #[serde(default)]
    interval: Option<Value>,
}

#[derive(Deserialize)]
struct DeviceApproval {
    authorization_code: String,
    code_verifier: String,
}

/// The poll interval in seconds: the issuer sends a string (`"5"`); a number is accepted too.
fn poll_interval(v: Option<&Value>) -> Duration {
    let secs = match v {
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(Value::Number(n)) => n.as_f64(),
        _ => None,
    }
    .filter(|s| s.is_finite())
    .unwrap_or(5.0);
    Duration::from_secs_f64(secs.clamp(1.0, 60.0))
}

/// Sign in with a code entered on another device: get a user code, poll until approved, exchange.
pub async fn device_login(
    http: &reqwest::Client,
    opts: &LoginOptions,
    mut prompt: impl FnMut(Prompt),
) -> Result<Tokens, LoginError> {
    let issuer = opts.issuer();
    let resp = http
        .post(format!("{issuer}/api/accounts/deviceauth/usercode"))
        .json(&json!({ "client_id": CLIENT_ID }))
        .send()
        .await
        .map_err(|e| network(DEVICE_ENDPOINT, e))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| network(DEVICE_ENDPOINT, e))?;
    if !status.is_success() {
        return Err(LoginError::Refused {
            endpoint: DEVICE_ENDPOINT,
            status: status.as_u16(),
            code: error_code(&bytes),
        });
    }
    let uc: UserCode =
        serde_json::from_slice(&bytes).map_err(|_| LoginError::BadResponse { endpoint: DEVICE_ENDPOINT })?;
    let interval = poll_interval(uc.interval.as_ref());
    prompt(Prompt::Device { verification_url: format!("{issuer}/codex/device"), user_code: uc.user_code.clone() });

    let started = Instant::now();
    let poll_body = json!({ "device_auth_id": uc.device_auth_id, "user_code": uc.user_code });
    let approval = loop {
        match http.post(format!("{issuer}/api/accounts/deviceauth/token")).json(&poll_body).send().await {
            Ok(resp) => {
                let status = resp.status();
                let bytes = resp.bytes().await.map_err(|e| network(DEVICE_ENDPOINT, e))?;
                if status.is_success() {
                    break serde_json::from_slice::<DeviceApproval>(&bytes)
                        .map_err(|_| LoginError::BadResponse { endpoint: DEVICE_ENDPOINT })?;
                }
                let pending = matches!(status.as_u16(), 403 | 404);
                // A server hiccup is not a refusal: keep polling until the window closes.
                if !pending && !status.is_server_error() && status.as_u16() != 429 {
                    return Err(LoginError::Refused {
                        endpoint: DEVICE_ENDPOINT,
                        status: status.as_u16(),
                        code: error_code(&bytes),
                    });
                }
            }
            Err(e) => tracing::debug!("device-code poll failed, retrying: {}", e.without_url()),
        }
        let left = opts.device_timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(LoginError::DeviceTimedOut(opts.device_timeout));
        }
        // The last poll lands on the deadline itself.
        tokio::time::sleep(interval.min(left)).await;
    };
    let redirect_uri = format!("{issuer}/deviceauth/callback");
    exchange_code(http, issuer, &approval.authorization_code, &redirect_uri, &approval.code_verifier).await
}

// ---------------------------------------------------------------------------------------------------------------
// Storing the result, and the command line

/// A login committed to the store.
#[derive(Debug)]
pub struct Saved {
    pub account: StoredAccount,
    /// The store already held this identity (a re-login): its tokens were replaced.
    pub replaced: bool,
}

/// Commit a fresh login. A re-login of a known identity replaces its tokens and makes it active again; its
/// label is kept unless a new one is given.
pub fn save(store: &Store, tokens: Tokens, label: Option<String>) -> anyhow::Result<Saved> {
    let account = stored_from_tokens(tokens, label);
    let replaced = store.get_account(&account.id)?.is_some();
    store.upsert_account(&account)?;
    Ok(Saved { account, replaced })
}

/// `codex-gateway login [--device | --paste] [--label NAME]`.
pub async fn run(config: &Config, mode: LoginMode, label: Option<String>) -> anyhow::Result<()> {
    // Open the store first: a login whose tokens cannot be saved would be wasted.
    let db = config.db_path();
    let store = Store::open(&db)?;
    let http = crate::upstream::build_http_client(config)?;
    let mut opts = LoginOptions::new(&config.auth_issuer);
    opts.open_browser = browser_available(&ProcessEnv);
    let tokens = match mode {
        LoginMode::Browser => browser_login(&http, &opts, print_prompt).await?,
        LoginMode::Device => device_login(&http, &opts, print_prompt).await?,
        LoginMode::Paste => {
            paste_login(&http, &opts, print_prompt, tokio::io::BufReader::new(tokio::io::stdin())).await?
        }
    };
    let saved = tokio::task::spawn_blocking(move || save(&store, tokens, label)).await??;
    let a = &saved.account;
    if a.tokens.as_ref().is_some_and(|t| t.account_id.is_empty()) {
        eprintln!("warning: the login carries no ChatGPT account id; the Codex backend may refuse it");
    }
    println!(
        "{} {} (plan {}, id {}{}) {} {}",
        if saved.replaced { "Logged in again as" } else { "Added" },
        a.email.as_deref().unwrap_or("an account without an email"),
        a.plan.as_deref().unwrap_or("unknown"),
        a.id,
        a.label.as_deref().map(|l| format!(", label {l}")).unwrap_or_default(),
        if saved.replaced { "in" } else { "to" },
        db.display()
    );
    println!("A running gateway sees the account within 30 s (its next re-read of the store).");
    Ok(())
}

fn print_prompt(p: Prompt) {
    match p {
        Prompt::Browser { url } => {
            println!("Sign in to ChatGPT in your browser:\n\n  {url}\n");
            println!(
                "If no browser opened, open the address above on this machine. Waiting up to 5 minutes...\n\
                 (On a remote machine, use `codex-gateway login --device` or `--paste`.)"
            );
        }
        Prompt::Paste { url } => {
            println!("1. Open this address in a browser on any machine and sign in:\n\n  {url}\n");
            println!(
                "2. The browser then fails to load http://localhost:1455/auth/callback?... That is expected.\n   \
                 Copy the whole address from its address bar and paste it here, then press Enter:"
            );
        }
        Prompt::Device { verification_url, user_code } => {
            println!("Open {verification_url} and enter this code: {user_code}\n");
            println!(
                "Waiting for approval (up to 15 minutes)...\n\
                 (If the page refuses the code, enable device code authorization for Codex in ChatGPT's \
                 Settings > Security.)"
            );
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_and_verifier_is_long_and_random() {
        // RFC 7636, appendix B.
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let (a, b) = (Pkce::generate(), Pkce::generate());
        assert_eq!(a.verifier.len(), 86);
        assert!(a.verifier.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a.verifier, b.verifier);
        assert_eq!(Pkce::from_verifier(a.verifier.clone()).challenge, a.challenge);
        assert!(!format!("{a:?}").contains(&a.verifier));
        assert_ne!(random_state(), random_state());
    }

    #[test]
    fn authorize_url_has_the_official_shape() -> Result<(), LoginError> {
        let url = authorize_url("https://auth.openai.com/", &callback_redirect_uri(1455), "CH", "ST")?;
        assert_eq!(
            url,
            "https://auth.openai.com/oauth/authorize?response_type=code&client_id=app_EMoamEEZ73f0CkXaXp7hrann\
             &redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback\
             &scope=openid%20profile%20email%20offline_access&code_challenge=CH&code_challenge_method=S256\
             &id_token_add_organizations=true&codex_cli_simplified_flow=true&state=ST&originator=codex_cli_rs"
        );
        // Values with reserved characters survive a round trip.
        let url = authorize_url("http://127.0.0.1:9", "http://x/cb?a=1&b=2", "a+b/c", "s t")?;
        let parsed = url::Url::parse(&url).map_err(|_| LoginError::BadIssuer(url.clone()))?;
        let q: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q.get("redirect_uri").map(String::as_str), Some("http://x/cb?a=1&b=2"));
        assert_eq!(q.get("code_challenge").map(String::as_str), Some("a+b/c"));
        assert_eq!(q.get("state").map(String::as_str), Some("s t"));
        assert!(matches!(authorize_url("not a url", "r", "c", "s"), Err(LoginError::BadIssuer(_))));
        Ok(())
    }

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn callback_checks_state_before_anything_else() {
        assert_eq!(code_from_callback(&params(&[("code", "c"), ("state", "s")]), "s").ok(), Some("c".into()));
        assert!(matches!(
            code_from_callback(&params(&[("code", "c"), ("state", "other")]), "s"),
            Err(LoginError::StateMismatch)
        ));
        assert!(matches!(code_from_callback(&params(&[("code", "c")]), "s"), Err(LoginError::StateMismatch)));
        assert!(matches!(
            code_from_callback(&params(&[("error", "access_denied"), ("state", "x")]), "s"),
            Err(LoginError::StateMismatch)
        ));
        match code_from_callback(
            &params(&[("error", "access_denied"), ("error_description", "no"), ("state", "s")]),
            "s",
        ) {
            Err(LoginError::Denied(m)) => assert_eq!(m, "access_denied: no"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(code_from_callback(&params(&[("state", "s")]), "s"), Err(LoginError::MissingCode)));
    }

    #[test]
    fn pasted_addresses_in_the_forms_people_paste() {
        let ok = |s: &str| code_from_paste(s, "st").ok();
        assert_eq!(ok("http://localhost:1455/auth/callback?code=ac_1&scope=openid&state=st\n"), Some("ac_1".into()));
        assert_eq!(ok("  'http://localhost:1455/auth/callback?code=ac%2B1&state=st#frag'  "), Some("ac+1".into()));
        assert_eq!(ok("code=ac_1&state=st"), Some("ac_1".into()));
        assert_eq!(ok("?code=ac_1&state=st"), Some("ac_1".into()));
        assert!(matches!(code_from_paste("code=ac_1&state=nope", "st"), Err(LoginError::StateMismatch)));
        assert!(matches!(code_from_paste("http://localhost:1455/", "st"), Err(LoginError::BadPaste(_))));
        assert!(matches!(code_from_paste("   ", "st"), Err(LoginError::BadPaste(_))));
    }

    #[test]
    fn device_interval_is_a_string_or_a_number() {
        assert_eq!(poll_interval(Some(&json!("5"))), Duration::from_secs(5));
        assert_eq!(poll_interval(Some(&json!(" 2 "))), Duration::from_secs(2));
        assert_eq!(poll_interval(Some(&json!(3))), Duration::from_secs(3));
        assert_eq!(poll_interval(Some(&json!("0"))), Duration::from_secs(1));
        assert_eq!(poll_interval(Some(&json!("soon"))), Duration::from_secs(5));
        assert_eq!(poll_interval(None), Duration::from_secs(5));
    }

    #[test]
    fn browser_detection() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(!browser_available(&env(&[("BROWSER", "none"), ("DISPLAY", ":0")])));
        if cfg!(target_os = "linux") {
            assert!(!browser_available(&env(&[])));
            assert!(browser_available(&env(&[("WAYLAND_DISPLAY", "wayland-0")])));
        }
    }

    #[test]
    fn error_messages_name_the_way_out() {
        assert!(LoginError::TimedOut(BROWSER_TIMEOUT).to_string().contains("5 minutes"));
        assert!(LoginError::DeviceTimedOut(DEVICE_TIMEOUT).to_string().contains("15 minutes"));
        let e = LoginError::Refused { endpoint: TOKEN_ENDPOINT, status: 400, code: Some("invalid_grant".into()) };
        assert_eq!(e.to_string(), "the token endpoint refused the request (HTTP 400, invalid_grant)");
        assert!(page("<x>", "a&b").contains("&lt;x&gt;"));
    }
}
