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
    pub procs: BTreeMap<String, Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fake_connections: Option<FakeConnections>,
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
    fn nearest_rank_percentiles() {
        let d = Dist::of((1..=100).map(f64::from).collect());
        assert_eq!((d.p50, d.p90, d.p99, d.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Dist::of(vec![]).p50, 0.0);
    }
}
