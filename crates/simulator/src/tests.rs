//! The issue's must-hold, checked on the simulator's own runs: the same seeds as bench/results/simulator.md
//! (`scripts/simulate`), so the suite fails when a change to the pool's decisions breaks what the results show.
//! `report::checks` states it: on every workload, against every other strategy, at least as much served before
//! the first quota error and no more conversations moved; strictly more than least_used on the team; no account
//! over its limit.

#[test]
fn the_planner_holds_what_the_issue_asks_on_every_workload() {
    let seeds: Vec<u64> = (1..=crate::SEEDS).collect();
    let cells = crate::run_all(&seeds);
    let checks = crate::report::checks(&cells);
    // Every workload against every other strategy, for both served and moved: a check that went missing would
    // pass silently.
    let pairs = crate::workload::all().len() * (crate::STRATEGIES.len() - 1);
    let moved = checks.iter().filter(|(s, _)| s.contains("no more conversations moved than")).count();
    let served = checks.iter().filter(|(s, _)| s.contains("serves at least as much")).count();
    assert_eq!((served, moved), (pairs, pairs), "{checks:#?}");
    let failed: Vec<String> = checks.into_iter().filter(|(_, holds)| !holds).map(|(s, _)| s).collect();
    assert!(failed.is_empty(), "{failed:#?}\n{}", crate::report::markdown(&cells, &seeds));
}
