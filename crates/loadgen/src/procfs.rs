//! CPU time and memory of another process, from `/proc/<pid>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Clock ticks per second for `/proc/<pid>/stat` times.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// utime + stime of the whole process (all threads, dead ones included), in milliseconds.
pub fn cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 * 1000.0 / ticks_per_second() as f64)
}

/// A `Vm*:` line of `/proc/<pid>/status`, in KiB.
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// Reset the process's peak RSS (`VmHWM`) so a run sees its own peak; needs permission over the process.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// A watched process during one measured run.
pub struct Watch {
    pub name: String,
    pub pid: u32,
    cpu_start: f64,
    rss_start_kb: u64,
    peak_reset: bool,
    sampled_peak_kb: Arc<AtomicU64>,
}

/// What a run cost a watched process.
#[derive(Debug, Serialize)]
pub struct Usage {
    pub pid: u32,
    pub cpu_ms: f64,
    /// CPU time per successful request, microseconds.
    pub cpu_us_per_request: Option<f64>,
    /// Busy share of one core over the run.
    pub cpu_share_of_one_core: f64,
    pub rss_start_kb: u64,
    pub rss_end_kb: u64,
    /// The highest of VmHWM (reset at the start when allowed) and the 20 ms samples.
    pub rss_peak_kb: u64,
    pub vmhwm_reset: bool,
}

impl Watch {
    /// Parse `name=pid`.
    pub fn parse(spec: &str) -> anyhow::Result<Watch> {
        let (name, pid) = spec.split_once('=').ok_or_else(|| anyhow::anyhow!("--watch wants name=pid, got {spec}"))?;
        let pid: u32 = pid.parse()?;
        if cpu_ms(pid).is_none() {
            anyhow::bail!("process {pid} ({name}) is not readable in /proc");
        }
        Ok(Watch {
            name: name.to_string(),
            pid,
            cpu_start: 0.0,
            rss_start_kb: 0,
            peak_reset: false,
            sampled_peak_kb: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Mark the start of the measured run and sample RSS every 20 ms until `stop` is dropped.
    pub fn start(&mut self) -> tokio::sync::oneshot::Sender<()> {
        self.peak_reset = reset_peak(self.pid);
        self.cpu_start = cpu_ms(self.pid).unwrap_or(0.0);
        self.rss_start_kb = status_kb(self.pid, "VmRSS").unwrap_or(0);
        self.sampled_peak_kb.store(self.rss_start_kb, Ordering::Relaxed);
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let peak = self.sampled_peak_kb.clone();
        let pid = self.pid;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            // Ends when the sender is dropped or used (bounded by the run's own length).
            loop {
                tokio::select! {
                    _ = &mut rx => return,
                    _ = tick.tick() => {
                        if let Some(kb) = status_kb(pid, "VmRSS") {
                            peak.fetch_max(kb, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        tx
    }

    pub fn finish(&self, elapsed: Duration, requests: u64) -> Usage {
        let cpu = cpu_ms(self.pid).unwrap_or(self.cpu_start) - self.cpu_start;
        let rss_end_kb = status_kb(self.pid, "VmRSS").unwrap_or(0);
        let hwm = if self.peak_reset { status_kb(self.pid, "VmHWM").unwrap_or(0) } else { 0 };
        let peak = self.sampled_peak_kb.load(Ordering::Relaxed).max(hwm).max(rss_end_kb);
        Usage {
            pid: self.pid,
            cpu_ms: cpu,
            cpu_us_per_request: (requests > 0).then(|| cpu * 1000.0 / requests as f64),
            cpu_share_of_one_core: cpu / 1000.0 / elapsed.as_secs_f64().max(1e-9),
            rss_start_kb: self.rss_start_kb,
            rss_end_kb,
            rss_peak_kb: peak,
            vmhwm_reset: self.peak_reset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(cpu_ms(pid).is_some());
        assert!(status_kb(pid, "VmRSS").is_some_and(|kb| kb > 0));
    }
}
