//! The results as a table per workload (means over seeds) and the must-hold checks, in Markdown.

use std::fmt::Write;

use crate::Cell;
use crate::workload;

fn hours(secs: f64) -> String {
    if secs.is_finite() { format!("{:.1} h", secs / 3600.0) } else { "none".into() }
}

/// The must-hold checks, as (statement, holds) pairs: on every workload the planner serves at least as
/// much before the first quota error as every other strategy (the mean over the seeds: each seed is another draw
/// of the workload) with no more conversations moved than each of them, strictly more than least_used on the team
/// workload, and no account ever over its limit of requests in flight.
pub fn checks(cells: &[Cell]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let served = |c: &Cell| c.mean(|m| m.served_before_first_error as f64);
    let moved = |c: &Cell| c.mean(|m| m.conversations_moved as f64);
    for spec in workload::all() {
        let Some(planner) = cells.iter().find(|c| c.workload == spec.name && c.strategy == "planner") else {
            continue;
        };
        for other in cells.iter().filter(|c| c.workload == spec.name && c.strategy != "planner") {
            out.push((
                format!(
                    "{}: the planner serves at least as much before the first quota error as {} ({:.0} against {:.0}; \
                     at least as much on {} of {} seeds)",
                    spec.name,
                    other.strategy,
                    served(planner),
                    served(other),
                    wins(planner, other),
                    planner.runs.len()
                ),
                served(planner) >= served(other),
            ));
            out.push((
                format!(
                    "{}: with no more conversations moved than {} ({:.1} against {:.1}; no more on {} of {} seeds)",
                    spec.name,
                    other.strategy,
                    moved(planner),
                    moved(other),
                    fewer_moved(planner, other),
                    planner.runs.len()
                ),
                moved(planner) <= moved(other),
            ));
        }
        let over: u64 =
            cells.iter().filter(|c| c.workload == spec.name).flat_map(|c| &c.runs).map(|m| m.over_limit).sum();
        out.push((format!("{}: no account over its limit of requests in flight, any strategy", spec.name), over == 0));
    }
    let team = |s: &str| cells.iter().find(|c| c.workload == "team" && c.strategy == s);
    if let (Some(p), Some(l)) = (team("planner"), team("least_used")) {
        out.push((
            format!(
                "team: the planner serves strictly more than least_used ({:.0} against {:.0})",
                served(p),
                served(l)
            ),
            served(p) > served(l),
        ));
    }
    out
}

/// Seeds on which `a` served at least as much before the first quota error as `b`.
fn wins(a: &Cell, b: &Cell) -> usize {
    a.runs.iter().zip(&b.runs).filter(|(x, y)| x.served_before_first_error >= y.served_before_first_error).count()
}

/// Seeds on which `a` moved no more conversations than `b`.
fn fewer_moved(a: &Cell, b: &Cell) -> usize {
    a.runs.iter().zip(&b.runs).filter(|(x, y)| x.conversations_moved <= y.conversations_moved).count()
}

/// Conversations moved, the planner against each other strategy, and why each strategy's moved (at each
/// conversation's first move; `sim::Sim::start`, `pool::Pool::why_not`), as Markdown list items.
fn moves(cells: &[Cell]) -> Vec<String> {
    let mut out = Vec::new();
    for spec in workload::all() {
        let of = |s: &str| cells.iter().find(|c| c.workload == spec.name && c.strategy == s);
        let Some(p) = of("planner") else { continue };
        let others: Vec<String> = cells
            .iter()
            .filter(|c| c.workload == spec.name && c.strategy != "planner")
            .map(|c| format!("{} {:.1}", c.strategy, c.mean(|m| m.conversations_moved as f64)))
            .collect();
        out.push(format!(
            "- {}: planner {:.1}; {}",
            spec.name,
            p.mean(|m| m.conversations_moved as f64),
            others.join(", ")
        ));
        for c in cells.iter().filter(|c| c.workload == spec.name) {
            out.push(format!("  - {}: {}", c.strategy, because(c)));
        }
    }
    out
}

/// Why a cell's conversations moved (at each one's first move), means per run.
fn because(c: &Cell) -> String {
    let mut reasons: Vec<&'static str> = c.runs.iter().flat_map(|m| m.moved_because.keys().copied()).collect();
    reasons.sort_unstable();
    reasons.dedup();
    let parts: Vec<String> = reasons
        .into_iter()
        .map(|r| format!("{r} {:.1}", c.mean(|m| m.moved_because.get(r).copied().unwrap_or(0) as f64)))
        .collect();
    if parts.is_empty() { "none".into() } else { parts.join(", ") }
}

pub fn markdown(cells: &[Cell], seeds: &[u64]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Quota planner, simulated (issue 71)\n");
    let _ = writeln!(
        s,
        "`scripts/simulate` (crates/simulator): each workload under each strategy, {} seeds (each seed: other \
         starting windows, other developers); means over the seeds. Requests are agent steps. The pool runs the \
         gateway's own decisions (`planner::choose`, quota, governor, defaults: {} requests in flight per account, \
         {} accounts per request). docs/planner.md explains the model.\n",
        seeds.len(),
        planner::defaults::MAX_IN_FLIGHT,
        planner::defaults::MAX_ACCOUNTS_PER_REQUEST,
    );
    for spec in workload::all() {
        let _ = writeln!(s, "## {}\n\n{}.\n", spec.name, spec.what);
        let _ = writeln!(
            s,
            "| strategy | served before 1st quota error | (worst seed) | 1st quota error at | served / week | quota errors | busy | quota lost at resets (credits) | cache ratio | conversations moved | moves | peak in flight | overload answers |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for c in cells.iter().filter(|c| c.workload == spec.name) {
            let worst = c.runs.iter().map(|m| m.served_before_first_error).min().unwrap_or(0);
            let first = c.mean(|m| m.first_quota_error_at.map_or(f64::INFINITY, |t| t as f64));
            let _ = writeln!(
                s,
                "| {} | {:.0} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} | {:.1} | {:.1} | {} | {:.1} |",
                c.strategy,
                c.mean(|m| m.served_before_first_error as f64),
                worst,
                hours(first),
                c.mean(|m| m.served_per_week),
                c.mean(|m| m.quota_errors as f64),
                c.mean(|m| m.busy_errors as f64),
                c.mean(|m| m.quota_lost_credits),
                c.mean(|m| m.cache_ratio),
                c.mean(|m| m.conversations_moved as f64),
                c.mean(|m| m.moves as f64),
                c.runs.iter().map(|m| m.peak_in_flight).max().unwrap_or(0),
                c.mean(|m| m.overload_answers as f64),
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## Must hold\n");
    for (statement, holds) in checks(cells) {
        let _ = writeln!(s, "- [{}] {statement}", if holds { "x" } else { " " });
    }
    let _ = writeln!(s, "\n## Conversations moved (mean per run), and why\n");
    for line in moves(cells) {
        let _ = writeln!(s, "{line}");
    }
    s
}
