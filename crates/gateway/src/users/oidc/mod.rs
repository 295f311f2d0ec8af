//! Single sign-on with an OpenID Connect provider (`[dashboard.oidc]`, docs/dashboard.md "Single sign-on"): the
//! authorization code flow with PKCE. The pending sign-in is kept in the store under the SHA-256 of its state, so
//! the provider's redirect may reach any instance, and taken once, so a replay finds nothing.

use std::sync::Arc;

use super::{Method, Role, SignedIn, Users, blocking, ct_eq, random_token, sha256_hex};
use crate::auth::now_unix;
use crate::store::identities::PendingSignIn;
use crate::store::users::StoredUser;

pub mod claims;
pub mod id_token;
pub mod provider;

pub use claims::{Identity, Refusal};
pub use id_token::IdTokenError;
pub use provider::Provider;

/// How long a started sign-in may take at the provider (the login form, a second factor, consent).
pub const PENDING_LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);
/// The path the provider sends the browser back to, under the gateway's public URL.
pub const CALLBACK_PATH: &str = "/dashboard/sso/callback";

/// Why a single sign-on did not open a session: never with a token, a code or the client secret in it.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("single sign-on is not configured")]
    NotConfigured,
    #[error("the sign-in provider could not be reached ({0})")]
    Unreachable(String),
    #[error("the sign-in provider answered something unexpected: {0}")]
    Provider(String),
    #[error("the sign-in provider's discovery document names another issuer than the configured one")]
    IssuerMismatch,
    #[error("too many sign-ins are in progress; try again in a few minutes")]
    TooManyPending,
    #[error("the sign-in provider refused the sign-in ({0})")]
    ProviderRefused(String),
    #[error("the sign-in provider's answer has no authorization code")]
    MissingCode,
    #[error("this sign-in answer does not belong to this browser; start again")]
    StateMismatch,
    #[error("this sign-in expired or was already used; start again")]
    StateUnknown,
    #[error("the answer came from another issuer than the configured one")]
    IssuerParam,
    #[error("the code could not be exchanged at the sign-in provider ({0})")]
    TokenExchange(String),
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    #[error("sign-in is restricted to other e-mail domains")]
    Domain,
    #[error("sign-in is restricted to members of other groups")]
    Group,
    #[error("this user is disabled")]
    Disabled,
    #[error("a user named {0} already exists and is not linked to this sign-in; ask an admin")]
    NameTaken(String),
    #[error("the sign-in could not be recorded")]
    Store(#[from] anyhow::Error),
}

impl SsoError {
    /// The refusal's name in the audit trail.
    pub fn reason(&self) -> &'static str {
        self.kind().0
    }

    /// The HTTP status of the page that shows it.
    pub fn status(&self) -> u16 {
        self.kind().1
    }

    /// The refusal's name and the page's status.
    fn kind(&self) -> (&'static str, u16) {
        match self {
            SsoError::NotConfigured => ("not_configured", 404),
            SsoError::Unreachable(_) => ("provider_unreachable", 502),
            SsoError::Provider(_) => ("provider_bad_answer", 502),
            SsoError::IssuerMismatch => ("issuer_mismatch", 502),
            SsoError::TooManyPending => ("too_many_pending", 503),
            SsoError::ProviderRefused(_) => ("provider_refused", 403),
            SsoError::MissingCode => ("missing_code", 400),
            SsoError::StateMismatch => ("state_mismatch", 400),
            SsoError::StateUnknown => ("state_unknown", 400),
            SsoError::IssuerParam => ("issuer_param", 400),
            SsoError::TokenExchange(_) => ("token_exchange", 502),
            SsoError::IdToken(e) => (e.reason(), 401),
            SsoError::Domain => ("domain_not_allowed", 403),
            SsoError::Group => ("group_not_allowed", 403),
            SsoError::Disabled => ("disabled", 403),
            SsoError::NameTaken(_) => ("name_taken", 409),
            SsoError::Store(_) => ("store_error", 500),
        }
    }
}

impl From<Refusal> for SsoError {
    fn from(r: Refusal) -> SsoError {
        match r {
            Refusal::Domain => SsoError::Domain,
            Refusal::Group => SsoError::Group,
        }
    }
}

/// A sign-in started: where to send the browser, and the state for its cookie.
pub struct Started {
    pub url: String,
    pub state: String,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Started")
    }
}

/// Start a sign-in whose answer comes back to `redirect_uri`.
pub async fn start(p: &Provider, users: &Arc<Users>, redirect_uri: &str) -> Result<Started, SsoError> {
    let d = p.discovery().await?;
    let (state, nonce, verifier) = (random_token(), random_token(), random_token());
    let challenge = crate::auth::login::s256(&verifier);
    let mut url = url::Url::parse(&d.authorization_endpoint)
        .map_err(|_| SsoError::Provider("the authorization endpoint is not a URL".into()))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &p.config.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &p.config.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let now = now_unix();
    let pending = PendingSignIn {
        state_sha256: sha256_hex(&state),
        nonce,
        verifier,
        redirect_uri: redirect_uri.to_string(),
        expires_at: now + PENDING_LIFETIME.as_secs() as i64,
    };
    let store = users.store().clone();
    let kept = blocking("sign-in", move || store.insert_pending_sign_in(&pending, now)).await?;
    if !kept {
        return Err(SsoError::TooManyPending);
    }
    Ok(Started { url: url.into(), state })
}

/// The provider's redirect, as its query says.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
}

/// A sign-in that ended: the session (its token for the cookie) and whether the user was made just now.
pub struct Done {
    pub token: String,
    pub signed: Arc<SignedIn>,
    pub created: bool,
}

/// A sign-in refused, with who the provider said it was when that was known (for the audit trail).
#[derive(Debug)]
pub struct Failed {
    pub error: SsoError,
    pub who: Option<String>,
}

impl<E: Into<SsoError>> From<E> for Failed {
    fn from(e: E) -> Failed {
        Failed { error: e.into(), who: None }
    }
}

/// Finish a sign-in: `cookie_state` is the state cookie of the browser, `answer` the redirect's query.
pub async fn finish(
    p: &Provider,
    users: &Arc<Users>,
    cookie_state: Option<&str>,
    answer: &Callback,
) -> Result<Done, Failed> {
    if let Some(e) = &answer.error {
        return Err(SsoError::ProviderRefused(provider::short(e)).into());
    }
    let state = match (cookie_state, answer.state.as_deref()) {
        (Some(c), Some(s)) if !s.is_empty() && ct_eq(c, s) => s.to_string(),
        _ => return Err(SsoError::StateMismatch.into()),
    };
    let store = users.store().clone();
    let hash = sha256_hex(&state);
    let pending = blocking("sign-in", move || store.take_pending_sign_in(&hash, now_unix())).await?;
    let Some(pending) = pending else { return Err(SsoError::StateUnknown.into()) };
    // RFC 9207: a provider that names itself in the answer must be the configured one (a mix-up otherwise).
    if answer.iss.as_deref().is_some_and(|iss| iss != p.config.issuer) {
        return Err(SsoError::IssuerParam.into());
    }
    let Some(code) = answer.code.as_deref().filter(|c| !c.is_empty()) else { return Err(SsoError::MissingCode.into()) };
    let tokens = p.exchange(code, &pending.verifier, &pending.redirect_uri).await?;
    let claims = verified_claims(p, &tokens.id_token, &pending.nonce).await?;
    let mut who = Identity::from_claims(&claims, &p.config.roles_claim);
    if Identity::lacks(&claims, &p.config.roles_claim)
        && let Some(access) = &tokens.access_token
        && let Some(info) = p.userinfo(access, &who.subject).await?
    {
        // What the ID token says stands; the userinfo answer only fills in what it lacks.
        let mut merged = info;
        merged.extend(claims);
        who = Identity::from_claims(&merged, &p.config.roles_claim);
    }
    let named = Some(who.email.clone().unwrap_or_else(|| who.subject.clone()));
    let mapped = claims::admit(&p.config, &who).map_err(|r| Failed { error: r.into(), who: named.clone() })?;
    let (users2, config) = (users.clone(), p.config.clone());
    blocking("sign-in", move || {
        let (row, created) = user_for(&users2, &config, &who, mapped)?;
        let (token, signed) = users2.sign_in(&row, Method::Oidc)?;
        Ok::<_, SsoError>(Done { token, signed, created })
    })
    .await
    .map_err(|error| Failed { error, who: named })
}

/// The ID token checked with the provider's keys (fetched again once when it names a key not yet known).
async fn verified_claims(
    p: &Provider,
    token: &str,
    nonce: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, SsoError> {
    let (alg, kid) = id_token::header(token)?;
    let mut keys = p.keys(false).await?;
    if id_token::key_for(&keys, kid.as_deref(), alg).is_none() {
        keys = p.keys(true).await?;
    }
    let key = id_token::key_for(&keys, kid.as_deref(), alg).ok_or(IdTokenError::UnknownKey)?;
    let want = id_token::Expected { issuer: &p.config.issuer, client_id: &p.config.client_id, nonce, now: now_unix() };
    Ok(id_token::verify(token, key, alg, &want)?)
}

/// The user linked to the provider's user, or a new one linked to it. Blocking (the store).
fn user_for(
    users: &Users,
    config: &crate::config::OidcConfig,
    who: &Identity,
    mapped: Option<Role>,
) -> Result<(StoredUser, bool), SsoError> {
    let store = users.store();
    let now = now_unix();
    // With a role map the provider's groups decide the role at every sign-in (a user moved out of the admins'
    // group is an admin no more); without one the role is the admin's to set after the first sign-in.
    // The configuration checked the name: a role it does not know cannot be there, member is only a fallback.
    let default_role = Role::parse(&config.default_role).unwrap_or(Role::Member);
    let decided = (!config.role_map.is_empty()).then(|| mapped.unwrap_or(default_role));
    let linked = match store.find_identity(&config.issuer, &who.subject)? {
        Some(id) => store.find_user(&id)?.filter(|u| u.id == id),
        None => None,
    };
    let (mut row, created) = match linked {
        Some(row) => (row, false),
        None => {
            let role = decided.or(mapped).unwrap_or(default_role);
            let new = super::manage::NewUser {
                name: who.user_name(),
                role: role.as_str().into(),
                password: None,
                max_keys: None,
            };
            let row = super::manage::create(store, new, now).map_err(|e| match e {
                super::manage::UserError::NameTaken(n) => SsoError::NameTaken(n),
                super::manage::UserError::Invalid(_) => {
                    SsoError::Provider("the provider's user name cannot be a gateway user's name".into())
                }
                other => SsoError::Store(anyhow::anyhow!("{other}")),
            })?;
            store.link_identity(&config.issuer, &who.subject, &row.id, now)?;
            (row, true)
        }
    };
    if row.disabled_at.is_some() {
        return Err(SsoError::Disabled);
    }
    if let Some(role) = decided
        && row.role != role.as_str()
    {
        row.role = role.as_str().into();
        store.update_user(&row)?;
    }
    if created || decided.is_some() {
        users.reload()?;
    }
    Ok((row, created))
}
