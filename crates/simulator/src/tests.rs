//! The issue's must-hold, checked on the simulator's own runs: the same seeds as bench/results/simulator.md
//! (`scripts/simulate`), so the suite fails when a change to the pool's decisions breaks what the results show.

#[test]
fn the_planner_holds_what_the_issue_asks_on_every_workload() {
    let seeds: Vec<u64> = (1..=crate::SEEDS).collect();
    let cells = crate::run_all(&seeds);
    let failed: Vec<String> =
        crate::report::checks(&cells).into_iter().filter(|(_, holds)| !holds).map(|(s, _)| s).collect();
    assert!(failed.is_empty(), "{failed:#?}\n{}", crate::report::markdown(&cells, &seeds));
}
