//! The tokenizer under hostile input (issue 19): a giant unbroken word in count_tokens, count_tokens load next to
//! `/health`, and a giant upstream delta through the emulated max-tokens cap.

use serde_json::{Value, json};

use crate::harness::{Setup, json, scenario, start};

const ANTHROPIC_COUNT: &str = "/v1/messages/count_tokens";
const GEMINI_COUNT: &str = "/v1beta/models/gemini-2.5-pro:countTokens";

fn anthropic(text: &str) -> Value {
    json!({"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":text}]})
}

/// Before: tiktoken's regex ran out of stack on the word and tiktoken-rs unwrapped the error, so the request's
/// task panicked and the connection dropped without an answer (after seconds of quadratic work on a worker).
#[tokio::test]
async fn million_character_word_in_count_tokens_gets_an_answer() {
    let env = start(Setup::default()).await;
    let word = "a".repeat(1_000_000);
    let (status, _, text) = env.post(ANTHROPIC_COUNT, &anthropic(&word)).await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    // A run of "a" is 8 bytes per token when counted whole; the cuts add ~2%.
    let n = json(&text)["input_tokens"].as_u64().unwrap_or(0);
    assert!((125_000..=128_000).contains(&n), "{text}");

    let body = json!({"contents": [{"role": "user", "parts": [{"text": "b".repeat(1_000_000)}]}]});
    let (status, _, text) = env.post(GEMINI_COUNT, &body).await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    let n = json(&text)["totalTokens"].as_u64().unwrap_or(0);
    // "b" merges less than "a" (~4 bytes per token); plausible: between a token per 16 bytes and one per byte.
    assert!((62_500..=1_000_000).contains(&n), "{text}");
}

/// Before: counting ran on the request workers, so two concurrent 150 KB words held both of them and `/health`
/// waited ~10 s. Now the workers stay free: ten `/health` round trips complete, one after another, while the
/// two counts are still running. (Ordering, not a clock: before, at most the probes that slipped in before the
/// counting began could answer, and never this many.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_two_large_count_tokens_requests_run() {
    let env = start(Setup::default()).await;
    // Load the tokenizer first, so the requests below spend their time counting.
    let (status, _, _) = env.post(ANTHROPIC_COUNT, &anthropic("warm up")).await;
    assert_eq!(status, 200);
    let counts: Vec<_> = [1u64, 2]
        .into_iter()
        .map(|seed| {
            let req = env.http.post(env.url(ANTHROPIC_COUNT)).json(&anthropic(&random_word(seed, 150_000)));
            tokio::spawn(async move {
                let resp = req.send().await.unwrap_or_else(|e| panic!("count_tokens: {e}"));
                (resp.status().as_u16(), resp.text().await.unwrap_or_default())
            })
        })
        .collect();
    const PROBES: usize = 10;
    for i in 0..PROBES {
        assert!(!counts.iter().any(|h| h.is_finished()), "a count finished before /health answered {i} times");
        let resp = env.http.get(env.url("/health")).send().await.unwrap_or_else(|e| panic!("/health: {e}"));
        assert_eq!(resp.status().as_u16(), 200);
    }
    assert!(counts.iter().all(|h| !h.is_finished()), "the counts outlast {PROBES} /health round trips");
    for h in counts {
        let (status, text) = h.await.unwrap_or_else(|e| panic!("join: {e}"));
        assert_eq!(status, 200, "{text}");
        assert!(json(&text)["input_tokens"].as_u64().unwrap_or(0) > 10_000, "{text}");
    }
}

/// `len` pseudo-random lowercase letters: one unbroken word that costs the tokenizer more per byte than a
/// repeated letter (fewer merges hit the vocabulary), so the counts outlast the probes in a release build too.
fn random_word(seed: u64, len: usize) -> String {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            char::from(b'a' + ((x >> 33) % 26) as u8)
        })
        .collect()
}

/// `(event name, data)` of every SSE event but pings.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: ")).map(json).unwrap_or(Value::Null);
            (name != "ping").then(|| (name.to_string(), data))
        })
        .collect()
}

/// Before: the limiter counted the whole delta on the stream's task, the tokenizer panicked, and the Anthropic
/// stream ended right after `message_start` with no error event. Now it ends as a max_tokens cut.
#[tokio::test]
async fn giant_delta_under_the_max_tokens_cap_ends_the_stream_properly() {
    let env = start(Setup::default()).await;
    let giant = "z".repeat(1_000_000);
    env.fake.enqueue(None, scenario(json!({"kind":"text","text":giant,"deltas":1})));
    let mut body = anthropic("go");
    body["max_tokens"] = json!(50);
    body["stream"] = json!(true);
    let (status, _, text) = env.post("/v1/messages", &body).await;
    assert_eq!(status, 200, "{}", &text[..text.len().min(300)]);
    let evs = events(&text);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    let delta = evs.iter().find(|(n, _)| n == "message_delta").map(|(_, d)| d.clone()).unwrap_or_default();
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens", "{delta}");
    assert_eq!(delta["usage"]["output_tokens"], 50, "{delta}");
    let emitted: usize = evs
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().map_or(0, str::len))
        .sum();
    // 50 tokens of a run of "z": a few hundred bytes, far from the megabyte the upstream sent.
    assert!(emitted > 0 && emitted < 4096, "{emitted}");
}
