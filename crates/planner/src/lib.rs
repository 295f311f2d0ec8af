//! Account stewardship, pure: what each quota window of an account holds and when it resets (`window`, `quota`,
//! `plan`), what a request costs (`cost`), how many requests an account takes at once and how it backs off when
//! the upstream is overloaded (`governor`), which account serves a request (`choose`), and when each account and
//! the pool run dry (`forecast`).
//!
//! Nothing here does I/O or reads a clock: every function takes the time (unix seconds) and the state it needs,
//! so the gateway's lease (`crates/gateway/src/accounts/lease.rs`) and the simulator (`crates/simulator`) run the
//! same decisions, and tests state them as tables. docs/accounts.md ("Stewardship", "Quota planner") explains the
//! rules; docs/planner.md the reasoning and bench/results/simulator.md what they are worth.

pub mod choose;
pub mod cost;
pub mod defaults;
pub mod forecast;
pub mod governor;
pub mod plan;
pub mod quota;
pub mod window;

pub use choose::{Ask, Candidate, Choice, Policy, Strategy, choose};
pub use forecast::Forecast;
pub use governor::Governor;
pub use plan::Plan;
pub use quota::{AccountQuota, QuotaView, WindowView};
pub use window::{Kind, Reading, Slot};
