//! Reloading the configuration of a real background gateway (`start`): SIGHUP applies a new strategy and a key's
//! new limit while requests keep running (none fails); a broken file is refused (by `codex-gateway reload` and
//! by the gateway on SIGHUP) and the old configuration keeps serving; `[server] watch_config` picks up an edit.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fake_codex::{AccountSpec, FakeConfig};
use serde_json::{Value, json};

use crate::service::{Service, started, text};

const ADMIN: &str = "admin-secret-for-reload";
const TEAM: &str = "cgw_team_secret_for_reload";

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"))
}

/// A request in a conversation of its own (the same first message would keep one account by affinity).
fn body(stream: bool) -> Value {
    let text = format!("hi {}", uuid::Uuid::new_v4());
    json!({"model":"gpt-5.4","stream":stream,"messages":[{"role":"user","content":text}]})
}

async fn chat(base: &str, key: &str) -> u16 {
    let body = body(false);
    match http().post(format!("{base}/v1/chat/completions")).bearer_auth(key).json(&body).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

async fn admin(base: &str, path: &str) -> Value {
    let r = http().get(format!("{base}{path}")).bearer_auth(ADMIN).send().await.unwrap_or_else(|e| panic!("{e}"));
    r.json().await.unwrap_or_else(|e| panic!("{e}"))
}

/// The last reload's report once its number reaches `seq`.
async fn report(base: &str, seq: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = admin(base, "/admin/reload").await;
        if r["seq"].as_u64() >= Some(seq) {
            return r;
        }
        assert!(Instant::now() < deadline, "no reload {seq}: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

fn hangup(pid: i32) {
    // SAFETY: plain integers; the pid is the gateway this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
}

/// A second account in the service's store, so the strategy shows in which accounts serve.
async fn two_accounts() -> Service {
    let svc = Service::new(FakeConfig::default()).await;
    let store = codex_gateway::store::Store::open(&svc.data().join("gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    let c = svc.fake.add_account(AccountSpec::default());
    let tokens = codex_gateway::auth::Tokens {
        id_token: c.id_token,
        access_token: c.access_token,
        refresh_token: c.refresh_token,
        account_id: c.account_id,
        last_refresh: codex_gateway::auth::now_unix(),
    };
    store.upsert_account(&codex_gateway::accounts::stored_from_tokens(tokens, None)).unwrap_or_else(|e| panic!("{e}"));
    svc
}

fn accounts_served(svc: &Service) -> HashSet<String> {
    svc.fake.requests_to("/responses").into_iter().filter_map(|r| r.account_id).collect()
}

fn config(strategy: &str, team_limits: &str, extra: &str) -> String {
    format!(
        "{extra}\n[server]\nadmin_key = \"{ADMIN}\"\n\n[routing]\nstrategy = \"{strategy}\"\n\n\
         [keys.team]\nsecret = \"{TEAM}\"\n{team_limits}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_the_strategy_and_a_key_limit_with_no_request_failing_and_refuses_a_broken_file() {
    let svc = two_accounts().await;
    let file = svc.dir.join("gateway.toml");
    write(&file, &config("sticky", "", ""));
    let cfg = file.to_string_lossy().into_owned();
    let (pid, base) = started(&svc.run(&["--config", &cfg, "start", "--port", "0"]).await);

    // Requests run the whole time, streamed and not, with the admin key (no limits of its own).
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for worker in 0..3 {
        let (stop, sent, failed, base) = (stop.clone(), sent.clone(), failed.clone(), base.clone());
        load.push(tokio::spawn(async move {
            let http = http();
            while !stop.load(Ordering::Relaxed) {
                let body = body(worker == 0);
                let r = http.post(format!("{base}/v1/chat/completions")).bearer_auth(ADMIN).json(&body).send().await;
                let ok = match r {
                    Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                    _ => false,
                };
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    for _ in 0..4 {
        assert_eq!(chat(&base, TEAM).await, 200, "the team key has no limit yet");
    }
    assert_eq!(accounts_served(&svc).len(), 1, "sticky: one account serves");
    assert_eq!(admin(&base, "/admin/reload").await["seq"], 0);

    write(&file, &config("round_robin", "rpm = 2", ""));
    hangup(pid);
    let r = report(&base, 1).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["trigger"], "signal");
    assert_eq!(r["applied"], json!(["routing.strategy", "keys"]), "{r}");
    assert_eq!(admin(&base, "/admin/status").await["strategy"], "RoundRobin");
    let codes = [chat(&base, TEAM).await, chat(&base, TEAM).await, chat(&base, TEAM).await];
    assert_eq!(codes, [200, 200, 429], "the new limit: 2 requests a minute");
    svc.fake.reset_requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(accounts_served(&svc).len(), 2, "round robin: both accounts serve");

    // A broken file: `reload` refuses it before signalling, and a SIGHUP is refused by the gateway itself.
    write(&file, "[routing]\nstrategy = \"sticky\"\nthis is not toml\n");
    let o = svc.run(&["--config", &cfg, "reload"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("keeps its configuration"), "{}", text(&o));
    hangup(pid);
    let r = report(&base, 2).await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["error"].as_str().is_some_and(|e| e.contains("line 3")), "{r}");
    assert_eq!(admin(&base, "/admin/status").await["strategy"], "RoundRobin", "the old configuration stays");
    assert_eq!(chat(&base, TEAM).await, 429, "and so does the key's limit");
    let posted = http().post(format!("{base}/admin/reload")).bearer_auth(ADMIN).send().await;
    let posted = posted.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(posted.status(), 422, "POST /admin/reload refuses the broken file too");
    let r: Value = posted.json().await.unwrap_or_default();
    assert_eq!((r["ok"].clone(), r["trigger"].clone(), r["seq"].clone()), (json!(false), json!("admin"), json!(3)));
    let client = http().post(format!("{base}/admin/reload")).bearer_auth(TEAM).send().await;
    assert_eq!(client.map(|r| r.status().as_u16()).ok(), Some(403), "a client key may not reload");

    // Fixed again, through the command: it reports what it applied and what needs a restart.
    write(&file, &config("round_robin", "rpm = 2", "keepalive_secs = 5\nbody_limit_mb = 8"));
    let o = svc.run(&["--config", &cfg, "reload"]).await;
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("applied:       keepalive_secs"), "{out}");
    assert!(out.contains("needs restart: body_limit_mb"), "{out}");

    stop.store(true, Ordering::Relaxed);
    for l in load {
        let _ = l.await;
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(sent >= 10, "requests ran during the reloads: {sent}");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed during the reloads");
    assert!(svc.run(&["stop"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_config_reloads_when_the_file_changes() {
    let svc = two_accounts().await;
    let file = svc.dir.join("gateway.toml");
    let watched = "[server]\nwatch_config = true\n";
    write(&file, &config("sticky", "", "").replace("[server]\n", watched));
    let cfg = file.to_string_lossy().into_owned();
    let (_pid, base) = started(&svc.run(&["--config", &cfg, "start", "--port", "0"]).await);
    assert_eq!(admin(&base, "/admin/status").await["strategy"], "Sticky");
    write(&file, &config("round_robin", "", "").replace("[server]\n", watched));
    let r = report(&base, 1).await;
    assert_eq!((r["ok"].clone(), r["trigger"].clone()), (json!(true), json!("watch")), "{r}");
    assert_eq!(admin(&base, "/admin/status").await["strategy"], "RoundRobin");
    assert!(svc.run(&["stop"]).await.status.success());
}
