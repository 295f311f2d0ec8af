//! The Ollama model listing shapes (`/api/tags`, `/api/show`, `/api/ps`) for Codex models, and timestamps.
//!
//! Codex models are remote, so sizes are 0 and the digest is a hash of the name. `/api/show` must carry
//! `model_info` with `<architecture>.context_length` and `capabilities` including `tools`: VS Code Copilot hides
//! models without tools and fails on a null `model_info` (spec §4).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The Ollama version the bridge reports (clients check for a minimum).
pub const VERSION: &str = "0.13.0";

/// The architecture name used in `model_info` keys.
const ARCH: &str = "gpt";

/// A fixed modification time: the backend does not report one.
const MODIFIED_AT: &str = "2026-01-01T00:00:00Z";

fn digest(name: &str) -> String {
    Sha256::digest(name.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn model_details() -> Value {
    json!({
        "parent_model": "",
        "format": "remote",
        "family": ARCH,
        "families": [ARCH],
        "parameter_size": "",
        "quantization_level": "",
    })
}

/// One `/api/tags` entry.
pub fn tag_entry(name: &str) -> Value {
    json!({
        "name": name,
        "model": name,
        "modified_at": MODIFIED_AT,
        "size": 0,
        "digest": digest(name),
        "details": model_details(),
    })
}

/// One `/api/ps` entry ("loaded" for as long as the gateway runs).
pub fn ps_entry(name: &str, context_window: u64) -> Value {
    json!({
        "name": name,
        "model": name,
        "size": 0,
        "digest": digest(name),
        "details": model_details(),
        "expires_at": "2099-01-01T00:00:00Z",
        "size_vram": 0,
        "context_length": context_window,
    })
}

/// The `/api/show` answer for a model with the given context window; `thinking` and `vision` as its catalog entry
/// says (efforts listed, image input).
pub fn show_response(name: &str, slug: &str, context_window: u64, thinking: bool, vision: bool) -> Value {
    let mut capabilities = vec!["completion", "tools"];
    if thinking {
        capabilities.push("thinking");
    }
    if vision {
        capabilities.push("vision");
    }
    json!({
        "license": "",
        "modelfile": format!("# Served by codex-gateway from the Codex backend.\nFROM {slug}\n"),
        "parameters": "",
        "template": "{{ .Prompt }}",
        "details": model_details(),
        "model_info": {
            "general.architecture": ARCH,
            "general.basename": slug,
            "general.parameter_count": 0,
            format!("{ARCH}.context_length"): context_window,
        },
        "capabilities": capabilities,
        "modified_at": MODIFIED_AT,
        "name": name,
    })
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` for a Unix time (UTC), as Ollama writes `created_at`; 1970 past the year 9999.
pub fn rfc3339(unix_secs: u64, nanos: u32) -> String {
    let t = i64::try_from(unix_secs).ok().and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
    let t = t.unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let (y, m, d) = t.to_calendar_date();
    format!("{y:04}-{:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", u8::from(m), t.hour(), t.minute(), t.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_767_225_600 + 3_723, 120_000_000), "2026-01-01T01:02:03.120000000Z");
        assert_eq!(rfc3339(4_107_542_399, 0), "2100-02-28T23:59:59.000000000Z");
    }

    #[test]
    fn show_has_context_length_and_tools() {
        let v = show_response("gpt-5.4", "gpt-5.4", 272_000, true, true);
        assert_eq!(v["model_info"]["gpt.context_length"], 272_000);
        assert_eq!(v["model_info"]["general.architecture"], "gpt");
        assert_eq!(v["capabilities"], json!(["completion", "tools", "thinking", "vision"]));
        let v = show_response("m", "m", 128_000, false, false);
        assert_eq!(v["capabilities"], json!(["completion", "tools"]));
    }
}
