//! Model names as clients send them, and the reasoning efforts the gateway knows.
//!
//! `gpt-5.4-high` means model `gpt-5.4` with effort `high`; `gpt-5.4-fast` asks for the priority tier;
//! the two combine in either order (`gpt-5.4-high-fast`, `gpt-5.4-fast-high`). Which models exist and which
//! efforts each takes is the backend's to say (its `/models` catalog, read by the gateway): nothing here lists
//! models. What is here is the vocabulary: the efforts in their order ([`Effort`]), a set of them
//! ([`EffortSet`]) and how a wanted effort meets the set a model takes ([`EffortSet::clamp`]), and the tiers
//! a client's own model families stand for ([`Tier`], [`Lineup`]), whose slugs the catalog names.

/// A reasoning effort, in increasing order of depth. The backend has added efforts before (`xhigh`, then `max`
/// and `ultra` with the 0.171 catalog); an effort the gateway does not know is not one it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Effort {
    None,
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
    Max,
    Ultra,
}

impl Effort {
    /// Every effort, in order.
    pub const ALL: [Effort; 8] = [
        Effort::None,
        Effort::Minimal,
        Effort::Low,
        Effort::Medium,
        Effort::High,
        Effort::Xhigh,
        Effort::Max,
        Effort::Ultra,
    ];

    /// The backend's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Effort::None => "none",
            Effort::Minimal => "minimal",
            Effort::Low => "low",
            Effort::Medium => "medium",
            Effort::High => "high",
            Effort::Xhigh => "xhigh",
            Effort::Max => "max",
            Effort::Ultra => "ultra",
        }
    }

    /// A word as the backend spells it (exactly); `None` for anything else.
    pub fn parse(word: &str) -> Option<Effort> {
        Effort::ALL.into_iter().find(|e| e.as_str() == word)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The efforts the gateway knows, as the backend spells them, in order (the suffix vocabulary of model ids).
pub const EFFORTS: [&str; 8] = ["none", "minimal", "low", "medium", "high", "xhigh", "max", "ultra"];

/// A set of efforts: what a model's catalog entry lists, read once per request (a copy, no allocation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EffortSet(u16);

impl EffortSet {
    /// No effort: a model whose catalog lists none (or no catalog entry at all).
    pub const EMPTY: EffortSet = EffortSet(0);

    /// The efforts every model took before catalogs listed their own, `none` to `xhigh`: what an effort is held to
    /// when no catalog says what the model takes (an API-key account's configured model; the built-in list before
    /// the first fetch).
    pub const CLASSIC: EffortSet = EffortSet(
        (1 << Effort::None as u16)
            | (1 << Effort::Minimal as u16)
            | (1 << Effort::Low as u16)
            | (1 << Effort::Medium as u16)
            | (1 << Effort::High as u16)
            | (1 << Effort::Xhigh as u16),
    );

    /// The efforts among `words` the gateway knows (others are skipped: it cannot send what it cannot name).
    pub fn from_words<'a>(words: impl IntoIterator<Item = &'a str>) -> EffortSet {
        words.into_iter().filter_map(Effort::parse).fold(EffortSet::EMPTY, EffortSet::with)
    }

    pub fn with(self, e: Effort) -> EffortSet {
        EffortSet(self.0 | e.bit())
    }

    pub fn contains(self, e: Effort) -> bool {
        self.0 & e.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The efforts in both sets.
    pub fn intersect(self, other: EffortSet) -> EffortSet {
        EffortSet(self.0 & other.0)
    }

    /// The efforts of the set, in order.
    pub fn iter(self) -> impl Iterator<Item = Effort> {
        Effort::ALL.into_iter().filter(move |e| self.contains(*e))
    }

    /// The deepest effort of the set.
    pub fn top(self) -> Option<Effort> {
        self.iter().last()
    }

    /// The effort to send for `wanted` to a model that takes this set: `wanted` itself when the model takes it,
    /// else the deepest one below it, else (nothing below: `none` asked of a model that reasons at least `low`) the
    /// lightest one above. An empty set is [`EffortSet::CLASSIC`]: no catalog speaks for the model.
    pub fn clamp(self, wanted: Effort) -> Effort {
        let set = if self.is_empty() { EffortSet::CLASSIC } else { self };
        if set.contains(wanted) {
            return wanted;
        }
        set.iter().filter(|e| *e < wanted).last().or_else(|| set.iter().find(|e| *e > wanted)).unwrap_or(wanted)
    }
}

/// A client model id split into the upstream slug and the options its suffixes asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    /// What the client asked for, echoed back in responses.
    pub requested: String,
    /// The Codex model id the suffixes were read from (the alias target for a client's own model id), kept so
    /// that a slug which itself ends like a suffix (`gpt-5.1-codex-max`) can be read whole: [`ModelRef::settle`].
    pub id: String,
    /// The upstream slug.
    pub slug: String,
    pub effort: Option<String>,
    pub fast: bool,
}

impl ModelRef {
    pub fn parse(requested: &str) -> ModelRef {
        let (slug, effort, fast) = split(requested.trim(), &|_| false);
        ModelRef {
            requested: requested.to_string(),
            id: requested.trim().to_string(),
            slug: slug.to_string(),
            effort: effort.map(|e| e.as_str().to_string()),
            fast,
        }
    }

    /// Whether the id carried an effort or Fast suffix.
    pub fn suffixed(&self) -> bool {
        self.slug != self.id
    }

    /// Read the id again, keeping as the slug the longest part that `listed` (the catalog) names: a model whose
    /// slug ends in an effort word is that model, not a shorter one at that effort. A Fast tier asked for by a
    /// request field rather than by the suffix stays. Whether anything changed.
    pub fn settle(&mut self, listed: &dyn Fn(&str) -> bool) -> bool {
        let (slug, effort, fast) = split(&self.id, listed);
        if slug == self.slug {
            return false;
        }
        let tier_fast = self.fast && !split(&self.id, &|_| false).2;
        self.slug = slug.to_string();
        self.effort = effort.map(|e| e.as_str().to_string());
        self.fast = fast || tier_fast;
        true
    }
}

/// `(slug, effort, fast)` of an id: suffixes taken off its end while the rest is not a slug `listed` names.
fn split<'a>(id: &'a str, listed: &dyn Fn(&str) -> bool) -> (&'a str, Option<Effort>, bool) {
    let mut slug = id;
    let mut effort = None;
    let mut fast = false;
    while !listed(slug) {
        if let Some(rest) = slug.strip_suffix("-fast") {
            if fast || rest.is_empty() {
                break;
            }
            fast = true;
            slug = rest;
            continue;
        }
        let found = slug.rsplit_once('-').filter(|(rest, _)| !rest.is_empty()).and_then(|(rest, word)| {
            let e = Effort::parse(word)?;
            Some((rest, e))
        });
        match (found, effort) {
            (Some((rest, e)), None) => {
                effort = Some(e);
                slug = rest;
            }
            _ => break,
        }
    }
    (slug, effort, fast)
}

/// Map a client effort word onto the gateway's vocabulary (any case); `None` for a word it does not know. Whether
/// the model takes it is decided later, against its catalog entry ([`EffortSet::clamp`]).
pub fn normalize_effort(effort: &str) -> Option<&'static str> {
    Effort::parse(&effort.to_ascii_lowercase()).map(Effort::as_str)
}

/// What a client's own model family stands for (design): Claude's opus, sonnet and haiku, Gemini's pro, flash
/// and flash-lite name a vendor's best model, the one after it, and a small fast one. Which Codex models those
/// are is the catalog's to say ([`Lineup`]), so a new model takes its place without a release of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The catalog's first model.
    Top,
    /// The catalog's second model (the first when it lists one).
    Next,
    /// The catalog's first small model (`-mini`, `-nano`, `-lite`), else the next one.
    Small,
}

/// The slugs the tiers stand for, read from the gateway's catalog; the family resolvers of the Anthropic and
/// Gemini dialects ask it only for a client id no alias names.
pub trait Lineup {
    fn slug(&self, tier: Tier) -> String;
}

/// A fixed lineup, `[top, next, small]` (tests, and callers that know their catalog).
impl Lineup for [&str; 3] {
    fn slug(&self, tier: Tier) -> String {
        match tier {
            Tier::Top => self[0],
            Tier::Next => self[1],
            Tier::Small => self[2],
        }
        .to_string()
    }
}

/// Whether a slug names a small model of its family (a segment `mini`, `nano` or `lite`).
pub fn is_small(slug: &str) -> bool {
    slug.split('-').any(|part| matches!(part, "mini" | "nano" | "lite"))
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
        assert_eq!(p("gpt-6.2-sol-max"), ("gpt-6.2-sol".into(), Some("max".into()), false));
        assert_eq!(p("gpt-6.2-astra-ultra-fast"), ("gpt-6.2-astra".into(), Some("ultra".into()), true));
        assert_eq!(p("-high"), ("-high".into(), None, false));
        assert_eq!(p("gpt-5.4-high-low"), ("gpt-5.4-high".into(), Some("low".into()), false));
    }

    /// A slug that ends in an effort word is read whole when the catalog lists it; the effort of a further suffix
    /// and a Fast tier asked for by a request field stay.
    #[test]
    fn settle_keeps_a_listed_slug_whole() {
        let listed = |s: &str| matches!(s, "gpt-5.1-codex-max" | "gpt-5.1-codex");
        let mut m = ModelRef::parse("gpt-5.1-codex-max");
        assert_eq!((m.slug.as_str(), m.effort.as_deref()), ("gpt-5.1-codex", Some("max")));
        assert!(m.suffixed());
        assert!(m.settle(&listed));
        assert_eq!((m.slug.as_str(), m.effort.as_deref(), m.fast), ("gpt-5.1-codex-max", None, false));
        // One effort suffix is read: the slug before it is already the listed one.
        let mut m = ModelRef::parse("gpt-5.1-codex-max-high-fast");
        assert!(!m.settle(&listed));
        assert_eq!((m.slug.as_str(), m.effort.as_deref(), m.fast), ("gpt-5.1-codex-max", Some("high"), true));
        let mut m = ModelRef::parse("gpt-5.1-codex-max-fast");
        assert!(m.settle(&listed));
        assert_eq!((m.slug.as_str(), m.effort.as_deref(), m.fast), ("gpt-5.1-codex-max", None, true));
        let mut m = ModelRef::parse("gpt-5.1-codex-max");
        m.fast = true;
        assert!(m.settle(&listed));
        assert!(m.fast, "the tier a request field asked for stays");
        let mut m = ModelRef::parse("gpt-5.4-max");
        assert!(!m.settle(&listed), "nothing longer is listed");
        assert_eq!((m.slug.as_str(), m.effort.as_deref()), ("gpt-5.4", Some("max")));
    }

    #[test]
    fn efforts() {
        assert_eq!(normalize_effort("max"), Some("max"));
        assert_eq!(normalize_effort("ULTRA"), Some("ultra"));
        assert_eq!(normalize_effort("HIGH"), Some("high"));
        assert_eq!(normalize_effort("extreme"), None);
        assert_eq!(EFFORTS.map(|w| Effort::parse(w).map(Effort::as_str)), EFFORTS.map(Some));
    }

    #[test]
    fn clamping_to_what_a_model_takes() {
        let old = EffortSet::from_words(["low", "medium", "high", "xhigh"]);
        let new = EffortSet::from_words(["low", "medium", "high", "xhigh", "max", "ultra", "hyper"]);
        assert_eq!(
            new.iter().map(Effort::as_str).collect::<Vec<_>>(),
            ["low", "medium", "high", "xhigh", "max", "ultra"]
        );
        assert_eq!(old.clamp(Effort::Max), Effort::Xhigh);
        assert_eq!(old.clamp(Effort::Ultra), Effort::Xhigh);
        assert_eq!(old.clamp(Effort::None), Effort::Low);
        assert_eq!(old.clamp(Effort::Minimal), Effort::Low);
        assert_eq!(old.clamp(Effort::High), Effort::High);
        assert_eq!(new.clamp(Effort::Max), Effort::Max);
        assert_eq!(new.clamp(Effort::Ultra), Effort::Ultra);
        assert_eq!(new.top(), Some(Effort::Ultra));
        let gappy = EffortSet::from_words(["low", "high", "ultra"]);
        assert_eq!(gappy.clamp(Effort::Medium), Effort::Low);
        assert_eq!(gappy.clamp(Effort::Max), Effort::High);
        // No catalog: the efforts every model took before catalogs listed them.
        assert_eq!(EffortSet::EMPTY.clamp(Effort::None), Effort::None);
        assert_eq!(EffortSet::EMPTY.clamp(Effort::Ultra), Effort::Xhigh);
        assert_eq!(old.intersect(new), old);
    }

    #[test]
    fn tiers() {
        let lineup = ["gpt-6.2-sol", "gpt-6.2-astra", "gpt-5.4-mini"];
        assert_eq!(lineup.slug(Tier::Top), "gpt-6.2-sol");
        assert_eq!(lineup.slug(Tier::Small), "gpt-5.4-mini");
        assert!(is_small("gpt-5.4-mini") && is_small("gpt-5-nano") && !is_small("gpt-5.5") && !is_small("gemini"));
    }
}
