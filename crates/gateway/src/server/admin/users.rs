//! `/admin/users` (an admin manages people: create, role, disable, remove, password, TOTP enrolment) and a
//! user's own session on the admin API (sign-in, sign-out, `/admin/me`), through users/manage.rs. Each answer is
//! sent after the registries (users, keys) re-read the store, so a disabled user's next request is refused here,
//! and on the other instances of a team at their next poll. The audit notes never hold a password, a hash, a TOTP
//! secret or a token.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use dialects::{ErrorKind, GatewayError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::access::Asking;
use super::error::{AdminError, AdminJson};
use crate::app::AppState;
use crate::audit::{Actor, Note};
use crate::auth::now_unix;
use crate::users::access::Action::*;
use crate::users::manage::{self, Ended, NewUser, UserPatch};
use crate::users::table::RouteTable;
use crate::users::{Principal, SignInRefused, blocking};

pub fn routes() -> RouteTable<Arc<AppState>> {
    RouteTable::new()
        .post("/admin/sign-in", Public, "user.sign_in", sign_in)
        .post("/admin/sign-out", OwnSession, "user.sign_out", sign_out)
        .get("/admin/me", OwnSession, me)
        .get("/admin/users", UsersRead, list)
        .post("/admin/users", UsersWrite, "user.create", create)
        .get("/admin/users/{id}", UsersRead, one)
        .patch("/admin/users/{id}", UsersWrite, "user.update", update)
        .delete("/admin/users/{id}", UsersWrite, "user.remove", remove)
        .post("/admin/users/{id}/password", UsersWrite, "user.password", password)
        .post("/admin/users/{id}/totp", UsersWrite, "user.totp_enrol", enrol_totp)
        .delete("/admin/users/{id}/totp", UsersWrite, "user.totp_remove", drop_totp)
        .post("/admin/users/{id}/unlock", UsersWrite, "user.unlock", unlock)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInBody {
    name: String,
    password: String,
    /// The authenticator app's six digits, for a user who enrolled one.
    code: Option<String>,
}

/// `POST /admin/sign-in`: `{"token", "expires_at", "user"}`, or 401 after a delay, or 429 while the client address
/// or the name must wait (dashboard/signin.rs: the login form's checks and limits).
async fn sign_in(
    State(s): State<Arc<AppState>>,
    ext: axum::http::Extensions,
    AdminJson(b): AdminJson<SignInBody>,
) -> Response {
    let name: String = b.name.trim().chars().take(200).collect();
    let note = Note::target(name.clone()).action("user.sign_in");
    let source = crate::audit::source_of(&ext);
    let tried = crate::dashboard::signin::sign_in(&s, &b.name, &b.password, b.code.as_deref(), source.as_deref()).await;
    let (token, signed) = match tried.result {
        Ok(done) => done,
        Err(refused) => {
            tracing::warn!("admin API: a sign-in was refused ({})", refused.reason());
            let resp = AdminError::from(sign_in_error(&refused)).into_response();
            let note = note.with("reason", refused.reason());
            return (Extension(Actor::Anonymous), note, tried.in_burst, resp).into_response();
        }
    };
    let body = json!({
        "token": token,
        "expires_at": signed.expires_at,
        "user": {"id": signed.user.id, "name": signed.user.name, "role": signed.user.role.as_str()},
    });
    let note = note.with("method", signed.method.clone());
    (Extension(Principal::User(signed)), note, Json(body)).into_response()
}

fn sign_in_error(r: &SignInRefused) -> GatewayError {
    let code = match r {
        SignInRefused::WrongNameOrPassword | SignInRefused::NotAllowed => "sign_in_failed",
        SignInRefused::CodeNeeded => "code_needed",
        SignInRefused::WrongCode => "wrong_code",
        SignInRefused::Limited(wait) => {
            let code = if wait.locked { "account_locked" } else { "too_many_attempts" };
            return GatewayError::new(ErrorKind::RateLimited, format!("Sign-in refused: {r}"))
                .with_code(code)
                .with_retry_after(wait.seconds());
        }
        SignInRefused::Store(_) => {
            let message = "The sign-in could not be checked: see the gateway's log.";
            return GatewayError::new(ErrorKind::Internal, message).with_code("store_error");
        }
    };
    GatewayError::new(ErrorKind::Unauthorized, format!("Sign-in refused: {r}.")).with_code(code)
}

/// `POST /admin/sign-out`: the session sent ends, everywhere.
async fn sign_out(State(s): State<Arc<AppState>>, asking: Asking) -> Result<Json<Value>, AdminError> {
    let Principal::User(signed) = asking.principal else {
        return Err(GatewayError::invalid("Only a user's session signs out; the admin key stays valid.").into());
    };
    let users = s.users.clone();
    blocking("store", move || users.sign_out(&signed)).await?;
    Ok(Json(json!({"signed_out": true})))
}

/// `GET /admin/me`: who the credential is, and the role it acts with.
async fn me(asking: Asking) -> Json<Value> {
    let p = &asking.principal;
    Json(json!({
        "actor": p.actor().as_text(),
        "role": p.role().as_str(),
        "user": p.user().map(|u| json!({"id": u.id, "name": u.name, "max_keys": u.max_keys})),
    }))
}

/// Every user, with their budget's use and failed sign-ins (`sign_in_failures`, `locked_until`).
async fn list(State(s): State<Arc<AppState>>) -> Result<Json<Value>, AdminError> {
    Ok(Json(Value::Array(s.users_listed().await?)))
}

async fn one(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, AdminError> {
    let store = s.users.store().clone();
    Ok(Json(s.keys.user_with_usage(&blocking("store", move || manage::find(&store, &id)).await?)))
}

/// Body `{"name", "role", "password"?, "max_keys"?}`: 201 with the user.
async fn create(
    State(s): State<Arc<AppState>>,
    AdminJson(new): AdminJson<NewUser>,
) -> Result<(StatusCode, Note, Json<Value>), AdminError> {
    let row = s.change_users(move |store| manage::create(store, new, now_unix())).await?;
    Ok((StatusCode::CREATED, manage::note(&row, &Ended::default()), Json(manage::summary(&row))))
}

/// Body: any of `{"role", "disabled", "max_keys", "rpm", "concurrency", "daily_tokens", "monthly_tokens"}` (the
/// last four: the user's budget across all their keys; `null` removes one). Disabling ends the user's sessions
/// and revokes their keys. A change of budget is audited as `user.budget`.
async fn update(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminJson(patch): AdminJson<UserPatch>,
) -> Result<(Note, Json<Value>), AdminError> {
    let action = if patch.sets_budget() { "user.budget" } else { "user.update" };
    let (row, ended) = s.change_users(move |store| manage::update(store, &id, patch, now_unix())).await?;
    let mut v = with_ended(&row, &ended);
    if let Some(usage) = s.keys.user_with_usage(&row).get("usage") {
        v["usage"] = usage.clone();
    }
    Ok((manage::note(&row, &ended).action(action), Json(v)))
}

/// Ends the user's sessions and revokes their keys, then removes the user.
async fn remove(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<(Note, Json<Value>), AdminError> {
    let (row, ended) = s.change_users(move |store| manage::remove(store, &id, now_unix())).await?;
    let mut v = with_ended(&row, &ended);
    v["removed"] = true.into();
    Ok((manage::note(&row, &ended).action("user.remove"), Json(v)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

/// Body `{"password"}`: a new password; the user's sessions end.
async fn password(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    AdminJson(b): AdminJson<PasswordBody>,
) -> Result<(Note, Json<Value>), AdminError> {
    let (row, ended) = s.change_users(move |store| manage::set_password(store, &id, &b.password)).await?;
    Ok((manage::note(&row, &ended).action("user.password"), Json(with_ended(&row, &ended))))
}

/// A new TOTP secret: `{"otpauth_uri"}`, shown this once (the secret is in it), for the user's authenticator app.
async fn enrol_totp(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<(Note, Json<Value>), AdminError> {
    let (row, uri) = s.change_users(move |store| manage::enrol_totp(store, &id)).await?;
    let mut v = manage::summary(&row);
    v["otpauth_uri"] = uri.into();
    Ok((manage::note(&row, &Ended::default()).action("user.totp_enrol"), Json(v)))
}

async fn drop_totp(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<(Note, Json<Value>), AdminError> {
    let row = s.change_users(move |store| manage::drop_totp(store, &id)).await?;
    Ok((manage::note(&row, &Ended::default()).action("user.totp_remove"), Json(manage::summary(&row))))
}

fn with_ended(row: &crate::store::users::StoredUser, ended: &Ended) -> Value {
    let mut v = manage::summary(row);
    v["sessions_ended"] = ended.sessions.into();
    v["keys_revoked"] = ended.keys.clone().into();
    v
}

/// `POST /admin/users/{id}/unlock`: the user's failed sign-ins are forgotten and a lockout lifted, on every instance
/// (they are kept in the store: users/limits.rs). `{"user", "was_locked"}`.
async fn unlock(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, AdminError> {
    let (row, had) = s.change_users(move |store| manage::unlock(store, &id)).await?;
    let note = Note::target(row.id.clone()).with("name", row.name.clone()).with("had_failures", had);
    Ok((note, Json(json!({"user": manage::summary(&row), "was_locked": had}))).into_response())
}
