//! Adding a ChatGPT account from the Accounts page by the login flows of `auth/login/`: the device code (the
//! code shown in the page, its status polled until approved), the browser sign-in (the gateway serves the
//! local callback as `codex-gateway login` does: for a browser on the gateway's own machine), and the pasted
//! redirect address (for a remote server). Each login is a job the page polls; tokens never reach the page.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::session::{ApiRead, ApiWrite};
use super::{Answer, St, json_error, json_response};
use crate::accounts::manage::save_login;
use crate::auth::Tokens;
use crate::auth::login::{
    DEFAULT_CALLBACK_PORTS, LoginError, LoginOptions, Pkce, Prompt, authorize_url, browser_login,
    callback_redirect_uri, code_from_paste, device_login, exchange_code, random_state,
};

/// Jobs kept at once (finished ones are dropped after [`KEEP`]).
const MAX_JOBS: usize = 16;
const KEEP: Duration = Duration::from_secs(30 * 60);

/// As the page polls it: `{"state": "starting"|"device"|"browser"|"paste"|"done"|"failed", ...}`.
#[derive(Clone, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum JobState {
    /// The flow started and has not asked anything yet.
    Starting,
    /// Device flow: enter `user_code` at `url`.
    Device {
        url: String,
        user_code: String,
    },
    /// Browser flow: open `url` in a browser on the gateway's machine.
    Browser {
        url: String,
    },
    /// Paste flow: open `url`, then paste the address the browser ended on.
    Paste {
        url: String,
        #[serde(skip)]
        state: String,
        #[serde(skip)]
        verifier: String,
    },
    Done {
        account: String,
        replaced: bool,
    },
    Failed {
        error: String,
    },
}

struct Job {
    state: JobState,
    created: Instant,
    label: Option<String>,
}

#[derive(Default)]
pub(crate) struct Jobs(Arc<Mutex<HashMap<String, Job>>>);

impl Jobs {
    fn insert(&self, label: Option<String>, state: JobState) -> Result<String, Response> {
        let mut map = self.0.lock();
        map.retain(|_, j| j.created.elapsed() < KEEP);
        if map.len() >= MAX_JOBS {
            return Err(json_error(StatusCode::TOO_MANY_REQUESTS, "Too many logins at once: finish one first."));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        map.insert(id.clone(), Job { state, created: Instant::now(), label });
        Ok(id)
    }

    fn set(&self, id: &str, state: JobState) {
        if let Some(j) = self.0.lock().get_mut(id) {
            j.state = state;
        }
    }
}

#[derive(Deserialize, Default)]
struct StartBody {
    label: Option<String>,
}

/// `POST /dashboard/api/login/{device|browser|paste}` -> `{"job"}`; then poll `GET .../job/{job}`.
pub(crate) async fn start(
    State(dash): State<St>,
    ApiWrite(who): ApiWrite,
    Path(flow): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    let actor = who.actor();
    let b: StartBody = serde_json::from_slice(&body).unwrap_or_default();
    let label = crate::accounts::manage::checked_label(b.label.as_deref())
        .map_err(|e| json_error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let issuer = dash.app.config.auth_issuer.clone();
    if flow == "paste" {
        let pkce = Pkce::generate();
        let state = random_state();
        let url = authorize_url(&issuer, &callback_redirect_uri(DEFAULT_CALLBACK_PORTS[0]), &pkce.challenge, &state)
            .map_err(|e| json_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let job = dash.logins.insert(label, JobState::Paste { url, state, verifier: pkce.verifier })?;
        return Ok(json_response(StatusCode::OK, json!({"job": job})));
    }
    let browser = match flow.as_str() {
        "device" => false,
        "browser" => true,
        _ => return Err(json_error(StatusCode::NOT_FOUND, format!("No login flow `{flow}`."))),
    };
    let job = dash.logins.insert(label, JobState::Starting)?;
    let opts = LoginOptions::new(&issuer);
    let http = dash.app.upstream.http().clone();
    let (jobs, id, d) = (Jobs(dash.logins.0.clone()), job.clone(), dash.clone());
    tokio::spawn(async move {
        let prompt = |p: Prompt| match p {
            Prompt::Device { verification_url, user_code } => {
                jobs.set(&id, JobState::Device { url: verification_url, user_code })
            }
            Prompt::Browser { url } | Prompt::Paste { url } => jobs.set(&id, JobState::Browser { url }),
        };
        let result =
            if browser { browser_login(&http, &opts, prompt).await } else { device_login(&http, &opts, prompt).await };
        finish(&d, &id, result, actor);
    });
    Ok(json_response(StatusCode::OK, json!({"job": job})))
}

/// Save the login's tokens and add the account to the pool, or note why it failed.
fn finish(dash: &St, id: &str, result: Result<Tokens, LoginError>, actor: crate::audit::Actor) {
    let label = dash.logins.0.lock().get(id).and_then(|j| j.label.clone());
    let pool = &dash.app.pool;
    let state = match result {
        Ok(tokens) => match save_login(pool.store(), tokens, label).and_then(|s| pool.reload().map(|()| s)) {
            Ok(saved) => {
                let a = &saved.account;
                super::audit::login_finished(dash, actor, Ok(a));
                JobState::Done {
                    account: a.label.clone().or_else(|| a.email.clone()).unwrap_or_else(|| a.id.clone()),
                    replaced: saved.replaced,
                }
            }
            Err(e) => {
                tracing::error!("dashboard login: saving the account failed: {e:#}");
                super::audit::login_finished(dash, actor, Err("the account could not be saved"));
                let error = "The login worked but the account could not be saved; the gateway's log says why.";
                JobState::Failed { error: error.into() }
            }
        },
        Err(e) => {
            super::audit::login_finished(dash, actor, Err("the login failed"));
            JobState::Failed { error: e.to_string() }
        }
    };
    dash.logins.set(id, state);
}

/// `GET /dashboard/api/login/job/{job}`: the job's [`JobState`].
pub(crate) async fn status(State(dash): State<St>, _: ApiRead, Path(job): Path<String>) -> Response {
    match dash.logins.0.lock().get(&job) {
        Some(j) => json_response(StatusCode::OK, json!(j.state)),
        None => json_error(StatusCode::NOT_FOUND, "This login is over or unknown: start again."),
    }
}

#[derive(Deserialize)]
struct PasteBody {
    text: String,
}

/// `POST /dashboard/api/login/job/{job}/paste` `{"text"}`: the address the browser ended on.
pub(crate) async fn paste(
    State(dash): State<St>,
    ApiWrite(who): ApiWrite,
    Path(job): Path<String>,
    body: axum::body::Bytes,
) -> Answer {
    let actor = who.actor();
    let Ok(b) = serde_json::from_slice::<PasteBody>(&body) else {
        return Err(json_error(StatusCode::BAD_REQUEST, "Send {\"text\": ...}."));
    };
    let Some(JobState::Paste { state, verifier, .. }) = dash.logins.0.lock().get(&job).map(|j| j.state.clone()) else {
        return Err(json_error(StatusCode::NOT_FOUND, "This login is over or unknown: start again."));
    };
    let code = code_from_paste(&b.text, &state).map_err(|e| json_error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let redirect_uri = callback_redirect_uri(DEFAULT_CALLBACK_PORTS[0]);
    let http = dash.app.upstream.http().clone();
    let result = exchange_code(&http, &dash.app.config.auth_issuer, &code, &redirect_uri, &verifier).await;
    let failed = result.as_ref().err().map(|e| json_error(StatusCode::BAD_REQUEST, e.to_string()));
    finish(&dash, &job, result, actor);
    match failed {
        None => Ok(status(State(dash), ApiRead, Path(job)).await),
        Some(e) => Err(e),
    }
}
