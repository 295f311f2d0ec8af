//! Model names as clients send them: suffixes for reasoning effort and the Fast tier.
//!
//! `gpt-5.4-high` means model `gpt-5.4` with effort `high`; `gpt-5.4-fast` asks for the priority tier;
//! the two combine in either order (`gpt-5.4-high-fast`, `gpt-5.4-fast-high`).

/// Reasoning efforts the backend accepts.
pub const EFFORTS: [&str; 6] = ["none", "minimal", "low", "medium", "high", "xhigh"];

/// A client model id split into the upstream slug and the options its suffixes asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// What the client asked for, echoed back in responses.
    pub requested: String,
    /// The upstream slug.
    pub slug: String,
    pub effort: Option<String>,
    pub fast: bool,
}

impl ModelRef {
    pub fn parse(requested: &str) -> ModelRef {
        let mut slug = requested.trim();
        let mut effort = None;
        let mut fast = false;
        loop {
            if let Some(rest) = slug.strip_suffix("-fast") {
                if fast || rest.is_empty() {
                    break;
                }
                fast = true;
                slug = rest;
                continue;
            }
            let found = EFFORTS.iter().find(|e| {
                slug.len() > e.len() + 1 && slug.ends_with(*e) && slug.as_bytes()[slug.len() - e.len() - 1] == b'-'
            });
            match (found, &effort) {
                (Some(e), None) => {
                    effort = Some((*e).to_string());
                    slug = &slug[..slug.len() - e.len() - 1];
                }
                _ => break,
            }
        }
        ModelRef { requested: requested.to_string(), slug: slug.to_string(), effort, fast }
    }
}

/// Map a client effort word onto one the backend accepts (`max` is not accepted; `xhigh` is the top).
pub fn normalize_effort(effort: &str) -> Option<&'static str> {
    match effort.to_ascii_lowercase().as_str() {
        "none" => Some("none"),
        "minimal" => Some("minimal"),
        "low" => Some("low"),
        "medium" => Some("medium"),
        "high" => Some("high"),
        "xhigh" | "max" => Some("xhigh"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (String, Option<String>, bool) {
        let m = ModelRef::parse(s);
        (m.slug, m.effort, m.fast)
    }

    #[test]
    fn suffixes() {
        assert_eq!(p("gpt-5.4"), ("gpt-5.4".into(), None, false));
        assert_eq!(p("gpt-5.4-high"), ("gpt-5.4".into(), Some("high".into()), false));
        assert_eq!(p("gpt-5.4-xhigh-fast"), ("gpt-5.4".into(), Some("xhigh".into()), true));
        assert_eq!(p("gpt-5.4-fast-low"), ("gpt-5.4".into(), Some("low".into()), true));
        assert_eq!(p("gpt-5.4-mini"), ("gpt-5.4-mini".into(), None, false));
        assert_eq!(p("gpt-5.4-mini-medium"), ("gpt-5.4-mini".into(), Some("medium".into()), false));
        assert_eq!(p("-high"), ("-high".into(), None, false));
    }

    #[test]
    fn efforts() {
        assert_eq!(normalize_effort("max"), Some("xhigh"));
        assert_eq!(normalize_effort("HIGH"), Some("high"));
        assert_eq!(normalize_effort("ultra"), None);
    }
}
