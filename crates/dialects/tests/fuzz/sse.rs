//! The SSE parser and `Event::parse` against hostile upstream bytes: a byte stream split at arbitrary points
//! yields the same frames as the stream in one piece, nothing panics, and no frame is larger than the input.

use std::sync::LazyLock;

use dialects::Event;
use dialects::sse::{SseFrame, SseParser};
use proptest::prelude::*;

use crate::strategies::{edits, json_soup, json_value, mutate, raw};

/// The golden upstream streams, whole.
pub const GOLDEN_STREAMS: [&str; 6] = [
    include_str!("../golden/chat/failed_mid_stream.events.sse"),
    include_str!("../golden/chat/incomplete.events.sse"),
    include_str!("../golden/chat/text_with_reasoning.events.sse"),
    include_str!("../golden/chat/tool_calls.events.sse"),
    include_str!("../golden/gemini/failed_mid_stream.events.sse"),
    include_str!("../golden/gemini/text_with_reasoning.events.sse"),
];

/// Every `data:` payload of the golden streams, parsed as JSON (templates for mutated events).
pub static GOLDEN_PAYLOADS: LazyLock<Vec<serde_json::Value>> = LazyLock::new(|| {
    let mut frames = Vec::new();
    for s in GOLDEN_STREAMS {
        let mut p = SseParser::default();
        let _ = p.push(s.as_bytes(), &mut frames);
        p.finish(&mut frames);
    }
    let all: Vec<serde_json::Value> = frames.iter().filter_map(|f| serde_json::from_str(&f.data).ok()).collect();
    assert!(all.len() > 20, "the golden streams hold events");
    all
});

/// Bytes that look like an SSE stream: field names, separators and line ends of every kind, payloads, comments,
/// invalid UTF-8 and characters that a split can cut in half.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => prop::sample::select(vec![
            "data: ", "data:", "event: ", "event:", ": keepalive", ":", "id: 7", "retry: 10", "\n", "\n\n", "\r\n",
            "\r", "\r\n\r\n", " ", "{\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}",
            "response.completed", "漢", "😀", "data", "event",
        ]).prop_map(|s| s.as_bytes().to_vec()),
        2 => "[ -~]{0,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..6),
        1 => prop::sample::select(GOLDEN_STREAMS.to_vec()).prop_map(|s| s.as_bytes().to_vec()),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

/// Frames of `input` pushed in pieces cut at `cuts` (positions taken modulo the length), then finished.
fn parse_in_pieces(input: &[u8], cuts: &[usize]) -> Result<Vec<SseFrame>, TestCaseError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.extend([0, input.len()]);
    points.sort_unstable();
    points.dedup();
    let mut parser = SseParser::default();
    let mut frames = Vec::new();
    for w in points.windows(2) {
        let pushed = parser.push(&input[w[0]..w[1]], &mut frames);
        prop_assert!(pushed.is_ok(), "no frame near the 32 MB limit: {pushed:?}");
    }
    parser.finish(&mut frames);
    Ok(frames)
}

/// `Event::parse` on a payload, and the owned copy the reader keeps of peeked events.
fn parse_event(data: &str) {
    if let Ok(e) = Event::parse(data) {
        let _ = e.is_terminal();
        let _ = e.into_owned();
    }
}

proptest! {
    #![proptest_config(crate::config(1000))]

    #[test]
    fn sse_frames_do_not_depend_on_chunking(input in sse_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let whole = parse_in_pieces(&input, &[])?;
        let split = parse_in_pieces(&input, &cuts)?;
        prop_assert_eq!(&whole, &split);
        let one_by_one: Vec<usize> = (0..input.len()).collect();
        prop_assert_eq!(&whole, &parse_in_pieces(&input, &one_by_one)?);
        for f in &whole {
            // A frame never holds more than the input (lossy UTF-8 decoding can at most triple an invalid byte).
            prop_assert!(f.data.len() <= 3 * input.len());
            prop_assert!(f.event.as_ref().map_or(0, |e| e.len()) <= 3 * input.len());
            parse_event(&f.data);
        }
    }
}

proptest! {
    #![proptest_config(crate::config(500))]

    /// With a small frame limit, the parser holds at most the limit plus one chunk: every frame it emits fits
    /// in that, and once an event outgrows the limit it says so instead of growing.
    #[test]
    fn sse_frames_stay_within_the_limit_plus_one_chunk(
        input in sse_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        limit in 1usize..256,
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        points.extend([0, input.len()]);
        points.sort_unstable();
        points.dedup();
        let mut parser = SseParser::new(limit);
        for w in points.windows(2) {
            let mut frames = Vec::new();
            let chunk = &input[w[0]..w[1]];
            let pushed = parser.push(chunk, &mut frames);
            for f in &frames {
                // Lossy UTF-8 decoding can triple an invalid byte.
                prop_assert!(f.data.len() <= 3 * (limit + chunk.len()), "{} > {limit} + {}", f.data.len(), chunk.len());
            }
            if pushed.is_err() {
                break;
            }
        }
    }
}

proptest! {
    #![proptest_config(crate::config(1000))]

    #[test]
    fn event_parse_takes_mutated_upstream_events(t in 0..GOLDEN_PAYLOADS.len(), edits in edits(), raw in raw()) {
        let bytes = mutate(&GOLDEN_PAYLOADS[t], &edits, &raw);
        parse_event(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn event_parse_takes_random_json(v in json_value(), soup in json_soup()) {
        parse_event(&v.to_string());
        parse_event(&String::from_utf8_lossy(&soup));
    }
}
