//! Where log lines go: stderr (the default, for a terminal, a container or systemd's journal), or a file rotated
//! by size (`serve --log-file`, which `start` passes so a background gateway does not fill the disk). The level
//! filter sits behind a reload layer so a config reload can change it ([`set_filter`], app/reload.rs).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::{Config, LogFormat};

#[cfg(test)]
pub(crate) mod capture;

/// A log file is rotated once it passes this size: `gateway.log` becomes `gateway.log.1`, and so on.
pub(crate) const LOG_FILE_BYTES: usize = 10 * 1024 * 1024;
/// Rotated files kept besides the current one (so at most ~60 MB of logs).
pub(crate) const LOG_FILES_KEPT: usize = 5;

/// Install the global subscriber: `config.log` as the filter, `config.log_format` as the format, lines to
/// `file` (rotated by size) or to stderr.
pub(crate) fn init(config: &Config, file: Option<&Path>) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let out: Box<dyn std::io::Write + Send> = match file {
        Some(path) => Box::new(rotating(path)?),
        None => Box::new(std::io::stderr()),
    };
    let writer = BoxMakeWriter::new(std::sync::Mutex::new(out));
    // The reload layer costs an uncontended read lock per log line that passes the callsite's cached interest.
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    // A second call (tests that run several commands in one process) keeps the first subscriber.
    let installed = match config.log_format {
        // tracing-subscriber's default (`Full`) format, without the target.
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_target(false).with_writer(writer).with_ansi(ansi))
            .try_init(),
        // One JSON object per line; the target says which lines are access lines (`codex_gateway::access`).
        LogFormat::Json => {
            registry.with(tracing_subscriber::fmt::layer().json().with_writer(writer).with_target(true)).try_init()
        }
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
    Ok(())
}

/// The installed subscriber's filter (none before `init`, or in a process that installed its own).
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// What changing the log filter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterChange {
    Applied,
    /// This process did not install its subscriber through [`init`] (an embedding program, a test).
    NoSubscriber,
}

/// Replace the log filter (`log` / `RUST_LOG` syntax). An invalid directive is an error, and the old filter stays.
pub fn set_filter(directives: &str) -> anyhow::Result<FilterChange> {
    let filter = EnvFilter::try_new(directives).with_context(|| format!("log = `{directives}` is not a log filter"))?;
    match FILTER.get() {
        Some(handle) => {
            handle.reload(filter).context("the log filter could not be replaced")?;
            Ok(FilterChange::Applied)
        }
        None => Ok(FilterChange::NoSubscriber),
    }
}

/// A size-rotated log file, private (0600) like everything in the data directory. The file is opened here
/// first so a path that cannot be written is a clear error at start, not a lost log.
fn rotating(path: &Path) -> anyhow::Result<FileRotate<AppendCount>> {
    let mut options = crate::store::private_options();
    options.read(true).create(true).append(true);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        crate::store::create_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    options.open(path).with_context(|| format!("cannot open the log file {}", path.display()))?;
    // The crate needs a path with a parent directory (it panics otherwise): make a bare file name relative.
    let path = if dir.is_some() { path.to_path_buf() } else { Path::new(".").join(path) };
    Ok(FileRotate::new(
        path,
        AppendCount::new(LOG_FILES_KEPT),
        // Rotate after the line that passes the limit, so no line is split across two files.
        ContentLimit::BytesSurpassed(LOG_FILE_BYTES),
        Compression::None,
        Some(options),
    ))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    /// A reload with a broken `log` value is refused (the old filter stays); without our subscriber there is
    /// nothing to change, and saying so is not an error.
    #[test]
    fn a_log_filter_that_does_not_parse_is_refused() {
        assert!(super::set_filter("codex_gateway=nonsense[").is_err());
        assert!(super::set_filter("info,codex_gateway::access=warn").is_ok());
    }

    #[test]
    fn the_log_file_rotates_by_size_and_keeps_a_bounded_number() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-log-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("gateway.log");
        let mut log = super::rotating(&path)?;
        for i in 0..10 {
            writeln!(log, "{i} {}", "x".repeat(super::LOG_FILE_BYTES / 4))?;
        }
        log.flush()?;
        let names: Vec<String> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        assert!(names.contains(&"gateway.log.1".to_string()), "{names:?}");
        assert!(names.len() <= 1 + super::LOG_FILES_KEPT, "{names:?}");
        for name in &names {
            let len = std::fs::metadata(dir.join(name))?.len() as usize;
            assert!(len <= super::LOG_FILE_BYTES + super::LOG_FILE_BYTES / 4 + 16, "{name}: {len}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
