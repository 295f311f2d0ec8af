//! The `fake-codex` binary: start the fake on a local port, print where it listens and the
//! accounts it created, optionally write a Codex-CLI-style auth.json for the first account, and
//! serve until interrupted. All behaviour lives in the library.

use clap::Parser;
use fake_codex::{AccountCreds, AccountSpec, FakeCodex, FakeConfig};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The benchmark's upstream shares one core with the load generator, and over HTTP/2 (hyper and h2: every DATA
/// frame queued, scheduled and freed on its own) glibc's malloc was ~30% of its time: the fake, not the gateway
/// under test, set how fast a burst arrived (docs/performance.md, "How they are measured"). Its memory is no target.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "fake-codex", about = "A strict fake of the ChatGPT Codex backend")]
struct Args {
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Accounts to create at start.
    #[arg(long, default_value_t = 0)]
    accounts: usize,
    /// Plan of the created accounts.
    #[arg(long, default_value = "plus")]
    plan: String,
    /// Write a Codex-CLI-style auth.json for the first account here (mode 0600).
    #[arg(long)]
    write_auth_json: Option<PathBuf>,
    /// Lifetime of access tokens, seconds.
    #[arg(long, default_value_t = 3600)]
    access_token_ttl: u64,
    /// Text deltas of unscripted answers (the echo is split into at most this many pieces).
    #[arg(long, default_value_t = 4)]
    default_deltas: usize,
    /// Pause before each delta of unscripted answers, milliseconds.
    #[arg(long, default_value_t = 0)]
    delta_delay_ms: u64,
    /// Keep only this many recorded requests, the newest (long benchmark runs); all by default.
    #[arg(long)]
    max_recorded: Option<usize>,
    /// HTTP/2 clients (h2c, or h2 over TLS): concurrent streams allowed per connection.
    #[arg(long, default_value_t = 200)]
    h2_max_streams: u32,
    /// Serve HTTPS (h2 or HTTP/1.1 by ALPN) with a fresh self-signed certificate for localhost and 127.0.0.1.
    #[arg(long)]
    tls: bool,
    /// With --tls: write the certificate (PEM) here, for clients to trust as their CA bundle.
    #[arg(long, requires = "tls")]
    tls_ca_out: Option<PathBuf>,
    /// Stream framing: `event` (one event per HTTP/1.1 chunk / HTTP/2 DATA frame, as the real backend flushes),
    /// `burst` (events with no pause between them go out as one buffer, up to 16 KB) or `trickle` (one event per
    /// chunk, a burst written a few events at a time).
    #[arg(long, default_value = "event", value_parser = ["event", "burst", "trickle"])]
    framing: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Warnings by default (the HTTP/2 library's protocol complaints among them), more through RUST_LOG.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-codex: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let cfg = FakeConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], args.port)),
        access_token_ttl_secs: args.access_token_ttl,
        default_deltas: args.default_deltas,
        default_delay_ms: args.delta_delay_ms,
        max_recorded: args.max_recorded,
        h2_max_concurrent_streams: args.h2_max_streams,
        tls: args.tls,
        framing: match args.framing.as_str() {
            "burst" => fake_codex::Framing::Burst,
            "trickle" => fake_codex::Framing::Trickle,
            _ => fake_codex::Framing::PerEvent,
        },
        ..FakeConfig::default()
    };
    let fake = FakeCodex::start(cfg).await?;
    // Written before the URL is printed, so a script that waits for the URL finds the file ready.
    if let (Some(path), Some(pem)) = (&args.tls_ca_out, fake.ca_pem()) {
        std::fs::write(path, pem)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "fake-codex listening on {}", fake.base_url())?;
    out.flush()?;
    let mut first: Option<AccountCreds> = None;
    let wanted = args.accounts.max(usize::from(args.write_auth_json.is_some()));
    for _ in 0..wanted {
        let creds = fake.add_account(AccountSpec { plan: args.plan.clone(), ..AccountSpec::default() });
        writeln!(out, "account {} {}", creds.account_id, creds.email)?;
        first.get_or_insert(creds);
    }
    out.flush()?;
    drop(out);
    if let (Some(path), Some(creds)) = (&args.write_auth_json, &first) {
        write_auth_json(path, creds)?;
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn write_auth_json(path: &Path, c: &AccountCreds) -> std::io::Result<()> {
    // Now in RFC 3339 UTC, whole seconds (`2026-01-02T03:04:05Z`).
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).map_err(std::io::Error::other)?;
    let last_refresh = now.format(&time::format_description::well_known::Rfc3339).map_err(std::io::Error::other)?;
    let doc = serde_json::json!({
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": c.id_token,
            "access_token": c.access_token,
            "refresh_token": c.refresh_token,
            "account_id": c.account_id,
        },
        "last_refresh": last_refresh,
    });
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    // Windows has no modes: the file takes its folder's ACL, as the official client's own auth.json does there.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
    f.write_all(text.as_bytes())
}
