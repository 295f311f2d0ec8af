//! `codex-gateway login [--device | --paste] [--label NAME]`: one of the flows in `auth/login`, then the new
//! login handed to the running gateway's admin API when one answers (its pool serves the account at once, and
//! the store has one writer), else saved to the store directly.

use serde_json::json;

use super::destination::Live;
use crate::accounts::manage::save_login;
use crate::accounts::stored_from_tokens;
use crate::auth::Tokens;
use crate::auth::codex_file::format_rfc3339;
use crate::auth::login::{
    LoginMode, LoginOptions, Prompt, browser_available, browser_login, device_login, paste_login,
};
use crate::config::{Config, ProcessEnv};

pub(crate) async fn run(config: &Config, mode: LoginMode, label: Option<String>) -> anyhow::Result<()> {
    // Open the store first: a login whose tokens cannot be saved would be wasted.
    let store = config.open_store()?;
    let http = crate::upstream::build_http_client(config)?;
    let mut opts = LoginOptions::new(&config.auth_issuer);
    opts.open_browser = browser_available(&ProcessEnv);
    let tokens = match mode {
        LoginMode::Browser => browser_login(&http, &opts, print_prompt).await?,
        LoginMode::Device => device_login(&http, &opts, print_prompt).await?,
        LoginMode::Paste => {
            paste_login(&http, &opts, print_prompt, tokio::io::BufReader::new(tokio::io::stdin())).await?
        }
    };
    let account = stored_from_tokens(tokens.clone(), label.clone());
    if account.tokens.as_ref().is_some_and(|t| t.account_id.is_empty()) {
        eprintln!("warning: the login carries no ChatGPT account id; the Codex backend may refuse it");
    }
    let (replaced, at_once) = match Live::find(config).await {
        Some(live) => (hand_over(&live, &account.id, &tokens, label).await?, true),
        None => {
            let (id, email, label_) = (account.id.clone(), account.email.clone(), label.clone());
            let saved = tokio::task::spawn_blocking(move || {
                let saved = save_login(&store, tokens, label);
                let note = crate::audit::Note::default().with("email", email).with("label", label_);
                super::destination::audit(&store, "account.login", Some(&id), &saved, note);
                saved
            });
            (saved.await??.replaced, false)
        }
    };
    say!(
        "{} {} (plan {}, id {}{}) {} {}",
        if replaced { "Logged in again as" } else { "Added" },
        account.email.as_deref().unwrap_or("an account without an email"),
        account.plan.as_deref().unwrap_or("unknown"),
        account.id,
        account.label.as_deref().map(|l| format!(", label {l}")).unwrap_or_default(),
        if replaced { "in" } else { "to" },
        config.store_at().describe()
    );
    match at_once {
        true => say!("The running gateway serves it now."),
        false => say!("A gateway running elsewhere on this store sees it within 30 s (its next re-read)."),
    }
    Ok(())
}

/// Give the login to the running gateway as a Codex auth.json (`POST /admin/accounts`, the import path: the
/// same row as [`save_login`] makes, a re-login keeping its label); says whether the identity was known.
async fn hand_over(live: &Live, id: &str, tokens: &Tokens, label: Option<String>) -> anyhow::Result<bool> {
    let known = live.call(reqwest::Method::GET, &format!("/admin/accounts/{id}"), None).await.is_ok();
    let auth_json = json!({
        "tokens": {
            "id_token": tokens.id_token,
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "account_id": tokens.account_id,
        },
        "last_refresh": format_rfc3339(tokens.last_refresh),
    });
    live.call(reqwest::Method::POST, "/admin/accounts", Some(json!({"auth_json": auth_json, "label": label}))).await?;
    Ok(known)
}

fn print_prompt(p: Prompt) {
    match p {
        Prompt::Browser { url } => {
            say!("Sign in to ChatGPT in your browser:\n\n  {url}\n");
            say!(
                "If no browser opened, open the address above on this machine. Waiting up to 5 minutes...\n\
                 (On a remote machine, use `codex-gateway login --device` or `--paste`.)"
            );
        }
        Prompt::Paste { url } => {
            say!("1. Open this address in a browser on any machine and sign in:\n\n  {url}\n");
            say!(
                "2. The browser then fails to load http://localhost:1455/auth/callback?... That is expected.\n   \
                 Copy the whole address from its address bar and paste it here, then press Enter:"
            );
        }
        Prompt::Device { verification_url, user_code } => {
            say!("Open {verification_url} and enter this code: {user_code}\n");
            say!(
                "Waiting for approval (up to 15 minutes)...\n\
                 (If the page refuses the code, enable device code authorization for Codex in ChatGPT's \
                 Settings > Security.)"
            );
        }
    }
}
