//! `/admin/conversations`: held conversations (docs/accounts.md, "Risk signals"), listed and released by an
//! operator. A conversation the upstream flagged (a policy refusal, its account deactivated) stays with its
//! account (`accounts/hold.rs`); releasing it lets its next turn go where any conversation's would, here and, with
//! a team store, on every instance.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use dialects::{ErrorKind, GatewayError};
use serde_json::{Value, json};

use super::error::AdminError;
use crate::app::AppState;
use crate::audit::Note;
use crate::users::access::Action::*;
use crate::users::table::RouteTable;

pub fn routes() -> RouteTable<Arc<AppState>> {
    RouteTable::new()
        .get("/admin/conversations/held", ConversationsRead, held)
        .delete("/admin/conversations/{key}/hold", ConversationsWrite, "conversation.release", release)
        .delete("/admin/accounts/{id}/holds", AccountsWrite, "account.holds_release", release_account)
}

/// `{"held": [{"key", "account", "reason", "since"}], "count"}`: the conversations this instance holds (with a
/// team store, the team's as far as it pulled them).
async fn held(State(s): State<Arc<AppState>>) -> Json<Value> {
    let held = s.pool.held_conversations();
    Json(json!({"count": held.len(), "held": held}))
}

/// Release one conversation's hold. 404 when neither this instance nor the team's table held it.
async fn release(State(s): State<Arc<AppState>>, Path(key): Path<String>) -> Result<(Note, Json<Value>), AdminError> {
    let (released, shared) = s.pool.release_hold(&key).await?;
    if released.is_none() && !shared {
        let e = GatewayError::new(ErrorKind::NotFound, format!("No held conversation `{key}`."));
        return Err(e.with_code("conversation_not_held").into());
    }
    tracing::info!(key = %key, "held conversation released by an operator");
    let note = Note::default().with("was", serde_json::to_value(&released).unwrap_or_default());
    Ok((note, Json(json!({"released": key, "was": released}))))
}

/// Release every conversation held on account `id` (say, after the account was enabled again).
async fn release_account(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<(Note, Json<Value>), AdminError> {
    if s.pool.get(&id).is_none() {
        return Err(AdminError::NoAccount(id));
    }
    let keys = s.pool.release_holds_of(&id).await?;
    tracing::info!(account = %id, released = keys.len(), "held conversations released by an operator");
    Ok((Note::default().with("released", keys.len()), Json(json!({"account": id, "released": keys}))))
}
