//! Gauges read from the account pool at each scrape: quota windows, resets, whether each account can serve,
//! cooldowns, in-flight requests and their limit, overloads, the quota forecasts (each account's and the
//! pool's), policy refusals and held conversations, and the streams open now. Read at scrape time, so a removed
//! account's series disappears with it.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use dialects::failure::PolicyKind;

use crate::accounts::{Account, Pool};
use crate::auth::now_unix;
use crate::store::team::StoreHealth;
use crate::usage::Ledger;

pub struct PoolGauges {
    pub(super) pool: Arc<Pool>,
    /// For the count of records the ledger could not take.
    pub(super) ledger: Arc<Ledger>,
    pub(super) email_labels: bool,
}

/// The collector trait asks for `Debug`; the pool has nothing useful to print here.
impl std::fmt::Debug for PoolGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolGauges")
    }
}

impl PoolGauges {
    /// The `account` label: its label, else (when configured) its email, else its id.
    fn name(&self, a: &Account) -> String {
        match (a.label(), &a.email) {
            (Some(label), _) => label,
            (None, Some(email)) if self.email_labels => email.clone(),
            _ => a.id.clone(),
        }
    }
}

/// One family's samples: each a label set and its value.
type Samples = [(Vec<(&'static str, String)>, f64)];

fn one(value: f64) -> [(Vec<(&'static str, String)>, f64); 1] {
    [(Vec::new(), value)]
}

/// The families of one scrape, each a descriptor, then one sample per label set.
struct Families<'a, 'b>(&'a mut DescriptorEncoder<'b>);

impl Families<'_, '_> {
    fn gauge(&mut self, name: &str, help: &str, samples: &Samples) -> std::fmt::Result {
        self.family(name, help, false, samples)
    }

    /// A counter read at scrape time (its `_total` suffix is added by the encoder).
    fn counter(&mut self, name: &str, help: &str, samples: &Samples) -> std::fmt::Result {
        self.family(name, help, true, samples)
    }

    fn family(&mut self, name: &str, help: &str, counter: bool, samples: &Samples) -> std::fmt::Result {
        let kind = if counter { ConstCounter::new(0u64).metric_type() } else { ConstGauge::new(0.0f64).metric_type() };
        let mut family = self.0.encode_descriptor(name, help, None, kind)?;
        for (labels, value) in samples {
            if labels.is_empty() {
                // A family without labels is written bare (`name 3`), not as `name{} 3`.
                return sample(counter, *value, family);
            }
            sample(counter, *value, family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

fn sample(counter: bool, value: f64, to: MetricEncoder) -> std::fmt::Result {
    match counter {
        true => ConstCounter::new(value as u64).encode(to),
        false => ConstGauge::new(value).encode(to),
    }
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
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let mut out = Families(&mut encoder);
        self.encode_accounts(&mut out)?;
        self.encode_gateway(&mut out)
    }
}

impl PoolGauges {
    /// Each account's quota, state and load.
    fn encode_accounts(&self, out: &mut Families) -> std::fmt::Result {
        let now = now_unix();
        let accounts = self.pool.accounts();
        // One family's samples each.
        let [mut used, mut resets, mut up, mut cooldown, mut in_flight, mut refusals] = [(); 6].map(|_| Vec::new());
        let [mut waiting, mut limit, mut streak, mut overloads, mut usable, mut dry] = [(); 6].map(|_| Vec::new());
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
        out.gauge("account_quota_used_ratio", "Share of the quota window used (0..1)", &used)?;
        out.gauge("account_quota_reset_timestamp_seconds", "When the quota window resets (unix seconds)", &resets)?;
        out.gauge("account_up", "1 when the account can serve requests now", &up)?;
        out.gauge(
            "account_cooldown_until_timestamp_seconds",
            "When the account's cooldown or used-up window ends (unix seconds; 0: none)",
            &cooldown,
        )?;
        out.gauge("account_in_flight", "Requests the account is serving now", &in_flight)?;
        out.gauge("account_waiting", "Requests waiting in the account's queue", &waiting)?;
        out.gauge(
            "account_concurrency_limit",
            "Requests the account may have in flight now (lowered after overload answers)",
            &limit,
        )?;
        out.gauge("account_overload_streak", "Overload answers in the account's running streak", &streak)?;
        out.counter("account_overloads", "Overload answers the account gave", &overloads)?;
        out.gauge(
            "account_quota_usable_tokens",
            "Quota the account can spend now, in weighted tokens (docs/accounts.md, Forecast)",
            &usable,
        )?;
        out.gauge(
            "account_quota_dry_seconds",
            "Seconds until the account runs dry at its present rate (absent: not before its window resets)",
            &dry,
        )?;
        out.gauge("account_quota_back_seconds", "Seconds until the account's binding window resets", &back)?;
        let maybe = |v: Option<i64>| v.map(|v| one(v as f64).to_vec()).unwrap_or_default();
        out.gauge("pool_quota_usable_tokens", "Quota the pool can spend now, in weighted tokens", &one(pool.usable))?;
        out.gauge(
            "pool_spend_tokens_per_second",
            "The pool's present spending rate, weighted tokens a second",
            &one(pool.rate),
        )?;
        out.gauge(
            "pool_quota_dry_seconds",
            "Seconds until the pool runs dry at its present rate (absent: not within a week)",
            &maybe(pool.dry_in),
        )?;
        out.gauge("pool_quota_back_seconds", "Seconds until capacity comes back", &maybe(pool.back_in))?;
        out.counter(
            "policy_refusals",
            "Requests the upstream refused under its usage policy, by account and kind, since the gateway started",
            &refusals,
        )
    }

    /// The gateway's own: token refreshes, the ledger's drops, the store, open streams, HTTP/2 resets.
    fn encode_gateway(&self, out: &mut Families) -> std::fmt::Result {
        let refreshes = self.pool.refreshes.snapshot();
        let refreshes = refreshes.map(|(outcome, n)| (vec![("outcome", outcome.to_string())], n as f64));
        out.counter("token_refreshes", "Token refresh calls, by outcome", &refreshes)?;
        out.counter(
            "usage_records_dropped",
            "Request records the usage ledger could not take (its queue was full)",
            &one(self.ledger.records_dropped() as f64),
        )?;
        // A local SQLite file is always there; the team's PostgreSQL store as its change watcher last found it.
        let health = self.pool.store().health();
        let store_up = match health {
            StoreHealth::Local => true,
            StoreHealth::Team { reachable, .. } => reachable,
        };
        let store_up = one(f64::from(u8::from(store_up)));
        out.gauge("store_up", "1 when the store (the team's PostgreSQL database) is reachable", &store_up)?;
        if let StoreHealth::Team { instances, affinity_dropped, .. } = health {
            let live = one(f64::from(instances));
            out.gauge("team_instances", "Live instances sharing the team store (key limits are divided by it)", &live)?;
            out.counter(
                "affinity_shares_dropped",
                "Conversation affinities not shared with the team (queue full or store unreachable)",
                &one(affinity_dropped as f64),
            )?;
        }
        out.gauge(
            "conversations_held",
            "Conversations held on their account after a policy refusal or a deactivation (docs/accounts.md)",
            &one(self.pool.held_total() as f64),
        )?;
        let streams = one(crate::metrics::streams::open_streams() as f64);
        out.gauge("active_streams", "Streaming answers being written now", &streams)?;
        out.counter("upstream_http2_resets_sent",
            "HTTP/2 streams the gateway reset toward the upstream (a client that left, a deadline, an answer's end that never came)",
            &one(crate::upstream::http2_resets_sent() as f64),
        )?;
        let fallbacks =
            crate::upstream::websocket_fallbacks().map(|(why, n)| (vec![("reason", why.to_string())], n as f64));
        out.counter(
            "upstream_websocket_fallbacks",
            "Requests sent over HTTP because the upstream WebSocket failed where the upstream was reached, by reason",
            &fallbacks,
        )?;
        let refused =
            crate::metrics::accepts::refusals().map(|(why, n)| (vec![("cause", why.as_str().to_string())], n as f64));
        out.counter(
            "accepts_refused",
            "Times the listener waited before accepting: at the connection limit the open files limit sets (limit), out of descriptors (descriptors), or another accept error (other)",
            &refused,
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
