//! issue 72: models, their facts and their efforts as the backend's catalog lists them, in every dialect. The
//! fake lists the GPT-6.2 models as the official client's 0.171 catalog does (Pro here: efforts low to ultra,
//! default low, Fast, minimal client 0.166.0, their own context windows) beside the GPT-5 ones (low to xhigh); a
//! request's effort, however the dialect asks for it, reaches the backend as one the model takes (the fake
//! refuses any other), and the client families (Claude's, Gemini's) follow the catalog's models.

use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, start};

async fn pro() -> TestEnv {
    start(Setup { plans: vec!["pro"], ollama: true, ..Setup::default() }).await
}

/// POST `body` to `url` (a path on the main port, or a full URL), expect a 200, and return what went upstream.
async fn sent(env: &TestEnv, url: &str, body: Value) -> Value {
    let url = if url.starts_with("http") { url.to_string() } else { env.url(url) };
    let resp = env.http.post(&url).json(&body).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{url} {body}: {text}");
    env.upstream_bodies().pop().unwrap_or_default()
}

/// (model, effort) of an upstream body.
fn model_and_effort(up: &Value) -> (String, Option<String>) {
    (up["model"].as_str().unwrap_or_default().to_string(), up["reasoning"]["effort"].as_str().map(str::to_string))
}

/// What went upstream: the model and its effort.
type Sent = (String, Option<String>);

fn want(model: &str, effort: &str) -> Sent {
    (model.to_string(), Some(effort.to_string()))
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[tokio::test]
async fn efforts_are_held_to_what_the_model_lists_in_every_dialect() {
    let env = pro().await;
    let bridge = env.ollama.clone().unwrap_or_default();
    let chat = |model: &str, extra: Value| {
        let mut body = json!({"model": model, "messages": user("effort")});
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        body
    };
    let cases: Vec<(&str, String, Value, Sent)> = vec![
        // Chat: model suffixes and `reasoning_effort`.
        ("chat", "/v1/chat/completions".into(), chat("gpt-6.2-sol-ultra", json!({})), want("gpt-6.2-sol", "ultra")),
        ("chat", "/v1/chat/completions".into(), chat("gpt-6.2-astra-max", json!({})), want("gpt-6.2-astra", "max")),
        ("chat", "/v1/chat/completions".into(), chat("gpt-5.4-ultra", json!({})), want("gpt-5.4", "xhigh")),
        (
            "chat",
            "/v1/chat/completions".into(),
            chat("gpt-5.4", json!({"reasoning_effort": "max"})),
            want("gpt-5.4", "xhigh"),
        ),
        (
            "chat",
            "/v1/chat/completions".into(),
            chat("gpt-5.4", json!({"reasoning_effort": "none"})),
            want("gpt-5.4", "low"),
        ),
        (
            "chat",
            "/v1/chat/completions".into(),
            chat("gpt-6.2-sol", json!({"reasoning_effort": "max"})),
            want("gpt-6.2-sol", "max"),
        ),
        // Responses: passed through, but never an effort the model does not list.
        (
            "responses",
            "/v1/responses".into(),
            json!({"model": "gpt-6.2-sol", "input": "effort", "reasoning": {"effort": "ultra"}}),
            want("gpt-6.2-sol", "ultra"),
        ),
        (
            "responses",
            "/v1/responses".into(),
            json!({"model": "gpt-5.5", "input": "effort", "reasoning": {"effort": "ultra"}}),
            want("gpt-5.5", "xhigh"),
        ),
        // Anthropic: the families follow the catalog (opus: its first model, haiku: its small one); thinking
        // budgets and `output_config.effort` held to the model's efforts.
        (
            "anthropic",
            "/v1/messages".into(),
            json!({"model": "claude-opus-4-5", "max_tokens": 200000, "messages": user("effort"),
                "thinking": {"type": "enabled", "budget_tokens": 100000}}),
            want("gpt-6.2-sol", "max"),
        ),
        (
            "anthropic",
            "/v1/messages".into(),
            json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": user("effort"),
                "output_config": {"effort": "ultra"}}),
            want("gpt-6.2-astra", "ultra"),
        ),
        (
            "anthropic",
            "/v1/messages".into(),
            json!({"model": "claude-haiku-4-5", "max_tokens": 100, "messages": user("effort"),
                "output_config": {"effort": "max"}}),
            want("gpt-5.4-mini", "xhigh"),
        ),
        // Gemini: families, thinking budgets and Codex ids with suffixes.
        (
            "gemini",
            "/v1beta/models/gemini-2.5-pro:generateContent".into(),
            json!({"contents": [{"role": "user", "parts": [{"text": "effort"}]}],
                "generationConfig": {"thinkingConfig": {"thinkingBudget": 40000}}}),
            want("gpt-6.2-sol", "xhigh"),
        ),
        (
            "gemini",
            "/v1beta/models/gpt-6.2-astra-ultra:generateContent".into(),
            json!({"contents": [{"role": "user", "parts": [{"text": "effort"}]}]}),
            want("gpt-6.2-astra", "ultra"),
        ),
        (
            "gemini",
            "/v1beta/models/gemini-2.5-flash-lite:generateContent".into(),
            json!({"contents": [{"role": "user", "parts": [{"text": "effort"}]}],
                "generationConfig": {"thinkingConfig": {"thinkingLevel": "HIGH"}}}),
            want("gpt-5.4-mini", "high"),
        ),
        // Ollama: `think` as an effort.
        (
            "ollama",
            format!("{bridge}/api/chat"),
            json!({"model": "gpt-6.2-sol:latest", "think": "ultra", "stream": false, "messages": user("effort")}),
            want("gpt-6.2-sol", "ultra"),
        ),
        (
            "ollama",
            format!("{bridge}/api/chat"),
            json!({"model": "gpt-5.4", "think": "max", "stream": false, "messages": user("effort")}),
            want("gpt-5.4", "xhigh"),
        ),
        (
            "ollama",
            format!("{bridge}/api/generate"),
            json!({"model": "gpt-6.2-astra", "think": "max", "stream": false, "prompt": "effort"}),
            want("gpt-6.2-astra", "max"),
        ),
    ];
    for (dialect, url, body, expected) in cases {
        let up = sent(&env, &url, body.clone()).await;
        assert_eq!(model_and_effort(&up), expected, "{dialect} {body}");
    }
    // The Fast tier of a suffix goes with the effort.
    let up = sent(&env, "/v1/chat/completions", chat("gpt-6.2-astra-ultra-fast", json!({}))).await;
    assert_eq!(
        (model_and_effort(&up), up["service_tier"].clone()),
        (want("gpt-6.2-astra", "ultra"), json!("priority"))
    );
    // What the ledger keeps is what went upstream.
    let rows = crate::usage::rows(&env, 18).await;
    let efforts: Vec<&str> = rows.iter().filter_map(|r| r["effort"].as_str()).collect();
    assert!(efforts.contains(&"ultra") && efforts.contains(&"xhigh") && !efforts.contains(&"none"), "{efforts:?}");
}

/// The configured default effort is held to each model's efforts like a client's.
#[tokio::test]
async fn the_default_effort_is_held_to_each_model() {
    let env = start(Setup {
        plans: vec!["pro"],
        config_toml: Some("default_reasoning_effort = \"ultra\"\n".into()),
        ..Setup::default()
    })
    .await;
    for (model, effort) in [("gpt-6.2-sol", "ultra"), ("gpt-5.4", "xhigh")] {
        let up = sent(&env, "/v1/chat/completions", json!({"model": model, "messages": user("default")})).await;
        assert_eq!(model_and_effort(&up), want(model, effort));
    }
}

/// Every listing takes its models and their facts from the catalog: the GPT-6.2 models with their windows and
/// efforts, the Claude and Gemini families pointing at the catalog's models. A Plus account's catalog keeps the
/// families on its own models.
#[tokio::test]
async fn listings_and_families_come_from_the_catalog() {
    let env = pro().await;
    let bridge = env.ollama.clone().unwrap_or_default();
    let models = env.get_json("/v1/models").await;
    let sol = models["models"].as_array().and_then(|m| m.iter().find(|e| e["slug"] == "gpt-6.2-sol").cloned());
    let sol = sol.unwrap_or_else(|| panic!("gpt-6.2-sol listed: {models}"));
    let efforts: Vec<&str> = sol["supported_reasoning_levels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["effort"].as_str())
        .collect();
    assert_eq!(efforts, ["low", "medium", "high", "xhigh", "max", "ultra"]);
    assert_eq!(
        (sol["context_window"].clone(), sol["minimal_client_version"].clone()),
        (json!(500000), json!("0.166.0"))
    );
    assert_eq!(models["data"][0]["id"], "gpt-6.2-sol", "best first: {models}");

    let gemini = env.get_json("/v1beta/models/gemini-2.5-pro").await;
    assert_eq!(
        (gemini["baseModelId"].clone(), gemini["inputTokenLimit"].clone()),
        (json!("gemini-2.5-pro"), json!(500000))
    );
    let astra = env.get_json("/v1beta/models/gpt-6.2-astra").await;
    assert_eq!((astra["inputTokenLimit"].clone(), astra["thinking"].clone()), (json!(272000), json!(true)));

    let show = env.http.post(format!("{bridge}/api/show")).json(&json!({"model": "gpt-6.2-sol"})).send().await;
    let show: Value = match show {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(e) => panic!("show: {e}"),
    };
    assert_eq!(show["model_info"]["gpt.context_length"], 500000, "{show}");
    assert_eq!(show["capabilities"], json!(["completion", "tools", "thinking", "vision"]));

    // A Plus catalog: the families stay on its models.
    let plus = start(Setup::default()).await;
    for (claude, slug) in
        [("claude-opus-4-5", "gpt-5.5"), ("claude-sonnet-4-5", "gpt-5.4"), ("claude-haiku-4-5", "gpt-5.4-mini")]
    {
        let up = sent(&plus, "/v1/messages", json!({"model": claude, "max_tokens": 10, "messages": user("who")})).await;
        assert_eq!(up["model"], slug, "{claude}");
    }
}

/// A slug that ends in an effort word names that model when the catalog lists it (`gpt-5.1-codex-max`), and still
/// takes a further suffix; a shorter listed slug with that effort is not what was asked for.
#[tokio::test]
async fn a_listed_slug_that_ends_like_a_suffix_is_that_model() {
    let env = start(Setup { models: Some(vec!["gpt-5.1-codex-max", "gpt-5.1-codex"]), ..Setup::default() }).await;
    for (asked, expected) in [
        ("gpt-5.1-codex-max", ("gpt-5.1-codex-max".to_string(), None)),
        ("gpt-5.1-codex-max-high", want("gpt-5.1-codex-max", "high")),
        ("gpt-5.1-codex-low", want("gpt-5.1-codex", "low")),
    ] {
        let up = sent(&env, "/v1/chat/completions", json!({"model": asked, "messages": user("suffix")})).await;
        assert_eq!(model_and_effort(&up), expected, "{asked}");
    }
}
