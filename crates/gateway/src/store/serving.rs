//! One serving gateway per local store: `serve` holds an exclusive lock on `gateway.lock` in the data directory
//! for as long as it runs, and the commands that would spend a refresh token behind its back ask whether it is
//! held. Two gateways on one SQLite store share no refresh lock (the team store has its own, docs/team.md), so
//! each would refresh the same accounts and the second refresh of a single-use token logs the account out.
//!
//! The lock is the operating system's (`flock` through `File::try_lock`): it ends with the process however the
//! process ends, so a crash leaves nothing stale behind. The file also names the holder's pid, for the message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

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
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let p = path(data_dir);
    options.open(&p).with_context(|| format!("cannot open {}", p.display()))
}

/// The pid the lock file names (the process that last took it).
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Take the lock for `serve`, or say which gateway holds it.
pub fn take(data_dir: &Path) -> anyhow::Result<ServingLock> {
    let mut file = open(data_dir)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())?;
            Ok(ServingLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let pid = holder(&mut file).map(|p| format!(" (pid {p})")).unwrap_or_default();
            bail!(
                "another codex-gateway{pid} already serves the data directory {}: two on one store would each \
                 refresh the same accounts' single-use tokens and log them out. Stop it (`codex-gateway stop`), \
                 or give this one a data directory of its own (--data-dir); gateways share accounts through the \
                 team store (docs/team.md)",
                data_dir.display()
            )
        }
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path(data_dir).display())),
    }
}

/// The pid of the gateway serving `data_dir`, when one holds the lock (`Some(None)`: held, holder unknown).
pub fn held_by(data_dir: &Path) -> Option<Option<u32>> {
    let mut file = File::open(path(data_dir)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => Some(holder(&mut file)),
        Err(TryLockError::Error(_)) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_lock_ends_with_it() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-serving-{}", uuid::Uuid::new_v4().simple()));
        assert_eq!(held_by(&dir), None, "no file yet");
        let first = take(&dir)?;
        assert_eq!(held_by(&dir), Some(Some(std::process::id())));
        let second = take(&dir).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(second.contains(&format!("(pid {})", std::process::id())), "{second}");
        drop(first);
        assert_eq!(held_by(&dir), None);
        let again = take(&dir)?;
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
