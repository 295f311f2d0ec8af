//! The official Codex CLI's `$CODEX_HOME/auth.json`: read it, and (in linked mode only) write refreshed tokens
//! back atomically with mode 0600 so the CLI and the gateway keep sharing one valid login.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

/// An RFC 3339 time (`2025-01-02T03:04:05.123Z` or with an offset) -> unix seconds, the fraction dropped.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(OffsetDateTime::unix_timestamp)
}

/// Unix seconds -> `2025-01-02T03:04:05Z` (whole seconds carry no fraction); empty outside the years 0000-9999.
pub fn format_rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2025-03-04T05:06:07.123456Z"), Some(1741064767));
        assert_eq!(parse_rfc3339("2025-03-04T07:06:07+02:00"), Some(1741064767));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.5z"), Some(-1), "the fraction is dropped, towards the past");
        assert_eq!(format_rfc3339(1741064767), "2025-03-04T05:06:07Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(parse_rfc3339("2025-02-29T00:00:00Z"), None, "no such day");
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
