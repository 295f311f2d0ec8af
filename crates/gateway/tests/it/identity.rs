//! The official client's identity from every dialect (issue 57; docs/protocol.md "Identity"): what reaches the
//! backend for a Chat, Responses, Anthropic, Gemini or Ollama request carries the routing hint, the window id, the
//! turn metadata and `client_metadata` with the serving account's own installation id, one thread id everywhere,
//! the official User-Agent and header order, and a zstd body; the gateway's own calls (catalog, workspace check,
//! quota, token refresh) carry the official client's headers for each.

use std::collections::HashSet;

use fake_codex::RecordedRequest;
use serde_json::{Value, json};

use crate::harness::{Setup, TestEnv, start};

fn header<'a>(r: &'a RecordedRequest, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn names(r: &RecordedRequest) -> Vec<&str> {
    r.headers.iter().map(|(k, _)| k.as_str()).filter(|k| !["host", "content-length"].contains(k)).collect()
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

/// The header names of an HTTP Responses request, in the official client's order (Codex CLI 0.169); a body of
/// the official client's size is compressed (`content-encoding` after `accept`), a small one is not.
const HTTP_ORDER: &[&str] = &[
    "version",
    "x-codex-beta-features",
    "x-codex-window-id",
    "x-codex-turn-metadata",
    "x-codex-routing-hint",
    "x-client-request-id",
    "session-id",
    "thread-id",
    "accept",
    "content-encoding",
    "content-type",
    "authorization",
    "chatgpt-account-id",
    "originator",
    "user-agent",
];

/// One request per dialect, each answered.
async fn one_turn_per_dialect(env: &TestEnv, ollama: &str, model: &str) {
    let user = "identity check";
    let requests: Vec<(String, Value)> = vec![
        (
            env.url("/v1/chat/completions"),
            json!({"model": model, "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": user}]}),
        ),
        (env.url("/v1/responses"), json!({"model": model, "input": user, "instructions": "sys"})),
        (
            env.url("/v1/messages"),
            json!({"model": model, "max_tokens": 100, "system": "sys", "messages": [{"role": "user", "content": user}]}),
        ),
        (
            env.url(&format!("/v1beta/models/{model}:generateContent")),
            json!({"contents": [{"role": "user", "parts": [{"text": user}]}]}),
        ),
        (
            format!("{ollama}/api/chat"),
            json!({"model": model, "stream": false, "messages": [{"role": "user", "content": user}]}),
        ),
    ];
    for (url, body) in requests {
        let resp = env.http.post(&url).json(&body).send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 200, "{url}: {text}");
    }
}

#[tokio::test]
async fn every_dialect_reaches_the_backend_with_the_official_clients_identity() {
    let env = start(Setup { ollama: true, ..Setup::default() }).await;
    let ollama = env.ollama.clone().unwrap_or_default();
    one_turn_per_dialect(&env, &ollama, "gpt-5.4").await;
    let sent = env.fake.requests_to("/codex/responses");
    assert_eq!(sent.len(), 5, "one per dialect");
    let installation = env.dir.join("codex-home/installation_id");
    let installation = std::fs::read_to_string(&installation).unwrap_or_else(|e| panic!("{e}"));
    assert!(is_uuid(&installation), "a linked login keeps the official client's file: {installation:?}");
    for r in &sent {
        let body = &r.body;
        let ctx = format!("{} {:?}", r.path, body["input"]);
        let order: Vec<&str> = HTTP_ORDER.iter().copied().filter(|n| *n != "content-encoding").collect();
        assert_eq!(names(r), order, "{ctx}");
        assert_eq!(header(r, "x-codex-routing-hint"), Some("model=gpt-5.4"), "{ctx}");
        assert_eq!(header(r, "originator"), Some("codex_cli_rs"), "{ctx}");
        assert_eq!(header(r, "x-codex-beta-features"), Some("remote_compaction_v2"), "{ctx}");
        let ua = header(r, "user-agent").unwrap_or_default();
        assert!(ua.starts_with("codex_cli_rs/0.169.0 (") && !ua.contains("codex-gateway"), "{ua}");
        // One thread id everywhere, as the official client sends its own.
        let thread = header(r, "session-id").unwrap_or_default();
        assert!(is_uuid(thread), "{ctx}");
        assert_eq!(header(r, "thread-id"), Some(thread));
        assert_eq!(header(r, "x-client-request-id"), Some(thread));
        assert_eq!(body["prompt_cache_key"], thread);
        assert_eq!(header(r, "x-codex-window-id"), Some(format!("{thread}:0").as_str()));
        let meta = &body["client_metadata"];
        assert_eq!(meta["x-codex-installation-id"], installation.as_str(), "{ctx}");
        assert_eq!(meta["session_id"], thread);
        assert_eq!(meta["guardian_credits_requested"], "true");
        let turn: Value = serde_json::from_str(meta["x-codex-turn-metadata"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(turn["installation_id"], installation.as_str());
        assert_eq!(turn["request_kind"], "turn");
        assert_eq!(turn["thread_id"], thread);
        assert_eq!(turn["turn_id"], meta["turn_id"]);
        let header_turn: Value =
            serde_json::from_str(header(r, "x-codex-turn-metadata").unwrap_or_default()).unwrap_or_default();
        assert_eq!(header_turn, turn, "the header and the body's copy agree");
        assert!(body.get("instructions").is_none(), "{ctx}");
    }
    // The system text of each dialect that has one is the first developer message.
    for r in sent.iter().take(3) {
        assert_eq!(r.body["input"][0]["role"], "developer", "{}", r.body);
    }
    // A body of the official client's size goes compressed, its header where the official client puts it.
    let long = "words of a long conversation ".repeat(300);
    let (status, _, text) = env
        .post("/v1/chat/completions", &json!({"model": "gpt-5.4", "messages": [{"role": "user", "content": long}]}))
        .await;
    assert_eq!(status, 200, "{text}");
    let last = env.fake.requests_to("/codex/responses").pop().unwrap_or_else(|| panic!("no request"));
    assert_eq!(names(&last), HTTP_ORDER);
    assert_eq!(header(&last, "content-encoding"), Some("zstd"));
    assert!(last.body["input"].to_string().contains("long conversation"), "the fake read the compressed body");
    // A Fast request says its tier in the routing hint.
    let (status, _, text) = env
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt-5.4-fast",
        "messages": [{"role": "user", "content": "fast"}]}),
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let last = env.fake.requests_to("/codex/responses").pop().unwrap_or_else(|| panic!("no request"));
    assert_eq!(header(&last, "x-codex-routing-hint"), Some("model=gpt-5.4;tier=priority"));
}

#[tokio::test]
async fn each_account_has_an_installation_id_of_its_own_that_outlives_a_restart() {
    let setup = || Setup { accounts: 3, linked: false, store_accounts: true, ..Setup::default() };
    let mut env = start(setup()).await;
    let mut seen = std::collections::HashMap::new();
    for i in 0..12 {
        let body =
            json!({"model": "gpt-5.4", "input": format!("conversation {i}"), "prompt_cache_key": format!("c{i}")});
        let (status, _, text) = env.post("/v1/responses", &body).await;
        assert_eq!(status, 200, "{text}");
    }
    for r in env.fake.requests_to("/codex/responses") {
        let id = r.body["client_metadata"]["x-codex-installation-id"].as_str().unwrap_or_default().to_string();
        assert!(is_uuid(&id));
        let account = header(&r, "chatgpt-account-id").unwrap_or_default().to_string();
        assert_eq!(seen.entry(account).or_insert_with(|| id.clone()), &id, "stable per account");
    }
    assert_eq!(seen.len(), 3, "every account served: {seen:?}");
    let distinct: HashSet<&String> = seen.values().collect();
    assert_eq!(distinct.len(), 3, "never shared between accounts");
    // The same store after a restart: the same ids.
    env.stop_gateway();
    let db = env.dir.join("data/gateway.db");
    let store = codex_gateway::store::Store::open(&db).unwrap_or_else(|e| panic!("{e}"));
    for (account, id) in &seen {
        let stored = store
            .list_accounts()
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.tokens.as_ref().is_some_and(|t| &t.account_id == account))
            .map(|a| a.id)
            .unwrap_or_default();
        let again = store.installation_id(&stored, "00000000-0000-4000-8000-000000000000").ok().flatten();
        assert_eq!(again.as_ref(), Some(id), "kept in the store");
    }
}

#[tokio::test]
async fn the_gateways_own_calls_carry_the_official_clients_headers() {
    let env = start(Setup { accounts: 1, ..Setup::default() }).await;
    let (status, _, text) = env.post("/v1/responses", &json!({"model": "gpt-5.4", "input": "hi"})).await;
    assert_eq!(status, 200, "{text}");
    let all = env.fake.requests();
    // The login is checked as the official client checks it when it starts, before its catalog is read.
    let check = all.iter().position(|r| r.path.ends_with("/wham/accounts/check"));
    let models = all.iter().position(|r| r.path.ends_with("/codex/models"));
    assert!(check.is_some() && check < models, "{:?}", all.iter().map(|r| &r.path).collect::<Vec<_>>());
    let check = &all[check.unwrap_or_default()];
    assert_eq!(names(check), ["user-agent", "authorization", "chatgpt-account-id", "accept"]);
    let models = &all[models.unwrap_or_default()];
    assert_eq!(names(models), ["version", "authorization", "chatgpt-account-id", "originator", "user-agent", "accept"]);
    assert_eq!(header(models, "accept"), Some("*/*"));
    // A token refresh: the official client's headers and its reason.
    env.fake.expire_access_tokens(&env.accounts[0].account_id);
    let (status, _, text) = env.post("/v1/responses", &json!({"model": "gpt-5.4", "input": "after expiry"})).await;
    assert_eq!(status, 200, "{text}");
    let token = env.fake.requests_to("/oauth/token").pop().unwrap_or_else(|| panic!("no refresh"));
    assert_eq!(names(&token), ["content-type", "originator", "user-agent", "accept"]);
    assert_eq!(token.body["refresh_reason"], "unauthorized_recovery", "{}", token.body);
    let keys: Vec<&String> = token.body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["client_id", "grant_type", "refresh_reason", "refresh_token"]);
}

/// A pool's accounts are not all read at once: the first request reads the catalog (and runs the workspace check)
/// of the account that serves it, not of every account.
#[tokio::test]
async fn the_first_request_reads_only_the_serving_accounts_catalog() {
    let env = start(Setup { accounts: 4, linked: false, store_accounts: true, ..Setup::default() }).await;
    let (status, _, text) = env.post("/v1/responses", &json!({"model": "gpt-5.4", "input": "hi"})).await;
    assert_eq!(status, 200, "{text}");
    let all = env.fake.requests();
    let served: HashSet<&str> = all
        .iter()
        .filter(|r| r.path.ends_with("/codex/responses"))
        .filter_map(|r| header(r, "chatgpt-account-id"))
        .collect();
    let read: HashSet<&str> = all
        .iter()
        .filter(|r| r.path.ends_with("/codex/models") || r.path.ends_with("/wham/accounts/check"))
        .filter_map(|r| header(r, "chatgpt-account-id"))
        .collect();
    assert_eq!(served.len(), 1);
    assert_eq!(read, served, "only the serving account was read");
}

/// A model the catalog flags `use_responses_lite` gets the official client's Responses Lite turn from every caller
/// (docs/protocol.md "Responses Lite"): the header after the turn metadata over HTTP, the tools in a leading
/// `additional_tools` item (plain ones in the `functions` namespace, hosted ones left out), the system text the
/// developer message after it, no parallel tool calls, `reasoning.context` `all_turns`; over the WebSocket the
/// `client_metadata` member instead of the header, which the handshake does not carry. The fake takes
/// `additional_tools` only for such a model, so a shaped request to another model would be refused.
#[tokio::test]
async fn a_responses_lite_model_gets_the_official_clients_lite_turn_over_both_transports() {
    for transport in ["sse", "websocket"] {
        let env = start(Setup {
            config_toml: Some(format!("[upstream]\ntransport = \"{transport}\"\n")),
            ..Setup::default()
        })
        .await;
        env.fake.set_responses_lite("gpt-5.4", true);
        let function = json!({"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}});
        let chat = json!({"model": "gpt-5.4", "tools": [function],
            "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "lite check"}]});
        let (status, _, text) = env.post("/v1/chat/completions", &chat).await;
        assert_eq!(status, 200, "{transport}: {text}");
        let responses = json!({"model": "gpt-5.4", "input": "lite check", "instructions": "sys",
            "tools": [{"type": "web_search"}, {"type": "function", "name": "g", "parameters": {"type": "object"}}]});
        let (status, _, text) = env.post("/v1/responses", &responses).await;
        assert_eq!(status, 200, "{transport}: {text}");
        // The same request to a model that is not lite goes in the ordinary shape.
        let (status, _, text) = env
            .post(
                "/v1/chat/completions",
                &json!({"model": "gpt-5.5", "tools": [function],
            "messages": [{"role": "user", "content": "plain"}]}),
            )
            .await;
        assert_eq!(status, 200, "{transport}: {text}");
        let sent = env.fake.requests_to("/codex/responses");
        assert_eq!(sent.len(), 3, "{transport}");
        for (r, tool) in sent.iter().take(2).zip(["lookup", "g"]) {
            let (b, ctx) = (&r.body, format!("{transport} {}", r.body));
            let websocket = r.http_version == "websocket";
            assert_eq!(websocket, transport == "websocket", "{ctx}");
            let lite_header = header(r, "x-openai-internal-codex-responses-lite");
            let member = &b["client_metadata"]["ws_request_header_x_openai_internal_codex_responses_lite"];
            if websocket {
                assert_eq!((lite_header, member.as_str()), (None, Some("true")), "{ctx}");
            } else {
                assert_eq!((lite_header, member.as_str()), (Some("true"), None), "{ctx}");
                let n = names(r);
                let at = |name: &str| n.iter().position(|x| *x == name);
                let lite = at("x-openai-internal-codex-responses-lite");
                assert!(at("x-codex-turn-metadata") < lite && lite < at("x-codex-routing-hint"), "{n:?}");
            }
            assert!(b.get("tools").is_none() && b.get("instructions").is_none(), "{ctx}");
            let item = &b["input"][0];
            assert_eq!((item["type"].as_str(), item["role"].as_str()), (Some("additional_tools"), Some("developer")));
            assert!(item["id"].as_str().is_some_and(|id| id.starts_with("at_")), "{ctx}");
            let tools = item["tools"].as_array().cloned().unwrap_or_default();
            assert_eq!(tools.len(), 1, "one namespace, the hosted web search left out: {ctx}");
            assert_eq!((tools[0]["type"].as_str(), tools[0]["name"].as_str()), (Some("namespace"), Some("functions")));
            assert_eq!(tools[0]["tools"][0]["name"], tool, "{ctx}");
            assert_eq!(b["input"][1]["role"], "developer", "{ctx}");
            assert_eq!(b["input"][1]["content"][0]["text"], "sys", "{ctx}");
            assert_eq!(b["parallel_tool_calls"], false, "{ctx}");
            assert_eq!(b["reasoning"]["context"], "all_turns", "{ctx}");
        }
        let plain = &sent[2];
        assert!(
            plain.body["tools"].is_array() && plain.body["input"][0]["type"] != "additional_tools",
            "{}",
            plain.body
        );
        assert!(header(plain, "x-openai-internal-codex-responses-lite").is_none());
        assert!(
            plain.body["client_metadata"].get("ws_request_header_x_openai_internal_codex_responses_lite").is_none()
        );
    }
}
