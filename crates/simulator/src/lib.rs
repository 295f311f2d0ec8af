//! The quota planner judged in simulated time (issue 71): accounts whose windows behave as the backend's
//! (`backend`), workloads of developers (`workload`), the gateway's own pool decisions (`pool`: `planner::choose`
//! and the planner crate's quota, governor and defaults), played as events (`sim`) and measured (`metrics`) for
//! every strategy side by side. `scripts/simulate` writes bench/results/simulator.md; the must-hold comparison
//! is a test (`tests`).

pub mod backend;
pub mod metrics;
pub mod pool;
pub mod report;
pub mod sim;
pub mod workload;

use planner::Strategy;

/// The strategies compared: the gateway's four plus the strongest peer's, in the order results show them.
pub const STRATEGIES: [Strategy; 4] =
    [Strategy::Planner, Strategy::LeastUsed, Strategy::CapacityWeighted, Strategy::RoundRobin];

/// Seeds of a full run (`scripts/simulate`, and the must-hold test).
pub const SEEDS: u64 = 40;

/// One workload under one strategy, over `seeds` (each seed draws other starting windows and other developers).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cell {
    pub workload: &'static str,
    pub strategy: &'static str,
    pub runs: Vec<metrics::Metrics>,
}

impl Cell {
    /// The mean of `f` over the runs.
    pub fn mean(&self, f: impl Fn(&metrics::Metrics) -> f64) -> f64 {
        self.runs.iter().map(f).sum::<f64>() / self.runs.len().max(1) as f64
    }
}

/// Every workload under every strategy.
pub fn run_all(seeds: &[u64]) -> Vec<Cell> {
    run(seeds, None, None)
}

/// The workloads named `workload` (all when `None`) under the strategies named `strategy` (all when `None`),
/// the runs spread over the machine's cores (each run is independent and deterministic).
pub fn run(seeds: &[u64], workload: Option<&str>, strategy: Option<&str>) -> Vec<Cell> {
    let mut cells: Vec<(workload::Spec, Strategy)> = Vec::new();
    for spec in workload::all().into_iter().filter(|s| workload.is_none_or(|w| w == s.name)) {
        for s in STRATEGIES.into_iter().filter(|s| strategy.is_none_or(|o| o == s.as_str())) {
            cells.push((spec.clone(), s));
        }
    }
    let jobs: Vec<(usize, u64)> = (0..cells.len()).flat_map(|c| seeds.iter().map(move |&s| (c, s))).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut results: Vec<(usize, u64, metrics::Metrics)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(cell, seed)) = jobs.get(i) else { break done };
                        let (spec, strategy) = &cells[cell];
                        done.push((cell, seed, sim::Sim::new(spec, *strategy, seed).run()));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    results.sort_by_key(|(cell, seed, _)| (*cell, *seed));
    cells
        .iter()
        .enumerate()
        .map(|(i, (spec, strategy))| Cell {
            workload: spec.name,
            strategy: strategy.as_str(),
            runs: results.iter().filter(|(c, ..)| *c == i).map(|(.., m)| m.clone()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
