//! `codex-gateway audit export|verify`: the trail as JSON lines, or its hash chain walked (audit/), read from the
//! configured store whether or not a gateway runs.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Config;
use crate::store::audit::AuditFilter;
use crate::usage::when::now_ms;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Write the audit trail as JSON lines (one object per change, oldest first).
    Export {
        /// Only entries from then on: a duration ago (7d, 24h), a date (2026-11-01), an RFC 3339 time, unix
        /// seconds.
        #[arg(long)]
        since: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Check the trail's hash chain: exit 0 when whole, 1 naming the first row edited, removed or relinked.
    Verify,
}

pub async fn run(config: &Config, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || run_blocking(&config, cmd)).await?
}

fn run_blocking(config: &Config, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let store = config.open_store()?;
    match cmd {
        AuditCommand::Export { since, out } => {
            let since_ms = since.as_deref().map(|s| super::usage::since(s, now_ms())).transpose()?;
            let rows = store.audit_rows(&AuditFilter { since_ms, ..AuditFilter::default() })?;
            match out {
                Some(path) => {
                    let file =
                        std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    crate::audit::export::write_lines(&rows, &mut w)?;
                    eprintln!("{} entries written to {}", rows.len(), path.display());
                }
                None => {
                    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
                    match crate::audit::export::write_lines(&rows, &mut w) {
                        // A reader that has gone away (`| head`) ends the export quietly.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                        other => other?,
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify => {
            let rows = store.audit_rows(&AuditFilter::default())?;
            match crate::audit::verify::verify(&rows) {
                Ok(whole) => {
                    match whole.head {
                        Some((id, hash)) => say!("the audit trail is whole: {} entries, head {id} {hash}", whole.rows),
                        None => say!("the audit trail is empty"),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    eprintln!("the audit trail is broken at {broken}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
