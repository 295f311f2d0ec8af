//! Time-based one-time passwords (RFC 6238, HMAC-SHA1, 6 digits, 30-second steps), the second factor of a password
//! sign-in: a secret is 20 random bytes, kept base32 as authenticator apps read it.

use rand::RngCore;
use ring::hmac;

/// Seconds per step.
pub const STEP: i64 = 30;
const DIGITS: u32 = 6;
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new secret, base32.
pub fn new_secret() -> String {
    let mut b = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut b);
    base32(&b)
}

/// RFC 4648 base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buf >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The bytes of a base32 secret (case, spaces and padding ignored); `None` for any other character.
pub fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in text.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = ALPHABET.iter().position(|&a| char::from(a) == c.to_ascii_uppercase())? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buf >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// The HOTP value of `key` at `counter` (RFC 4226 section 5.3).
pub fn hotp(key: &[u8], counter: u64) -> u32 {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key), &counter.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let code = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    code % 10u32.pow(DIGITS)
}

/// The code at unix time `now`, as the six digits an app shows.
pub fn code_at(key: &[u8], now: i64) -> String {
    format!("{:06}", hotp(key, (now.max(0) / STEP) as u64))
}

/// Whether `code` is the one of `secret` (base32) at `now`, or of the step before or after (clocks drift).
/// Compared in constant time; every candidate is compared.
pub fn verify(secret: &str, code: &str, now: i64) -> bool {
    let Some(key) = unbase32(secret) else { return false };
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    [-STEP, 0, STEP].iter().fold(false, |ok, d| ok | super::ct_eq(&code_at(&key, now + d), code))
}

/// The `otpauth://` URI authenticator apps import (shown once, at enrolment).
pub fn uri(secret: &str, account: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20");
    format!(
        "otpauth://totp/codex-gateway:{}?secret={secret}&issuer=codex-gateway&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        enc(account)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1: the secret is ASCII `12345678901234567890`, 8 digits there; the last 6 of
    /// each are what a 6-digit code keeps.
    #[test]
    fn rfc_6238_vectors() {
        let key = b"12345678901234567890";
        for (t, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(key, t), eight[2..], "t = {t}");
        }
    }

    /// RFC 4226 appendix D.
    #[test]
    fn rfc_4226_vectors() {
        let key = b"12345678901234567890";
        let want = [755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489];
        for (counter, want) in want.iter().enumerate() {
            assert_eq!(hotp(key, counter as u64), *want);
        }
    }

    #[test]
    fn base32_round_trips_and_reads_like_apps() {
        assert_eq!(base32(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(unbase32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq"), Some(b"12345678901234567890".to_vec()));
        assert_eq!(unbase32("not base32!"), None);
        let s = new_secret();
        assert_eq!(s.len(), 32);
        assert_eq!(unbase32(&s).map(|b| b.len()), Some(20));
    }

    #[test]
    fn a_code_is_good_one_step_either_side_and_no_further() {
        let secret = base32(b"12345678901234567890");
        let code = code_at(b"12345678901234567890", 1_234_567_890);
        assert!(verify(&secret, &code, 1_234_567_890));
        assert!(verify(&secret, &code, 1_234_567_890 + STEP));
        assert!(verify(&secret, &code, 1_234_567_890 - STEP));
        assert!(!verify(&secret, &code, 1_234_567_890 + 3 * STEP));
        assert!(!verify(&secret, "12345", 1_234_567_890));
        assert!(!verify(&secret, "abcdef", 1_234_567_890));
    }

    #[test]
    fn the_uri_names_the_account_and_the_parameters() {
        let u = uri("JBSWY3DPEHPK3PXP", "ana@example.com");
        assert!(u.starts_with("otpauth://totp/codex-gateway:ana%40example.com?secret=JBSWY3DPEHPK3PXP"), "{u}");
        assert!(u.contains("digits=6") && u.contains("period=30"), "{u}");
    }
}
