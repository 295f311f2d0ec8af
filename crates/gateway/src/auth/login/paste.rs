//! The paste flow, for servers whose localhost the browser cannot reach: print the authorize URL, then read
//! back the address the browser ended on (its failed load of the callback still carries the code).

use std::collections::HashMap;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::oauth::{Pkce, authorize_url, code_from_callback, exchange_code, random_state};
use super::{DEFAULT_CALLBACK_PORTS, LoginError, LoginOptions, Prompt, callback_redirect_uri};
use crate::auth::Tokens;

/// The code from what a user pasted: the full redirect address, or just its `code=...&state=...` query.
pub fn code_from_paste(input: &str, expected_state: &str) -> Result<String, LoginError> {
    let s = input.trim().trim_matches(|c| matches!(c, '"' | '\'' | '<' | '>'));
    if s.is_empty() {
        return Err(LoginError::BadPaste("nothing was pasted".into()));
    }
    let query = s.split_once('?').map_or(s, |(_, q)| q).split('#').next().unwrap_or_default();
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    if !params.contains_key("code") && !params.contains_key("error") {
        return Err(LoginError::BadPaste(
            "expected the address the browser ended on, like http://localhost:1455/auth/callback?code=...&state=..."
                .into(),
        ));
    }
    code_from_callback(&params, expected_state)
}

/// Sign in on any machine's browser, then paste the redirect address into `input` (one line).
pub async fn paste_login(
    http: &reqwest::Client,
    opts: &LoginOptions,
    mut prompt: impl FnMut(Prompt),
    mut input: impl AsyncBufRead + Unpin,
) -> Result<Tokens, LoginError> {
    let pkce = Pkce::generate();
    let state = random_state();
    let redirect_uri = callback_redirect_uri(DEFAULT_CALLBACK_PORTS[0]);
    let url = authorize_url(opts.issuer(), &redirect_uri, &pkce.challenge, &state)?;
    prompt(Prompt::Paste { url });
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).await.map_err(LoginError::Input)? == 0 {
            return Err(LoginError::BadPaste("the input ended before an address was pasted".into()));
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let code = code_from_paste(&line, &state)?;
    exchange_code(http, opts.issuer(), &code, &redirect_uri, &pkce.verifier).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_addresses_in_the_forms_people_paste() {
        let ok = |s: &str| code_from_paste(s, "st").ok();
        assert_eq!(ok("http://localhost:1455/auth/callback?code=ac_1&scope=openid&state=st\n"), Some("ac_1".into()));
        assert_eq!(ok("  'http://localhost:1455/auth/callback?code=ac%2B1&state=st#frag'  "), Some("ac+1".into()));
        assert_eq!(ok("code=ac_1&state=st"), Some("ac_1".into()));
        assert_eq!(ok("?code=ac_1&state=st"), Some("ac_1".into()));
        assert!(matches!(code_from_paste("code=ac_1&state=nope", "st"), Err(LoginError::StateMismatch)));
        assert!(matches!(code_from_paste("http://localhost:1455/", "st"), Err(LoginError::BadPaste(_))));
        assert!(matches!(code_from_paste("   ", "st"), Err(LoginError::BadPaste(_))));
    }
}
