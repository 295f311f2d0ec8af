//! The ID token's checks with P-256 keys made by each test (ring), tokens signed by `jsonwebtoken`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

use super::*;

const ISSUER: &str = "https://idp.example.test";
const CLIENT: &str = "gateway";
const NONCE: &str = "n-0S6_WzA2Mj";
const NOW: i64 = 1_800_000_000;

/// A fresh P-256 key: its signing half and its JWKS entry.
fn key(kid: &str) -> (EncodingKey, Value) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .unwrap_or_else(|e| panic!("generate: {e}"));
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .unwrap_or_else(|e| panic!("parse: {e}"));
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
    });
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": CLIENT, "sub": "248289761001", "nonce": NONCE, "iat": NOW, "exp": NOW + 300,
           "email": "ana@example.com"})
}

fn sign(claims: &Value, with: &EncodingKey, kid: &str) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, with).unwrap_or_else(|e| panic!("sign: {e}"))
}

fn want() -> Expected<'static> {
    Expected { issuer: ISSUER, client_id: CLIENT, nonce: NONCE, now: NOW }
}

/// Check `token` as the sign-in does: header, key by kid from `jwks`, signature and claims.
fn check(token: &str, jwks: &Value) -> Result<Map<String, Value>, IdTokenError> {
    let (alg, kid) = header(token)?;
    let keys = signing_keys(jwks);
    let key = key_for(&keys, kid.as_deref(), alg).ok_or(IdTokenError::UnknownKey)?;
    // `exp` is checked against the real clock by jsonwebtoken: the tokens here are dated from the real now.
    verify(token, key, alg, &Expected { now: jsonwebtoken::get_current_timestamp() as i64, ..want() })
}

fn now_claims() -> Value {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let mut c = claims();
    c["iat"] = now.into();
    c["exp"] = (now + 300).into();
    c
}

#[test]
fn a_good_token_passes_and_its_claims_are_read() {
    let (sk, jwk) = key("k1");
    let (_, other) = key("k2");
    let jwks = json!({"keys": [other, jwk, {"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]});
    let got = check(&sign(&now_claims(), &sk, "k1"), &jwks);
    assert_eq!(got.map(|c| c["email"].clone()), Ok(json!("ana@example.com")));
}

#[test]
fn a_token_signed_by_another_key_is_refused() {
    let (_, jwk) = key("k1");
    let (forger, _) = key("k1");
    let jwks = json!({"keys": [jwk]});
    assert_eq!(check(&sign(&now_claims(), &forger, "k1"), &jwks), Err(IdTokenError::Signature));
}

#[test]
fn a_token_for_another_client_or_from_another_issuer_is_refused() {
    let (sk, jwk) = key("k1");
    let jwks = json!({"keys": [jwk]});
    let mut c = now_claims();
    c["aud"] = json!("someone-else");
    assert_eq!(check(&sign(&c, &sk, "k1"), &jwks), Err(IdTokenError::Audience));
    let mut c = now_claims();
    c["aud"] = json!([CLIENT, "someone-else"]);
    assert_eq!(check(&sign(&c, &sk, "k1"), &jwks), Err(IdTokenError::Audience), "several audiences, no azp");
    c["azp"] = json!(CLIENT);
    assert!(check(&sign(&c, &sk, "k1"), &jwks).is_ok(), "azp names the client");
    let mut c = now_claims();
    c["iss"] = json!("https://evil.example.test");
    assert_eq!(check(&sign(&c, &sk, "k1"), &jwks), Err(IdTokenError::Issuer));
}

#[test]
fn an_expired_or_future_token_is_refused_beyond_the_leeway() {
    let (sk, jwk) = key("k1");
    let jwks = json!({"keys": [jwk]});
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let mut c = now_claims();
    c["exp"] = (now - 120).into();
    assert_eq!(check(&sign(&c, &sk, "k1"), &jwks), Err(IdTokenError::Expired));
    c["exp"] = (now - 30).into();
    assert!(check(&sign(&c, &sk, "k1"), &jwks).is_ok(), "within the leeway");
    let mut c = now_claims();
    c["iat"] = (now + 600).into();
    c["exp"] = (now + 900).into();
    assert_eq!(check(&sign(&c, &sk, "k1"), &jwks), Err(IdTokenError::IssuedInFuture));
}

#[test]
fn a_wrong_or_missing_nonce_is_refused() {
    let (sk, jwk) = key("k1");
    let jwks = json!({"keys": [jwk]});
    let mut c = now_claims();
    c["nonce"] = json!("another-sign-in");
    assert_eq!(check(&sign(&c, &sk, "k1"), &jwks), Err(IdTokenError::Nonce));
    if let Some(o) = c.as_object_mut() {
        o.shift_remove("nonce");
    }
    assert_eq!(check(&sign(&c, &sk, "k1"), &jwks), Err(IdTokenError::Nonce));
}

#[test]
fn unsigned_and_hmac_tokens_and_unknown_keys_are_refused() {
    let (sk, jwk) = key("k1");
    let jwks = json!({"keys": [jwk]});
    let body = B64.encode(now_claims().to_string());
    let none = format!("{}.{body}.", B64.encode(r#"{"alg":"none","kid":"k1"}"#));
    assert!(check(&none, &jwks).is_err());
    let hs = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &now_claims(), &EncodingKey::from_secret(b"k"))
        .unwrap_or_default();
    assert_eq!(check(&hs, &jwks), Err(IdTokenError::Algorithm("HS256".into())));
    assert_eq!(check(&sign(&now_claims(), &sk, "k9"), &jwks), Err(IdTokenError::UnknownKey));
    assert_eq!(check("not a token", &jwks), Err(IdTokenError::Malformed));
}
