//! The Users page (admins only: dashboard/access.rs): people who sign in, their roles, and what an admin does to
//! them, through users/manage.rs as `/admin/users` does: create, change a role or a key maximum, disable or
//! enable, reset a password, enrol a TOTP second factor (its `otpauth://` URI shown this once) or take it away,
//! lift a lockout after failed sign-ins (users/limits.rs), remove. Disabling and removing end the user's sessions and revoke their keys, everywhere.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::audit::noted;
use super::session::{ApiWrite, PageAccess};
use super::{Answer, St, failed, json_body, json_error, json_response};
use crate::auth::now_unix;
use crate::users::manage::{self, Ended, NewUser, UserError, UserPatch};

fn refused(e: UserError) -> Response {
    match e {
        UserError::NotFound(id) => json_error(StatusCode::NOT_FOUND, format!("No user `{id}`.")),
        e @ UserError::NameTaken(_) => json_error(StatusCode::CONFLICT, format!("{e}.")),
        e @ (UserError::Invalid(_) | UserError::Password(_)) => json_error(StatusCode::BAD_REQUEST, format!("{e}.")),
        UserError::Store(e) => failed("users", e, "The store failed; the gateway's log says why."),
    }
}

/// The change (`AppState::change_users`), or the page's refusal.
async fn changed<T: Send + 'static>(
    dash: &St,
    f: impl FnOnce(&crate::store::Store) -> Result<T, UserError> + Send + 'static,
) -> Result<T, Response> {
    dash.app.change_users(f).await.map_err(refused)
}

/// `GET /dashboard/users`.
pub(crate) async fn page(State(dash): State<St>, PageAccess(a): PageAccess) -> Answer {
    let users = dash.app.users_listed().await.map_err(|e| refused(UserError::Store(e)))?;
    let extra = json!({"users": users, "default_max_keys": crate::users::DEFAULT_MAX_KEYS});
    Ok(super::pages::page(&dash, a, "Users", "users", extra))
}

#[derive(Deserialize)]
pub(crate) struct CreateForm {
    name: String,
    role: String,
    #[serde(default)]
    password: String,
    max_keys: Option<u32>,
}

/// `POST /dashboard/api/users`: the new user.
pub(crate) async fn create(State(dash): State<St>, _: ApiWrite, body: axum::body::Bytes) -> Answer {
    let f: CreateForm = json_body(&body, "Unreadable user form")?;
    let new = NewUser {
        name: f.name,
        role: f.role,
        password: Some(f.password).filter(|p| !p.is_empty()),
        max_keys: f.max_keys,
    };
    let row = changed(&dash, move |store| manage::create(store, new, now_unix())).await?;
    Ok(noted(json_response(StatusCode::CREATED, manage::summary(&row)), manage::note(&row, &Ended::default())))
}

/// `POST /dashboard/api/users/{id}` `{"role"?, "disabled"?, "max_keys"?}`, or the budget's `{"daily_tokens",
/// "monthly_tokens", "rpm", "concurrency"}` (`null`: no limit), audited as `user.budget`.
pub(crate) async fn update(
    State(dash): State<St>,
    _: ApiWrite,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    let patch: UserPatch = json_body(&body, "Unreadable change")?;
    let action = if patch.sets_budget() { "user.budget" } else { "user.update" };
    let (row, ended) = changed(&dash, move |store| manage::update(store, &id, patch, now_unix())).await?;
    Ok(noted(json_response(StatusCode::OK, manage::summary(&row)), manage::note(&row, &ended).action(action)))
}

#[derive(Deserialize, Default)]
struct PasswordForm {
    #[serde(default)]
    password: String,
}

/// `POST /dashboard/api/users/{id}/{password|totp|totp_remove|unlock|remove}`.
pub(crate) async fn act(
    State(dash): State<St>,
    _: ApiWrite,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Answer {
    let now = now_unix();
    let (v, note) = match action.as_str() {
        "password" => {
            let Ok(f) = serde_json::from_slice::<PasswordForm>(&body) else {
                return Err(json_error(StatusCode::BAD_REQUEST, "Send {\"password\": ...}."));
            };
            let (row, ended) = changed(&dash, move |store| manage::set_password(store, &id, &f.password)).await?;
            (manage::summary(&row), manage::note(&row, &ended))
        }
        "totp" => changed(&dash, move |store| manage::enrol_totp(store, &id)).await.map(|(row, uri)| {
            let mut v = manage::summary(&row);
            v["otpauth_uri"] = uri.into();
            (v, manage::note(&row, &Ended::default()))
        })?,
        "totp_remove" => changed(&dash, move |store| manage::drop_totp(store, &id))
            .await
            .map(|row| (manage::summary(&row), manage::note(&row, &Ended::default())))?,
        "unlock" => changed(&dash, move |store| manage::unlock(store, &id)).await.map(|(row, had)| {
            let mut v = manage::summary(&row);
            v["was_locked"] = had.into();
            (v, crate::audit::Note::target(row.id.clone()).with("name", row.name.clone()).with("had_failures", had))
        })?,
        "remove" => changed(&dash, move |store| manage::remove(store, &id, now)).await.map(|(row, ended)| {
            let mut v = manage::summary(&row);
            v["removed"] = true.into();
            (v, manage::note(&row, &ended))
        })?,
        _ => return Err(json_error(StatusCode::NOT_FOUND, "No such user action.")),
    };
    Ok(noted(json_response(StatusCode::OK, v), note))
}
