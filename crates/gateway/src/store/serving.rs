//! One serving gateway per local store: `serve` holds an exclusive lock on `gateway.lock` in the data directory
//! for as long as it runs, and the commands that would spend a refresh token behind its back ask whether it is
//! held. Two gateways on one SQLite store share no refresh lock (the team store has its own, docs/team.md), so
//! each would refresh the same accounts and the second refresh of a single-use token logs the account out.
//!
//! The lock is the operating system's (`flock` through `File::try_lock`): it ends with the process however the
//! process ends, so a crash leaves nothing stale behind. The file also names the holder's pid, for the message.
//!
//! A command that works on the accounts itself (no gateway answered it) holds the lock shared for as long as it
//! runs, so a `serve` started meanwhile cannot begin refreshing beside it. Shared holds are short (a probe holds
//! one for microseconds, a command for seconds), so `serve` retries for a moment before it gives up.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Held while this process serves the data directory; dropping it (or exiting) lets another serve.
#[derive(Debug)]
pub struct ServingLock {
    _file: File,
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("gateway.lock")
}

fn open(data_dir: &Path) -> anyhow::Result<File> {
    super::create_private_dir(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let p = path(data_dir);
    let mut options = super::private_options();
    options.read(true).write(true).create(true).truncate(false);
    options.open(&p).with_context(|| format!("cannot open {}", p.display()))
}

/// The pid the lock file names (the process that last took it).
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// How long `serve` waits for shared holders (probes and local commands) to let go before it gives up.
const TAKE_PATIENCE: Duration = Duration::from_secs(3);

/// Take the lock for `serve`, or say which gateway holds it.
pub fn take(data_dir: &Path) -> anyhow::Result<ServingLock> {
    take_within(data_dir, TAKE_PATIENCE)
}

fn take_within(data_dir: &Path, patience: Duration) -> anyhow::Result<ServingLock> {
    let mut file = open(data_dir)?;
    let deadline = Instant::now() + patience;
    let mut attempt = file.try_lock();
    // A shared holder (another command's probe or its own work) lets go soon; a serving gateway never does.
    while matches!(attempt, Err(TryLockError::WouldBlock)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        attempt = file.try_lock();
    }
    match attempt {
        Ok(()) => {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            Ok(ServingLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let pid = holder(&mut file).map(|p| format!(" (pid {p})")).unwrap_or_default();
            bail!(
                "another codex-gateway{pid} already serves the data directory {}, or a command that works on its \
                 accounts is still running: two on one store would each refresh the same accounts' single-use \
                 tokens and log them out. Stop the other gateway (`codex-gateway stop`) or wait for the command, \
                 or give this one a data directory of its own (--data-dir); gateways share accounts through the \
                 team store (docs/team.md)",
                data_dir.display()
            )
        }
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path(data_dir).display())),
    }
}

/// Held while a command works on the accounts without a gateway (a shared lock: commands may run side by side,
/// a `serve` waits for them).
#[derive(Debug)]
pub struct CommandLock {
    _file: File,
}

/// Why a command may not work on the accounts itself.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// A gateway serves the data directory (its pid, when the lock file names one).
    Serving(Option<u32>),
}

/// Hold the lock shared for a command that works on the accounts itself, or refuse because a gateway serves the
/// data directory. The hold lasts until the returned lock is dropped, so no `serve` starts beside the command.
pub fn hold_for_command(data_dir: &Path) -> anyhow::Result<Result<CommandLock, Refused>> {
    let mut file = open(data_dir)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(Ok(CommandLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(Err(Refused::Serving(holder(&mut file)))),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path(data_dir).display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("cgw-serving-{}", uuid::Uuid::new_v4().simple()))
    }

    fn refused(dir: &Path) -> anyhow::Result<Option<Refused>> {
        Ok(hold_for_command(dir)?.err())
    }

    #[test]
    fn one_holder_at_a_time_and_the_lock_ends_with_it() -> anyhow::Result<()> {
        let dir = temp_dir();
        assert_eq!(refused(&dir)?, None, "nobody serves a fresh directory");
        let first = take(&dir)?;
        assert_eq!(refused(&dir)?, Some(Refused::Serving(Some(std::process::id()))));
        let second = take_within(&dir, Duration::from_millis(100)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(second.contains(&format!("(pid {})", std::process::id())), "{second}");
        drop(first);
        assert_eq!(refused(&dir)?, None);
        let again = take(&dir)?;
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn serve_waits_out_a_command_and_is_refused_while_one_keeps_working() -> anyhow::Result<()> {
        let dir = temp_dir();
        // A command's hold (or another command's momentary probe) that ends soon: `serve` takes the lock after it.
        let command = hold_for_command(&dir)?.map_err(|r| anyhow::anyhow!("{r:?}"))?;
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(command);
        });
        let started = Instant::now();
        let serving = take_within(&dir, Duration::from_secs(5))?;
        assert!(started.elapsed() >= Duration::from_millis(100), "it waited for the command");
        release.join().map_err(|_| anyhow::anyhow!("the releasing thread panicked"))?;
        drop(serving);
        // A command that keeps working past the wait: `serve` says why it cannot start.
        let command = hold_for_command(&dir)?.map_err(|r| anyhow::anyhow!("{r:?}"))?;
        let error = take_within(&dir, Duration::from_millis(100)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("a command that works on its accounts"), "{error}");
        // Commands run side by side.
        assert_eq!(refused(&dir)?, None);
        drop(command);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
