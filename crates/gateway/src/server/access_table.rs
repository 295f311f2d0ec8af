//! Every route of the admin API and the dashboard, as their tables declare them (`users::table::RouteTable`), with
//! the action each is declared with: what the access table test below holds, for every role, against a table
//! written out by hand, and what the integration tests (tests/it/users.rs) walk over HTTP.

use crate::users::table::RouteEntry;

/// Which surface a route is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Admin,
    Dashboard,
}

/// Every route: its surface and its entry, as declared.
pub fn entries() -> Vec<(Surface, RouteEntry)> {
    let admin = super::admin::table().entries().map(|e| (Surface::Admin, e.clone())).collect::<Vec<_>>();
    let dashboard = crate::dashboard::table().entries().map(|e| (Surface::Dashboard, e.clone())).collect::<Vec<_>>();
    admin.into_iter().chain(dashboard).collect()
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;
    use crate::users::Role;
    use crate::users::access::{Decision, decide};
    use crate::users::table::Audit;

    const A: Decision = Decision::Allow;
    const O: Decision = Decision::Own;
    const R: Decision = Decision::Refuse;

    /// Every route x every role: allowed, allowed on one's own things, refused.
    #[rustfmt::skip]
    const TABLE: &[(&str, &str, [Decision; 3])] = &[
        // method   path                                          admin member viewer
        ("GET",    "/admin/status",                               [A, R, A]),
        ("GET",    "/admin/forecast",                             [A, R, A]),
        ("GET",    "/admin/accounts",                             [A, R, A]),
        ("POST",   "/admin/accounts",                             [A, R, R]),
        ("GET",    "/admin/accounts/export",                      [A, R, R]),
        ("GET",    "/admin/accounts/{id}",                        [A, R, A]),
        ("DELETE", "/admin/accounts/{id}",                        [A, R, R]),
        ("POST",   "/admin/accounts/{id}/enable",                 [A, R, R]),
        ("POST",   "/admin/accounts/{id}/disable",                [A, R, R]),
        ("POST",   "/admin/accounts/{id}/label",                  [A, R, R]),
        ("POST",   "/admin/accounts/{id}/policy",                 [A, R, R]),
        ("POST",   "/admin/accounts/{id}/proxy",                  [A, R, R]),
        ("POST",   "/admin/accounts/{id}/refresh",                [A, R, R]),
        ("POST",   "/admin/accounts/{id}/check",                  [A, R, R]),
        ("DELETE", "/admin/accounts/{id}/cooldowns",              [A, R, R]),
        ("GET",    "/admin/reload",                               [A, R, A]),
        ("POST",   "/admin/reload",                               [A, R, R]),
        ("GET",    "/admin/usage",                                [A, O, A]),
        ("GET",    "/admin/requests",                             [A, O, A]),
        ("GET",    "/admin/keys",                                 [A, O, A]),
        ("POST",   "/admin/keys",                                 [A, O, R]),
        ("GET",    "/admin/keys/{id}",                            [A, O, A]),
        ("PATCH",  "/admin/keys/{id}",                            [A, R, R]),
        ("POST",   "/admin/keys/{id}/revoke",                     [A, O, R]),
        ("GET",    "/admin/conversations/held",                   [A, R, A]),
        ("DELETE", "/admin/conversations/{key}/hold",             [A, R, R]),
        ("DELETE", "/admin/accounts/{id}/holds",                  [A, R, R]),
        ("GET",    "/admin/audit",                                [A, R, A]),
        ("POST",   "/admin/sign-in",                              [A, A, A]),
        ("POST",   "/admin/sign-out",                             [A, A, A]),
        ("GET",    "/admin/me",                                   [A, A, A]),
        ("GET",    "/admin/users",                                [A, R, R]),
        ("POST",   "/admin/users",                                [A, R, R]),
        ("GET",    "/admin/users/{id}",                           [A, R, R]),
        ("PATCH",  "/admin/users/{id}",                           [A, R, R]),
        ("DELETE", "/admin/users/{id}",                           [A, R, R]),
        ("POST",   "/admin/users/{id}/password",                  [A, R, R]),
        ("POST",   "/admin/users/{id}/totp",                      [A, R, R]),
        ("DELETE", "/admin/users/{id}/totp",                      [A, R, R]),
        ("POST",   "/admin/users/{id}/unlock",                    [A, R, R]),
        ("GET",    "/dashboard",                                  [A, R, A]),
        ("GET",    "/dashboard/accounts",                         [A, R, A]),
        ("GET",    "/dashboard/keys",                             [A, O, A]),
        ("GET",    "/dashboard/usage",                            [A, O, A]),
        ("GET",    "/dashboard/requests",                         [A, O, A]),
        ("GET",    "/dashboard/setup",                            [A, A, A]),
        ("GET",    "/dashboard/settings",                         [A, R, R]),
        ("GET",    "/dashboard/audit",                            [A, R, A]),
        ("GET",    "/dashboard/users",                            [A, R, R]),
        ("GET",    "/dashboard/login",                            [A, A, A]),
        ("POST",   "/dashboard/login",                            [A, A, A]),
        ("GET",    "/dashboard/sso/start",                        [A, A, A]),
        ("GET",    "/dashboard/sso/callback",                     [A, A, A]),
        ("POST",   "/dashboard/logout",                           [A, A, A]),
        ("GET",    "/dashboard/assets/{name}",                    [A, A, A]),
        ("GET",    "/dashboard/api/overview",                     [A, R, A]),
        ("GET",    "/dashboard/api/accounts/export",              [A, R, R]),
        ("POST",   "/dashboard/api/accounts/add",                 [A, R, R]),
        ("POST",   "/dashboard/api/accounts/{id}/{action}",       [A, R, R]),
        ("POST",   "/dashboard/api/login/{flow}",                 [A, R, R]),
        ("GET",    "/dashboard/api/login/job/{job}",              [A, R, R]),
        ("POST",   "/dashboard/api/login/job/{job}/paste",        [A, R, R]),
        ("POST",   "/dashboard/api/settings",                     [A, R, R]),
        ("GET",    "/dashboard/api/usage.csv",                    [A, O, A]),
        ("GET",    "/dashboard/api/requests.csv",                 [A, O, A]),
        ("POST",   "/dashboard/api/keys",                         [A, O, R]),
        ("POST",   "/dashboard/api/keys/{id}",                    [A, R, R]),
        ("POST",   "/dashboard/api/keys/{id}/revoke",             [A, O, R]),
        ("POST",   "/dashboard/api/users",                        [A, R, R]),
        ("POST",   "/dashboard/api/users/{id}",                   [A, R, R]),
        ("POST",   "/dashboard/api/users/{id}/{action}",          [A, R, R]),
        ("GET",    "/dashboard/oauth/authorize",                  [A, A, R]),
        ("GET",    "/dashboard/oauth/device",                     [A, A, R]),
        ("POST",   "/dashboard/api/oauth/device",                 [A, A, R]),
        ("POST",   "/dashboard/oauth/token",                      [A, A, A]),
        ("POST",   "/dashboard/oauth/device/code",                [A, A, A]),
    ];

    /// The routers' routes and the table are the same set: a route declared without a line here (or a line for a
    /// route that went away) fails.
    #[test]
    fn every_route_of_the_routers_is_in_the_table() {
        let served = entries();
        for (_, e) in &served {
            let listed = TABLE.iter().any(|(m, p, _)| *m == e.method.as_str() && *p == e.path);
            assert!(listed, "{} {} is served but not in the table", e.method, e.path);
        }
        for (m, p, _) in TABLE {
            assert!(served.iter().any(|(_, e)| e.method.as_str() == *m && e.path == *p), "{m} {p} is not served");
        }
        assert_eq!(served.len(), TABLE.len(), "a route is declared twice");
    }

    /// Every route x every role decides as the table says, on the action the route is declared with.
    #[test]
    fn every_route_decides_for_every_role_as_the_table_says() {
        for (_, e) in entries() {
            let Some((_, _, want)) = TABLE.iter().find(|(m, p, _)| *m == e.method.as_str() && *p == e.path) else {
                continue;
            };
            for (i, role) in Role::ALL.iter().enumerate() {
                assert_eq!(decide(*role, e.action), want[i], "{role:?} {} {}", e.method, e.path);
            }
        }
    }

    /// The audit names the routes are declared with: a read is never recorded, a change always is, and the
    /// dashboard's actions in a path get the admin API's names.
    #[test]
    fn routes_are_declared_with_their_audit_names() {
        let name = |surface: Surface, method: Method, path: &str, param: &str| {
            let (_, e) = entries().into_iter().find(|(s, e)| *s == surface && e.method == method && e.path == path)?;
            match e.audit {
                Audit::Read => None,
                Audit::Named(n) => Some(n.to_string()),
                Audit::ByParam(_, name_of) => Some(name_of(param)),
                Audit::ByHandler => Some("by handler".into()),
            }
        };
        for (_, e) in entries() {
            assert_eq!(matches!(e.audit, Audit::Read), e.method == Method::GET, "{} {}", e.method, e.path);
        }
        let (admin, dash) = (Surface::Admin, Surface::Dashboard);
        let disable = name(admin, Method::POST, "/admin/accounts/{id}/disable", "");
        assert_eq!(disable.as_deref(), Some("account.disable"));
        assert_eq!(name(admin, Method::PATCH, "/admin/keys/{id}", "").as_deref(), Some("key.update"));
        let act = "/dashboard/api/accounts/{id}/{action}";
        assert_eq!(name(dash, Method::POST, act, "disable").as_deref(), Some("account.disable"));
        assert_eq!(name(dash, Method::POST, act, "<x>").as_deref(), Some("account.unknown_action"));
        let login = name(dash, Method::POST, "/dashboard/api/login/{flow}", "device");
        assert_eq!(login.as_deref(), Some("account.login_start.device"));
        assert_eq!(name(dash, Method::POST, "/dashboard/login", "").as_deref(), Some("dashboard.login"));
        assert_eq!(name(dash, Method::GET, "/dashboard/audit", ""), None);
    }
}
