//! The `accounts` table on PostgreSQL, where it differs from the SQLite file's (`store/accounts.rs`): the token
//! version that makes a rotation a compare-and-swap (the version read under a refresh lease, `lease.rs`).

use tokio_postgres::types::ToSql;

use super::{DB_NOW_MS, PgStore};
use crate::store::Tokens;

impl PgStore {
    /// Commit rotated tokens. Under a refresh lease this is a compare-and-swap on the token version read when
    /// the lease was taken (and it ends the lease); a version that moved meanwhile (the lease expired and another
    /// instance rotated) fails the commit rather than overwrite newer tokens. Without a lease (a login, an
    /// import) the tokens are simply written, as a new version.
    pub fn save_tokens(&self, id: &str, t: &Tokens) -> anyhow::Result<()> {
        let expected = self.held_versions.lock().get(id).copied();
        let (key, t, me) = (id.to_string(), t.clone(), self.instance.clone());
        let n = self.block(move |client| async move {
            let sql = format!(
                "UPDATE accounts SET id_token=$2, access_token=$3, refresh_token=$4, chatgpt_account_id=$5,
                     last_refresh=$6, status='active', status_reason=NULL, token_version = token_version + 1,
                     refresh_lease_owner = NULL, refresh_lease_until = NULL
                 WHERE id=$1 AND ($7::bigint IS NULL OR token_version = $7)
                   AND (refresh_lease_owner IS NULL OR refresh_lease_owner = $8 OR refresh_lease_until < {DB_NOW_MS})"
            );
            let params: [&(dyn ToSql + Sync); 8] =
                [&key, &t.id_token, &t.access_token, &t.refresh_token, &t.account_id, &t.last_refresh, &expected, &me];
            Ok(client.execute(&sql, &params).await?)
        })?;
        if n == 1 {
            self.held_versions.lock().remove(id);
        }
        anyhow::ensure!(n == 1, "account {id} is not in the store, or another instance rotated its tokens first");
        Ok(())
    }
}
