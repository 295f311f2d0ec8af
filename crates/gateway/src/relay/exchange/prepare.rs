//! The first phase of an exchange: the model checked against the catalog, the neutral request finalized and
//! shaped into the body the official client would send (`dialects::upstream_request`: finalisation, the model's
//! verbosity and effort, the Lite shape, the thread id, the member order, the chain's digests), with what the
//! gateway adds from its own state (effort updates, the turn identity), serialized once, with what the upstream
//! headers need.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName};
use bytes::Bytes;
use dialects::upstream_request::{self as request, ModelFacts, Shaped};
use dialects::{GatewayError, UpstreamRequest};
use serde_json::{Map, Value};

use super::StartError;
use crate::app::{AppState, request_id};
use crate::catalog::TurnFacts;
use crate::keys::ClientKey;
use crate::record::Recorder;
use crate::upstream::identity::{self, Turn, official};
use crate::upstream::{CallContext, Chaining};

pub use dialects::upstream_request::{account_thread_id, thread_id_for};

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
    check_model(state, req).await?;
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
    let model = ModelFacts {
        default_verbosity: facts.default_verbosity.as_deref(),
        efforts: facts.efforts,
        responses_lite: facts.responses_lite,
    };
    // The official client ids a Lite turn's tools item as it ids its others: `at_` and a UUIDv7.
    let shaped = request::shape(&mut tree, &model, || format!("at_{}", uuid::Uuid::now_v7().hyphenated()));
    record.set_effort(shaped.effort.as_deref());
    // A change of effort inside a conversation goes as the official client sends it for a model that takes it: an
    // update item, the request's own effort left as it was (so the cached prompt survives). An official caller
    // places its own updates; a warm-up carries no turn.
    if facts.effort_updates && !official(headers) && shaped.warm_up.is_none() && !shaped.key.is_empty() {
        state.efforts.shape(&shaped.key, &mut tree);
    }
    let mut ctx = call_context(state, headers, &mut tree, &shaped, &req.model.slug, &facts);
    // Over the upstream WebSocket a turn may continue the conversation's chain there (issue 61): its digests are
    // taken as it is written, while the tree exists (only for that transport).
    let written = request::write(&tree, ctx.websocket)
        .map_err(|e| StartError::Unavailable(GatewayError::internal(e.to_string())))?;
    drop(tree);
    (ctx.chain, ctx.tail) = (written.chain.map(|c| Arc::new(Chaining(c)) as _), written.tail);
    let body = Bytes::from(written.body);
    let (slug, stream, opportunistic) =
        (req.model.slug.clone(), req.stream, client_key.is_some_and(|k| k.opportunistic));
    Ok(Prepared { input_estimate: input_estimate(&body), body, slug, key: shaped.key, ctx, stream, opportunistic })
}

/// The catalog refuses nothing but a model it does not list.
async fn check_model(state: &AppState, req: &mut UpstreamRequest) -> Result<(), StartError> {
    let mut checked = state.catalog.check(&req.model.slug).await;
    // A slug that ends like a suffix (`gpt-5.1-codex-max`) is that model when a catalog lists it, not a shorter one
    // at that effort; asked after the check, which fetched the catalogs if none was known.
    if req.model.suffixed() && req.model.settle(&|slug| state.catalog.lists(slug)) {
        checked = state.catalog.check(&req.model.slug).await;
    }
    checked.map_err(StartError::UnknownModel)
}

/// What the upstream headers need (the body's chain and tail are added once it is written): the turn's identity
/// (`upstream::identity::turn`), made from the caller's headers and the shaped body, whose `client_metadata` it
/// takes; the sticky-routing token (a header over HTTP, a `client_metadata` member over the WebSocket); the ids.
fn call_context(
    state: &AppState,
    headers: &HeaderMap,
    tree: &mut Map<String, Value>,
    shaped: &Shaped,
    slug: &str,
    facts: &TurnFacts,
) -> CallContext {
    let client_metadata = match tree.shift_remove("client_metadata") {
        Some(Value::Object(m)) => Some(m),
        Some(_) | None => None,
    };
    let turn_state = headers.get(&TURN_STATE).and_then(|v| v.to_str().ok()).map(str::to_string).or_else(|| {
        client_metadata.as_ref().and_then(|m| m.get("x-codex-turn-state")).and_then(Value::as_str).map(str::to_string)
    });
    let turn = Turn::new(identity::TurnInputs {
        headers,
        client_metadata,
        thread_id: &shaped.thread,
        slug,
        service_tier: tree.get("service_tier").and_then(Value::as_str),
        effort: shaped.effort.as_deref(),
        kind: identity::RequestKind::of(tree),
        lite: facts.responses_lite,
        now_ms: crate::auth::now_ms(),
    });
    let caller_thread = headers.get(&THREAD_ID).and_then(|v| v.to_str().ok()).filter(|t| *t != shaped.thread);
    CallContext {
        request_id: request_id(headers),
        session_id: shaped.thread.clone(),
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
        websocket: state.config.upstream_ws.wants(),
        conversation: !shaped.key.is_empty(),
        turn: Some(Arc::new(turn)),
        chain: None,
        warm_up: shaped.warm_up.clone(),
        tail: 0,
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
        let written = request::write(&tree, false).ok()?;
        let body = Bytes::from(written.body);
        // The chain's digests and item spans were the old body's: an edited turn goes whole.
        let ctx = CallContext { chain: None, tail: written.tail, ..self.ctx.clone() };
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
