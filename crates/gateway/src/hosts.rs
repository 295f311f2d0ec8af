//! Host and origin names as the request guard (server/guard.rs) and the dashboard's login gate
//! (dashboard/session.rs) read them: the host part of an authority, and which names and origins are loopback.

use std::net::Ipv4Addr;

/// The host part of a `Host` value or URL authority: `a.example:8080` -> `a.example`, `[::1]:80` -> `[::1]`.
pub fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => authority,
    }
}

/// `localhost`, `*.localhost` (browsers resolve both to loopback themselves), `127.0.0.0/8`, `[::1]`.
pub fn is_loopback_name(name: &str) -> bool {
    // What nearly every client sends, before the general rules.
    if name == "127.0.0.1" || name == "localhost" {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let n = name.len();
    if n > ".localhost".len() && name.is_char_boundary(n - 10) && name[n - 10..].eq_ignore_ascii_case(".localhost") {
        return true;
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// `http(s)://` + a loopback name, any port, nothing after. `null` (sandboxed or file pages) is not loopback.
pub fn is_loopback_origin(origin: &str) -> bool {
    let rest = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    rest.is_some_and(|r| !r.contains('/') && is_loopback_name(host_name(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for (authority, name) in [
            ("localhost:8765", "localhost"),
            ("a.example", "a.example"),
            ("[::1]:80", "[::1]"),
            ("[::1]", "[::1]"),
            ("127.0.0.1:0", "127.0.0.1"),
            ("evil:x", "evil:x"),
        ] {
            assert_eq!(host_name(authority), name, "{authority}");
        }
    }

    #[test]
    fn loopback_names() {
        for n in ["localhost", "LOCALHOST", "localhost.", "app.localhost", "127.0.0.1", "127.9.8.7", "[::1]"] {
            assert!(is_loopback_name(n), "{n}");
        }
        for n in ["evil.example", "localhost.evil.example", "evillocalhost", "10.0.0.1", "0.0.0.0", "[::2]", "", "::1"]
        {
            assert!(!is_loopback_name(n), "{n}");
        }
    }
}
