//! Percentiles and the JSON report of a run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::procfs::Usage;
use crate::target::Sample;

/// Distribution of one timing, milliseconds.
#[derive(Debug, Serialize, Default, Clone, Copy)]
pub struct Dist {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Dist {
    pub fn of(mut v: Vec<f64>) -> Dist {
        if v.is_empty() {
            return Dist::default();
        }
        v.sort_by(f64::total_cmp);
        // Nearest-rank percentile.
        let pick = |p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Dist {
            p50: pick(50.0),
            p90: pick(90.0),
            p99: pick(99.0),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Upstream connections the fake accepted during the run.
#[derive(Debug, Serialize)]
pub struct FakeConnections {
    pub opened: u64,
    pub per_1000_requests: f64,
}

/// The report of a `run`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub url: String,
    pub dialect: String,
    pub stream: bool,
    pub concurrency: usize,
    pub requests_ok: u64,
    pub errors: u64,
    /// Up to 5 distinct error messages with their counts.
    pub error_samples: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    pub req_per_s: f64,
    pub events_per_s: f64,
    pub events_per_request: f64,
    pub bytes_per_request: f64,
    pub ttfb_ms: Dist,
    /// Time to the first content token (the whole answer when not streaming).
    pub ttft_ms: Dist,
    pub total_ms: Dist,
    /// total p99 / total p50.
    pub tail_ratio: f64,
    /// When the slowest 1% were sent: spread over the run, or bunched in a few moments.
    pub tail_windows: TailWindows,
    pub procs: BTreeMap<String, Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fake_connections: Option<FakeConnections>,
}

/// Where in time the requests at or above the total-time p99 were sent, in [`TailWindows::WINDOW_MS`] windows.
/// Queueing spreads them over the whole run; a stall of the machine (every request in flight slowed at once)
/// bunches them into a few windows.
#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq)]
pub struct TailWindows {
    pub window_ms: u64,
    /// Windows in the run (that sent at least one request).
    pub windows: usize,
    /// Windows that sent at least one request at or above the p99.
    pub windows_with_tail: usize,
    /// Share of those requests sent in the 5 windows holding most of them.
    pub share_in_top5: f64,
}

impl TailWindows {
    pub const WINDOW_MS: u64 = 100;

    /// `samples`: (send time since the start of the run, total time), any order.
    pub fn of(samples: &[(Duration, Duration)]) -> TailWindows {
        let mut totals: Vec<Duration> = samples.iter().map(|s| s.1).collect();
        totals.sort();
        let Some(&p99) = totals.get(((totals.len() as f64 * 0.99).ceil() as usize).max(1) - 1) else {
            return TailWindows::default();
        };
        let window = |sent: Duration| sent.as_millis() as u64 / Self::WINDOW_MS;
        let mut all: BTreeMap<u64, usize> = BTreeMap::new();
        let mut tail: BTreeMap<u64, usize> = BTreeMap::new();
        for (sent, total) in samples {
            *all.entry(window(*sent)).or_default() += 1;
            if *total >= p99 {
                *tail.entry(window(*sent)).or_default() += 1;
            }
        }
        let mut counts: Vec<usize> = tail.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let in_tail: usize = counts.iter().sum();
        let top5: usize = counts.iter().take(5).sum();
        TailWindows {
            window_ms: Self::WINDOW_MS,
            windows: all.len(),
            windows_with_tail: tail.len(),
            share_in_top5: if in_tail > 0 { top5 as f64 / in_tail as f64 } else { 0.0 },
        }
    }
}

/// Samples and errors of all workers.
#[derive(Default)]
pub struct Collected {
    pub samples: Vec<Sample>,
    pub errors: u64,
    pub error_samples: BTreeMap<String, u64>,
}

impl Collected {
    pub fn error(&mut self, e: &anyhow::Error) {
        self.errors += 1;
        let mut msg = format!("{e:#}");
        msg.truncate(300);
        if let Some(n) = self.error_samples.get_mut(&msg) {
            *n += 1;
        } else if self.error_samples.len() < 5 {
            self.error_samples.insert(msg, 1);
        }
    }

    pub fn merge(&mut self, other: Collected) {
        self.samples.extend(other.samples);
        self.errors += other.errors;
        for (k, v) in other.error_samples {
            if let Some(n) = self.error_samples.get_mut(&k) {
                *n += v;
            } else if self.error_samples.len() < 5 {
                self.error_samples.insert(k, v);
            }
        }
    }

    /// `run --samples`: one CSV line per measured request, ordered by send time (`from`: the start of the run).
    pub fn write_csv(&self, path: &std::path::Path, from: std::time::Instant) -> anyhow::Result<()> {
        use anyhow::Context;
        let mut rows: Vec<&Sample> = self.samples.iter().collect();
        rows.sort_by_key(|s| s.sent);
        let mut out = String::from("sent_ms,ttfb_ms,ttft_ms,total_ms\n");
        for s in rows {
            let sent = ms(s.sent.saturating_duration_since(from));
            out.push_str(&format!("{sent:.3},{:.3},{:.3},{:.3}\n", ms(s.ttfb), ms(s.ttft), ms(s.total)));
        }
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
    }

    pub fn timings(&self) -> (Dist, Dist, Dist) {
        let ttfb = Dist::of(self.samples.iter().map(|s| ms(s.ttfb)).collect());
        let ttft = Dist::of(self.samples.iter().map(|s| ms(s.ttft)).collect());
        let total = Dist::of(self.samples.iter().map(|s| ms(s.total)).collect());
        (ttfb, ttft, total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_windows_tell_a_stall_from_spread() {
        let ms = Duration::from_millis;
        // 2 s of requests every 1 ms taking 10 ms, except that everything sent in 300..400 ms took 30 ms.
        let stalled: Vec<_> =
            (0..2000u64).map(|t| (ms(t), if (300..400).contains(&t) { ms(30) } else { ms(10) })).collect();
        let w = TailWindows::of(&stalled);
        assert_eq!((w.windows, w.windows_with_tail, w.share_in_top5), (20, 1, 1.0));
        // Slow requests spread out: two in every window.
        let spread: Vec<_> = (0..2000u64).map(|t| (ms(t), if t % 50 == 7 { ms(30) } else { ms(10) })).collect();
        let w = TailWindows::of(&spread);
        assert_eq!((w.windows, w.windows_with_tail), (20, 20));
        assert!((w.share_in_top5 - 0.25).abs() < 1e-9);
        assert_eq!(TailWindows::of(&[]), TailWindows::default());
    }

    #[test]
    fn samples_are_written_in_send_order() {
        let from = std::time::Instant::now();
        let ms = Duration::from_millis;
        let sample = |sent: u64, total: u64| Sample {
            sent: from + ms(sent),
            ttfb: ms(1),
            ttft: ms(2),
            total: ms(total),
            events: 0,
            bytes: 0,
        };
        let col = Collected { samples: vec![sample(20, 7), sample(5, 9)], ..Collected::default() };
        let path = std::env::temp_dir().join(format!("loadgen-samples-{}.csv", std::process::id()));
        assert!(col.write_csv(&path, from).is_ok());
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text, "sent_ms,ttfb_ms,ttft_ms,total_ms\n5.000,1.000,2.000,9.000\n20.000,1.000,2.000,7.000\n");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let d = Dist::of((1..=100).map(f64::from).collect());
        assert_eq!((d.p50, d.p90, d.p99, d.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Dist::of(vec![]).p50, 0.0);
    }
}
