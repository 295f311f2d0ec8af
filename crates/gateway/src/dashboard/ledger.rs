//! The Usage and Requests pages, read from the usage ledger (usage/) with the same parameters and queries as
//! `/admin/usage` and `/admin/requests` (`usage::api::parse_usage`, `parse_requests`): the page's choices
//! become that endpoint's query string, so a bad value gets the same 400 message, shown in place. The charts
//! are SVG drawn here from numbers (no script, nothing to escape); CSV downloads go through the session.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::access::Own;
use super::pages::page;
use super::session::{ApiRead, PageAccess};
use super::{St, json_error};
use crate::usage::api::{parse_requests, parse_usage};
use crate::usage::query::{self, UsageReport};
use crate::usage::when::now_ms;

/// The page's choices: its range, grouping and user filter (a user's id, empty for everyone).
struct UsageParams {
    range: String,
    group: String,
    user: String,
    /// The endpoint's query string.
    query: String,
}

/// The page's range, grouping and user -> the endpoint's parameters. A member's usage is the requests made for
/// them (the `user` filter forced to their id), by key unless they choose another grouping; an admin or viewer
/// filters by any user, or none.
fn usage_params(raw: Option<&str>, own: &Own) -> UsageParams {
    let member = own.0.as_ref().map(|u| u.id.trim().to_string());
    let mut range = "24h".to_string();
    let mut group = "model".to_string();
    let mut user = member.clone().unwrap_or_default();
    let mut grouped = false;
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "range" if matches!(v.as_ref(), "24h" | "7d" | "30d") => range = v.into_owned(),
            "group_by" => {
                grouped = true;
                if matches!(v.as_ref(), "model" | "account" | "key" | "dialect" | "user") {
                    group = v.into_owned()
                }
            }
            "user" if member.is_none() => user = v.trim().to_string(),
            _ => {}
        }
    }
    if member.is_some() && !grouped {
        group = "key".into();
    }
    let bucket = if range == "30d" { "day" } else { "hour" };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("from", &range).append_pair("bucket", bucket).append_pair("group_by", &group);
    if !user.is_empty() {
        query.append_pair("user", &user);
    }
    UsageParams { range, group, user, query: query.finish() }
}

pub(super) async fn report(dash: &St, query: &str) -> Result<UsageReport, String> {
    let (q, _) = parse_usage(Some(query), now_ms()).map_err(|e| e.message)?;
    dash.app.ledger.usage(q).await.map_err(|e| unreadable("usage", e))
}

/// What a page says when the ledger fails (`what` and the cause go to the log).
fn unreadable(what: &str, e: impl std::fmt::Display) -> String {
    tracing::error!("dashboard {what}: {e:#}");
    "The usage ledger could not be read; the gateway's log says why.".to_string()
}

#[derive(Serialize)]
pub(super) struct Bar {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    /// Errors: the part of the bar drawn on top.
    eh: f64,
    title: String,
}

/// Requests per bucket (all groups), with errors in a second colour: a 600 x 120 SVG's bars.
pub(super) fn bars(r: &UsageReport) -> (Vec<Bar>, u64) {
    grid(r, |t| (t.requests, t.errors), |time, req, err| format!("{time}: {req} requests, {err} errors"))
}

/// Tokens (input + output) per bucket of `r`: bars on the same grid as [`bars`].
fn token_bars(r: &UsageReport) -> (Vec<Bar>, u64) {
    grid(r, |t| (t.input_tokens + t.output_tokens, 0), |time, tokens, _| format!("{time}: {tokens} tokens"))
}

/// A bar per bucket of `r` on a 600 x 120 grid: the value `of` the buckets' totals (all groups), the part of it
/// drawn on top, and the bar's title.
fn grid(
    r: &UsageReport,
    of: impl Fn(&query::Totals) -> (u64, u64),
    title: impl Fn(&str, u64, u64) -> String,
) -> (Vec<Bar>, u64) {
    let mut buckets: std::collections::BTreeMap<i64, (u64, u64, String)> = Default::default();
    for p in r.series.iter().flat_map(|s| &s.points) {
        let e = buckets.entry(p.start).or_insert((0, 0, p.start_time.clone()));
        let (v, top) = of(&p.totals);
        e.0 += v;
        e.1 += top;
    }
    let step: i64 = if r.bucket == "day" { 86_400_000 } else { 3_600_000 };
    let first = r.from - r.from.rem_euclid(step);
    let n = (((r.to - first) + step - 1) / step).clamp(1, 800) as usize;
    let max = buckets.values().map(|b| b.0).max().unwrap_or(0).max(1);
    let w = 600.0 / n as f64;
    let bars = (0..n)
        .filter_map(|i| {
            let (v, top, time) = buckets.get(&(first + i as i64 * step))?;
            let h = 110.0 * *v as f64 / max as f64;
            let eh = 110.0 * *top as f64 / max as f64;
            Some(Bar { x: i as f64 * w, y: 120.0 - h, w: (w - 1.0).max(1.0), h, eh, title: title(time, *v, *top) })
        })
        .collect();
    (bars, max)
}

/// The users the filter offers (id, name): only to a role that may read the users (an admin); a viewer may still
/// filter by a user's id in the address, and a member sees only their own usage.
async fn user_choices(dash: &St, own: &Own, role: crate::users::Role) -> Vec<Value> {
    use crate::users::access::{Action, Decision, decide};
    if own.0.is_some() || decide(role, Action::UsersRead) != Decision::Allow {
        return Vec::new();
    }
    let store = dash.app.users.store().clone();
    match crate::users::blocking("store", move || store.list_users()).await {
        Ok(rows) => rows.into_iter().map(|u| json!({"id": u.id, "name": u.name})).collect(),
        Err(e) => {
            tracing::error!("dashboard usage: the users could not be read: {e:#}");
            Vec::new()
        }
    }
}

/// `GET /dashboard/usage?range=24h|7d|30d&group_by=model|account|key|dialect|user&user=<id>`; a member's own
/// usage only.
pub(crate) async fn usage_page(
    State(dash): State<St>,
    PageAccess(a): PageAccess,
    own: Own,
    RawQuery(raw): RawQuery,
) -> Response {
    let p = usage_params(raw.as_deref(), &own);
    let users = user_choices(&dash, &own, a.who.role()).await;
    let mut extra = json!({"range": p.range, "group_by": p.group, "user": p.user, "users": users, "query": p.query});
    match report(&dash, &p.query).await {
        Ok(r) => {
            let (bars, max) = bars(&r);
            let t = &r.totals;
            let ratio = if t.input_tokens > 0 { 100.0 * t.cached_tokens as f64 / t.input_tokens as f64 } else { 0.0 };
            let priced = r.series.iter().any(|s| s.totals.cost_usd.is_some());
            // The template shows totals per group; the points only feed the bars (a week by key holds thousands).
            let series: Vec<Value> = r.series.iter().map(|s| json!({"group": s.group, "totals": s.totals})).collect();
            extra["report"] = json!({"bucket": r.bucket, "totals": r.totals, "series": series});
            extra["bars"] = json!(bars);
            extra["max"] = max.into();
            extra["cached_ratio"] = format!("{ratio:.1}").into();
            extra["priced"] = priced.into();
        }
        Err(e) => extra["error"] = e.into(),
    }
    page(&dash, a, "Usage", "usage", extra)
}

fn csv(body: String, name: &'static str) -> Response {
    let csv = "text/csv; charset=utf-8";
    ([(header::CONTENT_TYPE, csv), (header::CONTENT_DISPOSITION, name), (header::CACHE_CONTROL, "no-store")], body)
        .into_response()
}

/// `GET /dashboard/api/usage.csv?` the page's parameters.
pub(crate) async fn usage_csv(State(dash): State<St>, _: ApiRead, own: Own, RawQuery(raw): RawQuery) -> Response {
    let query = usage_params(raw.as_deref(), &own).query;
    match report(&dash, &query).await.and_then(|r| query::usage_csv(&r).map_err(|e| e.to_string())) {
        Ok(body) => csv(body, "attachment; filename=\"codex-gateway-usage.csv\""),
        Err(e) => json_error(StatusCode::BAD_REQUEST, e),
    }
}

/// The filters the page passes on (empty ones dropped), plus the page size.
fn requests_query(raw: Option<&str>, limit: usize) -> (String, Value) {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    let mut shown = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if matches!(k.as_ref(), "key" | "account" | "model" | "status" | "before") && !v.trim().is_empty() {
            ser.append_pair(&k, v.trim());
            shown.insert(k.into_owned(), v.trim().to_string().into());
        }
    }
    ser.append_pair("limit", &limit.to_string());
    (ser.finish(), Value::Object(shown))
}

pub(super) async fn page_of(dash: &St, query: &str) -> Result<query::RequestsPage, String> {
    let (q, _) = parse_requests(Some(query), now_ms()).map_err(|e| e.message)?;
    dash.app.ledger.requests(q).await.map_err(|e| unreadable("requests", e))
}

/// Requests per minute as an SVG area: one x unit per minute on a `0 0 <minutes> 120` view box, numbers only.
fn rpm_area(counts: &[u32]) -> Value {
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let n = counts.len();
    let y = |c: u32| 120.0 - 110.0 * f64::from(c) / f64::from(max);
    let line: String = counts.iter().enumerate().map(|(i, c)| format!(" L{i},{:.1}", y(*c))).collect();
    let d = format!("M0,120{line} L{},120 Z", n.saturating_sub(1));
    let busiest = counts.iter().copied().max().unwrap_or(0);
    let last_hour: u32 = counts.iter().rev().take(60).sum();
    json!({"d": d, "minutes": n.max(1), "max": busiest, "last_hour_avg": rate(f64::from(last_hour) / 60.0)})
}

/// A rate for people: two decimals under 1 (a quiet gateway's 0.02 is not 0.0), one above.
fn rate(v: f64) -> String {
    if v < 1.0 { format!("{v:.2}") } else { format!("{v:.1}") }
}

/// The last day's charts (requests and errors, tokens, requests per minute), tokens since UTC midnight, and the
/// newest failed requests (4xx and 5xx), for the Overview.
pub(super) async fn overview_extras(dash: &St) -> Value {
    let now = now_ms();
    let midnight = now - now.rem_euclid(86_400_000);
    let chart = match report(dash, "from=24h&bucket=hour").await {
        Ok(r) => {
            let (bars, max) = bars(&r);
            let (tbars, tmax) = token_bars(&r);
            let today: u64 = r
                .series
                .iter()
                .flat_map(|s| &s.points)
                .filter(|p| p.start >= midnight)
                .map(|p| p.totals.input_tokens + p.totals.output_tokens)
                .sum();
            json!({"bars": bars, "max": max, "requests": r.totals.requests, "errors": r.totals.errors,
                   "tokens": r.totals.input_tokens + r.totals.output_tokens, "token_bars": tbars, "token_max": tmax,
                   "tokens_today": today})
        }
        Err(e) => json!({"error": e}),
    };
    let rpm = dash.app.ledger.requests_per_minute(now - 86_400_000, now).await;
    let rpm = match rpm {
        Ok(counts) => rpm_area(&counts),
        Err(e) => json!({"error": unreadable("requests per minute", e)}),
    };
    let mut errors = Vec::new();
    for class in ["5xx", "4xx"] {
        if let Ok(p) = page_of(dash, &format!("status={class}&limit=5")).await {
            errors.extend(p.requests);
        }
    }
    errors.sort_by_key(|r| std::cmp::Reverse((r.started_at, r.id)));
    errors.truncate(5);
    json!({"chart": chart, "rpm": rpm, "errors": errors})
}

/// A member's requests are those of one of their keys (revoked ones too: their past use is the user's), named in
/// the `key` filter.
fn own_key_checked(dash: &St, own: &Own, filters: &Value) -> Result<(), String> {
    let Some(user) = &own.0 else { return Ok(()) };
    let rows = dash.app.keys.store().list_keys().map_err(|e| {
        tracing::error!("dashboard: the keys could not be read: {e:#}");
        "The key store could not be read.".to_string()
    })?;
    let keys: Vec<String> =
        rows.into_iter().filter(|k| k.owner.as_deref() == Some(user.id.as_str())).map(|k| k.id).collect();
    let key = filters.get("key").and_then(Value::as_str).unwrap_or_default();
    if keys.iter().any(|k| k == key) {
        return Ok(());
    }
    Err(format!("Your requests are listed by key: filter on one of your keys ({}).", keys.join(", ")))
}

/// `GET /dashboard/requests?key=&account=&model=&status=&before=`: newest first, 50 a page; a member names one
/// of their keys.
pub(crate) async fn requests_page(
    State(dash): State<St>,
    PageAccess(a): PageAccess,
    own: Own,
    RawQuery(raw): RawQuery,
) -> Response {
    let (query, filters) = requests_query(raw.as_deref(), 50);
    let mut extra = json!({"f": filters});
    if let Err(e) = own_key_checked(&dash, &own, &filters) {
        extra["error"] = e.into();
        return page(&dash, a, "Requests", "requests", extra);
    }
    match page_of(&dash, &query).await {
        Ok(p) => {
            let next = p.next.as_ref().map(|n| {
                let mut ser = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in filters.as_object().into_iter().flatten().filter(|(k, _)| *k != "before") {
                    ser.append_pair(k, v.as_str().unwrap_or_default());
                }
                ser.append_pair("before", n);
                ser.finish()
            });
            extra["rows"] = json!(p.requests);
            extra["next"] = json!(next);
        }
        Err(e) => extra["error"] = e.into(),
    }
    extra["csv_query"] = requests_query(raw.as_deref(), 1000).0.into();
    page(&dash, a, "Requests", "requests", extra)
}

/// `GET /dashboard/api/requests.csv?` the page's filters (up to 1,000 rows).
pub(crate) async fn requests_csv(State(dash): State<St>, _: ApiRead, own: Own, RawQuery(raw): RawQuery) -> Response {
    let (query, filters) = requests_query(raw.as_deref(), 1000);
    if let Err(e) = own_key_checked(&dash, &own, &filters) {
        return json_error(StatusCode::FORBIDDEN, e);
    }
    match page_of(&dash, &query).await.and_then(|p| query::requests_csv(&p).map_err(|e| e.to_string())) {
        Ok(body) => csv(body, "attachment; filename=\"codex-gateway-requests.csv\""),
        Err(e) => json_error(StatusCode::BAD_REQUEST, e),
    }
}
