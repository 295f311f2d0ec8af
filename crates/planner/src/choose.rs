//! Which account serves a request: the decision the gateway's lease and the simulator both make, from the
//! accounts that can serve (state) and the time (clock), as one pure function, [`choose`].
//!
//! Rules every strategy shares: an account in an overload streak goes last (left alone while another can serve);
//! an account kept for its owner (`Policy::Preserve`) is not spent below its floor;
//! `Policy::BurnFirst` accounts go first; `plan_priority` ranks plans; a conversation goes to its own account
//! (the prompt cache is per account) when that account has a free slot, and waits for it when its queue is short;
//! a free slot anywhere comes before a queue; a request of an opportunistic client key is served only from quota
//! that would otherwise expire. Then the strategy orders the rest:
//!
//! - `planner` (the default): each account has a rate at which spending it wastes nothing (what its short window
//!   holds until it resets, or the long window's pace when that is what binds: [`outlook`]). A new conversation
//!   goes where it fits (the account can carry one more conversation's pace for the next hour beside its own
//!   conversations, so it will not have to move soon), preferring an unstarted window (a window's clock runs
//!   from its first request, so starting it early brings it back full sooner), then where most of that rate is
//!   not claimed yet. So quota that would otherwise expire is spent first, a Pro's larger windows take more, and
//!   new conversations spread before one account is crowded. Where it fits nowhere, it goes where it can stay
//!   longest: it will have to move, and the later it must, the likelier it ends first. It does not start a turn
//!   on an account that cannot finish it (by the conversation's input) when another can. docs/planner.md gives
//!   the reasoning and bench/results/simulator.md the measure.
//! - `least_used`: the most percent left in the tighter window, then the soonest reset.
//! - `capacity_weighted`: the strongest peer's published strategy (codex-lb "waste pressure"): the weekly
//!   window's quota left over the time to its reset, times the square of the five-hour window's share left.
//! - `round_robin`, `sticky`.

use crate::cost;
use crate::quota::QuotaView;

/// How the pool orders accounts (`[routing] strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Spend what would otherwise expire first (see the module).
    #[default]
    Planner,
    /// Most quota headroom first; the soonest reset breaks ties, then the least recently used.
    LeastUsed,
    /// The weekly window's quota left over the time to its reset, weighted by the five-hour window's headroom.
    CapacityWeighted,
    RoundRobin,
    /// Stay on one account until it cannot serve.
    Sticky,
}

impl Strategy {
    /// Every strategy, in the order the dashboard lists them.
    pub const ALL: [Strategy; 5] =
        [Strategy::Planner, Strategy::LeastUsed, Strategy::CapacityWeighted, Strategy::RoundRobin, Strategy::Sticky];

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The name `[routing] strategy` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Planner => "planner",
            Strategy::LeastUsed => "least_used",
            Strategy::CapacityWeighted => "capacity_weighted",
            Strategy::RoundRobin => "round_robin",
            Strategy::Sticky => "sticky",
        }
    }

    /// For an atomic (the strategy is switchable at runtime).
    pub fn as_u8(self) -> u8 {
        match self {
            Strategy::Planner => 0,
            Strategy::LeastUsed => 1,
            Strategy::CapacityWeighted => 2,
            Strategy::RoundRobin => 3,
            Strategy::Sticky => 4,
        }
    }

    pub fn from_u8(v: u8) -> Strategy {
        Strategy::ALL.into_iter().find(|s| s.as_u8() == v).unwrap_or_default()
    }
}

/// What an account's owner asked of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Used as the strategy says.
    #[default]
    Normal,
    /// Keep `floor_percent` of each window for the owner: the pool stops there.
    Preserve { floor_percent: u8 },
    /// Used before the others while it has quota.
    BurnFirst,
}

impl Policy {
    /// The floor of a preserved account when none is given.
    pub const DEFAULT_FLOOR: u8 = 30;

    /// `normal`, `burn_first`, `preserve` or `preserve:N` (N percent kept, 1-100).
    pub fn parse(s: &str) -> Option<Policy> {
        match s.split_once(':') {
            None if s == "normal" => Some(Policy::Normal),
            None if s == "burn_first" => Some(Policy::BurnFirst),
            None if s == "preserve" => Some(Policy::Preserve { floor_percent: Policy::DEFAULT_FLOOR }),
            Some(("preserve", n)) => match n.trim().parse::<u8>() {
                Ok(p @ 1..=100) => Some(Policy::Preserve { floor_percent: p }),
                Ok(_) | Err(_) => None,
            },
            Some(_) | None => None,
        }
    }

    /// The text [`Policy::parse`] reads back.
    pub fn as_text(self) -> String {
        match self {
            Policy::Normal => "normal".into(),
            Policy::BurnFirst => "burn_first".into(),
            Policy::Preserve { floor_percent } => format!("preserve:{floor_percent}"),
        }
    }

    fn floor(self) -> f64 {
        match self {
            Policy::Preserve { floor_percent } => f64::from(floor_percent.min(100)) / 100.0,
            Policy::Normal | Policy::BurnFirst => 0.0,
        }
    }
}

/// One account that can serve the request (active, serving the model, not cooling down, not out of quota).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its position in the pool (stable order of creation).
    pub index: usize,
    /// Lower is preferred (`[routing] plan_priority`).
    pub plan_rank: usize,
    /// Its quota windows; `None` for an account that has none (an API key, a relay).
    pub quota: Option<QuotaView>,
    pub policy: Policy,
    pub in_flight: usize,
    /// Requests it may have in flight now (`governor`).
    pub limit: usize,
    /// Requests waiting in its queue.
    pub waiting: usize,
    /// Expected cost of its requests in flight (weighted tokens): spent, but in no reading yet.
    pub pending: f64,
    /// Unix milliseconds of its last lease (0: never).
    pub last_used_ms: i64,
    /// Failures it had lately (the peer's health factor).
    pub recent_failures: u32,
    /// Conversations it holds that were active lately (`defaults::ACTIVE_SECS`): they will go on spending it.
    pub conversations: usize,
    /// An overload streak is running on it (`governor`): it is left alone while another account can serve.
    pub troubled: bool,
}

/// The request being placed.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub strategy: Strategy,
    /// A counter for round robin.
    pub turn: usize,
    /// The account the pool stuck to last (`sticky`), by index.
    pub sticky: Option<usize>,
    /// The account that holds the conversation, by index, when it is among the candidates.
    pub home: Option<usize>,
    /// The turn's input, in tokens (estimated from the request's size).
    pub input_tokens: u64,
    /// A request of an opportunistic client key: only quota that would otherwise expire serves it.
    pub opportunistic: bool,
    /// `[routing] queue_per_account`.
    pub queue_cap: usize,
    /// The pool's spending rate per active conversation (weighted tokens per second; 0 when unknown).
    pub conversation_rate: f64,
    /// Whether the request may still wait for its conversation's account when that one is busy (it stops after a
    /// short wait: the lease's `HOME_WAIT`; then a free slot elsewhere is worth the prompt cache).
    pub wait_for_home: bool,
}

/// The decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    /// Take the first of `order` with a free slot (the lease checks the slot again); when none has one by then,
    /// wait in `wait_on`'s queue.
    Serve { order: Vec<usize>, wait_on: Option<usize> },
    /// Every candidate is at its limit and no queue has room.
    Busy,
    /// An opportunistic request, and no account has quota that would otherwise expire.
    NoExpiringQuota,
}

/// What the planner reads off one account's windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outlook {
    /// Weighted tokens it can spend now (above its floor, less what is in flight).
    pub usable: f64,
    /// Of those, the quota the next reset takes away and no later window makes up for, if nothing is spent
    /// (running windows only: an unstarted window loses nothing while it waits).
    pub perishable: f64,
    /// Seconds to that reset.
    pub perish_in: i64,
    /// The rate (weighted tokens per second) at which spending it wastes nothing: its short window's quota over
    /// the time to its reset, or, when the long window cannot supply the short windows still to come, the long
    /// window's quota over the time to its reset. An unstarted window counts as starting now.
    pub sustainable: f64,
    /// Its windows are running (an unstarted one starts at the next request).
    pub started: bool,
}

/// The planner's reading of an account: what it can spend, what would otherwise expire, and how fast it should be
/// spent.
///
/// With both windows: if the short one resets first, what it loses then is its quota left minus what the long
/// window could still spend in the short windows that fit before the long one resets (at the pace the long
/// window was spent at so far, at most every one of them in full);
/// if the long one resets first, everything usable until then. The sustainable rate is that perishable quota
/// over the time to its reset plus the rest of the long window over the time to the long reset.
pub fn outlook(q: &QuotaView, policy: Policy, pending: f64) -> Outlook {
    let floor = policy.floor();
    let left = |w: &crate::quota::WindowView| (w.left - floor * w.cap - pending).max(0.0);
    let secs = |w: &crate::quota::WindowView| w.reset_in.max(60);
    match (q.short.as_ref(), q.long.as_ref()) {
        (Some(s), Some(l)) => {
            let (ls, ll, ts, tl) = (left(s), left(l), secs(s), secs(l));
            let usable = ls.min(ll);
            let (perishable, perish_in) = if ts <= tl {
                // What the short windows still to come before the long reset will spend: at most every one of
                // them in full, and at the pace the long window has been spent at so far (a pool is not used day
                // and night: counting every future window in full would call almost no short quota perishable).
                let elapsed = (l.length - l.reset_in).max(PACE_MIN_SECS) as f64;
                let pace = l.cap * (l.used_percent / 100.0) / elapsed;
                let future = (s.cap * (tl - ts) as f64 / s.length.max(1) as f64).min(pace * (tl - ts) as f64);
                ((ll.min(ls + future) - ll.min(future)).max(0.0), ts)
            } else {
                (usable, tl)
            };
            let sustainable = perishable / perish_in as f64 + (usable - perishable).max(0.0) / tl as f64;
            let started = s.started && l.started;
            let perishable = if started { perishable } else { 0.0 };
            Outlook { usable, perishable, perish_in, sustainable, started }
        }
        (Some(w), None) | (None, Some(w)) => {
            let (l, t) = (left(w), secs(w));
            let perishable = if w.started { l } else { 0.0 };
            Outlook { usable: l, perishable, perish_in: t, sustainable: l / t as f64, started: w.started }
        }
        (None, None) => NO_WINDOWS,
    }
}

/// The shortest stretch a long window's pace is read over (a day): right after its reset a few requests would
/// read as a torrent.
const PACE_MIN_SECS: i64 = 86_400;

/// An account without quota windows (an API key, a relay): unbounded, never urgent.
const NO_WINDOWS: Outlook =
    Outlook { usable: f64::INFINITY, perishable: 0.0, perish_in: i64::MAX, sustainable: 0.0, started: true };

fn outlook_of(c: &Candidate) -> Outlook {
    match &c.quota {
        Some(q) => outlook(q, c.policy, c.pending),
        None => NO_WINDOWS,
    }
}

/// How far ahead a new conversation must fit on an account (seconds): about one agent task and its follow-ups.
const FIT_SECS: i64 = 3600;

/// The planner's key: the account's sustainable rate less what its conversations already spend (its present
/// rate, or its active conversations at the pool's rate per conversation when that is more: the present rate
/// lags a conversation that just started).
fn unclaimed(c: &Candidate, o: &Outlook, conversation_rate: f64) -> f64 {
    let rate = c.quota.map_or(0.0, |q| q.rate);
    o.sustainable - rate.max(c.conversations as f64 * conversation_rate)
}

/// Seconds an account can carry one more conversation at the pool's pace beside what its own conversations
/// (`claimed`) spend: how long until a conversation placed there has to move, unless its window resets first.
fn lasts(o: &Outlook, claimed: f64, conversation_rate: f64) -> f64 {
    let spend = claimed + conversation_rate;
    if spend > 0.0 { o.usable / spend } else { f64::INFINITY }
}

/// Percent left in the tighter window (100 when nothing is known), and when that window resets if it is
/// running: `least_used`'s key, as the pool always read it.
fn headroom(c: &Candidate) -> (f64, Option<i64>) {
    let Some(q) = &c.quota else { return (100.0, None) };
    let mut best = (100.0, None);
    for w in [q.short, q.long].into_iter().flatten() {
        let left = 100.0 - w.used_percent;
        if left < best.0 {
            best = (left.max(0.0), w.started.then_some(w.reset_in));
        }
    }
    best
}

/// The peer's score: weekly quota left (credits-like: the window's capacity times its share left) over seconds
/// to the weekly reset (its length while unstarted), times the square of the five-hour window's share left,
/// over one plus recent failures.
fn waste_pressure(c: &Candidate) -> f64 {
    let Some(q) = &c.quota else { return 0.0 };
    let pressure = q.long.map_or(0.0, |w| w.cap * (1.0 - w.used_percent / 100.0) / w.reset_in.max(60) as f64);
    let headroom = q.short.map_or(1.0, |w| ((100.0 - w.used_percent).max(0.0) / 100.0).powi(2));
    pressure * headroom / (1.0 + f64::from(c.recent_failures))
}

fn free(c: &Candidate) -> bool {
    c.in_flight < c.limit
}

/// Place a request (see the module for the rules).
pub fn choose(candidates: &[Candidate], ask: &Ask) -> Choice {
    let cost_new = cost::estimate(ask.input_tokens, false);
    let outlooks: Vec<Outlook> = candidates.iter().map(outlook_of).collect();
    // The floor of a preserved account is its owner's: the pool never spends below it.
    let mut open: Vec<usize> = (0..candidates.len())
        .filter(|&i| match candidates[i].policy {
            Policy::Preserve { .. } => outlooks[i].usable > 0.0,
            Policy::Normal | Policy::BurnFirst => true,
        })
        .collect();
    if ask.opportunistic {
        // Only quota that would otherwise expire: what the next reset takes away, less what the account's
        // present rate spends before then, must cover the request.
        open.retain(|&i| {
            let (o, rate) = (outlooks[i], candidates[i].quota.map_or(0.0, |q| q.rate));
            o.perishable.is_finite() && o.perishable - rate * o.perish_in as f64 >= cost_new
        });
        if open.is_empty() {
            return Choice::NoExpiringQuota;
        }
    }
    let mut order = strategy_order(candidates, &outlooks, open, ask);
    // The planner does not start a conversation's turn on an account that cannot finish it when another can.
    if ask.strategy == Strategy::Planner && order.iter().any(|&i| outlooks[i].usable >= cost_new) {
        order.sort_by_key(|&i| outlooks[i].usable < cost_new);
    }
    // Accounts in trouble last, burn-first accounts ahead, then the configured plan priority (all stable over
    // the strategy's order).
    order
        .sort_by_key(|&i| (candidates[i].troubled, candidates[i].policy != Policy::BurnFirst, candidates[i].plan_rank));
    // A conversation stays on its account while that account can serve: the backend starts a turn on any
    // quota left, and the prompt cache makes the turn there several times cheaper than anywhere else, so a move
    // before the account is used up costs more than it saves (docs/planner.md, "Moving a conversation early").
    let home = ask.home.and_then(|h| order.iter().position(|&i| candidates[i].index == h).map(|p| order.remove(p)));
    if let Some(h) = home {
        let c = &candidates[h];
        if !free(c) && ask.wait_for_home && c.waiting < ask.queue_cap {
            // Busy with other conversations: wait for it (about one turn) rather than move.
            return Choice::Serve { order: Vec::new(), wait_on: Some(c.index) };
        }
        order.insert(0, h);
    }
    // A free slot anywhere before a queue.
    order.sort_by_key(|&i| !free(&candidates[i]));
    let wait_on = if order.iter().any(|&i| free(&candidates[i])) {
        order.first().map(|&i| candidates[i].index)
    } else {
        queue_for(candidates, &order, ask)
    };
    let order: Vec<usize> = order.into_iter().filter(|&i| free(&candidates[i])).map(|i| candidates[i].index).collect();
    match (order.is_empty(), wait_on) {
        (true, None) => Choice::Busy,
        _ => Choice::Serve { order, wait_on },
    }
}

/// With every candidate at its limit: the queue to wait in. The planner takes the one that frees soonest relative
/// to its size; the others the first account of their order, as the pool always did.
fn queue_for(candidates: &[Candidate], order: &[usize], ask: &Ask) -> Option<usize> {
    let room = |i: &usize| candidates[*i].waiting < ask.queue_cap;
    let pick = match ask.strategy {
        Strategy::Planner => order.iter().filter(|i| room(i)).min_by(|&&a, &&b| {
            let load = |c: &Candidate| (c.in_flight + c.waiting) as f64 / c.limit.max(1) as f64;
            load(&candidates[a]).total_cmp(&load(&candidates[b]))
        }),
        Strategy::LeastUsed | Strategy::CapacityWeighted | Strategy::RoundRobin | Strategy::Sticky => {
            order.first().filter(|i| room(i))
        }
    };
    pick.map(|&i| candidates[i].index)
}

/// The candidates in `open` (positions in `candidates`) in the strategy's order.
fn strategy_order(candidates: &[Candidate], outlooks: &[Outlook], mut open: Vec<usize>, ask: &Ask) -> Vec<usize> {
    let idle = |a: &Candidate, b: &Candidate| {
        a.in_flight.cmp(&b.in_flight).then(a.last_used_ms.cmp(&b.last_used_ms)).then(a.index.cmp(&b.index))
    };
    match ask.strategy {
        // Where a new conversation fits first (room for one more conversation's pace for the next hour, or until
        // the window resets, beside what the account's own conversations spend: it will not have to move soon);
        // then an unstarted window
        // (its clock runs from the first request: the sooner it starts, the sooner it comes back full); then,
        // where it fits, the most sustainable rate its conversations do not claim yet, and where it does not,
        // the account that carries it longest.
        Strategy::Planner => {
            let key = |i: usize| {
                let (c, o) = (&candidates[i], &outlooks[i]);
                let claimed = c.quota.map_or(0.0, |q| q.rate).max(c.conversations as f64 * ask.conversation_rate);
                let horizon = o.perish_in.min(FIT_SECS) as f64;
                let fits = o.usable - claimed * horizon >= ask.conversation_rate * horizon;
                // Where it does not fit it will have to move: as late as possible, or not at all when it ends
                // first (docs/planner.md, "When no account can carry a conversation").
                let rank = if fits {
                    unclaimed(c, o, ask.conversation_rate)
                } else {
                    lasts(o, claimed, ask.conversation_rate)
                };
                (fits, !o.started, rank)
            };
            let keys: Vec<(bool, bool, f64)> = (0..candidates.len()).map(key).collect();
            open.sort_by(|&a, &b| {
                let (ka, kb) = (keys[a], keys[b]);
                kb.0.cmp(&ka.0)
                    .then(kb.1.cmp(&ka.1))
                    .then(kb.2.total_cmp(&ka.2))
                    .then_with(|| idle(&candidates[a], &candidates[b]))
            })
        }
        // Headroom compared in whole percent, so noise does not decide; a reset time only matters for an account
        // that has used something (an unused window's reset says nothing).
        Strategy::LeastUsed => open.sort_by(|&a, &b| {
            let (ha, ra) = headroom(&candidates[a]);
            let (hb, rb) = headroom(&candidates[b]);
            let reset = |h: f64, r: Option<i64>| if h < 100.0 { r.unwrap_or(i64::MAX) } else { i64::MAX };
            (hb.floor() as i64)
                .cmp(&(ha.floor() as i64))
                .then(reset(ha, ra).cmp(&reset(hb, rb)))
                .then_with(|| idle(&candidates[a], &candidates[b]))
        }),
        Strategy::CapacityWeighted => open.sort_by(|&a, &b| {
            waste_pressure(&candidates[b])
                .total_cmp(&waste_pressure(&candidates[a]))
                .then_with(|| idle(&candidates[a], &candidates[b]))
        }),
        Strategy::RoundRobin => {
            open.sort_by_key(|&i| (candidates[i].plan_rank, candidates[i].index));
            let best = open.first().map(|&i| candidates[i].plan_rank).unwrap_or(0);
            let tier = open.iter().take_while(|&&i| candidates[i].plan_rank == best).count();
            if tier > 0 {
                open[..tier].rotate_left(ask.turn % tier);
            }
        }
        Strategy::Sticky => open.sort_by(|&a, &b| {
            let stuck = |i: usize| Some(candidates[i].index) == ask.sticky;
            stuck(b).cmp(&stuck(a)).then(candidates[a].index.cmp(&candidates[b].index))
        }),
    }
    open
}

#[cfg(test)]
#[path = "choose_tests.rs"]
mod tests;
