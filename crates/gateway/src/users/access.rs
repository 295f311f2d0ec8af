//! Who may do what: every admin route and dashboard page is declared with one [`Action`] (table.rs), and [`decide`]
//! says, for a [`Role`] and an action, whether it is allowed, allowed on the caller's own things only, or refused.

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

/// What `role` may do on a route of `action` (`None`: a method its path does not serve, an admin's only).
pub fn decide_route(role: Role, action: Option<Action>) -> Decision {
    match (role, action) {
        (_, Some(a)) => decide(role, a),
        (Role::Admin, None) => Decision::Allow,
        (Role::Member | Role::Viewer, None) => Decision::Refuse,
    }
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
