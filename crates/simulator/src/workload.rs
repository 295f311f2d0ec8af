//! Who sends work, and when: developers on working days, each running agent conversations whose turns are tool
//! loops of requests sent back to back, with think time between turns. Every random draw of a developer comes
//! from that developer's own generator, so every strategy faces the same work in the same order.
//!
//! The workloads (the list): one developer; a team of eight over working days; bursts of subagents; long
//! sessions with affinity. The pools are sized so the work comes near what the accounts hold, where the choice
//! of account decides when clients first see a quota error.

use planner::Plan;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const DAY: i64 = 86_400;
pub const HOUR: i64 = 3_600;

/// A workload: the pool and the people.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: &'static str,
    pub what: &'static str,
    /// The accounts' plans.
    pub pool: Vec<Plan>,
    pub developers: Vec<Style>,
    /// Simulated days (day 0 is a Monday).
    pub days: i64,
    /// An overload episode on the first account: (day, from hour, minutes).
    pub overload: Option<(i64, i64, i64)>,
    /// Accounts (by position) whose owners also use them directly, outside the gateway: one to two sessions a
    /// day of half an hour to two hours, any time from 7:00 to 23:00, at one heavy developer's pace.
    pub owned: Vec<usize>,
}

/// How a developer works.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    /// Requests per turn (tool-loop steps), inclusive range.
    pub steps: (u32, u32),
    /// Turns per conversation.
    pub turns: (u32, u32),
    /// Think time between turns, seconds.
    pub think: (i64, i64),
    /// Output tokens per request.
    pub output: (u64, u64),
    /// A conversation's first input (system prompt, tools, first message).
    pub first_input: (u64, u64),
    /// A conversation is compacted (a new one starts) past this many input tokens.
    pub max_context: u64,
    /// Every so many minutes (a range), a burst of this many parallel subagent conversations (0: none).
    pub subagents: (u32, u32),
    pub subagent_every: (i64, i64),
}

const REGULAR: Style = Style {
    steps: (2, 14),
    turns: (3, 14),
    think: (90, 900),
    output: (200, 1_400),
    first_input: (9_000, 20_000),
    max_context: 200_000,
    subagents: (0, 0),
    subagent_every: (0, 0),
};

/// The workloads, in the order results show them.
pub fn all() -> Vec<Spec> {
    vec![
        Spec {
            name: "one_developer",
            what: "one developer, heavy agent use, on three Plus accounts, two weeks",
            pool: vec![Plan::Plus, Plan::Plus, Plan::Plus],
            developers: vec![Style { think: (45, 420), ..REGULAR }],
            days: 14,
            overload: None,
            owned: Vec::new(),
        },
        Spec {
            name: "team",
            what: "a team of eight on working days, on six Plus and one Pro account (three of the Plus accounts' owners \
                   also use them directly, outside the gateway), two weeks",
            pool: vec![Plan::Plus, Plan::Plus, Plan::Plus, Plan::Plus, Plan::Plus, Plan::Plus, Plan::Pro],
            developers: vec![REGULAR; 8],
            days: 14,
            overload: None,
            owned: vec![0, 1, 2],
        },
        Spec {
            name: "subagents",
            what: "two developers whose agents spawn bursts of 4-10 parallel subagents, on six Plus accounts; \
                   the first account overloaded for 20 minutes on day 1",
            pool: vec![Plan::Plus, Plan::Plus, Plan::Plus, Plan::Plus, Plan::Plus, Plan::Plus],
            developers: vec![Style { subagents: (4, 10), subagent_every: (1_800, 5_400), ..REGULAR }; 2],
            days: 14,
            overload: Some((1, 11, 20)),
            owned: Vec::new(),
        },
        Spec {
            name: "long_sessions",
            what: "three developers in long sessions (contexts to 250k tokens, long tool loops), on six Plus and \
                   one Pro account (one owner also uses a Plus directly)",
            pool: vec![Plan::Plus, Plan::Plus, Plan::Plus, Plan::Plus, Plan::Plus, Plan::Plus, Plan::Pro],
            developers: vec![
                Style {
                    steps: (8, 40),
                    turns: (10, 40),
                    think: (60, 600),
                    output: (300, 2_000),
                    first_input: (20_000, 40_000),
                    max_context: 250_000,
                    ..REGULAR
                };
                3
            ],
            days: 14,
            overload: None,
            owned: vec![0],
        },
    ]
}

/// A developer's working day: (start, lunch start, lunch end, end), unix-like seconds from the run's start.
pub fn day_plan(rng: &mut StdRng, day: i64) -> Option<(i64, i64, i64, i64)> {
    if day % 7 >= 5 {
        return None;
    }
    let base = day * DAY;
    let start = base + 8 * HOUR + 30 * 60 + rng.gen_range(0..90 * 60);
    let end = base + 17 * HOUR + rng.gen_range(0..120 * 60);
    Some((start, base + 12 * HOUR, base + 13 * HOUR, end))
}

/// One conversation's shape, drawn when it starts.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub key: u64,
    pub context: u64,
    pub turns_left: u32,
    pub steps_left: u32,
    pub max_context: u64,
    /// A subagent's: it ends with its one turn.
    pub subagent: bool,
}

/// A developer: their style and their own random generator.
#[derive(Debug)]
pub struct Developer {
    pub style: Style,
    pub rng: StdRng,
    pub id: usize,
    conversations: u64,
}

impl Developer {
    pub fn new(style: Style, seed: u64, id: usize) -> Developer {
        let rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(id as u64));
        Developer { style, rng, id, conversations: 0 }
    }

    fn range_u64(&mut self, (a, b): (u64, u64)) -> u64 {
        if b <= a { a } else { self.rng.gen_range(a..=b) }
    }

    fn range_u32(&mut self, (a, b): (u32, u32)) -> u32 {
        if b <= a { a } else { self.rng.gen_range(a..=b) }
    }

    pub fn range_i64(&mut self, (a, b): (i64, i64)) -> i64 {
        if b <= a { a } else { self.rng.gen_range(a..=b) }
    }

    /// A new conversation (a subagent's has one turn and a smaller prompt).
    pub fn conversation(&mut self, subagent: bool) -> Conversation {
        self.conversations += 1;
        let key = (self.id as u64) << 32 | self.conversations;
        let (context, turns) = if subagent {
            (self.range_u64((12_000, 40_000)), 1)
        } else {
            (self.range_u64(self.style.first_input), self.range_u32(self.style.turns))
        };
        let steps = if subagent { self.range_u32((3, 10)) } else { self.range_u32(self.style.steps) };
        Conversation {
            key,
            context,
            turns_left: turns.saturating_sub(1),
            steps_left: steps,
            max_context: self.style.max_context,
            subagent,
        }
    }

    /// The output of the next request and the tool result that follows it (tokens).
    pub fn step(&mut self) -> (u64, u64) {
        (self.range_u64(self.style.output), self.range_u64((800, 6_000)))
    }

    /// Seconds between the steps of one turn (the tool runs).
    pub fn tool_gap(&mut self) -> i64 {
        self.range_i64((1, 6))
    }

    /// Think time before the next turn.
    pub fn think(&mut self) -> i64 {
        self.range_i64(self.style.think)
    }

    /// The next turn's number of steps.
    pub fn steps(&mut self) -> u32 {
        self.range_u32(self.style.steps)
    }

    pub fn subagents(&mut self) -> u32 {
        self.range_u32(self.style.subagents)
    }
}

/// How long a request runs: a few seconds to first token, then the output at ~60 tokens a second.
pub fn duration(output: u64) -> i64 {
    3 + (output / 60) as i64
}
