//! Gauges read from the account pool at each scrape: quota windows, resets, whether each account can serve,
//! cooldowns, in-flight requests and their limit, overloads, the quota forecasts (each account's and the
//! pool's), policy refusals and held conversations, and the streams open now. Read at scrape time, so a removed
//! account's series disappears with it.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use dialects::failure::PolicyKind;

use crate::accounts::{Account, Pool};
use crate::auth::now_unix;
use crate::store::team::StoreHealth;
use crate::usage::Ledger;

pub struct PoolGauges {
    pool: Arc<Pool>,
    /// For the count of records the ledger could not take.
    ledger: Arc<Ledger>,
    email_labels: bool,
}

/// The collector trait asks for `Debug`; the pool has nothing useful to print here.
impl std::fmt::Debug for PoolGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolGauges")
    }
}

impl PoolGauges {
    pub fn new(pool: Arc<Pool>, ledger: Arc<Ledger>, email_labels: bool) -> PoolGauges {
        PoolGauges { pool, ledger, email_labels }
    }

    /// The `account` label: its label, else (when configured) its email, else its id.
    fn name(&self, a: &Account) -> String {
        match (a.label(), &a.email) {
            (Some(label), _) => label,
            (None, Some(email)) if self.email_labels => email.clone(),
            _ => a.id.clone(),
        }
    }
}

/// One gauge family: a descriptor, then one sample per label set.
fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Vec<(&'static str, String)>, f64)],
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(0.0f64);
    let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    for (labels, value) in samples {
        if labels.is_empty() {
            // A gauge without labels is written bare (`name 3`), not as `name{} 3`.
            ConstGauge::new(*value).encode(family)?;
            return Ok(());
        }
        let sample = family.encode_family(labels)?;
        ConstGauge::new(*value).encode(sample)?;
    }
    Ok(())
}

/// One counter family read at scrape time (its `_total` suffix is added by the encoder).
fn counter_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Vec<(&'static str, String)>, f64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, value) in samples {
        if labels.is_empty() {
            ConstCounter::new(*value as u64).encode(family)?;
            return Ok(());
        }
        let sample = family.encode_family(labels)?;
        ConstCounter::new(*value as u64).encode(sample)?;
    }
    Ok(())
}

/// The `account` label of each account, in order: a name two accounts share (two given one label, or one's label
/// another's id) is followed by the account's id, `work (acc_1)`, so every series stays one account's.
/// Prometheus refuses a whole scrape that holds two samples of one series.
fn distinct(names: Vec<(String, &str)>) -> Vec<String> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (name, _) in &names {
        *seen.entry(name.as_str()).or_default() += 1;
    }
    let shared: std::collections::HashSet<String> =
        seen.into_iter().filter(|(_, n)| *n > 1).map(|(name, _)| name.to_string()).collect();
    names.into_iter().map(|(name, id)| if shared.contains(&name) { format!("{name} ({id})") } else { name }).collect()
}

impl Collector for PoolGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.encode_accounts(&mut encoder)?;
        self.encode_gateway(&mut encoder)
    }
}

impl PoolGauges {
    /// Each account's quota, state and load.
    fn encode_accounts(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = now_unix();
        let accounts = self.pool.accounts();
        let mut used = Vec::new();
        let mut resets = Vec::new();
        let mut up = Vec::new();
        let mut cooldown = Vec::new();
        let mut in_flight = Vec::new();
        let mut refusals = Vec::new();
        let mut waiting = Vec::new();
        let mut limit = Vec::new();
        let mut streak = Vec::new();
        let mut overloads = Vec::new();
        let mut usable = Vec::new();
        let mut dry = Vec::new();
        let mut back = Vec::new();
        let (forecasts, pool, _) = self.pool.forecasts();
        let names = distinct(accounts.iter().map(|a| (self.name(a), a.id.as_str())).collect());
        for (a, name) in accounts.iter().zip(names) {
            let account = || vec![("account", name.clone())];
            // Only the kinds that happened: at most five series an account, usually none.
            for kind in PolicyKind::ALL {
                let n = a.risk.refusals(kind);
                if n > 0 {
                    refusals.push((vec![("account", name.clone()), ("kind", kind.name().to_string())], n as f64));
                }
            }
            {
                let s = a.steward.lock();
                limit.push((account(), s.governor.limit(now) as f64));
                streak.push((account(), f64::from(s.governor.streak(now))));
                overloads.push((account(), s.governor.overloads as f64));
            }
            waiting.push((account(), a.gate.waiting() as f64));
            if let Some((_, f)) = forecasts.iter().find(|(id, _)| *id == a.id) {
                usable.push((account(), f.usable));
                if let Some(d) = f.dry_in {
                    dry.push((account(), d as f64));
                }
                if let Some(b) = f.back_in {
                    back.push((account(), b as f64));
                }
            }
            let q = a.quota.read().clone();
            for (window, percent, reset) in [
                ("5h", q.primary_used_percent, q.primary_reset_at),
                ("weekly", q.secondary_used_percent, q.secondary_reset_at),
            ] {
                let labels = vec![("account", name.clone()), ("window", window.to_string())];
                if let Some(p) = percent {
                    used.push((labels.clone(), p / 100.0));
                }
                if let Some(r) = reset {
                    resets.push((labels, r as f64));
                }
            }
            // Whole-account cooldowns and a used-up quota window keep it from serving any model (an empty slug
            // matches no model's cooldown).
            let blocked = a.blocked("", now).map(|b| b.until);
            let serves = a.is_active() && blocked.is_none();
            up.push((vec![("account", name.clone())], if serves { 1.0 } else { 0.0 }));
            cooldown.push((vec![("account", name.clone())], blocked.unwrap_or(0) as f64));
            in_flight.push((vec![("account", name)], a.in_flight() as f64));
        }
        family(encoder, "account_quota_used_ratio", "Share of the quota window used (0..1)", &used)?;
        family(
            encoder,
            "account_quota_reset_timestamp_seconds",
            "When the quota window resets (unix seconds)",
            &resets,
        )?;
        family(encoder, "account_up", "1 when the account can serve requests now", &up)?;
        family(
            encoder,
            "account_cooldown_until_timestamp_seconds",
            "When the account's cooldown or used-up window ends (unix seconds; 0: none)",
            &cooldown,
        )?;
        family(encoder, "account_in_flight", "Requests the account is serving now", &in_flight)?;
        family(encoder, "account_waiting", "Requests waiting in the account's queue", &waiting)?;
        family(
            encoder,
            "account_concurrency_limit",
            "Requests the account may have in flight now (lowered after overload answers)",
            &limit,
        )?;
        family(encoder, "account_overload_streak", "Overload answers in the account's running streak", &streak)?;
        counter_family(encoder, "account_overloads", "Overload answers the account gave", &overloads)?;
        family(
            encoder,
            "account_quota_usable_tokens",
            "Quota the account can spend now, in weighted tokens (docs/accounts.md, Forecast)",
            &usable,
        )?;
        family(
            encoder,
            "account_quota_dry_seconds",
            "Seconds until the account runs dry at its present rate (absent: not before its window resets)",
            &dry,
        )?;
        family(encoder, "account_quota_back_seconds", "Seconds until the account's binding window resets", &back)?;
        let one = |v: Option<i64>| v.map(|v| vec![(Vec::new(), v as f64)]).unwrap_or_default();
        family(
            encoder,
            "pool_quota_usable_tokens",
            "Quota the pool can spend now, in weighted tokens",
            &[(Vec::new(), pool.usable)],
        )?;
        family(
            encoder,
            "pool_spend_tokens_per_second",
            "The pool's present spending rate, weighted tokens a second",
            &[(Vec::new(), pool.rate)],
        )?;
        family(
            encoder,
            "pool_quota_dry_seconds",
            "Seconds until the pool runs dry at its present rate (absent: not within a week)",
            &one(pool.dry_in),
        )?;
        family(encoder, "pool_quota_back_seconds", "Seconds until capacity comes back", &one(pool.back_in))?;
        counter_family(
            encoder,
            "policy_refusals",
            "Requests the upstream refused under its usage policy, by account and kind, since the gateway started",
            &refusals,
        )
    }

    /// The gateway's own: token refreshes, the ledger's drops, the store, open streams, HTTP/2 resets.
    fn encode_gateway(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let refreshes: Vec<(Vec<(&'static str, String)>, f64)> = self
            .pool
            .refreshes
            .snapshot()
            .iter()
            .map(|(outcome, n)| (vec![("outcome", outcome.to_string())], *n as f64))
            .collect();
        counter_family(encoder, "token_refreshes", "Token refresh calls, by outcome", &refreshes)?;
        let dropped = [(Vec::new(), self.ledger.records_dropped() as f64)];
        counter_family(
            encoder,
            "usage_records_dropped",
            "Request records the usage ledger could not take (its queue was full)",
            &dropped,
        )?;
        // A local SQLite file is always there; the team's PostgreSQL store as its change watcher last found it.
        let health = self.pool.store().health();
        let store_up = match health {
            StoreHealth::Local => true,
            StoreHealth::Team { reachable, .. } => reachable,
        };
        let store_up = [(Vec::new(), f64::from(u8::from(store_up)))];
        family(encoder, "store_up", "1 when the store (the team's PostgreSQL database) is reachable", &store_up)?;
        if let StoreHealth::Team { instances, affinity_dropped, .. } = health {
            let live = [(Vec::new(), f64::from(instances))];
            family(
                encoder,
                "team_instances",
                "Live instances sharing the team store (key limits are divided by it)",
                &live,
            )?;
            let dropped = [(Vec::new(), affinity_dropped as f64)];
            counter_family(
                encoder,
                "affinity_shares_dropped",
                "Conversation affinities not shared with the team (queue full or store unreachable)",
                &dropped,
            )?;
        }
        let held = [(Vec::new(), self.pool.held_total() as f64)];
        family(
            encoder,
            "conversations_held",
            "Conversations held on their account after a policy refusal or a deactivation (docs/accounts.md)",
            &held,
        )?;
        let streams = vec![(Vec::new(), crate::metrics::streams::open_streams() as f64)];
        family(encoder, "active_streams", "Streaming answers being written now", &streams)?;
        let resets = [(Vec::new(), crate::upstream::http2_resets_sent() as f64)];
        counter_family(
            encoder,
            "upstream_http2_resets_sent",
            "HTTP/2 streams the gateway reset toward the upstream (a client that left, a deadline, an answer's end that never came)",
            &resets,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::distinct;

    #[test]
    fn a_shared_name_is_told_apart_by_the_account_id_and_others_stay_as_they_are() {
        let names = vec![
            ("work".to_string(), "acc_1"),
            ("home".to_string(), "acc_2"),
            ("work".to_string(), "acc_3"),
            ("acc_5".to_string(), "acc_4"),
            ("acc_5".to_string(), "acc_5"),
        ];
        assert_eq!(distinct(names), ["work (acc_1)", "home", "work (acc_3)", "acc_5 (acc_4)", "acc_5 (acc_5)"]);
    }
}
