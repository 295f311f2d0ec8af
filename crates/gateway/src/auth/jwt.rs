//! Reading claims from ChatGPT id/access tokens. The gateway does not verify signatures: the tokens come from
//! the issuer over TLS and are only used to learn the account id, plan, email and expiry.

use base64::Engine;
use serde::Deserialize;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Claims {
    pub exp: Option<i64>,
    /// When the issuer made the token (`doctor` compares it with this machine's clock).
    pub iat: Option<i64>,
    pub email: Option<String>,
    pub account_id: Option<String>,
    pub plan: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawClaims {
    exp: Option<i64>,
    iat: Option<i64>,
    email: Option<String>,
    #[serde(rename = "https://api.openai.com/auth")]
    auth: Option<AuthClaims>,
    #[serde(rename = "https://api.openai.com/profile")]
    profile: Option<ProfileClaims>,
}
#[derive(Deserialize, Default)]
struct AuthClaims {
    chatgpt_account_id: Option<String>,
    chatgpt_plan_type: Option<String>,
}
#[derive(Deserialize, Default)]
struct ProfileClaims {
    email: Option<String>,
}

/// Decode the payload of a JWT; `None` if it is not one.
pub fn claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let raw: RawClaims = serde_json::from_slice(&bytes).ok()?;
    let auth = raw.auth.unwrap_or_default();
    Some(Claims {
        exp: raw.exp,
        iat: raw.iat,
        email: raw.email.or(raw.profile.and_then(|p| p.email)),
        account_id: auth.chatgpt_account_id,
        plan: auth.chatgpt_plan_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", e.encode(r#"{"alg":"none"}"#), e.encode(payload))
    }

    #[test]
    fn reads_chatgpt_claims() {
        let t = jwt(
            r#"{"exp":100,"email":"a@b.c","https://api.openai.com/auth":{"chatgpt_account_id":"acc","chatgpt_plan_type":"plus"}}"#,
        );
        assert_eq!(
            claims(&t),
            Some(Claims {
                exp: Some(100),
                iat: None,
                email: Some("a@b.c".into()),
                account_id: Some("acc".into()),
                plan: Some("plus".into())
            })
        );
        assert_eq!(claims("not-a-jwt"), None);
    }
}
