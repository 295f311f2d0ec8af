//! The one declaration of each admin and dashboard route: method, path, handler, the [`Action`] the roles are
//! decided on and its audit name ([`Audit`]), registered together so that none goes without the others. The routers
//! are built from it: each route carries its [`RouteEntry`] as a request extension, which the access layers
//! (server/admin/access.rs, dashboard/access.rs) and the audit layer (trail.rs) read, so no path is matched twice;
//! the access table test (server/access_table.rs) walks the same entries.

use std::collections::HashSet;
use std::convert::Infallible;

use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, Route, any, delete, get, patch, post};
use axum::{Extension, Router};
use tower::{Layer, Service};

use super::access::Action;

/// The audit trail's name of a route (docs/operations.md, "Audit trail").
#[derive(Debug, Clone, Copy)]
pub enum Audit {
    /// A read: never recorded (every GET).
    Read,
    /// A change recorded under this name.
    Named(&'static str),
    /// A change named after its path's parameter (`param`, then the name its value gives; a value that is no
    /// action of the route is named as such, never after the caller's text).
    ByParam(&'static str, fn(&str) -> String),
    /// A change its handler names (its `audit::Note`), by its method and path when it does not.
    ByHandler,
}

impl From<&'static str> for Audit {
    fn from(name: &'static str) -> Audit {
        Audit::Named(name)
    }
}

/// What a route is declared with, on its requests as an extension.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    pub method: Method,
    pub path: &'static str,
    pub action: Action,
    pub audit: Audit,
    /// The dashboard's main navigation: its id (the page's template) and label.
    pub nav: Option<(&'static str, &'static str)>,
}

/// The routes, declared one by one.
pub struct RouteTable<S> {
    routes: Vec<(RouteEntry, MethodRouter<S>)>,
}

impl<S: Clone + Send + Sync + 'static> Default for RouteTable<S> {
    fn default() -> Self {
        RouteTable { routes: Vec::new() }
    }
}

impl<S: Clone + Send + Sync + 'static> RouteTable<S> {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(mut self, method: Method, path: &'static str, action: Action, audit: Audit, r: MethodRouter<S>) -> Self {
        self.routes.push((RouteEntry { method, path, action, audit, nav: None }, r));
        self
    }

    /// GET (and HEAD, as axum serves it): a read, never recorded.
    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &'static str, action: Action, h: H) -> Self {
        self.add(Method::GET, path, action, Audit::Read, get(h))
    }

    /// A GET that is a page of the dashboard's main navigation: its id (the page's template) and label.
    pub fn page<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        action: Action,
        nav: (&'static str, &'static str),
        h: H,
    ) -> Self {
        let mut table = self.get(path, action, h);
        table.routes.last_mut().into_iter().for_each(|(entry, _)| entry.nav = Some(nav));
        table
    }

    pub fn post<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        action: Action,
        audit: impl Into<Audit>,
        h: H,
    ) -> Self {
        self.add(Method::POST, path, action, audit.into(), post(h))
    }

    pub fn patch<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        action: Action,
        audit: &'static str,
        h: H,
    ) -> Self {
        self.add(Method::PATCH, path, action, Audit::Named(audit), patch(h))
    }

    pub fn delete<H: Handler<T, S>, T: 'static>(
        self,
        path: &'static str,
        action: Action,
        audit: &'static str,
        h: H,
    ) -> Self {
        self.add(Method::DELETE, path, action, Audit::Named(audit), delete(h))
    }

    pub fn merge(mut self, other: RouteTable<S>) -> Self {
        self.routes.extend(other.routes);
        self
    }

    /// Every route declared, in order.
    pub fn entries(&self) -> impl Iterator<Item = &RouteEntry> {
        self.routes.iter().map(|(entry, _)| entry)
    }

    /// The router, each route behind `layers` (the access and audit layers) with its entry on its requests. A
    /// method a path does not serve (405) passes the same layers without an entry: refused to all but an admin,
    /// and recorded by its method and path.
    pub fn into_router<L>(self, layers: L) -> Router<S>
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        let mut paths = HashSet::new();
        let mut router = Router::new();
        for (entry, r) in self.routes {
            let path = entry.path;
            let mut r = r.route_layer(layers.clone()).route_layer(Extension(entry));
            if paths.insert(path) {
                let not_allowed: MethodRouter = any(|| async { StatusCode::METHOD_NOT_ALLOWED }).layer(layers.clone());
                r = r.fallback_service(not_allowed);
            }
            router = router.route(path, r);
        }
        router
    }
}
