//! The grants, on the store (blocking): the authorization request of a signed-in user, the device code's start and
//! approval, and the token endpoint's three grants (RFC 6749 §4.1.3 with RFC 7636, §6 with rotation, RFC 8628).

use std::collections::HashMap;

use super::{CODE_SECS, DEVICE_INTERVAL, DEVICE_SECS, OAuthError};
use crate::auth::now_unix;
use crate::config::OAuthConfig;
use crate::store::oauth::{StoredGrant, StoredRefresh};
use crate::users::access::{Action, Decision, decide};
use crate::users::{User, Users, random_token, sha256_hex};

pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A form's parameters; a parameter sent twice is refused (RFC 6749 §3.1).
pub fn form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if out.insert(k.to_string(), v.to_string()).is_some() {
            return Err(OAuthError::InvalidRequest(format!("{k} is repeated")));
        }
    }
    Ok(out)
}

fn required<'a>(f: &'a HashMap<String, String>, name: &str) -> Result<&'a str, OAuthError> {
    f.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is missing")))
}

fn client(f: &HashMap<String, String>, cfg: &OAuthConfig) -> Result<(), OAuthError> {
    match f.get("client_id") {
        Some(id) if *id == cfg.client_id => Ok(()),
        Some(_) => Err(OAuthError::InvalidClient),
        None => Err(OAuthError::InvalidRequest("client_id is missing".into())),
    }
}

/// Whether a role may use the models (and so hold a token for them): `users/access.rs` decides.
pub fn may_use_models(user: &User) -> bool {
    decide(user.role, Action::Models) != Decision::Refuse
}

/// Why an authorization request was not granted.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// Not the gateway's client: shown on the page, never redirected (RFC 6749 §4.1.2.1).
    #[error("unknown client_id")]
    UnknownClient,
    /// Not a loopback redirect: shown on the page, never redirected.
    #[error("redirect_uri must be http://127.0.0.1:PORT/... or http://localhost:PORT/...")]
    BadRedirect,
    /// Sent back to the redirect as `error` and `error_description`.
    #[error("{1}")]
    Redirect(&'static str, &'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The authorization request's client and redirect, checked before anything may be redirected.
pub fn check_client(q: &HashMap<String, String>, cfg: &OAuthConfig) -> Result<String, AuthorizeError> {
    if q.get("client_id") != Some(&cfg.client_id) {
        return Err(AuthorizeError::UnknownClient);
    }
    match q.get("redirect_uri") {
        Some(r) if super::loopback_redirect(r) => Ok(r.clone()),
        _ => Err(AuthorizeError::BadRedirect),
    }
}

/// A code for `user`, who approved by signing in: response type `code`, PKCE S256 required.
pub fn authorize(users: &Users, q: &HashMap<String, String>, user: &User) -> Result<String, AuthorizeError> {
    if q.get("response_type").map(String::as_str) != Some("code") {
        return Err(AuthorizeError::Redirect("unsupported_response_type", "response_type must be code"));
    }
    let challenge = q.get("code_challenge").map(String::as_str).unwrap_or_default();
    if q.get("code_challenge_method").map(String::as_str) != Some("S256") || !super::valid_challenge(challenge) {
        return Err(AuthorizeError::Redirect("invalid_request", "PKCE with code_challenge_method S256 is required"));
    }
    if !may_use_models(user) {
        return Err(AuthorizeError::Redirect("access_denied", "this user's role may not use the models"));
    }
    let code = random_token();
    let client_id = q.get("client_id").cloned().unwrap_or_default();
    users.store().insert_grant(&StoredGrant {
        user_id: Some(user.id.clone()),
        redirect_uri: q.get("redirect_uri").cloned(),
        code_challenge: Some(challenge.to_string()),
        ..pending(&code, "code", client_id, q.get("scope").cloned(), CODE_SECS)
    })?;
    Ok(code)
}

/// A pending grant kept as the SHA-256 of `secret`, living `secs`.
fn pending(secret: &str, kind: &str, client_id: String, scope: Option<String>, secs: i64) -> StoredGrant {
    let now = now_unix();
    StoredGrant {
        id_sha256: sha256_hex(secret),
        kind: kind.into(),
        user_code_sha256: None,
        client_id,
        user_id: None,
        redirect_uri: None,
        code_challenge: None,
        scope,
        state: "pending".into(),
        family: None,
        created_at: now,
        expires_at: now + secs,
        polled_at: None,
    }
}

/// A device authorization's answer (RFC 8628 §3.2), `verification_uri` from the caller.
#[derive(Debug)]
pub struct DeviceStart {
    pub device_code: String,
    pub user_code: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// Start a device authorization.
pub fn device_start(users: &Users, cfg: &OAuthConfig, f: &HashMap<String, String>) -> Result<DeviceStart, OAuthError> {
    client(f, cfg)?;
    let device_code = random_token();
    let user_code = super::new_user_code();
    users.store().insert_grant(&StoredGrant {
        user_code_sha256: Some(sha256_hex(&user_code)),
        ..pending(&device_code, "device", cfg.client_id.clone(), f.get("scope").cloned(), DEVICE_SECS)
    })?;
    Ok(DeviceStart { device_code, user_code, expires_in: DEVICE_SECS, interval: DEVICE_INTERVAL })
}

/// Why a user code was not approved or denied on the page.
#[derive(Debug, thiserror::Error)]
pub enum DeviceDecisionError {
    #[error("That code is not valid, expired, or was already used. Start the sign-in again in Codex.")]
    UnknownCode,
    #[error("Your role may not use the models.")]
    NotAllowed,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The signed-in `user` approves (or denies) the device code `typed`.
pub fn device_decide(users: &Users, user: &User, typed: &str, approve: bool) -> Result<(), DeviceDecisionError> {
    let code = super::normalize_user_code(typed).ok_or(DeviceDecisionError::UnknownCode)?;
    if approve && !may_use_models(user) {
        return Err(DeviceDecisionError::NotAllowed);
    }
    let store = users.store();
    let grant =
        store.find_device_by_user_code(&sha256_hex(&code), now_unix())?.ok_or(DeviceDecisionError::UnknownCode)?;
    let to = if approve { "approved" } else { "denied" };
    if !store.move_grant(&grant.id_sha256, "pending", to, Some(&user.id), None)? {
        return Err(DeviceDecisionError::UnknownCode);
    }
    Ok(())
}

/// Tokens issued by the token endpoint.
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub scope: Option<String>,
}

/// What the token endpoint did, for its answer and the audit trail.
#[derive(Debug)]
pub struct TokenOutcome {
    pub result: Result<Issued, OAuthError>,
    /// `authorization_code`, `refresh_token`, `device_code`, or what was sent (cut short).
    pub grant: String,
    /// The user, when the grant named one.
    pub user: Option<String>,
    /// A used code or refresh token came back: its family was revoked.
    pub revoked_family: bool,
}

/// The token endpoint (RFC 6749 §3.2): the grant's checks, then new tokens.
pub fn token(users: &Users, cfg: &OAuthConfig, f: &HashMap<String, String>) -> TokenOutcome {
    let grant_type = f.get("grant_type").map(String::as_str).unwrap_or_default();
    let mut ask = Ask { users, cfg, f, user: None, revoked: false };
    let result = client(f, cfg).and_then(|()| match grant_type {
        "authorization_code" => ask.code_grant(),
        "refresh_token" => ask.refresh_grant(),
        DEVICE_GRANT => ask.device_grant(),
        "" => Err(OAuthError::InvalidRequest("grant_type is missing".into())),
        _ => Err(OAuthError::UnsupportedGrantType),
    });
    let grant = match grant_type {
        DEVICE_GRANT => "device_code".into(),
        g => g.chars().take(40).collect(),
    };
    TokenOutcome { result, grant, user: ask.user, revoked_family: ask.revoked }
}

/// A token request as its grant reads it, noting the user it names and whether a family was revoked.
struct Ask<'a> {
    users: &'a Users,
    cfg: &'a OAuthConfig,
    f: &'a HashMap<String, String>,
    user: Option<String>,
    revoked: bool,
}

impl Ask<'_> {
    fn code_grant(&mut self) -> Result<Issued, OAuthError> {
        let (f, store) = (self.f, self.users.store());
        let (code, redirect, verifier) =
            (required(f, "code")?, required(f, "redirect_uri")?, required(f, "code_verifier")?);
        let g = store
            .find_grant(&sha256_hex(code))?
            .filter(|g| g.kind == "code")
            .ok_or(OAuthError::InvalidGrant("unknown code"))?;
        self.user = g.user_id.clone();
        if g.state == "used" {
            // RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for.
            if let Some(family) = &g.family {
                store.revoke_family(family)?;
                // Refused here at once; the other instances drop it at their next re-read of the sessions.
                self.users.reload()?;
                self.revoked = true;
            }
            return Err(OAuthError::InvalidGrant("the code was already used"));
        }
        if g.expires_at <= now_unix() {
            return Err(OAuthError::InvalidGrant("the code expired"));
        }
        if g.client_id != self.cfg.client_id || g.redirect_uri.as_deref() != Some(redirect) {
            return Err(OAuthError::InvalidGrant("redirect_uri does not match the authorization request"));
        }
        if !g.code_challenge.as_deref().is_some_and(|c| super::verifier_matches(verifier, c)) {
            return Err(OAuthError::InvalidGrant("code_verifier does not match the code_challenge"));
        }
        self.redeem(g, "pending", "the code was already used", "unknown code")
    }

    fn refresh_grant(&mut self) -> Result<Issued, OAuthError> {
        let presented = required(self.f, "refresh_token")?;
        let store = self.users.store();
        let hash = sha256_hex(presented);
        let r = store.find_refresh(&hash)?.ok_or(OAuthError::InvalidGrant("unknown refresh token"))?;
        self.user = Some(r.user_id.clone());
        if r.client_id != self.cfg.client_id {
            return Err(OAuthError::InvalidGrant("the refresh token is another client's"));
        }
        if !store.use_refresh(&hash, now_unix())? {
            if r.used_at.is_some() || store.find_refresh(&hash)?.is_some_and(|now| now.used_at.is_some()) {
                // A rotated token presented again: whoever holds the family, one copy leaked (RFC 9700 §4.14.2).
                store.revoke_family(&r.family)?;
                self.users.reload()?;
                self.revoked = true;
                return Err(OAuthError::InvalidGrant("the refresh token was already used; its sign-in is revoked"));
            }
            return Err(OAuthError::InvalidGrant("the refresh token expired"));
        }
        self.issue(&r.user_id, &r.family, r.scope)
    }

    fn device_grant(&mut self) -> Result<Issued, OAuthError> {
        let device_code = required(self.f, "device_code")?;
        let store = self.users.store();
        let g = store
            .find_grant(&sha256_hex(device_code))?
            .filter(|g| g.kind == "device" && g.client_id == self.cfg.client_id)
            .ok_or(OAuthError::InvalidGrant("unknown device code"))?;
        self.user = g.user_id.clone();
        let now_ms = crate::auth::now_ms();
        if g.expires_at <= now_ms / 1000 {
            return Err(OAuthError::ExpiredToken);
        }
        match g.state.as_str() {
            "pending" => {
                store.note_poll(&g.id_sha256, now_ms)?;
                // Polled again within half the interval: the client is told to wait longer (RFC 8628 §3.5).
                let early = g.polled_at.is_some_and(|last| now_ms - last < DEVICE_INTERVAL * 500);
                Err(if early { OAuthError::SlowDown } else { OAuthError::AuthorizationPending })
            }
            "denied" => Err(OAuthError::AccessDenied("the user denied the sign-in")),
            "approved" => self.redeem(g, "approved", "the device code was already used", "unknown device code"),
            _ => Err(OAuthError::InvalidGrant("the device code was already used")),
        }
    }

    /// Move the grant `g` from `from` to used (`used`: refused when another request did first) and issue its
    /// user's tokens in a new family (`unknown`: refused when it names no user).
    fn redeem(
        &self,
        g: StoredGrant,
        from: &str,
        used: &'static str,
        unknown: &'static str,
    ) -> Result<Issued, OAuthError> {
        let family = format!("fam_{}", &random_token()[..16]);
        if !self.users.store().move_grant(&g.id_sha256, from, "used", None, Some(&family))? {
            return Err(OAuthError::InvalidGrant(used));
        }
        let user = g.user_id.as_deref().ok_or(OAuthError::InvalidGrant(unknown))?;
        self.issue(user, &family, g.scope)
    }

    /// A new access token and refresh token in `family`, for a user still enabled with a role that may use the
    /// models.
    fn issue(&self, user_id: &str, family: &str, scope: Option<String>) -> Result<Issued, OAuthError> {
        let (users, cfg) = (self.users, self.cfg);
        let user = users.enabled_user(user_id)?.ok_or(OAuthError::InvalidGrant("the user is disabled or removed"))?;
        if !may_use_models(&user) {
            return Err(OAuthError::AccessDenied("this user's role may not use the models"));
        }
        let (access_token, signed) = users.issue_access(&user.id, cfg.access_token)?;
        let refresh_token = format!("cgr_{}", random_token());
        let now = now_unix();
        users.store().insert_refresh(&StoredRefresh {
            token_sha256: sha256_hex(&refresh_token),
            family: family.to_string(),
            user_id: user.id.clone(),
            client_id: cfg.client_id.clone(),
            scope: scope.clone(),
            access_sha256: signed.token_sha256.clone(),
            created_at: now,
            expires_at: now + i64::try_from(cfg.refresh_token.as_secs()).unwrap_or(i64::MAX / 2),
            used_at: None,
        })?;
        Ok(Issued { access_token, refresh_token, expires_in: cfg.access_token.as_secs(), scope })
    }
}
