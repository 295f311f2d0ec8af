//! The read's filters as the admin API and the dashboard take them: `actor`, `action` (a prefix), `since` and
//! `until` (the instants `usage` accepts: unix seconds or ms, RFC 3339, a date, `7d`), `limit` (default 200, at
//! most 5,000).

use std::collections::HashMap;

use crate::store::audit::AuditFilter;

const DEFAULT_LIMIT: u32 = 200;
const MAX_LIMIT: u32 = 5_000;

/// Why a query was refused: the parameter and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParam {
    pub name: &'static str,
    pub value: String,
}

/// The filter a query string asks for (unknown parameters are ignored; empty ones mean "any").
pub fn parse(raw: Option<&str>, now_ms: i64) -> Result<AuditFilter, BadParam> {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect();
    let get = |name: &str| params.get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let instant = |name: &'static str| -> Result<Option<i64>, BadParam> {
        match get(name) {
            None => Ok(None),
            Some(v) => crate::usage::when::parse_instant(&v, now_ms).map(Some).ok_or(BadParam { name, value: v }),
        }
    };
    let limit = match get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v.parse::<u32>().ok().filter(|l| *l > 0).ok_or(BadParam { name: "limit", value: v })?,
    };
    Ok(AuditFilter {
        actor: get("actor"),
        action: get("action"),
        since_ms: instant("since")?,
        until_ms: instant("until")?,
        limit: Some(limit.min(MAX_LIMIT)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_bad_values_are_named() {
        let f = parse(Some("actor=admin-key&action=account.&since=1000&limit=9999"), 0);
        let f = f.unwrap_or_default();
        assert_eq!(f.actor.as_deref(), Some("admin-key"));
        assert_eq!(f.action.as_deref(), Some("account."));
        assert_eq!(f.since_ms, Some(1_000_000));
        assert_eq!(f.limit, Some(MAX_LIMIT));
        assert_eq!(parse(Some("until=soon"), 0).err().map(|b| b.name), Some("until"));
        assert_eq!(parse(None, 0).map(|f| f.limit), Ok(Some(DEFAULT_LIMIT)));
    }
}
