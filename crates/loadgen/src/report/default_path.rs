//! The targets of issues 73 and 89, per path, the default path first: the gateway on its default configuration
//! (the upstream Responses WebSocket with permessage-deflate over TLS) and HTTP/2 SSE, the fallback. Read from the
//! `dp.*.json` files of `scripts/bench` and the side-by-side run of `scripts/bench-peer` (`peer.json`).

use std::path::Path;

use serde_json::{Value, json};

use super::{Check, at_least, at_most, fmt, num};

/// The paths measured, in report order: file key and title.
pub(super) const PATHS: [(&str, &str); 2] = [
    ("default", "default path (upstream WebSocket + permessage-deflate over TLS)"),
    ("h2", "HTTP/2 SSE (the fallback)"),
];

/// The issues' limits.
const PACED_RATIO: f64 = 1.6;
const BURST_RATIO: f64 = 1.5;
const ADDED_TTFB_MS: f64 = 1.0;
/// The paced streams open at once (issue 89: what this host's 20,000 descriptors hold on the default path, where a
/// stream holds two), and the smaller run the memory slope is taken from.
pub(super) const MANY_STREAMS: f64 = 9000.0;
pub(super) const FEW_STREAMS: f64 = 1000.0;
/// What the protocol obliges a default-path stream to keep: the backend deflates with context takeover at a
/// 15-bit window, so each open stream keeps the last 32 KiB it inflated (docs/performance.md, "Targets").
const INFLATE_WINDOW_KB: f64 = 32.0;
const PEER_LIGHTER: f64 = 20.0;

/// The checks, and the rows behind them for `latest.json`.
pub(super) struct DefaultPath {
    pub checks: Vec<Check>,
    pub json: Value,
}

pub(super) fn section(dir: &Path, read: fn(&Path, &str) -> Value) -> DefaultPath {
    let direct = read(dir, "c1.direct");
    let peer = read(dir, "peer");
    let mut checks = Vec::new();
    let mut rows = serde_json::Map::new();
    for (key, title) in PATHS {
        let paced = read(dir, &format!("dp.paced20.{key}.pair"));
        let burst = read(dir, &format!("dp.burst.{key}.pair"));
        let c1 = read(dir, &format!("dp.c1.{key}"));
        let many = read(dir, &format!("dp.paced.{key}"));
        let few = read(dir, &format!("dp.paced.{key}.few"));
        checks.push(at_most(
            format!("{title}: paced 20 ms, CPU per event / the byte relay's (paired, median)"),
            num(&paced, "/median"),
            PACED_RATIO,
            "x",
            "<= 1.6x",
        ));
        checks.push(at_most(
            format!("{title}: burst, CPU per request / the byte relay's (paired, median)"),
            num(&burst, "/median"),
            BURST_RATIO,
            "x",
            "<= 1.5x",
        ));
        // The floor under the burst row: the same relay with hyper's server on the client's side, and on HTTP/2
        // hyper's h2 client instead of a byte copy (`loadgen relay --hyper`), nothing parsed, against the relay:
        // what no proxy on these crates goes below (bench/notes.md, "2026-11-29 — The floor of a proxy on hyper").
        let floor = read(dir, &format!("dp.burst.{key}.hyper.pair"));
        checks.push(info(
            format!("{title}: burst, a hyper pass-through's CPU per request / the byte relay's (paired, median)"),
            num(&floor, "/median"),
            "x",
        ));
        checks.push(streams_open(title, &many));
        // Reported, not ground down: what each more open stream holds, beside what the protocol obliges.
        let slope = slope_kb(&few, &many);
        let obliged = match key {
            "default" => format!(" (the inflate window the protocol obliges: {INFLATE_WINDOW_KB:.0} KB)"),
            _ => String::new(),
        };
        let mut per_stream = info(
            format!("{title}: RSS per open stream, slope from {FEW_STREAMS:.0} to {MANY_STREAMS:.0} paced streams"),
            slope,
            "KB",
        );
        per_stream.measured.push_str(&obliged);
        checks.push(per_stream);
        let added = num(&c1, "/ttfb_ms/p50").zip(num(&direct, "/ttfb_ms/p50")).map(|(g, d)| g - d);
        checks.push(at_most(format!("{title}: c=1 added TTFB p50"), added, ADDED_TTFB_MS, "ms", "<= 1 ms"));
        rows.insert(
            key.to_string(),
            json!({"paced20_pair": paced, "burst_pair": burst, "burst_hyper_floor_pair": floor, "c1": c1,
                   "paced_streams": many, "paced_streams_few": few, "rss_slope_kb_per_stream": slope}),
        );
    }
    // Side by side with the strongest peer that runs here (scripts/bench-peer): how many times lighter.
    let lighter = |what: &str| num(&peer, &format!("/peer/{what}")).zip(num(&peer, &format!("/gateway/{what}")));
    let peer_name = peer.get("peer_name").and_then(Value::as_str).unwrap_or("the best peer");
    for (what, label) in [("cpu_us_per_request", "CPU per request"), ("rss_peak_kb", "RSS peak")] {
        let times = lighter(what).and_then(|(p, g)| (g > 0.0).then_some(p / g));
        checks.push(at_least(
            format!("side by side with {peer_name}: {label}, times lighter"),
            times,
            PEER_LIGHTER,
            "x",
            ">= 20x",
        ));
    }
    rows.insert("peer".into(), peer);
    DefaultPath { checks, json: Value::Object(rows) }
}

/// The target of the many paced streams: all of them served, with 0 errors (issue 89; the memory is the slope's).
fn streams_open(title: &str, many: &Value) -> Check {
    let streams = num(many, "/concurrency");
    let errors = num(many, "/errors");
    let ok = match (streams, errors) {
        (Some(n), Some(e)) => Some(n >= MANY_STREAMS && e == 0.0),
        _ => None,
    };
    let measured = match (streams, errors) {
        (Some(n), Some(e)) => format!("{n:.0} streams, {e:.0} errors"),
        _ => "not measured".to_string(),
    };
    let miss = match (streams, errors) {
        (Some(n), _) if n < MANY_STREAMS => format!("only {n:.0} streams opened"),
        (_, Some(e)) if e > 0.0 => format!("{e:.0} streams failed"),
        _ => String::new(),
    };
    Check {
        name: format!("{title}: {MANY_STREAMS:.0} paced streams at once, 0 errors"),
        measured,
        goal: "9,000 streams, 0 errors",
        ok,
        miss,
    }
}

/// KB of RSS peak per stream between the two runs of paced streams (both without errors).
fn slope_kb(few: &Value, many: &Value) -> Option<f64> {
    let run = |v: &Value| {
        let clean = num(v, "/errors") == Some(0.0);
        num(v, "/concurrency").zip(num(v, "/procs/gateway/rss_peak_kb")).filter(|_| clean)
    };
    let ((n1, kb1), (n2, kb2)) = run(few).zip(run(many))?;
    (n2 > n1).then(|| (kb2 - kb1) / (n2 - n1))
}

/// The goal of a figure shown with the targets but not one of them.
pub(super) const SHOWN: &str = "shown beside the target";

/// A figure shown with the targets but not one of them.
fn info(name: String, value: Option<f64>, unit: &str) -> Check {
    Check { name, measured: format!("{} {unit}", fmt(value, 3)), goal: SHOWN, ok: None, miss: String::new() }
}
