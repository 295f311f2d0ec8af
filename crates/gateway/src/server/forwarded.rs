//! The client's address behind a trusted balancer (`[server] trusted_proxies`, docs/team.md): a request whose
//! peer is one of those balancers is taken to come from the address its `X-Forwarded-For` names, so the audit
//! trail records a person's machine rather than the balancer's.
//!
//! The list is read from the right (the hop nearest the gateway) and the first address that is not itself a
//! trusted balancer is the client: what a client writes into the header before the first trusted hop can only
//! land to the left of it. A request from any other peer keeps its peer address, whatever the header says.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};
use ipnet::IpNet;

/// Replace the request's `ConnectInfo` (set by the listener) with the client a trusted balancer names.
pub fn adopt_client<B>(req: &mut Request<B>, trusted: &[IpNet]) {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return;
    };
    if let Some(client) = client_of(peer.ip(), req.headers(), trusted) {
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(client, 0)));
    }
}

/// The client behind `peer` when `peer` is trusted and the header names one; `None` keeps the peer.
fn client_of(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return None;
    }
    // Several header lines are one list, in order (RFC 9110 §5.3).
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .map(parse_hop)
        .collect::<Option<_>>()?;
    hops.iter().rev().find(|ip| !is_trusted(ip)).or(hops.first()).copied()
}

/// One hop: an address, IPv6 possibly in brackets, possibly with a port (some balancers write one).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let bracketed = || hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok();
    hop.parse().or_else(|_| hop.parse::<SocketAddr>().map(|addr| addr.ip())).ok().or_else(bracketed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap_or_else(|e| panic!("{n}: {e}"))).collect()
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append("x-forwarded-for", l.parse().unwrap_or_else(|e| panic!("{e}")));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_trusted_balancer_names_the_client() {
        let trusted = nets(&["10.89.0.10/32"]);
        let got = client_of(ip("10.89.0.10"), &headers(&["198.51.100.7"]), &trusted);
        assert_eq!(got, Some(ip("198.51.100.7")));
    }

    #[test]
    fn an_untrusted_peer_keeps_its_address_whatever_it_claims() {
        let trusted = nets(&["10.89.0.0/24"]);
        assert_eq!(client_of(ip("198.51.100.7"), &headers(&["10.89.0.3"]), &trusted), None);
    }

    #[test]
    fn what_a_client_wrote_before_the_first_trusted_hop_is_ignored() {
        // The client sent "203.0.113.9" itself; an outer balancer appended the real address, the inner one its own.
        let trusted = nets(&["10.89.0.0/24"]);
        let h = headers(&["203.0.113.9, 198.51.100.7", "10.89.0.11"]);
        assert_eq!(client_of(ip("10.89.0.10"), &h, &trusted), Some(ip("198.51.100.7")));
    }

    #[test]
    fn every_hop_trusted_gives_the_first() {
        let trusted = nets(&["127.0.0.0/8"]);
        assert_eq!(client_of(ip("127.0.0.1"), &headers(&["127.0.0.2, 127.0.0.3"]), &trusted), Some(ip("127.0.0.2")));
    }

    #[test]
    fn ports_brackets_and_v6_are_read_and_garbage_keeps_the_peer() {
        let trusted = nets(&["fd00::/64", "10.0.0.1/32"]);
        let h = headers(&["[2001:db8::5]:4711"]);
        assert_eq!(client_of(ip("fd00::10"), &h, &trusted), Some(ip("2001:db8::5")));
        assert_eq!(client_of(ip("10.0.0.1"), &headers(&["192.0.2.1:80"]), &trusted), Some(ip("192.0.2.1")));
        assert_eq!(client_of(ip("10.0.0.1"), &headers(&["not-an-address"]), &trusted), None);
        assert_eq!(client_of(ip("10.0.0.1"), &HeaderMap::new(), &trusted), None);
    }
}
