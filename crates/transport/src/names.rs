//! The names of the response headers the Codex backend sends on every answer, as static `HeaderName`s.
//!
//! Why: `HeaderName::from_bytes` copies every name the `http` crate does not know into an allocation of its own,
//! and the backend's are nearly all of that kind (`x-codex-*`, `openai-model`, `x-request-id`). The HTTP/1.1
//! head parser looks a received name up here first: a name found is a constant (no allocation, and a clone of it
//! later, as the rate-limit headers take theirs, costs nothing), and anything else goes through `from_bytes` as
//! before. Only the exact lowercase spelling matches; another spelling takes the general path, which lowercases.

use http::HeaderName;

/// The backend's usual names, made (and checked) at compile time. A `static`: a `const` would be a fresh array (and twenty drops) at every use.
static KNOWN: [HeaderName; 20] = [
    HeaderName::from_static("x-codex-primary-used-percent"),
    HeaderName::from_static("x-codex-primary-window-minutes"),
    HeaderName::from_static("x-codex-primary-reset-at"),
    HeaderName::from_static("x-codex-primary-reset-after-seconds"),
    HeaderName::from_static("x-codex-primary-over-secondary-limit-percent"),
    HeaderName::from_static("x-codex-secondary-used-percent"),
    HeaderName::from_static("x-codex-secondary-window-minutes"),
    HeaderName::from_static("x-codex-secondary-reset-at"),
    HeaderName::from_static("x-codex-secondary-reset-after-seconds"),
    HeaderName::from_static("x-codex-credits-has-credits"),
    HeaderName::from_static("x-codex-credits-unlimited"),
    HeaderName::from_static("x-codex-credits-balance"),
    HeaderName::from_static("x-codex-turn-state"),
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("openai-model"),
    HeaderName::from_static("openai-processing-ms"),
    HeaderName::from_static("openai-version"),
    HeaderName::from_static("x-openai-proxy-wasm"),
    HeaderName::from_static("cf-ray"),
    HeaderName::from_static("cf-cache-status"),
];

/// The name `raw` spells, when it is one of the backend's usual ones (lowercase, as the backend sends them).
pub fn known(raw: &[u8]) -> Option<HeaderName> {
    // About twenty short names: a scan that compares lengths first is as quick as a hash and needs no table.
    KNOWN.iter().find(|name| name.as_str().as_bytes() == raw).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_are_the_names_they_spell_and_others_are_left_to_the_general_path() {
        for raw in ["x-codex-primary-used-percent", "x-codex-credits-balance", "x-request-id", "openai-model"] {
            let name = known(raw.as_bytes()).unwrap_or_else(|| panic!("{raw} is known"));
            assert_eq!(name.as_str(), raw);
            assert_eq!(name, HeaderName::from_bytes(raw.as_bytes()).unwrap_or_else(|e| panic!("{e}")));
        }
        // Another spelling, or a name not in the table: not known here (the parser lowercases it via from_bytes).
        assert!(known(b"X-Request-Id").is_none());
        assert!(known(b"x-codex-bengalfox-primary-used-percent").is_none());
        assert!(known(b"").is_none());
    }
}
