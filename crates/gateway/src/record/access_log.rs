//! The access log: one `tracing` line per request at info (target `codex_gateway::access`), successes and
//! errors, streaming or not.

use super::{RecordSink, RequestRecord};

/// The access lines' target: a log filter names it (`codex_gateway::access=warn` drops them); the JSON log
/// writes it, so a reader tells access lines from the rest.
pub const ACCESS_TARGET: &str = "codex_gateway::access";

pub struct AccessLog;

impl RecordSink for AccessLog {
    fn record(&self, r: &RequestRecord) {
        // Whole microseconds: `1003.285`, not `1003.2846789999999`. Shorter to read, and the shortest form of such a
        // number is found without the float formatter's slow fallback, which long fractions sent it to.
        let ms = |d: std::time::Duration| d.as_micros() as f64 / 1000.0;
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = %r.request_id,
            api = r.api.as_str(),
            route = %r.route,
            status = r.status,
            error = r.error.as_ref().map(|e| e.name()),
            key = r.client_key.as_deref(),
            user = r.user.as_deref(),
            model = r.model_requested.as_deref(),
            resolved = r.model.as_deref(),
            effort = r.effort.as_deref(),
            stream = r.stream,
            account = r.account.as_deref(),
            moved_from = r.moved_from.as_deref(),
            refusal = r.refusal.map(dialects::failure::PolicyKind::name),
            held = r.held.as_ref().map(super::Hold::as_str),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use dialects::{GatewayError, UpstreamFailure};

    use super::*;
    use crate::logging::capture::Captured;
    use crate::record::{Api, Recorder, Sinks};

    fn logged(f: impl FnOnce()) -> String {
        let buffer = Captured::default();
        let subscriber =
            tracing_subscriber::fmt().with_writer(buffer.clone()).with_ansi(false).with_target(true).finish();
        tracing::subscriber::with_default(subscriber, f);
        buffer.text()
    }

    #[test]
    fn one_line_per_request_for_answers_errors_and_departures() {
        let sinks = Sinks::new(vec![Arc::new(AccessLog)]);
        let text = logged(|| {
            let mut ok = Recorder::new(sinks.clone(), Api::named("chat"), "/v1/chat/completions", "req-ok".into());
            ok.set_request("gpt-5.4", false);
            ok.set_resolved("gpt-5.4");
            ok.attempt("acc-1");
            ok.served_by("acc-1");
            ok.finish(200);

            let mut failed =
                Recorder::new(sinks.clone(), Api::named("gemini"), "/v1beta/models/{model}:{method}", "req-err".into());
            failed.attempt("acc-1");
            failed.upstream_failure(&UpstreamFailure::HeaderTimeout { limit: Duration::from_secs(1) });
            failed.error(&GatewayError::internal("x"));
            failed.finish(504);

            // Dropped without finishing: the client left.
            let _left = Recorder::new(sinks.clone(), Api::named("ollama"), "/api/chat", "req-left".into());

            // Refused under the usage policy; then a turn of that conversation refused as held.
            let mut refused =
                Recorder::new(sinks.clone(), Api::named("chat"), "/v1/chat/completions", "req-policy".into());
            let policy = dialects::failure::classify_event(Some("cyber_policy"), "flagged");
            refused.attempt_failed(&policy);
            refused.error(&policy.to_error());
            refused.finish(400);
            let mut held = Recorder::new(sinks.clone(), Api::named("chat"), "/v1/chat/completions", "req-held".into());
            held.held(&crate::record::Hold::Policy(dialects::failure::PolicyKind::Cyber));
            held.finish(403);
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        let line = |id: &str| lines.iter().find(|l| l.contains(&format!("request_id={id} "))).copied().unwrap_or("");
        assert!(line("req-policy").contains("refusal=\"cyber\""), "{text}");
        assert!(line("req-held").contains("held=\"policy:cyber\""), "{text}");
        assert!(lines.iter().all(|l| l.contains("codex_gateway::access") && l.contains(" INFO ")), "{text}");
        assert!(lines[0].contains("request_id=req-ok") && lines[0].contains("status=200"), "{}", lines[0]);
        assert!(lines[0].contains("account=\"acc-1\"") || lines[0].contains("account=acc-1"), "{}", lines[0]);
        assert!(lines[1].contains("status=504") && lines[1].contains("header_timeout"), "{}", lines[1]);
        let left = line("req-left");
        assert!(left.contains("status=499") && left.contains("disconnected=true"), "{text}");
    }

    /// A request made with a key a user owns names the user (`keys::Caller::user`); one with a key of nobody's
    /// names none.
    #[test]
    fn the_line_names_the_user_a_request_was_for() -> anyhow::Result<()> {
        use crate::keys::manage::{KeySpec, Owner, create};
        let dir = std::env::temp_dir().join(format!("cgw-access-user-{}", uuid::Uuid::new_v4()));
        let store = Arc::new(crate::store::Store::open(&dir.join("gateway.db"))?);
        let owner = Owner { id: "usr_ana", name: "ana", max_keys: None };
        let (_, theirs) = create(&store, KeySpec { name: "a".into(), ..Default::default() }, Some(owner), 1)?;
        let (_, nobodys) = create(&store, KeySpec { name: "g".into(), ..Default::default() }, None, 1)?;
        let keys = crate::keys::Keys::load(store)?;
        let caller = |s: &str| keys.find(s).map(crate::keys::Caller).ok_or_else(|| anyhow::anyhow!("no key"));
        let (theirs, nobodys) = (caller(&theirs)?, caller(&nobodys)?);
        let sinks = Sinks::new(vec![Arc::new(AccessLog)]);
        let text = logged(|| {
            for (id, c) in [("req-user", &theirs), ("req-none", &nobodys)] {
                let mut r = Recorder::new(sinks.clone(), Api::named("chat"), "/v1/chat/completions", id.into());
                r.set_caller(Some(c));
                r.finish(200);
            }
        });
        let line = |id: &str| text.lines().find(|l| l.contains(&format!("request_id={id} "))).unwrap_or("").to_string();
        assert!(line("req-user").contains("user=\"usr_ana\""), "{text}");
        assert!(!line("req-none").contains("user="), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
