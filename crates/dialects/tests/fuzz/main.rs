//! Fuzz targets that run on stable inside `cargo test` (issue 19): proptest properties for every request
//! decoder (`requests`), the SSE parser and `Event::parse` (`sse`), and the stream encoders and non-streaming
//! renderers (`encoders`). Inputs are random bytes, random JSON, and structure-aware mutations of valid
//! requests and upstream streams (`strategies`). The properties: nothing panics, and every decoding error is a
//! 4xx in every dialect.
//!
//! Each property runs a bounded number of cases: `FUZZ_CASES` if set, else `PROPTEST_CASES` (proptest's own
//! variable), else the property's default, chosen so the whole binary takes well under a minute in a debug
//! build. A longer run: `FUZZ_CASES=200000 cargo test -p dialects --test fuzz --release` (docs/testing.md).

mod encoders;
mod regressions;
mod requests;
mod sse;
mod strategies;

use proptest::test_runner::{Config, FileFailurePersistence};

/// The proptest configuration of a property whose default case count is `default_cases`.
pub fn config(default_cases: u32) -> Config {
    let from_env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    Config {
        cases: from_env("FUZZ_CASES").or_else(|| from_env("PROPTEST_CASES")).unwrap_or(default_cases),
        // Failures found are kept next to each module (`<module>.proptest-regressions`) and replayed first.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        // Shrinking a failure of a long run must not take longer than the run.
        max_shrink_iters: 2048,
        ..Config::default()
    }
}
