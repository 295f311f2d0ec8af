//! A real PostgreSQL server for the team tests (`team.rs`): the distribution's server (installed by
//! scripts/setup-test-deps), `initdb` in a temporary directory, a free loopback port, run as `nobody` when the
//! tests run as root (PostgreSQL refuses root). One server per run of the test binary, started by the first test
//! that asks; each test gets a fresh database on it ([`fresh_database`]). The server gets SIGQUIT (immediate
//! shutdown) when the test binary exits (the parent-death signal of the thread that keeps it), and the next run
//! removes what a finished run left in the temporary directory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The shared server: its port (its data, socket and log are in `$TMPDIR/cgw-pg-<pid>`).
pub struct Server {
    pub port: u16,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// The server, started on first use. Panics with the reason when PostgreSQL cannot run here (install it with
/// scripts/setup-test-deps).
pub fn server() -> &'static Server {
    match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(e) => panic!("cannot start PostgreSQL for the team tests: {e} (scripts/setup-test-deps installs it)"),
    }
}

/// A new, empty database on the shared server; its URL.
pub async fn fresh_database() -> String {
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    admin(&format!("CREATE DATABASE {name}")).await;
    format!("postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable", server().port)
}

/// Run `sql` as the superuser on the server's `postgres` database (create databases, cut one off).
pub async fn admin(sql: &str) {
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable", server().port);
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test server: {e}"));
    let conn = tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(client);
    let _ = conn.await;
}

/// The database name in a URL [`fresh_database`] made.
pub fn database_name(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap_or_default();
    path.split('?').next().unwrap_or_default().to_string()
}

fn start() -> Result<Server, String> {
    let bin = bin_dir().ok_or("no initdb found on PATH or in /usr/lib/postgresql/*/bin")?;
    sweep_stale_dirs();
    let dir = std::env::temp_dir().join(format!("cgw-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let run_as = if unsafe { libc::geteuid() } == 0 { Some(nobody()?) } else { None };
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    let mut initdb = Command::new(bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        .current_dir(&dir);
    as_user(&mut initdb, run_as);
    let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| format!("log file: {e}"))?;
    if let Some((uid, gid)) = run_as {
        let _ = std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid));
    }
    let mut postgres = Command::new(bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(&data)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
        .arg(&dir)
        .args(["-F", "-c", "max_connections=200", "-c", "log_min_messages=warning"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| format!("log file: {e}"))?)
        .stderr(log);
    as_user(&mut postgres, run_as);
    // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
    unsafe {
        postgres.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The parent-death signal follows the spawning thread, not the process: spawn from a thread that lives as
    // long as the test binary.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || match postgres.spawn() {
        Ok(mut child) => {
            let _ = tx.send(Ok(()));
            let _ = child.wait();
        }
        Err(e) => {
            let _ = tx.send(Err(format!("postgres: {e}")));
        }
    });
    rx.recv().map_err(|e| format!("postgres: {e}"))??;
    wait_ready(&data, &dir)?;
    Ok(Server { port })
}

fn as_user(cmd: &mut Command, run_as: Option<(u32, u32)>) {
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
    }
}

/// `nobody`'s uid and gid.
fn nobody() -> Result<(u32, u32), String> {
    let name = c"nobody";
    // SAFETY: getpwnam gets a NUL-terminated name; the result is read at once, before any other getpw* call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err("the tests run as root and there is no user `nobody` to run PostgreSQL as".into());
    }
    // SAFETY: non-null, points at libc's static passwd record.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("initdb"))
            .find(|p| p.is_file())
            .and_then(|p| std::fs::canonicalize(p).ok())
            .and_then(|p| p.parent().map(Path::to_path_buf))
    });
    on_path.or_else(|| {
        let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .filter(|(_, bin)| bin.join("initdb").is_file())
            .collect();
        dirs.sort();
        dirs.pop().map(|(_, bin)| bin)
    })
}

/// Remove the directories of earlier runs whose test binary is gone.
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("cgw-pg-")) else { continue };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| format!("addr: {e}"))
}

/// Until `postmaster.pid` says `ready` (its 8th line), or 60 s.
fn wait_ready(data: &Path, dir: &Path) -> Result<(), String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(pid) = std::fs::read_to_string(data.join("postmaster.pid"))
            && pid.lines().nth(7).is_some_and(|l| l.trim() == "ready")
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    Err(format!("the server did not become ready within 60 s: {log}"))
}
