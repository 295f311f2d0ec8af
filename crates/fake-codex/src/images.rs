//! The backend's image endpoints (ChatGPT mode), as the official client calls them (codex-rs
//! `codex-api/src/endpoint/images.rs` and `images.rs`): `POST /backend-api/codex/images/generations` with
//! `{prompt, background?, model, n?, quality?, size?}` and `POST .../images/edits` with the same plus
//! `images: [{image_url: "data:..."}]` (`model` optional there), unary JSON both ways. The answer is
//! `{created, data: [{b64_json}], background, output_format, quality, size, usage}` with usage in image tokens.
//!
//! Strict like the Responses endpoint: the same credentials and `originator`, a JSON object with only those
//! fields, each of its type and values, a GPT Image model, a paid plan (the official client offers image
//! generation to no Free plan), the account's quota; anything else is a 400 (`{"detail": ...}`). The images
//! are small valid PNGs (16x16, one colour per prompt), whatever the size asked for.

use crate::responses::exhausted;
use crate::server::{chatgpt_auth, detail, json_response};
use crate::state::Shared;
use crate::tokens::now_secs;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The models the endpoints serve.
pub const MODELS: [&str; 4] = ["gpt-image-2", "gpt-image-1.5", "gpt-image-1", "gpt-image-1-mini"];
/// Output image tokens per image, by quality (`auto` costs as `medium`).
fn output_tokens(quality: &str) -> u64 {
    match quality {
        "low" => 272,
        "high" => 4160,
        _ => 1056,
    }
}
/// Input image tokens per image an edit is given.
const INPUT_IMAGE_TOKENS: u64 = 323;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Generate,
    Edit,
}

pub(crate) async fn generations(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(&shared, &headers, &body, Op::Generate)
}

pub(crate) async fn edits(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    answer(&shared, &headers, &body, Op::Edit)
}

fn bad(message: &str) -> Response {
    detail(StatusCode::BAD_REQUEST, message)
}

fn answer(shared: &Arc<Shared>, headers: &HeaderMap, body: &[u8], op: Op) -> Response {
    let account = match chatgpt_auth(shared, headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut resp = reply(shared, &account, headers, body, op);
    resp.extensions_mut().insert(crate::server::AuthedAccount(Some(account)));
    resp
}

fn reply(shared: &Arc<Shared>, account: &str, headers: &HeaderMap, body: &[u8], op: Op) -> Response {
    if headers.get("originator").is_none() {
        return bad("missing originator");
    }
    let plan = shared.inner.lock().accounts.get(account).map(|a| a.plan.clone()).unwrap_or_default();
    if plan == "free" {
        return detail(StatusCode::FORBIDDEN, "Image generation is not available on the Free plan");
    }
    let request = match validate(body, op) {
        Ok(r) => r,
        Err(message) => return bad(&message),
    };
    if let Some(refusal) = exhausted(shared, account, &plan) {
        return refusal;
    }
    shared.charge(account);
    let n = request.get("n").and_then(Value::as_u64).unwrap_or(1);
    let prompt = request.get("prompt").and_then(Value::as_str).unwrap_or_default();
    let pick = |k: &str, auto: &str| match request.get(k).and_then(Value::as_str) {
        None | Some("auto") => auto.to_string(),
        Some(v) => v.to_string(),
    };
    let quality = pick("quality", "medium");
    let inputs = request.get("images").and_then(Value::as_array).map_or(0, Vec::len) as u64;
    let text_tokens = crate::sse::approx_tokens(prompt.len());
    let image_in = inputs * INPUT_IMAGE_TOKENS;
    let image_out = n * output_tokens(&quality);
    let png = base64::engine::general_purpose::STANDARD.encode(png(prompt));
    let body = json!({
        "created": now_secs(),
        "background": pick("background", "opaque"),
        "data": (0..n).map(|_| json!({"b64_json": png})).collect::<Vec<_>>(),
        "output_format": "png",
        "quality": quality,
        "size": pick("size", "1024x1024"),
        "usage": {
            "input_tokens": text_tokens + image_in,
            "input_tokens_details": {"image_tokens": image_in, "text_tokens": text_tokens},
            "output_tokens": image_out,
            "output_tokens_details": {"image_tokens": image_out, "text_tokens": 0},
            "total_tokens": text_tokens + image_in + image_out,
        },
    });
    let mut resp = json_response(StatusCode::OK, body);
    crate::ratelimits::put(shared, account, resp.headers_mut());
    resp
}

/// The request, checked field by field; the message of the 400 otherwise.
fn validate(body: &[u8], op: Op) -> Result<Map<String, Value>, String> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err("Invalid JSON body: expected an object".into());
    };
    for (key, value) in &fields {
        let ok = match key.as_str() {
            "prompt" => value.as_str().is_some_and(|p| !p.trim().is_empty()),
            "model" => value.as_str().is_some_and(|m| MODELS.contains(&m)),
            "n" => value.as_u64().is_some_and(|n| (1..=10).contains(&n)),
            "quality" => matches!(value.as_str(), Some("low" | "medium" | "high" | "auto")),
            "background" => matches!(value.as_str(), Some("transparent" | "opaque" | "auto")),
            "size" => value.as_str().is_some_and(valid_size),
            "images" if op == Op::Edit => valid_images(value),
            _ => return Err(format!("Unsupported parameter: '{key}'")),
        };
        if !ok {
            return Err(format!("Invalid value for '{key}': {value}"));
        }
    }
    if !fields.contains_key("prompt") {
        return Err("Field required: 'prompt'".into());
    }
    match op {
        Op::Generate if !fields.contains_key("model") => Err("Field required: 'model'".into()),
        Op::Edit if !fields.contains_key("images") => Err("Field required: 'images'".into()),
        Op::Generate | Op::Edit => Ok(fields),
    }
}

fn valid_size(size: &str) -> bool {
    size == "auto"
        || size
            .split_once('x')
            .is_some_and(|(w, h)| [w, h].iter().all(|d| d.parse::<u32>().is_ok_and(|px| (256..=4096).contains(&px))))
}

/// `[{image_url: "data:image/...;base64,..."}]`, one to sixteen, nothing else in an entry.
fn valid_images(value: &Value) -> bool {
    let Some(list) = value.as_array() else { return false };
    (1..=16).contains(&list.len())
        && list.iter().all(|item| {
            item.as_object().is_some_and(|o| {
                o.len() == 1
                    && o.get("image_url").and_then(Value::as_str).is_some_and(|u| {
                        u.starts_with("https://")
                            || u.strip_prefix("data:image/")
                                .and_then(|rest| rest.split_once(";base64,"))
                                .is_some_and(|(_, data)| base64::engine::general_purpose::STANDARD.decode(data).is_ok())
                    })
            })
        })
}

/// A 16x16 PNG of one colour, taken from the prompt: valid (signature, IHDR, one stored-deflate IDAT, IEND, each
/// with its CRC) and small.
pub fn png(prompt: &str) -> Vec<u8> {
    const SIDE: usize = 16;
    let hash = prompt.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let [r, g, b, _] = hash.to_be_bytes();
    // Each row: filter byte 0 (none), then its pixels.
    let row: Vec<u8> = std::iter::once(0).chain([r, g, b].into_iter().cycle().take(3 * SIDE)).collect();
    let raw = row.repeat(SIDE);
    // zlib: header, one final stored block, Adler-32.
    let len = raw.len() as u16;
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&(!len).to_le_bytes());
    z.extend_from_slice(&raw);
    let (mut a, mut s) = (1u32, 0u32);
    for byte in &raw {
        a = (a + u32::from(*byte)) % 65521;
        s = (s + a) % 65521;
    }
    z.extend_from_slice(&((s << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&(SIDE as u32).to_be_bytes());
    ihdr.extend_from_slice(&(SIDE as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB, deflate, no filter, no interlace
    let mut out = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    for (kind, data) in [(b"IHDR", ihdr.as_slice()), (b"IDAT", z.as_slice()), (b"IEND", &[][..])] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_png_is_well_formed() {
        let p = png("a red fox");
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&p[12..16], b"IHDR");
        // The known CRC of an empty IEND chunk.
        assert_eq!(&p[p.len() - 4..], &[0xAE, 0x42, 0x60, 0x82]);
        assert_ne!(png("a red fox"), png("a blue fox"), "one colour per prompt");
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let ok = |v: Value, op| validate(v.to_string().as_bytes(), op);
        assert!(
            ok(json!({"prompt":"x","model":"gpt-image-2","size":"1024x1536","quality":"low","n":2}), Op::Generate)
                .is_ok()
        );
        assert!(ok(json!({"prompt":"x","images":[{"image_url":"data:image/png;base64,AAAA"}]}), Op::Edit).is_ok());
        for (v, op) in [
            (json!({"prompt":"x"}), Op::Generate),
            (json!({"prompt":"x","model":"dall-e-3"}), Op::Generate),
            (json!({"prompt":"x","model":"gpt-image-2","response_format":"url"}), Op::Generate),
            (json!({"prompt":"x","model":"gpt-image-2","size":"huge"}), Op::Generate),
            (json!({"prompt":"x","model":"gpt-image-2","images":[]}), Op::Generate),
            (json!({"prompt":"x"}), Op::Edit),
            (json!({"prompt":"x","images":[{"image_url":"data:image/png;base64,%%"}]}), Op::Edit),
            (json!({"prompt":"x","images":[{"image_url":"data:image/png;base64,AAAA","detail":"high"}]}), Op::Edit),
        ] {
            assert!(ok(v.clone(), op).is_err(), "accepted {v}");
        }
    }
}
