//! `loadgen`: a small HTTP load generator for the gateway's benchmarks (`scripts/bench`).
//!
//! It speaks plain HTTP/1.1 over hyper's connection API (one keep-alive connection per worker, no pool, no
//! TLS) so that its own cost per request stays small next to the server it measures. Three jobs:
//! - `run`: requests in one dialect at a concurrency for a duration or a count; latency percentiles, events/s,
//!   errors, and the CPU time and RSS of watched processes read from `/proc`;
//! - `disconnect`: open a stream, drop it after the first content token, and time how long the fake upstream
//!   takes to see its stream go away (through the fake's `/_fake/stats`);
//! - `coldstart`: start a server command and time until its `/health` answers;
//! - `pingpong`: one loopback round trip across two cores and within one (the floor under c=1 latency);
//! - `relay`: a byte relay to one address, run in the gateway's place to measure what any proxy costs there (with
//!   `--websocket`, over the upstream's Responses WebSocket with permessage-deflate and TLS: the default path's);
//! - `report`: turn one benchmark run's JSON files into `bench/results/latest.{md,json}`.
//!
//! Layout: `target` (URL, connection, one request), `dialect` (bodies and what marks content and the end),
//! `procfs` (CPU and memory of a pid), `stats` (percentiles and the JSON report), `jobs` (the three jobs).

mod dialect;
mod framing;
mod jobs;
mod pingpong;
mod procfs;
mod relay;
mod report;
mod stats;
mod target;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Load generator for codex-gateway benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Drive requests at a concurrency and report latency, throughput and the watched processes' cost.
    Run(RunArgs),
    /// Time from a client disconnect until the fake upstream's stream closes.
    Disconnect(DisconnectArgs),
    /// Time from process start until `/health` answers.
    Coldstart(ColdstartArgs),
    /// Wait until a URL answers 200 (a server coming up).
    Wait(WaitArgs),
    /// Loopback TCP round trip between two threads, across two cores and within one.
    Pingpong(PingpongArgs),
    /// Relay bytes to one address, no HTTP parsing: the cost of any proxy in the gateway's place; with
    /// --websocket, HTTP requests over the upstream's Responses WebSocket (the default path's floor); with --hyper,
    /// through hyper's server and client (the floor of a proxy on the ecosystem's HTTP crates).
    Relay(RelayArgs),
    /// Turn one `scripts/bench` run's JSON files into latest.md and latest.json.
    Report(ReportArgs),
}

/// What one request looks like.
#[derive(Args, Debug, Clone)]
pub struct RequestArgs {
    /// Full endpoint URL, e.g. http://127.0.0.1:8765/v1/chat/completions (http only).
    #[arg(long)]
    pub url: String,
    /// Request dialect: chat, anthropic or responses.
    #[arg(long, default_value = "chat")]
    pub dialect: String,
    /// Ask for a streaming answer (the Codex backend itself only streams).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub stream: bool,
    #[arg(long, default_value = "gpt-5.4")]
    pub model: String,
    /// Length of the generated user prompt, in characters (fake-codex echoes it back).
    #[arg(long, default_value_t = 200)]
    pub prompt_chars: usize,
    /// A fake-codex scenario (JSON) to request with a `<<fake ...>>` directive instead of the plain prompt.
    #[arg(long)]
    pub fake_directive: Option<String>,
    /// Codex-CLI auth.json whose access token and account id are sent (direct requests to fake-codex).
    #[arg(long)]
    pub auth_json: Option<PathBuf>,
    /// Extra header `Name: value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub req: RequestArgs,
    /// Concurrent connections, each sending requests one after another.
    #[arg(long, short = 'c', default_value_t = 1)]
    pub concurrency: usize,
    /// Measure for this many seconds (ignored when --requests is given).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Measure exactly this many requests instead of a duration.
    #[arg(long)]
    pub requests: Option<usize>,
    /// Unmeasured warm-up before the run, seconds (same load).
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Connections opened at the same time while ramping up.
    #[arg(long, default_value_t = 128)]
    pub connect_burst: usize,
    /// Start this many connections' first requests a second, not all at once: many long streams opened no faster
    /// than the stand-in backend, on the load core, can take their upstream connections (TLS handshakes).
    #[arg(long)]
    pub ramp: Option<f64>,
    /// Watch a process: `name=pid` (repeatable): CPU time, peak and current RSS over the measured run.
    #[arg(long = "watch")]
    pub watch: Vec<String>,
    /// fake-codex base URL: report its accepted connections during the run (upstream connection reuse).
    #[arg(long)]
    pub fake_url: Option<String>,
    /// Label stored in the report.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Give up on one request after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    pub request_timeout: f64,
    /// Also write the JSON report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write every measured request here as CSV (send time from the start of the run, TTFB, TTFT, total; ms),
    /// in the order they were sent: to see when a tail happens, not only how large it is.
    #[arg(long)]
    pub samples: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DisconnectArgs {
    #[command(flatten)]
    pub req: RequestArgs,
    /// fake-codex base URL (its `/_fake/stats` tells when a stream went away).
    #[arg(long)]
    pub fake_url: String,
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// A trial passes when the upstream stream closed within this many milliseconds.
    #[arg(long, default_value_t = 5.0)]
    pub limit_ms: f64,
    #[arg(long, default_value = "")]
    pub label: String,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ColdstartArgs {
    #[arg(long, default_value_t = 5)]
    pub trials: usize,
    /// Give up on one start after this many seconds.
    #[arg(long, default_value_t = 20.0)]
    pub timeout: f64,
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The server command; it must print `listening on http://HOST:PORT` on stdout.
    #[arg(trailing_var_arg = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    #[arg(long)]
    pub url: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

#[derive(Args, Debug)]
pub struct PingpongArgs {
    /// The echo thread's core in the cross-core run (the gateway's core in the benchmark).
    #[arg(long, default_value_t = 0)]
    pub server_core: usize,
    /// The sender's core, and the only core of the same-core run.
    #[arg(long, default_value_t = 1)]
    pub client_core: usize,
    #[arg(long, default_value_t = 5000)]
    pub round_trips: usize,
    /// Idle time between round trips, microseconds.
    #[arg(long, default_value_t = 200)]
    pub gap_us: u64,
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RelayArgs {
    /// Where every accepted connection is relayed to: host:port (the byte relay).
    #[arg(long, required_unless_present = "websocket")]
    pub to: Option<String>,
    /// Relay HTTP Responses requests over the upstream's Responses WebSocket (permessage-deflate, TLS for wss://):
    /// the floor of the gateway's default path. Needs --upstream.
    #[arg(long, requires = "upstream", conflicts_with = "to")]
    pub websocket: bool,
    /// Relay through hyper's HTTP/1.1 server and hyper's client to --to (HTTP/1.1, or HTTP/2 with --h2), bodies
    /// handed on as they come and nothing parsed: the floor of a proxy built from the ecosystem's HTTP crates. With
    /// --websocket: hyper's server in front of the same WebSocket relay.
    #[arg(long)]
    pub hyper: bool,
    /// With --hyper: reach --to over HTTP/2 with prior knowledge (h2c), one connection for every request.
    #[arg(long, requires = "hyper")]
    pub h2: bool,
    /// The WebSocket endpoint for --websocket, e.g. wss://127.0.0.1:PORT/backend-api/codex/responses.
    #[arg(long)]
    pub upstream: Option<String>,
    /// PEM certificate(s) a wss:// upstream is trusted through (fake-codex --tls-ca-out).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Port to listen on (127.0.0.1); 0 picks a free one. Prints "listening on http://...".
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Directory with the run's JSON files (c64.direct.json, c64.gateway.json, meta.json, ...).
    #[arg(long)]
    pub dir: PathBuf,
    /// Where latest.md and latest.json go.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Criterion's output directory (target/criterion), for the translation micro-benchmarks.
    #[arg(long)]
    pub criterion: Option<PathBuf>,
    /// Hand-written analysis appended to latest.md.
    #[arg(long)]
    pub notes: Option<PathBuf>,
    /// The command that made the run, as shown in the report.
    #[arg(long, default_value = "scripts/bench")]
    pub command: String,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // One thread: the generator shares a core with the fake upstream, and a single-threaded runtime is its
    // cheapest configuration.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(a) => jobs::run(a).await,
            Command::Disconnect(a) => jobs::disconnect(a).await,
            Command::Coldstart(a) => jobs::coldstart(a).await,
            Command::Report(a) => report::report(a),
            Command::Wait(a) => jobs::wait(a).await,
            Command::Pingpong(a) => pingpong::pingpong(a),
            Command::Relay(a) => relay::relay(a).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
