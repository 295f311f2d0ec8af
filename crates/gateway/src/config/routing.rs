//! `[routing]`, how the account pool chooses (docs/accounts.md, "Routing"): the file's table, the resolved
//! [`Routing`], what a reload puts in force of it, and its keys on the Settings page.

use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use serde_json::json;

use super::env::Env;
use super::field::{Field, Group, Kind};

/// How the pool orders accounts (docs/accounts.md, "Routing").
pub use planner::Strategy;

/// `[routing]` as written.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub strategy: Option<String>,
    pub plan_priority: Option<Vec<String>>,
    pub max_concurrent_per_account: Option<usize>,
    pub queue_per_account: Option<usize>,
    pub queue_timeout_secs: Option<u64>,
    pub affinity_capacity: Option<usize>,
    pub usage_poll_secs: Option<u64>,
    pub max_accounts_per_request: Option<usize>,
    pub policy_refusals_per_key: Option<u32>,
}

/// Resolved `[routing]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub strategy: Strategy,
    /// Plans in order of preference (e.g. `["plus", "pro"]`); unlisted plans come after.
    pub plan_priority: Vec<String>,
    pub max_concurrent_per_account: usize,
    pub queue_per_account: usize,
    pub queue_timeout: Duration,
    pub affinity_capacity: usize,
    pub usage_poll: Duration,
    /// The most accounts one request is tried on: a request every account fails is not sent to the whole pool.
    pub max_accounts_per_request: usize,
    /// Policy refusals within 24 hours after which a created client key is suspended (`None`: never).
    pub policy_refusals_per_key: Option<u32>,
}

/// The Settings page's Routing fieldset.
pub(crate) const SETTINGS: Group = Group {
    legend: "Routing",
    fields: &[
        Field::named("strategy", "routing.strategy", "Rotation strategy")
            .live(Kind::Choice(strategy_names), |c| json!(c.routing.strategy.as_str())),
        Field::named("plan_priority", "routing.plan_priority", "Plan priority (comma-separated, preferred first)")
            .at_restart(Kind::Names { placeholder: "plus, pro" }, |c| json!(c.routing.plan_priority.join(", "))),
        Field::named(
            "affinity_capacity",
            "routing.affinity_capacity",
            "Conversation affinity: conversations remembered",
        )
        .at_restart(Kind::Number { min: 16.0, max: 1e7, whole: true }, |c| json!(c.routing.affinity_capacity)),
    ],
};

fn strategy_names() -> Vec<&'static str> {
    Strategy::ALL.iter().map(|s| s.as_str()).collect()
}

impl Routing {
    /// `[routing]`, the strategy also from `CODEX_GATEWAY_STRATEGY`, with the bounds that keep the pool working.
    pub(super) fn resolve(raw: Option<RawRouting>, env: &dyn Env) -> anyhow::Result<Routing> {
        let r = raw.unwrap_or_default();
        let strategy_name = env.get("CODEX_GATEWAY_STRATEGY").or(r.strategy).unwrap_or_else(|| "planner".into());
        let strategy = Strategy::parse(&strategy_name).with_context(|| {
            format!("routing strategy `{strategy_name}` is not one of {}", strategy_names().join(", "))
        })?;
        Ok(Routing {
            strategy,
            plan_priority: r.plan_priority.unwrap_or_default(),
            max_concurrent_per_account: r.max_concurrent_per_account.unwrap_or(planner::defaults::MAX_IN_FLIGHT).max(1),
            queue_per_account: r.queue_per_account.unwrap_or(planner::defaults::QUEUE_PER_ACCOUNT),
            queue_timeout: Duration::from_secs(r.queue_timeout_secs.unwrap_or(planner::defaults::QUEUE_TIMEOUT_SECS)),
            affinity_capacity: r.affinity_capacity.unwrap_or(10_000).max(16),
            usage_poll: Duration::from_secs(r.usage_poll_secs.unwrap_or(300).max(30)),
            max_accounts_per_request: r.max_accounts_per_request.unwrap_or(3).max(1),
            policy_refusals_per_key: r.policy_refusals_per_key.filter(|n| *n > 0),
        })
    }

    /// The keys that differ from `old`: those a reload puts in force ([`Routing::keep_live`]), then those that
    /// wait for a restart (app/reload.rs). No `..`: a new key does not compile until it is sorted.
    pub(crate) fn changes(&self, old: &Routing) -> [Vec<&'static str>; 2] {
        let Routing {
            strategy,
            plan_priority,
            max_concurrent_per_account,
            queue_per_account,
            queue_timeout,
            affinity_capacity,
            usage_poll,
            max_accounts_per_request,
            policy_refusals_per_key,
        } = self;
        let named = |pairs: &[(bool, &'static str)]| pairs.iter().filter(|p| p.0).map(|p| p.1).collect();
        [
            named(&[
                (*strategy != old.strategy, "routing.strategy"),
                (*max_accounts_per_request != old.max_accounts_per_request, "routing.max_accounts_per_request"),
                (*policy_refusals_per_key != old.policy_refusals_per_key, "routing.policy_refusals_per_key"),
            ]),
            named(&[
                (*plan_priority != old.plan_priority, "routing.plan_priority"),
                (*max_concurrent_per_account != old.max_concurrent_per_account, "routing.max_concurrent_per_account"),
                (*queue_per_account != old.queue_per_account, "routing.queue_per_account"),
                (*queue_timeout != old.queue_timeout, "routing.queue_timeout_secs"),
                (*affinity_capacity != old.affinity_capacity, "routing.affinity_capacity"),
                (*usage_poll != old.usage_poll, "routing.usage_poll_secs"),
            ]),
        ]
    }

    /// The running routing with `next`'s live keys (the first list of [`Routing::changes`]).
    pub(crate) fn keep_live(&mut self, next: &Routing) {
        self.strategy = next.strategy;
        self.max_accounts_per_request = next.max_accounts_per_request;
        self.policy_refusals_per_key = next.policy_refusals_per_key;
    }
}
