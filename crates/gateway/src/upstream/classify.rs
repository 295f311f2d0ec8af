//! Reading an upstream HTTP error answer off the HTTP types for the one classifier
//! ([`dialects::failure::classify_http`], which also classifies failure events inside a stream).

use dialects::UpstreamFailure;
use dialects::failure::{HttpAnswer, classify_http};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// Classify a non-success upstream answer (status, headers, body).
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], now: i64) -> UpstreamFailure {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let answer = HttpAnswer {
        status: status.as_u16(),
        body,
        html: header("content-type").is_some_and(|ct| ct.contains("text/html")),
        cf_mitigated: headers.contains_key("cf-mitigated"),
        retry_after: header("retry-after"),
    };
    classify_http(&answer, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialects::ErrorKind;
    use dialects::failure::Failover;

    #[test]
    fn usage_limit_uses_resets_at() {
        let body = br#"{"error":{"type":"usage_limit_reached","message":"limit","resets_at":1100}}"#;
        let f = classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body, 1000);
        let e = f.to_error();
        assert_eq!(f.failover(), Failover::OtherAccount);
        assert_eq!(
            (e.kind, e.retry_after, e.code.as_deref()),
            (ErrorKind::RateLimited, Some(100), Some("usage_limit_reached"))
        );
    }

    #[test]
    fn bad_request_passes_through_as_rejected() {
        let f = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"detail":"Unsupported parameter: temperature"}"#,
            0,
        );
        assert_eq!(f.failover(), Failover::Stop);
        let e = f.to_error();
        assert_eq!(e.kind, ErrorKind::InvalidRequest);
        assert!(e.message.contains("temperature"));
    }

    #[test]
    fn cloudflare_is_not_a_ban() {
        let mut h = HeaderMap::new();
        h.insert("content-type", reqwest::header::HeaderValue::from_static("text/html"));
        let f = classify(StatusCode::FORBIDDEN, &h, b"<html>Just a moment... challenge-platform</html>", 0);
        assert_eq!(f.to_error().code.as_deref(), Some("cloudflare_challenge"));
    }

    /// The headers reach the classifier: `cf-mitigated` marks a challenge, `Retry-After` a rate limit's wait.
    #[test]
    fn reads_the_headers_the_classifier_needs() {
        let mut h = HeaderMap::new();
        h.insert("cf-mitigated", reqwest::header::HeaderValue::from_static("challenge"));
        h.insert("content-type", reqwest::header::HeaderValue::from_static("text/html; charset=UTF-8"));
        let f = classify(StatusCode::FORBIDDEN, &h, b"<html></html>", 0);
        assert_eq!(f.to_error().code.as_deref(), Some("cloudflare_challenge"));
        let mut h = HeaderMap::new();
        h.insert("retry-after", reqwest::header::HeaderValue::from_static("2.5"));
        let f = classify(StatusCode::TOO_MANY_REQUESTS, &h, b"{}", 0);
        assert_eq!(f.to_error().retry_after, Some(3));
    }
}
