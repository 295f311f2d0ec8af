//! The targets of issue 73, per path, the default path first: the gateway on its default configuration (the
//! upstream Responses WebSocket with permessage-deflate over TLS) and HTTP/2 SSE, the fallback. Read from the
//! `dp.*.json` files of `scripts/bench` and the side-by-side run of `scripts/bench-peer` (`peer.json`).

use std::path::Path;

use serde_json::{Value, json};

use super::{Check, at_least, at_most, fmt, num};

/// The paths measured, in report order: file key and title.
pub(super) const PATHS: [(&str, &str); 2] = [
    ("default", "default path (upstream WebSocket + permessage-deflate over TLS)"),
    ("h2", "HTTP/2 SSE (the fallback)"),
];

/// The limits.
const PACED_RATIO: f64 = 1.6;
const PACED_RSS_MB: f64 = 300.0;
const ADDED_TTFB_MS: f64 = 1.0;
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
        checks.push(at_most(
            format!("{title}: paced 20 ms, CPU per event / the byte relay's (paired, median)"),
            num(&paced, "/median"),
            PACED_RATIO,
            "x",
            "<= 1.6x",
        ));
        // Not a target of the issue: the same ratio on a burst, beside it.
        checks.push(info(
            format!("{title}: burst, CPU per event / the byte relay's (paired, median; not a target)"),
            num(&burst, "/median"),
            "x",
        ));
        let streams = num(&many, "/concurrency").unwrap_or(0.0);
        let errors = num(&many, "/errors").unwrap_or(0.0);
        let mut rss = at_most(
            format!("{title}: RSS peak, {streams:.0} paced streams at once, 0 errors"),
            num(&many, "/procs/gateway/rss_peak_kb").map(|kb| kb / 1024.0),
            PACED_RSS_MB,
            "MB",
            "<= 300 MB (10,000 streams)",
        );
        if errors > 0.0 {
            rss.measured = format!("{} ({errors:.0} of {streams:.0} streams failed)", rss.measured);
            rss.ok = Some(false);
            rss.miss = format!("{errors:.0} streams failed");
        }
        checks.push(rss);
        let added = num(&c1, "/ttfb_ms/p50").zip(num(&direct, "/ttfb_ms/p50")).map(|(g, d)| g - d);
        checks.push(at_most(format!("{title}: c=1 added TTFB p50"), added, ADDED_TTFB_MS, "ms", "<= 1 ms"));
        rows.insert(
            key.to_string(),
            json!({"paced20_pair": paced, "burst_pair": burst, "c1": c1, "paced_streams": many}),
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

/// The goal of a figure shown with the targets but not one of them.
pub(super) const SHOWN: &str = "shown beside the target";

/// A figure shown with the targets but not one of them.
fn info(name: String, value: Option<f64>, unit: &str) -> Check {
    Check { name, measured: format!("{} {unit}", fmt(value, 3)), goal: SHOWN, ok: None, miss: String::new() }
}
