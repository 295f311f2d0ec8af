//! The PostgreSQL schema: numbered migrations of its own (the SQLite ones are `sqlite/mod.rs`'s), applied in
//! order under a transaction-scoped advisory lock, so instances that start together migrate once.

use anyhow::Context;
use deadpool_postgres::Object;

/// Each entry moves the schema one version forward; never edit an entry once released.
const MIGRATIONS: &[&str] = &[
    // 1: accounts (with the token version and the refresh lease), client keys, the change counter.
    concat!(
        "CREATE TABLE accounts (",
        crate::store::accounts::accounts_columns!(),
        r#",
    proxy TEXT,
    models TEXT,
    -- Bumped by every token write: a rotation is a compare-and-swap on it (lease.rs).
    token_version BIGINT NOT NULL DEFAULT 0,
    -- One refresh per account cluster-wide: the holder and when its lease ends (unix ms, database clock).
    refresh_lease_owner TEXT,
    refresh_lease_until BIGINT
);
CREATE TABLE client_keys ("#,
        crate::store::keys::client_keys_columns!("BIGINT"),
        r#"
);
-- One counter every write to accounts or client_keys bumps: instances poll it (watch.rs) and re-read the
-- tables when it moves, instead of reading them per request.
CREATE TABLE store_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    counter BIGINT NOT NULL
);
INSERT INTO store_changes (id, counter) VALUES (1, 0);
CREATE FUNCTION bump_store_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE store_changes SET counter = counter + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION bump_store_changes();
CREATE TRIGGER client_keys_changed AFTER INSERT OR UPDATE OR DELETE ON client_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bump_store_changes();
"#
    ),
    // 2: cooldowns learned by one instance (shared.rs), named leases for background jobs (leader.rs).
    r#"
CREATE TABLE account_cooldowns (
    account_id TEXT NOT NULL,
    -- '' for the whole account.
    model TEXT NOT NULL DEFAULT '',
    until BIGINT NOT NULL,
    kind TEXT NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (account_id, model)
);
CREATE TRIGGER account_cooldowns_changed AFTER INSERT OR UPDATE OR DELETE ON account_cooldowns
    FOR EACH STATEMENT EXECUTE FUNCTION bump_store_changes();
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until BIGINT NOT NULL
);
"#,
    // 3: the usage ledger (usage.rs): the SQLite ledger's tables with a generated id (`store/usage.rs`).
    crate::store::usage::POSTGRES_SCHEMA,
    // 4: live instances (watch.rs): each instance's heartbeat, so a key's limits can be shared out.
    r#"
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    -- Unix ms on the database's clock: the instance counts as live until then.
    until BIGINT NOT NULL
);
"#,
    // 5: conversation affinity shared by the team (affinity.rs).
    super::affinity::SCHEMA,
    // 6: each account's installation id (upstream/identity; `Store::installation_id`).
    "ALTER TABLE accounts ADD COLUMN installation_id TEXT;",
    // 7: the account a conversation moved from (relay/moves.rs).
    crate::store::usage::MOVED_FROM,
    // 8: a request's policy refusal and held conversation (docs/accounts.md, "Risk signals").
    crate::store::usage::RISK,
    // 9: a held conversation, and the account that got its own identifiers (affinity.rs).
    super::affinity::HOLD_AND_ORIGIN,
    // 10: a client key suspended after repeated policy refusals (keys/).
    crate::store::keys::SUSPENSION,
    // 11: each account's owner policy (accounts/steward.rs) and opportunistic client keys (keys/).
    crate::store::POLICIES,
    // 12: the usage ledger's cache writes and budget units, the reports' covering indexes with them (issue 72).
    crate::store::usage::CACHE_WRITES_AND_BUDGET,
    // 13: kept Responses answers shared by the team, for `previous_response_id` on any instance (responses.rs).
    super::responses::SCHEMA,
    // 14: the audit trail, one chain for the team (store/audit.rs, audit/).
    crate::store::audit::SCHEMA,
    // 15: users, their sessions, and each client key's owner (store/users.rs, users/).
    crate::store::users::SCHEMA,
    // 16: users and sessions move the change counter, so a revoked session is refused on every instance.
    crate::store::users::POSTGRES_TRIGGERS,
    // 17: who each request was for, in the ledger and its rollups, and each user's limits (store/attribution.rs).
    crate::store::attribution::POSTGRES,
    // 18: single sign-on: provider identities linked to users, sign-ins started (store/identities.rs).
    crate::store::identities::SCHEMA,
    // 19: the Codex CLI's sign-in: codes, device codes and refresh tokens (store/oauth.rs, oauth/).
    crate::store::oauth::SCHEMA,
    // 20: each user's failed sign-ins and lockout, held for the team (store/users.rs, users/limits.rs).
    crate::store::users::SIGN_IN_FAILURES,
];

/// The schema version a current PostgreSQL store has.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Any fixed number: the advisory lock that serializes migrations across instances.
const MIGRATION_LOCK: i64 = 0x636f_6465_7867_7731;

pub(super) async fn migrate(mut client: Object) -> anyhow::Result<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await
        .context("cannot create schema_migrations")?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i32::try_from(i + 1)?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        let done = tx.query_opt("SELECT 1 FROM schema_migrations WHERE version = $1", &[&version]).await?;
        if done.is_none() {
            tx.batch_execute(sql).await.with_context(|| format!("migration {version} failed"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, extract(epoch from now())::bigint)",
                &[&version],
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}
