//! A serving gateway's log lines gathered in memory and written in batches: at most [`INTERVAL`] after the first
//! line of a batch, at once when a batch reaches [`BATCH_BYTES`], and at once (with every line before it) for a
//! warning or an error, or when the server stops ([`flush`]).
//!
//! Why: one `write` per line cost a streamed request ~4 us of its CPU on a log file (ext4's write path and the
//! inode's time update): the same binary with its stderr on /dev/null used 0.951 of the CPU per one-event request
//! at c=64, and batches gave back ~3% of it (paired; docs/performance.md, "Batched log writes"). A batch is one
//! `write` for every line in it, and a line gives nothing up that a reader needs: the batch is written within
//! [`INTERVAL`], lines stay in order, warnings and errors are never held back, and the lines are whole (a
//! rotated log file is cut between lines, as before). What a batch can lose is the information lines of its last
//! [`INTERVAL`] when the process is killed outright (`SIGKILL`, the OOM killer); a clean stop writes them.
//!
//! A thread of its own writes the due batches: it sleeps until a batch begins (a line into an empty buffer wakes
//! it, so an idle gateway has no timer), waits out the interval, and writes. Nothing here runs on the request
//! path but an append under a lock the line's `write` took anyway.

use std::io::{self, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// A batch is written this long after its first line at the latest...
const INTERVAL: Duration = Duration::from_millis(100);
/// ...or as soon as it holds this many bytes (~100 access lines).
const BATCH_BYTES: usize = 32 * 1024;

/// The lines waiting, and where they go.
struct Batch {
    lines: Vec<u8>,
    out: Box<dyn Write + Send>,
}

impl Batch {
    /// Write every waiting line in one call. On an error the lines are let go (a log that cannot be written must
    /// not grow without bound), and the error is the caller's.
    fn write_out(&mut self) -> io::Result<()> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let written = self.out.write_all(&self.lines).and_then(|()| self.out.flush());
        self.lines.clear();
        // A burst's buffer is not kept for good: an idle gateway's memory stays small.
        if self.lines.capacity() > 2 * BATCH_BYTES {
            self.lines = Vec::new();
        }
        written
    }
}

struct Shared {
    batch: Mutex<Batch>,
    /// [`INTERVAL`], but for tests.
    interval: Duration,
    /// Signalled when a line goes into an empty buffer: a batch has begun.
    begun: Condvar,
}

/// The `MakeWriter` of a batched log: cheap to clone, one buffer behind every clone.
#[derive(Clone)]
pub(crate) struct Batched {
    shared: Arc<Shared>,
}

/// The batched log of this process, for [`flush`].
static INSTALLED: OnceLock<Batched> = OnceLock::new();

impl Batched {
    /// Lines for `out`, written by a thread started here. The first one made in a process is what [`flush`]
    /// writes out.
    pub(crate) fn start(out: Box<dyn Write + Send>) -> io::Result<Batched> {
        Batched::start_with(out, INTERVAL)
    }

    fn start_with(out: Box<dyn Write + Send>, interval: Duration) -> io::Result<Batched> {
        let batch = Mutex::new(Batch { lines: Vec::new(), out });
        let batched = Batched { shared: Arc::new(Shared { batch, interval, begun: Condvar::new() }) };
        let shared = batched.shared.clone();
        std::thread::Builder::new().name("log-writer".into()).spawn(move || write_due_batches(&shared))?;
        let _ = INSTALLED.set(batched.clone());
        Ok(batched)
    }

    /// Append one line (the fmt layer writes each line with one `write_all`); `urgent` lines are written at
    /// once with all before them.
    fn append(&self, line: &[u8], urgent: bool) -> io::Result<()> {
        let mut batch = self.shared.batch.lock();
        let begins = batch.lines.is_empty();
        batch.lines.extend_from_slice(line);
        if urgent || batch.lines.len() >= BATCH_BYTES {
            return batch.write_out();
        }
        if begins {
            self.shared.begun.notify_one();
        }
        Ok(())
    }

    /// Write out whatever waits.
    fn write_out(&self) -> io::Result<()> {
        self.shared.batch.lock().write_out()
    }
}

/// The writer thread: wait for a batch to begin, let it gather for [`INTERVAL`], write it.
fn write_due_batches(shared: &Shared) {
    loop {
        {
            let mut batch = shared.batch.lock();
            while batch.lines.is_empty() {
                shared.begun.wait(&mut batch);
            }
        }
        std::thread::sleep(shared.interval);
        // A log that cannot be written has nowhere to say so; the next batch tries again.
        let _ = shared.batch.lock().write_out();
    }
}

/// Write out the lines the serving process's batched log holds (none: nothing to do). Called when the server
/// has stopped, so its last lines are not left to the writer thread as the process exits.
pub(crate) fn flush() {
    if let Some(batched) = INSTALLED.get() {
        let _ = batched.write_out();
    }
}

/// One line's writer, knowing the line's level.
pub(crate) struct Line<'a> {
    batched: &'a Batched,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.batched.append(buf, self.urgent)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = Line<'a>;

    /// A line of unknown level is treated as urgent.
    fn make_writer(&'a self) -> Line<'a> {
        Line { batched: self, urgent: true }
    }

    /// Warnings and errors are urgent (tracing orders levels from ERROR, the least verbose, up).
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        Line { batched: self, urgent: *meta.level() <= Level::WARN }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::logging::capture::Captured;

    fn text(sink: &Captured) -> (String, usize) {
        (sink.text(), sink.writes())
    }

    /// A subscriber writing to a batched log with this interval, and what reached the destination.
    fn batched_log(interval: Duration) -> io::Result<(tracing::subscriber::DefaultGuard, Captured)> {
        let sink = Captured::default();
        let batched = Batched::start_with(Box::new(sink.clone()), interval)?;
        let subscriber = tracing_subscriber::fmt().with_writer(batched).with_ansi(false).without_time().finish();
        Ok((tracing::subscriber::set_default(subscriber), sink))
    }

    /// Info lines wait for their batch; a warning takes every line before it along at once, in one write and in
    /// order; a full batch goes at once. Through a real subscriber, so the levels are tracing's own. The interval
    /// is long here, so no stall of the test's thread can let the writer thread write a batch in between.
    #[test]
    fn info_lines_wait_and_warnings_and_full_batches_go_at_once() -> io::Result<()> {
        let (_log, sink) = batched_log(Duration::from_secs(30))?;
        for i in 0..3 {
            tracing::info!("info {i}");
        }
        assert_eq!(text(&sink), (String::new(), 0), "held until the batch is due");
        tracing::warn!("warn 3");
        let (written, writes) = text(&sink);
        // The lines' target: this module's path, as tracing names it.
        let target = module_path!();
        let expected =
            format!("INFO {target}: info 0\n INFO {target}: info 1\n INFO {target}: info 2\n WARN {target}: warn 3\n");
        assert_eq!((written.trim_start(), writes), (expected.as_str(), 1), "at once, in one write, in order");

        let line = "x".repeat(1000);
        for _ in 0..BATCH_BYTES / 1000 {
            tracing::info!("{line}");
        }
        assert_eq!(text(&sink).1, 2, "a full batch is written without waiting");
        Ok(())
    }

    /// A batch is written by the writer thread once its interval has passed since its first line, not before.
    #[test]
    fn a_batch_is_written_when_its_interval_has_passed() -> io::Result<()> {
        let interval = Duration::from_millis(50);
        let (_log, sink) = batched_log(interval)?;
        let began = Instant::now();
        tracing::info!("info 0");
        while text(&sink).1 == 0 {
            assert!(began.elapsed() < interval * 100, "the batch was never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(began.elapsed() >= interval, "{:?}", began.elapsed());
        assert!(text(&sink).0.ends_with("info 0\n"));
        Ok(())
    }
}
