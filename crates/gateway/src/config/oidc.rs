//! `[dashboard.oidc]`: single sign-on to the dashboard with an OpenID Connect provider (docs/dashboard.md,
//! "Single sign-on"): the raw table, and the checked [`OidcConfig`], whose client secret `Debug` never shows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::Env;

/// The environment variable that holds the client secret (wins over `client_secret` and `client_secret_file`).
pub const CLIENT_SECRET_ENV: &str = "CODEX_GATEWAY_OIDC_CLIENT_SECRET";

/// `[dashboard.oidc]` in the file.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub public_url: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub display_name: Option<String>,
    pub default_role: Option<String>,
    pub roles_claim: Option<String>,
    pub role_map: Option<BTreeMap<String, String>>,
    pub allowed_domains: Option<Vec<String>>,
    pub allowed_groups: Option<Vec<String>>,
}

/// The checked `[dashboard.oidc]`.
#[derive(Clone, PartialEq)]
pub struct OidcConfig {
    /// As written (a trailing slash included, when there is one).
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE only, `token_endpoint_auth_method=none`).
    pub client_secret: Option<String>,
    /// Without a trailing slash.
    pub public_url: Option<String>,
    /// `openid` first, then the configured ones.
    pub scopes: Vec<String>,
    pub display_name: String,
    /// The role of a user created at their first sign-in when no group maps to one.
    pub default_role: String,
    pub roles_claim: String,
    /// Group -> role; the highest role of the user's groups wins, at every sign-in.
    pub role_map: BTreeMap<String, String>,
    /// Only users whose verified e-mail address is in one of these (lower case, without `@`) may sign in.
    pub allowed_domains: Vec<String>,
    pub allowed_groups: Vec<String>,
}

impl std::fmt::Debug for OidcConfig {
    // Whether there is a client secret, never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<set>"))
            .field("public_url", &self.public_url)
            .field("scopes", &self.scopes)
            .field("default_role", &self.default_role)
            .field("roles_claim", &self.roles_claim)
            .field("allowed_domains", &self.allowed_domains)
            .field("allowed_groups", &self.allowed_groups)
            .finish()
    }
}

/// An `http(s)` URL without query or fragment, its trailing slash dropped. Plain `http` only for a loopback
/// host: anywhere else the code and tokens would cross the network in the clear.
fn base_url(what: &str, raw: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(raw.trim()).with_context(|| format!("[dashboard.oidc] {what} is not a URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => bail!("[dashboard.oidc] {what} must be https (plain http only on a loopback address)"),
        other => bail!("[dashboard.oidc] {what} has scheme {other}; use https"),
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        bail!("[dashboard.oidc] {what} must have no query, fragment or credentials");
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// `s` without its surrounding white space, unless that leaves nothing.
fn trimmed(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The roles of users/access.rs, by name (the configuration names them; the users' layer has the type).
const ROLES: [&str; 3] = ["admin", "member", "viewer"];

fn role(what: &str, name: &str) -> anyhow::Result<String> {
    let name = name.trim();
    match ROLES.contains(&name) {
        true => Ok(name.to_string()),
        false => bail!("[dashboard.oidc] {what} = {name:?} is not a role (admin, member or viewer)"),
    }
}

impl OidcConfig {
    /// `None` when the table is absent; an error for a table without an issuer or client id, or with a bad value.
    pub(super) fn resolve(raw: Option<RawOidc>, env: &dyn Env) -> anyhow::Result<Option<OidcConfig>> {
        let Some(raw) = raw else { return Ok(None) };
        // Kept as written: the discovery document's `issuer` and every ID token's `iss` must equal it exactly.
        let issuer = raw.issuer.as_deref().unwrap_or_default().trim().to_string();
        base_url("issuer", &issuer)?;
        let Some(client_id) = trimmed(raw.client_id) else { bail!("[dashboard.oidc] needs client_id") };
        let client_secret = trimmed(match (env.get(CLIENT_SECRET_ENV), raw.client_secret, raw.client_secret_file) {
            (Some(s), _, _) => Some(s),
            (None, Some(_), Some(_)) => bail!("[dashboard.oidc] has both client_secret and client_secret_file"),
            (None, Some(s), None) => Some(s),
            (None, None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("[dashboard.oidc] cannot read client_secret_file {}", path.display()))?,
            ),
            (None, None, None) => None,
        });
        let public_url = raw.public_url.as_deref().map(|u| base_url("public_url", u)).transpose()?;
        let mut scopes = vec!["openid".to_string()];
        for s in raw.scopes.unwrap_or_else(|| vec!["email".into(), "profile".into()]) {
            let s = s.trim().to_string();
            if s.is_empty() || s.contains(char::is_whitespace) {
                bail!("[dashboard.oidc] scopes: {s:?} is not a scope");
            }
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        let role_map = (raw.role_map.unwrap_or_default().into_iter())
            .map(|(group, r)| role(&format!("role_map.{group}"), &r).map(|r| (group, r)))
            .collect::<anyhow::Result<_>>()?;
        let allowed_domains = (raw.allowed_domains.unwrap_or_default().iter())
            .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        Ok(Some(OidcConfig {
            issuer,
            client_id,
            client_secret,
            public_url,
            scopes,
            display_name: trimmed(raw.display_name).unwrap_or_else(|| "single sign-on".into()),
            default_role: role("default_role", raw.default_role.as_deref().unwrap_or("member"))?,
            roles_claim: raw.roles_claim.unwrap_or_else(|| "groups".into()),
            role_map,
            allowed_domains,
            allowed_groups: raw.allowed_groups.unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(toml_text: &str, env: &HashMap<String, String>) -> anyhow::Result<Option<OidcConfig>> {
        let raw: RawOidc = toml::from_str(toml_text)?;
        OidcConfig::resolve(Some(raw), env)
    }

    #[test]
    fn a_table_is_checked_and_defaulted() -> anyhow::Result<()> {
        let env = HashMap::new();
        let c = parse("issuer = \"https://idp.example.com/\"\nclient_id = \"gw\"", &env)?
            .ok_or_else(|| anyhow::anyhow!("no config"))?;
        assert_eq!(c.issuer, "https://idp.example.com/");
        assert_eq!(c.scopes, ["openid", "email", "profile"]);
        assert_eq!(c.default_role, "member");
        assert_eq!(c.roles_claim, "groups");
        assert_eq!(c.client_secret, None);
        assert!(parse("issuer = \"http://idp.example.com\"\nclient_id = \"gw\"", &env).is_err(), "plain http");
        assert!(parse("issuer = \"https://idp.example.com\"", &env).is_err(), "no client id");
        assert!(parse("issuer = \"https://i\"\nclient_id = \"gw\"\ndefault_role = \"root\"", &env).is_err());
        assert!(parse("issuer = \"https://i\"\nclient_id = \"gw\"\nrole_map = { ops = \"boss\" }", &env).is_err());
        Ok(())
    }

    #[test]
    fn the_secret_comes_from_the_environment_first_and_is_never_shown() -> anyhow::Result<()> {
        let env: HashMap<String, String> = [(CLIENT_SECRET_ENV.to_string(), "from-env".to_string())].into();
        let c = parse("issuer = \"http://127.0.0.1:9\"\nclient_id = \"gw\"\nclient_secret = \"in-file\"", &env)?
            .ok_or_else(|| anyhow::anyhow!("no config"))?;
        assert_eq!(c.client_secret.as_deref(), Some("from-env"));
        assert!(!format!("{c:?}").contains("from-env"));
        Ok(())
    }
}
