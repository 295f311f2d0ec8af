//! The command line: `serve` (the main job), `login`, `accounts ...`, `keys ...`, `status`, `usage`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

mod accounts;
mod keys;
mod usage;

pub use accounts::AccountsCommand;

use crate::config::{Config, Overrides, ProcessEnv};

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
    /// Log lines as `text` (default) or `json` (one object per line). Env: CODEX_GATEWAY_LOG_FORMAT.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
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
    /// Client keys with limits (models, requests per minute, concurrency, token budgets, expiry).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Show configuration, accounts and whether a gateway is answering.
    Status,
    /// Requests, errors and tokens per model, account, client key or dialect, from the usage ledger.
    Usage(usage::UsageArgs),
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
    let base = Overrides {
        config: cli.config.clone(),
        data_dir: cli.data_dir.clone(),
        log_format: cli.log_format.clone(),
        ..Default::default()
    };
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            let o = Overrides { host: args.host, port: args.port, api_key: args.api_key, ..base };
            serve(Config::load(&o, &ProcessEnv)?).await
        }
        Command::Accounts(cmd) => {
            let config = Config::load(&base, &ProcessEnv)?;
            init_logging(&config);
            accounts::run(&config, cmd).await
        }
        Command::Keys(cmd) => {
            let config = Config::load(&base, &ProcessEnv)?;
            init_logging(&config);
            keys::run(&config, cmd).await
        }
        Command::Status => status(&Config::load(&base, &ProcessEnv)?).await,
        Command::Usage(args) => usage::run(&Config::load(&base, &ProcessEnv)?, args).await,
        Command::Login { device, paste, label } => {
            let mode = crate::auth::login::LoginMode::from_flags(device, paste);
            crate::auth::login::run(&Config::load(&base, &ProcessEnv)?, mode, label).await
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = match config.log_format {
        crate::config::LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .try_init(),
        // One JSON object per line; the target says which lines are access lines (`codex_gateway::access`).
        crate::config::LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(true)
            .try_init(),
    };
}

async fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
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

async fn status(config: &Config) -> anyhow::Result<()> {
    println!("listen:       http://{}", config.listen);
    println!("data dir:     {}", config.data_dir.display());
    println!("upstream:     {}", config.upstream_base_url);
    println!("client keys:  {}", if config.api_keys.is_empty() { "none (loopback only)" } else { "required" });
    let auth = config.codex_auth_file();
    println!("codex login:  {} ({})", auth.display(), if auth.exists() { "present" } else { "absent" });
    let url = format!("http://{}/health", local_address(config.listen));
    let running = reqwest::Client::new().get(&url).timeout(std::time::Duration::from_secs(2)).send().await;
    println!(
        "gateway:      {}",
        match running {
            Ok(r) if r.status().is_success() => "running".to_string(),
            Ok(r) => format!("answering with HTTP {}", r.status().as_u16()),
            Err(_) => "not running".to_string(),
        }
    );
    accounts::run(config, AccountsCommand::List { json: false }).await
}

/// Where a command on this machine reaches the gateway: its listen address, with an unspecified one (0.0.0.0,
/// [::]) replaced by loopback. Loopback names always pass the gateway's Host check (server/guard.rs), whatever
/// `[server] allowed_hosts` says, and the unspecified address is no destination anyway.
pub(crate) fn local_address(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}
