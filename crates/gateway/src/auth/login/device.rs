//! The device-code flow, for machines without a browser.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::oauth::{answer, exchange_code, network, refused};
use super::{LoginError, LoginOptions, Prompt};
use crate::auth::{CLIENT_ID, Tokens};

const DEVICE_ENDPOINT: &str = "the device-code endpoint";

#[derive(Deserialize)]
struct UserCode {
    device_auth_id: String,
    #[serde(alias = "usercode")]
    user_code: String,
    interval: Option<Value>,
}

#[derive(Deserialize)]
struct DeviceApproval {
    authorization_code: String,
    code_verifier: String,
}

/// The poll interval in seconds: the issuer sends a string (`"5"`); a number is accepted too.
fn poll_interval(v: Option<&Value>) -> Duration {
    let secs = match v {
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(Value::Number(n)) => n.as_f64(),
        _ => None,
    }
    .filter(|s| s.is_finite())
    .unwrap_or(5.0);
    Duration::from_secs_f64(secs.clamp(1.0, 60.0))
}

/// Sign in with a code entered on another device: get a user code, poll until approved, exchange.
pub async fn device_login(
    http: &reqwest::Client,
    opts: &LoginOptions,
    mut prompt: impl FnMut(Prompt),
) -> Result<Tokens, LoginError> {
    let issuer = opts.issuer();
    let req = http.post(format!("{issuer}/api/accounts/deviceauth/usercode")).json(&json!({ "client_id": CLIENT_ID }));
    let uc: UserCode = answer(DEVICE_ENDPOINT, req).await?;
    let interval = poll_interval(uc.interval.as_ref());
    prompt(Prompt::Device { verification_url: format!("{issuer}/codex/device"), user_code: uc.user_code.clone() });

    let started = Instant::now();
    let poll_body = json!({ "device_auth_id": uc.device_auth_id, "user_code": uc.user_code });
    let approval = loop {
        match http.post(format!("{issuer}/api/accounts/deviceauth/token")).json(&poll_body).send().await {
            Ok(resp) => {
                let status = resp.status();
                let bytes = resp.bytes().await.map_err(|e| network(DEVICE_ENDPOINT, e))?;
                if status.is_success() {
                    break serde_json::from_slice::<DeviceApproval>(&bytes)
                        .map_err(|_| LoginError::BadResponse { endpoint: DEVICE_ENDPOINT })?;
                }
                let pending = matches!(status.as_u16(), 403 | 404);
                // A server hiccup is not a refusal: keep polling until the window closes.
                if !pending && !status.is_server_error() && status.as_u16() != 429 {
                    return Err(refused(DEVICE_ENDPOINT, status, &bytes));
                }
            }
            Err(e) => tracing::debug!("device-code poll failed, retrying: {}", e.without_url()),
        }
        let left = opts.device_timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(LoginError::DeviceTimedOut(opts.device_timeout));
        }
        // The last poll lands on the deadline itself.
        tokio::time::sleep(interval.min(left)).await;
    };
    let redirect_uri = format!("{issuer}/deviceauth/callback");
    exchange_code(http, issuer, &approval.authorization_code, &redirect_uri, &approval.code_verifier).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_interval_is_a_string_or_a_number() {
        assert_eq!(poll_interval(Some(&json!("5"))), Duration::from_secs(5));
        assert_eq!(poll_interval(Some(&json!(" 2 "))), Duration::from_secs(2));
        assert_eq!(poll_interval(Some(&json!(3))), Duration::from_secs(3));
        assert_eq!(poll_interval(Some(&json!("0"))), Duration::from_secs(1));
        assert_eq!(poll_interval(Some(&json!("soon"))), Duration::from_secs(5));
        assert_eq!(poll_interval(None), Duration::from_secs(5));
    }
}
