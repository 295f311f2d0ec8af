//! One upstream exchange: finalize the neutral request, pick an account, send with a fresh token, refresh and
//! retry once on 401, fail over to another account while nothing has reached the client, and peek at the
//! first events so failures that arrive inside a 200 stream still become proper HTTP errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderName};
use bytes::Bytes;
use dialects::failure::{Credential, Failover, PolicyKind, Reason, Refusal, Stage};
use dialects::models::{Effort, EffortSet};
use dialects::responses::event::Terminal;
use dialects::sse::SseFrame;
use dialects::{ErrorKind, Event, GatewayError, UpstreamFailure, UpstreamRequest};
use futures_util::StreamExt;
use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::accounts::{Account, Lease, LeaseError, Need, Pool, RefreshBudget};
use crate::app::{AppState, request_id};
use crate::auth::now_unix;
use crate::keys::ClientKey;
use crate::record::Recorder;
use crate::relay::reader::{EventReader, LateHeaders, Read};
use crate::store::AccountKind;
use crate::upstream::identity;
use crate::upstream::ratelimits::RateLimitHeaders;
use crate::upstream::{BodyStream, CallContext, IntoFailure, UpstreamResponse, classify};
use upstream_transport::chain;

/// An upstream response ready to be read, plus what the encoders need to know.
pub struct Exchange {
    pub reader: EventReader,
    /// The account serving this exchange; its concurrency slot is held until the exchange is dropped.
    pub lease: Lease,
    pub request_id: String,
    /// Rough input size, for usage numbers when the gateway cuts a stream itself.
    pub input_estimate: u64,
    /// issue 25: the serving account's `x-codex-*` limit headers, for the client's response head (empty when
    /// the upstream's headers came after the client's status line).
    pub rate_limits: RateLimitHeaders,
    /// Where a failure after the hand-over is reported ([`Exchange::report_failure`]). Boxed: every request's
    /// future carries the exchange while it waits for the upstream, and this is needed only if the answer fails.
    later: Box<Later>,
}

/// What a failure after the hand-over is reported with.
struct Later {
    pool: Arc<Pool>,
    /// The conversation key the request went with (moved from the [`Prepared`] request by [`start`]).
    key: String,
}

impl Exchange {
    /// The answer failed after the exchange was handed over (the pump's in-stream error, a whole answer's
    /// failure): the pool learns what it says of the account's standing, so its risk signal (a policy refusal, a
    /// deactivation) holds the conversation and counts on the account as before the first byte.
    pub fn report_failure(&self, failure: &UpstreamFailure) {
        let Later { pool, key, .. } = &*self.later;
        let conversation = Some(key.as_str()).filter(|k| !k.is_empty());
        pool.record_standing(&self.lease.account, conversation, failure);
    }

    /// The upstream's content filter ended the answer after output had gone out: the client's dialect reports
    /// the finish as it always did, and the pool counts the refusal and holds the conversation.
    pub fn report_refusal(&self, kind: PolicyKind) {
        let Later { pool, key, .. } = &*self.later;
        let conversation = Some(key.as_str()).filter(|k| !k.is_empty());
        pool.record_policy_refusal(&self.lease.account, conversation, kind);
    }
}

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

/// Largest upstream error body we read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Why no exchange could be opened. Routes that word some of these in their own dialect match on it; the rest
/// turn it into the client's error with `?` ([`From`]).
#[derive(Debug)]
pub enum StartError {
    /// No account serves the model: the catalog does not list it, no account's plan serves it, or the upstream
    /// said it does not exist.
    UnknownModel(GatewayError),
    /// The upstream refused the request itself; no other account was tried, since every one would refuse it.
    Refused(UpstreamFailure),
    /// No account could serve it: the accounts' failures (the soonest rate limit among them), or the pool's own
    /// reason (cooling down, busy, none enabled or logged in), or the request could not be prepared.
    Unavailable(GatewayError),
    /// The conversation is held on an account that cannot serve it now (docs/accounts.md, "Risk signals"), and no
    /// other account may take it.
    Held(GatewayError),
}

impl StartError {
    /// The client's error.
    pub fn into_error(self) -> GatewayError {
        match self {
            StartError::UnknownModel(e) | StartError::Unavailable(e) | StartError::Held(e) => e,
            StartError::Refused(failure) => failure.to_error(),
        }
    }

    /// The request named a model no account serves (routes say so in their dialect's words).
    pub fn is_unknown_model(&self) -> bool {
        match self {
            StartError::UnknownModel(_) => true,
            StartError::Refused(_) | StartError::Unavailable(_) | StartError::Held(_) => false,
        }
    }
}

impl From<StartError> for GatewayError {
    fn from(e: StartError) -> GatewayError {
        e.into_error()
    }
}

/// Validate the model, finalize the body and open the upstream stream. The client's headers are dropped once the
/// request is prepared: they are not needed while it waits for the upstream.
///
/// `client_key` is the created client key the request came with, if any: an opportunistic key's request is served
/// only from quota that would otherwise expire (`Need::opportunistic`).
pub async fn start(
    state: &AppState,
    headers: HeaderMap,
    req: &mut UpstreamRequest,
    client_key: Option<&ClientKey>,
    record: &mut Recorder,
) -> Result<Exchange, StartError> {
    let prepared = prepare(state, &headers, req, client_key, record).await?;
    drop(headers);
    let mut exchange = open(state, &prepared, record).await?;
    // Moved, not copied: the request is done with it.
    exchange.later.key = prepared.key;
    Ok(exchange)
}

/// A request ready to go upstream: the finalized body, serialized once, and what the upstream headers need.
#[derive(Clone)]
pub struct Prepared {
    body: Bytes,
    slug: String,
    /// The conversation key (`prompt_cache_key`), for account affinity.
    key: String,
    ctx: CallContext,
    input_estimate: u64,
    /// A streaming answer: its status line may go out before the upstream's headers (see [`open`]).
    stream: bool,
    /// The request of an opportunistic client key: leased only from quota that would otherwise expire.
    opportunistic: bool,
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
    fn for_account(&self, account: &str) -> Option<Prepared> {
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

/// Open the upstream stream for a prepared request: lease an account, send, fail over while nothing has reached
/// the client.
///
/// The peek window (`keepalive`, at most 10 s) is measured from when the first request is sent, and covers the
/// wait for its response headers too: a streaming request whose headers have not come by then is returned
/// with them still pending ([`LateHeaders`]), so the client gets its status line and keepalives while the
/// pump waits for them (up to the header deadline; from then on a failure is an in-stream error).
///
/// Whether another account tries is [`UpstreamFailure::failover`]'s decision; what the failure does to the
/// account is [`crate::accounts::Pool::record_failure`]'s (both decided in `dialects::failure`).
///
/// A conversation served by another account than its home (the account that served its last turn, which cannot
/// serve now) moves: the turn goes without the state sealed to the home account ([`super::moves`]), and the record
/// notes the move. A turn refused for a foreign reasoning item is sent again without reasoning, once. An account
/// other than the one that got the conversation's own identifiers gets identifiers of its own
/// ([`Prepared::for_account`]).
///
/// A request goes to at most `[routing] max_accounts_per_request` accounts: a request every account fails would
/// otherwise be sent to the whole pool, each attempt one more account that saw it.
pub async fn open(state: &AppState, prepared: &Prepared, record: &mut Recorder) -> Result<Exchange, StartError> {
    let Prepared { slug, key, input_estimate, stream, opportunistic, .. } = prepared;
    let input_estimate = *input_estimate;
    let conversation = Some(key.as_str()).filter(|k| !k.is_empty());
    let known = conversation.and_then(|k| state.pool.home_account(k));
    let home = known.as_ref().map(|(home, _)| home.as_str());
    // Both apply live (app/reload.rs): one snapshot load per request.
    let (keepalive, max_accounts) = {
        let live = state.live.config();
        (live.keepalive, live.routing.max_accounts_per_request)
    };
    let mut foreign_reasoning = false;
    let mut window = PeekWindow { len: keepalive.min(Duration::from_secs(10)), end: None };
    let mut tried: Vec<String> = Vec::new();
    let mut last_error: Option<GatewayError> = None;
    // One token refresh attempt for the whole request, whichever accounts it goes through (issues 58, 71),
    // counted from when it began: an attempt the catalog check waited through on its way here is one of them.
    let mut refresh = RefreshBudget::since(record.started());
    loop {
        if tried.len() >= max_accounts {
            return Err(StartError::Unavailable(last_error.unwrap_or_else(no_other_account)));
        }
        let need = Need { model: slug, conversation, input_tokens: input_estimate, opportunistic: *opportunistic };
        let lease = match state.pool.lease(&need, &tried).await {
            Ok(l) => l,
            // Every eligible account was tried: report what went wrong with them, not the empty pool.
            Err(LeaseError::Exhausted) => {
                return Err(StartError::Unavailable(last_error.unwrap_or_else(no_other_account)));
            }
            Err(LeaseError::UnknownModel(e)) => return Err(StartError::UnknownModel(e)),
            Err(LeaseError::Unavailable(e)) => return Err(StartError::Unavailable(pick_error(last_error, e))),
            Err(LeaseError::Held { hold, error }) => {
                record.held(&hold);
                return Err(StartError::Held(error));
            }
        };
        let account = lease.account.clone();
        tried.push(account.id.clone());
        record.attempt(&account.id);
        let moved_from = home.filter(|h| *h != account.id);
        // Not the account that got the conversation's own identifiers (the one it moved from earlier, else its
        // home, else this request's first): identifiers of its own.
        let own_identity = match &known {
            Some((_, Some(origin))) => *origin != account.id,
            Some((home, None)) => *home != account.id,
            None => tried.first().is_some_and(|first| *first != account.id),
        };
        let unsealed: Prepared;
        let current = match (moved_from.is_some() || foreign_reasoning, own_identity) {
            (false, false) => prepared,
            (strip, _) => {
                let base = match strip {
                    false => None,
                    true => match super::moves::unseal(prepared) {
                        Ok(edited) => edited,
                        Err(sealed) => {
                            if let (Some(k), Some(h)) = (conversation, home) {
                                state.pool.keep_home(k, h);
                            }
                            let error = sealed.error(moved_from.or(home).unwrap_or_default());
                            return Err(StartError::Unavailable(error));
                        }
                    },
                };
                let base = base.as_ref().unwrap_or(prepared);
                unsealed = match own_identity {
                    true => base.for_account(&account.id).unwrap_or_else(|| base.clone()),
                    false => base.clone(),
                };
                &unsealed
            }
        };
        let ctx = &current.ctx;
        let exchange = |reader, rate_limits, record: &mut Recorder| {
            record.served_by(&account.id);
            if let Some(from) = moved_from {
                record.moved_from(from);
            }
            Exchange {
                reader,
                lease,
                request_id: ctx.request_id.clone(),
                input_estimate,
                rate_limits,
                later: Box::new(Later { pool: state.pool.clone(), key: String::new() }),
            }
        };
        let sent = send_once(state, &account, current.body.clone(), ctx, *stream, &mut window, &mut refresh);
        let failure = match sent.await {
            Ok(Sent::Late(late)) => {
                return Ok(exchange(EventReader::late(late), RateLimitHeaders::default(), record));
            }
            Ok(Sent::Response(UpstreamResponse { headers, body, .. })) => {
                state.pool.record_success(&account, &headers);
                let rate_limits = RateLimitHeaders::from_upstream(&headers);
                // Freed before the peek, not after it: the upstream's header map (~1.5–2.5 KB) would otherwise
                // be held by every request waiting for its first event (docs/performance.md, "Small waiting requests").
                drop(headers);
                let mut reader = EventReader::new(body);
                let until = window.end.unwrap_or_else(|| Instant::now() + window.len);
                match peek(&mut reader, until).await {
                    Ok(()) => return Ok(exchange(reader, rate_limits, record)),
                    // Failed before any output: nothing has reached the client, so another account may try.
                    Err(failure) => failure,
                }
            }
            Err(failure) => failure,
        };
        record.attempt_failed(&failure);
        // What the failure teaches the pool about the account (a cooldown, a status change, a risk signal), whether
        // another account may try or not: a policy refusal stops the request and holds its conversation.
        state.pool.record_failure(&account, slug, conversation, &failure);
        match failure.failover() {
            Failover::OtherAccount => {
                let error = failure.to_error();
                warn!(account = %account.id, error = %error, "account could not serve the request; trying another");
                last_error = Some(pick_error(last_error, error));
            }
            Failover::Stop if failure.reason() == Some(&Reason::ModelNotFound) => {
                return Err(StartError::UnknownModel(failure.to_error()));
            }
            // Reasoning sealed to another account (a conversation that moved earlier): once more without it, on
            // the same account, when the turn carries reasoning to leave out and has not already gone without.
            Failover::Stop
                if failure.reason() == Some(&Reason::ForeignReasoning)
                    && !foreign_reasoning
                    && moved_from.is_none()
                    && matches!(super::moves::unseal(prepared), Ok(Some(_))) =>
            {
                warn!(account = %account.id, error = %failure.to_error(), "upstream refused earlier reasoning; retrying without it");
                foreign_reasoning = true;
                tried.pop();
            }
            Failover::Stop => return Err(StartError::Refused(failure)),
        }
    }
}

/// The pool ran out of accounts to try before any was tried (not reached in practice: the first lease reports
/// the pool's own reason instead).
fn no_other_account() -> GatewayError {
    GatewayError::new(ErrorKind::UpstreamUnavailable, "No other account could serve the request.")
        .with_code("no_other_account")
}

/// Among several account failures report one: the rate limit with the soonest reset, else the latest.
fn pick_error(previous: Option<GatewayError>, new: GatewayError) -> GatewayError {
    match previous {
        Some(p) if p.kind == ErrorKind::RateLimited && new.kind == ErrorKind::RateLimited => {
            if p.retry_after.unwrap_or(u64::MAX) <= new.retry_after.unwrap_or(u64::MAX) { p } else { new }
        }
        Some(p) if p.kind == ErrorKind::RateLimited => p,
        _ => new,
    }
}

/// The peek window of a request: its length, and when it ends (set at the first send).
struct PeekWindow {
    len: Duration,
    end: Option<Instant>,
}

/// What sending produced: the response, or (streaming only) headers still awaited when the peek window closed.
enum Sent {
    Response(UpstreamResponse),
    Late(Box<LateHeaders>),
}

/// Send with a fresh token; on 401 refresh (single-flight) and send once more. Each send waits for its response
/// headers until the header deadline (`upstream_header_timeout_secs`, then the account cannot serve: another
/// one may), and a streaming one only until the peek window ends (set at the first send).
async fn send_once(
    state: &AppState,
    account: &Arc<Account>,
    body: Bytes,
    ctx: &CallContext,
    stream: bool,
    peek: &mut PeekWindow,
    refresh: &mut RefreshBudget,
) -> Result<Sent, UpstreamFailure> {
    let timeouts = &state.config.timeouts;
    let mut auth = state.pool.authorization(account, None, refresh).await.map_err(UpstreamFailure::Credentials)?;
    let mut refreshed = false;
    loop {
        let sent_at = Instant::now();
        let header_deadline = sent_at + timeouts.upstream_headers;
        let window_end = *peek.end.get_or_insert(sent_at + peek.len);
        // Boxed: a streaming request's send moves into the response body if the peek window closes first, and
        // every request's future then carries a pointer instead of room for the send (memory while waiting is
        // unchanged; one allocation per request, ~0.1 us next to ~225 us of CPU per streamed request).
        let mut sending = Box::pin(state.upstream.send(account, auth.clone(), body.clone(), ctx));
        // A stream waits for its headers until the peek window ends, then goes on waiting in the response body;
        // anything else waits until the header deadline.
        let late = stream && window_end < header_deadline;
        let stop = if late { window_end } else { header_deadline };
        let answer = match tokio::time::timeout_at(stop.into(), &mut sending).await {
            Ok(answer) => answer,
            Err(_) if late => {
                return Ok(Sent::Late(Box::new(LateHeaders::new(
                    sending,
                    header_deadline,
                    timeouts.upstream_headers,
                    timeouts.upstream_error_body,
                ))));
            }
            Err(_) => return Err(UpstreamFailure::HeaderTimeout { limit: timeouts.upstream_headers }),
        };
        let response = answer.map_err(|e| e.failure(Stage::Request))?;
        if response.status.is_success() {
            return Ok(Sent::Response(response));
        }
        let failure = error_answer(response, timeouts.upstream_error_body).await;
        let UpstreamFailure::Refused(Refusal { reason: Reason::Unauthorized, .. }) = failure else {
            return Err(failure);
        };
        if refreshed {
            // Refused again with a credential just renewed: the account's problem, not the client's key, so never
            // a 401 (SDKs and Claude Code read that as their own key being wrong). The account rests meanwhile.
            return Err(login_refused(account));
        }
        info!(account = %account.id, "upstream said 401; refreshing the token once");
        refreshed = true;
        let refused = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
        auth = state.pool.authorization(account, Some(refused), refresh).await.map_err(UpstreamFailure::Credentials)?;
    }
}

/// The failure when the upstream refuses a credential the gateway just renewed (the account then cools down,
/// see `dialects::failure`).
fn login_refused(account: &Account) -> UpstreamFailure {
    let credential = match account.kind {
        AccountKind::Chatgpt => Credential::ChatgptLogin,
        AccountKind::ApiKey | AccountKind::Relay | AccountKind::Unrecognized => Credential::ApiKey,
    };
    UpstreamFailure::LoginRefused { account: account.describe(), credential }
}

/// What an error answer says: its body read within `limit` (see [`read_limited`]), then classified.
pub(super) async fn error_answer(mut response: UpstreamResponse, limit: Duration) -> UpstreamFailure {
    let bytes = read_limited(&mut response.body, limit).await;
    classify(response.status, &response.headers, &bytes, now_unix())
}

/// An error answer's body, up to [`MAX_ERROR_BODY`] bytes and `limit` of waiting: whatever arrived by then is
/// classified (a body that stalls must not hold the request, its account slot and shutdown).
async fn read_limited(body: &mut BodyStream, limit: Duration) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await {
        out.extend_from_slice(&chunk);
        if out.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    out
}

/// Read until the first event that carries output (or `until` passes). A failure before that is returned as an
/// error; everything read is put back for the encoder.
///
/// A frame the gateway cannot read ends the peek without failing: it is not the account's failure (no other
/// account would answer better, `dialects::failure`), and whether it fails the answer is the encoder's to say:
/// the Responses passthrough forwards it as it came, a translated dialect reports it in its own error shape.
async fn peek(reader: &mut EventReader, until: Instant) -> Result<(), UpstreamFailure> {
    // `None`: a frame put back unparsed.
    let mut seen: Vec<(SseFrame, Option<Event<'static>>)> = Vec::new();
    let result = loop {
        if Instant::now() >= until {
            break Ok(());
        }
        match reader.next_until(until).await {
            Read::Frame(frame) => {
                // Owned (a copy only for the one delta that ends the peek), so it can wait beside its frame.
                let event = reader.event(&frame).into_owned();
                // The content filter ended the response before any output: a refusal, as the policy codes are.
                if let Event::Finished { terminal: Terminal::Incomplete { reason }, output, .. } = &event
                    && output.is_empty()
                    && let Some(refusal) = Refusal::before_output(reason)
                {
                    break Err(UpstreamFailure::Refused(refusal));
                }
                match event {
                    Event::Created { .. } | Event::Ignored | Event::Unknown { .. } => seen.push((frame, Some(event))),
                    Event::Failed(refusal) if refusal.reason == Reason::MalformedEvent => {
                        seen.push((frame, None));
                        break Ok(());
                    }
                    Event::Failed(refusal) => break Err(UpstreamFailure::Refused(*refusal)),
                    _ => {
                        seen.push((frame, Some(event)));
                        break Ok(());
                    }
                }
            }
            Read::Idle => break Ok(()),
            Read::End => break Err(UpstreamFailure::StreamCut),
            Read::Error(failure) => break Err(*failure),
        }
    };
    for (frame, event) in seen.into_iter().rev() {
        match event {
            Some(event) => reader.unread(frame, event),
            None => reader.unread_unparsed(frame),
        }
    }
    result
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
pub(crate) fn session_uuid(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}
