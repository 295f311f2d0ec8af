//! The team store's schema under the one runner (`store/migrations.rs`, issue 90): a database the old
//! PostgreSQL runner left at any of its versions is taken over in place.

use codex_gateway::store::Store;
use codex_gateway::store::migrations::{MIGRATIONS, POSTGRES_BEFORE, SCHEMA_VERSION};

use super::db_query;

async fn connect(db: &str) -> tokio_postgres::Client {
    let (client, conn) =
        tokio_postgres::connect(db, tokio_postgres::NoTls).await.unwrap_or_else(|e| panic!("connect {db}: {e}"));
    tokio::spawn(conn);
    client
}

/// A database as the old runner left it at its version `old`: its first `old` statements (the PostgreSQL texts
/// of the list, in order, are that runner's list), each recorded in `schema_migrations`.
async fn old_team_store(db: &str, old: usize) {
    let client = connect(db).await;
    let record = "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)";
    client.batch_execute(record).await.unwrap_or_else(|e| panic!("{e}"));
    let texts = MIGRATIONS[..POSTGRES_BEFORE[old]].iter().filter_map(|m| m.postgres);
    for (i, sql) in texts.enumerate() {
        client.batch_execute(sql).await.unwrap_or_else(|e| panic!("old migration {}: {e}", i + 1));
        let version = i32::try_from(i + 1).unwrap_or_else(|e| panic!("{e}"));
        client
            .execute("INSERT INTO schema_migrations VALUES ($1, 0)", &[&version])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Every column, index, constraint and trigger of the public schema, one sorted text; the old runner's record,
/// which a takeover leaves, aside.
async fn schema(db: &str) -> String {
    let sql = "SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
        SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' '
            || coalesce(column_default, '') AS x FROM information_schema.columns WHERE table_schema = 'public'
        UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
            FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        UNION ALL SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
    ) s";
    let row = connect(db).await.query_one(sql, &[]).await.unwrap_or_else(|e| panic!("{e}"));
    let all: String = row.get(0);
    all.lines().filter(|l| !l.contains("schema_migrations")).collect::<Vec<_>>().join("\n")
}

/// Open the team store at `db` (with a SQLite file of its own in `dir`) and close it again.
async fn open(dir: &std::path::Path, db: &str) -> Store {
    let (path, db) = (dir.join("gateway.db"), db.to_string());
    tokio::task::spawn_blocking(move || Store::open_with(&path, Some(&db)).unwrap_or_else(|e| panic!("{e:#}")))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| panic!("{e}"))
}

/// A database the old runner left at any of its versions opens: the same schema as a new database's, every
/// version recorded once in `schema_history`, the old record left as it was, its rows kept; opened again,
/// nothing moves.
#[tokio::test]
async fn a_team_store_of_the_old_numbering_is_taken_over() {
    let dir = std::env::temp_dir().join(format!("cgw-pg-old-{}", uuid::Uuid::new_v4().simple()));
    let fresh = crate::pg::fresh_database().await;
    drop(open(&dir.join("fresh"), &fresh).await);
    let want = schema(&fresh).await;
    for old in 0..POSTGRES_BEFORE.len() {
        let db = crate::pg::fresh_database().await;
        old_team_store(&db, old).await;
        if old >= 1 {
            db_query(
                &db,
                "INSERT INTO accounts (id, kind, api_key, created_at) VALUES ('k', 'api_key', 'sk', 1);
                 INSERT INTO client_keys (id, name, prefix, secret_sha256, created_at) VALUES ('key_1', 'ci', 'cgw_', 'ab', 1)",
            )
            .await;
        }
        for _ in 0..2 {
            let store = open(&dir.join(format!("v{old}")), &db).await;
            let history = db_query(&db, "SELECT count(DISTINCT version) FROM schema_history").await;
            let latest = db_query(&db, "SELECT max(version) FROM schema_history").await;
            assert_eq!((history, latest), (SCHEMA_VERSION as i64, SCHEMA_VERSION as i64), "v{old}");
            let left = db_query(&db, "SELECT coalesce(max(version), 0) FROM schema_migrations").await;
            assert_eq!(left, old as i64, "v{old}");
            assert_eq!(schema(&db).await, want, "v{old}");
            let (account, key) = blocking(move || {
                let account = store.get_account("k").unwrap_or_else(|e| panic!("{e:#}")).and_then(|a| a.api_key);
                (account, store.get_key("key_1").unwrap_or_else(|e| panic!("{e:#}")).map(|k| k.name))
            })
            .await;
            let kept = if old >= 1 { (Some("sk"), Some("ci")) } else { (None, None) };
            assert_eq!((account.as_deref(), key.as_deref()), kept, "v{old}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A team store of the old runner's version 10 (the risk signals' key suspension, before policies) is migrated
/// when an instance opens it: its accounts read as `normal`, its keys as not opportunistic (a suspended one still
/// suspended), and both can be set.
#[tokio::test]
async fn a_team_store_of_the_previous_schema_gains_policies_and_opportunistic_keys() {
    let db = crate::pg::fresh_database().await;
    let dir = std::env::temp_dir().join(format!("cgw-pg-v10-{}", uuid::Uuid::new_v4().simple()));
    old_team_store(&db, 10).await;
    db_query(
        &db,
        "INSERT INTO accounts (id, kind, api_key, status, created_at) VALUES ('k', 'api_key', 'sk-1', 'active', 1);
         INSERT INTO client_keys (id, name, prefix, secret_sha256, created_at, suspended_at, suspended_reason)
             VALUES ('key_1', 'ci', 'cgw_', 'ab', 1, 2, 'policy refusals')",
    )
    .await;
    let store = open(&dir, &db).await;
    assert_eq!(db_query(&db, "SELECT max(version) FROM schema_history").await, SCHEMA_VERSION as i64);
    let (store, account, key) = blocking(move || {
        let account = store.get_account("k").unwrap_or_else(|e| panic!("{e:#}")).and_then(|a| a.policy);
        let key = store.get_key("key_1").unwrap_or_else(|e| panic!("{e:#}")).map(|k| (k.opportunistic, k.suspended));
        (store, account, key)
    })
    .await;
    let suspension = codex_gateway::store::Suspension { at: 2, reason: "policy refusals".into() };
    assert_eq!((account.as_deref(), key), (Some("normal"), Some((false, Some(suspension)))));
    let (account, key) = blocking(move || {
        assert!(store.set_policy("k", "burn_first").unwrap_or_else(|e| panic!("{e:#}")));
        let mut key = store.get_key("key_1").ok().flatten().unwrap_or_else(|| panic!("key_1 missing"));
        key.opportunistic = true;
        assert!(store.update_key(&key).unwrap_or_else(|e| panic!("{e:#}")));
        let account = store.get_account("k").ok().flatten().and_then(|a| a.policy);
        (account, store.get_key("key_1").ok().flatten().map(|k| k.opportunistic))
    })
    .await;
    assert_eq!((account.as_deref(), key), (Some("burn_first"), Some(true)));
    let _ = std::fs::remove_dir_all(&dir);
}
