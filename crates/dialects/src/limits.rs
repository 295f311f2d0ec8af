//! Emulation of output limits the backend does not accept: stop sequences and a token cap (spec C5).
//!
//! Sits between the upstream event stream and a dialect encoder. When a limit is reached it emits the text up
//! to the limit, then a synthetic `Finished { terminal: Cut(..) }`; the gateway stops reading upstream then.

use std::borrow::Cow;

use crate::outcome::Finish;
use crate::responses::event::{DoneItem, Event, Terminal, Usage};
use crate::upstream_request::OutputLimits;

/// Counts tokens of a piece of output text. The gateway injects the o200k tokenizer; tests use an estimate.
/// It must never return more tokens than the text has bytes (true of any byte-level tokenizer): the limiter
/// relies on that to leave text uncounted while no cut is possible.
pub type TokenCounter = Box<dyn FnMut(&str) -> u64 + Send>;

/// Most uncounted text kept before it is counted anyway (bounds memory when there is no token cap).
const MAX_UNCOUNTED: usize = 64 * 1024;

/// Most bytes of one piece handed to the counter. Counting runs on the stream's task for every delta, so its cost
/// per call must be bounded whatever the upstream sends: beyond this, a piece's tokens are extrapolated from
/// those of its first `MAX_COUNTED` bytes. Real deltas are a few bytes; only a broken or hostile upstream sends
/// larger ones, and then the cut lands within a few percent of the exact place.
const MAX_COUNTED: usize = 16 * 1024;

/// A rough count (4 bytes per token), for tests and as a fallback.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// Tokens of `piece`, with the counter run on at most [`MAX_COUNTED`] bytes (see there). Never more than `piece`
/// has bytes.
fn count_piece(counter: &mut TokenCounter, piece: &str) -> u64 {
    if piece.len() <= MAX_COUNTED {
        return counter(piece).min(piece.len() as u64);
    }
    let mut end = MAX_COUNTED;
    while !piece.is_char_boundary(end) {
        end -= 1;
    }
    let head = counter(&piece[..end]).min(end as u64);
    let rest = (piece.len() - end) as u128;
    let extra = (rest * u128::from(head)).div_ceil(end as u128);
    head.saturating_add(u64::try_from(extra).unwrap_or(u64::MAX))
}

pub struct Limiter {
    limits: OutputLimits,
    counter: TokenCounter,
    input_estimate: u64,
    /// Tokens of the pieces counted so far.
    emitted_tokens: u64,
    /// Emitted pieces not counted yet, concatenated, and where each ends. Counting waits while
    /// `emitted_tokens` + these bytes stay within the cap (a token is at least one byte, so no cut is possible
    /// then); most answers end before it matters and the tokenizer is never run. Pieces are counted one by one
    /// when it does matter, so the totals equal counting each piece as it came.
    uncounted: String,
    uncounted_ends: Vec<usize>,
    /// Text received but not yet emitted because it may be the start of a stop sequence.
    held: String,
    held_item: String,
    /// Text emitted for the current message item (replaces the `.done` text after a cut).
    emitted_text: String,
    done: bool,
}

impl Limiter {
    pub fn new(limits: OutputLimits, counter: TokenCounter, input_estimate: u64) -> Limiter {
        Limiter {
            limits,
            counter,
            input_estimate,
            emitted_tokens: 0,
            uncounted: String::new(),
            uncounted_ends: Vec::new(),
            held: String::new(),
            held_item: String::new(),
            emitted_text: String::new(),
            done: false,
        }
    }

    /// Whether any limit is set; without one the gateway can skip the limiter entirely.
    pub fn is_active(&self) -> bool {
        self.limits.max_output_tokens.is_some() || !self.limits.stop_sequences.is_empty()
    }

    /// True once a limit cut the stream: nothing more will be emitted.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feed one upstream event; emits zero or more events.
    pub fn apply(&mut self, event: Event, emit: &mut impl FnMut(Event)) {
        if self.done {
            return;
        }
        match event {
            Event::TextDelta { item_id, delta } => self.on_text(item_id, delta, emit),
            Event::FunctionArgsDelta { ref delta, .. } => {
                if !self.defer_count(delta) {
                    self.settle();
                    self.emitted_tokens = self.emitted_tokens.saturating_add(count_piece(&mut self.counter, delta));
                }
                emit(event);
            }
            Event::ItemDone { output_index, item } => {
                self.flush_held(emit);
                let item = match item {
                    DoneItem::Message { id, refusal, .. } if !self.limits.stop_sequences.is_empty() => {
                        DoneItem::Message { id, text: std::mem::take(&mut self.emitted_text), refusal }
                    }
                    other => other,
                };
                self.emitted_text.clear();
                let is_call = matches!(item, DoneItem::FunctionCall { .. });
                emit(Event::ItemDone { output_index, item });
                if is_call && self.over_cap() {
                    self.cut(Finish::Length, emit);
                }
            }
            Event::Finished { .. } | Event::Failed { .. } => {
                self.flush_held(emit);
                emit(event);
            }
            other => emit(other),
        }
    }

    fn over_cap(&mut self) -> bool {
        let Some(cap) = self.limits.max_output_tokens else { return false };
        // The exact count is at most counted tokens + uncounted bytes.
        if self.emitted_tokens.saturating_add(self.uncounted.len() as u64) >= cap {
            self.settle();
        }
        self.emitted_tokens >= cap
    }

    /// Record `piece` as emitted without counting it, if no cut can follow from it; false when it must be
    /// counted now.
    fn defer_count(&mut self, piece: &str) -> bool {
        let bound = self.emitted_tokens.saturating_add((self.uncounted.len() + piece.len()) as u64);
        if self.limits.max_output_tokens.is_some_and(|cap| bound > cap) {
            return false;
        }
        if self.uncounted.len() + piece.len() > MAX_UNCOUNTED {
            self.settle();
        }
        self.uncounted.push_str(piece);
        self.uncounted_ends.push(self.uncounted.len());
        true
    }

    /// Count the deferred pieces, one by one.
    fn settle(&mut self) {
        let mut start = 0;
        for &end in &self.uncounted_ends {
            let n = count_piece(&mut self.counter, &self.uncounted[start..end]);
            self.emitted_tokens = self.emitted_tokens.saturating_add(n);
            start = end;
        }
        self.uncounted.clear();
        self.uncounted_ends.clear();
    }

    fn on_text(&mut self, item_id: Cow<'_, str>, delta: Cow<'_, str>, emit: &mut impl FnMut(Event)) {
        let mut text = std::mem::take(&mut self.held);
        text.push_str(&delta);
        if self.held_item != item_id {
            self.held_item = item_id.into_owned();
        }
        // Stop sequence fully present: emit up to it and stop.
        let hit = self
            .limits
            .stop_sequences
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s.as_str()).map(|pos| (pos, s.clone())))
            .min_by_key(|(pos, _)| *pos);
        if let Some((pos, seq)) = hit {
            text.truncate(pos);
            if self.emit_text(text, emit) {
                self.cut(Finish::StopSequence(seq), emit);
            }
            return;
        }
        // Hold back a suffix that could still become a stop sequence.
        let keep = self.partial_stop_suffix(&text);
        let held = text.split_off(text.len() - keep);
        self.held = held;
        self.emit_text(text, emit);
    }

    /// Emit text, applying the token cap. Returns false if the cap cut the stream.
    fn emit_text(&mut self, mut text: String, emit: &mut impl FnMut(Event)) -> bool {
        if text.is_empty() {
            return true;
        }
        if self.defer_count(&text) {
            self.push_text(text, emit);
            return true;
        }
        self.settle();
        let tokens = count_piece(&mut self.counter, &text);
        if let Some(cap) = self.limits.max_output_tokens {
            let left = cap.saturating_sub(self.emitted_tokens);
            if tokens > left {
                // Keep the share of characters that fits, on a char boundary (u128: no overflow whatever the sizes).
                let chars = text.chars().count() as u128;
                let keep_chars =
                    usize::try_from(chars * u128::from(left) / u128::from(tokens.max(1))).unwrap_or(usize::MAX);
                let cut_at = text.char_indices().nth(keep_chars).map(|(i, _)| i).unwrap_or(text.len());
                text.truncate(cut_at);
                self.emitted_tokens = cap;
                self.push_text(text, emit);
                self.cut(Finish::Length, emit);
                return false;
            }
        }
        self.emitted_tokens = self.emitted_tokens.saturating_add(tokens);
        self.push_text(text, emit);
        true
    }

    fn push_text(&mut self, text: String, emit: &mut impl FnMut(Event)) {
        if text.is_empty() {
            return;
        }
        self.emitted_text.push_str(&text);
        emit(Event::TextDelta { item_id: Cow::Owned(self.held_item.clone()), delta: Cow::Owned(text) });
    }

    fn flush_held(&mut self, emit: &mut impl FnMut(Event)) {
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            self.emit_text(held, emit);
        }
    }

    /// Length of the longest suffix of `text` that is a proper prefix of some stop sequence.
    fn partial_stop_suffix(&self, text: &str) -> usize {
        let mut best = 0;
        for s in &self.limits.stop_sequences {
            for (i, _) in s.char_indices().skip(1) {
                let prefix = &s[..i];
                if i > best && text.ends_with(prefix) {
                    best = i;
                }
            }
        }
        best
    }

    fn cut(&mut self, finish: Finish, emit: &mut impl FnMut(Event)) {
        self.settle();
        self.done = true;
        self.held.clear();
        let usage = Usage {
            input_tokens: self.input_estimate,
            output_tokens: self.emitted_tokens,
            total_tokens: self.input_estimate.saturating_add(self.emitted_tokens),
            ..Usage::default()
        };
        emit(Event::Finished { terminal: Terminal::Cut(finish), usage: Some(usage), output: Vec::new() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(limits: OutputLimits, deltas: &[&str]) -> (String, Option<Terminal>) {
        let mut l = Limiter::new(limits, Box::new(estimate_tokens), 5);
        let mut text = String::new();
        let mut term = None;
        let mut events: Vec<Event> =
            deltas.iter().map(|d| Event::TextDelta { item_id: "m".into(), delta: d.to_string().into() }).collect();
        events.push(Event::Finished { terminal: Terminal::Completed, usage: None, output: vec![] });
        for e in events {
            l.apply(e, &mut |out| match out {
                Event::TextDelta { delta, .. } => text.push_str(&delta),
                Event::Finished { terminal, .. } => term = Some(terminal),
                _ => {}
            });
        }
        (text, term)
    }

    #[test]
    fn stop_sequence_split_across_deltas() {
        let limits = OutputLimits { max_output_tokens: None, stop_sequences: vec!["END".into()] };
        let (text, term) = run(limits, &["hello E", "N", "D world"]);
        assert_eq!(text, "hello ");
        assert_eq!(term, Some(Terminal::Cut(Finish::StopSequence("END".into()))));
    }

    #[test]
    fn partial_match_that_fails_is_released() {
        let limits = OutputLimits { max_output_tokens: None, stop_sequences: vec!["END".into()] };
        let (text, term) = run(limits, &["an E", "ND", "", "x"]);
        assert_eq!(text, "an ");
        assert!(matches!(term, Some(Terminal::Cut(_))));
        let limits = OutputLimits { max_output_tokens: None, stop_sequences: vec!["END".into()] };
        let (text, term) = run(limits, &["an E", "Nd"]);
        assert_eq!(text, "an ENd");
        assert_eq!(term, Some(Terminal::Completed));
    }

    #[test]
    fn counting_waits_until_the_cap_is_in_reach_and_sums_pieces_as_they_came() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        // One token per 2 bytes, rounded up, counted per piece.
        let counter: TokenCounter = Box::new(move |t: &str| {
            seen.fetch_add(1, Ordering::Relaxed);
            (t.len() as u64).div_ceil(2)
        });
        let limits = OutputLimits { max_output_tokens: Some(1000), stop_sequences: vec![] };
        let mut l = Limiter::new(limits, counter, 0);
        let mut finished = None;
        for d in ["abc", "de", "f"] {
            l.apply(Event::TextDelta { item_id: "m".into(), delta: d.into() }, &mut |_| {});
        }
        assert_eq!(calls.load(Ordering::Relaxed), 0, "far from the cap: nothing counted");
        // 6 bytes deferred; a 1,000-byte piece brings the cap in reach: the deferred pieces are counted one by one
        // (2 + 1 + 1 tokens), then this one (500 tokens), and the cap is not yet hit.
        l.apply(Event::TextDelta { item_id: "m".into(), delta: "x".repeat(1000).into() }, &mut |_| {});
        assert_eq!(calls.load(Ordering::Relaxed), 4);
        l.apply(Event::TextDelta { item_id: "m".into(), delta: "y".repeat(1000).into() }, &mut |e| {
            if let Event::Finished { usage, .. } = e {
                finished = usage;
            }
        });
        assert_eq!(finished.map(|u| u.output_tokens), Some(1000));
    }

    /// A broken or hostile upstream sends one giant delta while a cap is set: the counter only ever sees bounded
    /// pieces (it ran on the whole megabyte before, on the stream's task), and the stream still ends with a cut.
    #[test]
    fn giant_delta_is_counted_in_bounded_pieces_and_cut() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let longest = Arc::new(AtomicUsize::new(0));
        let seen = longest.clone();
        let counter: TokenCounter = Box::new(move |t: &str| {
            seen.fetch_max(t.len(), Ordering::Relaxed);
            estimate_tokens(t)
        });
        let limits = OutputLimits { max_output_tokens: Some(100), stop_sequences: vec![] };
        let mut l = Limiter::new(limits, counter, 0);
        let (mut text, mut usage, mut terminal) = (String::new(), None, None);
        let mut events = vec![Event::TextDelta { item_id: "m".into(), delta: "漢".repeat(400_000).into() }];
        events.push(Event::Finished { terminal: Terminal::Completed, usage: None, output: vec![] });
        for e in events {
            l.apply(e, &mut |out| match out {
                Event::TextDelta { delta, .. } => text.push_str(&delta),
                Event::Finished { terminal: t, usage: u, .. } => (terminal, usage) = (Some(t), u),
                _ => {}
            });
        }
        assert!(longest.load(Ordering::Relaxed) <= MAX_COUNTED, "{}", longest.load(Ordering::Relaxed));
        assert_eq!(terminal, Some(Terminal::Cut(Finish::Length)));
        assert_eq!(usage.map(|u| u.output_tokens), Some(100));
        // 3 bytes per char, 4 bytes per token: 100 tokens are ~133 chars.
        assert!((120..=140).contains(&text.chars().count()), "{}", text.chars().count());
    }

    #[test]
    fn token_cap_cuts_and_reports_length() {
        let limits = OutputLimits { max_output_tokens: Some(3), stop_sequences: vec![] };
        let (text, term) = run(limits, &["abcd", "efgh", "ijklmnop"]);
        assert_eq!(text.len(), 12);
        assert_eq!(term, Some(Terminal::Cut(Finish::Length)));
    }
}
