//! Instants as the usage API and CLI accept them (`from`, `to`, `before`, `--since`) and print them.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use crate::auth::now_ms;

/// A duration back from now: `30m`, `24h`, `7d`, `2w`; `None` when `s` is not one.
pub fn parse_ago(s: &str) -> Option<i64> {
    let unit = match s.as_bytes().last()? {
        b'm' => 60_000,
        b'h' => 3_600_000,
        b'd' => 86_400_000,
        b'w' => 7 * 86_400_000,
        _ => return None,
    };
    let n: i64 = s[..s.len() - 1].parse().ok().filter(|n| *n >= 0)?;
    n.checked_mul(unit)
}

/// An instant: unix seconds or milliseconds (13 digits and more), an RFC 3339 date-time
/// (`2026-11-22T10:00:00Z`), a date (`2026-11-22`, midnight UTC), or a duration back from `now_ms` (`7d`).
pub fn parse_instant(s: &str, now_ms: i64) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = s.parse().ok()?;
        return Some(if n >= 100_000_000_000 { n } else { n.checked_mul(1000)? });
    }
    if let Some(ago) = parse_ago(s) {
        return Some(now_ms - ago);
    }
    let full = if s.len() == 10 { format!("{s}T00:00:00Z") } else { s.to_string() };
    let t = OffsetDateTime::parse(&full, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// RFC 3339 in UTC with milliseconds.
pub fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_every_accepted_form() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_instant("1700000000", now), Some(1_700_000_000_000));
        assert_eq!(parse_instant("1700000000123", now), Some(1_700_000_000_123));
        assert_eq!(parse_instant("7d", now), Some(now - 7 * 86_400_000));
        assert_eq!(parse_instant("90m", now), Some(now - 90 * 60_000));
        assert_eq!(parse_instant("2023-11-14T22:13:20Z", now), Some(1_700_000_000_000));
        assert_eq!(parse_instant("2023-11-14T23:13:20+01:00", now), Some(1_700_000_000_000));
        assert_eq!(parse_instant("2023-11-14", now), Some(1_699_920_000_000));
        for bad in ["", "yesterday", "7x", "-5d", "2023-13-01", "1.5d"] {
            assert_eq!(parse_instant(bad, now), None, "{bad}");
        }
        assert_eq!(format_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
