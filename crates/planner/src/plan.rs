//! ChatGPT plans and what each of their quota windows holds: the prior the planner starts from before an
//! account's own readings correct it (`quota.rs`).

use crate::window::Kind;

/// A ChatGPT plan as the backend names it (`plan_type`; codex-rs `KnownPlan`). Names the gateway does not know
/// read as [`Plan::Unknown`] and are planned like Plus, the most common plan, until readings correct them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plan {
    Free,
    Go,
    Plus,
    Pro,
    ProLite,
    Team,
    Business,
    Edu,
    Enterprise,
    Unknown,
}

impl Plan {
    /// The backend's `plan_type` (or a JWT claim), case-insensitive.
    pub fn parse(name: &str) -> Plan {
        match name.to_ascii_lowercase().as_str() {
            "free" | "free_workspace" => Plan::Free,
            "go" => Plan::Go,
            "plus" => Plan::Plus,
            "pro" => Plan::Pro,
            "prolite" | "self_serve_business_prolite" => Plan::ProLite,
            "team" => Plan::Team,
            "business" | "self_serve_business_usage_based" => Plan::Business,
            "edu" | "education" | "edu_plus" | "edu_pro" | "k12" => Plan::Edu,
            "enterprise" | "hc" | "enterprise_cbp_usage_based" | "ent26" => Plan::Enterprise,
            _ => Plan::Unknown,
        }
    }

    /// Credits a window of `kind` holds on this plan, as the strongest peer models plans (spec/codex-upstream.md,
    /// 2026-11-27: Plus, Team, Business, Edu 225 per 5 hours and 7,560 per week; Pro 1,500 and 50,400; Free only a
    /// long window of 1,134). `None`: the plan has no window of that kind. Only ratios between plans matter to the
    /// choice; the scale is learnt from readings (`quota.rs`).
    pub fn credits(self, kind: Kind) -> Option<f64> {
        let (short, long) = match self {
            Plan::Free => (None, 1_134.0),
            Plan::Pro => (Some(1_500.0), 50_400.0),
            // Between Plus and Pro in price; planned as Plus until its readings say more.
            Plan::ProLite
            | Plan::Go
            | Plan::Plus
            | Plan::Team
            | Plan::Business
            | Plan::Edu
            | Plan::Enterprise
            | Plan::Unknown => (Some(225.0), 7_560.0),
        };
        match kind {
            Kind::Short => short,
            Kind::Long => Some(long),
        }
    }

    /// Whether the backend reports this plan's long window in the primary slot (free accounts do: their only
    /// window is a week or a month).
    pub fn long_window_first(self) -> bool {
        match self {
            Plan::Free => true,
            Plan::Go
            | Plan::Plus
            | Plan::Pro
            | Plan::ProLite
            | Plan::Team
            | Plan::Business
            | Plan::Edu
            | Plan::Enterprise
            | Plan::Unknown => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_by_name_and_their_windows() {
        let table = [
            ("plus", Plan::Plus, Some(225.0), Some(7_560.0)),
            ("Pro", Plan::Pro, Some(1_500.0), Some(50_400.0)),
            ("free", Plan::Free, None, Some(1_134.0)),
            ("team", Plan::Team, Some(225.0), Some(7_560.0)),
            ("hc", Plan::Enterprise, Some(225.0), Some(7_560.0)),
            ("platinum", Plan::Unknown, Some(225.0), Some(7_560.0)),
        ];
        for (name, plan, short, long) in table {
            assert_eq!(Plan::parse(name), plan, "{name}");
            assert_eq!(plan.credits(Kind::Short), short, "{name}");
            assert_eq!(plan.credits(Kind::Long), long, "{name}");
        }
        assert!(Plan::Free.long_window_first());
        assert!(!Plan::Pro.long_window_first());
    }
}
