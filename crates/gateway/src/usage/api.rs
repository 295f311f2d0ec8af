//! `GET /admin/usage` and `GET /admin/requests` (routed in server/admin/, behind the admin guard): the
//! parameters, checked one by one (a bad or unknown one is a 400 that names it), and the answer as JSON or CSV.

use std::sync::Arc;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use dialects::GatewayError;

use super::Ledger;
use super::query::{self, Before, Bucket, GroupBy, RequestsQuery, StatusFilter, UsageQuery};
use super::when::{now_ms, parse_instant};

/// Most rows one `/admin/requests` page returns.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// The query string as (name, value) pairs, each name at most once.
fn pairs(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, GatewayError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(GatewayError::invalid_param(
                &k,
                format!("Unknown parameter `{k}`; this endpoint takes {}", allowed.join(", ")),
            ));
        }
        if out.iter().any(|(name, _)| *name == k) {
            return Err(GatewayError::invalid_param(&k, format!("Parameter `{k}` is given more than once")));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

/// A name `pairs` let through but the caller does not handle (the two lists disagree).
fn unknown(param: &str) -> GatewayError {
    GatewayError::invalid_param(param, format!("Unknown parameter `{param}`"))
}

fn bad(param: &str, value: &str, expected: &str) -> GatewayError {
    GatewayError::invalid_param(param, format!("Invalid `{param}` value {value:?}: expected {expected}"))
}

const INSTANT: &str =
    "unix seconds or milliseconds, an RFC 3339 date-time, a date (YYYY-MM-DD) or a duration ago (7d, 24h)";

/// `format`: whether the answer is CSV (else JSON).
fn csv_format(v: &str) -> Result<bool, GatewayError> {
    match v {
        "json" => Ok(false),
        "csv" => Ok(true),
        _ => Err(bad("format", v, "json or csv")),
    }
}

pub fn parse_usage(raw: Option<&str>, now: i64) -> Result<(UsageQuery, bool), GatewayError> {
    let mut q = UsageQuery { from: 0, to: now, bucket: Bucket::Hour, group_by: None, user: None };
    let (mut from, mut csv) = (None, false);
    for (k, v) in pairs(raw, &["from", "to", "bucket", "group_by", "user", "format"])? {
        match k.as_str() {
            "from" => from = Some(parse_instant(&v, now).ok_or_else(|| bad("from", &v, INSTANT))?),
            "to" => q.to = parse_instant(&v, now).ok_or_else(|| bad("to", &v, INSTANT))?,
            "bucket" => q.bucket = Bucket::parse(&v).ok_or_else(|| bad("bucket", &v, "hour or day"))?,
            "group_by" => {
                q.group_by = Some(
                    GroupBy::parse(&v).ok_or_else(|| bad("group_by", &v, "account, model, key, dialect or user"))?,
                )
            }
            "user" => q.user = Some(v),
            "format" => csv = csv_format(&v)?,
            other => return Err(unknown(other)),
        }
    }
    // Default span: a day of hours, or 30 days.
    let span = match q.bucket {
        Bucket::Hour => 24 * 3_600_000,
        Bucket::Day => 30 * 86_400_000,
    };
    q.from = from.unwrap_or(q.to - span);
    if q.from >= q.to {
        return Err(GatewayError::invalid_param("from", "`from` must be earlier than `to`"));
    }
    Ok((q, csv))
}

pub fn parse_requests(raw: Option<&str>, now: i64) -> Result<(RequestsQuery, bool), GatewayError> {
    let mut q = RequestsQuery { limit: DEFAULT_LIMIT, ..Default::default() };
    let mut csv = false;
    for (k, v) in pairs(raw, &["limit", "before", "key", "user", "account", "model", "status", "format"])? {
        match k.as_str() {
            "limit" => {
                q.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad("limit", &v, "a whole number from 1 to 1000"))?
            }
            "before" => {
                let at = || parse_instant(&v, now).map(Before::Instant);
                q.before =
                    Some(Before::parse_cursor(&v).or_else(at).ok_or_else(|| {
                        bad("before", &v, &format!("a `next` cursor from a previous page, or {INSTANT}"))
                    })?)
            }
            "key" => q.key = Some(v),
            "user" => q.user = Some(v),
            "account" => q.account = Some(v),
            "model" => q.model = Some(v),
            "status" => {
                q.status = Some(
                    StatusFilter::parse(&v)
                        .ok_or_else(|| bad("status", &v, "an HTTP status (429) or a class (5xx)"))?,
                )
            }
            "format" => csv = csv_format(&v)?,
            other => return Err(unknown(other)),
        }
    }
    Ok((q, csv))
}

fn csv_response(body: String, next: Option<&str>) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Some(n) = next.and_then(|n| HeaderValue::from_str(n).ok()) {
        h.insert("x-next-cursor", n);
    }
    resp
}

fn failed(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::internal(format!("usage ledger query failed: {e}"))
}

/// `GET /admin/usage`: the report for the query string `raw`, as JSON or CSV (server/admin/ renders an error).
pub async fn usage(ledger: &Arc<Ledger>, raw: Option<&str>) -> Result<Response, GatewayError> {
    let (q, csv) = parse_usage(raw, now_ms())?;
    answer(ledger, q, csv).await
}

/// The report for `q`, as CSV or JSON.
async fn answer(ledger: &Arc<Ledger>, q: UsageQuery, csv: bool) -> Result<Response, GatewayError> {
    let report = ledger.usage(q).await.map_err(failed)?;
    Ok(match csv {
        true => csv_response(query::usage_csv(&report).map_err(failed)?, None),
        false => axum::Json(report).into_response(),
    })
}

/// `GET /admin/usage` for one user (a member: their own usage only): the requests made for `user_id`, grouped by
/// key unless another grouping is asked for; naming another user is refused.
pub async fn usage_of_user(ledger: &Arc<Ledger>, raw: Option<&str>, user_id: &str) -> Result<Response, GatewayError> {
    let (mut q, csv) = parse_usage(raw, now_ms())?;
    own(&mut q.user, user_id, "A member reads their own usage only.")?;
    q.group_by = q.group_by.or(Some(GroupBy::Key));
    answer(ledger, q, csv).await
}

/// A member's query narrowed to their own requests (`user_id`); naming another user is refused with `refusal`.
fn own(user: &mut Option<String>, user_id: &str, refusal: &str) -> Result<(), GatewayError> {
    if user.as_deref().is_some_and(|u| u != user_id) {
        return Err(GatewayError::new(dialects::ErrorKind::PermissionDenied, refusal).with_code("not_your_usage"));
    }
    *user = Some(user_id.to_string());
    Ok(())
}

/// The `key` parameter of a requests query, if any (a member may name only one of theirs).
pub fn requests_key(raw: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).find(|(k, _)| k == "key").map(|(_, v)| v.into_owned())
}

/// `GET /admin/requests`: one page of request rows for the query string `raw`, as JSON or CSV.
pub async fn requests(ledger: &Arc<Ledger>, raw: Option<&str>) -> Result<Response, GatewayError> {
    let (q, csv) = parse_requests(raw, now_ms())?;
    page_of_requests(ledger, q, csv).await
}

/// `GET /admin/requests` for one user (a member: their own requests only): the requests made for `user_id`, with
/// any of their keys or their Codex CLI sign-in, unless `key=` narrows them; naming another user is refused (the
/// caller has checked that a named key is theirs).
pub async fn requests_of_user(
    ledger: &Arc<Ledger>,
    raw: Option<&str>,
    user_id: &str,
) -> Result<Response, GatewayError> {
    let (mut q, csv) = parse_requests(raw, now_ms())?;
    own(&mut q.user, user_id, "A member lists their own requests only.")?;
    page_of_requests(ledger, q, csv).await
}

async fn page_of_requests(ledger: &Arc<Ledger>, q: RequestsQuery, csv: bool) -> Result<Response, GatewayError> {
    let page = ledger.requests(q).await.map_err(failed)?;
    Ok(match csv {
        true => csv_response(query::requests_csv(&page).map_err(failed)?, page.next.as_deref()),
        false => axum::Json(page).into_response(),
    })
}
