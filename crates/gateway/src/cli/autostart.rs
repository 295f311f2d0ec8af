//! `service install | uninstall | status`: the gateway started at login for the current user, as a systemd user
//! unit (Linux), a launchd agent (macOS) or a scheduled task (Windows). This file decides what to start (which
//! binary, `serve` and which options) and checks it as the service will see it; autostart/render.rs writes each
//! system's file from that, autostart/system.rs installs it with the system's own commands. `start` / `stop`
//! (cli/service.rs) are the other background gateway, for this session only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};

mod render;
mod system;

use super::service::{Files, Running, running_pid};
use crate::cli::ServeArgs;
use crate::config::{Config, Env, Overrides, ProcessEnv};
use render::Launch;
use system::Started;

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Start the gateway at login, and now: a systemd user unit (Linux), a launchd agent (macOS) or a scheduled
    /// task (Windows) running `serve` with these options, the data directory and the config file.
    Install(InstallArgs),
    /// Stop it and remove the unit, agent or task.
    Uninstall,
    /// Whether it is installed (exit 0; 3 when not): its file or task, the command it runs, its state.
    Status,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Install even when this binary runs from a temporary place (an npx, uvx or `pipx run` cache, the temp
    /// directory), which its tool may clear at any time.
    #[arg(long)]
    force: bool,
}

/// The service managers `service install` knows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Target {
    Systemd,
    Launchd,
    Task,
}

impl Target {
    /// This system's; the only place the operating system decides anything (the files render on every system).
    fn here() -> Option<Target> {
        match () {
            () if cfg!(target_os = "linux") => Some(Target::Systemd),
            () if cfg!(target_os = "macos") => Some(Target::Launchd),
            () if cfg!(windows) => Some(Target::Task),
            () => None,
        }
    }
}

/// Why `service install` does not install: each says what to do instead.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(
        "this codex-gateway runs from {} ({path}), which is cleared without notice: a service pointing there would \
         stop starting one day. Install it to stay, then run `codex-gateway service install` with that one: \
         `npm install -g codex-gateway`, `pipx install codex-gateway` (or `uv tool install codex-gateway`), or the \
         install script (install.sh, install.ps1). `--force` installs this path anyway",
        .place.describe()
    )]
    Temporary { path: String, place: Temporary },
    #[error(
        "a gateway started by `codex-gateway start` is running (pid {pid}) on this data directory; the service \
         would fight it for the port and the store. Run `codex-gateway stop` first, then `codex-gateway service \
         install` again"
    )]
    Running { pid: u32 },
    #[error(
        "a gateway (or another program) already answers on {address}, perhaps `codex-gateway serve` in a terminal; \
         the service would fail to take the port. Stop it first, or give the service another `--port`"
    )]
    Occupied { address: String },
    #[error("{what} `{value}` cannot be written into a service definition (not UTF-8, or a control character)")]
    Unrepresentable { what: &'static str, value: String },
    #[error(
        "a scheduled task has no environment of its own, so {option} would sit on the gateway's command line, \
         readable by every program of yours: put it in the config file instead (docs/configuration.md)"
    )]
    SecretOnCommandLine { option: &'static str },
    #[error("starting at login is supported with systemd (Linux), launchd (macOS) and Task Scheduler (Windows)")]
    Unsupported,
}

/// The temporary places a binary is run from by tools that fetch a package for one run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Temporary {
    Npx,
    Uvx,
    PipxRun,
    PnpmDlx,
    TempDir,
}

impl Temporary {
    fn describe(self) -> &'static str {
        match self {
            Temporary::Npx => "npx's cache",
            Temporary::Uvx => "uv's cache (uvx)",
            Temporary::PipxRun => "the cache of `pipx run`",
            Temporary::PnpmDlx => "the cache of `pnpm dlx`",
            Temporary::TempDir => "the temporary directory",
        }
    }
}

pub(crate) async fn run(base: &Overrides, cmd: ServiceCommand) -> anyhow::Result<ExitCode> {
    let target = Target::here().ok_or(Refusal::Unsupported)?;
    match cmd {
        ServiceCommand::Install(args) => install(base, target, args).await.map(|()| ExitCode::SUCCESS),
        ServiceCommand::Uninstall => system::uninstall(target, &ProcessEnv).map(|()| ExitCode::SUCCESS),
        ServiceCommand::Status => system::status(target, &ProcessEnv),
    }
}

async fn install(base: &Overrides, target: Target, args: InstallArgs) -> anyhow::Result<()> {
    let env = ProcessEnv;
    let given = args.serve.overrides(base);
    // A configuration that does not load is refused here, with its reason, before anything is written.
    let config = Config::load(&given, &env)?;
    let (real, program) = program(&env)?;
    if !args.force {
        let temp = std::env::temp_dir();
        let temps = [std::fs::canonicalize(&temp).unwrap_or_else(|_| temp.clone()), temp];
        if let Some(place) = temps.iter().find_map(|t| temporary(&real.to_string_lossy(), &t.to_string_lossy())) {
            return Err(Refusal::Temporary { path: real.display().to_string(), place }.into());
        }
    }
    if let Running::Yes(pid) = running_pid(&Files::in_dir(&config.data_dir)) {
        return Err(Refusal::Running { pid }.into());
    }
    let explicit_config = crate::config::explicit_config_file(&given, &env);
    let default_config = crate::config::default_config_path(&env);
    let wanted = Wanted {
        program: plain_windows_path(&program.to_string_lossy()),
        data_dir: std::path::absolute(&config.data_dir)?,
        // The default file too: the service manager's environment may name another config directory than this
        // shell's XDG_CONFIG_HOME.
        config: explicit_config
            .or_else(|| default_config.is_file().then(|| default_config.clone()))
            .map(std::path::absolute)
            .transpose()?,
        // Not secrets, and what the user relies on to reach the gateway: carried from the environment as options.
        host: given.host.or_else(|| env.get("CODEX_GATEWAY_HOST")),
        port: given.port.or_else(|| env.get("CODEX_GATEWAY_PORT")?.parse().ok()),
        log_format: given.log_format.or_else(|| env.get("CODEX_GATEWAY_LOG_FORMAT")),
        log_file: args.serve.log_file.map(std::path::absolute).transpose()?,
        api_key: given.api_key,
        database_url: given.database_url,
        logs: crate::config::home(&env).join("Library/Logs/codex-gateway"),
    };
    let launch = plan(target, &wanted)?;
    // The configuration as the service will load it: with the options above and without this shell's variables.
    let left = not_carried(std::env::vars().map(|(k, _)| k));
    let service_env: HashMap<String, String> = std::env::vars().filter(|(k, _)| !dropped(k)).collect();
    let service = Config::load(&wanted.overrides(), &service_env).with_context(|| {
        format!(
            "as the service would start it (with the options above, without this shell's {}), the configuration \
             does not load; put those settings in the config file or pass them to `service install`",
            if left.is_empty() { "environment".into() } else { left.join(", ") }
        )
    })?;
    // Something on the address before a first install is not ours: a reinstall finds its own service there.
    let address = crate::cli::local_url(service.listen);
    if service.listen.port() != 0
        && !system::installed(target, &env)
        && super::service::http_get(&address, "/health", None).await.is_ok()
    {
        return Err(Refusal::Occupied { address }.into());
    }
    say!("runs:     {}", command_line(target, &launch));
    let started = system::install(target, &launch, &env)?;
    if let Some(config) = &wanted.config {
        say!("config:   {} (read at each start)", config.display());
    }
    say!(
        "The service does not see this shell's environment: it reads its settings from the config file ({}) and \
         the options above.",
        wanted.config.as_ref().unwrap_or(&default_config).display()
    );
    if !left.is_empty() {
        say!("Not carried into it (set them in the config file if it needs them): {}", left.join(", "));
    }
    if !launch.env.is_empty() {
        say!("The secret given as an option is in the service's environment (its file is 0600), not its command line.");
    }
    match started {
        Started::Now if service.listen.port() != 0 => answers(&address, &system::log_hint(target, &launch)).await,
        Started::Now | Started::Later => Ok(()),
    }
}

/// What the user asked for, with every path resolved: what [`plan`] turns into the command the service runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Wanted {
    pub(crate) program: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) config: Option<PathBuf>,
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) log_format: Option<String>,
    pub(crate) log_file: Option<PathBuf>,
    /// Given as an option only; one from the environment is never copied (it is named in the output instead).
    pub(crate) api_key: Option<String>,
    pub(crate) database_url: Option<String>,
    /// launchd's folder for what the process prints and, unless `--log-file`, its log (~/Library/Logs/...).
    pub(crate) logs: PathBuf,
}

impl Wanted {
    /// The options the service's `serve` gets, as the configuration reads them.
    fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            host: self.host.clone(),
            port: self.port,
            api_key: self.api_key.clone(),
            data_dir: Some(self.data_dir.clone()),
            log_format: self.log_format.clone(),
            database_url: self.database_url.clone(),
        }
    }
}

/// The command the service runs: `serve` with the data directory always (the service's environment may point
/// elsewhere), the other options when given, and secrets in its environment. A launchd agent and a task have no
/// journal: their log goes to a file (rotated by the gateway) unless one was given.
pub(crate) fn plan(target: Target, w: &Wanted) -> Result<Launch, Refusal> {
    let mut args = vec!["serve".to_owned(), "--data-dir".to_owned(), text("the data directory", &w.data_dir)?];
    let mut option = |name: &str, value: String| args.extend([name.to_owned(), value]);
    if let Some(c) = &w.config {
        option("--config", text("the config file", c)?);
    }
    if let Some(h) = &w.host {
        option("--host", checked("--host", h)?);
    }
    if let Some(p) = w.port {
        option("--port", p.to_string());
    }
    if let Some(f) = &w.log_format {
        option("--log-format", checked("--log-format", f)?);
    }
    let log_file = match (target, &w.log_file) {
        (_, Some(f)) => Some(f.clone()),
        (Target::Launchd, None) => Some(w.logs.join("gateway.log")),
        // Beside the data, as `start` does: one gateway serves a data directory at a time, so never two at once.
        (Target::Task, None) => Some(Files::in_dir(&w.data_dir).log),
        (Target::Systemd, None) => None,
    };
    if let Some(f) = log_file {
        option("--log-file", text("the log file", &f)?);
    }
    let secrets = [
        ("CODEX_GATEWAY_API_KEY", "--api-key", &w.api_key),
        ("CODEX_GATEWAY_DATABASE_URL", "--database-url", &w.database_url),
    ];
    let mut env = Vec::new();
    for (var, option, value) in secrets {
        if let Some(v) = value {
            if target == Target::Task {
                return Err(Refusal::SecretOnCommandLine { option });
            }
            env.push((var.to_owned(), checked(option, v)?));
        }
    }
    let output = match target {
        Target::Launchd => Some(text("the log folder", &w.logs.join("gateway.out"))?),
        Target::Systemd | Target::Task => None,
    };
    Ok(Launch { program: checked("the program", &w.program)?, args, env, output })
}

/// The command the service runs, as its system's shell would take it (for the user to read or paste).
fn command_line(target: Target, l: &Launch) -> String {
    let bare = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:=,@%".contains(c));
    let word = |w: &String| match (target, bare(w)) {
        (Target::Task, _) => render::windows_arg(w),
        (Target::Systemd | Target::Launchd, true) => w.clone(),
        (Target::Systemd | Target::Launchd, false) => format!("'{}'", w.replace('\'', r"'\''")),
    };
    std::iter::once(&l.program).chain(&l.args).map(word).collect::<Vec<_>>().join(" ")
}

fn text(what: &'static str, p: &Path) -> Result<String, Refusal> {
    let s = p.to_str().ok_or_else(|| Refusal::Unrepresentable { what, value: p.display().to_string() })?;
    checked(what, s)
}

fn checked(what: &'static str, s: &str) -> Result<String, Refusal> {
    match s.chars().any(char::is_control) {
        true => Err(Refusal::Unrepresentable { what, value: s.escape_debug().to_string() }),
        false => Ok(s.to_owned()),
    }
}

/// The binary's real path (what the temporary check looks at) and the path to write: a name on PATH that leads
/// to this very file when there is one, since package managers keep that name across upgrades while the real file
/// moves (Homebrew's `bin/` link into a versioned Cellar, pipx's `~/.local/bin`, a Nix profile); else the real
/// path.
fn program(env: &dyn Env) -> anyhow::Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let real = std::fs::canonicalize(&exe).with_context(|| format!("cannot resolve {}", exe.display()))?;
    let name = real.file_name().context("this program's path has no file name")?;
    let on_path = env
        .get("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| std::fs::canonicalize(candidate).is_ok_and(|c| c == real));
    Ok((real.clone(), on_path.unwrap_or(real)))
}

/// Windows' canonical paths are verbatim (`\\?\C:\...`), which Task Scheduler and most programs do not take.
fn plain_windows_path(p: &str) -> String {
    match (p.strip_prefix(r"\\?\UNC\"), p.strip_prefix(r"\\?\")) {
        (Some(share), _) => format!(r"\\{share}"),
        (None, Some(local)) => local.to_owned(),
        (None, None) => p.to_owned(),
    }
}

/// Whether `exe` lies where a one-run tool put it (its cache, or the temp directory `temp`).
pub(crate) fn temporary(exe: &str, temp: &str) -> Option<Temporary> {
    let p = exe.replace('\\', "/").to_lowercase();
    let has = |marker: &str| p.contains(marker);
    let temp = temp.replace('\\', "/").to_lowercase();
    let temp = temp.trim_end_matches('/');
    match () {
        () if has("/_npx/") => Some(Temporary::Npx),
        () if has("/.cache/uv/") || has("/uv/cache/") || has("/archive-v0/") => Some(Temporary::Uvx),
        () if has("/pipx/.cache/") => Some(Temporary::PipxRun),
        () if has("/pnpm/dlx/") => Some(Temporary::PnpmDlx),
        () if !temp.is_empty() && p.strip_prefix(temp).is_some_and(|rest| rest.starts_with('/')) => {
            Some(Temporary::TempDir)
        }
        () => None,
    }
}

/// The variables the gateway reads that the service does not get from this shell: the service manager starts it
/// with the login environment, not this shell's.
fn dropped(name: &str) -> bool {
    name.starts_with("CODEX_GATEWAY_")
        || ["CODEX_HOME", "OPENAI_API_KEY", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "SSL_CERT_FILE"]
            .contains(&name)
}

/// Of the variables set here, the ones the gateway reads and the service will not have, sorted: those carried as
/// options (the address, the data directory, the config file, the log format) are not among them.
fn not_carried(names: impl Iterator<Item = String>) -> Vec<String> {
    const CARRIED: [&str; 6] = [
        "CODEX_GATEWAY_HOST",
        "CODEX_GATEWAY_PORT",
        "CODEX_GATEWAY_DATA_DIR",
        "CODEX_GATEWAY_CONFIG",
        "CODEX_GATEWAY_LOG_FORMAT",
        // The npm launcher's, not the gateway's.
        "CODEX_GATEWAY_BINARY",
    ];
    let mut left: Vec<String> = names.filter(|n| dropped(n) && !CARRIED.contains(&n.as_str())).collect();
    left.sort();
    left.dedup();
    left
}

/// Wait for the service's gateway to answer `/health` (it was just started); say where, or why to look at its log.
async fn answers(address: &str, log: &str) -> anyhow::Result<()> {
    const WAIT: Duration = Duration::from_secs(20);
    let began = Instant::now();
    while began.elapsed() < WAIT {
        if super::service::http_get(address, "/health", None).await.is_ok() {
            say!("codex-gateway answers on {address}");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!(
        "the service is installed and was started, but {address}/health did not answer within {} s: see {log}",
        WAIT.as_secs()
    )
}

#[cfg(test)]
mod tests;
