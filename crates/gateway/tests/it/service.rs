//! `start` / `status` / `restart` / `stop` with the real binary: a background gateway that answers, keeps its
//! options across a restart, refuses a taken port without leaving a process behind, and lets an open stream
//! finish when stopped; the other commands find it where it runs; a command whose reader left ends quietly.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use fake_codex::{FakeCodex, FakeConfig};
use serde_json::json;

/// A data directory of its own, with one account; on drop, any gateway still running from it is killed, so a
/// failing test leaves no process behind.
pub(crate) struct Service {
    pub(crate) dir: PathBuf,
    pub(crate) fake: FakeCodex,
}

impl Service {
    pub(crate) async fn new(cfg: FakeConfig) -> Service {
        let fake = FakeCodex::start(cfg).await.unwrap_or_else(|e| panic!("{e}"));
        let dir = std::env::temp_dir().join(format!("cgw-service-{}", uuid::Uuid::new_v4().simple()));
        let store = codex_gateway::store::Store::open(&dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
        crate::harness::store_account(&fake, &store);
        Service { dir, fake }
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Run `codex-gateway --data-dir DIR/data ARGS` to its end.
    pub(crate) async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[]).await
    }

    /// The same with more environment variables (set last, so they win).
    pub(crate) async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_codex-gateway"))
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .env("HOME", &self.dir)
            .env("CODEX_HOME", self.dir.join("no-codex-home"))
            .env("CODEX_GATEWAY_UPSTREAM_BASE_URL", self.fake.codex_base_url())
            .env("CODEX_GATEWAY_CHATGPT_BASE_URL", self.fake.chatgpt_base_url())
            .env("CODEX_GATEWAY_AUTH_ISSUER", self.fake.issuer())
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            // Where `status` looks for a gateway it did not start: a port nothing listens on, so a gateway
            // running elsewhere on this machine is not mistaken for this test's.
            .env("CODEX_GATEWAY_PORT", "1")
            .env("RUST_LOG", "info")
            .env_remove("OPENAI_API_KEY")
            .env_remove("CODEX_GATEWAY_API_KEY")
            .env_remove("CODEX_GATEWAY_DATA_DIR")
            .env_remove("CODEX_GATEWAY_CONFIG")
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {args:?}: {e}"))
    }

    /// The processes whose command line names this test's data directory.
    pub(crate) fn processes(&self) -> Vec<i32> {
        let needle = self.data().to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')))
                    .unwrap_or(true);
                !zombie && String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(&needle)
            })
            .collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        for pid in self.processes() {
            // SAFETY: plain integers; the pid runs a gateway this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `codex-gateway started (pid N), listening on http://ADDR` -> (N, http://ADDR).
pub(crate) fn started(o: &Output) -> (i32, String) {
    let out = text(o);
    assert!(o.status.success(), "start failed: {out}");
    let line = out.lines().find(|l| l.contains("listening on")).unwrap_or_else(|| panic!("{out}"));
    let pid = line.split("(pid ").nth(1).and_then(|s| s.split(')').next()).and_then(|s| s.parse().ok());
    let base = line.rsplit(' ').next().unwrap_or_default().to_string();
    (pid.unwrap_or_else(|| panic!("{line}")), base)
}

pub(crate) fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_else(|| panic!("no {name} in:\n{out}"))
}

async fn chat(base: &str) -> reqwest::StatusCode {
    let body = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]});
    let http = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
    http.post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_status_request_restart_status_stop() {
    let svc = Service::new(FakeConfig::default()).await;
    let before = svc.run(&["status"]).await;
    assert_eq!(before.status.code(), Some(3), "not running yet: {}", text(&before));

    let (pid, base) = started(&svc.run(&["start", "--port", "0"]).await);
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!(svc.processes(), vec![pid], "one background process");
    for file in ["gateway.pid", "gateway.start.json", "gateway.log"] {
        assert!(svc.data().join(file).exists(), "{file}");
    }
    let again = svc.run(&["start", "--port", "0"]).await;
    assert!(!again.status.success() && text(&again).contains("already running"), "{}", text(&again));

    let status = svc.run(&["status"]).await;
    let out = text(&status);
    assert_eq!(status.status.code(), Some(0), "{out}");
    assert_eq!(field(&out, "pid:"), pid.to_string());
    assert_eq!(field(&out, "address:"), base);
    assert_eq!(field(&out, "version:"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field(&out, "accounts:"), "1 of 1 can serve");
    assert_eq!(field(&out, "open streams:"), "0");
    assert!(field(&out, "uptime:").ends_with('s'), "{out}");

    let quiet = svc.run(&["status", "--quiet"]).await;
    assert_eq!((quiet.status.code(), text(&quiet)), (Some(0), String::new()), "--quiet prints nothing");

    assert_eq!(chat(&base).await, 200);
    // The log file holds the gateway's lines (the access line of that request), not the terminal.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(svc.data().join("gateway.log")).unwrap_or_default().contains("/v1/chat/completions")
    {
        assert!(Instant::now() < deadline, "no access line in gateway.log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let restarted = svc.run(&["restart"]).await;
    let (pid2, base2) = started(&restarted);
    assert_ne!(pid2, pid, "a new process");
    assert_eq!(svc.processes(), vec![pid2], "the old process is gone");
    let out = text(&svc.run(&["status", "--verbose"]).await);
    assert_eq!(field(&out, "pid:"), pid2.to_string());
    assert!(out.contains("data dir:"), "verbose adds the configuration: {out}");
    assert_eq!(chat(&base2).await, 200);

    let stop = svc.run(&["stop"]).await;
    assert!(stop.status.success(), "{}", text(&stop));
    assert!(svc.processes().is_empty(), "stopped");
    assert!(!svc.data().join("gateway.pid").exists());
    let after = svc.run(&["status"]).await;
    assert_eq!(after.status.code(), Some(3), "{}", text(&after));
    assert_eq!(svc.run(&["status", "--quiet"]).await.status.code(), Some(3));
    let twice = svc.run(&["stop"]).await;
    assert!(twice.status.success() && text(&twice).contains("not running"), "{}", text(&twice));
}

/// A chat request with `key`; its status.
async fn chat_with(base: &str, key: &str) -> reqwest::StatusCode {
    let body = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]});
    let http = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
    let sent = http.post(format!("{base}/v1/chat/completions")).bearer_auth(key).json(&body).send().await;
    sent.map(|r| r.status()).unwrap_or_else(|e| panic!("{e}"))
}

/// A gateway started on another port than the configuration's (`start --port`) is the one `keys`, `connect` and
/// `reload` talk to: a key created or revoked from the command line applies to it at once, instead of being
/// written to the store behind its back (where the running gateway would keep serving a revoked key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_the_gateway_start_runs_on_its_own_port() {
    let svc = Service::new(FakeConfig::default()).await;
    let admin = [("CODEX_GATEWAY_ADMIN_KEY", "service-admin-key")];
    // The configuration says port 1 (`run_with`); the background gateway listens elsewhere.
    let (_, base) = started(&svc.run_with(&["start", "--port", "0"], &admin).await);

    let created = svc.run_with(&["keys", "create", "--name", "cli"], &admin).await;
    let out = text(&created);
    assert!(created.status.success(), "{out}");
    let (id, secret) = (field(&out, "id:").to_string(), field(&out, "secret:").to_string());
    assert_eq!(chat_with(&base, &secret).await, 200, "the new key is served without a restart");
    // A created key makes the gateway require keys, and `status` says so (it looked at `api_keys` only).
    let status = text(&svc.run_with(&["status", "--verbose"], &admin).await);
    assert!(status.contains("client keys:   required"), "{status}");
    // The usage report names what it groups by id: the key by its name, the account by its email (the ledger
    // writes its records within a second).
    let mut by_key = String::new();
    for _ in 0..50 {
        by_key = text(&svc.run_with(&["usage", "--by", "key"], &admin).await);
        if by_key.lines().any(|l| l.starts_with(&format!("{id} (cli)"))) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(by_key.lines().any(|l| l.starts_with(&format!("{id} (cli)"))), "{by_key}");
    let by_account = text(&svc.run_with(&["usage", "--by", "account"], &admin).await);
    assert!(by_account.lines().any(|l| l.starts_with("acc-") && l.contains("@")), "{by_account}");
    // Two keys that are not revoked never share a name (a name picks one key below).
    let twin = svc.run_with(&["keys", "create", "--name", "cli"], &admin).await;
    assert!(!twin.status.success() && text(&twin).contains(&format!("{id} is already named `cli`")), "{}", text(&twin));

    // Named by its name, which no other key has.
    let revoked = svc.run_with(&["keys", "revoke", "cli"], &admin).await;
    assert!(revoked.status.success() && text(&revoked).contains(&format!("revoked {id}")), "{}", text(&revoked));
    assert_eq!(chat_with(&base, &secret).await, 401, "the revoked key is refused at once");

    // With a created key in the store the gateway wants a key, so `connect` does not offer a keyless setting.
    let connect = text(&svc.run_with(&["connect", "codex"], &admin).await);
    assert!(connect.contains(&format!("base_url = \"{base}/v1\"")), "{connect}");
    assert!(connect.contains("CODEX_GATEWAY_API_KEY=<your client key>"), "{connect}");
    let keyless = svc.run_with(&["connect", "codex", "--write"], &admin).await;
    assert!(!keyless.status.success() && text(&keyless).contains("requires a client key"), "{}", text(&keyless));
    let reload = svc.run_with(&["reload"], &admin).await;
    assert!(reload.status.success() && text(&reload).contains("configuration reloaded"), "{}", text(&reload));
    // A login goes to the running gateway, which serves the account at once (not at its next store re-read).
    let login = text(&svc.run_with(&["login", "--device", "--label", "late"], &admin).await);
    let id = login.split("id ").nth(1).and_then(|s| s.split(',').next()).unwrap_or_else(|| panic!("{login}"));
    assert!(login.contains("The running gateway serves it now."), "{login}");
    let listed = text(&svc.run_with(&["accounts", "list", "--json"], &admin).await);
    assert!(listed.contains(&format!("\"{id}\"")) && listed.contains("\"late\""), "{id} not served at once: {listed}");
    // An account is named by its label as well as its id.
    let disabled = text(&svc.run_with(&["accounts", "disable", "late"], &admin).await);
    assert_eq!(disabled.trim(), format!("{id}: disabled"));
    // `doctor` finds it too, off the configured port, and says so.
    let doctor = text(&svc.run_with(&["doctor", "--offline"], &admin).await);
    let line = doctor.lines().find(|l| l.contains("started gateway")).unwrap_or_else(|| panic!("{doctor}"));
    assert!(line.starts_with("ok") && line.contains(&format!("answers at {base} (not the configured")), "{doctor}");

    // No second gateway on its store, and no refresh behind its back by a command it did not answer.
    let second = tokio::time::timeout(Duration::from_secs(20), svc.run_with(&["serve", "--port", "0"], &admin))
        .await
        .unwrap_or_else(|_| panic!("a second gateway served the same data directory"));
    assert!(
        !second.status.success() && text(&second).contains("already serves the data directory"),
        "{}",
        text(&second)
    );
    let unheard = svc.run_with(&["accounts", "refresh", id], &[("CODEX_GATEWAY_ADMIN_KEY", "not-the-admin-key")]).await;
    let said = text(&unheard);
    assert!(!unheard.status.success() && said.contains("serves this data directory but did not answer"), "{said}");

    assert!(svc.run(&["stop"]).await.status.success());
    let doctor = text(&svc.run_with(&["doctor", "--offline"], &admin).await);
    assert!(doctor.lines().any(|l| l.contains("started gateway: none")), "{doctor}");
    // A pid file whose process is gone (a crash) is a warning with its fix.
    std::fs::write(svc.data().join("gateway.pid"), "999999999\n").unwrap_or_else(|e| panic!("{e}"));
    let doctor = text(&svc.run_with(&["doctor", "--offline"], &admin).await);
    let line = doctor.lines().find(|l| l.contains("started gateway")).unwrap_or_else(|| panic!("{doctor}"));
    assert!(line.starts_with("warning") && line.contains("pid 999999999, which is gone"), "{doctor}");
}

/// A command whose reader has gone away (`codex-gateway status | head -0`) ends with the status SIGPIPE gives,
/// quietly, instead of panicking at its first line; the same for a generated script written in one piece.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let dir = std::env::temp_dir().join(format!("cgw-pipe-{}", uuid::Uuid::new_v4().simple()));
    for args in [&["status"][..], &["completions", "bash"][..]] {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) fills the two descriptors, each then owned exactly once below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        // SAFETY: both descriptors were just created and are not owned elsewhere.
        let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_codex-gateway"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(args)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("CODEX_GATEWAY_PORT", "1")
            .env_remove("CODEX_GATEWAY_CONFIG")
            .env_remove("CODEX_GATEWAY_DATA_DIR")
            .stdout(std::process::Stdio::from(writer))
            .output()
            .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_on_a_taken_port_fails_with_the_reason_and_leaves_no_process() {
    let svc = Service::new(FakeConfig::default()).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = taken.local_addr().map(|a| a.port()).unwrap_or_else(|e| panic!("{e}"));
    let o = svc.run(&["start", "--port", &port.to_string()]).await;
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("cannot listen on 127.0.0.1") && out.contains("in use"), "{out}");
    assert!(svc.processes().is_empty(), "no process left: {:?}", svc.processes());
    assert!(!svc.data().join("gateway.pid").exists());
    assert_eq!(svc.run(&["status"]).await.status.code(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_with_a_bad_config_fails_before_spawning() {
    let svc = Service::new(FakeConfig::default()).await;
    let bad = svc.dir.join("bad.toml");
    std::fs::write(&bad, "[server]\nno_such_key = 1\n").unwrap_or_else(|e| panic!("{e}"));
    let o = svc.run(&["--config", bad.to_str().unwrap_or_default(), "start", "--port", "0"]).await;
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no_such_key"), "{}", text(&o));
    assert!(svc.processes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_an_open_stream_lets_it_finish() {
    // 12 deltas 150 ms apart: the stream is still open well after the stop is sent.
    let svc = Service::new(FakeConfig { default_deltas: 12, default_delay_ms: 150, ..FakeConfig::default() }).await;
    let (pid, base) = started(&svc.run(&["start", "--port", "0"]).await);
    let http = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
    let body = json!({"model":"gpt-5.4","stream":true,"messages":[{"role":"user","content":"hi"}]});
    let mut resp =
        http.post(format!("{base}/v1/chat/completions")).json(&body).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 200);
    let mut got = resp.chunk().await.unwrap_or_default().map(|b| b.to_vec()).unwrap_or_default();
    let stopping = async {
        let o = svc.run(&["stop"]).await;
        (o, Instant::now())
    };
    let reading = async {
        while let Ok(Some(chunk)) = resp.chunk().await {
            got.extend_from_slice(&chunk);
        }
        Instant::now()
    };
    let ((stop, stopped_at), ended_at) = tokio::join!(stopping, reading);
    let stream = String::from_utf8_lossy(&got);
    assert!(stop.status.success(), "{}", text(&stop));
    assert!(stream.contains("\"finish_reason\":\"stop\"") && stream.trim_end().ends_with("data: [DONE]"), "{stream}");
    assert!(stopped_at >= ended_at, "stop returned only after the stream ended");
    assert!(!svc.processes().contains(&pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_with_an_unreadable_store_fails_with_the_reason_and_leaves_no_process() {
    let svc = Service::new(FakeConfig::default()).await;
    let db = svc.data().join("gateway.db");
    for ext in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(db.with_extension(ext));
    }
    std::fs::write(&db, vec![0x5a; 8192]).unwrap_or_else(|e| panic!("{e}"));
    let o = svc.run(&["start", "--port", "0"]).await;
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("cannot open database") && out.contains("not a database"), "{out}");
    assert!(svc.processes().is_empty(), "no process left");
    assert!(!svc.data().join("gateway.pid").exists());
}
