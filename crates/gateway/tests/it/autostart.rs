//! `service install` / `status` / `uninstall` with the real binary on Linux: the systemd user unit it writes
//! (the binary's absolute path, the options, quoting, the secret only when passed), the binaries and situations it
//! refuses, and, where a user manager answers, the gateway that unit starts.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const UNIT: &str = "codex-gateway.service";

/// A home and a config directory of their own: `service install` writes the unit under `config/systemd/user`.
struct Home {
    dir: PathBuf,
}

impl Home {
    fn new() -> Home {
        let dir = std::env::temp_dir().join(format!("cgw-autostart-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("home")).unwrap_or_else(|e| panic!("{e}"));
        Home { dir }
    }

    fn unit(&self) -> PathBuf {
        self.dir.join("config/systemd/user").join(UNIT)
    }

    /// `BINARY ARGS` with this home, no user manager within reach (no bus, no runtime directory: the test must
    /// not touch the real one) and none of the gateway's variables but `env`.
    fn run(&self, binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env("HOME", self.dir.join("home"))
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("PATH", "/usr/bin:/bin")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env("CODEX_HOME", self.dir.join("no-codex-home"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CODEX_GATEWAY_")) {
            cmd.env_remove(k);
        }
        cmd.envs(env.iter().copied()).output().unwrap_or_else(|e| panic!("run {args:?}: {e}"))
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn gateway() -> PathBuf {
    std::fs::canonicalize(env!("CARGO_BIN_EXE_codex-gateway")).unwrap_or_else(|e| panic!("{e}"))
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `--force` only where the build itself lies in the temp directory (a CI's target dir), which install refuses.
fn force_if_built_in_temp() -> Option<&'static str> {
    let temp = std::fs::canonicalize(std::env::temp_dir()).unwrap_or_else(|_| std::env::temp_dir());
    gateway().starts_with(temp).then_some("--force")
}

#[test]
fn install_writes_a_user_unit_that_status_reports_and_uninstall_removes() {
    let home = Home::new();
    // A space and a `%` in the data directory: systemd needs the quotes and `%%`.
    let data = home.dir.join("my data %i");
    let data_arg = data.to_string_lossy().into_owned();
    // A port nothing listens on (install refuses one where something answers).
    let free = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port().to_string());
    let port = free.unwrap_or_else(|e| panic!("{e}"));
    let mut args = vec!["--data-dir", &data_arg, "service", "install", "--port", &port, "--api-key", "sk-it-$1"];
    args.extend(force_if_built_in_temp());
    let env = [("CODEX_GATEWAY_ADMIN_KEY", "it-admin-secret")];
    let out = home.run(&gateway(), &args, &env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "install failed: {stdout}{stderr}");

    let unit =
        std::fs::read_to_string(home.unit()).unwrap_or_else(|e| panic!("no unit at {}: {e}", home.unit().display()));
    let exec =
        format!("ExecStart={} serve --data-dir \"{}\" --port {port}", gateway().display(), data_arg.replace('%', "%%"));
    assert!(unit.lines().any(|l| l == exec), "expected `{exec}` in:\n{unit}");
    for line in [
        "LimitNOFILE=65536",
        "Restart=on-failure",
        "WantedBy=default.target",
        "Environment=\"CODEX_GATEWAY_API_KEY=sk-it-$1\"",
    ] {
        assert!(unit.lines().any(|l| l == line), "expected `{line}` in:\n{unit}");
    }
    assert!(!unit.contains("it-admin-secret"), "a key from the environment was written into the unit");
    assert!(!unit.contains("--api-key"), "the key on the command line");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(home.unit()).map(|m| m.permissions()).unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(mode & 0o777, 0o600, "the unit holds a key");
    // No user manager is reachable here: the file is written and the output says what to run.
    assert!(
        stdout.contains("systemctl --user daemon-reload && systemctl --user enable --now codex-gateway.service"),
        "{stdout}"
    );
    assert!(stdout.contains("loginctl enable-linger"), "{stdout}");
    assert!(stdout.contains("CODEX_GATEWAY_ADMIN_KEY"), "the variable left behind is named: {stdout}");
    verify_with_systemd(&home.unit());

    let out = home.run(&gateway(), &["service", "status"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "status: {stdout}{stderr}");
    assert!(stdout.contains("installed (systemd user unit)"), "{stdout}");
    assert!(stdout.contains(&home.unit().display().to_string()), "{stdout}");
    assert!(stdout.contains(&format!("command:  {} serve", gateway().display())), "{stdout}");

    let out = home.run(&gateway(), &["service", "uninstall"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "uninstall: {stdout}{stderr}");
    assert!(!home.unit().exists(), "the unit is still there");
    assert!(stdout.contains(&format!("removed {}", home.unit().display())), "{stdout}");

    let out = home.run(&gateway(), &["service", "status"], &[]);
    assert_eq!(out.status.code(), Some(3), "status of nothing installed: {:?}", text(&out));
    assert!(text(&out).0.contains("not installed"));
    let again = home.run(&gateway(), &["service", "uninstall"], &[]);
    assert!(again.status.success() && text(&again).0.contains("not installed"), "{:?}", text(&again));
}

/// systemd's own parser on the unit, where `systemd-analyze` is installed: a quoting mistake is a fatal error there.
fn verify_with_systemd(unit: &Path) {
    let out = match Command::new("systemd-analyze").arg("verify").arg(unit).output() {
        Ok(out) => out,
        Err(e) => return eprintln!("skipped systemd-analyze verify: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Complaints about the unit name its file; others (no manager can start in this sandbox) do not.
    assert!(out.status.success() || !stderr.contains(UNIT), "systemd rejects the unit: {stderr}");
    if !out.status.success() {
        eprintln!("skipped systemd-analyze verify, which could not run here: {stderr}");
    }
}

#[test]
fn a_binary_run_from_npxs_cache_is_refused_unless_forced() {
    let home = Home::new();
    // The same binary where `npx codex-gateway` would run it from; a hard link, since /proc/self/exe resolves a
    // symlink to the real file.
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("autostart-{}", uuid::Uuid::new_v4().simple()));
    let cache = root.join(".npm/_npx/5f1a/node_modules/@codex-gateway/linux-x64/bin");
    std::fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("{e}"));
    let npx = cache.join("codex-gateway");
    if std::fs::hard_link(gateway(), &npx).is_err() {
        std::fs::copy(gateway(), &npx).unwrap_or_else(|e| panic!("{e}"));
    }
    let data = home.dir.join("data").to_string_lossy().into_owned();

    let out = home.run(&npx, &["--data-dir", &data, "service", "install"], &[]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "installed from npx's cache: {stdout}");
    for words in ["npx's cache", "npm install -g codex-gateway", "pipx install codex-gateway", "--force"] {
        assert!(stderr.contains(words), "the refusal lacks `{words}`: {stderr}");
    }
    assert!(!home.unit().exists(), "a unit was written");

    let out = home.run(&npx, &["--data-dir", &data, "service", "install", "--force"], &[]);
    assert!(out.status.success(), "--force: {:?}", text(&out));
    let unit = std::fs::read_to_string(home.unit()).unwrap_or_default();
    assert!(unit.contains(&format!("ExecStart={} serve", npx.display())), "{unit}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn install_refuses_while_a_gateway_started_by_start_runs_on_the_data_directory() {
    let home = Home::new();
    let data = home.dir.join("data");
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("{e}"));
    // A process named like the gateway, in its pid file: what `start` leaves.
    let mut started = Command::new("sleep");
    std::os::unix::process::CommandExt::arg0(&mut started, "codex-gateway");
    let mut started = started.arg("60").spawn().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(data.join("gateway.pid"), format!("{}\n", started.id())).unwrap_or_else(|e| panic!("{e}"));

    let mut args = vec!["--data-dir", data.to_str().unwrap_or_default(), "service", "install"];
    args.extend(force_if_built_in_temp());
    let out = home.run(&gateway(), &args, &[]);
    let _ = started.kill();
    let _ = started.wait();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "installed beside a running gateway: {stdout}");
    assert!(stderr.contains(&format!("pid {}", started.id())) && stderr.contains("codex-gateway stop"), "{stderr}");
    assert!(!home.unit().exists());
}

/// Removes the unit from the real user manager even when the test fails half-way.
struct Installed {
    data: PathBuf,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new(gateway()).args(["service", "uninstall"]).output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[test]
fn the_installed_unit_starts_a_gateway_that_answers_when_a_user_manager_runs() {
    let manager = Command::new("systemctl").args(["--user", "show-environment"]).output();
    if let Some(why) = match &manager {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Some(e.to_string()),
    } {
        return eprintln!("skipped starting the unit: no systemd user manager answers here ({why})");
    }
    if Command::new("systemctl").args(["--user", "cat", UNIT]).output().is_ok_and(|o| o.status.success()) {
        return eprintln!("skipped starting the unit: this user has a {UNIT} already, which the test would replace");
    }
    // This user's own manager reads the unit from this user's config directory: the real one, with a data
    // directory and a port of the test's own.
    let port = 19300 + std::process::id() % 100;
    let installed =
        Installed { data: std::env::temp_dir().join(format!("cgw-autostart-{}", uuid::Uuid::new_v4().simple())) };
    let mut args = vec!["--data-dir".to_owned(), installed.data.to_string_lossy().into_owned()];
    args.extend(["service", "install", "--port", &port.to_string()].map(String::from));
    args.extend(force_if_built_in_temp().map(String::from));
    let out = Command::new(gateway())
        .args(&args)
        .env_remove("CODEX_GATEWAY_API_KEY")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "install: {stdout}{stderr}");
    assert!(stdout.contains(&format!("answers on http://127.0.0.1:{port}")), "{stdout}");
    assert!(health(port), "/health does not answer on {port}");

    let out = Command::new(gateway()).args(["service", "uninstall"]).output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "uninstall: {:?}", text(&out));
    let began = Instant::now();
    while health(port) && began.elapsed() < Duration::from_secs(80) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!health(port), "the gateway still answers after uninstall");
}

/// `GET /health` on loopback answers 200.
fn health(port: u32) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port as u16)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let mut reply = String::new();
    s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_ok()
        && s.read_to_string(&mut reply).is_ok()
        && reply.split_whitespace().nth(1) == Some("200")
}

#[test]
fn install_refuses_an_address_where_something_already_answers() {
    let home = Home::new();
    // A gateway run with `serve` in a terminal, as far as `/health` tells.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().take(4).flatten() {
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    let data = home.dir.join("data").to_string_lossy().into_owned();
    let port_arg = port.to_string();
    let mut args = vec!["--data-dir", &data, "service", "install", "--port", &port_arg];
    args.extend(force_if_built_in_temp());
    let out = home.run(&gateway(), &args, &[]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "installed onto a taken address: {stdout}");
    assert!(stderr.contains(&format!("already answers on http://127.0.0.1:{port}")), "{stderr}");
    assert!(!home.unit().exists());
}
