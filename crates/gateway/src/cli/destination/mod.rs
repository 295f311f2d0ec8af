//! Where the account, key and usage commands act: a running gateway's admin API ([`Live`]) when one answers
//! (`service::reach`), so its pool and key registry see a change at once and only it refreshes tokens; else the
//! store itself ([`Local`]). Each command's operations are a trait below with one impl over each.

use serde_json::{Map, Value};

use crate::accounts::manage::ImportSource;
use crate::config::Config;
use crate::usage::query::GroupBy;

mod live;
mod local;

pub(crate) use live::Live;
pub(crate) use local::{Local, audit};

pub(crate) enum Target<'a> {
    Live(Live),
    Local(Local<'a>),
}

impl<'a> Target<'a> {
    /// The running gateway when one answers with the admin credential, else the store.
    pub(crate) async fn find(config: &'a Config) -> Target<'a> {
        match Live::find(config).await {
            Some(live) => Target::Live(live),
            None => Target::Local(Local::new(config)),
        }
    }

    /// [`Target::find`], but a gateway that answers and refuses the admin key is an error, not a reason to write
    /// the store behind its back (its registry would not see the change).
    pub(crate) async fn find_or_refuse(config: &'a Config) -> anyhow::Result<Target<'a>> {
        if let Some(live) = Live::find(config).await {
            return Ok(Target::Live(live));
        }
        let addr = super::service::reach(config).base;
        if super::service::http_get(&addr, "/health", None).await.is_ok() {
            anyhow::bail!(
                "a gateway is running on {addr} but refused the admin key: set CODEX_GATEWAY_ADMIN_KEY (or \
                 CODEX_GATEWAY_API_KEY when no admin key is set) to the gateway's, so the change applies at once"
            );
        }
        Ok(Target::Local(Local::new(config)))
    }
}

/// An account as the commands name it: id, label, email.
pub(crate) type AccountName = [Option<String>; 3];

/// An account an import added: who (its email, else its label), its kind, its id.
pub(crate) struct Imported {
    pub(crate) who: String,
    pub(crate) kind: String,
    pub(crate) id: String,
}

/// What `accounts ...` does (cli/accounts.rs).
pub(crate) trait AccountsTarget {
    async fn account_names(&self) -> anyhow::Result<Vec<AccountName>>;
    /// Every account's summary (`Account::summary`: plan, status, quota, cooldowns, last use).
    async fn summaries(&self) -> anyhow::Result<Vec<Value>>;
    async fn import(&self, source: ImportSource, label: Option<String>) -> anyhow::Result<Vec<Imported>>;
    async fn remove(&self, id: &str) -> anyhow::Result<()>;
    /// The account's status after the change.
    async fn set_enabled(&self, id: &str, enabled: bool) -> anyhow::Result<String>;
    /// The label kept (trimmed; `None` for none), checked as `accounts::manage::checked_label` says.
    async fn set_label(&self, id: &str, label: Option<&str>) -> anyhow::Result<Option<String>>;
    /// The owner's policy, as `planner::Policy::as_text` writes it (checked by the caller).
    async fn set_policy(&self, id: &str, policy: &str) -> anyhow::Result<()>;
    /// The proxy kept (`None`: the global setting), refused unless the HTTP client can use it.
    async fn set_proxy(&self, id: &str, url: Option<&str>) -> anyhow::Result<Option<String>>;
    async fn refresh(&self, id: &str) -> anyhow::Result<()>;
    /// The check of every account (`None`), or of one.
    async fn check(&self, id: Option<&str>) -> anyhow::Result<Vec<Value>>;
}

/// A created key as the name lookups see it.
pub(crate) struct KeyName {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) revoked: bool,
}

/// What `keys ...` does (cli/keys.rs), each key as the admin API shows it (`keys::stored_with_usage`).
pub(crate) trait KeysTarget {
    async fn keys(&self) -> anyhow::Result<Vec<Value>>;
    async fn key_names(&self) -> anyhow::Result<Vec<KeyName>>;
    async fn key(&self, id: &str) -> anyhow::Result<Value>;
    /// The new key with its `secret`, from the admin API's JSON for a new key.
    async fn create_key(&self, body: Map<String, Value>) -> anyhow::Result<Value>;
    /// The key after the change, from the admin API's JSON for a change.
    async fn update_key(&self, id: &str, body: Map<String, Value>) -> anyhow::Result<Value>;
    async fn revoke_key(&self, id: &str) -> anyhow::Result<()>;
}

/// What `usage` reads (cli/usage.rs).
pub(crate) trait UsageTarget {
    /// The usage report (`/admin/usage`'s answer) from `from` to `to` (unix milliseconds), by day, grouped `by`,
    /// of the requests made for `user` (a user's id or name) when one is given.
    async fn usage(&self, from: i64, to: i64, by: GroupBy, user: Option<&str>) -> anyhow::Result<Value>;
    /// Each user's name by id (a report grouped by user shows them beside the ids).
    async fn user_names(&self) -> anyhow::Result<Vec<(String, String)>>;
}
