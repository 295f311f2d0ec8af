//! Integration tests: the real server (in-process, port 0) against fake-codex. One binary for link time.

mod harness;

mod admin;
mod anthropic;
mod chat;
mod client_version;
mod compact;
mod crash;
mod dashboard;
mod doctor;
mod errors;
mod failure;
mod fuzz_http;
mod gemini;
mod keys;
mod login;
mod metrics;
mod ollama;
mod packaging;
mod pg;
mod pool;
mod ratelimits;
mod records;
mod refresh;
mod reload;
mod responses;
mod security;
mod service;
mod team;
mod timeouts;
mod tokens;
mod transport;
mod usage;
mod usage_kill;
mod validation;
mod websocket;
