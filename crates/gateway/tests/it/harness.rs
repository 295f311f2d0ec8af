//! Starts fake-codex and the gateway in-process, each on a free loopback port, with a private data dir.

use std::collections::HashMap;
use std::path::PathBuf;

use codex_gateway::config::{Config, Overrides, RawConfig};
use fake_codex::{AccountCreds, AccountSpec, FakeCodex, FakeConfig, Scenario};
use serde_json::Value;

pub struct Setup {
    pub accounts: usize,
    /// Write the first account's tokens to `$CODEX_HOME/auth.json` (linked mode).
    pub linked: bool,
    /// Put every account into the gateway's store before it starts.
    pub store_accounts: bool,
    pub client_key: Option<String>,
    pub openai_api_key: Option<String>,
    pub env: Vec<(&'static str, String)>,
    pub fake: FakeConfig,
    /// Also serve the Ollama bridge on a free loopback port (see `TestEnv::ollama`).
    pub ollama: bool,
    /// A config file's contents (TOML), e.g. a `[routing]` table.
    pub config_toml: Option<String>,
    /// Plans of the accounts, in order (default: all "plus").
    pub plans: Vec<&'static str>,
    /// The catalog every account lists instead of its plan's (slugs the fake knows, or new ones).
    pub models: Option<Vec<&'static str>>,
    /// Access-token lifetimes of the accounts in seconds, in order (default: the fake's `access_token_ttl_secs`);
    /// 0 gives an account whose access token has already expired.
    pub token_ttls: Vec<u64>,
    /// Record sinks besides the access log (`records::Collect` gathers the records of a test).
    pub record_sinks: Vec<std::sync::Arc<dyn codex_gateway::record::RecordSink>>,
    /// Rows to put in the gateway's store (its SQLite file) before it starts.
    pub seed: Option<fn(&codex_gateway::store::Store)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            accounts: 1,
            linked: true,
            store_accounts: false,
            client_key: None,
            openai_api_key: None,
            env: Vec::new(),
            fake: FakeConfig::default(),
            ollama: false,
            config_toml: None,
            plans: Vec::new(),
            models: None,
            token_ttls: Vec::new(),
            record_sinks: Vec::new(),
            seed: None,
        }
    }
}

pub struct TestEnv {
    pub fake: FakeCodex,
    pub base: String,
    pub http: reqwest::Client,
    pub dir: PathBuf,
    pub accounts: Vec<AccountCreds>,
    /// The Ollama bridge's base URL when `Setup::ollama` was set.
    pub ollama: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The task running the gateway; it ends when `run` returns.
    pub gateway: tokio::task::JoinHandle<()>,
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.fake.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn scenario(v: Value) -> Scenario {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("bad scenario: {e}"))
}

/// A fake account as the gateway's store keeps it.
pub fn stored(c: &AccountCreds) -> codex_gateway::store::StoredAccount {
    let tokens = codex_gateway::auth::Tokens {
        id_token: c.id_token.clone(),
        access_token: c.access_token.clone(),
        refresh_token: c.refresh_token.clone(),
        account_id: c.account_id.clone(),
        last_refresh: codex_gateway::auth::now_unix(),
    };
    codex_gateway::accounts::stored_from_tokens(tokens, None)
}

/// A new fake account, put into the gateway store `store` (tests that run the gateway binary on a data directory).
pub fn store_account(fake: &FakeCodex, store: &codex_gateway::store::Store) -> AccountCreds {
    let c = fake.add_account(AccountSpec::default());
    store.upsert_account(&stored(&c)).unwrap_or_else(|e| panic!("{e}"));
    c
}

pub fn write_auth_json(path: &std::path::Path, c: &AccountCreds) {
    let body = serde_json::json!({
        "OPENAI_API_KEY": null,
        "tokens": {"id_token": c.id_token, "access_token": c.access_token, "refresh_token": c.refresh_token, "account_id": c.account_id},
        "last_refresh": "2026-01-01T00:00:00Z"
    });
    std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new("."))).ok();
    std::fs::write(path, body.to_string()).unwrap_or_else(|e| panic!("write auth.json: {e}"));
}

pub async fn start(setup: Setup) -> TestEnv {
    let fake = FakeCodex::start(setup.fake.clone()).await.unwrap_or_else(|e| panic!("fake-codex: {e}"));
    let dir = std::env::temp_dir().join(format!("cgw-it-{}", uuid::Uuid::new_v4().simple()));
    let codex_home = dir.join("codex-home");
    std::fs::create_dir_all(&codex_home).ok();
    let accounts: Vec<AccountCreds> = (0..setup.accounts)
        .map(|i| {
            let plan = setup.plans.get(i).copied().unwrap_or("plus").to_string();
            let models = setup.models.as_ref().map(|m| m.iter().map(|s| s.to_string()).collect());
            let access_token_ttl_secs = setup.token_ttls.get(i).copied();
            fake.add_account(AccountSpec { plan, models, access_token_ttl_secs, ..AccountSpec::default() })
        })
        .collect();
    if setup.linked
        && let Some(first) = accounts.first()
    {
        write_auth_json(&codex_home.join("auth.json"), first);
    }
    if setup.store_accounts {
        let store = codex_gateway::store::Store::open(&dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
        for c in &accounts {
            store.upsert_account(&stored(c)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    if let Some(seed) = setup.seed {
        seed(&codex_gateway::store::Store::open(&dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}")));
    }
    let mut env: HashMap<String, String> = HashMap::new();
    let mut put = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    put("HOME", dir.display().to_string());
    put("CODEX_HOME", codex_home.display().to_string());
    put("CODEX_GATEWAY_DATA_DIR", dir.join("data").display().to_string());
    put("CODEX_GATEWAY_UPSTREAM_BASE_URL", fake.codex_base_url());
    put("CODEX_GATEWAY_CHATGPT_BASE_URL", fake.chatgpt_base_url());
    put("CODEX_GATEWAY_AUTH_ISSUER", fake.issuer());
    put("CODEX_GATEWAY_OPENAI_BASE_URL", fake.openai_api_base());
    if let Some(pem) = fake.ca_pem() {
        // A TLS fake: the gateway trusts its self-signed certificate as a CA bundle, as behind a corporate proxy.
        let path = dir.join("fake-ca.pem");
        std::fs::write(&path, pem).unwrap_or_else(|e| panic!("write the CA bundle: {e}"));
        put("CODEX_GATEWAY_CA_BUNDLE", path.display().to_string());
    }
    if let Some(k) = &setup.client_key {
        put("CODEX_GATEWAY_API_KEY", k.clone());
    }
    if let Some(k) = &setup.openai_api_key {
        fake.add_api_key(k);
        put("OPENAI_API_KEY", k.clone());
    }
    for (k, v) in &setup.env {
        put(k, v.clone());
    }
    let overrides = Overrides { port: Some(0), ..Default::default() };
    let raw: RawConfig = match &setup.config_toml {
        Some(t) => toml::from_str(t).unwrap_or_else(|e| panic!("config toml: {e}")),
        None => RawConfig::default(),
    };
    let mut config = Config::resolve(raw, &overrides, &env).unwrap_or_else(|e| panic!("config: {e:#}"));
    // issue 25: the tests run over HTTP SSE upstream, and with `CODEX_GATEWAY_TEST_TRANSPORT=websocket` over the
    // upstream Responses WebSocket (scripts/test runs the dialect modules a second time so; the default, `auto`,
    // is the WebSocket too), unless a test's config chooses the transport. A test that points the gateway at an
    // upstream stub of its own (raw SSE framing, which a WebSocket has not) stays on SSE.
    if !setup.config_toml.as_deref().is_some_and(|t| t.contains("transport")) {
        let websocket = std::env::var("CODEX_GATEWAY_TEST_TRANSPORT").as_deref() == Ok("websocket")
            && !setup.env.iter().any(|(k, _)| *k == "CODEX_GATEWAY_UPSTREAM_BASE_URL");
        config.upstream_ws.transport = match websocket {
            true => codex_gateway::upstream::ws::Transport::Websocket,
            false => codex_gateway::upstream::ws::Transport::Sse,
        };
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("addr: {e}"));
    let bridge = match setup.ollama {
        true => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"))),
        false => None,
    };
    let ollama = bridge.as_ref().and_then(|l| l.local_addr().ok()).map(|a| format!("http://{a}"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let sinks = setup.record_sinks.clone();
    let gateway = tokio::spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        if let Err(e) = codex_gateway::server::run_with_sinks(config, listener, bridge, sinks, shutdown).await {
            eprintln!("gateway stopped: {e:#}");
        }
    });
    TestEnv {
        fake,
        base: format!("http://{addr}"),
        http: reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("client: {e}")),
        dir,
        accounts,
        ollama,
        shutdown: Some(tx),
        gateway,
    }
}

impl TestEnv {
    /// Signal the gateway to shut down (the fake keeps running).
    pub fn stop_gateway(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST JSON, return (status, headers, body text).
    pub async fn post(&self, path: &str, body: &Value) -> (u16, reqwest::header::HeaderMap, String) {
        self.post_with(path, body, &[]).await
    }

    pub async fn post_with(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = self.http.post(self.url(path)).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        (status, headers, text)
    }

    /// GET a path and parse the body as JSON (`Null` if it is not JSON).
    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self.http.get(self.url(path)).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        resp.json().await.unwrap_or_default()
    }

    /// The bodies the fake answered on its responses endpoint: a turn chained on the upstream WebSocket with its
    /// whole input, as the backend put it together (`requests_to` has each as it was sent).
    pub fn upstream_bodies(&self) -> Vec<Value> {
        self.fake.requests_to("/responses").iter().map(fake_codex::RecordedRequest::answered_body).collect()
    }
}

/// The first line a helper process (an OpenID provider, a WebSocket origin) prints on its standard output once it
/// listens, and that output, held open (a closed pipe would end some helpers). Waited for with a bound on a thread of
/// its own: the tests run on a current-thread runtime, which a read with no end would stop for good (a CI run once
/// hung so). The child is killed and the test fails when nothing comes in `within`.
pub fn first_line(
    child: &mut std::process::Child,
    within: std::time::Duration,
    what: &str,
) -> (String, std::io::BufReader<std::process::ChildStdout>) {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("{what}: its standard output is not piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(stdout);
        let _ = stdout.read_line(&mut line);
        let _ = tx.send((line, stdout));
    });
    match rx.recv_timeout(within) {
        Ok(first) => first,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} printed nothing in {within:?}")
        }
    }
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")).map(str::to_string))
        .collect()
}
