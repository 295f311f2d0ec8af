//! From a [`Scenario`] to an [`Outcome`]: either an HTTP error (status, body, headers) or a
//! stream [`Plan`] for `sse.rs`. Decides where reasoning items appear and whether they carry
//! `encrypted_content`, following what the request asked for. Pure apart from the seal closure.

use crate::sse::{Ending, Plan, PlanItem, Step};
use crate::tokens::{now_secs, random_id};
use crate::types::{End, ReplyItem, Scenario, ToolArgs};
use serde_json::json;

/// What the request asked for that shapes the reply.
pub struct ReplyCtx<'a> {
    /// `reasoning` non-null with an effort other than "none".
    pub reasoning_on: bool,
    /// `include` contains "reasoning.encrypted_content".
    pub include_encrypted: bool,
    /// `reasoning.summary` set and not "none".
    pub summary_on: bool,
    pub default_deltas: usize,
    /// Pause before each delta when a `text` scenario sets none.
    pub default_delay_ms: u64,
    pub plan_type: &'a str,
    /// Produces a fresh sealed encrypted_content for this caller.
    pub seal: &'a dyn Fn() -> String,
}

/// What to answer.
pub enum Outcome {
    Http {
        status: u16,
        body: String,
        content_type: &'static str,
        headers: Vec<(String, String)>,
        delay_ms: u64,
    },
    /// An HTTP error whose body stops halfway and never ends.
    HangingBody {
        status: u16,
        body: String,
    },
    Stream(Plan),
    /// A recorded stream's steps as they are (`Scenario::Replay`), and whether it ends as a finished response.
    Replay {
        steps: Vec<Step>,
        finished: bool,
    },
}

fn http_json(status: u16, body: serde_json::Value) -> Outcome {
    Outcome::Http { status, body: body.to_string(), content_type: "application/json", headers: Vec::new(), delay_ms: 0 }
}

/// The 429 body of an exhausted account.
pub fn usage_limit_body(plan_type: &str, resets_at: i64) -> serde_json::Value {
    json!({"error": {
        "type": "usage_limit_reached",
        "message": "The usage limit has been reached",
        "plan_type": plan_type,
        "resets_at": resets_at,
        "resets_in_seconds": (resets_at - now_secs()).max(0),
    }})
}

/// The 401 body for an expired or revoked token.
pub fn token_expired_body() -> serde_json::Value {
    json!({"error": {
        "message": "Your authentication token has expired. Please try signing in again.",
        "type": "invalid_request_error",
        "code": "token_expired",
    }})
}

const CLOUDFLARE_PAGE: &str = "<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title>\
<meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\"></head><body>\
<div class=\"main-wrapper\"><noscript>Enable JavaScript and cookies to continue</noscript></div>\
<script src=\"/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1\"></script></body></html>";

/// Reasoning item to prepend when the request asked for reasoning with encrypted content.
fn auto_reasoning(ctx: &ReplyCtx<'_>) -> Option<PlanItem> {
    (ctx.reasoning_on && ctx.include_encrypted).then(|| PlanItem::Reasoning {
        summary: ctx.summary_on.then(|| "**Answering**\n\nThe request is simple; answering directly.".to_string()),
        encrypted: Some((ctx.seal)()),
    })
}

/// Reasoning item a scenario asked for explicitly.
fn explicit_reasoning(summary: &str, ctx: &ReplyCtx<'_>) -> PlanItem {
    PlanItem::Reasoning { summary: Some(summary.to_string()), encrypted: ctx.include_encrypted.then(|| (ctx.seal)()) }
}

fn with_auto(ctx: &ReplyCtx<'_>, rest: Vec<PlanItem>) -> Vec<PlanItem> {
    auto_reasoning(ctx).into_iter().chain(rest).collect()
}

fn call(name: &str, args: &ToolArgs, call_id: &Option<String>) -> PlanItem {
    PlanItem::FunctionCall {
        name: name.to_string(),
        arguments: args.to_wire(),
        call_id: call_id.clone().unwrap_or_else(|| random_id("call_")),
    }
}

fn text_plan(ctx: &ReplyCtx<'_>, text: &str, deltas: usize, completed_output: bool) -> Plan {
    let mut plan = Plan::new(with_auto(ctx, vec![PlanItem::Message { text: text.to_string() }]), deltas);
    plan.completed_output = completed_output;
    plan
}

/// Turn a scenario into what to answer.
pub fn outcome(scenario: Scenario, ctx: &ReplyCtx<'_>) -> Outcome {
    let d = ctx.default_deltas;
    match scenario {
        Scenario::Text { text, deltas, delay_ms, completed_output } => {
            let mut plan = text_plan(ctx, &text, deltas.unwrap_or(d), completed_output);
            plan.delay_ms = delay_ms.unwrap_or(ctx.default_delay_ms);
            Outcome::Stream(plan)
        }
        Scenario::JsonText { text, completed_output } => Outcome::Stream(text_plan(ctx, &text, d, completed_output)),
        Scenario::Slow { text, deltas, delay_ms, completed_output } => {
            let mut plan = text_plan(ctx, &text, deltas, completed_output);
            plan.delay_ms = delay_ms;
            Outcome::Stream(plan)
        }
        Scenario::ReasoningThenText { summary, text, completed_output } => {
            let items = vec![explicit_reasoning(&summary, ctx), PlanItem::Message { text }];
            let mut plan = Plan::new(items, d);
            plan.completed_output = completed_output;
            Outcome::Stream(plan)
        }
        Scenario::ToolCall { name, arguments, call_id, text_before, completed_output } => {
            let mut items: Vec<PlanItem> = text_before.map(|text| PlanItem::Message { text }).into_iter().collect();
            items.push(call(&name, &arguments, &call_id));
            let mut plan = Plan::new(with_auto(ctx, items), d);
            plan.completed_output = completed_output;
            Outcome::Stream(plan)
        }
        Scenario::ToolCalls { calls, completed_output } => {
            let items = calls.iter().map(|c| call(&c.name, &c.arguments, &c.call_id)).collect();
            let mut plan = Plan::new(with_auto(ctx, items), d);
            plan.completed_output = completed_output;
            Outcome::Stream(plan)
        }
        Scenario::Custom { items, end, completed_output } => {
            let items = items
                .into_iter()
                .map(|i| match i {
                    ReplyItem::Reasoning { summary } => explicit_reasoning(&summary, ctx),
                    ReplyItem::Text { text } => PlanItem::Message { text },
                    ReplyItem::FunctionCall { name, arguments, call_id } => call(&name, &arguments, &call_id),
                    ReplyItem::WebSearchCall { query } => PlanItem::WebSearch { query },
                    ReplyItem::Compaction => PlanItem::Compaction { encrypted: (ctx.seal)() },
                })
                .collect();
            let mut plan = Plan::new(items, d);
            plan.completed_output = completed_output;
            plan.ending = match end {
                End::Completed => Ending::Completed,
                End::Incomplete { reason } => Ending::Incomplete(reason),
                End::Failed { code, message } => Ending::Failed { code, message },
                End::Cut => Ending::Cut,
            };
            Outcome::Stream(plan)
        }
        Scenario::HttpError { status, body, headers } => Outcome::Http {
            status,
            body: body.to_string(),
            content_type: "application/json",
            headers: headers.into_iter().collect(),
            delay_ms: 0,
        },
        Scenario::UsageLimit { resets_in_secs } => {
            let resets_at = now_secs() + resets_in_secs.unwrap_or(3600) as i64;
            http_json(429, usage_limit_body(ctx.plan_type, resets_at))
        }
        Scenario::Unauthorized => http_json(401, token_expired_body()),
        Scenario::ServerError { status } => http_json(
            status,
            json!({"error": {
                "message": "An error occurred while processing your request. You can retry your request.",
                "type": "server_error",
                "code": null,
            }}),
        ),
        Scenario::Overloaded => http_json(
            503,
            json!({"error": {
                "message": "Our servers are currently overloaded. Please try again later.",
                "type": "server_is_overloaded",
                "code": "server_is_overloaded",
            }}),
        ),
        Scenario::OverloadInStream => {
            failed_plan("server_is_overloaded", "Our servers are currently overloaded. Please try again later.")
        }
        Scenario::Failed { code, message } => failed_plan(&code, &message),
        Scenario::PolicyRefusal { code } => http_json(
            400,
            json!({"error": {
                "message": policy_message(&code),
                "type": "invalid_request_error",
                "param": null,
                "code": code,
            }}),
        ),
        Scenario::PolicyRefusalInStream { code } => failed_plan(&code, policy_message(&code)),
        Scenario::ContentFiltered => {
            let mut plan = Plan::new(Vec::new(), d);
            plan.ending = Ending::Incomplete("content_filter".into());
            Outcome::Stream(plan)
        }
        Scenario::Deactivated => http_json(
            403,
            json!({"error": {
                "message": "This account has been deactivated. Please contact support if you believe this is an error.",
                "type": "invalid_request_error",
                "param": null,
                "code": "account_deactivated",
            }}),
        ),
        Scenario::ContextLengthExceeded => failed_plan(
            "context_length_exceeded",
            "Your input exceeds the context window of this model. Please adjust your input and try again.",
        ),
        Scenario::Cut { after_deltas } => {
            let mut plan = text_plan(ctx, "This answer is cut off before it can finish.", d, false);
            plan.cut_after_deltas = Some(after_deltas);
            Outcome::Stream(plan)
        }
        Scenario::Incomplete { reason, text } => {
            let mut plan = text_plan(ctx, &text, d, false);
            plan.ending = Ending::Incomplete(reason);
            Outcome::Stream(plan)
        }
        Scenario::Silence { ms, then, keepalive_every_ms } => match outcome(*then, ctx) {
            Outcome::Stream(mut plan) => {
                plan.silence_ms += ms;
                plan.silence_keepalive_ms = keepalive_every_ms;
                Outcome::Stream(plan)
            }
            Outcome::Http { status, body, content_type, headers, delay_ms } => {
                Outcome::Http { status, body, content_type, headers, delay_ms: delay_ms + ms }
            }
            hanging @ Outcome::HangingBody { .. } => hanging,
            Outcome::Replay { mut steps, finished } => {
                steps.insert(0, Step::Sleep(ms));
                Outcome::Replay { steps, finished }
            }
        },
        // Handled before a scenario gets here (`responses.rs`); played as its follow-up if nested.
        Scenario::HangBeforeHeaders { then, .. } => match then {
            Some(then) => outcome(*then, ctx),
            None => Outcome::Stream(text_plan(ctx, "Hello from fake-codex.", d, false)),
        },
        Scenario::HangInErrorBody { status } => Outcome::HangingBody {
            status,
            body: json!({"error": {
                "message": "An error occurred while processing your request. You can retry your request.",
                "type": "server_error",
                "code": null,
            }})
            .to_string(),
        },
        Scenario::TrickleComments { interval_ms, after_created } => {
            let mut plan = Plan::new(Vec::new(), d);
            plan.trickle = Some((interval_ms.max(1), after_created));
            Outcome::Stream(plan)
        }
        Scenario::MalformedDelta { text, at } => {
            let mut plan = text_plan(ctx, &text, d, false);
            plan.malformed_delta_at = Some(at);
            Outcome::Stream(plan)
        }
        Scenario::UnknownEvent { text, event_type } => {
            let mut plan = text_plan(ctx, &text, d, false);
            plan.unknown_event = Some(event_type);
            Outcome::Stream(plan)
        }
        Scenario::Replay { sse } => {
            let (steps, finished) = crate::replay::steps(&sse);
            Outcome::Replay { steps, finished }
        }
        Scenario::Cloudflare => Outcome::Http {
            status: 403,
            body: CLOUDFLARE_PAGE.to_string(),
            content_type: "text/html; charset=UTF-8",
            headers: vec![
                ("cf-mitigated".to_string(), "challenge".to_string()),
                ("server".to_string(), "cloudflare".to_string()),
            ],
            delay_ms: 0,
        },
    }
}

/// The message a policy refusal comes with (the code is what a client reads).
fn policy_message(code: &str) -> &'static str {
    match code {
        "cyber_policy" => "This request has been flagged for potentially high-risk cyber activity.",
        "bio_policy" => "This request has been flagged for potentially high-risk biological content.",
        "invalid_prompt" => "Invalid prompt: your prompt was flagged as potentially violating our usage policy.",
        _ => "This request was refused under the usage policy.",
    }
}

fn failed_plan(code: &str, message: &str) -> Outcome {
    let mut plan = Plan::new(Vec::new(), 1);
    plan.ending = Ending::Failed { code: code.to_string(), message: message.to_string() };
    Outcome::Stream(plan)
}
