//! The gateway as a background service: `start` (spawn `serve` detached, with its pid file, its last options and
//! its log in the data directory; return once `/health` answers), `stop` (SIGTERM, then wait for the graceful
//! shutdown), `restart` (the last start's options) and `status` (LSB exit codes; what the running gateway says
//! in `/admin/status`, `/admin/accounts` and `/metrics`). `serve` (cli.rs) stays the foreground command. On
//! Windows the pid is checked and `stop` ends the process through its handle (service/windows.rs): no graceful
//! shutdown there.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::codex_file::write_private_atomic;
use crate::cli::ServeArgs;
use crate::config::{Config, Overrides, ProcessEnv};

/// How long `start` waits for `/health` before it gives up (and stops the process it spawned).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// What `stop` adds to the gateway's own bounds (streams, then the ledger drain) before it kills.
const STOP_GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows::{alive, is_gateway};

/// The files of a background gateway, in the data directory.
pub(crate) struct Files {
    pub(crate) pid: PathBuf,
    /// The last start's options, its address and start time (0600: it may hold the client key).
    pub(crate) state: PathBuf,
    /// `serve --log-file`: the gateway's log lines, rotated by size (logging.rs).
    pub(crate) log: PathBuf,
    /// The process's own stdout and stderr (the "listening" line, a fatal error, a panic); emptied at each start.
    pub(crate) out: PathBuf,
}

impl Files {
    pub(crate) fn in_dir(dir: &Path) -> Files {
        Files {
            pid: dir.join("gateway.pid"),
            state: dir.join("gateway.start.json"),
            log: dir.join("gateway.log"),
            out: dir.join("gateway.out"),
        }
    }
}

/// The options a start was given, saved so `restart` repeats them.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub(crate) struct StartOptions {
    config: Option<PathBuf>,
    data_dir: PathBuf,
    log_format: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    /// Handed to the process in its environment, never on its command line (where `ps` shows it).
    pub(crate) api_key: Option<String>,
    /// `--log-file`; default `gateway.log` in the data directory.
    #[serde(default)]
    log_file: Option<PathBuf>,
}

impl StartOptions {
    fn log(&self) -> PathBuf {
        self.log_file.clone().unwrap_or_else(|| Files::in_dir(&self.data_dir).log)
    }
}

/// `gateway.start.json`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub(crate) struct State {
    pub(crate) pid: u32,
    /// The address it listens on, as it printed it (`--port 0` picks one).
    pub(crate) address: String,
    started_at: i64,
    pub(crate) options: StartOptions,
}

pub(crate) async fn start(base: &Overrides, args: ServeArgs) -> anyhow::Result<()> {
    let overrides = args.overrides(base);
    // A configuration that does not load is refused here, with its reason, before anything is spawned.
    let config = Config::load(&overrides, &ProcessEnv)?;
    let options = StartOptions {
        config: overrides.config.clone(),
        data_dir: absolute(&config.data_dir),
        log_format: overrides.log_format.clone(),
        host: overrides.host.clone(),
        port: overrides.port,
        api_key: overrides.api_key.clone(),
        log_file: args.log_file.as_deref().map(absolute),
    };
    let state = spawn(&options).await?;
    say!("codex-gateway started (pid {}), listening on {}", state.pid, state.address);
    say!("log: {}", options.log().display());
    Ok(())
}

pub(crate) async fn stop(base: &Overrides) -> anyhow::Result<()> {
    let config = Config::load(base, &ProcessEnv)?;
    let files = Files::in_dir(&config.data_dir);
    match running_pid(&files) {
        Running::Yes(pid) => return terminate(&files, pid, &config).await,
        Running::Stale(pid) => {
            let _ = std::fs::remove_file(&files.pid);
            say!("codex-gateway is not running (removed the stale pid file of pid {pid})");
        }
        Running::No => say!("codex-gateway is not running"),
    }
    Ok(())
}

pub(crate) async fn restart(base: &Overrides) -> anyhow::Result<()> {
    let config = Config::load(base, &ProcessEnv)?;
    let files = Files::in_dir(&config.data_dir);
    let saved = read_state(&files).context("no earlier `codex-gateway start` in this data directory")?;
    if let Running::Yes(pid) = running_pid(&files) {
        terminate(&files, pid, &config).await?;
    }
    let state = spawn(&saved.options).await?;
    say!("codex-gateway restarted (pid {}), listening on {}", state.pid, state.address);
    Ok(())
}

/// `codex-gateway status [--verbose | --quiet]`, with the exit codes of LSB init scripts.
pub(crate) async fn status(base: &Overrides, verbose: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load(base, &ProcessEnv)?;
    let files = Files::in_dir(&config.data_dir);
    let configured = crate::cli::local_url(config.listen);
    let state = read_state(&files).ok();
    let (address, pid, code) = match running_pid(&files) {
        Running::Yes(pid) => (state.as_ref().map_or(configured, |s| s.address.clone()), Some(pid), 0),
        Running::Stale(pid) => {
            if !quiet {
                say!("codex-gateway: not running (pid {pid} in {} is gone)", files.pid.display());
                print_tail(&files.out);
            }
            (String::new(), None, 1)
        }
        // Not started by `start`, but maybe by `serve` (a terminal, systemd, a container) on the configured address.
        Running::No if http_get(&configured, "/health", None).await.is_ok() => (configured, None, 0),
        Running::No => {
            if !quiet {
                say!("codex-gateway: not running");
            }
            (String::new(), None, 3)
        }
    };
    if quiet {
        return Ok(ExitCode::from(code));
    }
    if code == 0 {
        say!("codex-gateway: running");
        match pid {
            Some(p) => say!("pid:           {p}"),
            None => say!("pid:           - (not started with `codex-gateway start`)"),
        }
        if let (Some(s), Some(_)) = (&state, pid) {
            say!("uptime:        {}", duration((crate::auth::now_unix() - s.started_at).max(0) as u64));
        }
        say!("address:       {address}");
        live_summary(&config, &address).await;
        if let (Some(s), Some(_)) = (&state, pid) {
            say!("log:           {}", s.options.log().display());
        }
    }
    if verbose {
        say!();
        say!("config listen: http://{}", config.listen);
        say!("data dir:      {}", config.data_dir.display());
        say!("upstream:      {}", config.upstream_base_url);
        let keys = if super::keys::requires_a_key(&config) { "required" } else { "none (loopback only)" };
        say!("client keys:   {keys}");
        let auth = config.codex_auth_file();
        say!("codex login:   {} ({})", auth.display(), if auth.exists() { "present" } else { "absent" });
        if code == 0 {
            open_files(&config, &address).await;
        }
        say!();
        super::accounts::run(&config, super::AccountsCommand::List { json: false }).await?;
    }
    Ok(ExitCode::from(code))
}

/// What the running gateway says about itself: version, accounts, the soonest quota reset, open streams.
async fn live_summary(config: &Config, address: &str) {
    match admin(config, address, "/admin/status").await {
        Ok(s) => {
            say!("version:       {}", s["version"].as_str().unwrap_or("-"));
            say!("accounts:      {} of {} can serve", s["usable"], s["accounts"]);
        }
        Err(e) => say!("accounts:      unknown ({e:#})"),
    }
    if let Ok(list) = admin(config, address, "/admin/accounts").await {
        say!("soonest reset: {}", soonest_reset(&list, crate::auth::now_unix()).map_or("-".into(), when));
    }
    if let Ok(f) = admin(config, address, "/admin/forecast").await {
        say!("quota:         {}", forecast_line(&f["pool"]));
    }
    match http_get(address, "/metrics", config.admin_keys().first()).await {
        Ok(text) => {
            // A gauge is written as a float ("2.0").
            let open = metric(&text, "codex_gateway_active_streams").and_then(|v| v.parse::<f64>().ok());
            say!("open streams:  {}", open.map_or("-".into(), |n| format!("{n:.0}")));
        }
        Err(_) => say!("open streams:  - (/metrics unavailable)"),
    }
}

/// The running gateway's open files limit and the concurrent streams it allows (`open_files` in `/admin/status`;
/// docs/operations.md, "Open files"), with the fix when they are few.
async fn open_files(config: &Config, address: &str) {
    let o = match admin(config, address, "/admin/status").await {
        Ok(s) if s["open_files"].is_object() => s["open_files"].clone(),
        Ok(_) => return say!("open files:    - (not reported by this gateway)"),
        Err(e) => return say!("open files:    unknown ({e:#})"),
    };
    let limit = |v: &Value| v.as_u64().map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    let streams = o["streams_allowed"].as_u64();
    say!(
        "open files:    soft limit {} (hard {}): {} concurrent streams ({} descriptors each)",
        limit(&o["soft"]),
        limit(&o["hard"]),
        streams.map_or_else(|| "no limit on".to_string(), |n| format!("about {n}")),
        o["descriptors_per_stream"],
    );
    if streams.is_some_and(|n| n < crate::descriptors::FEW_STREAMS) {
        say!("               warning: fewer than {}; {}", crate::descriptors::FEW_STREAMS, crate::descriptors::FIX);
    }
}

/// A GET on the gateway with the admin credential (config.admin_keys), the body as JSON.
async fn admin(config: &Config, address: &str, path: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&http_get(address, path, config.admin_keys().first()).await?)?)
}

/// A GET on the gateway at `address` (within 3 s), the body of a success as text.
pub(crate) async fn http_get(address: &str, path: &str, key: Option<&String>) -> anyhow::Result<String> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(3)).build()?;
    let mut req = http.get(format!("{address}{path}"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.context("no answer")?;
    let status = resp.status();
    if !status.is_success() {
        bail!("HTTP {} on {path}{}", status.as_u16(), if status.as_u16() == 401 { ": set the admin key" } else { "" });
    }
    Ok(resp.text().await?)
}

/// The pool's forecast in words: what is left, the rate, when it runs dry and when capacity comes back.
pub(crate) fn forecast_line(f: &Value) -> String {
    let share = match (f["usable_tokens"].as_f64(), f["capacity_tokens"].as_f64()) {
        (Some(u), Some(c)) if c > 0.0 => format!("{:.0}% of capacity left", 100.0 * u / c),
        _ => "capacity unknown".into(),
    };
    let rate = f["rate_tokens_per_hour"].as_f64().unwrap_or(0.0);
    let dry = match f["dry_at"].as_i64() {
        Some(t) => format!("runs dry {} at the present rate", when(t)),
        None if rate > 0.0 => "does not run dry at the present rate".into(),
        None => "nothing is being spent".into(),
    };
    let back = f["back_at"].as_i64().map(|t| format!("; capacity back {}", when(t))).unwrap_or_default();
    format!("{share}, {:.1} M weighted tokens/h; {dry}{back}", rate / 1e6)
}

/// The earliest quota reset still ahead among the accounts (`/admin/accounts`), unix seconds.
fn soonest_reset(accounts: &Value, now: i64) -> Option<i64> {
    accounts
        .as_array()?
        .iter()
        .flat_map(|a| [&a["quota"]["primary_reset_at"], &a["quota"]["secondary_reset_at"]])
        .filter_map(Value::as_i64)
        .filter(|t| *t > now)
        .min()
}

/// One sample's value from the Prometheus text format.
fn metric<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')).map(str::trim)
}

fn when(t: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| t.to_string());
    format!("{at} (in {})", duration((t - crate::auth::now_unix()).max(0) as u64))
}

pub(crate) fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// Spawn `serve` detached with `options`, wait for `/health`, then write the pid and state files. A process that
/// exits early is reported with what it printed; one that does not answer in time is killed (no orphan).
async fn spawn(options: &StartOptions) -> anyhow::Result<State> {
    let files = Files::in_dir(&options.data_dir);
    if let Running::Yes(pid) = running_pid(&files) {
        bail!("codex-gateway is already running (pid {pid}); `codex-gateway restart` restarts it");
    }
    crate::store::create_private_dir(&options.data_dir)
        .with_context(|| format!("cannot create the data directory {}", options.data_dir.display()))?;
    // Created or emptied, 0600.
    let mut private = crate::store::private_options();
    private.write(true).create(true).truncate(true);
    let out = private.open(&files.out).with_context(|| format!("cannot write {}", files.out.display()))?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut cmd = std::process::Command::new(exe);
    // `--name value` for an option that was given, nothing for one that was not.
    let flag = |name: &'static str, value: Option<OsString>| value.into_iter().flat_map(move |v| [name.into(), v]);
    cmd.args(flag("--config", options.config.as_deref().map(|c| absolute(c).into())));
    cmd.arg("--data-dir").arg(&options.data_dir);
    cmd.args(flag("--log-format", options.log_format.clone().map(OsString::from)));
    cmd.arg("serve").arg("--log-file").arg(options.log());
    cmd.args(flag("--host", options.host.clone().map(OsString::from)));
    cmd.args(flag("--port", options.port.map(|p| p.to_string().into())));
    if let Some(k) = &options.api_key {
        cmd.env("CODEX_GATEWAY_API_KEY", k);
    }
    cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
    // Its own process group: a Ctrl-C or a closed terminal where `start` ran does not reach it. And no working
    // directory to pin (a relative path was made absolute above).
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    #[cfg(windows)]
    std::os::windows::process::CommandExt::creation_flags(&mut cmd, windows::DETACHED);
    cmd.current_dir("/");
    let mut child = cmd.spawn().context("cannot start the gateway process")?;
    let pid = child.id();
    let began = Instant::now();
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
    let address = loop {
        if let Some(exit) = child.try_wait()? {
            bail!("the gateway did not start ({exit}): {}", failure_reason(&files.out));
        }
        if began.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the gateway did not answer /health within {} s and was stopped; see {}",
                START_TIMEOUT.as_secs(),
                options.log().display()
            );
        }
        if let Some(address) = listening_address(&files.out) {
            let health = format!("{address}/health");
            if http.get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
                break address;
            }
        }
        tokio::time::sleep(POLL).await;
    };
    let state = State { pid, address, started_at: crate::auth::now_unix(), options: options.clone() };
    write_private_atomic(&files.state, &serde_json::to_vec_pretty(&state)?)?;
    write_private_atomic(&files.pid, format!("{pid}\n").as_bytes())?;
    Ok(state)
}

/// SIGTERM, then wait: the gateway stops accepting, lets open streams finish up to `shutdown_timeout_secs`,
/// drains the usage ledger (bounded the same), and exits. Past both bounds and a grace, it is killed.
#[cfg(unix)]
async fn terminate(files: &Files, pid: u32, config: &Config) -> anyhow::Result<()> {
    signal(pid, libc::SIGTERM).with_context(|| format!("cannot signal pid {pid}"))?;
    let bound = config.timeouts.shutdown * 2 + STOP_GRACE;
    let began = Instant::now();
    while alive(pid) {
        if began.elapsed() > bound {
            let _ = signal(pid, libc::SIGKILL);
            let _ = std::fs::remove_file(&files.pid);
            bail!("codex-gateway (pid {pid}) did not exit within {} s and was killed", bound.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = std::fs::remove_file(&files.pid);
    say!("codex-gateway stopped (pid {pid})");
    Ok(())
}

/// Windows: the process is ended at once (service/windows.rs says why), then awaited so a `restart` does not
/// find its port still taken.
#[cfg(windows)]
async fn terminate(files: &Files, pid: u32, _config: &Config) -> anyhow::Result<()> {
    windows::kill(pid).with_context(|| format!("cannot end pid {pid}"))?;
    let began = Instant::now();
    while alive(pid) {
        if began.elapsed() > STOP_GRACE {
            bail!("codex-gateway (pid {pid}) was ended but still runs after {} s", STOP_GRACE.as_secs());
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = std::fs::remove_file(&files.pid);
    say!("codex-gateway stopped (pid {pid}; on Windows it is ended at once: open streams were cut)");
    Ok(())
}

pub(crate) struct Reach {
    /// `http://HOST:PORT`.
    pub(crate) base: String,
    /// The configured admin key (or client key, when no admin key is set); else the key the background
    /// gateway was started with.
    pub(crate) key: Option<String>,
}

/// Where a command on this machine reaches the gateway, and the credential it presents there: the one `start`
/// runs in the background, at the address it printed (`start --port`/`--host` may differ from the configuration),
/// else the configured listen address. Every command that talks to a running gateway asks here, so none of them
/// writes the store behind the back of a gateway it did not find (a revoked key would still be served).
pub(crate) fn reach(config: &Config) -> Reach {
    let files = Files::in_dir(&config.data_dir);
    let started = match running_pid(&files) {
        Running::Yes(pid) => read_state(&files).ok().filter(|s| s.pid == pid),
        Running::Stale(_) | Running::No => None,
    };
    let key = config.admin_keys().first().cloned().or_else(|| started.as_ref().and_then(|s| s.options.api_key.clone()));
    let base = match started {
        Some(s) => s.address,
        None => crate::cli::local_url(config.listen),
    };
    Reach { base, key }
}

pub(crate) enum Running {
    Yes(u32),
    /// A pid file whose process is gone (or is another program now).
    Stale(u32),
    No,
}

pub(crate) fn running_pid(files: &Files) -> Running {
    let Some(pid) = std::fs::read_to_string(&files.pid).ok().and_then(|s| s.trim().parse::<u32>().ok()) else {
        return Running::No;
    };
    if alive(pid) && is_gateway(pid) { Running::Yes(pid) } else { Running::Stale(pid) }
}

/// The process exists and is not a zombie (a gateway whose parent, `start`, is gone is reaped by init, but a
/// container's init may not reap).
#[cfg(unix)]
fn alive(pid: u32) -> bool {
    // Signal 0 only checks that the process exists and may be signalled.
    signal(pid, 0).is_ok()
        && match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state is the first field after the command name in parentheses.
            Ok(stat) => stat.rsplit_once(')').is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
}

/// The pid is a codex-gateway (a pid file outliving its process may name a reused pid). Without /proc: assume so.
#[cfg(unix)]
fn is_gateway(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => cmdline
            .split(|b| *b == 0)
            .next()
            .and_then(|argv0| Path::new(std::str::from_utf8(argv0).ok()?).file_name()?.to_str().map(str::to_owned))
            .is_some_and(|name| name.starts_with("codex-gateway")),
        Err(_) => true,
    }
}

#[cfg(unix)]
pub(crate) fn signal(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) takes plain integers; the pid was checked to be a running codex-gateway.
    match unsafe { libc::kill(pid, sig) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// `serve` prints `codex-gateway listening on http://ADDR` first (cli.rs); with `--host 0.0.0.0` the address to
/// reach it on is loopback.
fn listening_address(out: &Path) -> Option<String> {
    let text = std::fs::read_to_string(out).ok()?;
    let addr = text.lines().find_map(|l| l.strip_prefix("codex-gateway listening on http://"))?;
    let addr: std::net::SocketAddr = addr.trim().parse().ok()?;
    Some(crate::cli::local_url(addr))
}

/// Why a process that exited at start did: its `error:` lines (main prints the cause chain there), else its
/// last lines.
fn failure_reason(out: &Path) -> String {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let errors: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("error: ")).collect();
    if !errors.is_empty() {
        return errors.join("; ");
    }
    match last_lines(&text)[..] {
        [] => "it printed nothing".into(),
        ref tail => tail.join(" / "),
    }
}

fn last_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].to_vec()
}

fn print_tail(out: &Path) {
    for line in last_lines(&std::fs::read_to_string(out).unwrap_or_default()) {
        say!("  | {line}");
    }
}

pub(crate) fn read_state(files: &Files) -> anyhow::Result<State> {
    let text = std::fs::read(&files.state).with_context(|| format!("cannot read {}", files.state.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not readable", files.state.display()))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_soonest_reset_is_the_earliest_one_still_ahead() {
        let list = json!([
            {"quota": {"primary_reset_at": 50, "secondary_reset_at": 900}},
            {"quota": {"primary_reset_at": 300, "secondary_reset_at": null}},
            {"quota": {}},
        ]);
        assert_eq!(super::soonest_reset(&list, 100), Some(300));
        assert_eq!(super::soonest_reset(&list, 1000), None);
    }

    #[test]
    fn a_metric_is_read_by_its_exact_name() {
        let text = "# HELP x\ncodex_gateway_active_streams_total 9\ncodex_gateway_active_streams 2\n";
        assert_eq!(super::metric(text, "codex_gateway_active_streams"), Some("2"));
    }

    #[test]
    fn the_reason_of_a_failed_start_is_its_error_line() -> anyhow::Result<()> {
        let p = std::env::temp_dir().join(format!("cgw-out-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&p, "error: cannot listen on 127.0.0.1:9: Address already in use (os error 98)\n")?;
        assert_eq!(super::failure_reason(&p), "cannot listen on 127.0.0.1:9: Address already in use (os error 98)");
        std::fs::remove_file(&p)?;
        Ok(())
    }
}
