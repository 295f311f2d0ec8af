//! One run: a workload against a pool under one strategy, in simulated seconds, as events in time order
//! (requests sent, requests ended, waits that run out, usage polls, working days and subagent bursts).
//!
//! The client side: a developer's conversation sends its next step when the previous one ended (the tool ran);
//! a step refused for quota is sent again after the `Retry-After` it was given (at most half an hour: a person
//! comes back), one refused as busy after five seconds. The gateway side is `pool.rs`: the lease, failover over at
//! most `planner::defaults::MAX_ACCOUNTS_PER_REQUEST` accounts, the queue with its deadline, the wait for a
//! conversation's own account, and the usage polls of quiet accounts.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use planner::{Strategy, cost, defaults};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backend::{Admission, Quirks, TrueAccount};
use crate::metrics::Metrics;
use crate::pool::{Placement, Pool};
use crate::workload::{self, Conversation, DAY, Developer, HOUR, Spec};

/// The prompt cache holds a conversation's prefix on its account this long after its last request.
const CACHE_TTL: i64 = 3_600;
/// Quiet accounts' usage is polled this often (`[routing] usage_poll_secs`).
const POLL: i64 = 300;
const RETRY_CAP: i64 = 1_800;
const BUSY_RETRY: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A working day starts for a developer.
    Day {
        dev: usize,
        day: i64,
    },
    /// A conversation sends its next step.
    Send {
        dev: usize,
        conv: u64,
    },
    /// A request ends.
    Done {
        req: u64,
    },
    /// A queued request's deadline, or its wait for its own account.
    QueueDeadline {
        req: u64,
    },
    HomeWaitOver {
        req: u64,
    },
    /// A burst of subagents.
    Spawn {
        dev: usize,
    },
    Poll,
    /// An owner's day of direct use of their account (sessions drawn at the day's start), and one slice of it.
    OwnerDay {
        account: usize,
        day: i64,
    },
    OwnerUse {
        account: usize,
        until: i64,
    },
}

struct Request {
    dev: usize,
    conv: u64,
    input: u64,
    output: u64,
    tool: u64,
    tried: Vec<usize>,
    sent_at: i64,
    wait_for_home: bool,
    queued_on: Option<usize>,
    account: Option<usize>,
    estimate: f64,
    cached: u64,
}

struct Dev {
    person: Developer,
    conversations: HashMap<u64, Conversation>,
    /// The main conversation (subagents come and go beside it).
    main: Option<u64>,
    today: Option<(i64, i64, i64, i64)>,
}

/// The conversation's last request: account, time, input size (what its prefix holds in the cache).
type LastSeen = (usize, i64, u64);

pub struct Sim {
    now: i64,
    seq: u64,
    events: BinaryHeap<Reverse<(i64, u64, Event)>>,
    pool: Pool,
    devs: Vec<Dev>,
    requests: HashMap<u64, Request>,
    next_req: u64,
    last_seen: HashMap<u64, LastSeen>,
    /// Conversations with a step scheduled or a request alive (a new working day does not start them twice).
    active: HashSet<u64>,
    coins: StdRng,
    owners: StdRng,
    end: i64,
    pub metrics: Metrics,
}

/// The pool's accounts at the start of a run: a pool in use has windows part used, resetting at times of their
/// own (drawn from the run's seed, the same for every strategy).
fn accounts(spec: &Spec, seed: u64) -> Vec<TrueAccount> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_acc0);
    spec.pool
        .iter()
        .enumerate()
        .map(|(i, plan)| {
            let short = if rng.gen_bool(0.3) {
                (0.0, None)
            } else {
                (rng.gen_range(0.0..0.7), Some(rng.gen_range(300..5 * HOUR)))
            };
            let long = (rng.gen_range(0.0..0.6), Some(rng.gen_range(HOUR..7 * DAY)));
            // Every other account shows the weekly quirks.
            let quirks = if i % 2 == 1 { Quirks { swing: 0.3, partial_restore: 0.2 } } else { Quirks::default() };
            let mut a = TrueAccount::new(*plan, short, long, quirks);
            if i == 0
                && let Some((day, hour, minutes)) = spec.overload
            {
                let from = day * DAY + hour * HOUR;
                a.overloads.push((from, from + minutes * 60));
            }
            a
        })
        .collect()
}

impl Sim {
    pub fn new(spec: &Spec, strategy: Strategy, seed: u64) -> Sim {
        let devs = spec
            .developers
            .iter()
            .enumerate()
            .map(|(id, style)| Dev {
                person: Developer::new(*style, seed, id),
                conversations: HashMap::new(),
                main: None,
                today: None,
            })
            .collect();
        let mut sim = Sim {
            now: 0,
            seq: 0,
            events: BinaryHeap::new(),
            pool: Pool::new(accounts(spec, seed), strategy),
            devs,
            requests: HashMap::new(),
            next_req: 0,
            last_seen: HashMap::new(),
            active: HashSet::new(),
            coins: StdRng::seed_from_u64(seed ^ 0xc01),
            owners: StdRng::seed_from_u64(seed ^ 0x0_77e5),
            end: spec.days * DAY,
            metrics: Metrics::default(),
        };
        for dev in 0..sim.devs.len() {
            sim.at(0, Event::Day { dev, day: 0 });
        }
        sim.at(POLL, Event::Poll);
        for account in spec.owned.iter().copied() {
            sim.at(0, Event::OwnerDay { account, day: 0 });
        }
        sim
    }

    fn at(&mut self, time: i64, event: Event) {
        if let Event::Send { conv, .. } = event {
            self.active.insert(conv);
        }
        self.seq += 1;
        self.events.push(Reverse((time, self.seq, event)));
    }

    /// Play the whole run.
    pub fn run(mut self) -> Metrics {
        while let Some(Reverse((time, _, event))) = self.events.pop() {
            if time > self.end {
                break;
            }
            self.now = time;
            match event {
                Event::Day { dev, day } => self.day(dev, day),
                Event::Send { dev, conv } => self.send(dev, conv),
                Event::Done { req } => self.done(req),
                Event::QueueDeadline { req } => self.queue_deadline(req),
                Event::HomeWaitOver { req } => self.home_wait_over(req),
                Event::Spawn { dev } => self.spawn(dev),
                Event::Poll => self.poll(),
                Event::OwnerDay { account, day } => self.owner_day(account, day),
                Event::OwnerUse { account, until } => self.owner_use(account, until),
            }
        }
        let lost: f64 = self.pool.accounts.iter().map(|a| a.truth.lost).sum();
        self.metrics.finish(&self.pool, lost, self.end);
        self.metrics
    }

    fn day(&mut self, dev: usize, day: i64) {
        if day * DAY >= self.end {
            return;
        }
        self.at((day + 1) * DAY, Event::Day { dev, day: day + 1 });
        let plan = workload::day_plan(&mut self.devs[dev].person.rng, day);
        self.devs[dev].today = plan;
        let Some((start, ..)) = plan else { return };
        let d = &mut self.devs[dev];
        let conv = match d.main {
            Some(c) => c,
            None => {
                let c = d.person.conversation(false);
                let key = c.key;
                d.conversations.insert(key, c);
                d.main = Some(key);
                key
            }
        };
        let subagents = d.person.style.subagents.1 > 0;
        if !self.active.contains(&conv) {
            self.at(start, Event::Send { dev, conv });
        }
        let d = &mut self.devs[dev];
        if subagents {
            let every = d.person.style.subagent_every;
            let first = d.person.range_i64(every);
            self.at(start + first, Event::Spawn { dev });
        }
    }

    /// When a developer takes up work again after `t`: now, after lunch, or the next working day (`None`).
    fn resume_at(&self, dev: usize, t: i64) -> Option<i64> {
        let (_, lunch, lunch_end, end) = self.devs[dev].today?;
        if t >= end {
            None
        } else if (lunch..lunch_end).contains(&t) {
            Some(lunch_end)
        } else {
            Some(t)
        }
    }

    fn spawn(&mut self, dev: usize) {
        let Some(now) = self.resume_at(dev, self.now).filter(|t| *t == self.now) else {
            if let Some(later) = self.resume_at(dev, self.now) {
                self.at(later, Event::Spawn { dev });
            }
            return;
        };
        // The agent that spawns them waits for its last burst to end before it spawns another.
        if self.devs[dev].conversations.values().any(|c| c.subagent) {
            self.at(now + 60, Event::Spawn { dev });
            return;
        }
        let d = &mut self.devs[dev];
        let mut keys = Vec::new();
        for _ in 0..d.person.subagents() {
            let c = d.person.conversation(true);
            keys.push(c.key);
            d.conversations.insert(c.key, c);
        }
        for key in keys {
            self.at(now, Event::Send { dev, conv: key });
        }
        let d = &mut self.devs[dev];
        let next = d.person.range_i64(d.person.style.subagent_every);
        self.at(now + next, Event::Spawn { dev });
    }

    /// A conversation sends its next step.
    fn send(&mut self, dev: usize, conv: u64) {
        let Some(c) = self.devs[dev].conversations.get(&conv) else { return };
        let input = c.context;
        let (output, tool) = self.devs[dev].person.step();
        let id = self.next_req;
        self.next_req += 1;
        self.requests.insert(
            id,
            Request {
                dev,
                conv,
                input,
                output,
                tool,
                tried: Vec::new(),
                sent_at: self.now,
                wait_for_home: true,
                queued_on: None,
                account: None,
                estimate: 0.0,
                cached: 0,
            },
        );
        self.place(id);
    }

    /// Run the lease for a request (again, after a wait or a failover).
    fn place(&mut self, id: u64) {
        let Some(r) = self.requests.get(&id) else { return };
        let placement = self.pool.place(r.conv, r.input, &r.tried, r.wait_for_home, self.now);
        match placement {
            Placement::Start(i) => self.start(id, i),
            Placement::Queue(i) => {
                let home = self.pool.affinity.get(&r.conv).map(|&(a, _)| a) == Some(i) && r.wait_for_home;
                self.pool.accounts[i].queue.push_back(id);
                if let Some(r) = self.requests.get_mut(&id) {
                    r.queued_on = Some(i);
                }
                let deadline = r_sent(&self.requests, id) + defaults::QUEUE_TIMEOUT_SECS as i64;
                self.at(deadline.max(self.now), Event::QueueDeadline { req: id });
                if home {
                    self.at(self.now + defaults::HOME_WAIT_SECS as i64, Event::HomeWaitOver { req: id });
                }
            }
            Placement::OutOfQuota { retry_in } => {
                self.metrics.quota_error(self.now, "pool out");
                self.retry(id, retry_in.min(RETRY_CAP));
            }
            Placement::Busy => {
                self.metrics.busy_errors += 1;
                self.retry(id, BUSY_RETRY);
            }
        }
    }

    /// The client got an error: it sends the step again later.
    fn retry(&mut self, id: u64, after: i64) {
        if let Some(r) = self.requests.remove(&id) {
            self.at(self.now + after.max(1), Event::Send { dev: r.dev, conv: r.conv });
        }
    }

    fn start(&mut self, id: u64, i: usize) {
        let coin = self.coins.r#gen::<f64>();
        let admission = self.pool.accounts[i].truth.admit(self.now, coin);
        let now = self.now;
        let Some(r) = self.requests.get_mut(&id) else { return };
        match admission {
            Admission::Served(readings) => {
                self.pool.accounts[i].quota.observe(&readings, now);
                let previous = self.last_seen.get(&r.conv).copied();
                r.cached = match previous {
                    Some((account, at, prefix)) if account == i && now - at <= CACHE_TTL => prefix.min(r.input),
                    _ => 0,
                };
                if let Some((from, ..)) = previous.filter(|(account, ..)| *account != i) {
                    let because = self.pool.why_not(from, r.conv, &r.tried, now);
                    self.metrics.moved(r.conv, because);
                }
                r.account = Some(i);
                r.estimate = cost::estimate(r.input, previous.is_some_and(|(a, ..)| a == i));
                let (conv, estimate, output) = (r.conv, r.estimate, r.output);
                self.pool.started(i, conv, estimate, now);
                self.metrics.started(i, self.pool.accounts[i].in_flight, self.pool.accounts[i].governor.limit(now));
                self.at(now + workload::duration(output), Event::Done { req: id });
            }
            Admission::UsageLimit { resets_at } => {
                let a = &mut self.pool.accounts[i];
                a.quota.exhausted(resets_at, now);
                a.cooldown_until = a.cooldown_until.max(resets_at);
                self.failover(id, i, true);
                self.unqueue(i);
            }
            Admission::Overloaded => {
                self.metrics.overload_answers += 1;
                let a = &mut self.pool.accounts[i];
                a.failures += 1;
                let rests = a.governor.on_overload(now);
                if let Some(until) = rests {
                    a.cooldown_until = a.cooldown_until.max(until);
                }
                self.failover(id, i, false);
                if rests.is_some() {
                    self.unqueue(i);
                }
            }
        }
    }

    /// An attempt failed on account `i`: another account, within the bound; else the client's error.
    fn failover(&mut self, id: u64, i: usize, quota: bool) {
        let Some(r) = self.requests.get_mut(&id) else { return };
        r.tried.push(i);
        if r.tried.len() < defaults::MAX_ACCOUNTS_PER_REQUEST {
            self.place(id);
        } else if quota {
            self.metrics.quota_error(self.now, "refused on every account tried");
            self.retry(id, 600);
        } else {
            self.metrics.overload_errors += 1;
            self.retry(id, 30);
        }
    }

    fn done(&mut self, id: u64) {
        let Some(r) = self.requests.remove(&id) else { return };
        let Some(i) = r.account else { return };
        let weighted = cost::weighted(r.input, r.cached, r.output);
        self.pool.ended(i, r.estimate, weighted, self.now);
        self.metrics.served(r.input, r.cached, r.output, self.now);
        self.last_seen.insert(r.conv, (i, self.now, r.input + r.output));
        self.wake(i);
        self.next_step(r.dev, r.conv, r.output + r.tool);
    }

    /// A slot freed on account `i`: its first waiter runs the lease again.
    fn wake(&mut self, i: usize) {
        while let Some(next) = self.pool.accounts[i].queue.pop_front() {
            if let Some(r) = self.requests.get_mut(&next) {
                r.queued_on = None;
                self.place(next);
                return;
            }
        }
    }

    /// Account `i` cannot serve for a while: its waiters choose again at once (as the gateway wakes them).
    fn unqueue(&mut self, i: usize) {
        let waiting: Vec<u64> = self.pool.accounts[i].queue.drain(..).collect();
        for id in waiting {
            if let Some(r) = self.requests.get_mut(&id) {
                r.queued_on = None;
                self.place(id);
            }
        }
    }

    fn queue_deadline(&mut self, id: u64) {
        let Some(i) = self.requests.get(&id).and_then(|r| r.queued_on) else { return };
        self.pool.accounts[i].queue.retain(|q| *q != id);
        self.metrics.busy_errors += 1;
        self.metrics.queue_timeouts += 1;
        self.retry(id, BUSY_RETRY);
    }

    fn home_wait_over(&mut self, id: u64) {
        let Some(r) = self.requests.get_mut(&id) else { return };
        let Some(i) = r.queued_on else { return };
        r.wait_for_home = false;
        r.queued_on = None;
        self.pool.accounts[i].queue.retain(|q| *q != id);
        self.place(id);
    }

    /// The step ended: the conversation's next step, its next turn after think time, or its end.
    fn next_step(&mut self, dev: usize, conv: u64, grown: u64) {
        let now = self.now;
        let d = &mut self.devs[dev];
        let Some(c) = d.conversations.get_mut(&conv) else { return };
        c.context += grown;
        if c.context > c.max_context {
            // Compacted: a summary replaces the history (the cached prefix is gone).
            c.context = 25_000;
            self.last_seen.remove(&conv);
        }
        if c.steps_left > 1 {
            c.steps_left -= 1;
            let gap = d.person.tool_gap();
            self.at(now + gap, Event::Send { dev, conv });
            return;
        }
        let subagent = c.subagent;
        let next = if c.turns_left > 0 && !subagent {
            c.turns_left -= 1;
            c.steps_left = d.person.steps();
            Some(conv)
        } else {
            d.conversations.remove(&conv);
            if subagent {
                None
            } else {
                let fresh = d.person.conversation(false);
                let key = fresh.key;
                d.conversations.insert(key, fresh);
                d.main = Some(key);
                Some(key)
            }
        };
        self.active.remove(&conv);
        let Some(conv) = next else { return };
        let think = self.devs[dev].person.think();
        // After the working day, the main conversation waits for the next one (`day`).
        if let Some(at) = self.resume_at(dev, now + think) {
            self.at(at, Event::Send { dev, conv });
        }
    }

    fn owner_day(&mut self, account: usize, day: i64) {
        self.at((day + 1) * DAY, Event::OwnerDay { account, day: day + 1 });
        for _ in 0..self.owners.gen_range(1..=2) {
            let from = day * DAY + self.owners.gen_range(7 * HOUR..22 * HOUR);
            let until = from + self.owners.gen_range(30 * 60..2 * HOUR);
            self.at(from, Event::OwnerUse { account, until });
        }
    }

    /// Five minutes of the owner's own use, outside the gateway (the gateway sees it only in readings).
    fn owner_use(&mut self, account: usize, until: i64) {
        const SLICE: i64 = 300;
        // One heavy developer: about 0.9 M weighted tokens an hour.
        let tokens = 900_000.0 * SLICE as f64 / 3_600.0;
        let coin = self.coins.r#gen::<f64>();
        let a = &mut self.pool.accounts[account].truth;
        if let Admission::Served(_) = a.admit(self.now, coin) {
            a.charge(tokens, self.now);
        }
        if self.now + SLICE < until {
            self.at(self.now + SLICE, Event::OwnerUse { account, until });
        }
    }

    /// The upkeep's usage poll of accounts that were quiet for a poll period.
    fn poll(&mut self) {
        self.at(self.now + POLL, Event::Poll);
        let now = self.now;
        // The gateway's map is bounded; conversations a day old are over.
        self.pool.affinity.retain(|_, &mut (_, at)| now - at < DAY);
        for a in &mut self.pool.accounts {
            if now - a.last_used > POLL {
                let coin = self.coins.r#gen::<f64>();
                let readings = a.truth.readings(now, coin);
                a.quota.observe(&readings, now);
            }
        }
    }
}

fn r_sent(requests: &HashMap<u64, Request>, id: u64) -> i64 {
    requests.get(&id).map_or(0, |r| r.sent_at)
}
