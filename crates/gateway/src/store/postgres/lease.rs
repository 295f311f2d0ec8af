//! Refresh coordination across instances: one refresh per account at a time cluster-wide, by a row lease
//! (`refresh_lease_owner`, `refresh_lease_until` on the database's clock). The holder refreshes from the tokens
//! at the version it read and commits with a compare-and-swap on that version (`save_tokens`), which also ends
//! the lease; the others wait and adopt the committed tokens. A holder that dies leaves a lease that expires.
//! No lease can be taken while the database is unreachable, so no refresh happens that could not be committed.

use std::time::Duration;

use super::{DB_NOW_MS, PgStore};
use crate::store::AccountKind;
use crate::store::accounts::tokens_at;
use crate::store::team::RefreshLease;

const ROW: &str = "token_version, kind, chatgpt_account_id, id_token, access_token, refresh_token, api_key, base_url, \
                   last_refresh";

impl PgStore {
    /// Take account `id`'s refresh lease for `ttl` unless another instance holds an unexpired one.
    pub async fn take_refresh_lease(&self, id: &str, ttl: Duration) -> anyhow::Result<RefreshLease> {
        let (key, me) = (id.to_string(), self.instance.clone());
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4);
        let (held, row) = self
            .run(move |client| async move {
                let taken = client
                    .query_opt(
                        &format!(
                            "UPDATE accounts SET refresh_lease_owner = $2, refresh_lease_until = {DB_NOW_MS} + $3
                             WHERE id = $1 AND (refresh_lease_owner IS NULL OR refresh_lease_owner = $2
                                                OR refresh_lease_until < {DB_NOW_MS})
                             RETURNING {ROW}"
                        ),
                        &[&key, &me, &ttl_ms],
                    )
                    .await?;
                if let Some(row) = taken {
                    return Ok((true, Some(row)));
                }
                let row = client.query_opt(&format!("SELECT {ROW} FROM accounts WHERE id = $1"), &[&key]).await?;
                Ok((false, row))
            })
            .await?;
        let Some(row) = row else { return Ok(RefreshLease::Gone) };
        let version: i64 = row.try_get(0)?;
        let kind = AccountKind::parse(row.try_get::<_, &str>(1)?).unwrap_or(AccountKind::Unrecognized);
        let tokens = tokens_at(&row, kind, 2)?;
        Ok(match held {
            true => {
                self.held_versions.lock().insert(id.to_string(), version);
                RefreshLease::Held(tokens)
            }
            false => RefreshLease::Busy(tokens),
        })
    }

    /// Give the lease back without a commit (the refresh failed or was not needed).
    pub async fn end_refresh_lease(&self, id: &str) -> anyhow::Result<()> {
        // A version read under a lease that ends without a commit.
        self.held_versions.lock().remove(id);
        let (id, me) = (id.to_string(), self.instance.clone());
        self.run(move |client| async move {
            client
                .execute(
                    "UPDATE accounts SET refresh_lease_owner = NULL, refresh_lease_until = NULL
                     WHERE id = $1 AND refresh_lease_owner = $2",
                    &[&id, &me],
                )
                .await?;
            Ok(())
        })
        .await
    }
}
