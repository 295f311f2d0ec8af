//! Local token counting with the o200k_base tokenizer (count_tokens endpoints, the emulated max-tokens cap).
//!
//! Client and upstream text reaches the tokenizer, so counting must stay linear and must not panic whatever the
//! text. tiktoken's BPE merge is quadratic in the length of one pre-token (the regex's piece: a word, a run of
//! punctuation or of whitespace): a 100,000-byte word took ~4 s. Near a million bytes its regex VM runs out of
//! backtracking stack and tiktoken-rs unwraps that error, a panic. Text is therefore handed to the tokenizer in
//! segments cut inside every run of whitespace or non-whitespace longer than [`RUN_BYTES`]: no pre-token is then
//! longer than about twice that, so the cost per byte is bounded and the VM's stack (a million entries) stays
//! hundreds of times below its limit. Text without such runs (any prose or code) is one segment and counted
//! exactly. No `catch_unwind`: with the pieces bounded the panic cannot be reached, and catching it would hide
//! a regression the tests should show.
//!
//! The tables (~50 MB) load on first use, not at start (docs/architecture.md "Memory").

use std::sync::OnceLock;

use dialects::GatewayError;
use tiktoken_rs::CoreBPE;
use tokio::sync::Semaphore;

/// Longest run of whitespace or non-whitespace handed to the tokenizer in one piece. A cut costs about one token
/// against the exact count (a token cannot span it): measured on long runs of random letters, base64 and hex, the
/// count is 0.05-0.1% above the exact one, on one letter repeated 2%. Prose and code have no such runs and are
/// counted exactly; CJK text without spaces is one long run, and measured exact all the same. A multiple
/// of 3, so a run of ASCII digits, which the pattern splits in threes, is cut where the pattern cuts it anyway.
const RUN_BYTES: usize = 510;

/// Most bytes `count_tokens` counts exactly; the rest is extrapolated from the counted part's tokens per byte.
/// Counting runs at 1-5 MB/s per core (release build), and 8 MB is twenty times the largest context window, so
/// an answer for a larger body is "far too large" either way; the bound caps one request's cost at a few seconds.
const COUNT_TOKENS_EXACT: usize = 8 * 1024 * 1024;

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// Tokens in `text` (o200k_base, long runs cut as the module doc says); falls back to 4 bytes per token if the
/// tokenizer is unavailable. Linear in `text`'s length; never more tokens than `text` has bytes.
pub fn count(text: &str) -> u64 {
    let Some(bpe) = bpe() else { return dialects::limits::estimate_tokens(text) };
    let mut total = 0;
    for_each_segment(text, RUN_BYTES, |segment| total += bpe.encode_ordinary(segment).len() as u64);
    total
}

/// [`count`] on at most `exact` bytes of `text` (its longest prefix on a char boundary); the rest is estimated at
/// the prefix's tokens per byte, rounded up. Never more tokens than `text` has bytes.
pub fn count_bounded(text: &str, exact: usize) -> u64 {
    if text.len() <= exact {
        return count(text);
    }
    let mut end = exact;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = count(&text[..end]);
    let rest = (text.len() - end) as u128;
    // head <= end, so the estimate of the rest is at most its byte count; u128 keeps the product exact.
    let extra = (rest * u128::from(head)).div_ceil(end.max(1) as u128);
    head + u64::try_from(extra).unwrap_or(u64::MAX)
}

/// Calls `f` with consecutive segments of `text` that together are `text`, cut only inside runs of whitespace or
/// non-whitespace longer than `run` bytes (on char boundaries, every `run` bytes of such a run).
fn for_each_segment(text: &str, run: usize, mut f: impl FnMut(&str)) {
    let mut segment_start = 0;
    let mut run_start = 0;
    let mut run_is_space = None;
    for (i, c) in text.char_indices() {
        let is_space = c.is_whitespace();
        if run_is_space != Some(is_space) {
            run_is_space = Some(is_space);
            run_start = i;
        } else if i + c.len_utf8() - run_start > run {
            f(&text[segment_start..i]);
            segment_start = i;
            run_start = i;
        }
    }
    if segment_start < text.len() {
        f(&text[segment_start..]);
    }
}

/// Counting jobs allowed to run at once: one per core. More would only share the same cores, and a flood of
/// large `count_tokens` requests then waits here instead of taking every blocking thread.
fn counting_slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())))
}

/// [`count_bounded`] for the `count_tokens` endpoints, on tokio's blocking pool (at most one job per core), so
/// the request workers keep serving other requests (`/health`, streams) while a large body is counted. The
/// tokenizer's first load happens there too.
pub async fn count_off_workers(text: String) -> Result<u64, GatewayError> {
    let _slot =
        counting_slots().acquire().await.map_err(|_| GatewayError::internal("The token counter is shutting down."))?;
    tokio::task::spawn_blocking(move || count_bounded(&text, COUNT_TOKENS_EXACT))
        .await
        .map_err(|_| GatewayError::internal("Counting the tokens failed."))
}

/// Load the tokenizer ahead of the first request that needs it.
pub fn warm_up() {
    let _ = bpe();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_words() {
        assert_eq!(count("hello world"), 2);
    }

    #[test]
    fn segments_cover_the_text_and_cut_only_long_runs() {
        let cases = ["", "a", "hello world", "ab  cd", "aaaaaaa bb", "é漢字😀 x", "   \n\n  "];
        for text in cases {
            let mut pieces = Vec::new();
            for_each_segment(text, 4, |s| pieces.push(s.to_string()));
            assert_eq!(pieces.concat(), text);
            assert!(pieces.iter().all(|p| !p.is_empty()), "{pieces:?}");
        }
        let mut pieces = Vec::new();
        for_each_segment("aaaaaaaaaa bb", 4, |s| pieces.push(s.to_string()));
        assert_eq!(pieces, ["aaaa", "aaaa", "aa bb"]);
        let mut pieces = Vec::new();
        for_each_segment("漢漢漢", 4, |s| pieces.push(s.to_string()));
        assert_eq!(pieces, ["漢", "漢", "漢"]);
    }

    /// The failure this pins: one unbroken word of a million characters made tiktoken's regex run out of stack
    /// (a panic) after seconds of quadratic work.
    #[test]
    fn a_million_character_word_is_counted_quickly_and_close_to_exact() {
        let started = std::time::Instant::now();
        let n = count(&"a".repeat(1_000_000));
        // Exactly 125,000 (8 bytes per token); each cut, every 510 bytes, adds about one token: +2% for this, the
        // worst case, a run of one repeated letter.
        assert!((125_000..=128_000).contains(&n), "{n}");
        let spaces = count(&" ".repeat(300_000));
        assert!(spaces > 0 && spaces <= 300_000, "{spaces}");
        let punct = count(&"!/".repeat(150_000));
        assert!(punct > 0 && punct <= 300_000, "{punct}");
        // Seconds before the fix even in release; a generous bound for a debug build on a loaded machine.
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
    }

    #[test]
    fn ordinary_text_is_counted_exactly() {
        let text = "The quick brown fox jumps over the lazy dog. fn main() { println!(\"{}\", 1 + 2); }\n漢字 😀 ";
        let text = text.repeat(40);
        let exact = bpe().map(|b| b.encode_ordinary(&text).len() as u64);
        assert_eq!(Some(count(&text)), exact);
    }

    #[test]
    fn bounded_count_extrapolates_beyond_the_bound() {
        let text = "hello world ".repeat(1000);
        let whole = count(&text);
        let bounded = count_bounded(&text, 1200);
        assert!(bounded.abs_diff(whole) <= whole / 50 + 1, "{bounded} vs {whole}");
        assert!(count_bounded("漢字漢字", 4) <= "漢字漢字".len() as u64);
        assert_eq!(count_bounded("hello world", 1 << 20), count("hello world"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any text: no panic, and never more tokens than bytes (the limiter relies on it).
        #[test]
        fn never_more_tokens_than_bytes(text in "\\PC{0,300}|[a \\n!]{0,2000}") {
            let n = count(&text);
            proptest::prop_assert!(n <= text.len() as u64);
            proptest::prop_assert!(count_bounded(&text, 64) <= text.len() as u64);
        }
    }
}
