//! Stable snake_case names for failures, for logs, the usage ledger and metrics labels (never read back).

use super::{Reason, Stage, TransportKind, UpstreamFailure};

impl UpstreamFailure {
    /// The failure's name: the refusal's reason, or what happened to the connection.
    pub fn name(&self) -> &'static str {
        match self {
            UpstreamFailure::Refused(r) => r.reason.name(),
            UpstreamFailure::Transport { stage, kind, .. } => match (stage, kind) {
                (Stage::Request, TransportKind::Connect) => "connect",
                (Stage::Request, TransportKind::Timeout) => "connect_timeout",
                (Stage::Request, TransportKind::Reset) => "connection_reset",
                (Stage::Request, TransportKind::Tls) => "tls",
                (Stage::Request, TransportKind::Other) => "transport",
                (Stage::Body, TransportKind::Connect | TransportKind::Reset) => "body_reset",
                (Stage::Body, TransportKind::Timeout) => "body_timeout",
                (Stage::Body, TransportKind::Tls) => "body_tls",
                (Stage::Body, TransportKind::Other) => "body_transport",
            },
            UpstreamFailure::HeaderTimeout { .. } => "header_timeout",
            UpstreamFailure::Idle => "idle_timeout",
            UpstreamFailure::StreamCut => "stream_cut",
            UpstreamFailure::MalformedStream(_) => "malformed_stream",
            UpstreamFailure::LoginRefused { .. } => "login_refused",
            UpstreamFailure::Credentials(_) => "credentials",
        }
    }
}

impl Reason {
    pub fn name(&self) -> &'static str {
        match self {
            Reason::QuotaExhausted { .. } => "quota_exhausted",
            Reason::RateLimited { .. } => "rate_limited",
            Reason::UsageNotIncluded => "usage_not_included",
            Reason::Overloaded => "overloaded",
            Reason::PolicyRefused { .. } => "policy_refused",
            Reason::ServerError => "server_error",
            Reason::MalformedEvent => "malformed_event",
            Reason::CloudflareChallenge => "cloudflare_challenge",
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::AccountDeactivated => "account_deactivated",
            Reason::ModelNotSupportedByPlan => "model_not_supported_by_plan",
            Reason::ModelNotFound => "model_not_found",
            Reason::NotFound => "not_found",
            Reason::ContextTooLong => "context_too_long",
            Reason::ForeignReasoning => "foreign_reasoning",
            Reason::WebsocketMessageTooLarge => "websocket_message_too_large",
            Reason::InvalidRequest => "invalid_request",
        }
    }
}
