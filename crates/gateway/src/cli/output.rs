//! What a command prints on stdout, through [`say!`]: when the reader has gone away (`codex-gateway usage |
//! head`) the command ends quietly with the status a Unix tool killed by SIGPIPE has, where `println!` would
//! panic. Rust ignores SIGPIPE so that a write to a closed socket is an error rather than the end of the process;
//! restoring the signal would bring that back for the commands' own HTTP calls, so stdout is handled here.

use std::io::{ErrorKind, Write};

/// The exit status of a process ended by SIGPIPE (128 + 13), what shells and `pipefail` expect of a writer
/// whose reader left.
const CLOSED_PIPE_STATUS: i32 = 141;

/// Write `text` to stdout as it is.
pub(crate) fn text(text: std::fmt::Arguments<'_>) {
    write(|out| out.write_fmt(text));
}

/// Write `line` and a newline to stdout.
pub(crate) fn line(line: std::fmt::Arguments<'_>) {
    text(format_args!("{line}\n"));
}

/// Write `bytes` (a generated script or page) to stdout.
pub(crate) fn bytes(bytes: &[u8]) {
    write(|out| out.write_all(bytes));
}

fn write(put: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = put(&mut out).and_then(|()| out.flush()) {
        match e.kind() {
            ErrorKind::BrokenPipe => std::process::exit(CLOSED_PIPE_STATUS),
            _ => {
                eprintln!("error: cannot write to stdout: {e}");
                std::process::exit(1);
            }
        }
    }
}
