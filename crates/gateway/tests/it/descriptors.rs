//! The open files limit (issue 88, docs/operations.md "Open files"), with the real binary started under `prlimit`:
//! the gateway raises its soft limit to the hard one at start and reports it in `/admin/status`; and at a low hard
//! limit, with more concurrent streams than it allows, it neither spins nor logs each 100 ms retry, the streams in
//! flight finish whole, the connections that waited are served, and a new request succeeds afterwards.
//! Linux only (`/proc`, util-linux's `prlimit`).
#![cfg(target_os = "linux")]

use std::process::Stdio;
use std::time::{Duration, Instant};

use fake_codex::{FakeCodex, FakeConfig};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

struct Limited {
    child: tokio::process::Child,
    pid: u32,
    base: String,
    log: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether util-linux's `prlimit` is here (every Debian and Ubuntu has it).
fn have_prlimit() -> bool {
    std::process::Command::new("prlimit").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `codex-gateway serve` on port 0 under `prlimit --nofile=SOFT:HARD`, one account of `fake` in its store, its log
/// (stderr, at `log_level`) in a file. The account takes 200 requests at once (4 by default), so the descriptors,
/// not its queue, are what limits the streams.
async fn spawn_limited(fake: &FakeCodex, soft: u64, hard: u64, log_level: &str) -> Limited {
    let dir = std::env::temp_dir().join(format!("cgw-fd-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let config = dir.join("config.toml");
    let toml = "[routing]\nmax_concurrent_per_account = 200\nqueue_per_account = 200\n";
    std::fs::write(&config, toml).unwrap_or_else(|e| panic!("{e}"));
    let store = codex_gateway::store::Store::open(&dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    crate::harness::store_account(fake, &store);
    drop(store);
    let log = dir.join("gateway.log");
    let stderr = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
    let mut child = tokio::process::Command::new("prlimit")
        .arg(format!("--nofile={soft}:{hard}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_codex-gateway"))
        .args(["serve", "--port", "0"])
        .env("HOME", &dir)
        .env("CODEX_GATEWAY_CONFIG", &config)
        .env("CODEX_HOME", dir.join("no-codex-home"))
        .env("CODEX_GATEWAY_DATA_DIR", dir.join("data"))
        .env("CODEX_GATEWAY_UPSTREAM_BASE_URL", fake.codex_base_url())
        .env("CODEX_GATEWAY_CHATGPT_BASE_URL", fake.chatgpt_base_url())
        .env("CODEX_GATEWAY_AUTH_ISSUER", fake.issuer())
        .env("RUST_LOG", log_level)
        .env_remove("OPENAI_API_KEY")
        .env_remove("CODEX_GATEWAY_API_KEY")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn prlimit: {e}"));
    // prlimit sets its own limits and execs the command: the same process.
    let pid = child.id().unwrap_or_else(|| panic!("no pid"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let line = tokio::time::timeout(Duration::from_secs(20), tokio::io::BufReader::new(stdout).lines().next_line())
        .await
        .unwrap_or_else(|_| panic!("gateway did not start"))
        .unwrap_or_default()
        .unwrap_or_default();
    let base = line.rsplit(' ').next().unwrap_or_default().to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "unexpected first line: {line}");
    Limited { child, pid, base, log, dir }
}

/// "Max open files" of `/proc/<pid>/limits`: (soft, hard).
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_else(|e| panic!("{e}"));
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_else(|| panic!("{limits}"));
    let n: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(n.len(), 2, "{line}");
    (n[0], n[1])
}

/// The process's CPU time so far (user + system), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_else(|e| panic!("{e}"));
    // Fields after the command name (which may hold spaces) start at the state, field 3; utime and stime are 14, 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(15)).build().unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_with_a_low_soft_limit_raises_it_to_the_hard_one() {
    if !have_prlimit() {
        eprintln!("skipped: no prlimit");
        return;
    }
    let fake = FakeCodex::start(FakeConfig::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let gw = spawn_limited(&fake, 64, 256, "info").await;
    let (soft, hard) = open_files_limit(gw.pid);
    eprintln!("gateway open files limit: soft {soft}, hard {hard}; {} open", open_descriptors(gw.pid));
    assert_eq!((soft, hard), (256, 256), "the soft limit is raised to the hard one");
    let status: Value = http()
        .get(format!("{}/admin/status", gw.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let o = &status["open_files"];
    assert_eq!((o["soft"].as_u64(), o["hard"].as_u64()), (Some(256), Some(256)), "{status:#}");
    assert_eq!(o["upstream"], "web_socket", "the default transport: {status:#}");
    assert_eq!(o["descriptors_per_stream"], 2);
    let allowed = o["streams_allowed"].as_u64().unwrap_or_else(|| panic!("{status:#}"));
    assert_eq!(allowed, (256 - codex_gateway::descriptors::reserve(256)) / 2);
    let log = std::fs::read_to_string(&gw.log).unwrap_or_default();
    let said: Vec<&str> = log.lines().filter(|l| l.contains("open files")).collect();
    assert_eq!(said.len(), 1, "one line at start: {log}");
    assert!(
        said[0].contains("raised from 64 to 256") && said[0].contains(&format!("about {allowed} concurrent")),
        "{log}"
    );
    assert!(said[0].contains("WARN") && said[0].contains("ulimit"), "few streams: a warning with the fix: {log}");
}

/// How many paced streams at once, against a hard limit of [`HARD`]: about three times what it holds.
const STREAMS: usize = 100;
const HARD: u64 = 128;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_the_gateway_neither_spins_nor_floods_its_log_and_serves_every_stream() {
    if !have_prlimit() {
        eprintln!("skipped: no prlimit");
        return;
    }
    // Streams of 8 deltas 150 ms apart: about 1.2 s each.
    let cfg = FakeConfig { default_deltas: 8, default_delay_ms: 150, ..FakeConfig::default() };
    let fake = FakeCodex::start(cfg).await.unwrap_or_else(|e| panic!("{e}"));
    let gw = spawn_limited(&fake, HARD, HARD, "warn").await;
    let idle = open_descriptors(gw.pid);
    let http = http();
    let started = Instant::now();
    let mut streams = Vec::new();
    for i in 0..STREAMS {
        let (http, url) = (http.clone(), format!("{}/v1/chat/completions", gw.base));
        streams.push(tokio::spawn(async move {
            let body = json!({"model": "gpt-5.4", "stream": true, "messages": [{"role": "user", "content": format!("stream {i}")}]});
            let response = http.post(&url).json(&body).send().await.map_err(|e| format!("stream {i}: {e}"))?;
            let status = response.status().as_u16();
            let text = response.text().await.map_err(|e| format!("stream {i} cut: {e}"))?;
            Ok::<_, String>((status, text))
        }));
    }
    // At the limit: the CPU the gateway spends over 2 s (a loop retrying accept without a pause spins a core).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at_limit = open_descriptors(gw.pid);
    let cpu_before = cpu_time(gw.pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_time(gw.pid) - cpu_before;
    let (mut whole, mut errors) = (0, Vec::new());
    for s in streams {
        match s.await.unwrap_or_else(|e| panic!("{e}")) {
            Ok((200, text)) => {
                // Begun is finished: a stream that started reached its end.
                assert!(
                    text.contains("\"finish_reason\":\"stop\"") && text.trim_end().ends_with("data: [DONE]"),
                    "a stream cut short: {text}"
                );
                whole += 1;
            }
            Ok((status, text)) => errors.push(format!("{status}: {text}")),
            Err(e) => errors.push(e),
        }
    }
    let all_done = started.elapsed();
    let log = std::fs::read_to_string(&gw.log).unwrap_or_default();
    let accept_lines: Vec<&str> =
        log.lines().filter(|l| l.contains("accept") || l.contains("out of descriptors")).collect();
    let status: Value = http
        .get(format!("{}/admin/status", gw.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "hard limit {HARD}: {idle} descriptors idle, {at_limit} at the limit; {whole} of {STREAMS} streams whole, \
         {} failed, all done in {:.1} s; CPU at the limit {} ms over 2 s; accepts refused {}; {} log lines on accepts",
        errors.len(),
        all_done.as_secs_f64(),
        cpu.as_millis(),
        status["accepts_refused"],
        accept_lines.len(),
    );
    assert!(
        errors.is_empty(),
        "every stream served (those that waited, once descriptors freed up): {errors:#?}\n{log}"
    );
    let refused = &status["accepts_refused"];
    assert!(
        refused["limit"].as_u64().unwrap_or(0) + refused["descriptors"].as_u64().unwrap_or(0) > 0,
        "the test reached the limit: {status:#}\n{log}"
    );
    assert!(cpu < Duration::from_millis(700), "no spinning at the limit: {} ms of CPU in 2 s", cpu.as_millis());
    assert!(
        (1..=3).contains(&accept_lines.len()),
        "the log says why once per interval, not per 100 ms retry: {accept_lines:#?}"
    );
    // After the streams, descriptors are free again: a new request is served at once.
    let after = http
        .post(format!("{}/v1/chat/completions", gw.base))
        .json(&json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": "after"}]}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.status(), 200, "{}", after.text().await.unwrap_or_default());
}
