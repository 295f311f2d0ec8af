//! The access log: one `tracing` line per request at info (target `codex_gateway::access`), successes and
//! errors, streaming or not.

use super::{RecordSink, RequestRecord};

pub struct AccessLog;

impl RecordSink for AccessLog {
    fn record(&self, r: &RequestRecord) {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        tracing::info!(
            target: "codex_gateway::access",
            request_id = %r.request_id,
            api = r.api.as_str(),
            route = r.route,
            status = r.status,
            error = r.error.as_ref().map(|e| e.name()),
            key = r.client_key.as_deref(),
            model = r.model_requested.as_deref(),
            resolved = r.model.as_deref(),
            effort = r.effort.as_deref(),
            stream = r.stream,
            account = r.account.as_deref(),
            attempts = r.attempts,
            failovers = r.failovers,
            input_tokens = r.usage.input_tokens,
            cached_tokens = r.usage.cached_tokens,
            output_tokens = r.usage.output_tokens,
            reasoning_tokens = r.usage.reasoning_tokens,
            ttfb_ms = r.time_to_first_byte.map(ms),
            ms = ms(r.duration),
            disconnected = r.client_disconnected,
            "request"
        );
    }
}
