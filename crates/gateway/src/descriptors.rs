//! Open files (descriptors): the process's limit (`RLIMIT_NOFILE`) raised from its soft value to the hard one when
//! the gateway starts (cli.rs `serve`, which `start` runs too), and how many concurrent streams a limit allows on
//! the configured upstream transport, which `doctor`, `status --verbose` and `/admin/status` report
//! (docs/operations.md, "Open files"). The accept loop's side of the limit is server/listen/refusals.rs.
//!
//! Raised as Go's runtime raises it for every Go program (`os/rlimit.go`): the soft limit of 1,024 a shell hands
//! down dates from `select()`'s fixed descriptor sets, which the gateway (epoll/kqueue through tokio) never uses,
//! and it would stop a gateway at about 500 concurrent streams on a host whose hard limit allows tens of thousands.
//! The gateway starts no program that could inherit the raised limit (Go puts it back for `exec`; nothing here
//! needs that). libc's two calls rather than the `rlimit` crate: they are two calls, and libc is already here.

use std::io;

use serde::Serialize;

use crate::config::Config;

/// Descriptors the gateway holds besides its streams: standard streams, the runtime's epoll and wake-up
/// descriptors, the listeners, the store (SQLite: each connection's file, WAL and shared memory; or the team
/// store's PostgreSQL pool), the log file, the serving lock, and the pooled connections of the side calls (token,
/// usage, catalog). A started gateway holds about 20. [`reserve`] adds a share of the limit for the idle upstream
/// connections kept after their streams end (WebSockets per account, HTTP/1.1 per host).
pub const RESERVE: u64 = 64;

/// The descriptors a limit of `soft` keeps out of the streams' reach: [`RESERVE`] and a sixteenth of the limit.
pub fn reserve(soft: u64) -> u64 {
    RESERVE + soft / 16
}

/// Below this many concurrent streams, `doctor` and `status` warn and the start logs at warn: a team's agents,
/// each holding a stream per turn and sub-agent, reach a few thousand.
pub const FEW_STREAMS: u64 = 4_000;

/// How to give the gateway a higher limit, for the warnings.
pub const FIX: &str = "raise the hard limit of open files where the gateway starts: `ulimit -Hn 65536` (as root, or \
                       in /etc/security/limits.conf) in the shell that runs `codex-gateway start`, LimitNOFILE=65536 \
                       in its systemd unit (packaging/codex-gateway.service sets it), HardResourceLimits \
                       NumberOfFiles in a launchd plist; the gateway raises its soft limit to the hard one itself";

/// The limits of open files, as `getrlimit` reads them. `None`: unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

/// What [`raise`] did.
#[derive(Debug)]
pub enum Raise {
    /// The soft limit was raised from `from` (to `now.soft`: the hard limit, or macOS's per-process ceiling).
    Raised { from: Option<u64>, now: Limits },
    /// Already as high as it goes.
    Unchanged(Limits),
    /// `setrlimit` refused; the limits stay `limits`.
    Failed { limits: Limits, error: io::Error },
    /// The limits cannot be read (`getrlimit` failed).
    Unknown(io::Error),
    /// The system has no such limit (Windows: a process's handles are bounded by memory alone).
    NoLimit,
}

impl Raise {
    /// The limits in force after the raise (`None`: unknown, or none at all).
    pub fn limits(&self) -> Option<Limits> {
        match self {
            Raise::Raised { now, .. } => Some(*now),
            Raise::Unchanged(limits) | Raise::Failed { limits, .. } => Some(*limits),
            Raise::Unknown(_) | Raise::NoLimit => None,
        }
    }

    /// Say once, at start, what was done and what it allows; at warn when the limit stays below [`FEW_STREAMS`].
    pub fn log(&self, upstream: Upstream) {
        let Some(l) = self.limits() else {
            if let Raise::Unknown(error) = self {
                tracing::warn!("open files: the limit cannot be read ({error})");
            }
            return;
        };
        let streams = streams_allowed(&l, upstream);
        let allows = match streams {
            Some(n) => {
                format!(
                    "about {n} concurrent streams ({} descriptors each, {})",
                    upstream.per_stream(),
                    upstream.describe()
                )
            }
            None => "no limit on concurrent streams".to_string(),
        };
        let (soft, hard) = (show(l.soft), show(l.hard));
        let head = match self {
            Raise::Failed { error, .. } => {
                return tracing::warn!(
                    "open files: the soft limit {soft} could not be raised to the hard limit {hard} ({error}): {allows}"
                );
            }
            Raise::Raised { from, .. } => format!("soft limit raised from {} to {soft}", show(*from)),
            _ => format!("soft limit {soft}"),
        };
        if streams.is_some_and(|n| n < FEW_STREAMS) {
            tracing::warn!("open files: {head} (hard limit {hard}): only {allows}; {FIX}");
        } else {
            tracing::info!("open files: {head} (hard limit {hard}): {allows}");
        }
    }
}

/// A limit in words: the number, or "unlimited".
pub fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

/// How the gateway's streams reach the upstream, as far as descriptors go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Upstream {
    /// A WebSocket per conversation (`[upstream] transport` auto or websocket, the default): one connection per
    /// stream besides the client's.
    WebSocket,
    /// HTTP/1.1 SSE (an `http://` upstream without h2c): each stream holds a pooled connection of its own.
    Http1,
    /// HTTP/2 SSE (`https://`, where the backend speaks h2, or h2c): streams share connections.
    Http2,
}

impl Upstream {
    /// The configured transport (docs/protocol.md, "Upstream WebSocket"; crates/transport/src/direct.rs picks
    /// HTTP/2 for `https` and h2c). An API-key account or one behind a proxy may go another way: a few streams.
    pub fn of(config: &Config) -> Upstream {
        if config.upstream_ws.wants() {
            Upstream::WebSocket
        } else if config.upstream_h2c || config.upstream_base_url.starts_with("https://") {
            Upstream::Http2
        } else {
            Upstream::Http1
        }
    }

    /// Descriptors one stream holds: the client's connection, and an upstream connection of its own or a share of
    /// one (an HTTP/2 connection carries a hundred streams or more; [`reserve`] covers the few it takes).
    pub fn per_stream(self) -> u64 {
        match self {
            Upstream::WebSocket | Upstream::Http1 => 2,
            Upstream::Http2 => 1,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Upstream::WebSocket => "client and upstream WebSocket",
            Upstream::Http1 => "client and upstream HTTP/1.1 connection",
            Upstream::Http2 => "the client's; upstream HTTP/2 connections are shared",
        }
    }
}

/// Concurrent streams the soft limit leaves room for after [`reserve`]; `None`: no limit. The listener holds
/// connections to this many (server/listen.rs), so the streams it accepts find descriptors for their upstream.
pub fn streams_allowed(limits: &Limits, upstream: Upstream) -> Option<u64> {
    limits.soft.map(|soft| soft.saturating_sub(reserve(soft)) / upstream.per_stream())
}

/// What `/admin/status` and `doctor --json` say of the limit, for the configured transport.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
    pub upstream: Upstream,
    pub descriptors_per_stream: u64,
    pub streams_allowed: Option<u64>,
}

impl Report {
    pub fn new(limits: &Limits, upstream: Upstream) -> Report {
        Report {
            soft: limits.soft,
            hard: limits.hard,
            upstream,
            descriptors_per_stream: upstream.per_stream(),
            streams_allowed: streams_allowed(limits, upstream),
        }
    }
}

/// Raise the soft limit of open files to the hard limit (on macOS no higher than the kernel's per-process
/// ceiling, as Go does: `setrlimit` refuses more there).
#[cfg(unix)]
pub fn raise() -> Raise {
    let old = match get() {
        Ok(raw) => raw,
        Err(e) => return Raise::Unknown(e),
    };
    let target = ceiling(old.rlim_max);
    if old.rlim_cur == libc::RLIM_INFINITY || old.rlim_cur >= target {
        return Raise::Unchanged(limits(&old));
    }
    let new = libc::rlimit { rlim_cur: target, rlim_max: old.rlim_max };
    // SAFETY: `new` is a valid rlimit that lives across the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        return Raise::Failed { limits: limits(&old), error: io::Error::last_os_error() };
    }
    match get() {
        Ok(now) => Raise::Raised { from: finite(old.rlim_cur), now: limits(&now) },
        Err(e) => Raise::Unknown(e),
    }
}

#[cfg(not(unix))]
pub fn raise() -> Raise {
    Raise::NoLimit
}

/// The limits now, without changing them (`None` where they cannot be read).
#[cfg(unix)]
pub fn current() -> Option<Limits> {
    get().ok().map(|raw| limits(&raw))
}

/// No such limit on this system.
#[cfg(not(unix))]
pub fn current() -> Option<Limits> {
    None
}

#[cfg(unix)]
fn get() -> io::Result<libc::rlimit> {
    let mut raw = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `raw` is a valid, writable rlimit.
    match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut raw) } {
        0 => Ok(raw),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(unix)]
fn limits(raw: &libc::rlimit) -> Limits {
    Limits { soft: finite(raw.rlim_cur), hard: finite(raw.rlim_max) }
}

/// `rlim_t` is `u64` on the targets the gateway ships for, `u32` on some 32-bit ones: the cast only widens.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
fn finite(value: libc::rlim_t) -> Option<u64> {
    (value != libc::RLIM_INFINITY).then_some(value as u64)
}

/// The highest soft limit `setrlimit` takes: the hard limit, and on macOS no more than `kern.maxfilesperproc` (Go's
/// `adjustFileLimit` in syscall/rlimit_darwin.go: an unlimited or too high value is refused with EINVAL).
#[cfg(unix)]
fn ceiling(hard: libc::rlim_t) -> libc::rlim_t {
    #[cfg(target_os = "macos")]
    let hard = hard.min(max_files_per_process());
    hard
}

/// `kern.maxfilesperproc`, else OPEN_MAX (10,240), the ceiling macOS documents for `setrlimit`.
#[cfg(target_os = "macos")]
fn max_files_per_process() -> libc::rlim_t {
    let mut per_process: libc::c_int = 0;
    let mut size = std::mem::size_of::<libc::c_int>();
    // SAFETY: the name is NUL-terminated; `per_process` and `size` are valid and `size` is its size.
    let read = unsafe {
        libc::sysctlbyname(
            c"kern.maxfilesperproc".as_ptr(),
            (&mut per_process as *mut libc::c_int).cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    match read == 0 && per_process > 0 {
        true => per_process as libc::rlim_t,
        false => 10_240,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streams_a_limit_allows_depend_on_the_descriptors_each_holds() {
        let limits = |soft| Limits { soft, hard: Some(20_000) };
        assert_eq!(streams_allowed(&limits(Some(1_024)), Upstream::WebSocket), Some(448));
        assert_eq!(streams_allowed(&limits(Some(1_024)), Upstream::Http1), Some(448));
        assert_eq!(streams_allowed(&limits(Some(1_024)), Upstream::Http2), Some(896));
        assert_eq!(streams_allowed(&limits(Some(65_536)), Upstream::WebSocket), Some(30_688));
        assert_eq!(streams_allowed(&limits(Some(20)), Upstream::WebSocket), Some(0), "below the reserve: none");
        assert_eq!(streams_allowed(&limits(None), Upstream::WebSocket), None, "unlimited");
    }

    #[cfg(unix)]
    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        // The test process's own limit: raising it is what every gateway does, and harmless here.
        let raised = raise();
        let now = raised.limits().unwrap_or_else(|| panic!("limits unknown: {raised:?}"));
        assert!(!matches!(raised, Raise::Failed { .. }), "{raised:?}");
        if cfg!(not(target_os = "macos")) {
            assert_eq!(now.soft, now.hard, "{raised:?}");
        }
        assert_eq!(current(), Some(now));
    }
}
