//! Effort changes that keep the prompt cache (Codex CLI 0.169+, for a model whose catalog entry says
//! `supports_reasoning_effort_updates`): the request-level `reasoning.effort` stays the conversation's first one
//! (its baseline), and a change goes as a `{"type": "configuration_update", "reasoning": {"effort": ...}}` item
//! after the turn's new input, which the model reads from there on. The effort is read at the start of the
//! prompt, so changing `reasoning.effort` itself rewrites the whole prefix and loses the cache; an item at the end
//! leaves everything before it as it was.
//!
//! Recorded from the real CLI 0.171 against fake-codex (its app server, three turns of one thread with the
//! efforts low, high, medium): every request keeps `reasoning.effort` at the thread's own (`medium`), and a turn
//! whose effort differs from the one in force (the last update's, else the baseline) ends its input with an
//! update naming it; earlier updates stay where they were. A client that resends its whole history (every
//! dialect but the official client) cannot place them itself, so the gateway remembers, per conversation, the
//! baseline and after how many of the client's items each update went, and lays them out again on every turn.
//!
//! As the official client (codex-rs `core/src/session/reasoning_effort.rs`, `record_reasoning_effort_override`):
//! a turn sent again with another effort (the same history) replaces its update rather than adding a second one
//! beside it, and is dropped when it names the effort in force before it; a history that got shorter (compacted,
//! cut, edited) or a turn of another model starts the conversation again with that turn's effort as its
//! baseline (a compaction retires the official client's pinned effort; the pin is the model's).
//!
//! The memory is bounded ([`MAX_CONVERSATIONS`]); a conversation it forgot starts again from its next request's
//! effort (the cache is then lost once, as without this).

use std::num::NonZeroUsize;

use lru::LruCache;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

/// Conversations remembered; the least recently seen are forgotten beyond it.
const MAX_CONVERSATIONS: usize = 20_000;

/// Every conversation's baseline effort and the updates sent so far, the least recently seen forgotten first.
pub struct Efforts {
    conversations: Mutex<LruCache<String, Conversation>>,
}

impl Default for Efforts {
    fn default() -> Efforts {
        // Sparse: the map grows with the conversations instead of taking room for all of them at start.
        let cap = NonZeroUsize::new(MAX_CONVERSATIONS).unwrap_or(NonZeroUsize::MIN);
        Efforts { conversations: Mutex::new(LruCache::sparse(cap)) }
    }
}

struct Conversation {
    /// The model the baseline is for.
    model: String,
    /// The request-level effort every request of the conversation keeps.
    baseline: String,
    /// How many input items the client sent last time.
    items: usize,
    /// Each update: after how many of the client's input items it goes, and the effort it names.
    updates: Vec<(usize, String)>,
}

/// What [`Efforts::shape`] did to a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Shaped {
    /// Nothing: the conversation's effort never changed (or its first request).
    AsItCame,
    /// The request-level effort set back to the baseline, and this many updates laid into the input.
    Updates(usize),
}

impl Efforts {
    /// Lay out the conversation `key`'s effort changes in a body whose `reasoning.effort` is the client's choice
    /// for this turn and whose `input` is the client's whole history.
    pub fn shape(&self, key: &str, body: &mut Map<String, Value>) -> Shaped {
        let Some(effort) = body.get("reasoning").and_then(|r| r.get("effort")).and_then(Value::as_str) else {
            return Shaped::AsItCame;
        };
        let effort = effort.to_string();
        let model = body.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
        let Some(Value::Array(input)) = body.get_mut("input") else { return Shaped::AsItCame };
        let items = input.len();
        let (baseline, updates) = {
            let mut conversations = self.conversations.lock();
            let go_on = conversations.get(key).is_some_and(|c| c.model == model && c.items <= items);
            if !go_on {
                let first = Conversation { model, baseline: effort, items, updates: Vec::new() };
                conversations.put(key.to_string(), first);
                return Shaped::AsItCame;
            }
            let Some(c) = conversations.get_mut(key) else { return Shaped::AsItCame };
            c.items = items;
            // The same turn again (nothing new since the last update): its update is replaced, not doubled.
            if c.updates.last().is_some_and(|(at, _)| *at == items) {
                c.updates.pop();
            }
            let in_force = c.updates.last().map_or(&c.baseline, |(_, e)| e);
            if *in_force != effort {
                c.updates.push((items, effort));
            }
            (c.baseline.clone(), c.updates.clone())
        };
        if updates.is_empty() {
            return Shaped::AsItCame;
        }
        // Laid from the last so the earlier positions stay right.
        for (at, effort) in updates.iter().rev() {
            input.insert(*at, json!({"type": "configuration_update", "reasoning": {"effort": effort}}));
        }
        if let Some(Value::Object(r)) = body.get_mut("reasoning") {
            r.insert("effort".into(), Value::String(baseline));
        }
        Shaped::Updates(updates.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(effort: &str, texts: &[&str]) -> Map<String, Value> {
        let input: Vec<Value> = texts.iter().map(|t| json!({"role": "user", "content": t})).collect();
        json!({"model": "m", "reasoning": {"effort": effort}, "input": input}).as_object().cloned().unwrap_or_default()
    }

    fn kinds(body: &Map<String, Value>) -> Vec<String> {
        body["input"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| match i.get("type").and_then(Value::as_str) {
                        Some("configuration_update") => {
                            format!("cfg:{}", i["reasoning"]["effort"].as_str().unwrap_or(""))
                        }
                        _ => i["content"].as_str().unwrap_or("").to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Two switches in a conversation (low, high, medium): the request keeps `low`, and each switch stays where
    /// it first went as the history grows, so every request's prefix is the previous request's.
    #[test]
    fn effort_switches_become_updates_that_stay_in_place() {
        let e = Efforts::default();
        let mut b1 = body("low", &["u1"]);
        assert_eq!(e.shape("k", &mut b1), Shaped::AsItCame);
        let mut b2 = body("low", &["u1", "a1", "u2"]);
        assert_eq!(e.shape("k", &mut b2), Shaped::AsItCame);
        let mut b3 = body("high", &["u1", "a1", "u2", "a2", "u3"]);
        assert_eq!(e.shape("k", &mut b3), Shaped::Updates(1));
        assert_eq!(kinds(&b3), ["u1", "a1", "u2", "a2", "u3", "cfg:high"]);
        assert_eq!(b3["reasoning"]["effort"], "low");
        let mut b4 = body("high", &["u1", "a1", "u2", "a2", "u3", "a3", "u4"]);
        e.shape("k", &mut b4);
        assert_eq!(kinds(&b4), ["u1", "a1", "u2", "a2", "u3", "cfg:high", "a3", "u4"]);
        let mut b5 = body("medium", &["u1", "a1", "u2", "a2", "u3", "a3", "u4", "a4", "u5"]);
        assert_eq!(e.shape("k", &mut b5), Shaped::Updates(2));
        assert_eq!(kinds(&b5), ["u1", "a1", "u2", "a2", "u3", "cfg:high", "a3", "u4", "a4", "u5", "cfg:medium"]);
        assert_eq!(b5["reasoning"]["effort"], "low");
        // Back to the baseline is an update too: the effort in force was medium.
        let mut b6 = body("low", &["u1", "a1", "u2", "a2", "u3", "a3", "u4", "a4", "u5", "a5", "u6"]);
        assert_eq!(e.shape("k", &mut b6), Shaped::Updates(3));
        assert_eq!(kinds(&b6).last().map(String::as_str), Some("cfg:low"));
        // Another conversation is its own.
        let mut other = body("high", &["x"]);
        assert_eq!(e.shape("other", &mut other), Shaped::AsItCame);
        assert_eq!(other["reasoning"]["effort"], "high");
    }

    /// A client that cut its history (a retry of an earlier turn, an edit, a compaction) starts again: its
    /// effort is the new baseline, and no update of before is laid in.
    #[test]
    fn a_shortened_history_starts_again_from_its_effort() {
        let e = Efforts::default();
        e.shape("k", &mut body("low", &["u1"]));
        e.shape("k", &mut body("high", &["u1", "a1", "u2"]));
        let mut again = body("low", &["u1"]);
        assert_eq!(e.shape("k", &mut again), Shaped::AsItCame);
        assert_eq!(kinds(&again), ["u1"]);
        e.shape("k", &mut body("low", &["u1", "a1", "u2", "a2", "u3"]));
        let mut compacted = body("high", &["summary"]);
        assert_eq!(e.shape("k", &mut compacted), Shaped::AsItCame);
        assert_eq!(compacted["reasoning"]["effort"], "high", "the compacted history's effort is the baseline");
        let mut next = body("high", &["summary", "a1", "u2"]);
        assert_eq!(e.shape("k", &mut next), Shaped::AsItCame);
        assert_eq!(next["reasoning"]["effort"], "high");
        // Without an effort there is nothing to shape.
        let mut none = json!({"input": []}).as_object().cloned().unwrap_or_default();
        assert_eq!(e.shape("k", &mut none), Shaped::AsItCame);
    }

    /// The same turn sent again with another effort replaces its update (the official client never sends two
    /// updates side by side), and back to the effort in force before it sends none.
    #[test]
    fn a_turn_sent_again_replaces_its_update() {
        let e = Efforts::default();
        e.shape("k", &mut body("low", &["u1"]));
        let mut high = body("high", &["u1", "a1", "u2"]);
        assert_eq!(e.shape("k", &mut high), Shaped::Updates(1));
        let mut medium = body("medium", &["u1", "a1", "u2"]);
        assert_eq!(e.shape("k", &mut medium), Shaped::Updates(1));
        assert_eq!(kinds(&medium), ["u1", "a1", "u2", "cfg:medium"]);
        let mut low = body("low", &["u1", "a1", "u2"]);
        assert_eq!(e.shape("k", &mut low), Shaped::AsItCame);
        assert_eq!(kinds(&low), ["u1", "a1", "u2"]);
        assert_eq!(low["reasoning"]["effort"], "low");
    }

    /// Another model's turn in the same conversation starts it again: the baseline was the other model's.
    #[test]
    fn another_model_starts_the_conversation_again() {
        let e = Efforts::default();
        e.shape("k", &mut body("low", &["u1"]));
        let mut other = body("high", &["u1", "a1", "u2"]);
        other.insert("model".into(), json!("other"));
        assert_eq!(e.shape("k", &mut other), Shaped::AsItCame);
        assert_eq!(other["reasoning"]["effort"], "high");
        let mut back = body("high", &["u1", "a1", "u2", "a2", "u3"]);
        assert_eq!(e.shape("k", &mut back), Shaped::AsItCame, "back on m: a new baseline, high");
        assert_eq!(back["reasoning"]["effort"], "high");
    }

    #[test]
    fn the_memory_is_bounded() {
        let e = Efforts::default();
        for i in 0..MAX_CONVERSATIONS + 10 {
            e.shape(&i.to_string(), &mut body("low", &["u"]));
        }
        assert!(e.conversations.lock().len() <= MAX_CONVERSATIONS);
    }
}
