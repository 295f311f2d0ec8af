//! A finalized request shaped for its model, then written: what the official client would send for the same turn
//! (the verbosity its catalog entry gives, the effort held to what the model takes, the Responses Lite shape, the
//! thread id as its prompt cache key), and the body's bytes once, with the chain's digests when the turn goes over
//! the upstream WebSocket. The gateway's own additions (a conversation's effort updates, the turn identity) come
//! between the two, from its state.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::chain::ChainRequest;
use super::{lite, order, thread};
use crate::models::{Effort, EffortSet};

/// What the model catalog says of the model that shapes its turns (the gateway reads it; plain values here).
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelFacts<'a> {
    /// The verbosity the official client sends when its user chose none.
    pub default_verbosity: Option<&'a str>,
    /// The efforts the model takes (empty: the efforts every model took before catalogs listed them).
    pub efforts: EffortSet,
    /// The catalog flags the model `use_responses_lite`.
    pub responses_lite: bool,
}

/// What shaping found, for the rest of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaped {
    /// A warm-up (`generate: false`): the model it names.
    pub warm_up: Option<String>,
    /// The conversation key the request came with (before the thread id replaced it), for account affinity.
    pub key: String,
    /// The thread id the request goes upstream with (its `prompt_cache_key` now).
    pub thread: String,
    /// The reasoning effort that goes upstream.
    pub effort: Option<String>,
}

/// Whether a Responses body is a warm-up (`generate: false`).
pub fn is_warm_up(body: &Map<String, Value>) -> bool {
    body.get("generate") == Some(&Value::Bool(false))
}

/// Shape a finalized body for its model. `lite_item_id` names a Responses Lite turn's `additional_tools` item.
pub fn shape(tree: &mut Map<String, Value>, facts: &ModelFacts<'_>, lite_item_id: impl FnOnce() -> String) -> Shaped {
    // The verbosity the official client sends from the model's catalog entry when its user chose none.
    if let Some(verbosity) = facts.default_verbosity
        && tree.get("text").is_none_or(|t| t.get("verbosity").is_none())
    {
        match tree.entry("text").or_insert_with(|| Value::Object(Map::new())) {
            Value::Object(text) => {
                // First, as the official client writes it (before `format`).
                text.shift_insert(0, "verbosity".into(), Value::String(verbosity.to_string()));
            }
            // A `text` that is not an object was refused by the decoder; nothing to add to.
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_) => {}
        }
    }
    // The effort is held to what the model takes first, so that a conversation's effort updates (the gateway's
    // `upstream::identity::efforts`) compare and send the effort that goes upstream.
    hold_effort(tree, facts.efforts);
    let warm_up = is_warm_up(tree).then(|| tree.get("model").and_then(Value::as_str).unwrap_or_default().to_string());
    // A model the official client sends as Responses Lite gets that shape from every caller.
    if facts.responses_lite {
        lite::shape(tree, lite_item_id);
        // The official client's warm-up for such a model holds no input (its tools item and context go with the
        // first turn, chained on the warm-up): recorded from CLI 0.171, the `responses_lite` parity scenario.
        if warm_up.is_some() {
            tree.insert("input".into(), Value::Array(Vec::new()));
        }
    }
    let key = tree.get("prompt_cache_key").and_then(Value::as_str).unwrap_or_default().to_string();
    // The thread id the official client would have: the caller's own (a Codex CLI's prompt cache key is its
    // thread id), else one derived from the conversation key, which goes upstream as the prompt cache key too.
    let thread = thread::thread_id_for(&key);
    if thread != key {
        tree.insert("prompt_cache_key".into(), Value::String(thread.clone()));
    }
    let effort = tree.get("reasoning").and_then(|r| r.get("effort")).and_then(Value::as_str).map(str::to_string);
    Shaped { warm_up, key, thread, effort }
}

/// Hold the request's effort to what the model takes (`efforts`, from its catalog entries): every dialect asks
/// in its own words (a suffix, Anthropic's `max`, a thinking budget, Ollama's `think`), and the backend refuses an
/// effort the model does not list, so the nearest one it lists goes instead (`max` on a model that stops at
/// `xhigh` is `xhigh`). An effort word the gateway does not know was refused when the request was decoded.
fn hold_effort(tree: &mut Map<String, Value>, efforts: EffortSet) {
    let Some(Value::Object(reasoning)) = tree.get_mut("reasoning") else { return };
    let Some(wanted) = reasoning.get("effort").and_then(Value::as_str).and_then(Effort::parse) else { return };
    let held = efforts.clamp(wanted);
    if held != wanted {
        reasoning.insert("effort".into(), Value::String(held.as_str().to_string()));
    }
}

/// A body as it goes upstream.
#[derive(Debug)]
pub struct Written {
    /// The bytes, members in the official client's order.
    pub body: Vec<u8>,
    /// The digests that chain it on the conversation's upstream WebSocket (asked for only for that transport).
    pub chain: Option<Arc<ChainRequest>>,
    /// How many bytes at its end go after `client_metadata` ([`order::tail_len`]).
    pub tail: usize,
}

/// Write the body once; with `chain`, its digests and where its input items are, taken while the tree exists.
pub fn write(tree: &Map<String, Value>, chain: bool) -> serde_json::Result<Written> {
    let (body, chain) = if chain {
        let (body, spans) = order::official_order_with_items(tree)?;
        (body, Some(Arc::new(ChainRequest::of(tree, spans))))
    } else {
        (order::official_order(tree)?, None)
    };
    Ok(Written { body, chain, tail: order::tail_len(tree) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tree(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_turn_gets_the_models_verbosity_and_effort_and_a_thread_id() {
        let mut t = tree(json!({"model": "m", "prompt_cache_key": "gw-1", "reasoning": {"effort": "xhigh"},
            "input": [{"role": "user", "content": "hi"}]}));
        let facts = ModelFacts {
            default_verbosity: Some("low"),
            efforts: EffortSet::from_words(["low", "medium", "high"]),
            responses_lite: false,
        };
        let shaped = shape(&mut t, &facts, String::new);
        assert_eq!(t["text"], json!({"verbosity": "low"}));
        assert_eq!(shaped.effort.as_deref(), Some("high"));
        assert_eq!(t["reasoning"]["effort"], "high");
        assert_eq!((shaped.key.as_str(), shaped.warm_up), ("gw-1", None));
        assert_eq!(t["prompt_cache_key"], shaped.thread.as_str());
        assert_eq!(shaped.thread, thread::thread_id_for("gw-1"));
        // A verbosity of the caller's own stays.
        let mut own = tree(json!({"text": {"verbosity": "high"}}));
        shape(&mut own, &facts, String::new);
        assert_eq!(own["text"], json!({"verbosity": "high"}));
    }

    #[test]
    fn a_lite_models_warm_up_goes_with_no_input() {
        let mut t = tree(json!({"model": "m", "generate": false, "instructions": "x",
            "input": [{"role": "user", "content": "hi"}]}));
        let facts = ModelFacts { responses_lite: true, ..ModelFacts::default() };
        let shaped = shape(&mut t, &facts, || "at_1".into());
        assert_eq!(shaped.warm_up.as_deref(), Some("m"));
        assert!(!is_warm_up(&tree(json!({"model": "m", "generate": true}))));
        assert_eq!(t["input"], json!([]));
        assert_eq!(t["parallel_tool_calls"], false);
    }

    #[test]
    fn a_body_is_written_once_with_its_chain_only_when_asked() {
        let t = tree(json!({"input": [{"role": "user", "content": "hi"}], "model": "m", "request_country": "DE"}));
        let plain = write(&t, false).unwrap_or_else(|e| panic!("{e}"));
        let chained = write(&t, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain.body, chained.body);
        assert!(plain.chain.is_none());
        assert_eq!(chained.chain.map(|c| c.items.len()), Some(1));
        assert_eq!(plain.tail, r#","request_country":"DE""#.len());
    }
}
