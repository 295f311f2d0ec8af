//! The command line: `serve` (the main job), `accounts import|list`, `status`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::accounts::{Pool, stored_from_api_key, stored_from_tokens};
use crate::auth::codex_file::{self, FileCredentials};
use crate::auth::now_unix;
use crate::config::{Config, Overrides, ProcessEnv};
use crate::store::Store;

#[derive(Parser, Debug)]
#[command(
    name = "codex-gateway",
    version,
    about = "Use the Codex models of your ChatGPT subscription from any AI client"
)]
pub struct Cli {
    /// Config file (TOML). Default: $XDG_CONFIG_HOME/codex-gateway/config.toml. Env: CODEX_GATEWAY_CONFIG.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (database). Env: CODEX_GATEWAY_DATA_DIR.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway (the default when no command is given).
    Serve(ServeArgs),
    /// Manage the accounts in the gateway's own store.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Show configuration, accounts and whether a gateway is answering.
    Status,
    /// Log in to a ChatGPT account (in a browser by default) and add it to the gateway's store.
    Login {
        /// Device-code flow, for machines without a browser.
        #[arg(long, conflicts_with = "paste")]
        device: bool,
        /// Print the sign-in URL, then paste back the address the browser ended on (remote servers).
        #[arg(long)]
        paste: bool,
        /// A name for this account.
        #[arg(long)]
        label: Option<String>,
    },
}

#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on. Env: CODEX_GATEWAY_HOST (default 127.0.0.1).
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on; 0 picks a free one. Env: CODEX_GATEWAY_PORT (default 8765).
    #[arg(long)]
    pub port: Option<u16>,
    /// Client API key required on every request. Env: CODEX_GATEWAY_API_KEY.
    #[arg(long)]
    pub api_key: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// Copy credentials from a Codex auth.json (default: $CODEX_HOME/auth.json) into the gateway's store.
    Import {
        path: Option<PathBuf>,
        #[arg(long)]
        label: Option<String>,
    },
    /// List the accounts the gateway would use.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let base = Overrides { config: cli.config.clone(), data_dir: cli.data_dir.clone(), ..Default::default() };
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            let o = Overrides { host: args.host, port: args.port, api_key: args.api_key, ..base };
            serve(Config::load(&o, &ProcessEnv)?).await
        }
        Command::Accounts(AccountsCommand::Import { path, label }) => {
            import(&Config::load(&base, &ProcessEnv)?, path, label)
        }
        Command::Accounts(AccountsCommand::List { json }) => list(&Config::load(&base, &ProcessEnv)?, json),
        Command::Status => status(&Config::load(&base, &ProcessEnv)?).await,
        Command::Login { device, paste, label } => {
            let mode = crate::auth::login::LoginMode::from_flags(device, paste);
            crate::auth::login::run(&Config::load(&base, &ProcessEnv)?, mode, label).await
        }
    }
}

fn init_logging(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config.log);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this exact line to learn the port.
    println!("codex-gateway listening on http://{addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    crate::server::run(config, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn import(config: &Config, path: Option<PathBuf>, label: Option<String>) -> anyhow::Result<()> {
    let path = path.unwrap_or_else(|| config.codex_auth_file());
    let file = codex_file::read(&path)?;
    let store = Store::open(&config.db_path())?;
    let stored = match file.credentials() {
        Some(FileCredentials::Chatgpt(tokens)) => stored_from_tokens(tokens, label),
        Some(FileCredentials::ApiKey(key)) => stored_from_api_key(&key, label),
        None => anyhow::bail!("{} holds no tokens and no API key", path.display()),
    };
    store.upsert_account(&stored)?;
    println!(
        "imported {} ({}) from {} into {}",
        stored.email.as_deref().unwrap_or(&stored.id),
        stored.kind.as_str(),
        path.display(),
        config.db_path().display()
    );
    if stored.tokens.is_some() {
        eprintln!(
            "warning: the gateway and the Codex CLI now hold the same single-use refresh token. Whichever refreshes \
             first logs the other out. Keep using only one of them with this login, or log in to the gateway \
             separately (a second `codex login` into another CODEX_HOME, then import that)."
        );
    }
    Ok(())
}

fn list(config: &Config, json: bool) -> anyhow::Result<()> {
    let store = std::sync::Arc::new(Store::open(&config.db_path())?);
    let http = reqwest::Client::new();
    let pool = Pool::load(config, store, http)?;
    let rows: Vec<serde_json::Value> = pool
        .accounts()
        .iter()
        .map(|a| {
            let (status, reason) = a.status();
            serde_json::json!({
                "id": a.id, "kind": a.kind.as_str(), "label": a.label, "email": a.email, "plan": a.plan,
                "source": match &a.source { crate::accounts::Source::Store => "store".to_string(),
                    crate::accounts::Source::Linked(p) => format!("linked:{}", p.display()),
                    crate::accounts::Source::Env => "env".to_string() },
                "status": status.as_str(), "status_reason": reason,
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no accounts: run `codex login` (then the gateway uses ~/.codex/auth.json), `codex-gateway accounts import [PATH]`, or set OPENAI_API_KEY"
        );
        return Ok(());
    }
    println!("{:<16} {:<8} {:<28} {:<6} {:<12} source", "id", "kind", "email/label", "plan", "status");
    for r in rows {
        let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_string();
        let who =
            r.get("email").and_then(|v| v.as_str()).or_else(|| r.get("label").and_then(|v| v.as_str())).unwrap_or("-");
        println!("{:<16} {:<8} {:<28} {:<6} {:<12} {}", s("id"), s("kind"), who, s("plan"), s("status"), s("source"));
    }
    Ok(())
}

async fn status(config: &Config) -> anyhow::Result<()> {
    println!("listen:       http://{}", config.listen);
    println!("data dir:     {}", config.data_dir.display());
    println!("upstream:     {}", config.upstream_base_url);
    println!("client keys:  {}", if config.api_keys.is_empty() { "none (loopback only)" } else { "required" });
    let auth = config.codex_auth_file();
    println!("codex login:  {} ({})", auth.display(), if auth.exists() { "present" } else { "absent" });
    let url = format!("http://{}/health", config.listen);
    let running = reqwest::Client::new().get(&url).timeout(std::time::Duration::from_secs(2)).send().await;
    println!(
        "gateway:      {}",
        match running {
            Ok(r) if r.status().is_success() => "running".to_string(),
            Ok(r) => format!("answering with HTTP {}", r.status().as_u16()),
            Err(_) => "not running".to_string(),
        }
    );
    let _ = now_unix();
    list(config, false)
}
