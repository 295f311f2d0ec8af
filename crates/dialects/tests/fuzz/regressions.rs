//! Inputs the fuzz targets found that panicked, replayed as plain tests (each fails on the code before its fix).

use crate::encoders::run_everything;

/// `response.incomplete` whose usage sums past u64 with no total: `Event::parse` added the two counts
/// unchecked ("attempt to add with overflow").
#[test]
fn usage_sum_past_u64_does_not_overflow() {
    let max = u64::MAX;
    let payload = format!(
        r#"{{"type":"response.incomplete","response":{{"id":"r","incomplete_details":{{"reason":"max_output_tokens"}},"output":[],"usage":{{"input_tokens":{max},"output_tokens":{max},"total_tokens":0}}}}}}"#
    );
    run_everything(&[payload], None);
}
