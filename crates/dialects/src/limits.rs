//! Emulation of output limits the backend does not accept: stop sequences and a token cap (spec C5).
//!
//! Sits between the upstream event stream and a dialect encoder. When a limit is reached it emits the text up
//! to the limit, then a synthetic `Finished { terminal: Cut(..) }`; the gateway stops reading upstream then.

use crate::outcome::Finish;
use crate::responses::event::{DoneItem, Event, Terminal, Usage};
use crate::upstream::OutputLimits;

/// Counts tokens of a piece of output text. The gateway injects the o200k tokenizer; tests use an estimate.
pub type TokenCounter = Box<dyn FnMut(&str) -> u64 + Send>;

/// A rough count (4 bytes per token), for tests and as a fallback.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

pub struct Limiter {
    limits: OutputLimits,
    counter: TokenCounter,
    input_estimate: u64,
    emitted_tokens: u64,
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
                self.emitted_tokens += (self.counter)(delta);
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

    fn over_cap(&self) -> bool {
        self.limits.max_output_tokens.is_some_and(|cap| self.emitted_tokens >= cap)
    }

    fn on_text(&mut self, item_id: String, delta: String, emit: &mut impl FnMut(Event)) {
        let mut text = std::mem::take(&mut self.held);
        text.push_str(&delta);
        self.held_item = item_id;
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
        let tokens = (self.counter)(&text);
        if let Some(cap) = self.limits.max_output_tokens {
            let left = cap.saturating_sub(self.emitted_tokens);
            if tokens > left {
                // Keep the share of characters that fits, on a char boundary.
                let chars = text.chars().count() as u64;
                let keep_chars = (chars * left / tokens.max(1)) as usize;
                let cut_at = text.char_indices().nth(keep_chars).map(|(i, _)| i).unwrap_or(text.len());
                text.truncate(cut_at);
                self.emitted_tokens = cap;
                self.push_text(text, emit);
                self.cut(Finish::Length, emit);
                return false;
            }
        }
        self.emitted_tokens += tokens;
        self.push_text(text, emit);
        true
    }

    fn push_text(&mut self, text: String, emit: &mut impl FnMut(Event)) {
        if text.is_empty() {
            return;
        }
        self.emitted_text.push_str(&text);
        emit(Event::TextDelta { item_id: self.held_item.clone(), delta: text });
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
        self.done = true;
        self.held.clear();
        let usage = Usage {
            input_tokens: self.input_estimate,
            cached_tokens: 0,
            output_tokens: self.emitted_tokens,
            reasoning_tokens: 0,
            total_tokens: self.input_estimate + self.emitted_tokens,
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
            deltas.iter().map(|d| Event::TextDelta { item_id: "m".into(), delta: d.to_string() }).collect();
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
    fn token_cap_cuts_and_reports_length() {
        let limits = OutputLimits { max_output_tokens: Some(3), stop_sequences: vec![] };
        let (text, term) = run(limits, &["abcd", "efgh", "ijklmnop"]);
        assert_eq!(text.len(), 12);
        assert_eq!(term, Some(Terminal::Cut(Finish::Length)));
    }
}
