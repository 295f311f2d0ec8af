//! Decoding client JSON with errors that name the offending field, in the gateway's error type.

use serde::de::DeserializeOwned;

use crate::error::GatewayError;

/// Parse a request body. Syntax errors and type errors become a 400 naming the field path; bytes after the
/// JSON document other than whitespace are a syntax error (`Deserializer::end`), as in `serde_json::from_slice`.
///
/// A valid body is decoded once, without tracking the path: the tracking wraps every value of the document and
/// was about a quarter of decoding a chat request. Only a body that fails is decoded again with it, for the
/// error's field path; serde_json decides the same way both times, so the error is the one a tracked decode gives.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(_) => decode_tracked(body),
    }
}

/// [`decode_body`] with the path of the failing field tracked.
fn decode_tracked<T: DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            GatewayError::invalid(format!("The request body is not valid JSON: {inner}")).with_code("invalid_json")
        } else if path.is_empty() || path == "." {
            GatewayError::invalid(format!("Invalid request body: {inner}"))
        } else {
            GatewayError::invalid_param(&path, format!("Invalid value for `{path}`: {inner}"))
        }
    })?;
    // Without this a body like `{...}garbage` or two concatenated documents was accepted: a path-tracking
    // deserializer stops after the first value and never looks at what follows.
    de.end().map_err(|inner| {
        GatewayError::invalid(format!("The request body is not valid JSON: {inner}")).with_code("invalid_json")
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct T {
        a: Vec<u32>,
    }

    #[test]
    fn names_the_field() {
        let e = decode_body::<T>(br#"{"a":[1,"x"]}"#).err();
        assert_eq!(e.and_then(|e| e.param), Some("a[1]".to_string()));
        let e = decode_body::<T>(b"{nope").err();
        assert_eq!(e.and_then(|e| e.code), Some("invalid_json".to_string()));
    }

    #[test]
    fn trailing_bytes_after_the_document_are_refused() {
        for body in [&br#"{"a":[1]}x"#[..], br#"{"a":[1]}{"a":[2]}"#, br#"{"a":[1]} ]"#] {
            let e = decode_body::<T>(body).err();
            assert_eq!(e.and_then(|e| e.code), Some("invalid_json".to_string()), "{}", String::from_utf8_lossy(body));
        }
        assert!(decode_body::<T>(b"{\"a\":[1]} \r\n\t ").is_ok(), "trailing whitespace stays fine");
    }
}
