//! The defaults of stewardship that the gateway's configuration starts from (`[routing]`, docs/configuration.md)
//! and the simulator runs with, in one place so both run the same pool.

/// Requests in flight per account: one heavy user of the official client. A Codex CLI session runs one turn at a
/// time, its requests one after another; with sub-agents, multi-agent v2 caps a session at four concurrent
/// threads (codex-rs `DEFAULT_MULTI_AGENT_V2_MAX_CONCURRENT_THREADS_PER_SESSION = 4`; v1 allows the root and six:
/// `DEFAULT_AGENT_MAX_THREADS`). docs/accounts.md, "Stewardship", gives the evidence.
pub const MAX_IN_FLIGHT: usize = 4;
/// Requests that may wait for one account's slot.
pub const QUEUE_PER_ACCOUNT: usize = 256;
/// How long a request waits in an account's queue before it is refused (`concurrency_limit`), seconds: long
/// enough for the turns ahead of it to end (agent turns take seconds to minutes).
pub const QUEUE_TIMEOUT_SECS: u64 = 300;
/// How long a conversation's turn waits for its own busy account before a free slot elsewhere is worth losing
/// the prompt cache, seconds (about one agent step).
pub const HOME_WAIT_SECS: u64 = 20;
/// Accounts one request is tried on: one bad moment upstream does not touch the whole pool.
pub const MAX_ACCOUNTS_PER_REQUEST: usize = 3;
/// A conversation that sent a request this recently counts as active on its account (it will spend more).
pub const ACTIVE_SECS: i64 = 900;
