//! The upstream side: one pooled HTTP client, the official client's headers, and the classification of
//! upstream failures into client-visible errors.

mod classify;
mod client;

pub use classify::{UpstreamFailure, classify};
pub use client::{CODEX_CLIENT_VERSION, CallContext, Upstream, build_http_client, build_http_client_with_proxy};

/// A transport error as text for logs and client errors: reqwest's own message (without the URL, which can
/// carry query parameters) followed by its causes, since reqwest's message alone ("error decoding response
/// body") does not say whether the connection was reset, timed out or refused by HTTP/2 flow control.
pub fn transport_error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn transport_error_text_names_the_cause() {
        // A loopback port nothing listens on: reqwest says only "error sending request"; the cause says why.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        let port = port.unwrap_or_else(|e| panic!("{e}"));
        let client = reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("{e}"));
        let err = client.get(format!("http://127.0.0.1:{port}/secret?token=abc")).send().await.err();
        let text = transport_error_text(err.unwrap_or_else(|| panic!("the request succeeded")));
        assert!(text.starts_with("error sending request"), "{text}");
        assert!(text.to_lowercase().contains("connect"), "{text}");
        assert!(text.len() > "error sending request".len() + 10, "{text}");
        assert!(!text.contains("token=abc") && !text.contains("/secret"), "the URL leaked: {text}");
    }
}
