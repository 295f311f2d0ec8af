//! OAuth: refresh rotation and reuse, expiry, browser and device logins, and the binary.

use super::*;

pub(crate) async fn token_post(fake: &FakeCodex, body: Value) -> reqwest::Response {
    client().post(format!("{}/oauth/token", fake.issuer())).json(&body).send().await.unwrap()
}

pub(crate) fn refresh_body(rt: &str) -> Value {
    json!({"client_id": "app_EMoamEEZ73f0CkXaXp7hrann", "grant_type": "refresh_token", "refresh_token": rt})
}

#[tokio::test]
async fn refresh_rotation_and_reuse() {
    let (fake, c) = start().await;
    let r = token_post(&fake, refresh_body(&c.refresh_token)).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let new_rt = t["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new_rt, c.refresh_token);
    assert_ne!(t["access_token"], json!(c.access_token));
    let claims = fake_codex::tokens::decode_claims(t["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["https://api.openai.com/auth"]["chatgpt_account_id"], json!(c.account_id));
    assert_eq!(claims["https://api.openai.com/auth"]["chatgpt_plan_type"], "plus");
    let access = fake_codex::tokens::decode_claims(t["access_token"].as_str().unwrap()).unwrap();
    assert!(access["exp"].as_i64().unwrap() > access["iat"].as_i64().unwrap());
    // Reuse of the consumed token is refused.
    let r = token_post(&fake, refresh_body(&c.refresh_token)).await;
    assert_eq!(r.status(), 401);
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["error"]["code"], "refresh_token_reused");
    // Unknown token, wrong client id.
    let r = token_post(&fake, refresh_body("rt_unknown")).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "refresh_token_expired");
    let mut wrong = refresh_body(&new_rt);
    wrong["client_id"] = json!("app_other");
    assert_eq!(token_post(&fake, wrong).await.status(), 400);
    // Form-encoded refresh with the rotated token works and the new access token is accepted.
    let r = client()
        .post(format!("{}/oauth/token", fake.issuer()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("client_id=app_EMoamEEZ73f0CkXaXp7hrann&grant_type=refresh_token&refresh_token={new_rt}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let mut c2 = c.clone();
    c2.access_token = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(post(&fake, &c2, &body()).await.status(), 200);
    let outcomes: Vec<String> = fake.token_calls().into_iter().map(|t| t.outcome).collect();
    assert_eq!(outcomes, ["ok", "refresh_token_reused", "refresh_token_expired", "invalid_client", "ok"]);
}

#[tokio::test]
async fn concurrent_refresh_one_wins() {
    let cfg = FakeConfig { token_delay_ms: 100, ..FakeConfig::default() };
    let (fake, c) = start_with(cfg).await;
    let (a, b) = tokio::join!(
        token_post(&fake, refresh_body(&c.refresh_token)),
        token_post(&fake, refresh_body(&c.refresh_token))
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 401]);
    let calls = fake.token_calls();
    assert!(calls.iter().all(|t| t.account_id.as_deref() == Some(c.account_id.as_str())));
}

#[tokio::test]
async fn access_token_expiry() {
    let (fake, c) = start().await;
    fake.expire_access_tokens(&c.account_id);
    let r = post(&fake, &c, &body()).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "token_expired");
    let t: Value = token_post(&fake, refresh_body(&c.refresh_token)).await.json().await.unwrap();
    let mut c2 = c.clone();
    c2.access_token = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(post(&fake, &c2, &body()).await.status(), 200);
    // Expiry by time.
    let (fake, c) = start_with(FakeConfig { access_token_ttl_secs: 1, ..FakeConfig::default() }).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(&fake, &c, &body()).await.status(), 401);
}

#[tokio::test]
async fn authorization_code_flow() {
    let (fake, _) = start().await;
    let verifier = "a-verifier-with-enough-entropy-0123456789";
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
    };
    let redirect = "http://localhost:1455/auth/callback";
    let r = client()
        .get(format!("{}/oauth/authorize", fake.issuer()))
        .query(&[
            ("response_type", "code"),
            ("client_id", "app_EMoamEEZ73f0CkXaXp7hrann"),
            ("redirect_uri", redirect),
            ("scope", "openid profile email offline_access"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "st4te"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(loc.as_str().starts_with(redirect));
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "st4te");
    let exchange = |code: &str, verifier: &str| {
        client()
            .post(format!("{}/oauth/token", fake.issuer()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect),
                ("client_id", "app_EMoamEEZ73f0CkXaXp7hrann"),
                ("code_verifier", verifier),
            ])
            .send()
    };
    assert_eq!(exchange(&q["code"], "wrong-verifier").await.unwrap().status(), 400);
    let r = exchange(&q["code"], verifier).await.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert!(t["refresh_token"].as_str().unwrap().starts_with("rt_"));
    assert_eq!(exchange(&q["code"], verifier).await.unwrap().status(), 400, "code is single-use");
    let claims = fake_codex::tokens::decode_claims(t["id_token"].as_str().unwrap()).unwrap();
    let account = claims["https://api.openai.com/auth"]["chatgpt_account_id"].as_str().unwrap();
    assert_eq!(fake.account_ids().len(), 2);
    assert!(fake.account_ids().iter().any(|a| a == account));
}

#[tokio::test]
async fn device_code_flow() {
    let (fake, _) = start().await;
    let base = format!("{}/api/accounts/deviceauth", fake.issuer());
    let u: Value = client()
        .post(format!("{base}/usercode"))
        .json(&json!({"client_id": "app_EMoamEEZ73f0CkXaXp7hrann"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(u["interval"], "1");
    let poll = json!({"device_auth_id": u["device_auth_id"], "user_code": u["user_code"]});
    for _ in 0..2 {
        let r = client().post(format!("{base}/token")).json(&poll).send().await.unwrap();
        assert_eq!(r.status(), 403);
    }
    let r = client().post(format!("{base}/token")).json(&poll).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    let r = client()
        .post(format!("{}/oauth/token", fake.issuer()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", d["authorization_code"].as_str().unwrap()),
            ("redirect_uri", &format!("{}/deviceauth/callback", fake.issuer())),
            ("client_id", "app_EMoamEEZ73f0CkXaXp7hrann"),
            ("code_verifier", d["code_verifier"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = fake_codex::tokens::decode_claims(t["id_token"].as_str().unwrap()).unwrap();
    let creds = AccountCreds {
        account_id: claims["https://api.openai.com/auth"]["chatgpt_account_id"].as_str().unwrap().into(),
        id_token: String::new(),
        access_token: t["access_token"].as_str().unwrap().into(),
        refresh_token: String::new(),
        email: String::new(),
        plan: "plus".into(),
    };
    assert_eq!(post(&fake, &creds, &body()).await.status(), 200);
}

#[tokio::test]
async fn binary_prints_and_writes_auth_json() {
    let dir = std::env::temp_dir().join(format!("fake-codex-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let auth = dir.join("auth.json");
    let (mut child, mut lines, url) =
        spawn_binary(&["--accounts".as_ref(), "2".as_ref(), "--write-auth-json".as_ref(), auth.as_os_str()]).await;
    assert!(url.starts_with("http://127.0.0.1:"));
    let acct = lines.next_line().await.unwrap().unwrap();
    let id = acct.split(' ').nth(1).unwrap().to_string();
    assert!(lines.next_line().await.unwrap().unwrap().starts_with("account "));
    for _ in 0..50 {
        if auth.exists() && std::fs::metadata(&auth).unwrap().len() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&auth).unwrap()).unwrap();
    assert_eq!(doc["tokens"]["account_id"], json!(id));
    assert!(doc["OPENAI_API_KEY"].is_null());
    // RFC 3339 UTC in whole seconds: `2026-01-02T03:04:05Z`.
    let last = doc["last_refresh"].as_str().unwrap();
    assert!(last.len() == 20 && last.ends_with('Z') && &last[10..11] == "T" && &last[4..5] == "-", "{last}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let r = client()
        .post(format!("{url}/oauth/token"))
        .json(&refresh_body(doc["tokens"]["refresh_token"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
