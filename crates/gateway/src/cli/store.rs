//! `codex-gateway store migrate --from sqlite:PATH --to postgres://...`: copy a single instance's accounts
//! (with their tokens) and client keys into a PostgreSQL team store (docs/team.md; the copy itself is
//! `store/postgres/copy.rs`).

use clap::Subcommand;

use crate::store::postgres::copy::migrate;
use crate::store::postgres::redact_url;

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Copy accounts, tokens and client keys from a gateway's SQLite store into PostgreSQL.
    Migrate {
        /// The source: `sqlite:PATH` (a gateway.db file).
        #[arg(long)]
        from: String,
        /// The destination: a PostgreSQL URL (`postgres://user:password@host/db?sslmode=require`).
        #[arg(long)]
        to: String,
    },
}

pub fn run(cmd: StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Migrate { from, to } => {
            let report = migrate(&from, &to)?;
            let listed = |what: &str, names: &[String]| match names.is_empty() {
                true => String::new(),
                false => format!("; {what}: {}", names.join(", ")),
            };
            say!(
                "Copied {} account(s), {} client key(s) and {} user(s) into {}{}{}",
                report.accounts,
                report.keys,
                report.users,
                redact_url(&to),
                listed("skipped (kind unknown to this build)", &report.skipped),
                listed("users not copied (the name is another user's there)", &report.users_skipped)
            );
            Ok(())
        }
    }
}
