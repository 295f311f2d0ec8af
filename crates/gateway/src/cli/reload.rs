//! `codex-gateway reload`: make the running gateway read its configuration file again (app/reload.rs): one started
//! with `start` is signalled (SIGHUP) and its report read from `GET /admin/reload`; another is asked with `POST
//! /admin/reload`. Exit codes: 0 reloaded, 1 the file was refused (or no answer), 3 no gateway runs. Windows has
//! no SIGHUP: there every gateway is asked with `POST /admin/reload`.

use std::process::ExitCode;
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

#[cfg(unix)]
use anyhow::Context;
use anyhow::bail;
use serde::Deserialize;

#[cfg(unix)]
use super::service::signal;
use super::service::{Files, Reach, reach, running_pid};
use crate::config::{Config, Overrides, ProcessEnv};

/// How long to wait for the signalled gateway's report.
#[cfg(unix)]
const REPORT_WAIT: Duration = Duration::from_secs(10);

/// The part of `app::reload::Report` printed here.
#[derive(Deserialize, Debug)]
struct Report {
    // Compared only after a SIGHUP (unix), to tell the new report from the last one.
    #[cfg_attr(windows, allow(dead_code))]
    seq: u64,
    ok: bool,
    #[serde(default)]
    applied: Vec<String>,
    #[serde(default)]
    restart: Vec<String>,
    error: Option<String>,
}

pub(crate) async fn run(base: &Overrides) -> anyhow::Result<ExitCode> {
    // The file is checked here first, so a typo is shown at once (the gateway would refuse it the same way).
    let config = match Config::load(base, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            eprintln!("the running gateway keeps its configuration");
            return Ok(ExitCode::FAILURE);
        }
    };
    let files = Files::in_dir(&config.data_dir);
    let Reach { base: address, key } = reach(&config);
    let report = match running_pid(&files) {
        #[cfg(unix)]
        super::service::Running::Yes(pid) => {
            let before = call(reqwest::Method::GET, &address, key.as_deref()).await.ok().map(|r| r.seq);
            signal(pid, libc::SIGHUP).with_context(|| format!("cannot signal pid {pid}"))?;
            match before {
                Some(seq) => wait_for_report(&address, key.as_deref(), seq).await?,
                None => {
                    say!("sent SIGHUP to codex-gateway (pid {pid}); its log says what was applied");
                    return Ok(ExitCode::SUCCESS);
                }
            }
        }
        // Not started by `start` (or on Windows, any gateway): asked.
        _ => match asked(&address, key.as_deref()).await? {
            Some(r) => r,
            None => return Ok(ExitCode::from(3)),
        },
    };
    Ok(print(&report))
}

/// `POST /admin/reload`: its report, or none when nothing answers (said here).
async fn asked(address: &str, key: Option<&str>) -> anyhow::Result<Option<Report>> {
    match call(reqwest::Method::POST, address, key).await {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_connect) => {
            say!("codex-gateway is not running (nothing answers on {address})");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
async fn wait_for_report(address: &str, key: Option<&str>, before: u64) -> anyhow::Result<Report> {
    let began = Instant::now();
    loop {
        if let Ok(r) = call(reqwest::Method::GET, address, key).await
            && r.seq > before
        {
            return Ok(r);
        }
        if began.elapsed() > REPORT_WAIT {
            bail!("the gateway was signalled but reported no reload within {} s: see its log", REPORT_WAIT.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print(r: &Report) -> ExitCode {
    if let Some(e) = r.error.as_deref().filter(|_| !r.ok) {
        eprintln!("error: the config file was refused: {e}");
        eprintln!("the running gateway keeps its configuration");
        return ExitCode::FAILURE;
    }
    let list = |v: &[String]| if v.is_empty() { "-".to_string() } else { v.join(", ") };
    say!("configuration reloaded");
    say!("applied:       {}", list(&r.applied));
    say!("needs restart: {}", list(&r.restart));
    ExitCode::SUCCESS
}

/// `/admin/reload` with the admin credential: GET reads the last report, POST reloads.
async fn call(method: reqwest::Method, address: &str, key: Option<&str>) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(15)).build()?;
    let mut req = http.request(method, format!("{address}/admin/reload"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await?;
    let status = resp.status();
    // 422 carries a report too: the file was refused.
    if !(status.is_success() || status.as_u16() == 422) {
        bail!(
            "HTTP {} on /admin/reload{}",
            status.as_u16(),
            if matches!(status.as_u16(), 401 | 403) { ": set the admin key (CODEX_GATEWAY_ADMIN_KEY)" } else { "" }
        );
    }
    Ok(resp.json().await?)
}
