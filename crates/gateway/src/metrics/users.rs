//! Model calls and tokens per user (`codex_gateway_user_requests`, `codex_gateway_user_tokens`), from the user each
//! record names (`RequestRecord::user`, set from `keys::Caller::user`). A user is named by id (a name is often an
//! e-mail address: personal data), and only the first `[metrics] user_labels` users this instance sees get a label
//! of their own; every later one counts as `other`, so the label never has more values than the setting allows
//! however many users a team has (docs/operations.md). A user once labelled keeps the label until a restart.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// The label every user past the maximum shares.
const OTHER: &str = "other";

/// The `user` label (a user's tokens are also by `kind`).
type UserLabel = [(&'static str, String); 1];

pub(super) struct UserMetrics {
    requests: Family<UserLabel, Counter>,
    tokens: Family<(UserLabel, super::Label), Counter>,
    labels: Labels,
}

impl UserMetrics {
    pub(super) fn register(registry: &mut Registry, max: usize) -> UserMetrics {
        let requests = Family::<UserLabel, Counter>::default();
        registry.register(
            "user_requests",
            "Model calls made for a user (a key they own), by user id; users past [metrics] user_labels are `other`",
            requests.clone(),
        );
        let tokens = Family::<(UserLabel, super::Label), Counter>::default();
        registry.register("user_tokens", "Tokens the upstream reported for a user's requests, by kind", tokens.clone());
        UserMetrics { requests, tokens, labels: Labels::new(max) }
    }

    pub(super) fn record(&self, user: &str, u: &dialects::Usage) {
        let user = self.labels.of(user);
        self.requests.get_or_create(&[("user", user.to_string())]).inc();
        for (kind, n) in [("input", u.input_tokens), ("cached", u.cached_tokens), ("output", u.output_tokens)] {
            if n > 0 {
                self.tokens.get_or_create(&([("user", user.to_string())], [("kind", kind)])).inc_by(n);
            }
        }
    }
}

/// The users with a label of their own, at most `max` of them.
struct Labels {
    max: usize,
    named: Mutex<HashSet<Arc<str>>>,
}

impl Labels {
    fn new(max: usize) -> Labels {
        Labels { max, named: Mutex::new(HashSet::new()) }
    }

    /// `user`'s label: its id while there is room (or it has one already), else `other`.
    fn of(&self, user: &str) -> Arc<str> {
        let mut named = self.named.lock();
        if let Some(l) = named.get(user) {
            return l.clone();
        }
        if named.len() < self.max && user != OTHER {
            let l: Arc<str> = user.into();
            named.insert(l.clone());
            return l;
        }
        OTHER.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_label_never_has_more_values_than_the_maximum() {
        let labels = Labels::new(2);
        assert_eq!(&*labels.of("usr_a"), "usr_a");
        assert_eq!(&*labels.of("usr_b"), "usr_b");
        assert_eq!(&*labels.of("usr_c"), OTHER, "past the maximum");
        assert_eq!(&*labels.of("usr_a"), "usr_a", "a labelled user keeps it");
        let values: HashSet<String> = (0..100).map(|i| labels.of(&format!("usr_{i}")).to_string()).collect();
        assert!(values.len() <= 3, "{values:?}");
        assert_eq!(&*Labels::new(0).of("usr_a"), OTHER, "0: every user is `other`");
    }
}
