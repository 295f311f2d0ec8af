//! The command line: `serve` (the main job, in the foreground), `start` / `stop` / `restart` / `status` (in the
//! background, cli/service.rs), `service install|uninstall|status` (at login: cli/autostart.rs), `reload`
//! (cli/reload.rs), `doctor`, `connect`, `completions`, `man`, `login`, `accounts ...`, `keys ...`, `usage`, `audit ...`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

mod accounts;
mod audit;
mod autostart;
mod connect;
mod destination;
mod doctor;
mod keys;
mod login;
mod manual;
pub(crate) mod output;
mod reload;
mod service;
mod store;
mod usage;
mod users;

pub use accounts::AccountsCommand;

use crate::config::{Config, Overrides, ProcessEnv};
use crate::logging;

#[derive(Parser, Debug)]
#[command(
    name = "codex-gateway",
    version,
    long_version = concat!(
        env!("CARGO_PKG_VERSION"),
        "\ntarget: ",
        env!("CODEX_GATEWAY_TARGET"),
        "\ncommit: ",
        env!("CODEX_GATEWAY_COMMIT"),
        "\nbuild: ",
        env!("CODEX_GATEWAY_BUILD")
    ),
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
    /// The team store: a PostgreSQL URL shared by several gateways (docs/team.md). Env:
    /// CODEX_GATEWAY_DATABASE_URL.
    #[arg(long, global = true)]
    pub database_url: Option<String>,
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
    /// Run the gateway in the background (pid and log files in the data directory); returns once it answers.
    Start(ServeArgs),
    /// Stop the background gateway: open streams finish (up to `shutdown_timeout_secs`), then it exits.
    Stop,
    /// Stop the background gateway if it runs, then start it with the options of the last `start`.
    Restart,
    /// Start the gateway at login for this user (and now): `service install [OPTIONS]` writes a systemd user unit,
    /// a launchd agent or a scheduled task running `serve` with them; `service uninstall`, `service status`.
    #[command(subcommand)]
    Service(autostart::ServiceCommand),
    /// Make the running gateway read its config file again: live settings apply at once, the rest is reported
    /// as needing a restart, a file that does not load is refused (exit 1) and the old configuration stays.
    Reload,
    /// Whether a gateway runs (exit 0; 3 when not, 1 when its pid file outlived it): pid, uptime, address,
    /// version, accounts that can serve, the soonest reset, open streams.
    Status {
        /// Also the configuration and every account.
        #[arg(long, short)]
        verbose: bool,
        /// Print nothing; only the exit code, from the pid file or `/health` (a container's HEALTHCHECK).
        #[arg(long, short, conflicts_with = "verbose")]
        quiet: bool,
    },
    /// Check the configuration, store, credentials, clock, ports and the way to the upstream; exit 1 if any failed.
    Doctor(doctor::DoctorArgs),
    /// Print the settings that point a client at this gateway, or merge them into its config file (--write).
    Connect(connect::ConnectArgs),
    /// Print the shell completion script (bash, zsh, fish).
    Completions(manual::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into a directory.
    Man(manual::ManArgs),
    /// Requests, errors and tokens per model, account, client key or dialect, from the usage ledger.
    Usage(usage::UsageArgs),
    /// The audit trail: `audit export` (JSON lines), `audit verify` (its hash chain).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// People who sign in to the dashboard and the admin API, with a role: add, list, set-role, disable,
    /// enable, passwd, totp, remove (on the store itself).
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// The team store: `store migrate --from sqlite:PATH --to postgres://...` (docs/team.md).
    #[command(subcommand)]
    Store(store::StoreCommand),
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
    /// Write log lines to this file instead of stderr, rotated by size (10 MB, 5 older files kept).
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

impl ServeArgs {
    /// `base` with these options over it (the log file is not a configuration setting).
    fn overrides(&self, base: &Overrides) -> Overrides {
        Overrides { host: self.host.clone(), port: self.port, api_key: self.api_key.clone(), ..base.clone() }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match runtime_builder().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A worker per core, or everything on the main thread when the process may use only one core: there the
/// work-stealing scheduler's bookkeeping cost ~2.5% more CPU per request (docs/performance.md, "Current-thread
/// runtime on one core"). `TOKIO_WORKER_THREADS` still picks the multi-thread runtime with that many workers.
fn runtime_builder() -> tokio::runtime::Builder {
    let cores = std::thread::available_parallelism().ok().map(|n| n.get());
    match current_thread_runtime(std::env::var_os("TOKIO_WORKER_THREADS").is_some(), cores) {
        true => tokio::runtime::Builder::new_current_thread(),
        false => tokio::runtime::Builder::new_multi_thread(),
    }
}

/// Whether the runtime runs on the main thread alone: one usable core, and no worker count asked for.
fn current_thread_runtime(workers_set: bool, cores: Option<usize>) -> bool {
    !workers_set && cores == Some(1)
}

async fn dispatch(Cli { config, data_dir, log_format, database_url, command }: Cli) -> anyhow::Result<ExitCode> {
    let base = Overrides { config, data_dir, log_format, database_url, ..Default::default() };
    match command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            serve(Config::load(&args.overrides(&base), &ProcessEnv)?, args.log_file.as_deref()).await?
        }
        Command::Start(args) => service::start(&base, args).await?,
        Command::Stop => service::stop(&base).await?,
        Command::Restart => service::restart(&base).await?,
        Command::Service(cmd) => return autostart::run(&base, cmd).await,
        Command::Reload => return reload::run(&base).await,
        Command::Status { verbose, quiet } => return service::status(&base, verbose, quiet).await,
        Command::Doctor(args) => return doctor::run(&base, args).await,
        Command::Connect(args) => connect::run(&Config::load(&base, &ProcessEnv)?, args).await?,
        Command::Completions(args) => manual::completions(args)?,
        Command::Man(args) => manual::man(args)?,
        Command::Accounts(cmd) => accounts::run(&logged(&base)?, cmd).await?,
        Command::Keys(cmd) => keys::run(&logged(&base)?, cmd).await?,
        Command::Usage(args) => usage::run(&Config::load(&base, &ProcessEnv)?, args).await?,
        Command::Audit(cmd) => return audit::run(&Config::load(&base, &ProcessEnv)?, cmd).await,
        Command::Users(cmd) => users::run(&Config::load(&base, &ProcessEnv)?, cmd).await?,
        Command::Store(cmd) => tokio::task::spawn_blocking(move || store::run(cmd)).await??,
        Command::Login { device, paste, label } => {
            let mode = crate::auth::login::LoginMode::from_flags(device, paste);
            login::run(&Config::load(&base, &ProcessEnv)?, mode, label).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The configuration, with logging to stderr set up by it.
fn logged(base: &Overrides) -> anyhow::Result<Config> {
    let config = Config::load(base, &ProcessEnv)?;
    logging::init(&config, None)?;
    Ok(config)
}

async fn serve(config: Config, log_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    logging::init(&config, log_file)?;
    // Before anything opens a descriptor it could run out of (docs/operations.md, "Open files"); the listener then
    // holds connections to what the limit allows.
    let upstream = crate::descriptors::Upstream::of(&config);
    let raised = crate::descriptors::raise();
    raised.log(upstream);
    if let Some(streams) = raised.limits().and_then(|l| crate::descriptors::streams_allowed(&l, upstream)) {
        crate::server::listen::limit_connections(usize::try_from(streams).unwrap_or(usize::MAX));
    }
    // One serving gateway per local store (store/serving.rs); the team store coordinates its own instances.
    let single = config.store_at().single_server();
    let _serving = single.then(|| crate::store::serving::take(&config.data_dir)).transpose()?;
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

#[cfg(unix)]
async fn shutdown_signal() {
    let term = async {
        let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return std::future::pending().await;
        };
        s.recv().await;
    };
    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
}

/// Windows has no SIGTERM: Ctrl-C or Ctrl-Break, the console window closed, or the machine shutting down begin the
/// same graceful shutdown (after a close or a shutdown Windows ends the process itself within seconds). A handler
/// that cannot be installed never fires, rather than stopping the gateway at once.
#[cfg(windows)]
async fn shutdown_signal() {
    use tokio::signal::windows as console;
    macro_rules! event {
        ($listen:expr) => {
            async {
                match $listen {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            }
        };
    }
    tokio::select! {
        _ = event!(console::ctrl_c()) => {}
        _ = event!(console::ctrl_break()) => {}
        _ = event!(console::ctrl_close()) => {}
        _ = event!(console::ctrl_shutdown()) => {}
    }
}

/// Where a command on this machine reaches the gateway: `http://` and the listen address, an unspecified one
/// replaced by loopback (which always passes the Host check, server/guard.rs, whatever `allowed_hosts` says).
pub(crate) fn local_url(mut addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::current_thread_runtime;

    #[test]
    fn one_usable_core_runs_everything_on_the_main_thread_unless_workers_are_asked_for() {
        assert!(current_thread_runtime(false, Some(1)));
        assert!(!current_thread_runtime(false, Some(2)));
        assert!(!current_thread_runtime(true, Some(1)), "TOKIO_WORKER_THREADS keeps the multi-thread runtime");
        assert!(!current_thread_runtime(false, None), "an unknown core count keeps the multi-thread runtime");
    }
}
