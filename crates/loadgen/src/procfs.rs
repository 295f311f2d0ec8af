//! CPU time and memory of another process, from `/proc/<pid>`.

use std::collections::HashMap;
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

/// Time on a CPU of each live thread of the process, in nanoseconds (the first field of
/// `/proc/<pid>/task/<tid>/schedstat`, the scheduler's own count), by thread id.
pub fn threads_cpu_ns(pid: u32) -> Option<HashMap<u32, u64>> {
    let mut threads = HashMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(entry) = entry else { continue };
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else { continue };
        // A thread that ended since the listing has no file any more: it is left out (see `Watch::finish`).
        let Ok(line) = std::fs::read_to_string(entry.path().join("schedstat")) else { continue };
        if let Some(ns) = line.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()) {
            threads.insert(tid, ns);
        }
    }
    (!threads.is_empty()).then_some(threads)
}

/// CPU time the threads alive at the end used since the start, in milliseconds: a thread new since then counts
/// from zero.
fn threads_cpu_ms_since(start: &HashMap<u32, u64>, end: &HashMap<u32, u64>) -> f64 {
    let ns: u64 = end.iter().map(|(tid, ns)| ns.saturating_sub(start.get(tid).copied().unwrap_or(0))).sum();
    ns as f64 / 1e6
}

/// The CPU time of a measured run: the threads' nanosecond counts when they account for it, else the process
/// total from `/proc/<pid>/stat`.
///
/// Why two sources: `stat` counts every thread, ended ones too, but in clock ticks (10 ms) for user and system
/// time each, so a run that used 0.35 s of CPU (64 streams paced 20 ms apart for 6 s) read up to ±6% off, and a
/// ratio of two such readings twice that. The threads' counts are exact but miss a thread that ended during the
/// run. So: exact, unless `stat` saw more than its own rounding can explain, which only an ended thread's time
/// can be.
fn run_cpu_ms(ticks_ms: f64, threads_ms: Option<f64>) -> (f64, bool) {
    let rounding_ms = 2.0 * 1000.0 / ticks_per_second() as f64;
    match threads_ms {
        Some(exact) if ticks_ms - exact <= rounding_ms + 1.0 => (exact, true),
        _ => (ticks_ms, false),
    }
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
    threads_start: Option<HashMap<u32, u64>>,
    rss_start_kb: u64,
    peak_reset: bool,
    sampled_peak_kb: Arc<AtomicU64>,
}

/// What a run cost a watched process.
#[derive(Debug, Serialize)]
pub struct Usage {
    pub pid: u32,
    pub cpu_ms: f64,
    /// `cpu_ms` is the threads' nanosecond count (else the process's clock ticks; see `run_cpu_ms`).
    pub cpu_exact: bool,
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
            threads_start: None,
            rss_start_kb: 0,
            peak_reset: false,
            sampled_peak_kb: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Mark the start of the measured run and sample RSS every 20 ms until `stop` is dropped.
    pub fn start(&mut self) -> tokio::sync::oneshot::Sender<()> {
        self.peak_reset = reset_peak(self.pid);
        self.cpu_start = cpu_ms(self.pid).unwrap_or(0.0);
        self.threads_start = threads_cpu_ns(self.pid);
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
        let ticks = cpu_ms(self.pid).unwrap_or(self.cpu_start) - self.cpu_start;
        let threads = match (&self.threads_start, threads_cpu_ns(self.pid)) {
            (Some(start), Some(end)) => Some(threads_cpu_ms_since(start, &end)),
            _ => None,
        };
        let (cpu, cpu_exact) = run_cpu_ms(ticks, threads);
        let rss_end_kb = status_kb(self.pid, "VmRSS").unwrap_or(0);
        let hwm = if self.peak_reset { status_kb(self.pid, "VmHWM").unwrap_or(0) } else { 0 };
        let peak = self.sampled_peak_kb.load(Ordering::Relaxed).max(hwm).max(rss_end_kb);
        Usage {
            pid: self.pid,
            cpu_ms: cpu,
            cpu_exact,
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

    /// A thread's nanosecond count follows its busy time; the run's CPU is exact while the ticks agree with it,
    /// and a thread that ended during the run (seen only by the ticks) is not lost.
    #[test]
    fn run_cpu_is_exact_and_keeps_ended_threads() {
        // Busy until the calling thread itself has run `ms` on a CPU (wall time would fall short on a loaded host).
        let thread_cpu_ns = || {
            let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: clock_gettime writes only the timespec it is given.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
            t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
        };
        let spin = move |ms: u64| {
            let until = thread_cpu_ns() + ms * 1_000_000;
            let mut x = 0u64;
            while thread_cpu_ns() < until {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        };
        let pid = std::process::id();
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() } as u32;
        let before = threads_cpu_ns(pid).and_then(|t| t.get(&me).copied()).unwrap_or(u64::MAX);
        spin(120);
        let after = threads_cpu_ns(pid).and_then(|t| t.get(&me).copied()).unwrap_or(0);
        assert!(after.saturating_sub(before) >= 100_000_000, "this thread: {before} -> {after} ns");

        // A thread new since the start counts from zero; one gone by the end is missing from the sum.
        let start = HashMap::from([(1, 5_000_000), (2, 7_000_000)]);
        let end = HashMap::from([(1, 9_000_000), (3, 2_000_000)]);
        assert_eq!(threads_cpu_ms_since(&start, &end), 6.0);
        // Ticks within their rounding of the exact count: exact; beyond it: the ticks.
        assert_eq!(run_cpu_ms(350.0, Some(343.217)), (343.217, true));
        assert_eq!(run_cpu_ms(500.0, Some(343.217)), (500.0, false));
        assert_eq!(run_cpu_ms(500.0, None), (500.0, false));

        // A thread that spins and ends: its time shows only in the ticks, which win.
        let (ticks0, threads0) = (cpu_ms(pid).unwrap_or(0.0), threads_cpu_ns(pid).unwrap_or_default());
        let _ = std::thread::spawn(move || spin(150)).join();
        let ticks = cpu_ms(pid).unwrap_or(0.0) - ticks0;
        let exact = threads_cpu_ms_since(&threads0, &threads_cpu_ns(pid).unwrap_or_default());
        let (cpu, is_exact) = run_cpu_ms(ticks, Some(exact));
        assert!(!is_exact && cpu >= 120.0, "ticks {ticks} ms, threads {exact} ms");
    }
}
