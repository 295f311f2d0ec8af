//! The accept loop's failures that are not one connection's own (listen.rs): out of descriptors, mostly. Each is
//! counted (metrics/accepts.rs) and retried after 100 ms, and the log says why at most once per [`EVERY`]: the
//! first failure at once, then one summary of those since (`still out of descriptors: N accepts refused in the
//! last 10 s`, or that accepting resumed), not a line per retry (docs/operations.md, "Open files").
//!
//! Connections not accepted wait in the kernel's backlog, so nothing is lost while descriptors are short: the
//! streams in flight go on, and the waiting connections are served as their descriptors free up.

use std::io;
use std::time::{Duration, Instant};

use crate::metrics::accepts::{self, Cause};

/// At most one log line per this long while accepts fail.
pub(super) const EVERY: Duration = Duration::from_secs(10);

/// What to log, if anything, as [`Refusals`] decides.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// The first failure in [`EVERY`]: the error itself.
    First(Cause),
    /// Failures since the last line, still failing.
    Still { cause: Cause, refused: u64, over: Duration },
    /// Failures since the last line, and accepting again since.
    Resumed { cause: Cause, refused: u64, over: Duration },
}

/// The accept loop's failures since its last log line: a pure state machine (time handed in), tested below.
#[derive(Debug, Default)]
pub(super) struct Refusals {
    last_line: Option<Instant>,
    /// Failures not yet in a line.
    unlogged: u64,
    /// Whether the last accept failed.
    failing: bool,
    cause: Option<Cause>,
}

impl Refusals {
    /// An accept failed: count it, and say so if no line went out within [`EVERY`].
    pub(super) fn failed(&mut self, cause: Cause, now: Instant) -> Option<Line> {
        accepts::refused(cause);
        self.failing = true;
        self.cause = Some(cause);
        self.unlogged += 1;
        let due = self.last_line.is_none_or(|at| now.duration_since(at) >= EVERY);
        if !due {
            return None;
        }
        let line = match (self.unlogged, self.last_line) {
            (1, _) | (_, None) => Line::First(cause),
            (refused, Some(at)) => Line::Still { cause, refused, over: now.duration_since(at) },
        };
        self.logged(now);
        Some(line)
    }

    /// An accept succeeded.
    pub(super) fn accepted(&mut self) {
        self.failing = false;
    }

    /// When the summary of the failures not yet logged is due (`None`: nothing to sum up).
    pub(super) fn due_at(&self) -> Option<Instant> {
        match (self.unlogged, self.last_line) {
            (0, _) | (_, None) => None,
            (_, Some(at)) => Some(at + EVERY),
        }
    }

    /// The summary, at [`Refusals::due_at`].
    pub(super) fn summary(&mut self, now: Instant) -> Option<Line> {
        let (Some(at), Some(cause)) = (self.last_line, self.cause) else { return None };
        let (refused, over) = (self.unlogged, now.duration_since(at));
        if refused == 0 {
            return None;
        }
        self.logged(now);
        Some(match self.failing {
            true => Line::Still { cause, refused, over },
            false => Line::Resumed { cause, refused, over },
        })
    }

    fn logged(&mut self, now: Instant) {
        self.last_line = Some(now);
        self.unlogged = 0;
    }
}

/// Why an accept failed, from its error: `None` for one connection's own failure (reset or aborted before it was
/// accepted, a signal), which is skipped at once.
pub(super) fn cause(e: &io::Error) -> Option<Cause> {
    use io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted) {
        return None;
    }
    #[cfg(unix)]
    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
        return Some(Cause::Descriptors);
    }
    // WSAEMFILE: Windows' sockets count against no per-process limit, but the call has the error.
    #[cfg(windows)]
    if e.raw_os_error() == Some(10024) {
        return Some(Cause::Descriptors);
    }
    Some(Cause::Other)
}

/// Write `line` to the log; `error`: the failure that made it, for the first line.
pub(super) fn log(line: &Line, error: Option<&io::Error>) {
    let what = |cause: &Cause| match cause {
        Cause::Limit | Cause::Descriptors => "out of descriptors",
        Cause::Other => "accept failing",
    };
    let limit = || crate::descriptors::current().map_or_else(|| "unknown".into(), |l| crate::descriptors::show(l.soft));
    match line {
        Line::First(Cause::Limit) => tracing::warn!(
            "out of descriptors: {} connections open, as many as the open files limit of {} leaves room for; new \
             connections wait to be accepted until one closes, summed up here every {} s (docs/operations.md, \
             \"Open files\")",
            super::SLOTS.get().map_or(0, |(_, size)| *size),
            limit(),
            EVERY.as_secs()
        ),
        Line::First(Cause::Descriptors) => tracing::warn!(
            error = error.map(tracing::field::display),
            "out of descriptors: cannot accept connections (open files limit {}); they wait until streams end, \
             retried every 100 ms, summed up here every {} s (docs/operations.md, \"Open files\")",
            limit(),
            EVERY.as_secs()
        ),
        Line::First(Cause::Other) => tracing::warn!(
            error = error.map(tracing::field::display),
            "cannot accept connections; retried every 100 ms, summed up here every {} s",
            EVERY.as_secs()
        ),
        Line::Still { cause, refused, over } => {
            tracing::warn!("still {}: {refused} accepts refused in the last {} s", what(cause), over.as_secs())
        }
        Line::Resumed { cause, refused, over } => tracing::info!(
            "accepting connections again ({}: {refused} accepts refused in the last {} s)",
            what(cause),
            over.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Cause = Cause::Descriptors;

    #[test]
    fn a_run_of_failures_logs_the_first_then_one_summary_per_interval() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut r = Refusals::default();
        assert_eq!(r.due_at(), None);
        assert_eq!(r.failed(D, at(0)), Some(Line::First(D)));
        assert_eq!(r.due_at(), None, "nothing since the first line");
        // 99 retries at 100 ms: silent.
        for i in 1..100 {
            assert_eq!(r.failed(D, at(i * 100)), None, "retry {i}");
        }
        assert_eq!(r.due_at(), Some(at(10_000)));
        // The summary at its time, while still failing.
        assert_eq!(r.summary(at(10_000)), Some(Line::Still { cause: D, refused: 99, over: Duration::from_secs(10) }));
        assert_eq!(r.due_at(), None);
        // A failure that comes due itself (the timer not yet run) is a summary too, counting itself.
        for i in 1..100 {
            assert_eq!(r.failed(D, at(10_000 + i * 100)), None);
        }
        assert_eq!(
            r.failed(D, at(20_000)),
            Some(Line::Still { cause: D, refused: 100, over: Duration::from_secs(10) })
        );
    }

    #[test]
    fn accepting_again_is_said_once_with_the_failures_since_the_last_line() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut r = Refusals::default();
        assert_eq!(r.failed(D, at(0)), Some(Line::First(D)));
        assert_eq!(r.failed(D, at(100)), None);
        assert_eq!(r.failed(D, at(200)), None);
        r.accepted();
        // Flapping (a stream ends, one connection gets in, the next finds the limit again) stays quiet.
        assert_eq!(r.failed(D, at(300)), None);
        r.accepted();
        assert_eq!(r.due_at(), Some(at(10_000)));
        let line = r.summary(at(10_000));
        assert_eq!(line, Some(Line::Resumed { cause: D, refused: 3, over: Duration::from_secs(10) }));
        assert_eq!(r.due_at(), None, "nothing more to say");
        // A new failure within the interval of that line waits for the next summary.
        assert_eq!(r.failed(D, at(12_000)), None);
        assert_eq!(r.due_at(), Some(at(20_000)));
        // Long after every line: a new first line.
        let mut r = Refusals::default();
        assert_eq!(r.failed(D, at(0)), Some(Line::First(D)));
        r.accepted();
        assert_eq!(r.due_at(), None, "a lone failure was said in full");
        assert_eq!(r.failed(D, at(60_000)), Some(Line::First(D)));
    }

    #[cfg(unix)]
    #[test]
    fn the_cause_is_read_from_the_error() {
        assert_eq!(cause(&io::Error::from_raw_os_error(libc::EMFILE)), Some(Cause::Descriptors));
        assert_eq!(cause(&io::Error::from_raw_os_error(libc::ENFILE)), Some(Cause::Descriptors));
        assert_eq!(cause(&io::Error::from_raw_os_error(libc::ENOBUFS)), Some(Cause::Other));
        assert_eq!(cause(&io::Error::from(io::ErrorKind::ConnectionAborted)), None);
    }
}
