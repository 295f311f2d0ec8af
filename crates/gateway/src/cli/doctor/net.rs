//! `doctor`'s network checks: for each distinct connection the accounts use (their own proxy, the global proxy,
//! or direct) DNS, TCP and TLS to the upstream (or to the proxy, which then carries the TLS), then one
//! authenticated `/models` call as the gateway makes it; the upstream's `Date` header against this clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::{Probe, Report};
use crate::accounts::redact_proxy;
use crate::config::Config;
use crate::store::AccountKind;
use crate::upstream::CODEX_CLIENT_VERSION;

/// Each network step's bound: a doctor must answer even when the network does not.
const STEP: Duration = Duration::from_secs(5);

/// A distinct way to the upstream and the account whose credential tries it.
struct Route {
    /// The account's own proxy; `None` is the default connection (the global proxy, or direct).
    proxy: Option<String>,
    target: String,
    probe: Probe,
}

pub(super) async fn upstream_checks(r: &mut Report, config: &Config, probes: &[Probe]) {
    let mut routes: Vec<Route> = Vec::new();
    for p in probes {
        let target = match p.kind {
            AccountKind::Chatgpt => config.upstream_base_url.clone(),
            AccountKind::ApiKey | AccountKind::Relay => {
                p.base_url.clone().unwrap_or_else(|| config.openai_base_url.clone())
            }
            AccountKind::Unrecognized => continue,
        };
        match routes.iter_mut().find(|route| route.proxy == p.proxy && route.target == target) {
            Some(route) if route.probe.credential.is_none() => route.probe = p.clone(),
            Some(_) => {}
            None => routes.push(Route { proxy: p.proxy.clone(), target, probe: p.clone() }),
        }
    }
    if routes.is_empty() {
        return r.skip("upstream", "reachability", "no account to try");
    }
    let mut skew = None;
    for route in &routes {
        if let Some(s) = route_checks(r, config, route).await {
            skew.get_or_insert(s);
        }
    }
    match skew {
        None => r.skip("clock", "upstream Date", "no answer from the upstream to compare with"),
        Some(s) if s.abs() > 300 => r.fail(
            "clock",
            "upstream Date",
            format!("this clock is {s} s off the upstream's: token expiry is misjudged"),
            "sync the clock (timedatectl set-ntp true)",
        ),
        Some(s) if s.abs() > 60 => {
            r.warn("clock", "upstream Date", format!("this clock is {s} s off the upstream's"), "sync the clock")
        }
        Some(s) => r.ok("clock", "upstream Date", format!("within {} s of the upstream's clock", s.abs().max(1))),
    }
}

/// The checks of one route; returns this clock minus the upstream's `Date`, when it answered.
async fn route_checks(r: &mut Report, config: &Config, route: &Route) -> Option<i64> {
    let proxy = route.proxy.clone().or_else(|| config.proxy.clone());
    let via = proxy.as_deref().map_or("direct".to_string(), |p| format!("via {}", redact_proxy(p)));
    let check = |what: &str| format!("{what} ({via})");
    let target = match url::Url::parse(&route.target) {
        Ok(u) => u,
        Err(e) => {
            return r.failed("upstream", check("URL"), format!("{}: {e}", route.target), "correct upstream_base_url");
        }
    };
    let reachable = match &proxy {
        Some(p) => match url::Url::parse(p) {
            Ok(u) => {
                let port = u.port_or_known_default().unwrap_or(1080);
                let fix = "check that the proxy runs at that address (the account's proxy, or HTTPS_PROXY)";
                connect(r, "proxy", &via, u.host_str().unwrap_or_default(), port, fix).await.is_some()
            }
            Err(e) => {
                r.fail("upstream", check("proxy URL"), e.to_string(), "correct the proxy URL");
                false
            }
        },
        None => {
            let host = target.host_str().unwrap_or_default().to_string();
            let port = target.port_or_known_default().unwrap_or(443);
            let fix = "check the network and firewall, and that the upstream is up";
            match connect(r, "upstream", &via, &host, port, fix).await {
                Some(tcp) if target.scheme() == "https" => {
                    tls(r, config, &check("upstream TLS"), &host, tcp).await.is_some()
                }
                Some(_) => {
                    r.skip("upstream", check("upstream TLS"), format!("{} is plain http", route.target));
                    true
                }
                None => false,
            }
        }
    };
    let call = check("GET /models");
    if !reachable {
        r.skip("upstream", call, "not reachable");
        return None;
    }
    let Some(credential) = &route.probe.credential else {
        r.skip("upstream", call, "no unexpired access token to try (the gateway refreshes it at its next use)");
        return None;
    };
    let http = match &route.proxy {
        Some(p) => upstream_transport::reqwest_client(config.ca_bundle.as_deref(), Some(p), false, config.upstream_h2c),
        None => crate::upstream::build_http_client(config),
    };
    let http = match http {
        Ok(h) => h,
        Err(e) => return r.failed("upstream", call, super::one_line(&e), "correct the proxy or CA bundle setting"),
    };
    let url = match route.probe.kind {
        AccountKind::Chatgpt => format!("{}/models?client_version={CODEX_CLIENT_VERSION}", route.target),
        AccountKind::ApiKey | AccountKind::Relay | AccountKind::Unrecognized => format!("{}/models", route.target),
    };
    let mut req = http.get(url).bearer_auth(credential).header("originator", "codex_cli_rs").timeout(STEP * 2);
    if let Some(id) = &route.probe.account_id {
        req = req.header("chatgpt-account-id", id);
    }
    let started = Instant::now();
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => {
            return r.failed(
                "upstream",
                call,
                crate::upstream::with_causes(&e.without_url()),
                "check the connection (proxy, firewall, CA bundle)",
            );
        }
    };
    let skew = resp
        .headers()
        .get(reqwest::header::DATE)
        .and_then(|d| httpdate::parse_http_date(d.to_str().ok()?).ok())
        .and_then(|d| d.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| crate::auth::now_unix() - d.as_secs() as i64);
    let name = &route.probe.name;
    let ms = started.elapsed().as_millis();
    match resp.status().as_u16() {
        s @ 200..=299 => r.ok("upstream", call, format!("HTTP {s} in {ms} ms with {name}")),
        s @ (401 | 403) => r.fail(
            "upstream",
            call,
            format!("the upstream refused {name}'s credential (HTTP {s})"),
            "codex-gateway login",
        ),
        s => r.fail("upstream", call, format!("HTTP {s} with {name}"), "try again later; the gateway's log has more"),
    }
    skew
}

/// DNS, then TCP to the first address, each bounded: the checks `{what} DNS ({via})` and `{what} TCP ({via})`.
async fn connect(r: &mut Report, what: &str, via: &str, host: &str, port: u16, fix: &str) -> Option<TcpStream> {
    let dns = format!("{what} DNS ({via})");
    let tcp_check = format!("{what} TCP ({via})");
    let addrs = match tokio::time::timeout(STEP, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
        Ok(Err(e)) => {
            return r.failed("upstream", dns, format!("{host}: {e}"), "check the name and this machine's DNS");
        }
        Err(_) => return r.failed("upstream", dns, format!("{host}: no answer in 5 s"), "check this machine's DNS"),
    };
    let Some(addr) = addrs.first().copied() else {
        return r.failed("upstream", dns, format!("{host}: no address"), "check the name");
    };
    r.ok("upstream", dns, format!("{host} -> {}", addr.ip()));
    let started = Instant::now();
    match tokio::time::timeout(STEP, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => {
            r.ok("upstream", tcp_check, format!("{addr} in {} ms", started.elapsed().as_millis()));
            Some(tcp)
        }
        Ok(Err(e)) => r.failed("upstream", tcp_check, format!("{addr}: {e}"), fix),
        Err(_) => r.failed("upstream", tcp_check, format!("{addr}: no answer in 5 s"), fix),
    }
}

/// A TLS handshake with the gateway's own trust (bundled and system roots, the CA bundle).
async fn tls(r: &mut Report, config: &Config, check: &str, host: &str, tcp: TcpStream) -> Option<()> {
    let fix = "behind a TLS-inspecting proxy? set ca_bundle (CODEX_GATEWAY_CA_BUNDLE) to its CA";
    let mut tls = match upstream_transport::tls::client_config(config.ca_bundle.as_deref()) {
        Ok(t) => t,
        Err(e) => return r.failed("upstream", check, super::one_line(&e), "correct ca_bundle"),
    };
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let Ok(name) = rustls::pki_types::ServerName::try_from(host.to_string()) else {
        return r.failed("upstream", check, format!("{host} is not a TLS server name"), "correct upstream_base_url");
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    match tokio::time::timeout(STEP, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            let alpn = conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
            let version = conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
            r.ok("upstream", check, format!("{version}, ALPN {}", alpn.as_deref().unwrap_or("none")));
            Some(())
        }
        Ok(Err(e)) => r.failed("upstream", check, e.to_string(), fix),
        Err(_) => r.failed("upstream", check, "no handshake in 5 s", fix),
    }
}
