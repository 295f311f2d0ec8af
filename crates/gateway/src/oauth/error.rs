//! The OAuth endpoints' errors (RFC 6749 §5.2, RFC 8628 §3.5), answered as `{"error", "error_description"}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// A parameter missing, repeated or malformed.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("unknown client_id")]
    InvalidClient,
    /// A code, device code or refresh token that is unknown, used, expired, another client's, or whose PKCE
    /// verifier or redirect URI does not match.
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("unsupported grant_type")]
    UnsupportedGrantType,
    #[error("the user has not approved the code yet")]
    AuthorizationPending,
    #[error("polling too fast")]
    SlowDown,
    #[error("the device code expired")]
    ExpiredToken,
    /// The user denied the request, or may not use models.
    #[error("{0}")]
    AccessDenied(&'static str),
    /// The store failed: 500, the cause logged, not answered.
    #[error("the request could not be completed")]
    Internal(#[from] anyhow::Error),
}

impl OAuthError {
    /// The RFC's `error` code.
    pub fn code(&self) -> &'static str {
        self.kind().0
    }

    /// The code and the status; every case named, so a new error kind must choose both.
    fn kind(&self) -> (&'static str, StatusCode) {
        match self {
            OAuthError::InvalidRequest(_) => ("invalid_request", StatusCode::BAD_REQUEST),
            OAuthError::InvalidClient => ("invalid_client", StatusCode::UNAUTHORIZED),
            OAuthError::InvalidGrant(_) => ("invalid_grant", StatusCode::BAD_REQUEST),
            OAuthError::UnsupportedGrantType => ("unsupported_grant_type", StatusCode::BAD_REQUEST),
            OAuthError::AuthorizationPending => ("authorization_pending", StatusCode::BAD_REQUEST),
            OAuthError::SlowDown => ("slow_down", StatusCode::BAD_REQUEST),
            OAuthError::ExpiredToken => ("expired_token", StatusCode::BAD_REQUEST),
            OAuthError::AccessDenied(_) => ("access_denied", StatusCode::BAD_REQUEST),
            OAuthError::Internal(_) => ("server_error", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        if let OAuthError::Internal(e) = &self {
            tracing::error!("oauth: {e:#}");
        }
        let (code, status) = self.kind();
        let body = json!({"error": code, "error_description": self.to_string()});
        let mut resp = no_store(status, body);
        if matches!(self, OAuthError::InvalidClient) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        }
        resp
    }
}

/// A JSON answer; RFC 6749 §5.1: answers that carry tokens (and their errors) are not cached.
pub fn no_store(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}
