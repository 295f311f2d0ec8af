//! `codex-gateway connect CLIENT [--key KEY] [--model MODEL] [--write]`: the settings that point an AI client at
//! this gateway, printed, or merged into the client's own file (`--write`): only the gateway's keys change, every
//! other setting stays, the old file is kept as `FILE.bak`, and a second `--write` finds nothing to change.

mod continue_yaml;
mod credentials_store;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::config::{Config, Env, ProcessEnv, home};
use credentials_store::{CredentialsStore, StoreFlag};

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The client to configure.
    client: Client,
    /// The client key it sends (default: any string on a keyless loopback gateway; required when the gateway
    /// requires keys, since configured keys are never printed; not with the Codex sign-in, whose token stands in
    /// for it).
    #[arg(long)]
    key: Option<String>,
    /// The model it asks for.
    #[arg(long, default_value = "gpt-5.4")]
    model: String,
    /// Merge the settings into the client's own configuration file (a backup is kept as FILE.bak).
    #[arg(long)]
    write: bool,
    /// Codex: sign each developer in with their own user (`gateway_oauth`) even when this machine cannot see the
    /// gateway's users (by default only when its store has users).
    #[arg(long)]
    sign_in: bool,
    /// Codex sign-in: where the CLI keeps its gateway token (`auto`: chosen for this machine, `file` where it has no
    /// keyring: no D-Bus Secret Service, a container, WSL, SSH).
    #[arg(long, value_enum, default_value = "auto")]
    credentials_store: StoreFlag,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    ClaudeCode,
    Codex,
    Gemini,
    Opencode,
    Aider,
    Continue,
}

/// Whether `item` already holds `v` (then the file is left as it is): strings, booleans and integers by value,
/// lists and inline tables by their text.
fn holds(item: Option<&toml_edit::Item>, v: &toml_edit::Value) -> bool {
    use toml_edit::Value as V;
    match (item.and_then(toml_edit::Item::as_value), v) {
        (Some(V::String(a)), V::String(b)) => a.value() == b.value(),
        (Some(V::Boolean(a)), V::Boolean(b)) => a.value() == b.value(),
        (Some(V::Integer(a)), V::Integer(b)) => a.value() == b.value(),
        (Some(have), V::Array(_) | V::InlineTable(_)) => have.to_string().trim() == v.to_string().trim(),
        _ => false,
    }
}

/// What one client needs: a file and how to merge into it.
struct Plan {
    file: PathBuf,
    merge: Merge,
    /// Printed after the settings: environment the client also needs, how to start it.
    note: String,
}

/// A table's path and the keys set in it.
type TomlTable = (Vec<&'static str>, Vec<(&'static str, toml_edit::Value)>);

enum Merge {
    /// JSON: set each (path, value); objects on the way are created, nothing else is touched.
    Json(Vec<(Vec<&'static str>, Value)>),
    /// TOML (toml_edit keeps comments and order): top-level keys and tables (a table and its subtable).
    Toml { top: Vec<(&'static str, String)>, tables: Vec<TomlTable> },
    /// `KEY=value` or `key: value` lines at the top level (a .env file, aider's flat YAML).
    Lines { separator: &'static str, pairs: Vec<(&'static str, String)> },
    /// One entry in Continue's `models:` list (continue_yaml.rs).
    Yaml(continue_yaml::Entry),
}

pub(crate) async fn run(config: &Config, args: ConnectArgs) -> anyhow::Result<()> {
    let base = super::service::reach(config).base;
    let sign_in = args.client == Client::Codex && (args.sign_in || has_users(config).await);
    // With the sign-in the CLI sends the user's gateway token, never a client key: none is asked for or written.
    let key = match (&args.key, sign_in, super::keys::requires_a_key(config)) {
        (Some(_), true, _) => {
            eprintln!("note: --key is not written: with the sign-in the Codex CLI sends the user's own token");
            String::new()
        }
        (None, true, _) => String::new(),
        (Some(k), false, _) => k.clone(),
        (None, false, false) => "unused".to_string(),
        (None, false, true) if args.write => bail!("this gateway requires a client key: pass it with --key"),
        (None, false, true) => "<your client key>".to_string(),
    };
    let store = sign_in
        .then(|| credentials_store::choose(args.credentials_store, &credentials_store::Machine::here(&ProcessEnv)));
    let oauth = sign_in.then_some(&config.oauth);
    let to = Gateway {
        base: &base,
        key: &key,
        websocket: config.inbound_ws.enabled,
        oauth,
        store: store.as_ref().map(|(s, _)| *s),
    };
    for plan in plans(args.client, &to, &args.model, &ProcessEnv) {
        if args.write {
            write(&plan)?;
        } else {
            say!("# {}", plan.file.display());
            say!("{}", merged("", &plan.merge)?);
        }
        if !plan.note.is_empty() {
            say!("{}", plan.note);
        }
    }
    if let Some((store, why)) = store {
        say!("# the CLI keeps its gateway token in {}: {why}", where_kept(store));
    }
    Ok(())
}

/// Where a store keeps the CLI's token, for `connect`'s output.
fn where_kept(store: CredentialsStore) -> String {
    let how = match store {
        CredentialsStore::File => "a file of CODEX_HOME (secrets/gateway_oauth.json, this user only)",
        CredentialsStore::Keyring => "a file of CODEX_HOME encrypted with a key in the OS keyring",
    };
    format!("{how} (credentials_store = \"{}\")", store.as_str())
}

/// Whether the configured store has users; a store that is not there (this machine is not the gateway's) has none.
async fn has_users(config: &Config) -> bool {
    if config.store.url.is_none() && !config.db_path().exists() {
        return false;
    }
    let config = config.clone();
    let found = tokio::task::spawn_blocking(move || config.open_store().and_then(|s| s.any_user())).await;
    matches!(found, Ok(Ok(true)))
}

/// The gateway a client is pointed at.
struct Gateway<'a> {
    base: &'a str,
    key: &'a str,
    /// It serves the inbound Responses WebSocket (`[server] websocket`).
    websocket: bool,
    /// Users sign the Codex CLI in (oauth/): its `gateway_oauth` settings.
    oauth: Option<&'a crate::config::OAuthConfig>,
    /// Where the signed-in CLI keeps its token (credentials_store.rs); `None`: the CLI's default.
    store: Option<CredentialsStore>,
}

fn plans(client: Client, to: &Gateway, model: &str, env: &dyn Env) -> Vec<Plan> {
    let (base, key) = (to.base, to.key);
    let home = home(env);
    let s = |v: &str| Value::String(v.to_string());
    match client {
        Client::ClaudeCode => {
            let dir = env.get("CLAUDE_CONFIG_DIR").map(PathBuf::from).unwrap_or_else(|| home.join(".claude"));
            let e = |k: &'static str, v: &str| (vec!["env", k], s(v));
            vec![Plan {
                file: dir.join("settings.json"),
                merge: Merge::Json(vec![
                    e("ANTHROPIC_BASE_URL", base),
                    e("ANTHROPIC_AUTH_TOKEN", key),
                    e("ANTHROPIC_MODEL", model),
                    e("ANTHROPIC_DEFAULT_HAIKU_MODEL", "gpt-5.4-mini"),
                    e("DISABLE_TELEMETRY", "1"),
                    e("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
                    e("DISABLE_ERROR_REPORTING", "1"),
                ]),
                note: "# then: claude".into(),
            }]
        }
        Client::Codex => vec![codex_plan(to, model, env, &home)],
        Client::Gemini => {
            let dir = home.join(".gemini");
            vec![
                Plan {
                    file: dir.join("settings.json"),
                    merge: Merge::Json(vec![
                        (vec!["security", "auth", "selectedType"], s("gemini-api-key")),
                        (vec!["model", "name"], s(model)),
                    ]),
                    note: String::new(),
                },
                Plan {
                    file: dir.join(".env"),
                    merge: Merge::Lines {
                        separator: "=",
                        pairs: vec![("GOOGLE_GEMINI_BASE_URL", base.into()), ("GEMINI_API_KEY", key.into())],
                    },
                    note: "# then: gemini".into(),
                },
            ]
        }
        Client::Opencode => {
            let dir = env.get("XDG_CONFIG_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".config"));
            let provider = json!({
                "npm": "@ai-sdk/openai-compatible",
                "name": "codex-gateway",
                "options": {"baseURL": format!("{base}/v1"), "apiKey": key},
                "models": {model: {"name": model}},
            });
            vec![Plan {
                file: dir.join("opencode").join("opencode.json"),
                merge: Merge::Json(vec![
                    (vec!["provider", "codex-gateway"], provider),
                    (vec!["model"], s(&format!("codex-gateway/{model}"))),
                ]),
                note: "# then: opencode".into(),
            }]
        }
        Client::Aider => vec![Plan {
            file: home.join(".aider.conf.yml"),
            merge: Merge::Lines {
                separator: ": ",
                pairs: vec![
                    ("openai-api-base", format!("{base}/v1")),
                    ("openai-api-key", key.into()),
                    ("model", format!("openai/{model}")),
                ],
            },
            note: "# then: aider".into(),
        }],
        Client::Continue => vec![Plan {
            file: home.join(".continue").join("config.yaml"),
            merge: Merge::Yaml(continue_yaml::Entry {
                name: format!("{model} (codex-gateway)"),
                fields: vec![
                    ("provider", "openai".into()),
                    ("model", model.into()),
                    ("apiBase", format!("{base}/v1")),
                    ("apiKey", key.into()),
                ],
            }),
            note: "# then: reload Continue in your editor".into(),
        }],
    }
}

/// The Codex CLI's provider in its `config.toml` (`$CODEX_HOME`, else `~/.codex`).
fn codex_plan(to: &Gateway, model: &str, env: &dyn Env, home: &std::path::Path) -> Plan {
    let (base, key) = (to.base, to.key);
    let dir = env.get("CODEX_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".codex"));
    let mut provider: Vec<(_, toml_edit::Value)> = vec![
        ("name", "codex-gateway".into()),
        ("base_url", format!("{base}/v1").into()),
        ("wire_api", "responses".into()),
    ];
    // With the sign-in the user's token is the credential: no client key to send. The CLI then reads the model
    // catalog from the gateway too, with the same token (the Codex catalog is under `models` in `/v1/models`).
    match to.oauth {
        None => provider.push(("env_key", "CODEX_GATEWAY_API_KEY".into())),
        Some(_) => provider.push(("model_catalog_url", format!("{base}/v1/models").into())),
    }
    // Off on the gateway: the key is left out (an older `true` is harmless, the handshake's 426 sends the CLI to HTTP).
    if to.websocket {
        provider.push(("supports_websockets", true.into()));
    }
    let path = vec!["model_providers", "codex-gateway"];
    let mut tables = vec![(path.clone(), provider)];
    let note = match to.oauth {
        // The official client's `gateway_oauth` (0.156+): its field names and the delivery's `kind`/`name`/
        // `scheme` as the client parses them (docs/clients.md, "Codex CLI").
        Some(o) => {
            let endpoint = |p: &str| toml_edit::Value::from(format!("{base}/dashboard/oauth/{p}"));
            let delivery = [("kind", "header"), ("name", o.header.as_str()), ("scheme", "Bearer")];
            let mut oauth = vec![
                ("authorization_url", endpoint("authorize")),
                ("token_url", endpoint("token")),
                ("device_authorization_url", endpoint("device/code")),
                ("client_id", o.client_id.as_str().into()),
                ("scopes", toml_edit::Array::from_iter(["models"]).into()),
                ("redirect_port", i64::from(o.redirect_port).into()),
                ("delivery", toml_edit::InlineTable::from_iter(delivery).into()),
            ];
            if let Some(store) = to.store {
                oauth.push(("credentials_store", store.as_str().into()));
            }
            tables.push(([path, vec!["gateway_oauth"]].concat(), oauth));
            "# then: codex (it signs you in to the gateway with your own user the first time)".into()
        }
        None => format!("# then: CODEX_GATEWAY_API_KEY={key} codex"),
    };
    Plan {
        file: dir.join("config.toml"),
        merge: Merge::Toml { top: vec![("model", model.into()), ("model_provider", "codex-gateway".into())], tables },
        note,
    }
}

/// `existing` with the settings merged in (from `""`: the settings as text, a JSON object, TOML, or lines).
fn merged(existing: &str, merge: &Merge) -> anyhow::Result<String> {
    match merge {
        Merge::Json(sets) => {
            let mut doc: Value = match existing.trim() {
                "" => json!({}),
                text => serde_json::from_str(text).context("the file is not JSON; fix or move it first")?,
            };
            for (path, value) in sets {
                set_json(&mut doc, path, value.clone())?;
            }
            Ok(format!("{}\n", serde_json::to_string_pretty(&doc)?))
        }
        Merge::Toml { top, tables } => {
            let mut doc: toml_edit::DocumentMut =
                existing.parse().context("the file is not TOML; fix or move it first")?;
            for (k, v) in top {
                if doc.get(k).and_then(|i| i.as_str()) != Some(v.as_str()) {
                    doc[k] = toml_edit::value(v.as_str());
                }
            }
            for (path, pairs) in tables {
                let mut item = doc.as_item_mut();
                for segment in path {
                    let t = item
                        .as_table_like_mut()
                        .context("the file has a non-table where the provider table goes")?
                        .entry(segment)
                        .or_insert(toml_edit::table());
                    if let Some(t) = t.as_table_mut() {
                        t.set_implicit(true);
                    }
                    item = t;
                }
                let t = item.as_table_like_mut().context("the provider entry is not a table")?;
                for (k, v) in pairs {
                    if !holds(t.get(k), v) {
                        t.insert(k, toml_edit::value(v.clone()));
                    }
                }
            }
            Ok(doc.to_string())
        }
        Merge::Lines { separator, pairs } => {
            let mut lines: Vec<String> = existing.lines().map(str::to_string).collect();
            for (k, v) in pairs {
                let line = format!("{k}{separator}{v}");
                let prefix = format!("{k}{}", separator.trim_end());
                match lines.iter_mut().find(|l| l.starts_with(&prefix)) {
                    Some(l) => *l = line,
                    None => lines.push(line),
                }
            }
            Ok(lines.join("\n") + "\n")
        }
        Merge::Yaml(entry) => continue_yaml::merged(existing, entry),
    }
}

fn set_json(doc: &mut Value, path: &[&str], value: Value) -> anyhow::Result<()> {
    let Some((last, parents)) = path.split_last() else { return Ok(()) };
    let mut node = doc;
    for p in parents {
        let obj = node.as_object_mut().context("the file has a non-object where the settings go")?;
        node = obj.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    node.as_object_mut().context("the file has a non-object where the settings go")?.insert(last.to_string(), value);
    Ok(())
}

/// Merge into the file; write it (keeping the old one as FILE.bak) only when something changes.
fn write(plan: &Plan) -> anyhow::Result<()> {
    let path = &plan.file;
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let new = merged(existing.as_deref().unwrap_or_default(), &plan.merge)
        .with_context(|| format!("cannot merge into {}", path.display()))?;
    if existing.as_deref() == Some(new.as_str()) {
        say!("{}: already set, unchanged", path.display());
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if existing.is_some() {
        let backup = backup_path(path);
        std::fs::copy(path, &backup).with_context(|| format!("cannot back up to {}", backup.display()))?;
        say!("{}: backed up to {}", path.display(), backup.display());
    }
    // The settings may hold a key: 0600, written through a temporary file so the client never reads half a file.
    crate::auth::codex_file::write_private_atomic(path, new.as_bytes())?;
    say!("{}: written", path.display());
    Ok(())
}

fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".bak");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Client; 6] =
        [Client::ClaudeCode, Client::Codex, Client::Gemini, Client::Opencode, Client::Aider, Client::Continue];

    struct Home(PathBuf);
    impl Env for Home {
        fn get(&self, key: &str) -> Option<String> {
            (key == "HOME").then(|| self.0.to_string_lossy().into_owned())
        }
    }

    const GATEWAY: Gateway =
        Gateway { base: "http://127.0.0.1:9", key: "k-1", websocket: true, oauth: None, store: None };

    /// With users, the Codex provider signs each developer in (`gateway_oauth`, as the official client parses it)
    /// and sends no client key.
    #[test]
    fn the_codex_provider_signs_users_in_when_the_gateway_has_users() -> anyhow::Result<()> {
        let env = Home(PathBuf::from("/nonexistent"));
        let oauth = Config::resolve(Default::default(), &Default::default(), &env)?.oauth;
        let to = Gateway { oauth: Some(&oauth), store: Some(CredentialsStore::File), ..GATEWAY };
        let plan = plans(Client::Codex, &to, "gpt-5.4", &env).remove(0);
        let parsed: toml::Value = toml::from_str(&merged("", &plan.merge)?)?;
        let provider = &parsed["model_providers"]["codex-gateway"];
        assert!(provider.get("env_key").is_none(), "the token is the credential");
        assert_eq!(provider["model_catalog_url"].as_str(), Some("http://127.0.0.1:9/v1/models"));
        let g = &provider["gateway_oauth"];
        assert_eq!(g["authorization_url"].as_str(), Some("http://127.0.0.1:9/dashboard/oauth/authorize"));
        assert_eq!(g["token_url"].as_str(), Some("http://127.0.0.1:9/dashboard/oauth/token"));
        assert_eq!(g["device_authorization_url"].as_str(), Some("http://127.0.0.1:9/dashboard/oauth/device/code"));
        assert_eq!(g["client_id"].as_str(), Some("codex-cli"));
        assert_eq!(g["redirect_port"].as_integer(), Some(1457));
        assert_eq!(g["delivery"]["kind"].as_str(), Some("header"));
        assert_eq!(g["delivery"]["name"].as_str(), Some("x-gateway-token"));
        assert_eq!(g["delivery"]["scheme"].as_str(), Some("Bearer"));
        assert_eq!(g["credentials_store"].as_str(), Some("file"));
        // Merged again into its own output: nothing changes.
        let once = merged("", &plan.merge)?;
        assert_eq!(merged(&once, &plan.merge)?, once);
        Ok(())
    }

    fn write_all(client: Client, env: &Home) -> anyhow::Result<()> {
        for plan in plans(client, &GATEWAY, "gpt-5.4", env) {
            write(&plan)?;
        }
        Ok(())
    }

    #[test]
    fn write_merges_keeps_other_settings_backs_up_and_a_second_write_changes_nothing() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-connect-{}", uuid::Uuid::new_v4().simple()));
        let env = Home(dir.clone());
        std::fs::create_dir_all(dir.join(".claude"))?;
        std::fs::create_dir_all(dir.join(".codex"))?;
        std::fs::create_dir_all(dir.join(".gemini"))?;
        std::fs::write(dir.join(".claude/settings.json"), r#"{"theme":"dark","env":{"FOO":"1"}}"#)?;
        std::fs::write(
            dir.join(".codex/config.toml"),
            "# mine\napproval_policy = \"never\"\n\n[mcp_servers.x]\ncommand = \"y\"\n",
        )?;
        std::fs::write(dir.join(".gemini/.env"), "OTHER=1\nGEMINI_API_KEY=old\n")?;
        std::fs::write(dir.join(".aider.conf.yml"), "dark-mode: true\nmodel: gpt-4o\n")?;
        std::fs::create_dir_all(dir.join(".continue"))?;
        std::fs::write(
            dir.join(".continue/config.yaml"),
            "name: Mine # keep\nmodels:\n  - name: Local\n    model: m\n",
        )?;
        for client in ALL {
            write_all(client, &env)?;
        }
        let claude: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(".claude/settings.json"))?)?;
        assert_eq!((&claude["theme"], &claude["env"]["FOO"]), (&json!("dark"), &json!("1")), "kept");
        assert_eq!(claude["env"]["ANTHROPIC_BASE_URL"], "http://127.0.0.1:9");
        assert!(dir.join(".claude/settings.json.bak").is_file());
        let codex = std::fs::read_to_string(dir.join(".codex/config.toml"))?;
        let parsed: toml::Value = toml::from_str(&codex)?;
        assert!(codex.starts_with("# mine\n"), "comments kept: {codex}");
        assert_eq!(parsed["approval_policy"].as_str(), Some("never"));
        assert_eq!(parsed["mcp_servers"]["x"]["command"].as_str(), Some("y"));
        assert_eq!(parsed["model_provider"].as_str(), Some("codex-gateway"));
        assert_eq!(parsed["model_providers"]["codex-gateway"]["base_url"].as_str(), Some("http://127.0.0.1:9/v1"));
        assert_eq!(parsed["model_providers"]["codex-gateway"]["supports_websockets"].as_bool(), Some(true));
        let dotenv = std::fs::read_to_string(dir.join(".gemini/.env"))?;
        assert_eq!(dotenv, "OTHER=1\nGEMINI_API_KEY=k-1\nGOOGLE_GEMINI_BASE_URL=http://127.0.0.1:9\n");
        let gemini: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(".gemini/settings.json"))?)?;
        assert_eq!(gemini["security"]["auth"]["selectedType"], "gemini-api-key");
        let opencode: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(".config/opencode/opencode.json"))?)?;
        assert_eq!(opencode["provider"]["codex-gateway"]["options"]["baseURL"], "http://127.0.0.1:9/v1");
        let aider = std::fs::read_to_string(dir.join(".aider.conf.yml"))?;
        assert_eq!(
            aider,
            "dark-mode: true\nmodel: openai/gpt-5.4\nopenai-api-base: http://127.0.0.1:9/v1\nopenai-api-key: k-1\n"
        );
        let cont = std::fs::read_to_string(dir.join(".continue/config.yaml"))?;
        assert!(
            cont.starts_with(
                "name: Mine # keep\nmodels:\n  - name: Local\n    model: m\n  - name: \"gpt-5.4 (codex-gateway)\""
            ),
            "{cont}"
        );
        assert!(cont.contains("    apiBase: \"http://127.0.0.1:9/v1\"\n"), "{cont}");
        assert!(dir.join(".continue/config.yaml.bak").is_file());

        // A second write changes nothing: same bytes, same modification times, no new backup.
        let snapshot = |d: &Path| -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
            let mut out = Vec::new();
            for f in [
                ".claude/settings.json",
                ".codex/config.toml",
                ".gemini/.env",
                ".gemini/settings.json",
                ".config/opencode/opencode.json",
                ".aider.conf.yml",
                ".continue/config.yaml",
                ".continue/config.yaml.bak",
                ".codex/config.toml.bak",
            ] {
                out.push((d.join(f), std::fs::read(d.join(f))?));
            }
            Ok(out)
        };
        let before = snapshot(&dir)?;
        std::fs::remove_file(dir.join(".claude/settings.json.bak"))?;
        for client in ALL {
            write_all(client, &env)?;
        }
        assert_eq!(snapshot(&dir)?, before);
        assert!(!dir.join(".claude/settings.json.bak").exists(), "nothing changed, so no backup");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn a_file_that_does_not_parse_is_left_alone() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cgw-connect-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join(".claude"))?;
        std::fs::write(dir.join(".claude/settings.json"), "{not json")?;
        assert!(write_all(Client::ClaudeCode, &Home(dir.clone())).is_err());
        assert_eq!(std::fs::read_to_string(dir.join(".claude/settings.json"))?, "{not json");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// The Codex provider asks for the WebSocket only when the gateway serves it.
    #[test]
    fn the_codex_provider_supports_websockets_when_the_gateway_serves_them() -> anyhow::Result<()> {
        let env = Home(PathBuf::from("/nonexistent"));
        for websocket in [true, false] {
            let to = Gateway { websocket, ..GATEWAY };
            let [plan] = <[Plan; 1]>::try_from(plans(Client::Codex, &to, "gpt-5.4", &env))
                .map_err(|_| anyhow::anyhow!("one file for codex"))?;
            let parsed: toml::Value = toml::from_str(&merged("", &plan.merge)?)?;
            let provider = &parsed["model_providers"]["codex-gateway"];
            assert_eq!(provider["wire_api"].as_str(), Some("responses"));
            assert_eq!(provider.get("supports_websockets").and_then(toml::Value::as_bool), websocket.then_some(true));
        }
        // A provider written before (a string where the boolean goes) is corrected.
        let plan = plans(Client::Codex, &GATEWAY, "gpt-5.4", &env).remove(0);
        let old = "[model_providers.codex-gateway]\nsupports_websockets = \"yes\"\n";
        let parsed: toml::Value = toml::from_str(&merged(old, &plan.merge)?)?;
        assert_eq!(parsed["model_providers"]["codex-gateway"]["supports_websockets"].as_bool(), Some(true));
        Ok(())
    }
}
