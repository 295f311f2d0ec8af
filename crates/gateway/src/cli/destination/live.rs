//! The commands' operations on a running gateway, through its admin API (`/admin/accounts`, `/admin/keys`,
//! `/admin/usage`: server/admin/) with the admin credential.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{AccountName, AccountsTarget, Imported, KeyName, KeysTarget, UsageTarget};
use crate::accounts::manage::ImportSource;
use crate::config::Config;
use crate::usage::query::GroupBy;

/// A running gateway's admin API, if one answers where this machine's gateway is (`service::reach`).
pub(crate) struct Live {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

impl Live {
    pub(crate) async fn find(config: &Config) -> Option<Live> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().ok()?;
        let crate::cli::service::Reach { base, key } = crate::cli::service::reach(config);
        crate::cli::service::http_get(&base, "/admin/status", key.as_ref()).await.ok()?;
        Some(Live { base, key, http })
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.context("the running gateway did not answer")?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{}", v["error"]["message"].as_str().unwrap_or("the gateway refused"));
        }
        Ok(v)
    }

    /// A list answer's items.
    async fn list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        Ok(self.call(Method::GET, path, None).await?.as_array().cloned().unwrap_or_default())
    }
}

/// The admin API's body for an import (`POST /admin/accounts`, server/admin/mod.rs).
fn import_body(source: ImportSource, label: Option<String>) -> Value {
    let mut body = match source {
        ImportSource::AuthJson(v) => json!({"auth_json": v}),
        ImportSource::Export(v) => json!({"export": v}),
        ImportSource::RefreshToken(rt) => json!({"refresh_token": rt}),
        ImportSource::ApiKey { key, base_url, models } => {
            json!({"api_key": key, "base_url": base_url, "models": models})
        }
    };
    body["label"] = json!(label);
    body
}

impl AccountsTarget for Live {
    async fn account_names(&self) -> anyhow::Result<Vec<AccountName>> {
        let field = |a: &Value, f: &str| a[f].as_str().map(str::to_string);
        let named = |a: &Value| [field(a, "id"), field(a, "label"), field(a, "email")];
        Ok(self.list("/admin/accounts").await?.iter().map(named).collect())
    }

    async fn summaries(&self) -> anyhow::Result<Vec<Value>> {
        self.list("/admin/accounts").await
    }

    async fn import(&self, source: ImportSource, label: Option<String>) -> anyhow::Result<Vec<Imported>> {
        let added = self.call(Method::POST, "/admin/accounts", Some(import_body(source, label))).await?;
        let s = |a: &Value, k: &str| a[k].as_str().unwrap_or("-").to_string();
        let imported = |a: &Value| Imported {
            who: a["email"].as_str().or(a["label"].as_str()).unwrap_or("-").into(),
            kind: s(a, "kind"),
            id: s(a, "id"),
        };
        Ok(added.as_array().into_iter().flatten().map(imported).collect())
    }

    async fn remove(&self, id: &str) -> anyhow::Result<()> {
        self.call(Method::DELETE, &format!("/admin/accounts/{id}"), None).await.map(drop)
    }

    async fn set_enabled(&self, id: &str, enabled: bool) -> anyhow::Result<String> {
        let verb = if enabled { "enable" } else { "disable" };
        let v = self.call(Method::POST, &format!("/admin/accounts/{id}/{verb}"), None).await?;
        Ok(v["status"].as_str().unwrap_or(verb).to_string())
    }

    async fn set_label(&self, id: &str, label: Option<&str>) -> anyhow::Result<Option<String>> {
        let v = self.call(Method::POST, &format!("/admin/accounts/{id}/label"), Some(json!({"label": label}))).await?;
        Ok(v["label"].as_str().map(str::to_string))
    }

    async fn set_policy(&self, id: &str, policy: &str) -> anyhow::Result<()> {
        let body = json!({"policy": policy});
        self.call(Method::POST, &format!("/admin/accounts/{id}/policy"), Some(body)).await.map(drop)
    }

    async fn set_proxy(&self, id: &str, url: Option<&str>) -> anyhow::Result<Option<String>> {
        let v = self.call(Method::POST, &format!("/admin/accounts/{id}/proxy"), Some(json!({"proxy": url}))).await?;
        Ok(v["proxy"].as_str().map(str::to_string))
    }

    /// The gateway keeps tokens it could not save and retries: a warning, not a failure.
    async fn refresh(&self, id: &str) -> anyhow::Result<()> {
        let summary = self.call(Method::POST, &format!("/admin/accounts/{id}/refresh"), None).await?;
        if let Some(error) = summary["tokens_not_saved"]["error"].as_str() {
            eprintln!(
                "warning: {id}: the new tokens could not be saved yet ({error}); the gateway uses them and keeps \
                 retrying, but a restart before it succeeds loses this login"
            );
        }
        Ok(())
    }

    async fn check(&self, id: Option<&str>) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        for a in self.list("/admin/accounts").await? {
            let aid = a["id"].as_str().unwrap_or_default();
            if id.is_none_or(|x| x == aid) {
                out.push(self.call(Method::POST, &format!("/admin/accounts/{aid}/check"), None).await?);
            }
        }
        Ok(out)
    }
}

impl KeysTarget for Live {
    async fn keys(&self) -> anyhow::Result<Vec<Value>> {
        self.list("/admin/keys").await
    }

    async fn key_names(&self) -> anyhow::Result<Vec<KeyName>> {
        let field = |k: &Value, f: &str| k[f].as_str().unwrap_or_default().to_string();
        let key = |k: &Value| KeyName { id: field(k, "id"), name: field(k, "name"), revoked: k["status"] == "revoked" };
        Ok(self.list("/admin/keys").await?.iter().map(key).collect())
    }

    async fn key(&self, id: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, &format!("/admin/keys/{id}"), None).await
    }

    async fn create_key(&self, body: Map<String, Value>) -> anyhow::Result<Value> {
        self.call(Method::POST, "/admin/keys", Some(Value::Object(body))).await
    }

    async fn update_key(&self, id: &str, body: Map<String, Value>) -> anyhow::Result<Value> {
        self.call(Method::PATCH, &format!("/admin/keys/{id}"), Some(Value::Object(body))).await
    }

    async fn revoke_key(&self, id: &str) -> anyhow::Result<()> {
        self.call(Method::POST, &format!("/admin/keys/{id}/revoke"), None).await.map(drop)
    }
}

impl UsageTarget for Live {
    async fn usage(&self, from: i64, to: i64, by: GroupBy, user: Option<&str>) -> anyhow::Result<Value> {
        let mut path = format!("/admin/usage?from={from}&to={to}&bucket=day&group_by={}", by.as_str());
        if let Some(user) = user {
            // The admin API filters by id: a name is looked up first (`GET /admin/users/{id or name}`).
            let segment: String = url::form_urlencoded::byte_serialize(user.as_bytes()).collect();
            let found = self.call(Method::GET, &format!("/admin/users/{segment}"), None).await?;
            let id = found["id"].as_str().ok_or_else(|| anyhow::anyhow!("no user `{user}`"))?;
            path += &format!("&user={}", url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>());
        }
        self.call(Method::GET, &path, None).await
    }

    async fn user_names(&self) -> anyhow::Result<Vec<(String, String)>> {
        let named = |u: &Value| Some((u["id"].as_str()?.to_string(), u["name"].as_str()?.to_string()));
        Ok(self.list("/admin/users").await?.iter().filter_map(named).collect())
    }
}
