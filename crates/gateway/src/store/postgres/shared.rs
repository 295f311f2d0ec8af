//! Cooldowns shared between instances: an account one instance learned is exhausted (a 429 with a reset time,
//! a plan that does not serve a model, ...) is skipped by the others too, without each of them meeting the
//! upstream's refusal first. Written when a cooldown starts (a failure, never a success: not per request),
//! read by every instance when the change counter moves (`watch.rs`).

use dialects::failure::CooldownReason;

use super::{DB_NOW_MS, PgStore};
use crate::store::team::SharedCooldown;

impl PgStore {
    /// Record a cooldown (a later one for the same account and model replaces an earlier one, never the reverse),
    /// in the background: the caller (a request that just failed) does not wait for the database. While it is
    /// unreachable the cooldown stays this instance's own (logged at debug level).
    pub fn publish_cooldown(&self, c: SharedCooldown) {
        self.background("share a cooldown", move |client| async move {
            client
                .execute(
                    "INSERT INTO account_cooldowns (account_id, model, until, kind, note) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (account_id, model) DO UPDATE SET until = excluded.until, kind = excluded.kind,
                         note = excluded.note
                     WHERE account_cooldowns.until < excluded.until",
                    &[&c.account_id, &c.model.unwrap_or_default(), &c.until, &reason_str(c.kind), &c.note],
                )
                .await?;
            Ok(())
        });
    }

    /// Forget an account's shared cooldowns (an operator cleared them), in the background.
    pub fn clear_cooldowns(&self, account_id: &str) {
        let id = account_id.to_string();
        self.background("clear shared cooldowns", move |client| async move {
            client.execute("DELETE FROM account_cooldowns WHERE account_id = $1", &[&id]).await?;
            Ok(())
        });
    }

    /// Every cooldown still running. Expired ones are deleted on the way (the table stays small), but only when
    /// there are some: the table's trigger bumps the change counter for every DELETE statement, even one that
    /// deletes nothing, and an unconditional DELETE here made each re-read cause the next one, every instance
    /// re-reading every table at every poll (bench/results/store.md).
    pub fn cooldowns(&self) -> anyhow::Result<Vec<SharedCooldown>> {
        self.block(move |client| async move {
            let rows = client
                .query(
                    &format!(
                        "SELECT account_id, model, until, kind, note, until * 1000 < {DB_NOW_MS}
                         FROM account_cooldowns"
                    ),
                    &[],
                )
                .await?;
            let mut expired = false;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                if r.try_get::<_, bool>(5)? {
                    expired = true;
                    continue;
                }
                // A kind a newer build wrote is skipped: this build cannot tell what it means for routing.
                let Some(kind) = parse_reason(r.try_get(3)?) else { continue };
                let model: String = r.try_get(1)?;
                out.push(SharedCooldown {
                    account_id: r.try_get(0)?,
                    model: (!model.is_empty()).then_some(model),
                    until: r.try_get(2)?,
                    kind,
                    note: r.try_get(4)?,
                });
            }
            if expired {
                client.execute(&format!("DELETE FROM account_cooldowns WHERE until * 1000 < {DB_NOW_MS}"), &[]).await?;
            }
            Ok(out)
        })
    }
}

/// The reason as the table stores it: its serde name (`quota_exhausted`).
fn reason_str(r: CooldownReason) -> String {
    serde_json::to_value(r).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn parse_reason(s: &str) -> Option<CooldownReason> {
    serde_json::from_value(s.into()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are what the team's database holds: a renamed variant must keep reading the rows written before.
    #[test]
    fn reasons_keep_their_stored_names() {
        for (r, stored) in [
            (CooldownReason::QuotaExhausted, "quota_exhausted"),
            (CooldownReason::RateLimited, "rate_limited"),
            (CooldownReason::QuotaWindow, "quota_window"),
            (CooldownReason::UsageNotIncluded, "usage_not_included"),
            (CooldownReason::ModelNotSupportedByPlan, "model_not_supported_by_plan"),
            (CooldownReason::CloudflareChallenge, "cloudflare_challenge"),
            (CooldownReason::Forbidden, "forbidden"),
            (CooldownReason::LoginRefused, "login_refused"),
            (CooldownReason::Overloaded, "overloaded"),
        ] {
            assert_eq!(reason_str(r), stored);
            assert_eq!(parse_reason(stored), Some(r));
        }
        assert_eq!(parse_reason("paused"), None);
    }
}
