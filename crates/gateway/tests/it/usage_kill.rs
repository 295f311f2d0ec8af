//! The usage ledger under SIGKILL: the real binary serves four clients in a loop and is killed with -9 mid-load,
//! several times. Every request a client saw answered must be in the store, except those answered in the last
//! moments before the kill (the batch the writer was gathering, committed every 250 ms). The figures printed here
//! are the ones docs/operations.md gives.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_codex::{FakeCodex, FakeConfig};
use parking_lot::Mutex;
use serde_json::json;

use crate::crash::spawn_gateway;

const ROUNDS: usize = 4;
const CLIENTS: usize = 4;
/// A lost record must have been answered at most this long before the kill: one batch window (250 ms), its
/// commit, and room for a loaded 2-core CI machine.
const LAST_BATCH_MS: u128 = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_at_most_the_last_batch() {
    let fake = FakeCodex::start(FakeConfig::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let dir = std::env::temp_dir().join(format!("cgw-ledger-kill-{}", uuid::Uuid::new_v4().simple()));
    let store = codex_gateway::store::Store::open(&dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
    crate::harness::store_account(&fake, &store);
    drop(store);
    let http = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
    let (mut answered_total, mut lost_total, mut worst_lost, mut oldest_lost) = (0usize, 0usize, 0usize, 0u128);
    for round in 0..ROUNDS {
        let mut gw = spawn_gateway(&fake, &dir, &[]).await;
        // (request id, when the client had the whole answer)
        let answered: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for client in 0..CLIENTS {
            let (http, url, answered, stop) =
                (http.clone(), format!("{}/v1/chat/completions", gw.base), answered.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let id = format!("r{round}-c{client}-{i}");
                    i += 1;
                    let body = json!({"model":"gpt-5.4","messages":[{"role":"user","content":"hi"}]});
                    let Ok(resp) = http.post(&url).header("x-request-id", &id).json(&body).send().await else { break };
                    let ok = resp.status().is_success();
                    if resp.bytes().await.is_ok() && ok {
                        answered.lock().push((id, Instant::now()));
                    }
                }
            }));
        }
        // Kill mid-load, once the writer has committed this round's first batch, at a different point of the batch
        // window each round.
        let db = dir.join("data/gateway.db");
        let before: i64 = if round == 0 { 0 } else { stored_count(&db) };
        let waiting = Instant::now();
        while stored_count(&db) <= before {
            assert!(waiting.elapsed() < Duration::from_secs(20), "round {round}: nothing was ever committed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(1_500 + 83 * round as u64)).await;
        let killed_at = Instant::now();
        let _ = gw.child.start_kill();
        let _ = gw.child.wait().await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in clients {
            let _ = c.await;
        }
        let conn = rusqlite::Connection::open(dir.join("data/gateway.db")).unwrap_or_else(|e| panic!("{e}"));
        let mut stmt = conn.prepare("SELECT request_id FROM usage_requests").unwrap_or_else(|e| panic!("{e}"));
        let stored: HashSet<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        let answered = answered.lock().clone();
        let lost: Vec<&(String, Instant)> = answered.iter().filter(|(id, _)| !stored.contains(id)).collect();
        for (id, at) in &lost {
            let before_kill = killed_at.saturating_duration_since(*at).as_millis();
            assert!(
                before_kill <= LAST_BATCH_MS,
                "{id} was answered {before_kill} ms before the kill and is not stored"
            );
        }
        let oldest = lost.iter().map(|(_, at)| killed_at.saturating_duration_since(*at).as_millis()).max();
        eprintln!(
            "ledger SIGKILL round {round}: {} answered, {} not stored, the oldest of them answered {} ms before the kill",
            answered.len(),
            lost.len(),
            oldest.unwrap_or(0)
        );
        oldest_lost = oldest_lost.max(oldest.unwrap_or(0));
        assert!(lost.len() <= 500, "more than one batch lost: {}", lost.len());
        answered_total += answered.len();
        lost_total += lost.len();
        worst_lost = worst_lost.max(lost.len());
    }
    eprintln!(
        "ledger SIGKILL: {ROUNDS} kills, {answered_total} requests answered, {lost_total} not stored \
         (at most {worst_lost} per kill, all answered at most {oldest_lost} ms before it)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn stored_count(db: &std::path::Path) -> i64 {
    let Ok(conn) = rusqlite::Connection::open(db) else { return 0 };
    conn.query_row("SELECT COUNT(*) FROM usage_requests", [], |r| r.get(0)).unwrap_or(0)
}
