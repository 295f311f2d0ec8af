//! The installation id of a linked login: the file the official client keeps beside its auth.json
//! (`$CODEX_HOME/installation_id`: a lowercase hyphenated UUID, no newline, mode 0644; made at its first run and
//! made anew when it does not parse). The gateway reads it, or makes it as the official client would, so the CLI
//! and the gateway on one machine present one id. Stored accounts keep theirs in the store.

use std::io::Write;
use std::path::Path;

/// The id in the `installation_id` file beside `auth_json`, or `fresh` written there when it is missing or
/// does not parse.
pub(super) fn beside(auth_json: &Path, fresh: &str) -> anyhow::Result<Option<String>> {
    let Some(dir) = auth_json.parent() else { return Ok(None) };
    let path = dir.join("installation_id");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(id) = uuid::Uuid::parse_str(text.trim())
    {
        return Ok(Some(id.hyphenated().to_string()));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o644);
    }
    let mut file = options.open(&path)?;
    file.write_all(fresh.as_bytes())?;
    Ok(Some(fresh.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linked_login_keeps_the_official_clients_id_or_makes_one_as_it_would() {
        let dir = std::env::temp_dir().join(format!("gw-installation-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let auth = dir.join("auth.json");
        let made = beside(&auth, "1bc67a53-3f9d-4252-b282-03a2b0218264").ok().flatten();
        assert_eq!(made.as_deref(), Some("1bc67a53-3f9d-4252-b282-03a2b0218264"));
        let again = beside(&auth, "00000000-0000-4000-8000-000000000000").ok().flatten();
        assert_eq!(again, made, "kept across restarts");
        std::fs::write(dir.join("installation_id"), "not a uuid").unwrap_or_else(|e| panic!("{e}"));
        let remade = beside(&auth, "00000000-0000-4000-8000-000000000001").ok().flatten();
        assert_eq!(remade.as_deref(), Some("00000000-0000-4000-8000-000000000001"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
