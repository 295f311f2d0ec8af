//! The OpenAI Images API (`POST /v1/images/generations`, `/v1/images/edits`) onto the Codex backend's image
//! endpoints (codex-rs `codex-api/src/images.rs`: `{prompt, background?, model, n?, quality?, size?}`, edits with
//! `images: [{image_url}]`; unary JSON, the images come back as `b64_json`). Pure: the gateway reads the body
//! (JSON, or a multipart form it hands over as [`FormField`]s) and does the call (`server/images.rs`).
//!
//! Parameter policy (docs/parameter-policy.md "Images"): what the backend takes is passed; what only restates
//! what the gateway does anyway is dropped (`response_format: "b64_json"`, `output_format: "png"`,
//! `moderation: "auto"`, `user`, `stream: false`); anything else is refused with a 400 naming the parameter.

use serde_json::{Map, Value, json};

use crate::error::{ErrorKind, GatewayError};
use crate::responses::event::Usage;

/// The image model when the client names none: the one the official client asks the backend for.
pub const DEFAULT_MODEL: &str = "gpt-image-2";
/// Most images one request may ask for (`n`), as the OpenAI API allows.
const MAX_N: u64 = 10;
/// Most input images of one edit, as the OpenAI API allows for GPT Image models.
const MAX_INPUT_IMAGES: usize = 16;

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Generate,
    Edit,
}

impl Operation {
    /// The backend's path under the Codex base URL.
    pub fn upstream_path(self) -> &'static str {
        match self {
            Operation::Generate => "images/generations",
            Operation::Edit => "images/edits",
        }
    }
}

/// A validated request, ready for the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest {
    pub op: Operation,
    pub model: String,
    /// The backend body (`{prompt, model, ...}`).
    pub body: Map<String, Value>,
}

/// One field of a multipart form: text, or a file's bytes with the type its part declared.
#[derive(Debug, Clone)]
pub enum FormField {
    Text { name: String, value: String },
    File { name: String, content_type: Option<String>, bytes: Vec<u8> },
}

fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::invalid_param(param, message)
}

/// A JSON body (generations, or edits with `images: [{image_url}]`).
pub fn decode_json(op: Operation, body: &[u8]) -> Result<ImageRequest, GatewayError> {
    let value: Value = crate::json::decode_body(body)?;
    let Value::Object(fields) = value else {
        return Err(GatewayError::invalid("The request body must be a JSON object"));
    };
    decode(op, fields, Vec::new())
}

/// A multipart form (edits as the OpenAI SDKs send them: `image` / `image[]` files, the rest as text fields).
pub fn decode_form(op: Operation, form: Vec<FormField>) -> Result<ImageRequest, GatewayError> {
    let mut fields = Map::new();
    let mut images = Vec::new();
    for field in form {
        match field {
            FormField::Text { name, value } => {
                let value = match name.as_str() {
                    // Numbers arrive as text in a form.
                    "n" | "output_compression" | "partial_images" => match value.trim().parse::<u64>() {
                        Ok(n) => json!(n),
                        Err(_) => Value::String(value),
                    },
                    "stream" => match value.trim() {
                        "true" => json!(true),
                        "false" => json!(false),
                        _ => Value::String(value),
                    },
                    _ => Value::String(value),
                };
                fields.insert(name, value);
            }
            FormField::File { name, content_type, bytes } => match name.as_str() {
                "image" | "image[]" => images.push(data_url(&name, content_type.as_deref(), &bytes)?),
                "mask" => return Err(invalid("mask", mask_refusal())),
                other => return Err(invalid(other, format!("Unsupported file field: `{other}`"))),
            },
        }
    }
    decode(op, fields, images)
}

fn mask_refusal() -> &'static str {
    "`mask` is not supported: the backend's edit endpoint takes no mask; describe the change in `prompt`"
}

/// An input image as a data URL, its type from the bytes themselves (SDKs often send files as
/// `application/octet-stream`); only PNG, JPEG, WEBP and GIF are images here.
fn data_url(param: &str, declared: Option<&str>, bytes: &[u8]) -> Result<String, GatewayError> {
    use base64::Engine as _;
    let mime = match bytes {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        _ => {
            let what = declared.unwrap_or("unknown type");
            return Err(invalid(param, format!("The file is not a PNG, JPEG, WEBP or GIF image ({what})")));
        }
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(format!("data:{mime};base64,{b64}"))
}

fn string(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, GatewayError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(name, format!("`{name}` must be a string"))),
    }
}

/// A string field that must be one of `allowed`.
fn choice(fields: &Map<String, Value>, name: &str, allowed: &[&str]) -> Result<Option<String>, GatewayError> {
    match string(fields, name)? {
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
        Some(v) => Err(invalid(name, format!("`{name}` must be one of {}; got `{v}`", allowed.join(", ")))),
        None => Ok(None),
    }
}

/// A size the backend takes: `auto`, or `WIDTHxHEIGHT`.
fn valid_size(size: &str) -> bool {
    size == "auto"
        || size.split_once('x').is_some_and(|(w, h)| {
            [w, h].iter().all(|d| !d.is_empty() && d.len() <= 5 && d.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// The parameters other than the backend's own: each value is passed (below), dropped, or refused.
fn check_others(fields: &Map<String, Value>, op: Operation) -> Result<(), GatewayError> {
    for (name, value) in fields {
        match (name.as_str(), value) {
            ("prompt" | "model" | "n" | "size" | "quality" | "background", _) => {}
            ("images", _) if op == Operation::Edit => {}
            // Dropped: they restate what the gateway does anyway, or carry nothing the backend takes.
            (_, Value::Null) | ("user", _) | ("stream", Value::Bool(false)) => {}
            ("response_format", Value::String(f)) if f == "b64_json" => {}
            ("output_format", Value::String(f)) if f == "png" => {}
            ("moderation", Value::String(m)) if m == "auto" => {}
            ("response_format", _) => {
                return Err(invalid(name, "Only `b64_json` is supported: the gateway returns the images inline"));
            }
            ("output_format", _) => return Err(invalid(name, "Only `png` is supported: the backend returns PNG")),
            ("stream" | "partial_images", _) => {
                return Err(invalid(name, "Streamed images are not supported: the backend answers whole"));
            }
            ("mask", _) if op == Operation::Edit => return Err(invalid(name, mask_refusal())),
            ("style" | "output_compression" | "moderation" | "input_fidelity" | "image" | "mask" | "images", _) => {
                return Err(invalid(name, format!("`{name}` is not supported by the backend's image endpoints")));
            }
            _ => return Err(invalid(name, format!("Unsupported parameter: `{name}`"))),
        }
    }
    Ok(())
}

/// Input images of a JSON edit: `[{image_url: "data:..." | "https://..."}]`.
fn json_images(fields: &Map<String, Value>) -> Result<Vec<String>, GatewayError> {
    let Some(list) = fields.get("images").filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let Value::Array(list) = list else { return Err(invalid("images", "`images` must be an array")) };
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let param = format!("images[{i}]");
        if item.get("file_id").is_some() {
            return Err(invalid(&param, "`file_id` is not supported (there is no Files API); send `image_url`"));
        }
        match item.get("image_url").and_then(Value::as_str) {
            Some(url) if url.starts_with("data:image/") || url.starts_with("https://") => out.push(url.to_string()),
            _ => return Err(invalid(&param, "Each image needs an `image_url`: a `data:image/...` or https URL")),
        }
    }
    Ok(out)
}

fn decode(op: Operation, fields: Map<String, Value>, files: Vec<String>) -> Result<ImageRequest, GatewayError> {
    check_others(&fields, op)?;
    let prompt = match string(&fields, "prompt")? {
        Some(p) if !p.trim().is_empty() => p,
        _ => return Err(invalid("prompt", "`prompt` is required")),
    };
    let model = string(&fields, "model")?.filter(|m| !m.is_empty()).unwrap_or_else(|| DEFAULT_MODEL.to_string());
    if !model.starts_with("gpt-image") {
        return Err(invalid(
            "model",
            format!("The backend serves GPT Image models (e.g. `{DEFAULT_MODEL}`), not `{model}`"),
        )
        .with_code("model_not_found"));
    }
    let mut body = Map::new();
    if op == Operation::Edit {
        let mut images = files;
        images.extend(json_images(&fields)?);
        if images.is_empty() {
            return Err(invalid("image", "An edit needs at least one input image (`image` files or `images`)"));
        }
        if images.len() > MAX_INPUT_IMAGES {
            return Err(invalid("image", format!("At most {MAX_INPUT_IMAGES} input images")));
        }
        body.insert("images".into(), Value::Array(images.into_iter().map(|u| json!({"image_url": u})).collect()));
    }
    body.insert("prompt".into(), Value::String(prompt));
    body.insert("model".into(), Value::String(model.clone()));
    match fields.get("n") {
        None | Some(Value::Null) => {}
        Some(n) => match n.as_u64() {
            Some(n @ 1..=MAX_N) => {
                body.insert("n".into(), json!(n));
            }
            _ => return Err(invalid("n", format!("`n` must be an integer from 1 to {MAX_N}"))),
        },
    }
    if let Some(size) = string(&fields, "size")? {
        if !valid_size(&size) {
            return Err(invalid(
                "size",
                format!("`size` must be `auto` or WIDTHxHEIGHT (e.g. 1024x1024); got `{size}`"),
            ));
        }
        body.insert("size".into(), Value::String(size));
    }
    if let Some(q) = choice(&fields, "quality", &["low", "medium", "high", "auto"])? {
        body.insert("quality".into(), Value::String(q));
    }
    if let Some(b) = choice(&fields, "background", &["transparent", "opaque", "auto"])? {
        body.insert("background".into(), Value::String(b));
    }
    Ok(ImageRequest { op, model, body })
}

/// The backend's answer as the OpenAI Images response, and its usage for the ledger. The answer must carry at
/// least one image (the official client refuses one without `data`).
pub fn render(answer: &[u8]) -> Result<(Value, Usage), GatewayError> {
    let unreadable = |why: &str| {
        GatewayError::new(ErrorKind::UpstreamUnavailable, format!("The backend's image answer is unreadable: {why}"))
    };
    let v: Value = serde_json::from_slice(answer).map_err(|e| unreadable(&e.to_string()))?;
    let data: Vec<Value> = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| unreadable("no `data`"))?
        .iter()
        .map(|d| {
            let mut out = Map::new();
            out.insert("b64_json".into(), d.get("b64_json").cloned().unwrap_or(Value::Null));
            if let Some(p) = d.get("revised_prompt").filter(|p| p.is_string()) {
                out.insert("revised_prompt".into(), p.clone());
            }
            Value::Object(out)
        })
        .collect();
    if data.is_empty() || data.iter().any(|d| !d["b64_json"].is_string()) {
        return Err(unreadable("no image in `data`"));
    }
    let mut out = Map::new();
    out.insert("created".into(), v.get("created").filter(|c| c.is_u64()).cloned().unwrap_or(json!(0)));
    out.insert("data".into(), Value::Array(data));
    for key in ["background", "output_format", "quality", "size", "usage"] {
        if let Some(x) = v.get(key).filter(|x| !x.is_null()) {
            out.insert(key.into(), x.clone());
        }
    }
    let u = v.get("usage");
    let n = |k: &str| u.and_then(|u| u.get(k)).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (n("input_tokens"), n("output_tokens"));
    let total = match n("total_tokens") {
        0 => input.saturating_add(output),
        t => t,
    };
    let usage = Usage { input_tokens: input, output_tokens: output, total_tokens: total, ..Usage::default() };
    Ok((Value::Object(out), usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_req(op: Operation, v: Value) -> Result<ImageRequest, GatewayError> {
        decode_json(op, v.to_string().as_bytes())
    }

    #[test]
    fn generations_pass_the_backends_parameters_and_default_the_model() {
        let r = json_req(
            Operation::Generate,
            json!({"prompt":"a fox","n":2,"size":"1024x1536","quality":"high","background":"transparent",
                "response_format":"b64_json","output_format":"png","user":"u","moderation":"auto"}),
        );
        let r = r.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            Value::Object(r.body),
            json!({"prompt":"a fox","model":"gpt-image-2","n":2,"size":"1024x1536","quality":"high","background":"transparent"})
        );
    }

    #[test]
    fn what_the_backend_lacks_is_a_400_naming_the_parameter() {
        for (body, param) in [
            (json!({"prompt":"x","response_format":"url"}), "response_format"),
            (json!({"prompt":"x","output_format":"webp"}), "output_format"),
            (json!({"prompt":"x","style":"vivid"}), "style"),
            (json!({"prompt":"x","quality":"hd"}), "quality"),
            (json!({"prompt":"x","size":"big"}), "size"),
            (json!({"prompt":"x","n":0}), "n"),
            (json!({"prompt":"x","n":11}), "n"),
            (json!({"prompt":"x","stream":true}), "stream"),
            (json!({"prompt":"x","model":"dall-e-3"}), "model"),
            (json!({"prompt":"x","seed":1}), "seed"),
            (json!({"prompt":""}), "prompt"),
            (json!({"n":1}), "prompt"),
        ] {
            let e = json_req(Operation::Generate, body.clone()).err().unwrap_or_else(|| panic!("accepted {body}"));
            assert_eq!((e.kind, e.param.as_deref()), (ErrorKind::InvalidRequest, Some(param)), "{body}");
        }
        assert!(decode_json(Operation::Generate, b"[]").is_err());
        assert!(decode_json(Operation::Generate, b"{").is_err());
    }

    #[test]
    fn edits_take_files_or_image_urls() {
        let png = [0x89, b'P', b'N', b'G', 0, 1];
        let form = vec![
            FormField::Text { name: "prompt".into(), value: "add a hat".into() },
            FormField::Text { name: "n".into(), value: "1".into() },
            FormField::File {
                name: "image[]".into(),
                content_type: Some("application/octet-stream".into()),
                bytes: png.to_vec(),
            },
        ];
        let r = decode_form(Operation::Edit, form).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(r.body["images"], json!([{"image_url": "data:image/png;base64,iVBORwAB"}]));
        assert_eq!(r.body["n"], 1);
        let r = json_req(Operation::Edit, json!({"prompt":"x","images":[{"image_url":"data:image/png;base64,AA=="}]}));
        assert!(r.is_ok());
        for (form, param) in [
            (vec![FormField::Text { name: "prompt".into(), value: "x".into() }], "image"),
            (
                vec![
                    FormField::Text { name: "prompt".into(), value: "x".into() },
                    FormField::File {
                        name: "image".into(),
                        content_type: Some("text/plain".into()),
                        bytes: b"hi".to_vec(),
                    },
                ],
                "image",
            ),
            (
                vec![
                    FormField::Text { name: "prompt".into(), value: "x".into() },
                    FormField::File { name: "image".into(), content_type: None, bytes: png.to_vec() },
                    FormField::File { name: "mask".into(), content_type: None, bytes: png.to_vec() },
                ],
                "mask",
            ),
        ] {
            let e = decode_form(Operation::Edit, form).err().unwrap_or_else(|| panic!("accepted"));
            assert_eq!(e.param.as_deref(), Some(param));
        }
        let e = json_req(Operation::Edit, json!({"prompt":"x","images":[{"file_id":"file_1"}]})).err();
        assert_eq!(e.and_then(|e| e.param), Some("images[0]".into()));
    }

    #[test]
    fn the_backends_answer_becomes_the_images_response_with_its_usage() {
        let answer = json!({"created": 7, "background": "opaque", "data": [{"b64_json": "QUJD"}], "output_format": "png",
            "quality": "medium", "size": "1024x1024",
            "usage": {"input_tokens": 20, "input_tokens_details": {"image_tokens": 0, "text_tokens": 20},
                "output_tokens": 1056, "output_tokens_details": {"image_tokens": 1056, "text_tokens": 0}, "total_tokens": 1076}});
        let (v, usage) = render(answer.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(v["data"], json!([{"b64_json": "QUJD"}]));
        assert_eq!((v["created"].clone(), v["size"].clone()), (json!(7), json!("1024x1024")));
        assert_eq!((usage.input_tokens, usage.output_tokens, usage.total_tokens), (20, 1056, 1076));
        for bad in [json!({"created": 1}), json!({"data": []}), json!({"data": [{"url": "x"}]})] {
            let e = render(bad.to_string().as_bytes()).err().map(|e| e.kind);
            assert_eq!(e, Some(ErrorKind::UpstreamUnavailable), "{bad}");
        }
    }
}
