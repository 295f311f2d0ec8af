//! Who the provider says signed in ([`Identity`]) and whether `[dashboard.oidc]` lets them in, with the role their
//! groups map to. Pure: the sign-in (mod.rs) acts on the answer.

use serde_json::{Map, Value};

use crate::config::OidcConfig;
use crate::users::Role;

/// The provider's user, as far as the gateway cares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    /// `None`: the provider does not say (many do not).
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    /// The groups the roles claim lists.
    pub groups: Vec<String>,
}

/// Why `[dashboard.oidc]` keeps a provider's user out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No verified address in an allowed e-mail domain.
    Domain,
    /// In no allowed group.
    Group,
}

fn text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// A claim that lists strings: an array, or one string (some providers send a single group so).
fn list(claims: &Map<String, Value>, name: &str) -> Option<Vec<String>> {
    match claims.get(name)? {
        Value::Array(items) => Some(items.iter().filter_map(Value::as_str).map(str::to_string).collect()),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

impl Identity {
    /// Read the claims; `roles_claim` names the groups' claim.
    pub fn from_claims(claims: &Map<String, Value>, roles_claim: &str) -> Identity {
        Identity {
            subject: text(claims, "sub").unwrap_or_default(),
            email: text(claims, "email"),
            email_verified: match claims.get("email_verified") {
                Some(Value::Bool(b)) => Some(*b),
                // Some providers send it as a string.
                Some(Value::String(s)) => Some(s == "true"),
                _ => None,
            },
            name: text(claims, "name"),
            preferred_username: text(claims, "preferred_username"),
            groups: list(claims, roles_claim).unwrap_or_default(),
        }
    }

    /// Whether the claims lack what the userinfo endpoint may add (an e-mail address, the groups).
    pub fn lacks(claims: &Map<String, Value>, roles_claim: &str) -> bool {
        !claims.contains_key("email") || !claims.contains_key(roles_claim)
    }

    /// The name of a user made at the first sign-in: the e-mail address, else the provider's, else the subject's.
    pub fn user_name(&self) -> String {
        let usable = |s: &&String| !s.starts_with("usr_") && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        self.email
            .as_ref()
            .filter(usable)
            .or(self.preferred_username.as_ref().filter(usable))
            .cloned()
            .unwrap_or_else(|| format!("sso-{}", &crate::users::sha256_hex(&self.subject)[..12]))
    }
}

/// Whether the user may sign in, and the highest role their groups map to (`None`: no group maps).
pub fn admit(config: &OidcConfig, who: &Identity) -> Result<Option<Role>, Refusal> {
    if !config.allowed_domains.is_empty() {
        // An address the provider says it did not verify proves nothing about the domain.
        let domain = who
            .email
            .as_deref()
            .filter(|_| who.email_verified != Some(false))
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        if !domain.is_some_and(|d| config.allowed_domains.contains(&d)) {
            return Err(Refusal::Domain);
        }
    }
    if !config.allowed_groups.is_empty() && !who.groups.iter().any(|g| config.allowed_groups.contains(g)) {
        return Err(Refusal::Group);
    }
    let mapped = who.groups.iter().filter_map(|g| config.role_map.get(g)).filter_map(|r| Role::parse(r));
    // The highest wins: `Role::ALL` lists them highest first.
    Ok(mapped.min_by_key(|r| Role::ALL.iter().position(|a| a == r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(extra: &str) -> OidcConfig {
        let text = format!("[dashboard.oidc]\nissuer = \"https://idp.example.test\"\nclient_id = \"gw\"\n{extra}");
        let raw: crate::config::RawConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let env = std::collections::HashMap::<String, String>::new();
        let c = crate::config::Config::resolve(raw, &crate::config::Overrides::default(), &env)
            .unwrap_or_else(|e| panic!("{e:#}"));
        c.dashboard.oidc.unwrap_or_else(|| panic!("no oidc"))
    }

    fn who(email: &str, groups: &[&str]) -> Identity {
        let claims = json!({"sub": "s1", "email": email, "team": groups});
        Identity::from_claims(claims.as_object().unwrap_or(&Map::new()), "team")
    }

    #[test]
    fn the_highest_mapped_role_wins() {
        let c = config("role_map = { ops = \"admin\", staff = \"member\", audit = \"viewer\" }");
        assert_eq!(admit(&c, &who("a@x.com", &["audit", "ops", "staff"])), Ok(Some(Role::Admin)));
        assert_eq!(admit(&c, &who("a@x.com", &["audit"])), Ok(Some(Role::Viewer)));
        assert_eq!(admit(&c, &who("a@x.com", &["other"])), Ok(None));
    }

    #[test]
    fn domains_and_groups_restrict_sign_in() {
        let c = config("allowed_domains = [\"@Example.com\"]\nallowed_groups = [\"staff\"]");
        assert_eq!(admit(&c, &who("ana@EXAMPLE.com", &["staff"])), Ok(None));
        assert_eq!(admit(&c, &who("ana@evil.com", &["staff"])), Err(Refusal::Domain));
        assert_eq!(admit(&c, &who("ana@example.com.evil.com", &["staff"])), Err(Refusal::Domain));
        assert_eq!(admit(&c, &who("ana@example.com", &["guests"])), Err(Refusal::Group));
        let mut unverified = who("ana@example.com", &["staff"]);
        unverified.email_verified = Some(false);
        assert_eq!(admit(&c, &unverified), Err(Refusal::Domain));
    }

    #[test]
    fn a_user_name_comes_from_the_email_then_the_login_then_the_subject() {
        assert_eq!(who("ana@example.com", &[]).user_name(), "ana@example.com");
        let mut w = Identity { subject: "s1".into(), preferred_username: Some("ana".into()), ..Identity::default() };
        assert_eq!(w.user_name(), "ana");
        w.preferred_username = Some("usr_0123".into());
        assert!(w.user_name().starts_with("sso-"), "{}", w.user_name());
    }
}
