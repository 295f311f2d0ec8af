//! `simulate`: every workload under every strategy, over seeds; prints the table and writes
//! `bench/results/simulator.md` and `.json` (`scripts/simulate`).
//!
//! Usage: `simulate [--seeds N] [--seed S] [--workload NAME] [--strategy NAME] [--out DIR]` (default `SEEDS` seeds,
//! every workload and strategy, out `bench/results`).

use std::path::PathBuf;

fn main() {
    let mut seeds: Vec<u64> = (1..=simulator::SEEDS).collect();
    let (mut workload, mut strategy) = (None, None);
    let mut out = PathBuf::from("bench/results");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--seeds", Some(n)) if n.parse::<u64>().is_ok_and(|n| n > 0) => {
                seeds = (1..=n.parse().unwrap_or(1)).collect();
            }
            ("--seed", Some(n)) if n.parse::<u64>().is_ok() => seeds = vec![n.parse().unwrap_or(1)],
            ("--workload", Some(name)) => workload = Some(name),
            ("--strategy", Some(name)) => strategy = Some(name),
            ("--out", Some(dir)) => out = PathBuf::from(dir),
            _ => {
                eprintln!("usage: simulate [--seeds N] [--seed S] [--workload NAME] [--strategy NAME] [--out DIR]");
                std::process::exit(2);
            }
        }
    }
    let started = std::time::Instant::now();
    let cells = simulator::run(&seeds, workload.as_deref(), strategy.as_deref());
    let markdown = simulator::report::markdown(&cells, &seeds);
    print!("{markdown}");
    let written = std::fs::create_dir_all(&out)
        .and_then(|()| std::fs::write(out.join("simulator.md"), &markdown))
        .and_then(|()| {
            let json = serde_json::to_string_pretty(&cells).map_err(std::io::Error::other)?;
            std::fs::write(out.join("simulator.json"), json)
        });
    match written {
        Ok(()) => eprintln!(
            "simulate: {} runs in {:.1} s; wrote {}/simulator.{{md,json}}",
            cells.len() * seeds.len(),
            started.elapsed().as_secs_f64(),
            out.display()
        ),
        Err(e) => {
            eprintln!("simulate: cannot write {}: {e}", out.display());
            std::process::exit(1);
        }
    }
}
