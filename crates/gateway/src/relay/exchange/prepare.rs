//! The first phase of an exchange: the model checked against the catalog, the neutral request finalized into
//! the body the official client would send (verbosity, effort held to the model's, effort updates, the Lite
//! shape, the thread id, the turn identity), serialized once, with what the upstream headers need; and the
//! conversation's thread ids.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName};
use bytes::Bytes;
use dialects::models::{Effort, EffortSet};
use dialects::{GatewayError, UpstreamRequest};
use serde_json::{Map, Value};

use super::StartError;
use crate::app::{AppState, request_id};
use crate::keys::ClientKey;
use crate::record::Recorder;
use crate::upstream::CallContext;
use crate::upstream::identity;
use upstream_transport::chain;

/// Headers clients use to name a conversation, most specific first.
/// Static names, here and for the request's other headers: a `&str` name is parsed and checked again on every
/// lookup (~5 K instructions per request in all, callgrind, docs/performance.md, "Static header names").
static SESSION_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-claude-code-session-id"),
    HeaderName::from_static("session-id"),
    HeaderName::from_static("session_id"),
    HeaderName::from_static("x-session-id"),
    HeaderName::from_static("conversation_id"),
];
static THREAD_ID: HeaderName = HeaderName::from_static("thread-id");
static TURN_STATE: HeaderName = HeaderName::from_static("x-codex-turn-state");

/// A request ready to go upstream: the finalized body, serialized once, and what the upstream headers need.
#[derive(Clone)]
pub struct Prepared {
    pub(super) body: Bytes,
    pub(super) slug: String,
    /// The conversation key (`prompt_cache_key`), for account affinity.
    pub(super) key: String,
    pub(super) ctx: CallContext,
    pub(super) input_estimate: u64,
    /// A streaming answer: its status line may go out before the upstream's headers (see [`super::open`]).
    pub(super) stream: bool,
    /// The request of an opportunistic client key: leased only from quota that would otherwise expire.
    pub(super) opportunistic: bool,
}

/// Validate the model and finalize and serialize the body. The request's JSON tree is freed here (its body is
/// left empty): it is the largest part of a request that waits for the upstream, and with thousands of streams
/// opening at once those waits overlap (docs/performance.md, "Small waiting requests").
pub async fn prepare(
    state: &AppState,
    headers: &HeaderMap,
    req: &mut UpstreamRequest,
    client_key: Option<&ClientKey>,
    record: &mut Recorder,
) -> Result<Prepared, StartError> {
    let opportunistic = client_key.is_some_and(|k| k.opportunistic);
    // The catalog refuses nothing but a model it does not list.
    let mut checked = state.catalog.check(&req.model.slug).await;
    // A slug that ends like a suffix (`gpt-5.1-codex-max`) is that model when a catalog lists it, not a shorter one
    // at that effort; asked after the check, which fetched the catalogs if none was known.
    if req.model.suffixed() && req.model.settle(&|slug| state.catalog.lists(slug)) {
        checked = state.catalog.check(&req.model.slug).await;
    }
    checked.map_err(StartError::UnknownModel)?;
    record.set_resolved(&req.model.slug);
    if req.conversation_key.is_none() {
        req.conversation_key = SESSION_HEADERS
            .iter()
            .find_map(|h| headers.get(h).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()))
            .map(str::to_string);
    }
    req.finalize(state.config.default_reasoning_effort.as_deref());
    let mut tree = std::mem::take(&mut req.body);
    let facts = state.catalog.turn_facts(&req.model.slug);
    // The verbosity the official client sends from the model's catalog entry when its user chose none.
    if let Some(verbosity) = &facts.default_verbosity
        && tree.get("text").is_none_or(|t| t.get("verbosity").is_none())
    {
        match tree.entry("text").or_insert_with(|| Value::Object(Map::new())) {
            Value::Object(text) => {
                text.insert("verbosity".into(), Value::String(verbosity.clone()));
            }
            // A `text` that is not an object was refused by the decoder; nothing to add to.
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Array(_) => {}
        }
    }
    // The effort is held to what the model takes first, so that a conversation's effort updates below
    // (`upstream::identity::efforts`) compare and send the effort that goes upstream.
    hold_effort(&mut tree, facts.efforts);
    let warm_up = identity::warmup_model(&tree);
    // A model the official client sends as Responses Lite gets that shape from every caller.
    let lite = facts.responses_lite;
    if lite {
        identity::lite::shape(&mut tree);
        // The official client's warm-up for such a model holds no input (its tools item and context go with the
        // first turn, chained on the warm-up): recorded from CLI 0.171, the `responses_lite` parity scenario.
        if warm_up.is_some() {
            tree.insert("input".into(), Value::Array(Vec::new()));
        }
    }
    let key = tree.get("prompt_cache_key").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    // The thread id the official client would have: the caller's own (a Codex CLI's prompt cache key is its
    // thread id), else one derived from the conversation key, which goes upstream as the prompt cache key too.
    let thread = thread_id_for(&key);
    if thread != key {
        tree.insert("prompt_cache_key".into(), Value::String(thread.clone()));
    }
    let effort = tree.get("reasoning").and_then(|r| r.get("effort")).and_then(Value::as_str).map(str::to_string);
    record.set_effort(effort.as_deref());
    // A change of effort inside a conversation goes as the official client sends it for a model that takes it: an
    // update item, the request's own effort left as it was (so the cached prompt survives). An official caller
    // places its own updates; a warm-up carries no turn.
    let official = headers.get("originator").and_then(|v| v.to_str().ok()).is_some_and(|o| o.starts_with("codex_"));
    if facts.effort_updates && !official && warm_up.is_none() && !key.is_empty() {
        state.efforts.shape(&key, &mut tree);
    }
    let client_metadata = match tree.remove("client_metadata") {
        Some(Value::Object(m)) => Some(m),
        Some(_) | None => None,
    };
    // The sticky-routing token: a header over HTTP, a `client_metadata` member over the WebSocket.
    let turn_state = headers.get(&TURN_STATE).and_then(|v| v.to_str().ok()).map(str::to_string).or_else(|| {
        client_metadata.as_ref().and_then(|m| m.get("x-codex-turn-state")).and_then(Value::as_str).map(str::to_string)
    });
    let turn = identity::Turn::new(identity::TurnInputs {
        headers,
        client_metadata,
        thread_id: &thread,
        slug: &req.model.slug,
        service_tier: tree.get("service_tier").and_then(Value::as_str),
        effort: effort.as_deref(),
        kind: request_kind(&tree),
        lite,
        now_ms: crate::auth::now_ms(),
    });
    let serialize_error = |e: serde_json::Error| StartError::Unavailable(GatewayError::internal(e.to_string()));
    let websocket = state.config.upstream_ws.wants();
    // Over the upstream WebSocket a turn may continue the conversation's chain there (issue 61): its digests and
    // where its items are in the body, computed here while the tree exists (only for that transport).
    let (body, chain) = if websocket {
        let (body, spans) = identity::official_order_with_items(&tree).map_err(serialize_error)?;
        let items = match tree.get("input") {
            Some(Value::Array(items)) => items.iter().map(chain::item_digest).collect(),
            Some(_) | None => Vec::new(),
        };
        let request = chain::ChainRequest { settings: chain::settings_digest(&tree), items, spans };
        (Bytes::from(body), Some(Arc::new(request)))
    } else {
        (Bytes::from(identity::official_order(&tree).map_err(serialize_error)?), None)
    };
    let tail = identity::tail_len(&tree);
    drop(tree);
    let input_estimate = input_estimate(&body);
    let caller_thread = headers.get(&THREAD_ID).and_then(|v| v.to_str().ok()).filter(|t| *t != thread);
    let ctx = CallContext {
        request_id: request_id(headers),
        session_id: thread.clone(),
        thread_id: caller_thread.map(str::to_string),
        turn_state,
        // issue 25: present a newer client version when the caller is a newer official client or the model
        // needs one (two header reads and one scan of the catalogs for the slug).
        client_version: identity::presented(
            state.config.client.version,
            identity::caller_version(headers),
            facts.minimal_client_version,
        ),
        // issue 25 (WebSocket upstream): the transport for this request (`[upstream] transport`).
        websocket,
        conversation: !key.is_empty(),
        turn: Some(Arc::new(turn)),
        chain,
        warm_up,
        tail,
    };
    Ok(Prepared { body, slug: req.model.slug.clone(), key, ctx, input_estimate, stream: req.stream, opportunistic })
}

/// Hold the request's effort to what the model takes (`efforts`, from its catalog entries): every dialect asks
/// in its own words (a suffix, Anthropic's `max`, a thinking budget, Ollama's `think`), and the backend refuses an
/// effort the model does not list, so the nearest one it lists goes instead (`max` on a model that stops at
/// `xhigh` is `xhigh`). An effort word the gateway does not know was refused when the request was decoded.
fn hold_effort(tree: &mut Map<String, Value>, efforts: EffortSet) {
    let Some(Value::Object(reasoning)) = tree.get_mut("reasoning") else { return };
    let Some(wanted) = reasoning.get("effort").and_then(Value::as_str).and_then(Effort::parse) else { return };
    let held = efforts.clamp(wanted);
    if held != wanted {
        reasoning.insert("effort".into(), Value::String(held.as_str().to_string()));
    }
}

/// Rough input tokens of a serialized body (about four bytes per token), for usage numbers when the gateway cuts
/// a stream itself.
fn input_estimate(body: &[u8]) -> u64 {
    (body.len() as u64).div_ceil(4)
}

impl Prepared {
    /// The client's `x-request-id` (set by the router when the client sent none).
    pub fn request_id(&self) -> &str {
        &self.ctx.request_id
    }

    /// The request as `account` sends it when the conversation's own identifiers went to another account (issue
    /// 71): a thread id of its own, derived from the conversation key and the account ([`account_thread_id`]), in
    /// the body's `prompt_cache_key`, the session and thread headers, the window and the turn metadata (and a
    /// caller's thread and parent thread ids derived alike); no sticky-routing token, which the other account's
    /// answers issued. The account that got them first keeps them, so the upstream never sees one conversation's
    /// identifiers under two accounts. `None` when the body cannot be read again (it was serialized here).
    pub(super) fn for_account(&self, account: &str) -> Option<Prepared> {
        let own = |id: &str| account_thread_id(id, account);
        let thread = own(&self.ctx.session_id);
        let mut moved = self.edited(|body| {
            body.insert("prompt_cache_key".into(), Value::String(thread.clone()));
            true
        })?;
        moved.ctx.turn = self.ctx.turn.as_deref().map(|t| Arc::new(t.for_account(&self.ctx.session_id, own)));
        moved.ctx.thread_id = self.ctx.thread_id.as_deref().map(own);
        moved.ctx.session_id = thread;
        moved.ctx.turn_state = None;
        Some(moved)
    }

    /// The same request with its body edited (a rare retry): parsed again from the bytes, since the tree is gone.
    /// `None` when `edit` reports that it changed nothing.
    pub fn edited(&self, edit: impl FnOnce(&mut Map<String, Value>) -> bool) -> Option<Prepared> {
        let mut tree: Map<String, Value> = serde_json::from_slice(&self.body).ok()?;
        if !edit(&mut tree) {
            return None;
        }
        let body = Bytes::from(identity::official_order(&tree).ok()?);
        // The chain's digests and item spans were the old body's: an edited turn goes whole.
        let ctx = CallContext { chain: None, tail: identity::tail_len(&tree), ..self.ctx.clone() };
        Some(Prepared {
            input_estimate: input_estimate(&body),
            body,
            slug: self.slug.clone(),
            key: self.key.clone(),
            ctx,
            stream: self.stream,
            opportunistic: self.opportunistic,
        })
    }
}

/// The thread id for a conversation key: the key itself when it is a UUID (the official client's prompt cache key
/// is its thread id), else a UUID derived from it, stable across the conversation's turns.
pub fn thread_id_for(key: &str) -> String {
    match uuid::Uuid::try_parse(key) {
        Ok(id) => id.hyphenated().to_string(),
        Err(_) => session_uuid(key),
    }
}

/// What a request is, for the turn metadata: a warm-up (`generate: false`), a compaction when its input ends with
/// the compaction trigger (compaction v2), else a turn.
fn request_kind(body: &Map<String, Value>) -> identity::RequestKind {
    if crate::upstream::warmup::is_warmup(body) {
        return identity::RequestKind::Prewarm;
    }
    let last = body.get("input").and_then(Value::as_array).and_then(|items| items.last());
    match last.and_then(|item| item.get("type")).and_then(Value::as_str) {
        Some("compaction_trigger") => identity::RequestKind::Compaction,
        Some(_) | None => identity::RequestKind::Turn,
    }
}

/// The thread id `account` gets for a conversation (or a caller's thread) whose own id `thread` went to another
/// account: a UUID derived from both, the same for every turn of the conversation on that account.
pub fn account_thread_id(thread: &str, account: &str) -> String {
    session_uuid(&format!("{thread}\n{account}"))
}

/// A UUID-shaped session id derived from the conversation key, stable across the conversation's turns.
fn session_uuid(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}
