//! The three jobs: `run` (load), `disconnect` (upstream close after a client drop), `coldstart`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use http_body_util::BodyExt;
use serde::Serialize;
use tokio::io::AsyncBufReadExt;
use tokio::sync::Semaphore;

use crate::dialect::{Dialect, Scanner, request_spec};
use crate::procfs::{Watch, status_kb};
use crate::stats::{Collected, Dist, FakeConnections, Report, TailWindows};
use crate::target::{Conn, RequestSpec, Target, get, get_once, timed_request};
use crate::{ColdstartArgs, DisconnectArgs, RunArgs, WaitArgs};

/// Print the report and write it to `out` when given.
pub fn emit<T: Serialize>(report: &T, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    println!("{text}");
    if let Some(path) = out {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// When workers stop taking new requests.
#[derive(Clone)]
enum Stop {
    At(Instant),
    /// Requests left to start, shared by all workers.
    Count(Arc<AtomicUsize>),
}

impl Stop {
    /// Claim the next request, or None when the phase is over.
    fn claim(&self) -> bool {
        match self {
            Stop::At(t) => Instant::now() < *t,
            Stop::Count(left) => left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok(),
        }
    }
}

/// Everything a worker needs, shared.
struct Load {
    spec: RequestSpec,
    dialect: Dialect,
    stream: bool,
    timeout: Duration,
    connect_gate: Semaphore,
    /// Workers started this many a second (`--ramp`), the first request of each waiting its turn.
    ramp: Option<f64>,
}

/// One connection sending requests back to back until `stop`; returns the connection for the next phase.
async fn worker(load: Arc<Load>, mut conn: Option<Conn>, stop: Stop, index: usize) -> (Option<Conn>, Collected) {
    let mut col = Collected::default();
    if let Some(rate) = load.ramp.filter(|r| *r > 0.0)
        && conn.is_none()
    {
        tokio::time::sleep(Duration::from_secs_f64(index as f64 / rate)).await;
    }
    while stop.claim() {
        let reusable = match conn.as_mut() {
            Some(c) => c.ready().await,
            None => false,
        };
        if !reusable {
            let opened = match load.connect_gate.acquire().await {
                Ok(_permit) => Conn::open(load.spec.target.addr).await,
                Err(e) => Err(anyhow!("connect gate closed: {e}")),
            };
            match opened {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    col.error(&e);
                    conn = None;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let scanner = Scanner::new(load.dialect, load.stream);
        match tokio::time::timeout(load.timeout, timed_request(c, &load.spec, scanner)).await {
            Ok(Ok(sample)) => col.samples.push(sample),
            Ok(Err(e)) => {
                col.error(&e);
                conn = None;
            }
            Err(_) => {
                col.error(&anyhow!("request timed out after {:?}", load.timeout));
                conn = None;
            }
        }
    }
    (conn, col)
}

/// Run all workers until `stop`; returns their connections, what they collected and the phase's length.
async fn phase(
    load: &Arc<Load>,
    conns: Vec<Option<Conn>>,
    stop: Stop,
) -> anyhow::Result<(Vec<Option<Conn>>, Collected, Duration)> {
    let started = Instant::now();
    let tasks: Vec<_> =
        conns.into_iter().enumerate().map(|(i, c)| tokio::spawn(worker(load.clone(), c, stop.clone(), i))).collect();
    let mut all = Collected::default();
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (conn, col) = t.await.context("a worker failed")?;
        back.push(conn);
        all.merge(col);
    }
    Ok((back, all, started.elapsed()))
}

async fn fake_stats(conn: &mut Conn, target: &Target) -> anyhow::Result<serde_json::Value> {
    let (status, body) = get(conn, target).await?;
    if status != 200 {
        bail!("{} answered HTTP {status}", target.path);
    }
    Ok(serde_json::from_slice(&body)?)
}

pub async fn run(a: RunArgs) -> anyhow::Result<()> {
    let (spec, dialect) = request_spec(&a.req)?;
    let mut watches = a.watch.iter().map(|w| Watch::parse(w)).collect::<anyhow::Result<Vec<_>>>()?;
    let load = Arc::new(Load {
        spec,
        dialect,
        stream: a.req.stream,
        timeout: Duration::from_secs_f64(a.request_timeout),
        connect_gate: Semaphore::new(a.connect_burst.max(1)),
        ramp: a.ramp,
    });
    let mut conns: Vec<Option<Conn>> = (0..a.concurrency.max(1)).map(|_| None).collect();
    if a.warmup > 0.0 {
        let stop = Stop::At(Instant::now() + Duration::from_secs_f64(a.warmup));
        let (back, col, _) = phase(&load, conns, stop).await?;
        conns = back;
        if col.samples.is_empty() && col.errors > 0 {
            eprintln!("loadgen: warm-up had only errors: {:?}", col.error_samples);
        }
    }
    let mut fake = match &a.fake_url {
        Some(u) => {
            let t = Target::parse(u)?.with_path("/_fake/stats");
            let mut c = Conn::open(t.addr).await?;
            let before = fake_stats(&mut c, &t).await?["connections_accepted"].as_u64().unwrap_or(0);
            Some((t, c, before))
        }
        None => None,
    };
    let stops: Vec<_> = watches.iter_mut().map(Watch::start).collect();
    let stop = match a.requests {
        Some(n) => Stop::Count(Arc::new(AtomicUsize::new(n))),
        None => Stop::At(Instant::now() + Duration::from_secs_f64(a.duration)),
    };
    let measured_from = Instant::now();
    let (conns, col, elapsed) = phase(&load, conns, stop).await?;
    if let Some(path) = &a.samples {
        col.write_csv(path, measured_from)?;
    }
    let ok = col.samples.len() as u64;
    let procs = watches.iter().map(|w| (w.name.clone(), w.finish(elapsed, ok))).collect();
    drop(stops);
    drop(conns);
    let fake_connections = match &mut fake {
        Some((t, c, before)) => {
            let after = fake_stats(c, t).await?["connections_accepted"].as_u64().unwrap_or(0);
            let opened = after.saturating_sub(*before);
            Some(FakeConnections { opened, per_1000_requests: opened as f64 * 1000.0 / ok.max(1) as f64 })
        }
        None => None,
    };
    let (ttfb_ms, ttft_ms, total_ms) = col.timings();
    let events: u64 = col.samples.iter().map(|s| s.events).sum();
    let bytes: u64 = col.samples.iter().map(|s| s.bytes).sum();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let report = Report {
        label: a.label,
        url: a.req.url,
        dialect: a.req.dialect,
        stream: a.req.stream,
        concurrency: a.concurrency,
        requests_ok: ok,
        errors: col.errors,
        error_samples: col.error_samples.clone(),
        elapsed_s: secs,
        req_per_s: ok as f64 / secs,
        events_per_s: events as f64 / secs,
        events_per_request: events as f64 / ok.max(1) as f64,
        bytes_per_request: bytes as f64 / ok.max(1) as f64,
        ttfb_ms,
        ttft_ms,
        total_ms,
        tail_ratio: if total_ms.p50 > 0.0 { total_ms.p99 / total_ms.p50 } else { 0.0 },
        tail_windows: TailWindows::of(
            &col.samples.iter().map(|s| (s.sent.saturating_duration_since(measured_from), s.total)).collect::<Vec<_>>(),
        ),
        procs,
        fake_connections,
    };
    eprintln!(
        "loadgen {}: {} ok, {} errors, {:.0} req/s, total p50 {:.2} ms p99 {:.2} ms",
        report.label, report.requests_ok, report.errors, report.req_per_s, total_ms.p50, total_ms.p99
    );
    emit(&report, a.out.as_deref())
}

#[derive(Debug, Serialize)]
struct DisconnectReport {
    label: String,
    url: String,
    trials: usize,
    limit_ms: f64,
    /// Trials whose upstream stream closed within the limit.
    passed: usize,
    /// Milliseconds from the client's drop to the fake seeing its stream go away; null = not seen in 3 s.
    close_ms: Vec<Option<f64>>,
    dist_ms: Dist,
    errors: Vec<String>,
}

/// Read a streaming answer until its first content token, within `wait`.
async fn read_to_first_token(
    conn: &mut Conn,
    spec: &RequestSpec,
    dialect: Dialect,
    wait: Duration,
) -> anyhow::Result<()> {
    let work = async {
        let resp = conn.send(spec.build()?).await?;
        if !resp.status().is_success() {
            bail!("HTTP {}", resp.status().as_u16());
        }
        let mut body = resp.into_body();
        let mut scanner = Scanner::new(dialect, true);
        let start = Instant::now();
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                scanner.feed(data, start);
            }
            if scanner.saw_content() {
                return Ok(());
            }
        }
        bail!("the stream ended before any content")
    };
    tokio::time::timeout(wait, work).await.map_err(|_| anyhow!("no content token within {wait:?}"))?
}

pub async fn disconnect(a: DisconnectArgs) -> anyhow::Result<()> {
    let (spec, dialect) = request_spec(&a.req)?;
    if !a.req.stream {
        bail!("disconnect trials need --stream true");
    }
    let stats_target = Target::parse(&a.fake_url)?.with_path("/_fake/stats");
    let mut stats_conn = Conn::open(stats_target.addr).await?;
    let mut close_ms = Vec::with_capacity(a.trials);
    let mut errors = Vec::new();
    for trial in 0..a.trials {
        let before = fake_stats(&mut stats_conn, &stats_target).await?["streams_dropped"].as_u64().unwrap_or(0);
        let mut conn = Conn::open(spec.target.addr).await?;
        if let Err(e) = read_to_first_token(&mut conn, &spec, dialect, Duration::from_secs(10)).await {
            errors.push(format!("trial {trial}: {e:#}"));
            close_ms.push(None);
            continue;
        }
        let dropped_at = unix_us();
        drop(conn);
        let mut seen = None;
        // Poll for up to ~3 s.
        for _ in 0..1500 {
            let s = fake_stats(&mut stats_conn, &stats_target).await?;
            if s["streams_dropped"].as_u64().unwrap_or(0) > before {
                seen = s["dropped_at_unix_us"].as_array().and_then(|v| v.last()).and_then(|v| v.as_u64());
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        close_ms.push(seen.map(|t| (t as f64 - dropped_at as f64) / 1000.0));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen: Vec<f64> = close_ms.iter().flatten().copied().collect();
    let report = DisconnectReport {
        label: a.label,
        url: a.req.url,
        trials: a.trials,
        limit_ms: a.limit_ms,
        passed: seen.iter().filter(|&&ms| ms <= a.limit_ms).count(),
        dist_ms: Dist::of(seen),
        close_ms,
        errors,
    };
    eprintln!("loadgen disconnect {}: {}/{} within {} ms", report.label, report.passed, report.trials, a.limit_ms);
    emit(&report, a.out.as_deref())
}

#[derive(Debug, Serialize)]
struct ColdstartReport {
    command: Vec<String>,
    /// Milliseconds from spawn until the "listening" line.
    listening_ms: Dist,
    /// Milliseconds from spawn until `/health` answered 200.
    ready_ms: Dist,
    /// RSS right after `/health` first answered, KiB.
    rss_at_ready_kb: Vec<u64>,
}

pub async fn coldstart(a: ColdstartArgs) -> anyhow::Result<()> {
    let wait = Duration::from_secs_f64(a.timeout);
    let (program, args) = a.command.split_first().context("no command")?;
    let mut listening = Vec::new();
    let mut ready = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..a.trials {
        let start = Instant::now();
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let pid = child.id().context("the child has no pid")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let url = tokio::time::timeout(wait, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(i) = line.find("listening on http://") {
                    return Ok(line[i + "listening on ".len()..].trim().to_string());
                }
            }
            bail!("the server exited before saying where it listens")
        })
        .await
        .map_err(|_| anyhow!("no `listening on` line within {wait:?}"))??;
        listening.push(start.elapsed().as_secs_f64() * 1000.0);
        let health = Target::parse(&format!("{url}/health"))?;
        let deadline = start + wait;
        loop {
            if matches!(get_once(&health).await, Ok(200)) {
                break;
            }
            if Instant::now() > deadline {
                bail!("/health did not answer within {wait:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        ready.push(start.elapsed().as_secs_f64() * 1000.0);
        rss.push(status_kb(pid, "VmRSS").unwrap_or(0));
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
        drop(lines);
    }
    let report = ColdstartReport {
        command: a.command.clone(),
        listening_ms: Dist::of(listening),
        ready_ms: Dist::of(ready),
        rss_at_ready_kb: rss,
    };
    eprintln!("loadgen coldstart: ready p50 {:.1} ms", report.ready_ms.p50);
    emit(&report, a.out.as_deref())
}

pub async fn wait(a: WaitArgs) -> anyhow::Result<()> {
    let target = Target::parse(&a.url)?;
    let start = Instant::now();
    let limit = Duration::from_secs_f64(a.timeout);
    loop {
        if matches!(get_once(&target).await, Ok(200)) {
            println!("{:.1}", start.elapsed().as_secs_f64() * 1000.0);
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("{} did not answer 200 within {limit:?}", a.url);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
