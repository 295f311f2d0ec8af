//! The official Codex CLI's `$CODEX_HOME/auth.json`: read it, and (in linked mode only) write refreshed tokens
//! back atomically with mode 0600 so the CLI and the gateway keep sharing one valid login.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Tokens, jwt, now_unix};

#[derive(Debug, Deserialize, Serialize, Default)]
pub struct AuthFile {
    #[serde(rename = "OPENAI_API_KEY")]
    pub openai_api_key: Option<String>,
    pub tokens: Option<FileTokens>,
    pub last_refresh: Option<String>,
    /// Fields we do not know are written back untouched.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize, Serialize, Default, Clone)]
#[serde(default)]
pub struct FileTokens {
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: String,
    pub account_id: Option<String>,
}

/// What an auth.json holds, in the gateway's terms.
pub enum FileCredentials {
    Chatgpt(Tokens),
    ApiKey(String),
}

pub fn read(path: &Path) -> anyhow::Result<AuthFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a Codex auth.json", path.display()))
}

impl AuthFile {
    /// The credentials in the file: ChatGPT tokens first, else an API key.
    pub fn credentials(&self) -> Option<FileCredentials> {
        if let Some(t) = &self.tokens
            && (!t.refresh_token.is_empty() || !t.access_token.is_empty())
        {
            let account_id = t
                .account_id
                .clone()
                .filter(|a| !a.is_empty())
                .or_else(|| jwt::claims(&t.id_token).and_then(|c| c.account_id))
                .or_else(|| jwt::claims(&t.access_token).and_then(|c| c.account_id))
                .unwrap_or_default();
            let last_refresh = self.last_refresh.as_deref().and_then(parse_rfc3339).unwrap_or(0);
            return Some(FileCredentials::Chatgpt(Tokens {
                id_token: t.id_token.clone(),
                access_token: t.access_token.clone(),
                refresh_token: t.refresh_token.clone(),
                account_id,
                last_refresh,
            }));
        }
        self.openai_api_key.clone().filter(|k| !k.is_empty()).map(FileCredentials::ApiKey)
    }
}

/// Replace the tokens in the file at `path`, keeping every other field, atomically (temp file + rename), 0600.
pub fn write_tokens(path: &Path, tokens: &Tokens) -> anyhow::Result<()> {
    let mut file = read(path).unwrap_or_default();
    file.tokens = Some(FileTokens {
        id_token: tokens.id_token.clone(),
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        account_id: Some(tokens.account_id.clone()),
    });
    file.last_refresh = Some(format_rfc3339(now_unix()));
    let bytes = serde_json::to_vec_pretty(&file)?;
    write_private_atomic(path, &bytes)
}

/// Write `bytes` to `path` via a temp file in the same directory, fsync, rename; mode 0600 (on Windows the
/// folder's ACL: store::private_options).
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("path has no parent directory")?;
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut options = crate::store::private_options();
        options.write(true).create(true).truncate(true);
        let mut f = options.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Parse the subset of RFC 3339 that auth.json uses (`2025-01-02T03:04:05.123Z` or with an offset).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = s.get(19..)?;
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600 + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - offset)
}

pub fn format_rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86400);
    let secs = unix.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

// Howard Hinnant's civil-date algorithms: exact for the proleptic Gregorian calendar.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2025-03-04T05:06:07.123456Z"), Some(1741064767));
        assert_eq!(parse_rfc3339("2025-03-04T07:06:07+02:00"), Some(1741064767));
        assert_eq!(format_rfc3339(1741064767), "2025-03-04T05:06:07Z");
        assert_eq!(parse_rfc3339("garbage"), None);
        assert_eq!(parse_rfc3339("2025-03-04T05:06:0é+02:00"), None, "never panics on odd bytes");
        assert_eq!(parse_rfc3339("2025-03-04T05:06:07+0é:00"), None);
    }

    #[test]
    fn write_keeps_unknown_fields_and_is_private() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cg-authfile-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("auth.json");
        std::fs::write(
            &path,
            r#"{"auth_mode":"chatgpt","OPENAI_API_KEY":null,"tokens":{"id_token":"i","access_token":"a","refresh_token":"r","account_id":"acc"}}"#,
        )?;
        let t = Tokens {
            id_token: "i2".into(),
            access_token: "a2".into(),
            refresh_token: "r2".into(),
            account_id: "acc".into(),
            last_refresh: 0,
        };
        write_tokens(&path, &t)?;
        let back = read(&path)?;
        assert_eq!(back.other.get("auth_mode").and_then(Value::as_str), Some("chatgpt"));
        assert_eq!(back.tokens.map(|t| t.refresh_token), Some("r2".into()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
