//! The service managers' side of `service install | uninstall | status`: where each system keeps the file, and the
//! commands that load, start, stop and query it (`systemctl --user`, `launchctl`, `schtasks`). Which of them runs
//! is decided once, by the operating system (autostart.rs, `Target::here`); the text of each file comes from
//! autostart/render.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

use super::Target;
use super::render::{self, LAUNCHD_LABEL, Launch, SYSTEMD_UNIT, TASK_NAME};
use crate::auth::codex_file::write_private_atomic;
use crate::config::{Env, home};

/// Whether `install` started the gateway now, or left it for the next login.
pub(super) enum Started {
    Now,
    Later,
}

pub(super) fn install(target: Target, launch: &Launch, env: &dyn Env) -> anyhow::Result<Started> {
    match target {
        Target::Systemd => systemd_install(launch, env),
        Target::Launchd => launchd_install(launch, env),
        Target::Task => task_install(launch, env),
    }
}

pub(super) fn uninstall(target: Target, env: &dyn Env) -> anyhow::Result<()> {
    match target {
        Target::Systemd => systemd_uninstall(env),
        Target::Launchd => launchd_uninstall(env),
        Target::Task => task_uninstall(),
    }
}

/// Exit 0 when installed, 3 when not (as `status` says "not running").
pub(super) fn status(target: Target, env: &dyn Env) -> anyhow::Result<ExitCode> {
    match target {
        Target::Systemd => systemd_status(env),
        Target::Launchd => launchd_status(env),
        Target::Task => task_status(),
    }
}

/// Whether an earlier install left its unit, agent or task.
pub(super) fn installed(target: Target, env: &dyn Env) -> bool {
    match target {
        Target::Systemd => systemd_file(env).exists(),
        Target::Launchd => launchd_file(env).exists(),
        Target::Task => schtasks(&["/Query", "/TN", TASK_NAME]).is_ok(),
    }
}

/// Where a gateway started by the service writes its log, for a message that sends the user there.
pub(super) fn log_hint(target: Target, launch: &Launch) -> String {
    match target {
        Target::Systemd => "journalctl --user -u codex-gateway".into(),
        Target::Launchd | Target::Task => {
            let file = launch.args.iter().skip_while(|a| *a != "--log-file").nth(1);
            file.cloned().unwrap_or_else(|| "its log file".into())
        }
    }
}

fn not_installed(what: &str) -> anyhow::Result<ExitCode> {
    say!("codex-gateway service: not installed ({what})");
    Ok(ExitCode::from(3))
}

/// The file a new unit or agent replaces: "wrote" or "replaced", so a second install says what it did.
fn write(file: &Path, text: &str) -> anyhow::Result<()> {
    let verb = if file.exists() { "replaced" } else { "wrote" };
    // 0600: it may hold a secret the user passed (`--api-key`); the service manager reads it as this user.
    write_private_atomic(file, text.as_bytes())?;
    say!("{verb} {}", file.display());
    Ok(())
}

fn remove(file: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(file) {
        Ok(()) => {
            say!("removed {}", file.display());
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", file.display())),
    }
}

/// Run a command; its stdout on success, else an error with what it printed.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| format!("cannot run {program}"))?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    match out.status.success() {
        true => Ok(text(&out.stdout)),
        false => {
            bail!("`{program} {}` failed ({}): {}{}", args.join(" "), out.status, text(&out.stderr), text(&out.stdout))
        }
    }
}

// ---- systemd (Linux) ----

/// `$XDG_CONFIG_HOME/systemd/user/codex-gateway.service`, `~/.config/...` without it: where a user manager looks.
fn systemd_file(env: &dyn Env) -> PathBuf {
    env.get("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home(env).join(".config"))
        .join("systemd/user")
        .join(SYSTEMD_UNIT)
}

fn systemctl(args: &[&str]) -> anyhow::Result<String> {
    run("systemctl", &[&["--user"], args].concat())
}

/// Whether this user's systemd manager answers (a login session, or lingering), else why not.
fn user_manager() -> Result<(), String> {
    match systemctl(&["show-environment"]) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{e:#}")),
    }
}

fn systemd_install(launch: &Launch, env: &dyn Env) -> anyhow::Result<Started> {
    let file = systemd_file(env);
    write(&file, &render::systemd_unit(launch))?;
    let enable = format!("systemctl --user daemon-reload && systemctl --user enable --now {SYSTEMD_UNIT}");
    let linger = "loginctl enable-linger $USER";
    if let Err(why) = user_manager() {
        say!("No systemd user manager answers here ({why}), so the unit is written but not started.");
        say!("In a login session, run: {enable}");
        say!("On a server that should run it without anyone logged in, first: {linger}");
        return Ok(Started::Later);
    }
    systemctl(&["daemon-reload"])?;
    systemctl(&["enable", SYSTEMD_UNIT]).with_context(|| {
        format!("the user manager did not take {} (does it read its units from another directory?)", file.display())
    })?;
    // restart rather than start: a unit already running from an earlier install takes the new command line.
    systemctl(&["restart", SYSTEMD_UNIT])?;
    say!("enabled (starts at login) and started: `systemctl --user status codex-gateway`");
    say!("log: journalctl --user -u codex-gateway");
    let user = env.get("USER").unwrap_or_default();
    if !PathBuf::from("/var/lib/systemd/linger").join(&user).exists() {
        say!("It stops when your last session ends; to run it from boot without a login: {linger}");
    }
    Ok(Started::Now)
}

fn systemd_uninstall(env: &dyn Env) -> anyhow::Result<()> {
    let file = systemd_file(env);
    let manager = user_manager();
    if manager.is_ok() && file.exists() {
        systemctl(&["disable", "--now", SYSTEMD_UNIT])?;
        say!("stopped and disabled {SYSTEMD_UNIT}");
    }
    if !remove(&file)? {
        say!("codex-gateway service: not installed ({} absent)", file.display());
        return Ok(());
    }
    if manager.is_ok() {
        systemctl(&["daemon-reload"])?;
        // A unit that had failed stays listed as failed until this.
        let _ = systemctl(&["reset-failed", SYSTEMD_UNIT]);
    }
    Ok(())
}

fn systemd_status(env: &dyn Env) -> anyhow::Result<ExitCode> {
    let file = systemd_file(env);
    let Ok(text) = std::fs::read_to_string(&file) else { return not_installed(&format!("{} absent", file.display())) };
    say!("codex-gateway service: installed (systemd user unit)");
    say!("file:     {}", file.display());
    if let Some(exec) = text.lines().find_map(|l| l.strip_prefix("ExecStart=")) {
        say!("command:  {exec}");
    }
    match user_manager() {
        Ok(()) => {
            // Both print their answer (`disabled`, `inactive`, `failed`) with a non-zero exit.
            let ask = |what: &str| {
                let out = Command::new("systemctl").args(["--user", what, SYSTEMD_UNIT]).output();
                out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
            };
            say!("state:    {}, {}", ask("is-enabled"), ask("is-active"));
        }
        Err(why) => say!("state:    unknown, no systemd user manager answers ({why})"),
    }
    Ok(ExitCode::SUCCESS)
}

// ---- launchd (macOS) ----

fn launchd_file(env: &dyn Env) -> PathBuf {
    home(env).join("Library/LaunchAgents").join(format!("{LAUNCHD_LABEL}.plist"))
}

/// The user's GUI domain, where login agents run.
fn gui_domain() -> String {
    #[cfg(unix)]
    // SAFETY: getuid(2) takes nothing and cannot fail.
    let uid = unsafe { libc::getuid() };
    #[cfg(not(unix))]
    let uid = 0;
    format!("gui/{uid}")
}

fn launchd_install(launch: &Launch, env: &dyn Env) -> anyhow::Result<Started> {
    let file = launchd_file(env);
    if let Some(dir) = launch.output.as_deref().and_then(|o| Path::new(o).parent()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write(&file, &render::launchd_plist(launch))?;
    let domain = gui_domain();
    // An agent loaded by an earlier install is unloaded first, so the new file is the one that runs.
    let _ = run("launchctl", &["bootout", &format!("{domain}/{LAUNCHD_LABEL}")]);
    let path = file.to_string_lossy();
    // bootout returns before the old agent is gone; bootstrap refuses (error 5) until it is.
    let mut tries = 0;
    let loaded = loop {
        match run("launchctl", &["bootstrap", &domain, &path]) {
            Err(_) if tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            result => break result,
        }
    };
    match loaded {
        Ok(_) => {
            say!("loaded into launchd (starts at login) and started: `launchctl print {domain}/{LAUNCHD_LABEL}`");
            Ok(Started::Now)
        }
        // Over SSH without a graphical login there is no GUI domain: the agent loads at the next login.
        Err(e) => {
            say!("Not started now ({e:#}); it starts at your next login, or run: launchctl bootstrap {domain} {path}");
            Ok(Started::Later)
        }
    }
}

fn launchd_uninstall(env: &dyn Env) -> anyhow::Result<()> {
    let file = launchd_file(env);
    // Not loaded (already stopped, or no GUI session) is fine: the file is what makes it start at login.
    if run("launchctl", &["bootout", &format!("{}/{LAUNCHD_LABEL}", gui_domain())]).is_ok() {
        say!("stopped and unloaded {LAUNCHD_LABEL}");
    }
    if !remove(&file)? {
        say!("codex-gateway service: not installed ({} absent)", file.display());
    }
    Ok(())
}

fn launchd_status(env: &dyn Env) -> anyhow::Result<ExitCode> {
    let file = launchd_file(env);
    if !file.exists() {
        return not_installed(&format!("{} absent", file.display()));
    }
    say!("codex-gateway service: installed (launchd agent {LAUNCHD_LABEL})");
    say!("file:     {}", file.display());
    match run("launchctl", &["print", &format!("{}/{LAUNCHD_LABEL}", gui_domain())]) {
        Ok(out) => {
            let field = |name: &str| out.lines().find_map(|l| l.trim().strip_prefix(name)).map(str::to_owned);
            let state = field("state = ").unwrap_or_else(|| "loaded".into());
            say!("state:    {state}{}", field("pid = ").map(|p| format!(", pid {p}")).unwrap_or_default());
        }
        Err(_) => say!("state:    not loaded (it loads at the next login)"),
    }
    Ok(ExitCode::SUCCESS)
}

// ---- Task Scheduler (Windows) ----

fn schtasks(args: &[&str]) -> anyhow::Result<String> {
    run("schtasks", args)
}

fn task_install(launch: &Launch, env: &dyn Env) -> anyhow::Result<Started> {
    let user = match (env.get("USERDOMAIN"), env.get("USERNAME")) {
        (Some(domain), Some(name)) => Some(format!(r"{domain}\{name}")),
        (None, name) => name,
        (Some(_), None) => None,
    };
    let xml = render::task_xml(launch, user.as_deref());
    // schtasks reads the file in the encoding its declaration names, UTF-16, with the byte-order mark.
    let bytes: Vec<u8> = [0xFF, 0xFE].into_iter().chain(xml.encode_utf16().flat_map(u16::to_le_bytes)).collect();
    let file = std::env::temp_dir().join(format!("codex-gateway-task-{}.xml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, bytes).with_context(|| format!("cannot write {}", file.display()))?;
    let created = schtasks(&["/Create", "/TN", TASK_NAME, "/XML", &file.to_string_lossy(), "/F"]);
    let _ = std::fs::remove_file(&file);
    created?;
    say!("created the scheduled task {TASK_NAME} (runs at your logon)");
    // A task still running from an earlier install would ignore /Run (one instance at a time).
    let _ = schtasks(&["/End", "/TN", TASK_NAME]);
    schtasks(&["/Run", "/TN", TASK_NAME])?;
    say!("started: `schtasks /Query /TN {TASK_NAME} /V /FO LIST`");
    Ok(Started::Now)
}

fn task_uninstall() -> anyhow::Result<()> {
    if schtasks(&["/Query", "/TN", TASK_NAME]).is_err() {
        say!("codex-gateway service: not installed (no scheduled task {TASK_NAME})");
        return Ok(());
    }
    let _ = schtasks(&["/End", "/TN", TASK_NAME]);
    schtasks(&["/Delete", "/TN", TASK_NAME, "/F"])?;
    say!("stopped and deleted the scheduled task {TASK_NAME}");
    Ok(())
}

fn task_status() -> anyhow::Result<ExitCode> {
    let Ok(out) = schtasks(&["/Query", "/TN", TASK_NAME, "/V", "/FO", "LIST"]) else {
        return not_installed(&format!("no scheduled task {TASK_NAME}"));
    };
    say!("codex-gateway service: installed (scheduled task {TASK_NAME}, at logon)");
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        say!("  {}", line.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
