//! The usage ledger's benchmark (`scripts/bench-ledger`): fills a fresh store with N request records (default
//! 1,000,000 over 30 days) through the writer's own batch insert (rows and rollups, 500 per transaction), then
//! times every admin query the ledger answers and writes a small markdown report.
//!
//! The traffic is shaped like a real gateway's: 20 client keys (and the shared key) with skewed volumes, each
//! key one client (one dialect, a favourite model for 70% of its requests, others skewed), six accounts sharing
//! the load, 3% errors. What sets the queries' cost is the number of rollup rows: distinct (account, model, key,
//! dialect, status) per hour and per day, printed in the report.
//!
//! Then a gateway is started in-process on that store (six API-key accounts, the 20 client keys, loopback
//! without login, nothing reachable upstream) and every dashboard page is fetched over loopback HTTP and timed:
//! the whole server-side render, from request to the last byte (issue 22: under 100 ms each).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use codex_gateway::record::{Api, RequestRecord};
use codex_gateway::store::Store;
use codex_gateway::store::sqlite::usage::insert_batch;
use codex_gateway::store::usage::LedgerEntry;
use codex_gateway::usage::pricing::Prices;
use codex_gateway::usage::query::{self, Before, Bucket, GroupBy, RequestsQuery, StatusFilter, UsageQuery};
use dialects::Usage;

/// A small deterministic generator (xorshift), so two runs fill the same ledger.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// An index in 0..n, skewed towards 0 (the minimum of two uniform draws).
    fn skewed(&mut self, n: u64) -> usize {
        (self.next() % n).min(self.next() % n) as usize
    }
}

const KEYS: u64 = 20;
const ACCOUNTS: u64 = 6;
const MODELS: [&str; 5] = ["gpt-5.4", "gpt-5.5", "gpt-5.4-mini", "gpt-5.3-codex", "gpt-5.2"];
const APIS: [Api; 5] =
    [Api::named("chat"), Api::named("responses"), Api::named("anthropic"), Api::named("gemini"), Api::named("ollama")];

fn record(rng: &mut Rng, started_ms: u64) -> Box<RequestRecord> {
    let account = format!("acct-{}", rng.next() % ACCOUNTS);
    let key = rng.skewed(KEYS + 1);
    // A key is one client: its dialect and favourite model follow from it.
    let api = APIS[key * 7 % APIS.len()];
    let model = match rng.next() % 10 {
        0..7 => MODELS[key % MODELS.len()],
        _ => MODELS[rng.skewed(MODELS.len() as u64)],
    };
    let status = match rng.next() % 100 {
        0 => 429,
        1 => 502,
        2 => 400,
        _ => 200,
    };
    let ok = status == 200;
    let input = if ok { 500 + rng.next() % 20_000 } else { 0 };
    Box::new(RequestRecord {
        request_id: format!("{:032x}", rng.next() as u128 * 7919),
        started_at: UNIX_EPOCH + Duration::from_millis(started_ms),
        api,
        route: "/v1/chat/completions".into(),
        // Key 0 stands for requests made with the shared key (no client key).
        client_key: (key > 0).then(|| Arc::from(format!("key-{key}").as_str())),
        user: None,
        model_requested: Some(model.to_string()),
        model: Some(model.to_string()),
        effort: Some("medium".into()),
        stream: !rng.next().is_multiple_of(4),
        accounts_tried: vec![account.clone()],
        account: ok.then_some(account),
        moved_from: None,
        refusal: None,
        held: None,
        attempts: 1,
        attempt_failures: Vec::new(),
        failovers: 0,
        status,
        error: None,
        time_to_first_byte: Some(Duration::from_millis(200 + rng.next() % 800)),
        duration: Duration::from_millis(1_000 + rng.next() % 30_000),
        usage: Usage {
            input_tokens: input,
            cached_tokens: input / 2,
            output_tokens: if ok { 50 + rng.next() % 2_000 } else { 0 },
            reasoning_tokens: if ok { rng.next() % 500 } else { 0 },
            total_tokens: 0,
            cache_write_tokens: input / 4,
            budget_units: ok.then_some((input / 2) as f64 + 0.5),
        },
        client_disconnected: false,
    })
}

/// Median and slowest of `runs` timings of `f`, in ms.
fn time<T>(runs: usize, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<(f64, f64)> {
    let mut ms = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(f()?);
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms[ms.len() / 2], ms[ms.len() - 1]))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut rows, mut out) = (1_000_000u64, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rows" => rows = args.next().and_then(|v| v.parse().ok()).ok_or_else(|| anyhow::anyhow!("--rows N"))?,
            "--out" => out = args.next(),
            other => anyhow::bail!("unknown argument {other}; usage: bench-ledger [--rows N] [--out FILE.md]"),
        }
    }
    let dir = std::env::temp_dir().join(format!("cg-bench-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir.join("gateway.db"))?;
    let mut conn = rusqlite::Connection::open(store.path())?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let span = 30 * 86_400_000u64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let fill = Instant::now();
    let mut batch = Vec::with_capacity(500);
    for i in 0..rows {
        batch.push(record(&mut rng, now - span + i * span / rows));
        if batch.len() == 500 || i + 1 == rows {
            let tx = conn.transaction()?;
            insert_batch(&tx, &batch.iter().map(|r| LedgerEntry::from(&**r)).collect::<Vec<_>>())?;
            tx.commit()?;
            batch.clear();
        }
    }
    let fill = fill.elapsed().as_secs_f64();
    let rollups: i64 = conn.query_row("SELECT COUNT(*) FROM usage_hourly", [], |r| r.get(0))?;
    let daily: i64 = conn.query_row("SELECT COUNT(*) FROM usage_daily", [], |r| r.get(0))?;
    let size =
        std::fs::metadata(store.path())?.len() + std::fs::metadata(dir.join("gateway.db-wal")).map_or(0, |m| m.len());
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")?;

    let prices = Prices::new(toml::from_str("[\"gpt-5.4\"]\ninput = 1.25\ncached_input = 0.125\noutput = 10.0")?)?;
    let now = now as i64;
    let day = 86_400_000i64;
    let middle = query::requests(
        &conn,
        &RequestsQuery { limit: 1, before: Some(Before::Instant(now - 15 * day)), ..Default::default() },
        &prices,
    )?
    .next;
    let mut results: Vec<(String, f64, f64)> = Vec::new();
    let mut usage = |name: &str, q: UsageQuery| -> anyhow::Result<()> {
        let (med, max) = time(5, || Ok(query::usage(&conn, &q, &prices)?))?;
        results.push((format!("`/admin/usage?{name}`"), med, max));
        Ok(())
    };
    let month = UsageQuery { from: now - 30 * day, to: now, bucket: Bucket::Day, group_by: None, user: None };
    usage("from=30d&bucket=day", month.clone())?;
    for g in [GroupBy::Account, GroupBy::Model, GroupBy::Key, GroupBy::Dialect] {
        usage(
            &format!("from=30d&bucket=day&group_by={}", g.as_str()),
            UsageQuery { group_by: Some(g), ..month.clone() },
        )?;
    }
    usage(
        "from=7d&bucket=hour&group_by=model",
        UsageQuery { from: now - 7 * day, bucket: Bucket::Hour, group_by: Some(GroupBy::Model), ..month.clone() },
    )?;
    usage(
        "from=24h&bucket=hour&group_by=key",
        UsageQuery { from: now - day, bucket: Bucket::Hour, group_by: Some(GroupBy::Key), ..month.clone() },
    )?;
    let page = |q: RequestsQuery| RequestsQuery { limit: 100, ..q };
    let cases: Vec<(&str, RequestsQuery)> = vec![
        ("limit=100", page(RequestsQuery::default())),
        ("limit=1000", RequestsQuery { limit: 1000, ..Default::default() }),
        (
            "limit=100&before=<cursor 15 days back>",
            page(RequestsQuery { before: middle.as_deref().and_then(Before::parse_cursor), ..Default::default() }),
        ),
        ("limit=100&key=key-7", page(RequestsQuery { key: Some("key-7".into()), ..Default::default() })),
        ("limit=100&account=acct-5", page(RequestsQuery { account: Some("acct-5".into()), ..Default::default() })),
        ("limit=100&model=gpt-5.2", page(RequestsQuery { model: Some("gpt-5.2".into()), ..Default::default() })),
        ("limit=100&status=502", page(RequestsQuery { status: Some(StatusFilter::Code(502)), ..Default::default() })),
        ("limit=100&status=4xx", page(RequestsQuery { status: Some(StatusFilter::Class(4)), ..Default::default() })),
        (
            "limit=100&key=key-20&model=gpt-5.2&status=502",
            page(RequestsQuery {
                key: Some("key-20".into()),
                model: Some("gpt-5.2".into()),
                status: Some(StatusFilter::Code(502)),
                ..Default::default()
            }),
        ),
        ("limit=100&account=nobody", page(RequestsQuery { account: Some("nobody".into()), ..Default::default() })),
    ];
    for (name, q) in cases {
        let (med, max) = time(5, || Ok(query::requests(&conn, &q, &prices)?))?;
        results.push((format!("`/admin/requests?{name}`"), med, max));
    }
    let (med, max) = time(5, || {
        codex_gateway::usage::tokens_since(&store, codex_gateway::store::usage::Spender::Key, now - 30 * day)
    })?;
    results.push(("`tokens_since(Key, 30 days ago)` (budgets)".into(), med, max));

    let slowest = results.iter().map(|r| r.2).fold(0.0, f64::max);
    drop(conn);
    let pages = tokio::runtime::Runtime::new()?.block_on(dashboard_pages(&dir, &store, now))?;
    let slowest_page = pages.iter().map(|r| r.2).fold(0.0, f64::max);
    let mut md = format!(
        "# Usage ledger benchmark\n\n`scripts/bench-ledger` ({}): {rows} request rows over 30 days in a fresh SQLite store, written \
         through the ledger writer's batch insert (`store::sqlite::usage::insert_batch`, 500 rows and their rollups per \
         transaction) at {:.0} rows/s; {rollups} hourly and {daily} daily rollup rows; database {:.0} MB. Each query run 5 times on \
         the filled store (release build).\n\n| query | median ms | slowest ms |\n|---|---:|---:|\n",
        std::env::var("BENCH_HOST").unwrap_or_else(|_| "this machine".into()),
        rows as f64 / fill,
        size as f64 / 1e6,
    );
    for (name, med, max) in &results {
        md += &format!("| {name} | {med:.1} | {max:.1} |\n");
    }
    md += &format!("\nSlowest of all: {slowest:.1} ms (target: under 200 ms).\n");
    md += "\n## Dashboard pages\n\nEach page fetched 5 times from a gateway running on the filled store (release build, \
           loopback HTTP, time to the last byte of the page).\n\n| page | median ms | slowest ms |\n|---|---:|---:|\n";
    for (name, med, max) in &pages {
        md += &format!("| {name} | {med:.1} | {max:.1} |\n");
    }
    md += &format!("\nSlowest page: {slowest_page:.1} ms (target: under 100 ms).\n");
    print!("{md}");
    if let Some(path) = out {
        std::fs::write(&path, &md)?;
    }
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Start a gateway on the filled store and time every dashboard page (median and slowest of 5, after one
/// warm-up fetch each).
async fn dashboard_pages(dir: &std::path::Path, store: &Store, now_ms: i64) -> anyhow::Result<Vec<(String, f64, f64)>> {
    use codex_gateway::config::{Config, Overrides, RawConfig};
    use codex_gateway::store::{AccountKind, AccountStatus, StoredAccount};
    for i in 0..ACCOUNTS {
        store.upsert_account(&StoredAccount {
            id: format!("acct-{i}"),
            kind: AccountKind::ApiKey,
            label: Some(format!("team {i}")),
            email: None,
            plan: None,
            tokens: None,
            api_key: Some(format!("sk-bench-{i}")),
            base_url: None,
            proxy: None,
            models: Some(MODELS.iter().map(|m| m.to_string()).collect()),
            status: AccountStatus::Active,
            status_reason: None,
            created_at: now_ms / 1000,
            policy: None,
        })?;
    }
    for i in 1..=KEYS {
        let spec = codex_gateway::keys::manage::KeySpec { name: format!("key-{i}"), ..Default::default() };
        codex_gateway::keys::manage::create(store, spec, None, now_ms / 1000).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // Nothing upstream answers: a port that refuses at once.
    let nowhere = "http://127.0.0.1:9".to_string();
    let env: std::collections::HashMap<String, String> = [
        ("HOME", dir.display().to_string()),
        ("CODEX_HOME", dir.join("codex-home").display().to_string()),
        ("CODEX_GATEWAY_DATA_DIR", dir.display().to_string()),
        ("CODEX_GATEWAY_ADMIN_KEY", "bench-admin-key".into()),
        ("CODEX_GATEWAY_UPSTREAM_BASE_URL", nowhere.clone()),
        ("CODEX_GATEWAY_CHATGPT_BASE_URL", nowhere.clone()),
        ("CODEX_GATEWAY_AUTH_ISSUER", nowhere.clone()),
        ("CODEX_GATEWAY_OPENAI_BASE_URL", nowhere),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let raw: RawConfig = toml::from_str(
        "[dashboard]\nloopback_without_login = true\n[usage.prices.\"gpt-5.4\"]\ninput = 1.25\ncached_input = 0.125\noutput = 10.0\n",
    )?;
    let config = Config::resolve(raw, &Overrides { port: Some(0), ..Default::default() }, &env)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(codex_gateway::server::run_with_bridge(config, listener, None, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder().no_proxy().build()?;
    let pages = [
        ("Overview", "/dashboard"),
        ("Accounts", "/dashboard/accounts"),
        ("Keys", "/dashboard/keys"),
        ("Usage, 24 h by model", "/dashboard/usage?range=24h&group_by=model"),
        ("Usage, 7 d by model", "/dashboard/usage?range=7d&group_by=model"),
        ("Usage, 7 d by key", "/dashboard/usage?range=7d&group_by=key"),
        ("Usage, 30 d by account", "/dashboard/usage?range=30d&group_by=account"),
        ("Requests", "/dashboard/requests"),
        ("Requests, key and status 4xx", "/dashboard/requests?key=key-7&status=4xx"),
        ("Setup", "/dashboard/setup"),
        ("Settings", "/dashboard/settings"),
    ];
    let mut out = Vec::new();
    for (name, path) in pages {
        let url = format!("{base}{path}");
        let fetch = || async {
            let resp = http.get(&url).send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            anyhow::ensure!(status.is_success(), "{path}: {status}");
            // The pages' message when a ledger query fails.
            anyhow::ensure!(!body.windows(17).any(|w| w == b"could not be read"), "{path}: the ledger failed");
            Ok(body.len())
        };
        fetch().await?;
        let mut ms = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            std::hint::black_box(fetch().await?);
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        out.push((format!("{name} (`{path}`)"), ms[ms.len() / 2], ms[ms.len() - 1]));
    }
    let _ = stop.send(());
    gateway.await??;
    Ok(out)
}
