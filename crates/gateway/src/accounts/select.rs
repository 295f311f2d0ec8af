//! The pure part of routing: given what is known about each usable account, in which order to try them.

use crate::config::Strategy;

/// What selection needs to know about one usable account.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Position in the pool's account list (stable order of creation).
    pub index: usize,
    /// Lower is preferred (from `plan_priority`).
    pub plan_rank: usize,
    /// Percent of quota left in the tighter of the two windows (100 when unknown).
    pub headroom: f64,
    /// When the tighter window resets (unix s), if known.
    pub reset_at: Option<i64>,
    pub in_flight: usize,
    pub last_used: i64,
}

/// Order `candidates` for a request without affinity. `turn` is a counter for round robin; `sticky` is the
/// index of the account the pool stuck to last, if any.
pub fn order(mut candidates: Vec<Candidate>, strategy: Strategy, turn: usize, sticky: Option<usize>) -> Vec<usize> {
    match strategy {
        // Headroom compared in whole percent, so noise does not decide; a reset time only matters for an account
        // that has used something (an unused window's reset says nothing).
        Strategy::LeastUsed => candidates.sort_by(|a, b| {
            let reset = |c: &Candidate| if c.headroom < 100.0 { c.reset_at.unwrap_or(i64::MAX) } else { i64::MAX };
            a.plan_rank
                .cmp(&b.plan_rank)
                .then((b.headroom.floor() as i64).cmp(&(a.headroom.floor() as i64)))
                .then(reset(a).cmp(&reset(b)))
                .then(a.in_flight.cmp(&b.in_flight))
                .then(a.last_used.cmp(&b.last_used))
                .then(a.index.cmp(&b.index))
        }),
        Strategy::RoundRobin => {
            candidates.sort_by(|a, b| a.plan_rank.cmp(&b.plan_rank).then(a.index.cmp(&b.index)));
            let best_rank = candidates.first().map(|c| c.plan_rank).unwrap_or(0);
            let tier = candidates.iter().take_while(|c| c.plan_rank == best_rank).count();
            if tier > 0 {
                candidates[..tier].rotate_left(turn % tier);
            }
        }
        Strategy::Sticky => candidates.sort_by(|a, b| {
            let a_stuck = Some(a.index) == sticky;
            let b_stuck = Some(b.index) == sticky;
            b_stuck.cmp(&a_stuck).then(a.plan_rank.cmp(&b.plan_rank)).then(a.index.cmp(&b.index))
        }),
    }
    candidates.into_iter().map(|c| c.index).collect()
}

/// Rank of `plan` in the preference list; unlisted plans after all listed ones.
pub fn plan_rank(plan: Option<&str>, priority: &[String]) -> usize {
    plan.and_then(|p| priority.iter().position(|x| x.eq_ignore_ascii_case(p))).unwrap_or(priority.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(index: usize, headroom: f64) -> Candidate {
        Candidate { index, plan_rank: 0, headroom, reset_at: None, in_flight: 0, last_used: 0 }
    }

    #[test]
    fn least_used_prefers_headroom_then_soonest_reset_then_idle() {
        assert_eq!(order(vec![c(0, 10.0), c(1, 90.0), c(2, 50.0)], Strategy::LeastUsed, 0, None), vec![1, 2, 0]);
        let mut a = c(0, 50.0);
        a.reset_at = Some(200);
        let mut b = c(1, 50.0);
        b.reset_at = Some(100);
        assert_eq!(order(vec![a, b], Strategy::LeastUsed, 0, None), vec![1, 0]);
        let mut a = c(0, 100.0);
        a.last_used = 5;
        let b = c(1, 100.0);
        assert_eq!(order(vec![a, b], Strategy::LeastUsed, 0, None), vec![1, 0]);
    }

    #[test]
    fn plan_priority_comes_first() {
        let mut pro = c(0, 100.0);
        pro.plan_rank = 1;
        let mut plus = c(1, 5.0);
        plus.plan_rank = 0;
        assert_eq!(order(vec![pro, plus], Strategy::LeastUsed, 0, None), vec![1, 0]);
        assert_eq!(plan_rank(Some("Plus"), &["plus".into(), "pro".into()]), 0);
        assert_eq!(plan_rank(Some("team"), &["plus".into()]), 1);
    }

    #[test]
    fn round_robin_rotates_within_the_best_plan() {
        let all = || vec![c(0, 1.0), c(1, 1.0), c(2, 1.0)];
        assert_eq!(order(all(), Strategy::RoundRobin, 0, None), vec![0, 1, 2]);
        assert_eq!(order(all(), Strategy::RoundRobin, 1, None), vec![1, 2, 0]);
        assert_eq!(order(all(), Strategy::RoundRobin, 5, None), vec![2, 0, 1]);
    }

    #[test]
    fn sticky_keeps_the_current_account() {
        assert_eq!(order(vec![c(0, 1.0), c(1, 1.0)], Strategy::Sticky, 0, Some(1)), vec![1, 0]);
        assert_eq!(order(vec![c(0, 1.0), c(1, 1.0)], Strategy::Sticky, 0, None), vec![0, 1]);
    }
}
