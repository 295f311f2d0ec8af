//! The configuration's resolution: file, environment and flags in their order, and what is refused.

use std::collections::HashMap;

use super::*;

#[test]
fn log_format_and_metrics_settings_resolve() {
    assert_eq!(LogFormat::parse(None).ok(), Some(LogFormat::Text));
    assert_eq!(LogFormat::parse(Some("json")).ok(), Some(LogFormat::Json));
    assert!(LogFormat::parse(Some("JSON")).is_err());
    let env: HashMap<String, String> =
        [("CODEX_GATEWAY_METRICS_PUBLIC".to_string(), "1".to_string())].into_iter().collect();
    let raw = RawMetrics {
        enabled: Some(false),
        public: None,
        email_labels: Some(true),
        user_labels: None,
        scrape_key: None,
    };
    let m = MetricsConfig::resolve(Some(raw), &env).unwrap_or_else(|e| panic!("{e}"));
    assert!(!m.enabled && m.public && m.email_labels);
    let bad: HashMap<String, String> =
        [("CODEX_GATEWAY_METRICS".to_string(), "maybe".to_string())].into_iter().collect();
    assert!(MetricsConfig::resolve(None, &bad).is_err());
    // Every switch in the environment reads the same spellings (docs/configuration.md).
    for (value, enabled) in [("OFF", false), ("yes", true), ("0", false)] {
        let env: HashMap<String, String> =
            [("CODEX_GATEWAY_METRICS".to_string(), value.to_string())].into_iter().collect();
        assert_eq!(MetricsConfig::resolve(None, &env).map(|m| m.enabled).ok(), Some(enabled), "{value}");
    }
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn defaults() -> anyhow::Result<()> {
    let c = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[("HOME", "/h")]))?;
    assert_eq!(c.listen.to_string(), "127.0.0.1:8765");
    assert_eq!(c.upstream_base_url, "https://chatgpt.com/backend-api/codex");
    assert_eq!(c.codex_home, PathBuf::from("/h/.codex"));
    assert_eq!(c.data_dir, PathBuf::from("/h/.local/share/codex-gateway"));
    Ok(())
}

#[test]
fn flags_beat_env_beat_file() -> anyhow::Result<()> {
    let raw: RawConfig = toml::from_str("port = 1000\nhost = \"127.0.0.2\"")?;
    let e = env(&[("CODEX_GATEWAY_PORT", "2000")]);
    let c = Config::resolve(raw, &Overrides { port: Some(3000), ..Default::default() }, &e)?;
    assert_eq!(c.listen.to_string(), "127.0.0.2:3000");
    let raw: RawConfig = toml::from_str("port = 1000")?;
    assert_eq!(Config::resolve(raw, &Overrides::default(), &e)?.listen.port(), 2000);
    Ok(())
}

#[test]
fn public_bind_needs_a_key() {
    let e = env(&[("CODEX_GATEWAY_HOST", "0.0.0.0")]);
    let err = Config::resolve(RawConfig::default(), &Overrides::default(), &e).err();
    assert!(err.is_some_and(|e| e.to_string().contains("CODEX_GATEWAY_API_KEY")));
    let e = env(&[("CODEX_GATEWAY_HOST", "0.0.0.0"), ("CODEX_GATEWAY_API_KEY", "k")]);
    assert!(Config::resolve(RawConfig::default(), &Overrides::default(), &e).is_ok());
}

#[test]
fn ollama_bridge_is_off_by_default_and_loopback_only() -> anyhow::Result<()> {
    let c = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[]))?;
    assert!(!c.ollama.enabled);
    assert_eq!(c.ollama.listen.to_string(), "127.0.0.1:11434");
    let e = env(&[("CODEX_GATEWAY_OLLAMA_ENABLED", "1"), ("CODEX_GATEWAY_OLLAMA_PORT", "0")]);
    let c = Config::resolve(RawConfig::default(), &Overrides::default(), &e)?;
    assert!(c.ollama.enabled);
    assert_eq!(c.ollama.listen.port(), 0);
    let raw: RawConfig = toml::from_str("[ollama]\nenabled = true\nhost = \"0.0.0.0\"")?;
    let err = Config::resolve(raw, &Overrides::default(), &env(&[])).err();
    assert!(err.is_some_and(|e| e.to_string().contains("allow_remote")));
    let raw: RawConfig = toml::from_str("[ollama]\nenabled = true\nhost = \"0.0.0.0\"\nallow_remote = true")?;
    assert!(Config::resolve(raw, &Overrides::default(), &env(&[]))?.ollama.allow_remote);
    let raw: RawConfig = toml::from_str("[gemini.model_aliases]\npro = \"gpt-5.4-high\"")?;
    let c = Config::resolve(raw, &Overrides::default(), &env(&[]))?;
    assert_eq!(c.gemini_model_aliases.get("pro").map(String::as_str), Some("gpt-5.4-high"));
    let raw: RawConfig = toml::from_str("[anthropic]\nmodel_aliases = { opus = \"gpt-5.5-high\" }")?;
    let c = Config::resolve(raw, &Overrides::default(), &env(&[]))?;
    assert_eq!(c.anthropic_model_aliases.get("opus").map(String::as_str), Some("gpt-5.5-high"));
    Ok(())
}

/// `api_keys = [""]`, `--api-key ''` or an empty entry in the variable used to accept requests that sent an
/// empty key (and let a public bind start); now start-up stops with a message naming the source.
#[test]
fn empty_client_keys_are_configuration_errors() -> anyhow::Result<()> {
    let public = env(&[("CODEX_GATEWAY_HOST", "0.0.0.0")]);
    let file: RawConfig = toml::from_str("api_keys = [\"\"]")?;
    let err = Config::resolve(file, &Overrides::default(), &public).err().map(|e| e.to_string());
    assert!(err.as_deref().is_some_and(|e| e.contains("api_keys contains an empty client key")), "{err:?}");
    let flag = Overrides { api_key: Some(" ".into()), ..Default::default() };
    let err = Config::resolve(RawConfig::default(), &flag, &env(&[])).err().map(|e| e.to_string());
    assert!(err.as_deref().is_some_and(|e| e.contains("--api-key")), "{err:?}");
    let e = env(&[("CODEX_GATEWAY_API_KEY", "k1,,k2")]);
    assert!(Config::resolve(RawConfig::default(), &Overrides::default(), &e).is_err());
    // An empty variable is unset (like every variable): the file's keys apply.
    let file: RawConfig = toml::from_str("api_keys = [\" k \"]")?;
    let c = Config::resolve(file, &Overrides::default(), &env(&[("CODEX_GATEWAY_API_KEY", "")]))?;
    assert_eq!(c.api_keys, ["k"]);
    let c = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[("CODEX_GATEWAY_API_KEY", "a, b")]))?;
    assert_eq!(c.api_keys, ["a", "b"]);
    Ok(())
}

/// The admin key: the variable over the file; without one the client keys are the admin credential; empty is
/// an error; alone it lets a public bind start (every request then needs a key).
#[test]
fn admin_key_resolves_and_falls_back_to_the_client_keys() -> anyhow::Result<()> {
    let file: RawConfig = toml::from_str("[server]\nadmin_key = \"from-file\"")?;
    let c = Config::resolve(file, &Overrides::default(), &env(&[("CODEX_GATEWAY_ADMIN_KEY", "from-env")]))?;
    assert_eq!(c.admin_keys(), ["from-env"]);
    let c = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[("CODEX_GATEWAY_API_KEY", "k")]))?;
    assert_eq!(c.admin_keys(), ["k"]);
    let file: RawConfig = toml::from_str("[server]\nadmin_key = \" \"")?;
    assert!(Config::resolve(file, &Overrides::default(), &env(&[])).is_err());
    let public = env(&[("CODEX_GATEWAY_HOST", "0.0.0.0"), ("CODEX_GATEWAY_ADMIN_KEY", "a")]);
    assert!(Config::resolve(RawConfig::default(), &Overrides::default(), &public).is_ok());
    Ok(())
}

#[test]
fn trusted_proxies_are_addresses_or_ranges() -> anyhow::Result<()> {
    let raw: RawConfig =
        toml::from_str("[server]\ntrusted_proxies = [\"10.89.0.10\", \"10.89.1.7/24\", \"fd00::/64\"]")?;
    let c = Config::resolve(raw, &Overrides::default(), &env(&[]))?;
    let listed: Vec<String> = c.access.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(listed, ["10.89.0.10/32", "10.89.1.0/24", "fd00::/64"]);
    let e = env(&[("CODEX_GATEWAY_TRUSTED_PROXIES", "127.0.0.1, 192.168.0.0/16")]);
    let c = Config::resolve(RawConfig::default(), &Overrides::default(), &e)?;
    assert_eq!(c.access.trusted_proxies.len(), 2);
    for bad in ["balancer", "10.0.0.0/33", "10.0.0.1:80", ""] {
        let raw: RawConfig = toml::from_str(&format!("[server]\ntrusted_proxies = [\"{bad}\"]"))?;
        let err = Config::resolve(raw, &Overrides::default(), &env(&[])).err().map(|e| format!("{e:#}"));
        assert!(err.as_deref().is_some_and(|e| e.contains("trusted_proxies")), "{bad}: {err:?}");
    }
    Ok(())
}

#[test]
fn server_access_lists_are_normalized_or_refused() -> anyhow::Result<()> {
    let raw: RawConfig = toml::from_str(
        "[server]\nallowed_hosts = [\"GW.Example.\", \"fd00::5\", \"[::2]\", \"*\"]\n\
         allowed_origins = [\"HTTPS://Chat.Example:443/\", \"http://10.0.0.2:3000\"]",
    )?;
    let c = Config::resolve(raw, &Overrides::default(), &env(&[]))?;
    assert_eq!(c.access.allowed_hosts, ["gw.example", "[fd00::5]", "[::2]", "*"]);
    assert_eq!(c.access.allowed_origins, ["https://chat.example", "http://10.0.0.2:3000"]);
    let e = env(&[("CODEX_GATEWAY_ALLOWED_HOSTS", "a.example, b.example"), ("CODEX_GATEWAY_ALLOWED_ORIGINS", "")]);
    let c = Config::resolve(RawConfig::default(), &Overrides::default(), &e)?;
    assert_eq!(c.access.allowed_hosts, ["a.example", "b.example"]);
    assert!(c.access.allowed_origins.is_empty());
    for bad in ["gw.example:8080", "http://gw.example", "gw.example/x", "", "a b"] {
        let raw: RawConfig = toml::from_str(&format!("[server]\nallowed_hosts = [\"{bad}\"]"))?;
        assert!(Config::resolve(raw, &Overrides::default(), &env(&[])).is_err(), "{bad}");
    }
    for bad in ["chat.example", "https://chat.example/app", "null", "file:///x", "https://u@chat.example"] {
        let raw: RawConfig = toml::from_str(&format!("[server]\nallowed_origins = [\"{bad}\"]"))?;
        assert!(Config::resolve(raw, &Overrides::default(), &env(&[])).is_err(), "{bad}");
    }
    Ok(())
}

#[test]
fn timeouts_take_fractions_and_refuse_zero() -> anyhow::Result<()> {
    let c = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[]))?;
    assert_eq!(c.timeouts.upstream_headers, Duration::from_secs(60));
    assert_eq!(c.timeouts.shutdown, Duration::from_secs(30));
    assert_eq!(c.keepalive, Duration::from_secs(15));
    let raw: RawConfig =
        toml::from_str("upstream_header_timeout_secs = 0.25\nupstream_idle_timeout_secs = 300\nkeepalive_secs = 2")?;
    let c = Config::resolve(raw, &Overrides::default(), &env(&[]))?;
    assert_eq!(c.timeouts.upstream_headers, Duration::from_millis(250));
    assert_eq!(c.upstream_idle_timeout, Duration::from_secs(300));
    assert_eq!(c.keepalive, Duration::from_secs(2));
    let e = env(&[("CODEX_GATEWAY_KEEPALIVE_SECS", "0.5")]);
    assert_eq!(Config::resolve(RawConfig::default(), &Overrides::default(), &e)?.keepalive, Duration::from_millis(500));
    for bad in ["shutdown_timeout_secs = 0", "token_refresh_timeout_secs = -1", "catalog_timeout_secs = nan"] {
        let raw: RawConfig = toml::from_str(bad)?;
        let err = Config::resolve(raw, &Overrides::default(), &env(&[])).err();
        assert!(err.is_some_and(|e| e.to_string().contains("positive number of seconds")), "{bad}");
    }
    Ok(())
}

#[test]
fn usage_settings_from_file_and_env() -> anyhow::Result<()> {
    let c = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[]))?;
    assert!(c.usage.enabled && c.usage.prices.is_empty());
    assert_eq!((c.usage.retention.as_secs(), c.usage.rollup_retention.as_secs()), (30 * 86_400, 365 * 86_400));
    let raw: RawConfig = toml::from_str(
        "[usage]\nretention_days = 7\nchannel_capacity = 8\n[usage.prices.\"gpt-5.4\"]\ninput = 1.25\noutput = 10.0",
    )?;
    let e = env(&[("CODEX_GATEWAY_USAGE_ENABLED", "0"), ("CODEX_GATEWAY_USAGE_ROLLUP_RETENTION_DAYS", "90")]);
    let c = Config::resolve(raw, &Overrides::default(), &e)?;
    assert!(!c.usage.enabled);
    assert_eq!((c.usage.retention.as_secs(), c.usage.rollup_retention.as_secs()), (7 * 86_400, 90 * 86_400));
    assert_eq!(c.usage.channel_capacity, 8);
    assert_eq!(c.usage.prices.get("gpt-5.4").map(|p| p.output), Some(10.0));
    for bad in ["[usage]\nretention_days = 0", "[usage.prices.m]\ninput = -1.0\noutput = 1.0", "[usage]\nretain = 1"] {
        let raw = toml::from_str::<RawConfig>(bad);
        assert!(raw.is_err() || Config::resolve(raw?, &Overrides::default(), &env(&[])).is_err(), "{bad}");
    }
    Ok(())
}

#[test]
fn unknown_file_keys_are_refused() {
    assert!(toml::from_str::<RawConfig>("prot = 1").is_err());
}

/// `[store] url`, then `CODEX_GATEWAY_DATABASE_URL`, then `--database-url`; none (or an empty value) keeps the
/// SQLite store.
#[test]
fn store_url_resolution() -> anyhow::Result<()> {
    let none = Config::resolve(RawConfig::default(), &Overrides::default(), &env(&[("HOME", "/h")]))?;
    assert_eq!(none.store.url, None);
    let raw = || toml::from_str::<RawConfig>("[store]\nurl = \"postgres://file/db\"");
    let file = Config::resolve(raw()?, &Overrides::default(), &env(&[("HOME", "/h")]))?;
    assert_eq!(file.store.url.as_deref(), Some("postgres://file/db"));
    let e = env(&[("HOME", "/h"), ("CODEX_GATEWAY_DATABASE_URL", "postgres://env/db")]);
    assert_eq!(Config::resolve(raw()?, &Overrides::default(), &e)?.store.url.as_deref(), Some("postgres://env/db"));
    let flag = Overrides { database_url: Some("postgres://flag/db".into()), ..Default::default() };
    assert_eq!(Config::resolve(raw()?, &flag, &e)?.store.url.as_deref(), Some("postgres://flag/db"));
    let empty = Overrides { database_url: Some(" ".into()), ..Default::default() };
    assert_eq!(Config::resolve(RawConfig::default(), &empty, &env(&[("HOME", "/h")]))?.store.url, None);
    Ok(())
}

/// `[keys.NAME] opportunistic = true` makes a configured key opportunistic; left out, it is not; a value that is
/// not a boolean is refused when the file is read.
#[test]
fn configured_keys_may_be_opportunistic() -> anyhow::Result<()> {
    let raw: RawConfig = toml::from_str(
        "[keys.batch]\nsecret = \"batch-secret-1\"\nopportunistic = true\n\n[keys.ci]\nsecret = \"ci-secret-12\"",
    )?;
    let c = Config::resolve(raw, &Overrides::default(), &env(&[("HOME", "/h")]))?;
    let flag = |name: &str| c.configured_keys.iter().find(|k| k.name == name).map(|k| k.opportunistic);
    assert_eq!((flag("batch"), flag("ci")), (Some(true), Some(false)));
    let bad = toml::from_str::<RawConfig>("[keys.batch]\nsecret = \"batch-secret-1\"\nopportunistic = \"yes\"");
    let err = bad.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("opportunistic") && err.contains("bool"), "{err}");
    Ok(())
}
