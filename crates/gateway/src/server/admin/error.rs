//! The admin API's one error type ([`AdminError`]) and its extractors ([`AdminJson`], [`KeysManageable`]). Who may
//! call `/admin/*` at all is the request guard's decision (server/guard.rs), made before routing so every path
//! under it, present and future, is covered.
//!
//! Every refusal is the OpenAI error shape (server/openai.rs), with the status its kind gives. That body names no
//! request id; the response's `x-request-id` header is the router's (server/mod.rs), so rendering needs nothing
//! of the request and [`AdminError::into_response`] has no side effect.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use dialects::{ErrorKind, GatewayError};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::keys::manage::ManageError;
use crate::server::errors::error_response;
use crate::server::openai;
use crate::users::manage::UserError;
use crate::users::password::PasswordError;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No account has this id: 404.
    #[error("no account `{0}`")]
    NoAccount(String),
    /// The key store refused a change or a lookup (keys/manage.rs): 400, 404 or 500 by its cause.
    #[error(transparent)]
    Keys(#[from] ManageError),
    /// A change to a user was refused (users/manage.rs): 400, 403, 404 or 500 by its cause.
    #[error(transparent)]
    Users(#[from] UserError),
    /// The store or the pool failed: 500, the cause chain in the message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
    /// A refusal with its own kind, message and code: a bad body or parameter, a permission, a refresh the
    /// upstream refused.
    #[error(transparent)]
    Refused(#[from] GatewayError),
    /// The body could not be read (past the body limit, a broken connection): axum's own answer, as for any route.
    #[error(transparent)]
    Body(BytesRejection),
}

impl AdminError {
    /// The error as the OpenAI shape renders it.
    fn gateway_error(self) -> Result<GatewayError, BytesRejection> {
        Ok(match self {
            AdminError::NoAccount(id) => GatewayError::new(ErrorKind::NotFound, format!("No account `{id}`")),
            AdminError::Keys(ManageError::Invalid(m)) => GatewayError::invalid(m),
            AdminError::Keys(ManageError::NotFound(id)) => {
                GatewayError::new(ErrorKind::NotFound, format!("No client key `{id}`"))
            }
            AdminError::Keys(e @ ManageError::TooManyKeys { .. }) => {
                GatewayError::new(ErrorKind::PermissionDenied, e.to_string()).with_code("too_many_keys")
            }
            AdminError::Keys(e @ ManageError::NameTaken { .. }) => {
                GatewayError::invalid(e.to_string()).with_code("name_taken")
            }
            AdminError::Keys(ManageError::Store(e)) | AdminError::Internal(e) => {
                GatewayError::internal(format!("{e:#}"))
            }
            AdminError::Users(e) => user_error(e),
            AdminError::Refused(e) => e,
            AdminError::Body(rejection) => return Err(rejection),
        })
    }
}

/// A user change's refusal as the OpenAI shape renders it.
fn user_error(e: UserError) -> GatewayError {
    match e {
        UserError::Invalid(m) => GatewayError::invalid(m),
        UserError::NotFound(id) => GatewayError::new(ErrorKind::NotFound, format!("No user `{id}`")),
        e @ UserError::NameTaken(_) => GatewayError::invalid(e.to_string()).with_code("name_taken"),
        UserError::Password(e @ (PasswordError::TooShort | PasswordError::TooLong)) => {
            GatewayError::invalid_param("password", e.to_string()).with_code("weak_password")
        }
        UserError::Password(e @ PasswordError::Hash) => GatewayError::internal(e.to_string()),
        UserError::Store(e) => GatewayError::internal(format!("{e:#}")),
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        match self.gateway_error() {
            Ok(e) => error_response(openai::SHAPE, &e, ""),
            Err(rejection) => rejection.into_response(),
        }
    }
}

/// A JSON body; one that does not decode is refused in the OpenAI shape, with the failing field named
/// (`dialects::json::decode_body`), not in axum's plain text.
pub struct AdminJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AdminJson<T> {
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AdminError> {
        let body = Bytes::from_request(req, state).await.map_err(AdminError::Body)?;
        Ok(AdminJson(dialects::json::decode_body(&body)?))
    }
}

/// An admin credential is configured, so client keys may be created: without one a client could drop its key and
/// manage keys itself (server/guard.rs). Refused with 403 `admin_key_required`.
pub struct KeysManageable;

impl FromRequestParts<Arc<AppState>> for KeysManageable {
    type Rejection = AdminError;

    async fn from_request_parts(_: &mut Parts, s: &Arc<AppState>) -> Result<Self, AdminError> {
        // Users exist: the admin API asks for a session or the admin key (server/guard.rs), never nothing.
        if s.config.admin_keys().is_empty() && !s.users.any() {
            return Err(GatewayError::new(
                ErrorKind::PermissionDenied,
                "Creating client keys needs an admin credential: set CODEX_GATEWAY_ADMIN_KEY (or `[server] \
                 admin_key`, or CODEX_GATEWAY_API_KEY) and restart the gateway.",
            )
            .with_code("admin_key_required")
            .into());
        }
        Ok(KeysManageable)
    }
}
