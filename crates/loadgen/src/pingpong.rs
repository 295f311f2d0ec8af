//! `pingpong`: the cost of one loopback TCP round trip between two threads, across two cores and within one.
//!
//! This is the physical floor under the c=1 latency figures. A request through the gateway crosses cores four
//! times (client -> gateway -> fake -> gateway -> client), where a direct request to the fake stays on the
//! fake's core; on a VM, waking a halted core costs far more than the bytes do. Blocking sockets and plain
//! threads, so that nothing but the kernel's path and the wake-ups is measured.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::PingpongArgs;
use crate::stats::Dist;

#[derive(Debug, Serialize)]
struct PingpongReport {
    /// The echo side's core and the sender's core for the cross-core run; the sender's core for the other.
    cores: (usize, usize),
    round_trips: usize,
    /// Pause between round trips, so the echo side goes idle as a server does between events.
    gap_us: u64,
    bytes: usize,
    cross_core_us: Dist,
    same_core_us: Dist,
}

pub fn pingpong(a: PingpongArgs) -> anyhow::Result<()> {
    let gap = Duration::from_micros(a.gap_us);
    let cross = measure(a.server_core, a.client_core, a.round_trips, gap)?;
    let same = measure(a.client_core, a.client_core, a.round_trips, gap)?;
    let report = PingpongReport {
        cores: (a.server_core, a.client_core),
        round_trips: a.round_trips,
        gap_us: a.gap_us,
        bytes: MESSAGE.len(),
        cross_core_us: cross,
        same_core_us: same,
    };
    eprintln!(
        "loadgen pingpong: loopback round trip p50 {:.1} us across cores, {:.1} us within one",
        report.cross_core_us.p50, report.same_core_us.p50
    );
    crate::jobs::emit(&report, a.out.as_deref())
}

const MESSAGE: &[u8] = b"ping ping ping ping ping ping ..";

/// Round trips from a sender on `client_core` to an echo thread on `server_core`, microseconds.
fn measure(server_core: usize, client_core: usize, round_trips: usize, gap: Duration) -> anyhow::Result<Dist> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the echo socket")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> anyhow::Result<()> {
        pin_to(server_core)?;
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&buf[..n])?;
        }
    });
    let sender = std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
        pin_to(client_core)?;
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        let warmup = round_trips / 10;
        let mut samples = Vec::with_capacity(round_trips);
        for i in 0..warmup + round_trips {
            let start = Instant::now();
            s.write_all(MESSAGE)?;
            s.read_exact(&mut buf[..MESSAGE.len()])?;
            if i >= warmup {
                samples.push(start.elapsed().as_secs_f64() * 1e6);
            }
            let idle = Instant::now();
            while idle.elapsed() < gap {
                std::hint::spin_loop();
            }
        }
        Ok(samples)
    });
    let samples = sender.join().map_err(|_| anyhow::anyhow!("the sender thread panicked"))??;
    echo.join().map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;
    Ok(Dist::of(samples))
}

/// Restrict the calling thread to one core.
fn pin_to(core: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch that local value
    // and the calling thread (pid 0).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        bail!("cannot pin a thread to core {core}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_are_timed_on_one_core() {
        let d = measure(0, 0, 200, Duration::ZERO).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(d.p50 > 0.0 && d.p50 <= d.p99 && d.p99 <= d.max, "{d:?}");
        assert!(d.max < 1e6, "a loopback round trip took {} us", d.max);
    }
}
