//! The decision as tables: state and clock in, account out.

use super::*;
use crate::plan::Plan;
use crate::quota::{AccountQuota, TOKENS_PER_CREDIT};
use crate::window::{Reading, Slot};

const H: i64 = 3600;

/// An account of `plan` whose short window is `short_used`% used and resets in `short_in` seconds (`None`:
/// unstarted), and whose week is `week_used`% used and resets in `week_in`.
fn account(index: usize, plan: Plan, short: (f64, Option<i64>), week: (f64, Option<i64>)) -> Candidate {
    let now = 1_000_000;
    let mut q = AccountQuota::new(plan);
    let mut readings = Vec::new();
    if plan.credits(crate::Kind::Short).is_some() {
        readings.push(Reading {
            slot: Slot::Primary,
            used_percent: short.0,
            window_minutes: Some(300),
            reset_at: short.1.map(|s| now + s),
        });
    }
    let slot = if plan.long_window_first() { Slot::Primary } else { Slot::Secondary };
    readings.push(Reading {
        slot,
        used_percent: week.0,
        window_minutes: Some(10_080),
        reset_at: week.1.map(|s| now + s),
    });
    q.observe(&readings, now);
    Candidate {
        index,
        plan_rank: 0,
        quota: Some(q.view(now, 1.0)),
        policy: Policy::Normal,
        in_flight: 0,
        limit: 4,
        waiting: 0,
        pending: 0.0,
        last_used_ms: 0,
        recent_failures: 0,
        conversations: 0,
        troubled: false,
    }
}

fn ask(strategy: Strategy) -> Ask {
    Ask {
        strategy,
        turn: 0,
        sticky: None,
        home: None,
        input_tokens: 20_000,
        opportunistic: false,
        queue_cap: 256,
        conversation_rate: 0.0,
        wait_for_home: true,
    }
}

fn first(choice: &Choice) -> Option<usize> {
    match choice {
        Choice::Serve { order, wait_on } => order.first().copied().or(*wait_on),
        Choice::Busy | Choice::NoExpiringQuota => None,
    }
}

const WEEK_FAR: (f64, Option<i64>) = (20.0, Some(5 * 24 * H));

#[test]
fn the_planner_spends_what_would_otherwise_expire_where_least_used_does_not() {
    // (what, accounts, the planner's pick, least_used's pick)
    let table: Vec<(&str, Vec<Candidate>, usize, usize)> = vec![
        (
            "40% used resetting in ten minutes against 20% used with four hours to go",
            vec![
                account(0, Plan::Plus, (40.0, Some(600)), WEEK_FAR),
                account(1, Plan::Plus, (20.0, Some(4 * H)), WEEK_FAR),
            ],
            0,
            1,
        ),
        (
            "a Pro at 50% against a Plus at 40%, same resets",
            vec![
                account(0, Plan::Plus, (40.0, Some(3 * H)), WEEK_FAR),
                account(1, Plan::Pro, (50.0, Some(3 * H)), WEEK_FAR),
            ],
            1,
            0,
        ),
        (
            "a week resetting in two hours with 60% left against a fresh account",
            vec![
                account(0, Plan::Plus, (0.0, None), (10.0, Some(6 * 24 * H))),
                account(1, Plan::Plus, (0.0, None), (40.0, Some(2 * H))),
            ],
            1,
            0,
        ),
        (
            "an unstarted window against a running one: start its clock",
            vec![account(0, Plan::Plus, (30.0, Some(H)), WEEK_FAR), account(1, Plan::Plus, (0.0, None), WEEK_FAR)],
            1,
            1,
        ),
        (
            "a window just started against one with an hour to go",
            vec![
                account(0, Plan::Plus, (1.0, Some(5 * H)), WEEK_FAR),
                account(1, Plan::Plus, (30.0, Some(H)), WEEK_FAR),
            ],
            1,
            0,
        ),
    ];
    for (what, accounts, planner, least_used) in table {
        assert_eq!(first(&choose(&accounts, &ask(Strategy::Planner))), Some(planner), "planner: {what}");
        assert_eq!(first(&choose(&accounts, &ask(Strategy::LeastUsed))), Some(least_used), "least_used: {what}");
    }
}

#[test]
fn short_quota_the_week_cannot_use_anyway_is_not_urgent() {
    // Five hours left at 40%, but the week has only 2% left for five days: nothing is lost at the short reset.
    let tight = account(0, Plan::Plus, (40.0, Some(600)), (98.0, Some(5 * 24 * H)));
    let running = account(1, Plan::Plus, (20.0, Some(4 * H)), WEEK_FAR);
    let o = outlook(tight.quota.as_ref().map_or(&QuotaView::default(), |q| q), Policy::Normal, 0.0);
    assert_eq!(o.perishable, 0.0, "{o:?}");
    assert_eq!(first(&choose(&[tight, running], &ask(Strategy::Planner))), Some(1));
}

#[test]
fn a_new_conversation_goes_where_it_fits_for_the_next_hour() {
    // The pool spends 500 weighted tokens a second per conversation: 1.8 M in the next hour.
    let mut a = ask(Strategy::Planner);
    a.conversation_rate = 500.0;
    // An account resetting in forty minutes with 60% left: more urgent, but its 1.35 M do not carry a new
    // conversation until then beside the two it holds (each spending as much).
    let mut crowded = account(0, Plan::Plus, (40.0, Some(2_400)), WEEK_FAR);
    crowded.conversations = 2;
    let roomy = account(1, Plan::Plus, (20.0, Some(4 * H)), WEEK_FAR);
    assert_eq!(first(&choose(&[crowded.clone(), roomy.clone()], &a)), Some(1));
    // Alone on it, it fits (the reset comes before the hour is out) and, being more urgent, takes it.
    crowded.conversations = 0;
    assert_eq!(first(&choose(&[crowded, roomy], &a)), Some(0));
}

#[test]
fn where_no_account_can_carry_a_new_conversation_it_goes_where_it_lasts_longest() {
    // 1,000 weighted tokens a second per conversation: 3.6 M in the next hour, more than a Plus window holds.
    let mut a = ask(Strategy::Planner);
    a.conversation_rate = 1_000.0;
    // 60% used resetting in seventy minutes: the most quota that would otherwise expire per second (0.9 M over
    // 4,200 s), but it carries the conversation a quarter of an hour; 5% used with four and a half hours to go
    // carries it more than half an hour.
    let urgent = account(0, Plan::Plus, (60.0, Some(4_200)), WEEK_FAR);
    let roomy = account(1, Plan::Plus, (5.0, Some(16_200)), WEEK_FAR);
    assert_eq!(first(&choose(&[urgent.clone(), roomy.clone()], &a)), Some(1));
    // At a pace either carries for the hour, the urgent one takes it.
    a.conversation_rate = 100.0;
    assert_eq!(first(&choose(&[urgent, roomy], &a)), Some(0));
}

#[test]
fn free_slots_come_first_and_a_full_pool_queues_or_is_busy() {
    let mut a = account(0, Plan::Plus, (40.0, Some(600)), WEEK_FAR);
    let b = account(1, Plan::Plus, (20.0, Some(4 * H)), WEEK_FAR);
    a.in_flight = 4;
    assert_eq!(
        choose(&[a.clone(), b.clone()], &ask(Strategy::Planner)),
        Choice::Serve { order: vec![1], wait_on: Some(1) }
    );
    let mut b = b;
    b.in_flight = 4;
    b.waiting = 3;
    // Both full: the planner queues where the load is lighter relative to the limit.
    assert_eq!(
        choose(&[a.clone(), b.clone()], &ask(Strategy::Planner)),
        Choice::Serve { order: vec![], wait_on: Some(0) }
    );
    // least_used queues on its first choice, as the pool always did.
    assert_eq!(
        choose(&[a.clone(), b.clone()], &ask(Strategy::LeastUsed)),
        Choice::Serve { order: vec![], wait_on: Some(1) }
    );
    a.waiting = 256;
    b.waiting = 256;
    assert_eq!(choose(&[a, b], &ask(Strategy::Planner)), Choice::Busy);
}

#[test]
fn a_conversation_stays_home_and_waits_for_it_briefly_when_it_is_busy() {
    let mut home = account(0, Plan::Plus, (20.0, Some(4 * H)), WEEK_FAR);
    let other = account(1, Plan::Plus, (40.0, Some(600)), WEEK_FAR);
    let mut a = ask(Strategy::Planner);
    a.home = Some(0);
    assert_eq!(first(&choose(&[home.clone(), other.clone()], &a)), Some(0), "home first, urgency or not");
    // Home busy with other conversations: wait for it (a short queue) ...
    home.in_flight = 4;
    assert_eq!(choose(&[home.clone(), other.clone()], &a), Choice::Serve { order: vec![], wait_on: Some(0) });
    // ... until the lease stops waiting for home; then a free slot elsewhere.
    a.wait_for_home = false;
    assert_eq!(first(&choose(&[home.clone(), other.clone()], &a)), Some(1));
    // A full queue: move now.
    a.wait_for_home = true;
    home.waiting = 256;
    assert_eq!(first(&choose(&[home.clone(), other.clone()], &a)), Some(1));
    // Nearly used up, with a long turn: it stays while it can serve (the backend starts a turn on any quota
    // left, and the cache makes it cheapest there), whatever the strategy.
    let mut nearly_out = account(0, Plan::Plus, (99.9, Some(4 * H)), WEEK_FAR);
    nearly_out.quota = nearly_out.quota.map(|mut q| {
        q.short = q.short.map(|mut w| {
            w.left = 10_000.0;
            w
        });
        q
    });
    a.input_tokens = 200_000;
    for strategy in Strategy::ALL {
        a.strategy = strategy;
        assert_eq!(first(&choose(&[nearly_out.clone(), other.clone()], &a)), Some(0), "{strategy:?}");
    }
    // A new conversation of that size does not start there.
    a.home = None;
    a.strategy = Strategy::Planner;
    assert_eq!(first(&choose(&[nearly_out, other], &a)), Some(1));
}

#[test]
fn a_long_turn_starts_where_it_can_finish() {
    let mut small = account(0, Plan::Plus, (40.0, Some(600)), WEEK_FAR);
    small.quota = small.quota.map(|mut q| {
        q.short = q.short.map(|mut w| {
            w.left = 300_000.0;
            w
        });
        q
    });
    let roomy = account(1, Plan::Plus, (20.0, Some(4 * H)), WEEK_FAR);
    let mut a = ask(Strategy::Planner);
    a.input_tokens = 2_000;
    assert_eq!(first(&choose(&[small.clone(), roomy.clone()], &a)), Some(0), "a small turn spends what expires");
    a.input_tokens = 350_000;
    assert_eq!(first(&choose(&[small, roomy], &a)), Some(1), "a long one goes where it can finish");
}

#[test]
fn owners_policies_hold_whatever_the_strategy() {
    let mut preserved = account(0, Plan::Plus, (75.0, Some(600)), WEEK_FAR);
    preserved.policy = Policy::Preserve { floor_percent: 30 };
    let other = account(1, Plan::Plus, (50.0, Some(4 * H)), WEEK_FAR);
    let mut burn = account(2, Plan::Plus, (10.0, Some(4 * H)), WEEK_FAR);
    burn.policy = Policy::BurnFirst;
    for strategy in Strategy::ALL {
        let choice = choose(&[preserved.clone(), other.clone()], &ask(strategy));
        assert_eq!(first(&choice), Some(1), "{strategy:?}: 25% left is under the owner's 30% floor");
        assert_eq!(first(&choose(&[other.clone(), burn.clone()], &ask(strategy))), Some(2), "{strategy:?}");
    }
    assert_eq!(Policy::parse("preserve:40"), Some(Policy::Preserve { floor_percent: 40 }));
    assert_eq!(Policy::parse("preserve"), Some(Policy::Preserve { floor_percent: 30 }));
    assert_eq!(Policy::parse("preserve:0"), None);
    assert_eq!(Policy::parse("burn_first").map(Policy::as_text), Some("burn_first".into()));
}

#[test]
fn an_opportunistic_request_takes_only_quota_that_would_otherwise_expire() {
    let expiring = account(0, Plan::Plus, (40.0, Some(600)), WEEK_FAR);
    let fresh = account(1, Plan::Plus, (0.0, None), WEEK_FAR);
    let mut a = ask(Strategy::Planner);
    a.opportunistic = true;
    assert_eq!(first(&choose(&[expiring.clone(), fresh.clone()], &a)), Some(0));
    // The same account spending fast enough to use it all before the reset: nothing would expire.
    let mut busy = expiring;
    busy.quota = busy.quota.map(|mut q| {
        q.rate = 1.0e6;
        q
    });
    assert_eq!(choose(&[busy, fresh], &a), Choice::NoExpiringQuota);
}

#[test]
fn the_peer_strategy_and_the_classic_ones() {
    // codex-lb's waste pressure: a Pro whose week resets soon outranks a Plus with a far reset.
    let plus = account(0, Plan::Plus, (10.0, Some(4 * H)), (30.0, Some(6 * 24 * H)));
    let pro = account(1, Plan::Pro, (10.0, Some(4 * H)), (30.0, Some(24 * H)));
    assert_eq!(first(&choose(&[plus.clone(), pro.clone()], &ask(Strategy::CapacityWeighted))), Some(1));
    let mut rr = ask(Strategy::RoundRobin);
    let all = vec![plus.clone(), pro.clone(), account(2, Plan::Plus, (0.0, None), WEEK_FAR)];
    let firsts: Vec<Option<usize>> = (0..3)
        .map(|t| {
            rr.turn = t;
            first(&choose(&all, &rr))
        })
        .collect();
    assert_eq!(firsts, vec![Some(0), Some(1), Some(2)]);
    let mut sticky = ask(Strategy::Sticky);
    sticky.sticky = Some(1);
    assert_eq!(first(&choose(&all, &sticky)), Some(1));
    // Plan priority first, whatever the strategy.
    let mut ranked = all.clone();
    ranked[0].plan_rank = 1;
    ranked[1].plan_rank = 1;
    assert_eq!(first(&choose(&ranked, &ask(Strategy::Planner))), Some(2));
    assert_eq!(TOKENS_PER_CREDIT, 10_000.0);
    for s in Strategy::ALL {
        assert_eq!(Strategy::parse(s.as_str()), Some(s));
        assert_eq!(Strategy::from_u8(s.as_u8()), s);
    }
}

#[test]
fn accounts_without_windows_come_after_subscription_quota() {
    let mut key = account(0, Plan::Plus, (0.0, None), WEEK_FAR);
    key.quota = None;
    let plus = account(1, Plan::Plus, (90.0, Some(4 * H)), WEEK_FAR);
    assert_eq!(first(&choose(&[key, plus], &ask(Strategy::Planner))), Some(1));
}
