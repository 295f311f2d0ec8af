//! `codex-gateway doctor [--json] [--offline]`: checks what a gateway needs to work, each one ok / warning /
//! failed with its fix in one line: the configuration, the store (opens, migrations, file modes), each account's
//! credentials, the clock, the ports, and (doctor/net.rs, skipped with `--offline`) the upstream through each
//! distinct connection. It reads and never writes: no migration, no token refresh.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use crate::auth::{Tokens, jwt};
use crate::config::{Config, Env, Overrides, ProcessEnv, RawConfig};
use crate::store::{AccountKind, AccountStatus, StoredAccount};

mod net;

#[derive(Args, Debug, Default)]
pub struct DoctorArgs {
    /// One JSON object: every check with its level, detail and fix.
    #[arg(long)]
    json: bool,
    /// Skip the network checks (DNS, TCP, TLS, the authenticated /models call, the upstream's clock).
    #[arg(long)]
    offline: bool,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Ok,
    Warning,
    Failed,
    Skipped,
}

#[derive(Serialize, Debug)]
pub(crate) struct Check {
    area: &'static str,
    check: String,
    level: Level,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default)]
pub(crate) struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, area: &'static str, check: impl Into<String>, level: Level, detail: String, fix: Option<String>) {
        self.checks.push(Check { area, check: check.into(), level, detail, fix });
    }
    pub(crate) fn ok(&mut self, area: &'static str, check: impl Into<String>, detail: impl Into<String>) {
        self.add(area, check, Level::Ok, detail.into(), None);
    }
    pub(crate) fn skip(&mut self, area: &'static str, check: impl Into<String>, detail: impl Into<String>) {
        self.add(area, check, Level::Skipped, detail.into(), None);
    }
    pub(crate) fn warn(&mut self, area: &'static str, check: impl Into<String>, detail: impl Into<String>, fix: &str) {
        self.add(area, check, Level::Warning, detail.into(), Some(fix.into()));
    }
    pub(crate) fn fail(&mut self, area: &'static str, check: impl Into<String>, detail: impl Into<String>, fix: &str) {
        self.add(area, check, Level::Failed, detail.into(), Some(fix.into()));
    }
    /// [`Report::fail`] for a check the caller's others depend on: they are not run (`None`).
    pub(crate) fn failed<T>(
        &mut self,
        area: &'static str,
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: &str,
    ) -> Option<T> {
        self.fail(area, check, detail, fix);
        None
    }
    fn count(&self, level: Level) -> usize {
        self.checks.iter().filter(|c| c.level == level).count()
    }
}

/// `codex-gateway doctor`. Exit code 1 when any check failed.
pub(crate) async fn run(base: &Overrides, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut r = Report::default();
    let now = crate::auth::now_unix();
    if let Some(config) = config_checks(&mut r, base, &ProcessEnv) {
        let accounts = store_checks(&mut r, &config);
        let probes = credential_checks(&mut r, &config, accounts.as_deref(), now);
        clock_from_tokens(&mut r, &probes, now);
        started_check(&mut r, &config).await;
        port_check(&mut r, "port", config.listen).await;
        descriptor_check(&mut r, &config);
        match config.ollama.enabled {
            true => port_check(&mut r, "ollama bridge port", config.ollama.listen).await,
            false => r.skip("ports", "ollama bridge port", "the Ollama bridge is off ([ollama] enabled)"),
        }
        match args.offline {
            true => r.skip("upstream", "reachability", "--offline"),
            false => net::upstream_checks(&mut r, &config, &probes).await,
        }
    }
    print(&r, args.json)?;
    Ok(if r.count(Level::Failed) > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn print(r: &Report, json: bool) -> anyhow::Result<()> {
    let [ok, warnings, failed, skipped] =
        [Level::Ok, Level::Warning, Level::Failed, Level::Skipped].map(|l| r.count(l));
    let v = serde_json::json!({
        "ok": failed == 0,
        "summary": {"ok": ok, "warning": warnings, "failed": failed, "skipped": skipped},
        "checks": r.checks,
    });
    super::output::json_or(&v, json, |_| {
        for c in &r.checks {
            let level = match c.level {
                Level::Ok => "ok",
                Level::Warning => "warning",
                Level::Failed => "FAILED",
                Level::Skipped => "skipped",
            };
            say!("{level:<8} {:<12} {}: {}", c.area, c.check, c.detail);
            if let Some(fix) = &c.fix {
                say!("{:<21} fix: {fix}", "");
            }
        }
        say!("\n{ok} ok, {warnings} warning(s), {failed} failed, {skipped} skipped");
    })
}

/// One line of an error that may span several (TOML's caret diagrams are dropped).
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .map(str::trim)
        // Keep the message lines: drop blank ones and the source excerpt ("  |", "2 | no_such_key = 1").
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .filter(|l| l.split_once(" |").is_none_or(|(n, _)| n.parse::<u32>().is_err()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How to make a config file the gateway cannot read readable, without opening it to everyone (it may hold keys).
const READABLE_FIX: &str = "let the gateway's user read it and enter its directory (systemd: `chgrp codex-gateway` the \
                            directory and the file, modes 0750 and 0640)";

/// The file (found, parses: unknown keys are refused by the parser), then the values. Returns the configuration
/// the other checks use: the file's, or the defaults when it does not load; `None` when not even those resolve.
fn config_checks(r: &mut Report, base: &Overrides, env: &dyn Env) -> Option<Config> {
    let explicit = crate::config::explicit_config_file(base, env);
    let path = explicit.clone().unwrap_or_else(|| crate::config::default_config_path(env));
    let raw = match path.try_exists() {
        // It may exist, behind a directory this user cannot enter: the gateway refuses to start then.
        Err(e) => r.failed("config", "file", format!("cannot read {}: {e}", path.display()), READABLE_FIX),
        Ok(present) => file_check(r, &path, present, explicit.is_some()),
    };
    let loaded = raw.is_some();
    match Config::resolve(raw.unwrap_or_default(), base, env) {
        Ok(c) => {
            match loaded {
                true => r.ok("config", "values", format!("valid; listens on {}", c.listen)),
                false => r.skip("config", "values", "the other checks use the defaults"),
            }
            Some(c)
        }
        Err(e) => r.failed("config", "values", one_line(&e), "correct the value it names"),
    }
}

/// The file at `path` parses (`present`: it exists), or its absence is fine (not `explicit`).
fn file_check(r: &mut Report, path: &Path, present: bool, explicit: bool) -> Option<RawConfig> {
    if !present {
        return match explicit {
            true => r.failed("config", "file", format!("{} not found", path.display()), "create it, or drop --config"),
            false => {
                r.ok("config", "file", format!("none at {}: defaults and environment", path.display()));
                Some(RawConfig::default())
            }
        };
    }
    match crate::config::read_raw(path) {
        Ok(raw) => {
            r.ok("config", "file", format!("{} parses", path.display()));
            return Some(raw);
        }
        Err(e) if e.downcast_ref::<std::io::Error>().is_some() => r.fail("config", "file", one_line(&e), READABLE_FIX),
        Err(e) => r.fail("config", "file", one_line(&e), "correct or remove the key it names (docs/configuration.md)"),
    }
    None
}

/// Data directory 0700 and database files 0600 (they hold the tokens), the store opens read-only, its schema is
/// this build's. Returns its accounts when it could read them without migrating.
fn store_checks(r: &mut Report, config: &Config) -> Option<Vec<StoredAccount>> {
    let dir = &config.data_dir;
    if !dir.is_dir() {
        r.ok("store", "data dir", format!("{} does not exist yet (made at first start)", dir.display()));
        return None;
    }
    #[cfg(unix)]
    match mode(dir) {
        Some(m) if m & 0o077 != 0 => r.warn(
            "store",
            "data dir mode",
            format!("{} is {m:04o}: other users can list it", dir.display()),
            &format!("chmod 700 {}", dir.display()),
        ),
        _ => r.ok("store", "data dir mode", format!("{} is private", dir.display())),
    }
    // Windows has no modes: a folder's ACL decides, and one in the user's profile is the user's alone.
    #[cfg(windows)]
    r.ok("store", "data dir mode", format!("{}: not checked on Windows (its ACL decides)", dir.display()));
    let db = config.db_path();
    if !db.exists() {
        r.ok("store", "database", format!("{} does not exist yet (made at first start)", db.display()));
        return None;
    }
    #[cfg(unix)]
    for file in
        [db.clone(), PathBuf::from(format!("{}-wal", db.display())), PathBuf::from(format!("{}-shm", db.display()))]
    {
        match mode(&file) {
            Some(m) if m & 0o077 != 0 => r.fail(
                "store",
                "file mode",
                format!("{} is {m:04o}: other users can read the tokens in it", file.display()),
                &format!("chmod 600 {}", file.display()),
            ),
            Some(_) => r.ok("store", "file mode", format!("{} is 0600", file.display())),
            None => {}
        }
    }
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let version = rusqlite::Connection::open_with_flags(&db, flags)
        .map_err(anyhow::Error::from)
        .and_then(|c| crate::store::migrations::sqlite_state(&c).map(|(v, _)| v));
    let current = crate::store::migrations::SCHEMA_VERSION as i64;
    match version {
        Err(e) => r.fail(
            "store",
            "opens",
            format!("{}: {e}", db.display()),
            "restore a backup, or move the file away (a new store is made at start; accounts must be imported again)",
        ),
        Ok(v) if v < current => r.warn(
            "store",
            "migrations",
            format!("schema {v} of {current}: the rest is applied at the next start"),
            "restart the gateway",
        ),
        Ok(v) if v > current => r.fail(
            "store",
            "migrations",
            format!("schema {v} is newer than this build's ({current})"),
            "run the newer codex-gateway that wrote it",
        ),
        Ok(v) => {
            r.ok("store", "migrations", format!("opens; schema {v} is current"));
            match crate::store::Store::open(&db).and_then(|s| s.list_accounts()) {
                Ok(accounts) => return Some(accounts),
                Err(e) => r.fail("store", "accounts", one_line(&e), "restore a backup of the store"),
            }
        }
    }
    None
}

#[cfg(unix)]
fn mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

/// What the network checks need of one account: its connection and a credential to try (an access token that
/// has not expired, or an API key; the doctor never refreshes).
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub(crate) name: String,
    pub(crate) kind: AccountKind,
    pub(crate) proxy: Option<String>,
    pub(crate) base_url: Option<String>,
    pub(crate) credential: Option<String>,
    pub(crate) account_id: Option<String>,
    pub(crate) issued_at: Option<i64>,
}

impl Probe {
    fn new(name: String, kind: AccountKind) -> Probe {
        Probe { name, kind, proxy: None, base_url: None, credential: None, account_id: None, issued_at: None }
    }
}

fn credential_checks(r: &mut Report, config: &Config, accounts: Option<&[StoredAccount]>, now: i64) -> Vec<Probe> {
    let mut probes = Vec::new();
    for a in accounts.unwrap_or_default() {
        let name = a.label.clone().or_else(|| a.email.clone()).unwrap_or_else(|| a.id.clone());
        let check = format!("account {name}");
        let mut probe = Probe { proxy: a.proxy.clone(), base_url: a.base_url.clone(), ..Probe::new(name, a.kind) };
        match a.status {
            AccountStatus::NeedsLogin => {
                let why = a.status_reason.as_deref().unwrap_or("the refresh token was refused");
                r.fail("credentials", check, format!("needs login ({why})"), "codex-gateway login");
                continue;
            }
            AccountStatus::Disabled => {
                r.warn("credentials", check, "disabled", &format!("codex-gateway accounts enable {}", a.id));
                continue;
            }
            AccountStatus::Unrecognized => {
                r.warn(
                    "credentials",
                    check,
                    "status unknown to this build (never served)",
                    "codex-gateway accounts enable",
                );
                continue;
            }
            AccountStatus::Active => {}
        }
        match a.kind {
            AccountKind::Chatgpt => match &a.tokens {
                Some(t) => token_check(r, check, t, now, &mut probe),
                None => r.fail("credentials", check, "no tokens stored", "codex-gateway login"),
            },
            AccountKind::ApiKey | AccountKind::Relay => {
                r.ok("credentials", check, "API key");
                probe.credential = a.api_key.clone();
            }
            AccountKind::Unrecognized => {
                r.warn("credentials", check, "kind unknown to this build (never served)", "upgrade codex-gateway");
                continue;
            }
        }
        probes.push(probe);
    }
    if !probes.is_empty() || accounts.is_some_and(|a| !a.is_empty()) {
        return probes;
    }
    // No accounts in the store: linked mode (the Codex CLI's auth.json), else OPENAI_API_KEY.
    let auth = config.codex_auth_file();
    let linked = |kind, credential| Probe { credential, ..Probe::new("linked auth.json".into(), kind) };
    if auth.exists() {
        let check = format!("linked {}", auth.display());
        match crate::auth::codex_file::read(&auth).map(|f| f.credentials()) {
            Ok(Some(crate::auth::codex_file::FileCredentials::Chatgpt(t))) => {
                let mut probe = linked(AccountKind::Chatgpt, None);
                token_check(r, check, &t, now, &mut probe);
                probes.push(probe);
            }
            Ok(Some(crate::auth::codex_file::FileCredentials::ApiKey(k))) => {
                r.ok("credentials", check, "API key");
                probes.push(linked(AccountKind::ApiKey, Some(k)));
            }
            Ok(None) => r.fail("credentials", check, "holds no tokens", "codex login, or codex-gateway login"),
            Err(e) => r.fail("credentials", check, one_line(&e), "codex login, or codex-gateway login"),
        }
    } else if let Some(k) = &config.openai_api_key {
        r.ok("credentials", "OPENAI_API_KEY", "set");
        probes.push(linked(AccountKind::ApiKey, Some(k.clone())));
    } else {
        r.fail(
            "credentials",
            "accounts",
            "none: no account in the store, no Codex CLI login, no OPENAI_API_KEY",
            "codex-gateway login (or codex login, or codex-gateway accounts import)",
        );
    }
    probes
}

/// Expiry of the access token and whether a refresh token can renew it.
fn token_check(r: &mut Report, check: String, tokens: &Tokens, now: i64, probe: &mut Probe) {
    let claims = jwt::claims(&tokens.access_token).unwrap_or_default();
    probe.issued_at = claims.iat;
    probe.account_id = Some(tokens.account_id.clone()).filter(|s| !s.is_empty());
    let has_refresh = !tokens.refresh_token.is_empty();
    match claims.exp {
        None => r.warn("credentials", check, "the access token is not a readable JWT", "codex-gateway login"),
        Some(exp) if exp > now => {
            probe.credential = Some(tokens.access_token.clone());
            let left = super::service::duration((exp - now) as u64);
            match has_refresh {
                true => r.ok("credentials", check, format!("access token valid for {left}; refresh token present")),
                false => r.warn(
                    "credentials",
                    check,
                    format!("no refresh token: the login ends when the access token expires in {left}"),
                    "codex-gateway login",
                ),
            }
        }
        Some(_) => match has_refresh {
            true => r.ok("credentials", check, "access token expired; the refresh token renews it at next use"),
            false => r.fail("credentials", check, "access token expired and no refresh token", "codex-gateway login"),
        },
    }
}

/// A token issued "in the future" means this clock is behind the issuer's.
fn clock_from_tokens(r: &mut Report, probes: &[Probe], now: i64) {
    let Some(iat) = probes.iter().filter_map(|p| p.issued_at).max() else {
        return r.skip("clock", "token iat", "no token to compare with");
    };
    match iat - now {
        ahead if ahead > 300 => r.fail(
            "clock",
            "token iat",
            format!("a token was issued {ahead} s in this machine's future: the clock is behind"),
            "sync the clock (timedatectl set-ntp true)",
        ),
        ahead if ahead > 60 => r.warn(
            "clock",
            "token iat",
            format!("a token was issued {ahead} s in the future"),
            "sync the clock (timedatectl set-ntp true)",
        ),
        _ => r.ok("clock", "token iat", "no token issued in this machine's future"),
    }
}

/// The gateway `codex-gateway start` runs in the background for this data directory: answering at the address it
/// printed (which `start --port` may have moved off the configured one, so the port check alone would miss it),
/// or gone with its pid file left behind.
async fn started_check(r: &mut Report, config: &Config) {
    use crate::cli::service::{Files, Running, read_state, running_pid};
    let files = Files::in_dir(&config.data_dir);
    let pid = match running_pid(&files) {
        Running::Yes(pid) => pid,
        Running::Stale(pid) => {
            return r.warn(
                "ports",
                "started gateway",
                format!("{} names pid {pid}, which is gone: the gateway `start` ran has exited", files.pid.display()),
                "`codex-gateway status` shows its last output; `codex-gateway start` starts it again",
            );
        }
        Running::No => {
            return r.ok("ports", "started gateway", "none (`codex-gateway start` runs one in the background)");
        }
    };
    let Some(address) = read_state(&files).ok().filter(|s| s.pid == pid).map(|s| s.address) else {
        return r.warn(
            "ports",
            "started gateway",
            format!("pid {pid} runs, but its address is not recorded in {}", config.data_dir.display()),
            "`codex-gateway restart` records it again",
        );
    };
    let configured = crate::cli::local_url(config.listen);
    let moved = match address == configured {
        true => String::new(),
        false => format!(" (not the configured {configured}: `start --host/--port`)"),
    };
    match answers_as_gateway(&address).await {
        true => r.ok("ports", "started gateway", format!("pid {pid} answers at {address}{moved}")),
        false => r.fail(
            "ports",
            "started gateway",
            format!("pid {pid} runs but does not answer at {address}/health{moved}"),
            "`codex-gateway restart`; `codex-gateway status` shows its last output",
        ),
    }
}

/// The open files limit a started gateway gets: this process's, raised as `serve` raises its own (descriptors.rs),
/// and the concurrent streams it allows on the configured transport.
fn descriptor_check(r: &mut Report, config: &Config) {
    use crate::descriptors::{self, FEW_STREAMS, Raise, show};
    let upstream = descriptors::Upstream::of(config);
    let raised = descriptors::raise();
    let Some(limits) = raised.limits() else {
        match raised {
            Raise::Unknown(e) => r.warn("limits", "open files", format!("cannot be read: {e}"), descriptors::FIX),
            _ => r.ok("limits", "open files", "no limit on this system"),
        }
        return;
    };
    let Some(streams) = descriptors::streams_allowed(&limits, upstream) else {
        return r.ok("limits", "open files", "unlimited");
    };
    let detail = format!(
        "soft limit {} (hard {}{}): about {streams} concurrent streams, {} descriptors each ({})",
        show(limits.soft),
        show(limits.hard),
        match raised {
            Raise::Raised { from, .. } => format!(", raised from {} as the gateway raises it", show(from)),
            Raise::Failed { error, .. } => format!(", cannot be raised: {error}"),
            _ => String::new(),
        },
        upstream.per_stream(),
        upstream.describe(),
    );
    match streams < FEW_STREAMS {
        true => r.warn("limits", "open files", format!("{detail}; fewer than {FEW_STREAMS}"), descriptors::FIX),
        false => r.ok("limits", "open files", detail),
    }
}

/// A codex-gateway answers `/health` at `address` (its answer names a version), within 2 seconds.
async fn answers_as_gateway(address: &str) -> bool {
    let Ok(http) = reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(2)).build() else {
        return false;
    };
    let Ok(resp) = http.get(format!("{address}/health")).send().await else { return false };
    resp.json::<serde_json::Value>().await.is_ok_and(|v| v["version"].is_string())
}

/// Free, or held by a codex-gateway (this one, running); anything else holding it is a failure.
async fn port_check(r: &mut Report, check: &'static str, addr: std::net::SocketAddr) {
    if addr.port() == 0 {
        return r.ok("ports", check, "port 0: a free port is picked at start");
    }
    let err = match std::net::TcpListener::bind(addr) {
        Ok(_) => return r.ok("ports", check, format!("{addr} is free")),
        Err(e) => e,
    };
    match err.kind() {
        std::io::ErrorKind::AddrInUse => match answers_as_gateway(&crate::cli::local_url(addr)).await {
            true => r.ok("ports", check, format!("{addr} is held by a running codex-gateway")),
            false => r.fail(
                "ports",
                check,
                format!("{addr} is in use by another program"),
                "stop that program, or choose another port (--port, CODEX_GATEWAY_PORT, `port` in the config)",
            ),
        },
        std::io::ErrorKind::PermissionDenied => r.fail(
            "ports",
            check,
            format!("{addr}: not allowed to listen there (ports below 1024 need privileges)"),
            "choose a port above 1023",
        ),
        _ => r.fail("ports", check, format!("{addr}: {err}"), "choose an address of this machine"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_toml_error_is_one_line_without_its_diagram() {
        let e = anyhow::anyhow!(
            "TOML parse error at line 2, column 1\n  |\n2 | no_such_key=1\n  | ^^^^^^^^^^^\nunknown field `no_such_key`, expected one of `a`"
        )
        .context("invalid config file x.toml");
        assert_eq!(
            super::one_line(&e),
            "invalid config file x.toml: TOML parse error at line 2, column 1 unknown field `no_such_key`, expected one of `a`"
        );
    }
}
