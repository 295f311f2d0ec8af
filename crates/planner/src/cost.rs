//! What a request costs in quota, in weighted tokens: the unit every window's capacity is learnt in
//! (`quota.rs`). The weights are the ratios of the API's own prices for the Codex models (cached input a tenth of
//! input, output eight times input), which is how usage-based plans are metered; the backend's exact metering is
//! not published, and only the ratios matter, since each account's capacity is learnt in the same unit.

/// Weight of an input token read from the prompt cache.
pub const CACHED_WEIGHT: f64 = 0.1;
/// Weight of an output token (reasoning included).
pub const OUTPUT_WEIGHT: f64 = 8.0;
/// Output tokens a turn is assumed to produce before it has run (a typical agent step: a tool call or a short
/// answer with its reasoning).
pub const OUTPUT_GUESS: u64 = 600;
/// Share of a conversation's input that its own account still holds in the prompt cache on the next turn.
pub const CACHED_SHARE_AT_HOME: f64 = 0.9;

/// The quota a finished request used: `cached` of its `input` tokens came from the prompt cache.
pub fn weighted(input: u64, cached: u64, output: u64) -> f64 {
    let cached = cached.min(input);
    (input - cached) as f64 + cached as f64 * CACHED_WEIGHT + output as f64 * OUTPUT_WEIGHT
}

/// What a turn with `input` tokens is expected to cost before it runs: on the account that holds its prompt cache
/// (`at_home`), most of its input is cached; anywhere else all of it is read afresh. The difference is what moving
/// a conversation costs.
pub fn estimate(input: u64, at_home: bool) -> f64 {
    let cached = if at_home { (input as f64 * CACHED_SHARE_AT_HOME) as u64 } else { 0 };
    weighted(input, cached, OUTPUT_GUESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_input_is_cheap_and_output_dear() {
        assert_eq!(weighted(1_000, 0, 0), 1_000.0);
        assert_eq!(weighted(1_000, 1_000, 0), 100.0);
        assert_eq!(weighted(0, 0, 100), 800.0);
        // More cached than input (a confused usage report) counts as all cached.
        assert_eq!(weighted(100, 500, 0), 10.0);
        // Moving a 100k-token conversation costs over four times its next turn at home.
        let (home, away) = (estimate(100_000, true), estimate(100_000, false));
        assert!(away > 4.0 * home && away < 5.0 * home, "{home} {away}");
    }
}
