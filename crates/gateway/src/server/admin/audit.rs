//! `GET /admin/audit`: the audit trail read with filters (audit/query.rs). The changes made through the admin API
//! are recorded by the layer it shares with the dashboard (users/trail.rs), under the names its routes are declared
//! with (mod.rs).

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use dialects::GatewayError;
use serde_json::{Value, json};

use super::error::AdminError;
use crate::app::AppState;
use crate::audit;
use crate::users::access::Action;
use crate::users::table::RouteTable;

pub fn routes() -> RouteTable<Arc<AppState>> {
    RouteTable::new().get("/admin/audit", Action::AuditRead, read)
}

/// `GET /admin/audit?actor=&action=&since=&until=&limit=`: `{"count", "entries": [...]}`, oldest first.
async fn read(State(s): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Result<Json<Value>, AdminError> {
    let filter = audit::query::parse(raw.as_deref(), crate::usage::when::now_ms())
        .map_err(|b| GatewayError::invalid_param(b.name, format!("Cannot read {} = {:?}", b.name, b.value)))?;
    let store = s.pool.store().clone();
    let rows = tokio::task::spawn_blocking(move || store.audit_rows(&filter))
        .await
        .map_err(|e| AdminError::Internal(anyhow::anyhow!("the audit read did not complete: {e}")))??;
    let entries: Vec<Value> = rows.iter().map(audit::export::row_json).collect();
    Ok(Json(json!({"count": entries.len(), "entries": entries})))
}
