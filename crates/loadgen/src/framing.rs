//! The framing section of `loadgen report` (issue 26): the gateway's CPU per event at the real backend's framing
//! (one event per HTTP/1.1 chunk / HTTP/2 DATA frame), burst and paced, beside the byte relay's on the same
//! streams in the same sitting, and syscalls per event from `strace -c`; the paced ratios once more paired (the
//! relay and the gateway loaded at the same time on the gateway's core, `scripts/bench-pair`), with short answers
//! paired as an extra row beside them. Reads the `fr.*.json` files `scripts/bench` writes; rows it did not run are
//! left out.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

/// A scenario: its file key, its framing in words, the concurrency, and the upstream events per request (the
/// deltas plus the 8 events around them), which CPU per event divides by. Every target row has issue 26's 200
/// deltas; `short20` (paired only) has 50, so each event carries 4x the request's own cost: reported, not a target.
const ROWS: [(&str, &str, u32, f64); 9] = [
    (
        "burst",
        "one event per frame, no pause (a fast model's burst: the frames arrive together), 200 deltas",
        64,
        208.0,
    ),
    ("burstbuf", "burst as one buffer (up to 16 KB; the framing before issue 26), 200 deltas", 64, 208.0),
    (
        "trickle",
        "one event per frame, no pause, but written at most 4 frames at a time (how the burst row was written \
         before it moved to one event per frame), 200 deltas",
        64,
        208.0,
    ),
    ("paced2_c64", "one event per frame, a delta every 2 ms, 200 deltas", 64, 208.0),
    ("paced2_c512", "one event per frame, a delta every 2 ms, 200 deltas", 512, 208.0),
    ("paced20_c64", "one event per frame, a delta every 20 ms, 200 deltas", 64, 208.0),
    ("paced20_c512", "one event per frame, a delta every 20 ms, 200 deltas", 512, 208.0),
    ("short20_c64", "short answers: one event per frame, a delta every 20 ms, 50 deltas", 64, 58.0),
    ("short20_c512", "short answers: one event per frame, a delta every 20 ms, 50 deltas", 512, 58.0),
];

/// Which worst-of figure a row's paired median counts toward.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Paced2,
    Paced20,
    Short20,
    Other,
}

fn kind(key: &str) -> Kind {
    match key {
        k if k.starts_with("paced20") => Kind::Paced20,
        k if k.starts_with("paced2") => Kind::Paced2,
        k if k.starts_with("short20") => Kind::Short20,
        _ => Kind::Other,
    }
}

/// What the framing section adds to the report: markdown, JSON, and the targets as
/// (name, measured, limit, unit, goal) for `report`'s at-most checks.
pub struct Section {
    pub md: String,
    pub json: Value,
    pub checks: Vec<(&'static str, Option<f64>, f64, &'static str, &'static str)>,
    /// The worst paired median of the short answers (50 deltas every 20 ms): shown under the targets, not one.
    pub short20_worst: Option<f64>,
    /// Under the targets: what the paced ratios read measured one side after the other, beside what each measure
    /// reads of a relay against a second, identical relay (see [`Spread`]).
    pub note: Option<String>,
}

/// The paired measure decides the paced targets only while it reads a relay against a second, identical relay
/// within this of 1 in every round of the sitting (`scripts/bench` runs that check beside the targets' rows).
const PAIRED_AA_TOLERANCE: f64 = 0.05;

/// The range of a measure's readings of two identical sides (a relay against a second relay): the ratio that
/// measure reports for no difference at all, so how far one of its readings moves without any change in the
/// program measured.
#[derive(Clone, Copy, Default)]
struct Spread(Option<(f64, f64)>);

impl Spread {
    fn add(&mut self, v: f64) {
        self.0 = Some(self.0.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
    }

    /// The range, and how far its end furthest from 1 is.
    fn text(self) -> String {
        self.0.map_or_else(
            || "not measured".into(),
            |(lo, hi)| format!("{lo:.3} to {hi:.3} (up to {:.0}% from 1)", (1.0 - lo).max(hi - 1.0) * 100.0),
        )
    }

    /// Every reading within `tolerance` of 1 (`None`: no reading).
    fn within(self, tolerance: f64) -> Option<bool> {
        self.0.map(|(lo, hi)| 1.0 - lo <= tolerance && hi - 1.0 <= tolerance)
    }
}

fn num(v: &Value, path: &str) -> Option<f64> {
    v.pointer(path).and_then(Value::as_f64)
}

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// A side's runs of one row, in order: `fr.<key>.<side>` is the first round, `fr.<key>.<side>.r2`, `.r3`... the
/// next ones (scripts/bench runs each row's sides in turn, round after round).
fn rounds(dir: &Path, read: &impl Fn(&Path, &str) -> Value, key: &str, side: &str) -> Vec<Value> {
    let mut runs = Vec::new();
    let mut next = read(dir, &format!("fr.{key}.{side}"));
    while !next.is_null() {
        runs.push(next);
        next = read(dir, &format!("fr.{key}.{side}.r{}", runs.len() + 1));
    }
    runs
}

/// The median of the measured values (`None` when a round measured nothing: no round is silently left out).
fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut v = values.iter().copied().collect::<Option<Vec<f64>>>()?;
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// A ratio cell: the median, and each round's in brackets when there was more than one.
fn with_rounds(median: Option<f64>, rounds: &[Option<f64>]) -> String {
    match rounds.len() > 1 && rounds.iter().any(Option::is_some) {
        false => cell(median, 2),
        true => format!("{} ({})", cell(median, 2), rounds.iter().map(|r| cell(*r, 2)).collect::<Vec<_>>().join(" ")),
    }
}

pub fn section(dir: &Path, read: impl Fn(&Path, &str) -> Value) -> Section {
    let mut md = String::new();
    let mut rows = serde_json::Map::new();
    let mut checks = Vec::new();
    let per_event = |v: &Value, events: f64| num(v, "/procs/gateway/cpu_us_per_request").map(|us| us / events);
    // Worst gateway/relay ratio of the paced rows measured one side after the other, at 2 ms and at 20 ms, and
    // worst syscall excess of the paced rows.
    let (mut paced2_worst, mut paced20_worst): (Option<f64>, Option<f64>) = (None, None);
    let mut syscall_excess: Option<f64> = None;
    let worst = |w: &mut Option<f64>, v: f64| *w = Some(w.map_or(v, |w: f64| w.max(v)));
    // What each measure reads of a relay against a second, identical relay (the sequential rounds' `relay2` side,
    // the paired `pair_aa` rows).
    let (mut sequential_aa, mut paired_aa) = (Spread::default(), Spread::default());
    // The paired rows: a table of their own, and their worst medians at 2 ms and at 20 ms.
    let mut paired_md = String::new();
    let (mut pair2_worst, mut pair20_worst, mut short20_worst): (Option<f64>, Option<f64>, Option<f64>) =
        (None, None, None);
    // A paired row that failed (a side measured nothing, or requests failed) leaves its target unmeasured: the
    // worst of the rest could read as met.
    let mut pair_failed = false;
    let mut seq_failed = Vec::new();
    for (key, framing, c, events) in ROWS {
        let (gw, h2, relay, relay2) = (
            rounds(dir, &read, key, "gateway"),
            rounds(dir, &read, key, "gateway_h2"),
            rounds(dir, &read, key, "relay"),
            rounds(dir, &read, key, "relay2"),
        );
        // Measured one at a time (the table's row) or only paired (the short answers).
        let sequential = !(gw.is_empty() && h2.is_empty());
        let each = |side: &[Value]| side.iter().map(|v| per_event(v, events)).collect::<Vec<_>>();
        let (g1_each, g2_each, r_each, r2_each) = (each(&gw), each(&h2), each(&relay), each(&relay2));
        let (g1, g2, r) = (median(&g1_each), median(&g2_each), median(&r_each));
        // A round's ratio is taken against the relay's run of the same round (run just before it); the row's
        // ratio is the median of the rounds'. A round one side lacks counts as unmeasured, not as left out.
        let round_ratios = |g: &[Option<f64>]| {
            (0..g.len().max(r_each.len()))
                .map(|i| {
                    let (g, r) = (g.get(i).copied().flatten(), r_each.get(i).copied().flatten());
                    g.zip(r).filter(|(_, r)| *r > 0.0).map(|(g, r)| g / r)
                })
                .collect::<Vec<_>>()
        };
        let (ratios1, ratios2) = (round_ratios(&g1_each), round_ratios(&g2_each));
        let (ratio1, ratio2) = (median(&ratios1), median(&ratios2));
        // The second relay ran last in each round, so its reading spans the whole round: no gateway side's
        // comparison with the relay is further apart in time.
        let aa_ratios = if relay2.is_empty() { Vec::new() } else { round_ratios(&r2_each) };
        let syscalls = |side: &str| {
            let s = read(dir, &format!("fr.{key}.{side}.strace"));
            num(&s, "/syscalls").zip(num(&s, "/requests")).map(|(calls, n)| calls / (n * events))
        };
        let (s_gw, s_h2, s_relay) = (syscalls("gateway"), syscalls("gateway_h2"), syscalls("relay"));
        if sequential && matches!(kind(key), Kind::Paced2 | Kind::Paced20) {
            let row_worst = if kind(key) == Kind::Paced20 { &mut paced20_worst } else { &mut paced2_worst };
            for v in [ratio1, ratio2].into_iter().flatten() {
                worst(row_worst, v);
            }
            // A side that ran but whose ratio is unmeasured (a round failed) leaves the figure unmeasured: the
            // worst of the rest could read as met.
            if (!gw.is_empty() && ratio1.is_none()) || (!h2.is_empty() && ratio2.is_none()) {
                seq_failed.push(kind(key));
            }
            for g in [s_gw, s_h2].into_iter().flatten() {
                if let Some(r) = s_relay {
                    worst(&mut syscall_excess, g - r);
                }
            }
            aa_ratios.iter().flatten().for_each(|&v| sequential_aa.add(v));
        }
        if sequential && key == "burst" {
            // The median request's CPU: the median per event (`g1`, `g2`) times the events of a request.
            let ms = |g: Option<f64>| g.map(|g| g * events / 1000.0);
            checks.push((
                "burst at one event per frame: gateway CPU per 200-delta request, c=64, HTTP/1.1",
                ms(g1),
                0.35,
                "ms",
                "<= 0.35 ms",
            ));
            checks.push((
                "burst at one event per frame: gateway CPU per 200-delta request, c=64, HTTP/2",
                ms(g2),
                0.35,
                "ms",
                "<= 0.35 ms",
            ));
        }
        let mut paired = serde_json::Map::new();
        for transport in ["h1", "h2", "aa"] {
            let pair = read(dir, &format!("fr.{key}.pair_{transport}"));
            if pair.is_null() {
                continue;
            }
            let median = num(&pair, "/median");
            let rounds = pair.get("rounds").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let ratios: Vec<String> = rounds.iter().map(|r| cell(num(r, "/b_over_a"), 3)).collect();
            // A fold from 0.0: `sum` over no rounds is -0.0, printed "-0".
            let errors = rounds
                .iter()
                .fold(0.0, |n, r| n + num(r, "/a_errors").unwrap_or(0.0) + num(r, "/b_errors").unwrap_or(0.0));
            match (transport, median, kind(key)) {
                // The relay against a second relay: every round's reading is the measure's own spread. A round
                // that measured nothing leaves the spread unknown, so the paired targets undecided.
                ("aa", _, _) => {
                    for r in rounds {
                        match num(r, "/b_over_a").filter(|v| *v > 0.0) {
                            Some(v) if errors == 0.0 => paired_aa.add(v),
                            _ => pair_failed = true,
                        }
                    }
                    if rounds.is_empty() {
                        pair_failed = true;
                    }
                }
                (_, Some(m), Kind::Short20) if errors == 0.0 => worst(&mut short20_worst, m),
                (_, Some(m), Kind::Paced20) if errors == 0.0 => worst(&mut pair20_worst, m),
                (_, Some(m), _) if errors == 0.0 => worst(&mut pair2_worst, m),
                // Short answers are no target's row: a failure there is shown in the table, not as a missed target.
                (_, _, Kind::Short20) => {}
                _ => pair_failed = true,
            }
            if paired_md.is_empty() {
                paired_md.push_str(
                    "\nPaired (`scripts/bench-pair`), the measure that decides the paced targets: the relay and the \
                     gateway on the gateway's core at the same time, each under its own load of the same stream, so \
                     both see the same host; CPU per request of the gateway over the relay's, per round and the \
                     median. The rows \"relay against a second relay\" put the same byte relay on both sides: what \
                     this measure reads when there is no difference at all. The short20 rows (50 deltas every 20 ms) \
                     are no target's: a request's own work (its parse, translation, record and ledger row) is shared \
                     by a quarter of the events of the 200-delta rows.\n\n\
                     | scenario | upstream | c per side | seconds per round | gateway / relay, each round | median | errors |\n\
                     |---|---|---|---|---|---|---|\n",
                );
            }
            let upstream = match transport {
                "h2" => "HTTP/2",
                "aa" => "HTTP/1.1, relay against a second relay (no gateway)",
                _ => "HTTP/1.1",
            };
            let _ = writeln!(
                paired_md,
                "| {key} | {upstream} | {} | {} | {} | {} | {errors:.0} |",
                cell(num(&pair, "/concurrency"), 0),
                cell(num(&pair, "/seconds"), 0),
                ratios.join(", "),
                cell(median, 3),
            );
            paired.insert(transport.to_string(), pair);
        }
        if !sequential {
            if !paired.is_empty() {
                rows.insert(
                    key.to_string(),
                    json!({"framing": framing, "concurrency": c, "upstream_events_per_request": events, "paired": paired}),
                );
            }
            continue;
        }
        let errors = gw.iter().chain(&h2).fold(0.0, |n, v| n + num(v, "/errors").unwrap_or(0.0));
        rows.insert(
            key.to_string(),
            json!({
                "framing": framing, "concurrency": c, "upstream_events_per_request": events,
                "gateway_us_per_event": g1, "gateway_h2_us_per_event": g2, "relay_us_per_event": r,
                "gateway_over_relay": ratio1, "gateway_h2_over_relay": ratio2, "rounds": gw.len().max(h2.len()),
                "gateway_over_relay_rounds": ratios1, "gateway_h2_over_relay_rounds": ratios2,
                "second_relay_over_relay_rounds": aa_ratios,
                "gateway_syscalls_per_event": s_gw, "gateway_h2_syscalls_per_event": s_h2,
                "relay_syscalls_per_event": s_relay, "errors": errors, "paired": paired,
            }),
        );
        if md.is_empty() {
            let _ = writeln!(
                md,
                "\n## Framing (issue 26): CPU per upstream event beside the byte relay's\n\n\
                 fake-codex sends one event per HTTP/1.1 chunk and per HTTP/2 DATA frame, as the real backend flushes \
                 them (except the burst-as-one-buffer row); the frames of a burst are ready together, so the fake \
                 writes them together, as a burst reaches a reader (the trickle row writes them a few at a time). The \
                 relay (`loadgen relay`, no HTTP parsing) carries the same stream from the same fake on the gateway's \
                 core, in the same sitting: the floor for any proxy. CPU per event is CPU per request over the upstream events of a \
                 request. A row's sides run one after the other, each alone on the gateway's core (relay, gateway \
                 over HTTP/1.1, over HTTP/2, then a second byte relay), and the row is run in rounds (scripts/bench: \
                 3): each cell is the median of the rounds, a ratio the median of the rounds' ratios (each round \
                 against the relay's run of the same round), the rounds' own in brackets. The second relay is the \
                 same program as the first: its column is what this measure reads with no difference at all. \
                 Syscalls from `strace -c -f` on a separate run of 256 requests (at the row's framing, c=64).\n\n\
                 | scenario | framing | c | gateway HTTP/1.1 upstream, us/event (ms/request) | gateway HTTP/2 \
                 upstream, us/event (ms/request) | byte relay, us/event | gateway / relay (HTTP/1.1, HTTP/2) | \
                 second relay / relay (no gateway) | syscalls per event (gateway HTTP/1.1, HTTP/2, relay) | errors |\n\
                 |---|---|---|---|---|---|---|---|---|---|"
            );
        }
        let ms = |g: Option<f64>| cell(g.map(|g| g * events / 1000.0), 3);
        let _ = writeln!(
            md,
            "| {key} | {framing} | {c} | {} ({}) | {} ({}) | {} | {}, {} | {} | {}, {}, {} | {errors:.0} |",
            cell(g1, 2),
            ms(g1),
            cell(g2, 2),
            ms(g2),
            cell(r, 2),
            with_rounds(ratio1, &ratios1),
            with_rounds(ratio2, &ratios2),
            with_rounds(median(&aa_ratios), &aa_ratios),
            cell(s_gw, 2),
            cell(s_h2, 2),
            cell(s_relay, 2),
        );
    }
    md.push_str(&paired_md);

    // The paired medians decide only while the measure reads a relay against itself as no difference.
    let paired_calibrated = paired_aa.within(PAIRED_AA_TOLERANCE);
    if pair_failed || paired_calibrated == Some(false) {
        (pair2_worst, pair20_worst) = (None, None);
    }
    if seq_failed.contains(&Kind::Paced2) {
        paced2_worst = None;
    }
    if seq_failed.contains(&Kind::Paced20) {
        paced20_worst = None;
    }
    let mut note = None;
    if !rows.is_empty() {
        // Listed even when no paired row ran (a sitting that skipped them): then as not measured.
        checks.push((
            "paced 2 ms: gateway CPU per event over the byte relay's, paired (both loaded at once on the gateway's \
             core): median of the rounds, worst of c=64/512, HTTP/1.1/HTTP/2",
            pair2_worst,
            1.2,
            "x",
            "<= 1.2x",
        ));
        checks.push((
            "paced 20 ms: gateway CPU per event over the byte relay's, paired (both loaded at once on the gateway's \
             core): median of the rounds, worst of c=64/512, HTTP/1.1/HTTP/2",
            pair20_worst,
            1.2,
            "x",
            "<= 1.2x",
        ));
        checks.push((
            "paced: syscalls per event over the relay's (worst paced row)",
            syscall_excess,
            1.0,
            "",
            "<= relay + 1",
        ));
        note = Some(sequential_note(paced2_worst, paced20_worst, sequential_aa, paired_aa, paired_calibrated));
    }
    Section { md, json: Value::Object(rows), checks, short20_worst, note }
}

/// The note under the targets: why the paired rows decide the paced ratios, in this sitting's own figures.
fn sequential_note(
    paced2: Option<f64>,
    paced20: Option<f64>,
    sequential_aa: Spread,
    paired_aa: Spread,
    paired_calibrated: Option<bool>,
) -> String {
    let mut note = format!(
        "How the paced ratios are decided: by the paired rows, where both sides see the same host at the same moment. \
         Measured one side after the other instead (each alone on the gateway's core: the framing table's rows, \
         median of the rounds), the worst ratio read {} at 2 ms and {} at 20 ms. What each measure reads with no \
         difference at all, a byte relay against a second, identical relay in the same sitting: {} in single rounds \
         one side after the other, {} paired. The sequential rows show the per-event costs; a limit 20% above the \
         relay is decided by the measure whose reading of no difference stays within {:.0}% of 1.",
        cell(paced2, 3),
        cell(paced20, 3),
        sequential_aa.text(),
        paired_aa.text(),
        PAIRED_AA_TOLERANCE * 100.0,
    );
    match paired_calibrated {
        Some(true) => {}
        Some(false) => note.push_str(
            " In this sitting a paired relay-against-relay round went further than that from 1, so the paired targets \
             are left unmeasured.",
        ),
        None => note.push_str(" The paired relay-against-relay rows did not run in this sitting."),
    }
    note
}
