//! The Setup page's snippets: for each client the issue lists, the configuration to copy, filled with this
//! gateway's address and a model from the catalog, and the dialect its "Test" button speaks (the page's script
//! sends that tiny request through the gateway itself). The key is typed into the page and substituted there:
//! the server never puts a key into a page.

use axum::http::{HeaderMap, header};
use serde::Serialize;

use crate::config::Config;

/// What the page's script puts in place of the key.
pub const KEY_PLACEHOLDER: &str = "YOUR_GATEWAY_KEY";

/// This gateway's address as the browser reached it (the guard already checked `Host`), else its listen
/// address.
pub fn base_url(headers: &HeaderMap, config: &Config) -> String {
    let scheme = match headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)));
    match host {
        Some(h) => format!("{scheme}://{h}"),
        None => format!("http://{}", config.listen),
    }
}

#[derive(Serialize)]
pub struct Client {
    pub id: &'static str,
    pub name: &'static str,
    /// The request the Test button sends: `chat`, `responses`, `anthropic`, `gemini` or `ollama`.
    pub dialect: &'static str,
    pub snippet: String,
}

/// Every client, in the order the page lists them.
/// `websocket`: the gateway serves the inbound Responses WebSocket, so the Codex CLI's provider says
/// `supports_websockets = true`.
pub fn clients(base: &str, model: &str, ollama: Option<&str>, websocket: bool) -> Vec<Client> {
    let k = KEY_PLACEHOLDER;
    let ws = if websocket { "supports_websockets = true\n" } else { "" };
    let v1 = format!("{base}/v1");
    let ollama_url = ollama.unwrap_or("http://127.0.0.1:11434");
    let c = |id, name, dialect, snippet: String| Client { id, name, dialect, snippet };
    vec![
        c(
            "claude-code",
            "Claude Code",
            "anthropic",
            format!(
                "export ANTHROPIC_BASE_URL={base}\nexport ANTHROPIC_AUTH_TOKEN={k}\nexport ANTHROPIC_MODEL={model}\n\
                 export DISABLE_TELEMETRY=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1\nclaude"
            ),
        ),
        c(
            "codex-cli",
            "Codex CLI",
            "responses",
            format!(
                "# ~/.codex/config.toml\nmodel = \"{model}\"\nmodel_provider = \"gateway\"\n\n\
                 [model_providers.gateway]\nname = \"codex-gateway\"\nbase_url = \"{v1}\"\nwire_api = \"responses\"\n\
                 env_key = \"CODEX_GATEWAY_API_KEY\"\n{ws}\n# then:\nCODEX_GATEWAY_API_KEY={k} codex"
            ),
        ),
        c(
            "gemini-cli",
            "Gemini CLI",
            "gemini",
            format!(
                "# ~/.gemini/settings.json: {{\"security\": {{\"auth\": {{\"selectedType\": \"gemini-api-key\"}}}}}}\n\
                 GOOGLE_GEMINI_BASE_URL={base} GEMINI_API_KEY={k} gemini -m {model}"
            ),
        ),
        c(
            "openai-python",
            "OpenAI Python",
            "chat",
            format!(
                "from openai import OpenAI\nclient = OpenAI(base_url=\"{v1}\", api_key=\"{k}\")\n\
                 r = client.chat.completions.create(model=\"{model}\", messages=[{{\"role\": \"user\", \"content\": \"hi\"}}])\n\
                 print(r.choices[0].message.content)"
            ),
        ),
        c(
            "openai-js",
            "OpenAI JS",
            "responses",
            format!(
                "import OpenAI from \"openai\";\nconst client = new OpenAI({{ baseURL: \"{v1}\", apiKey: \"{k}\" }});\n\
                 const r = await client.responses.create({{ model: \"{model}\", input: \"hi\" }});\nconsole.log(r.output_text);"
            ),
        ),
        c(
            "anthropic-sdk",
            "Anthropic SDK",
            "anthropic",
            format!(
                "import anthropic\nclient = anthropic.Anthropic(base_url=\"{base}\", api_key=\"{k}\")\n\
                 msg = client.messages.create(model=\"{model}\", max_tokens=1024,\n    messages=[{{\"role\": \"user\", \"content\": \"hi\"}}])\n\
                 print(msg.content[0].text)"
            ),
        ),
        c(
            "google-genai",
            "google-genai",
            "gemini",
            format!(
                "from google import genai\nfrom google.genai import types\n\
                 client = genai.Client(api_key=\"{k}\",\n    http_options=types.HttpOptions(base_url=\"{base}\", api_version=\"v1beta\"))\n\
                 print(client.models.generate_content(model=\"{model}\", contents=\"hi\").text)"
            ),
        ),
        c(
            "litellm",
            "LiteLLM",
            "chat",
            format!(
                "import litellm\nlitellm.completion(model=\"openai/{model}\", api_base=\"{v1}\", api_key=\"{k}\",\n\
                 \x20   messages=[{{\"role\": \"user\", \"content\": \"hi\"}}])\n\n\
                 # proxy config.yaml\nmodel_list:\n  - model_name: {model}\n    litellm_params:\n      model: openai/{model}\n      \
                 api_base: {v1}\n      api_key: {k}"
            ),
        ),
        c(
            "aider",
            "aider",
            "chat",
            format!("aider --openai-api-base {v1} --openai-api-key {k} --model openai/{model}"),
        ),
        c(
            "continue",
            "Continue",
            "chat",
            format!(
                "# ~/.continue/config.yaml\nmodels:\n  - name: {model} (codex-gateway)\n    provider: openai\n    model: {model}\n    \
                 apiBase: {v1}\n    apiKey: {k}"
            ),
        ),
        c(
            "opencode",
            "opencode",
            "chat",
            format!(
                "// opencode.json\n{{\n  \"provider\": {{\n    \"gateway\": {{\n      \"npm\": \"@ai-sdk/openai-compatible\",\n      \
                 \"options\": {{ \"baseURL\": \"{v1}\", \"apiKey\": \"{k}\" }},\n      \"models\": {{ \"{model}\": {{}} }}\n    }}\n  }}\n}}"
            ),
        ),
        c(
            "cursor",
            "Cursor",
            "chat",
            format!(
                "Settings -> Models -> OpenAI API Key: {k}\nOverride OpenAI Base URL: {v1}\nAdd model: {model}\n\
                 (Cursor calls from its own servers: the gateway must be reachable from the internet for it.)"
            ),
        ),
        c(
            "cline",
            "Cline",
            "chat",
            format!("API Provider: OpenAI Compatible\nBase URL: {v1}\nAPI Key: {k}\nModel ID: {model}"),
        ),
        c(
            "open-webui",
            "Open WebUI (Ollama bridge)",
            "ollama",
            format!(
                "# Settings -> Connections -> Ollama API\n{ollama_url}\n# model: {model}{}",
                if ollama.is_none() {
                    "\n# The Ollama bridge is off: turn it on in Settings (needs a restart)."
                } else {
                    ""
                }
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Codex CLI snippet's provider, parsed as the TOML it shows.
    fn codex_provider(websocket: bool) -> toml::Value {
        let all = clients("http://127.0.0.1:8765", "gpt-5.4", None, websocket);
        let codex = all.iter().find(|c| c.id == "codex-cli").map(|c| c.snippet.clone()).unwrap_or_default();
        let file = codex.split("# then:").next().unwrap_or_default();
        let parsed: toml::Value = toml::from_str(file).unwrap_or_else(|e| panic!("{e}: {file}"));
        parsed["model_providers"]["gateway"].clone()
    }

    #[test]
    fn the_codex_snippet_turns_on_websockets_when_the_gateway_serves_them() {
        let on = codex_provider(true);
        assert_eq!(on["wire_api"].as_str(), Some("responses"));
        assert_eq!(on["supports_websockets"].as_bool(), Some(true), "{on}");
        let off = codex_provider(false);
        assert!(off.get("supports_websockets").is_none(), "{off}");
        assert_eq!(off["base_url"].as_str(), Some("http://127.0.0.1:8765/v1"));
    }
}
