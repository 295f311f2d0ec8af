//! The guard's one asynchronous path: a Codex CLI token (oauth/) that this instance's snapshot of the sessions
//! lacks, because another instance of a team issued it since this one's last re-read, is looked up in the store
//! before the request is answered (`Users::resolve_access`, users/unseen.rs, which bounds how often the store is
//! asked), so a token is accepted on every instance from the moment it is issued. Only such a request pays for the
//! boxed future and the service clone; every other one stays on the guard's synchronous path.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::Request;
use axum::response::Response;
use tower::Service;

use super::{Guard, Policy, Refusal};
use crate::users::Users;

/// The look-up and then the inner service's answer, or the refusal.
pub type LookUp = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Policy {
    /// The users and the presented token, when a refused token is worth asking the store for
    /// (`Users::worth_a_look_up`: well-formed, not missed there a moment ago). The token is copied only then.
    pub(super) fn unseen_token<B>(&self, req: &Request<B>) -> Option<(Arc<Users>, String)> {
        let users = self.users.as_ref()?;
        let token = self.presented_token(req)??;
        users.worth_a_look_up(token).then(|| (users.clone(), token.to_string()))
    }
}

impl<S> Guard<S> {
    /// Look `token` up, then admit `req` as its user (the role checked as on the synchronous path) or refuse it.
    pub(super) fn look_up<B>(&mut self, users: Arc<Users>, token: String, mut req: Request<B>) -> LookUp
    where
        S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
        S::Future: Send + 'static,
        B: Send + 'static,
    {
        // The service made ready by `poll_ready` goes with the request; a clone takes its place (tower's rule
        // for services called from a future).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Box::pin(async move {
            let admitted = match users.resolve_access(&token).await {
                Some(signed) => policy.caller_of(&signed, &req),
                None => Err(Refusal::TokenInvalid),
            };
            match admitted {
                Ok(caller) => {
                    req.extensions_mut().insert(caller);
                    inner.call(req).await
                }
                Err(refusal) => Ok(policy.refuse(refusal, &req)),
            }
        })
    }
}
