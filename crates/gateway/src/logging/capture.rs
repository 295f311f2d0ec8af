//! (Tests only.) A log destination a test can read: the bytes written to it, and how many writes brought them.

use std::io::Write;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<(Vec<u8>, usize)>>);

impl Captured {
    /// What was written, as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().0).into_owned()
    }

    /// How many `write` calls it took.
    pub(crate) fn writes(&self) -> usize {
        self.0.lock().1
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut c = self.0.lock();
        c.0.extend_from_slice(buf);
        c.1 += 1;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}
