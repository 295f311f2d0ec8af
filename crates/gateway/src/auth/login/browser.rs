//! The browser flow: a one-shot callback server on loopback receives the issuer's redirect.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};

use super::oauth::{Pkce, authorize_url, code_from_callback, exchange_code, random_state};
use super::{LoginError, LoginOptions, Prompt, callback_redirect_uri};
use crate::auth::Tokens;
use crate::config::Env;

/// Sign in through a browser: serve the callback, hand the authorize URL to `prompt`, wait, exchange the code.
pub async fn browser_login(
    http: &reqwest::Client,
    opts: &LoginOptions,
    mut prompt: impl FnMut(Prompt),
) -> Result<Tokens, LoginError> {
    let pkce = Pkce::generate();
    let state = random_state();
    let server = CallbackServer::bind(&opts.callback_ports, state.clone()).await?;
    let redirect_uri = callback_redirect_uri(server.port);
    let url = authorize_url(opts.issuer(), &redirect_uri, &pkce.challenge, &state)?;
    prompt(Prompt::Browser { url: url.clone() });
    if opts.open_browser {
        open_in_browser(&url);
    }
    let code = server.wait(opts.timeout).await?;
    exchange_code(http, opts.issuer(), &code, &redirect_uri, &pkce.verifier).await
}

/// A one-shot HTTP server on 127.0.0.1 answering `GET /auth/callback` once.
struct CallbackServer {
    port: u16,
    results: mpsc::Receiver<Result<String, LoginError>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

struct CallbackState {
    expected_state: String,
    results: mpsc::Sender<Result<String, LoginError>>,
}

impl CallbackServer {
    async fn bind(ports: &[u16], expected_state: String) -> Result<CallbackServer, LoginError> {
        let mut bound = Err(String::from("no port to try"));
        for &port in ports {
            // Loopback only: the callback carries a live authorization code.
            bound = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await.map_err(|e| e.to_string());
            if bound.is_ok() {
                break;
            }
        }
        let busy = |reason| {
            let ports = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
            LoginError::CallbackPortsBusy { ports, reason }
        };
        let listener = bound.map_err(busy)?;
        let port = listener.local_addr().map_err(|e| busy(e.to_string()))?.port();
        let (tx, results) = mpsc::channel(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let app = axum::Router::new()
            .route("/auth/callback", axum::routing::get(callback))
            .with_state(Arc::new(CallbackState { expected_state, results: tx }));
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, app.into_make_service()).with_graceful_shutdown(shutdown).await {
                tracing::warn!("login callback server stopped: {e}");
            }
        });
        Ok(CallbackServer { port, results, stop, task })
    }

    /// The first callback's outcome, or a timeout; then the server stops.
    async fn wait(mut self, timeout: Duration) -> Result<String, LoginError> {
        let outcome = match tokio::time::timeout(timeout, self.results.recv()).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => Err(LoginError::CallbackServerStopped),
            Err(_) => Err(LoginError::TimedOut(timeout)),
        };
        let _ = self.stop.send(());
        // The page has been answered with `Connection: close`; give the connection a moment to drain.
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task).await.is_err() {
            self.task.abort();
        }
        outcome
    }
}

async fn callback(State(s): State<Arc<CallbackState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let outcome = code_from_callback(&q, &s.expected_state);
    let (status, page) = match &outcome {
        Ok(_) => {
            (StatusCode::OK, page("Signed in", "Sign-in received. You can close this tab and go back to the terminal."))
        }
        Err(e) => (StatusCode::BAD_REQUEST, page("Sign-in failed", &format!("{e}. Run the login again."))),
    };
    // Only the first answer counts; later ones (a reload) still get a page.
    let _ = s.results.try_send(outcome);
    (status, [(header::CONNECTION, "close")], Html(page)).into_response()
}

pub(super) fn page(title: &str, message: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>{t}</h1><p>{m}</p></body></html>",
        t = html_escape(title),
        m = html_escape(message)
    )
}

/// `s` safe in HTML text and double-quoted attributes.
pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Whether launching a browser makes sense here: not with `BROWSER=none`, and on Linux only with a display.
pub fn browser_available(env: &dyn Env) -> bool {
    let display = env.get("DISPLAY").is_some() || env.get("WAYLAND_DISPLAY").is_some();
    env.get("BROWSER").as_deref() != Some("none") && (display || !cfg!(target_os = "linux"))
}

/// Best effort: the URL has been printed already, so a missing opener is not an error.
fn open_in_browser(url: &str) {
    let opener = match std::env::consts::OS {
        "macos" => "open",
        "windows" => "explorer",
        _ => "xdg-open",
    };
    let spawned = tokio::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        tracing::debug!("could not start {opener}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_detection() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(!browser_available(&env(&[("BROWSER", "none"), ("DISPLAY", ":0")])));
        if cfg!(target_os = "linux") {
            assert!(!browser_available(&env(&[])));
            assert!(browser_available(&env(&[("WAYLAND_DISPLAY", "wayland-0")])));
        }
    }
}
