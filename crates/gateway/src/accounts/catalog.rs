//! An account's model catalog as the pool keeps it, and the pool as the gateway-wide catalog's source of
//! accounts (`crate::catalog::CatalogSource`). Fetching and caching are the pool's (`upkeep.rs`:
//! `fetch_catalog_once`, `refresh_catalog`, the upkeep's fetches spread over its period).

use std::sync::Arc;
use std::time::Instant;

use super::Pool;
use crate::catalog::{CatalogSource, ModelEntry, Offer};
use crate::store::AccountKind;

/// The models an account's plan serves, as fetched from the upstream catalog (parsed once, when fetched).
#[derive(Debug, Clone)]
pub struct AccountCatalog {
    pub fetched: Instant,
    pub entries: Vec<Arc<ModelEntry>>,
}

impl CatalogSource for Pool {
    fn open_ended(&self) -> bool {
        self.accounts().iter().any(|a| match a.kind {
            AccountKind::ApiKey | AccountKind::Relay => a.models.is_none(),
            // A ChatGPT account serves what its catalog lists; one of an unknown kind serves nothing.
            AccountKind::Chatgpt | AccountKind::Unrecognized => false,
        })
    }

    fn any_active(&self, visit: &mut dyn FnMut(Offer<'_>) -> bool) -> bool {
        self.accounts().iter().filter(|a| a.is_active()).any(|a| {
            let catalog = a.catalog.read();
            visit(Offer {
                configured: a.models.as_deref(),
                fetched: catalog.as_ref().map(|c| c.entries.as_slice()),
                fetchable: a.kind == AccountKind::Chatgpt,
            })
        })
    }

    /// The first account in the pool's order that has none; the others are fetched as their accounts come into
    /// use ([`Pool::lease`]) or by the upkeep round, spread over its period.
    async fn fetch_one_missing(&self) -> bool {
        let list = self.accounts();
        let Some(account) = list.iter().find(|a| self.catalog_wanted(a)) else { return false };
        self.fetch_catalog_once(account).await;
        true
    }
}
