//! Interop (issue 58): the gateway against independent HTTP servers, the distribution's nginx, h2o and Caddy and
//! hypercorn (Python's h2), started by the tests on loopback ports picked at run time (`servers.rs`). Upstream,
//! each server stands between the gateway and fake-codex as a TLS reverse proxy with HTTP/2, or is the SSE
//! origin itself (`upstream.rs`); downstream, nginx's answers to raw bytes are the reference for the gateway's
//! own HTTP/1.1 server (`downstream.rs`). Nothing is reached but 127.0.0.1. A server that is not installed fails
//! its test: `scripts/setup-test-deps` installs them all.

mod downstream;
pub(crate) mod servers;
mod upstream;
mod websocket;
