//! Token budgets of client keys and users across the team (docs/team.md): what each key spent today and this month in the
//! shared ledger's daily rollups, read by every instance once a second (`keys/team.rs`) for the keys that have
//! a budget, in one statement for all of them. Requests never read it: they check the key's counters in memory.

use super::PgStore;
use crate::store::team::KeySpend;
use crate::store::usage::Spender;

impl PgStore {
    /// Tokens per key (or user) in `ids` since `today_ms` and since `month_ms` (UTC period starts, unix ms: rollup
    /// days).
    pub async fn team_spend(
        &self,
        by: Spender,
        ids: Vec<String>,
        today_ms: i64,
        month_ms: i64,
    ) -> anyhow::Result<Vec<KeySpend>> {
        let c = by.column();
        self.run(move |client| async move {
            let stmt = client
                .prepare_cached(&format!(
                    "SELECT {c},
                            COALESCE(SUM(input_tokens + output_tokens) FILTER (WHERE day >= $2), 0)::bigint,
                            SUM(input_tokens + output_tokens)::bigint
                     FROM usage_daily WHERE day >= $3 AND {c} = ANY($1) GROUP BY {c}"
                ))
                .await?;
            let rows = client.query(&stmt, &[&ids, &today_ms, &month_ms]).await?;
            let tokens = |n: i64| u64::try_from(n).unwrap_or(0);
            rows.iter().map(|r| Ok((r.try_get(0)?, tokens(r.try_get(1)?), tokens(r.try_get(2)?)))).collect()
        })
        .await
    }
}
