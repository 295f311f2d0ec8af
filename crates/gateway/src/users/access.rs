//! Who may do what: every admin route and dashboard page is one [`Action`], and [`decide`] says, for a [`Role`] and
//! an action, whether it is allowed, allowed on the caller's own things only, or refused.

use axum::http::Method;

/// A person's role (`users.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, as the admin key.
    Admin,
    /// Their own keys and usage, the Setup page.
    Member,
    /// The read-only pages.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Member, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    /// The role a stored or given string names; anything else is `None`, never a guess.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What a route does, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Needs nobody: the login page, its assets, the sign-in call.
    Public,
    /// The caller's own session: who am I, sign out.
    OwnSession,
    /// Pool health: the status, the forecast, the Overview.
    Overview,
    AccountsRead,
    /// Add, remove, enable, disable, label, policy, proxy, refresh, check, cooldowns, holds, logins.
    AccountsWrite,
    /// The accounts' export (with secrets when asked).
    AccountsExport,
    /// The last reload's report.
    ReloadRead,
    Reload,
    UsageRead,
    RequestsRead,
    KeysRead,
    /// Create and revoke keys.
    KeysWrite,
    /// Change a key's name, models and limits, suspend or lift.
    KeysUpdate,
    ConversationsRead,
    ConversationsWrite,
    AuditRead,
    UsersRead,
    UsersWrite,
    /// The Setup page's client snippets.
    Setup,
    SettingsRead,
    SettingsWrite,
    /// Use the models with a user's own credential: the model routes with a Codex CLI token, and the pages that
    /// give the CLI one (oauth/).
    Models,
    /// Read `/metrics` with a session (server/scrape.rs): its per-user series name every user.
    Metrics,
}

/// What [`decide`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Allowed on the caller's own things only (their keys, their usage): the handler narrows what it reads and
    /// refuses what is not theirs.
    Own,
    Refuse,
}

/// The permission table.
pub fn decide(role: Role, action: Action) -> Decision {
    use Action::*;
    use Decision::*;
    match (role, action) {
        (_, Public | OwnSession) => Allow,
        (Role::Admin, _) => Allow,
        (Role::Member, Setup | Models) => Allow,
        (Role::Member, KeysRead | KeysWrite | UsageRead | RequestsRead) => Own,
        (
            Role::Member,
            Overview | AccountsRead | AccountsWrite | AccountsExport | ReloadRead | Reload | KeysUpdate
            | ConversationsRead | ConversationsWrite | AuditRead | UsersRead | UsersWrite | SettingsRead
            | SettingsWrite | Metrics,
        ) => Refuse,
        (
            Role::Viewer,
            Overview | AccountsRead | ReloadRead | UsageRead | RequestsRead | KeysRead | ConversationsRead | AuditRead
            | Setup,
        ) => Allow,
        (
            Role::Viewer,
            AccountsWrite | AccountsExport | Reload | KeysWrite | KeysUpdate | ConversationsWrite | UsersRead
            | UsersWrite | SettingsRead | SettingsWrite | Models | Metrics,
        ) => Refuse,
    }
}

/// The action of an admin route (`route` as the router matched it); `None` for a route not in the table,
/// which the layer refuses to everyone but an admin.
pub fn admin_action(method: &Method, route: &str) -> Option<Action> {
    use Action::*;
    let get = *method == Method::GET || *method == Method::HEAD;
    Some(match (get, method.as_str(), route) {
        (true, _, "/admin/status" | "/admin/forecast") => Overview,
        (true, _, "/admin/accounts" | "/admin/accounts/{id}") => AccountsRead,
        (true, _, "/admin/accounts/export") => AccountsExport,
        (false, "POST", "/admin/accounts") | (false, "DELETE", "/admin/accounts/{id}") => AccountsWrite,
        (
            false,
            "POST",
            "/admin/accounts/{id}/enable"
            | "/admin/accounts/{id}/disable"
            | "/admin/accounts/{id}/label"
            | "/admin/accounts/{id}/policy"
            | "/admin/accounts/{id}/proxy"
            | "/admin/accounts/{id}/refresh"
            | "/admin/accounts/{id}/check",
        ) => AccountsWrite,
        (false, "DELETE", "/admin/accounts/{id}/cooldowns" | "/admin/accounts/{id}/holds") => AccountsWrite,
        (true, _, "/admin/reload") => ReloadRead,
        (false, "POST", "/admin/reload") => Reload,
        (true, _, "/admin/usage") => UsageRead,
        (true, _, "/admin/requests") => RequestsRead,
        (true, _, "/admin/keys" | "/admin/keys/{id}") => KeysRead,
        (false, "POST", "/admin/keys" | "/admin/keys/{id}/revoke") => KeysWrite,
        (false, "PATCH", "/admin/keys/{id}") => KeysUpdate,
        (true, _, "/admin/conversations/held") => ConversationsRead,
        (false, "DELETE", "/admin/conversations/{key}/hold") => ConversationsWrite,
        (true, _, "/admin/audit") => AuditRead,
        (true, _, "/admin/users" | "/admin/users/{id}") => UsersRead,
        (
            false,
            "POST",
            "/admin/users" | "/admin/users/{id}/password" | "/admin/users/{id}/totp" | "/admin/users/{id}/unlock",
        ) => UsersWrite,
        (false, "PATCH" | "DELETE", "/admin/users/{id}") | (false, "DELETE", "/admin/users/{id}/totp") => UsersWrite,
        (false, "POST", "/admin/sign-in") => Public,
        (false, "POST", "/admin/sign-out") | (true, _, "/admin/me") => OwnSession,
        _ => return None,
    })
}

/// The action of a dashboard route; `None` for a route not in the table (refused to everyone but an admin).
pub fn dashboard_action(method: &Method, route: &str) -> Option<Action> {
    use Action::*;
    let get = *method == Method::GET || *method == Method::HEAD;
    Some(match (get, route) {
        (true, "/dashboard" | "/dashboard/api/overview") => Overview,
        (true, "/dashboard/accounts") => AccountsRead,
        (true, "/dashboard/api/accounts/export") => AccountsExport,
        (
            false,
            "/dashboard/api/accounts/add"
            | "/dashboard/api/accounts/{id}/{action}"
            | "/dashboard/api/login/{flow}"
            | "/dashboard/api/login/job/{job}/paste",
        ) => AccountsWrite,
        (true, "/dashboard/api/login/job/{job}") => AccountsWrite,
        (true, "/dashboard/keys") => KeysRead,
        (false, "/dashboard/api/keys" | "/dashboard/api/keys/{id}/revoke") => KeysWrite,
        (false, "/dashboard/api/keys/{id}") => KeysUpdate,
        (true, "/dashboard/usage" | "/dashboard/api/usage.csv") => UsageRead,
        (true, "/dashboard/requests" | "/dashboard/api/requests.csv") => RequestsRead,
        (true, "/dashboard/setup") => Setup,
        (true, "/dashboard/settings") => SettingsRead,
        (false, "/dashboard/api/settings") => SettingsWrite,
        (true, "/dashboard/audit") => AuditRead,
        (true, "/dashboard/users") => UsersRead,
        (false, "/dashboard/api/users" | "/dashboard/api/users/{id}" | "/dashboard/api/users/{id}/{action}") => {
            UsersWrite
        }
        (_, "/dashboard/login" | "/dashboard/assets/{name}") => Public,
        // Single sign-on: its start and the provider's answer need no session (dashboard/sso.rs).
        (true, "/dashboard/sso/start" | "/dashboard/sso/callback") => Public,
        // The Codex CLI's sign-in (oauth/): its token and device endpoints answer the CLI, which has no session.
        (false, "/dashboard/oauth/token" | "/dashboard/oauth/device/code") => Public,
        (true, "/dashboard/oauth/authorize" | "/dashboard/oauth/device") | (false, "/dashboard/api/oauth/device") => {
            Models
        }
        (false, "/dashboard/logout") => OwnSession,
        _ => return None,
    })
}

/// Where a role lands after signing in: the first page it may see.
pub fn home(role: Role) -> &'static str {
    match decide(role, Action::Overview) {
        Decision::Allow | Decision::Own => "/dashboard",
        Decision::Refuse => "/dashboard/keys",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every action for every role, written out: a change to the table shows here.
    #[test]
    fn the_role_table() {
        use Action::*;
        use Decision::*;
        #[rustfmt::skip]
        let table: &[(Action, Decision, Decision, Decision)] = &[
            // action             admin  member  viewer
            (Public,              Allow, Allow,  Allow),
            (OwnSession,          Allow, Allow,  Allow),
            (Overview,            Allow, Refuse, Allow),
            (AccountsRead,        Allow, Refuse, Allow),
            (AccountsWrite,       Allow, Refuse, Refuse),
            (AccountsExport,      Allow, Refuse, Refuse),
            (ReloadRead,          Allow, Refuse, Allow),
            (Reload,              Allow, Refuse, Refuse),
            (UsageRead,           Allow, Own,    Allow),
            (RequestsRead,        Allow, Own,    Allow),
            (KeysRead,            Allow, Own,    Allow),
            (KeysWrite,           Allow, Own,    Refuse),
            (KeysUpdate,          Allow, Refuse, Refuse),
            (ConversationsRead,   Allow, Refuse, Allow),
            (ConversationsWrite,  Allow, Refuse, Refuse),
            (AuditRead,           Allow, Refuse, Allow),
            (UsersRead,           Allow, Refuse, Refuse),
            (UsersWrite,          Allow, Refuse, Refuse),
            (Setup,               Allow, Allow,  Allow),
            (SettingsRead,        Allow, Refuse, Refuse),
            (SettingsWrite,       Allow, Refuse, Refuse),
            (Models,              Allow, Allow,  Refuse),
            (Metrics,             Allow, Refuse, Refuse),
        ];
        for &(action, admin, member, viewer) in table {
            assert_eq!(decide(Role::Admin, action), admin, "admin {action:?}");
            assert_eq!(decide(Role::Member, action), member, "member {action:?}");
            assert_eq!(decide(Role::Viewer, action), viewer, "viewer {action:?}");
        }
        assert_eq!(table.len(), 23, "every action is in the table");
    }

    #[test]
    fn roles_read_back_and_nothing_else_is_a_role() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse("owner"), None);
    }

    #[test]
    fn members_land_on_their_keys() {
        assert_eq!(home(Role::Member), "/dashboard/keys");
        assert_eq!(home(Role::Viewer), "/dashboard");
    }
}
