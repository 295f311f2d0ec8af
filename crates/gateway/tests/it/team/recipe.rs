//! The team deployment recipe (packaging/team/, docs/team.md "A deployment recipe") without a container engine:
//! three instances with the gateways' settings of `compose.yaml` on a real PostgreSQL, and the recipe's own
//! `nginx.conf` as the TLS balancer in front of them (service names swapped for loopback ports, nothing else).
//! Through it, what a team does first: an admin adds a developer, the developer signs in to the dashboard and the
//! admin API, makes a key on one instance and uses it on the others, streams over SSE and the WebSocket through
//! the balancer; the audit trail names the developer's machine, not the balancer; and the developer, disabled,
//! is refused on every instance.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::{Instance, config_with_env, seed, start_instance};
use crate::interop::servers::{Dir, Kind, binary, free_port, running_as_root};

const RECIPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging/team");
/// The name people reach the team's gateway by (the recipe's `GATEWAY_HOST`).
const HOST: &str = "gateway.test";
const ADMIN_KEY: &str = "recipe admin key";
const PASSWORD: &str = "recipe developer password";
/// The developer's machine: a loopback address of its own, so the trail can tell it from the balancer's.
const DEVELOPER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn read(name: &str) -> String {
    let path = PathBuf::from(RECIPE).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `${NAME}`, `${NAME:?message}` and `${NAME:-default}` in `text`, from `vars` (a name not there fails).
fn interpolate(text: &str, vars: &HashMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find('}').unwrap_or_else(|| panic!("unclosed ${{ in {text}")) + at;
        let name = rest[at + 2..end].split(':').next().unwrap_or_default();
        out.push_str(vars.get(name).unwrap_or_else(|| panic!("compose.yaml uses ${{{name}}}, unknown to the test")));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The gateways' environment as `compose.yaml` gives it (the `x-gateway` block's `environment`).
fn compose_environment(compose: &str, vars: &HashMap<&str, String>) -> Vec<(String, String)> {
    let block = compose.split("x-gateway: &gateway").nth(1).unwrap_or_else(|| panic!("no x-gateway block"));
    let env = block.split("\n  environment:\n").nth(1).unwrap_or_else(|| panic!("no environment in x-gateway"));
    let entries: Vec<(String, String)> = env
        .lines()
        .take_while(|l| l.starts_with("    "))
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(k, v)| (k.to_string(), interpolate(v.trim(), vars)))
        .collect();
    assert!(entries.len() >= 3, "the gateways' environment in compose.yaml: {entries:?}");
    entries
}

/// The balancer's address in `compose.yaml` (`ipv4_address`), which the gateways must trust.
fn balancer_address(compose: &str) -> String {
    let line = compose.lines().find(|l| l.trim_start().starts_with("ipv4_address:"));
    line.and_then(|l| l.split(':').nth(1)).map(|a| a.trim().to_string()).unwrap_or_else(|| panic!("no ipv4_address"))
}

/// `nginx.conf` with each `from` replaced by its `to`; every `from` must be there.
fn rewrite(conf: &str, swaps: &[(&str, String)]) -> String {
    swaps.iter().fold(conf.to_string(), |c, (from, to)| {
        assert!(c.contains(from), "nginx.conf no longer has `{from}`: the test's swaps need updating");
        c.replace(from, to)
    })
}

/// nginx running the recipe's site, stopped when dropped.
struct Balancer {
    child: Child,
    port: u16,
    _dir: Dir,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // SAFETY: kill has no memory preconditions; the pid is this test's own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx on `port` (TLS) with the recipe's site in front of `gateways`.
fn start_balancer(gateways: &[&Instance; 3], cert_pem: &str, key_pem: &str, port: u16) -> Balancer {
    let dir = Dir::new("recipe");
    dir.write("gateway.crt", cert_pem);
    dir.write("gateway.key", key_pem);
    let plain = free_port();
    let upstream = |i: &Instance| i.base.trim_start_matches("http://").to_string();
    let site = rewrite(
        &read("nginx.conf"),
        &[
            ("gateway-a:8765", upstream(gateways[0])),
            ("gateway-b:8765", upstream(gateways[1])),
            ("gateway-c:8765", upstream(gateways[2])),
            ("listen 443 ssl", format!("listen 127.0.0.1:{port} ssl")),
            ("listen 80;", format!("listen 127.0.0.1:{plain};")),
            ("/etc/nginx/tls/", format!("{}/", dir.0.display())),
        ],
    );
    let site = dir.write("site.conf", &site);
    let d = dir.0.display();
    let user = if running_as_root() { "user nobody nogroup;" } else { "" };
    // What the nginx image's own nginx.conf provides around conf.d/*.conf.
    let main = format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\n{user}\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 512; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    \
         proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    \
         scgi_temp_path {d}/scgi;\n    include {};\n}}\n",
        site.display()
    );
    let conf = dir.write("nginx.conf", &main);
    let log = std::fs::File::create(dir.0.join("stderr.log")).unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(binary(Kind::Nginx))
        .arg("-c")
        .arg(conf)
        .arg("-p")
        .arg(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start nginx: {e}"));
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let logs = || std::fs::read_to_string(dir.0.join("stderr.log")).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            panic!("nginx exited ({status}) with the recipe's site: {}", logs());
        }
        assert!(started.elapsed() < Duration::from_secs(20), "nginx never listened: {}", logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    Balancer { child, port, _dir: dir }
}

/// The developer's HTTP client: from [`DEVELOPER`], trusting the team's certificate, `HOST` resolving to the
/// balancer.
fn developer(cert_pem: &str, balancer: u16) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    reqwest::Client::builder()
        .no_proxy()
        .local_address(DEVELOPER)
        .add_root_certificate(cert)
        .resolve(HOST, SocketAddr::from(([127, 0, 0, 1], balancer)))
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"))
}

async fn call(http: &reqwest::Client, url: &str, bearer: &str, method: Method, body: Option<Value>) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(bearer);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

fn cookie_named(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// Poll `f` until it is true, for at most `limit`; how long it took.
async fn until(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A streamed chat through `url`'s gateway with `key`: its status and body.
async fn stream_chat(http: &reqwest::Client, url: &str, key: &str) -> (u16, String) {
    let body = json!({"model": "gpt-5.4", "stream": true,
        "messages": [{"role": "user", "content": uuid::Uuid::new_v4().to_string()}]});
    let r = http.post(format!("{url}/v1/chat/completions")).bearer_auth(key).json(&body).send().await;
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// One Responses turn over the WebSocket through the balancer (TLS, HTTP/1.1 upgrade): the last event's type.
async fn websocket_turn(cert: rustls::pki_types::CertificateDer<'static>, port: u16, key: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap_or_else(|e| panic!("{e}"));
    let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("{e}"));
    let name = rustls::pki_types::ServerName::try_from(HOST).unwrap_or_else(|e| panic!("{e}"));
    let stream =
        tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp).await.unwrap_or_else(|e| panic!("tls: {e}"));
    let mut req = format!("wss://{HOST}:{port}/v1/responses").into_client_request().unwrap_or_else(|e| panic!("{e}"));
    let h = req.headers_mut();
    h.insert("openai-beta", "responses_websockets=2026-02-06".parse().unwrap_or_else(|e| panic!("{e}")));
    h.insert("authorization", format!("Bearer {key}").parse().unwrap_or_else(|e| panic!("{e}")));
    let (mut ws, _) =
        tokio_tungstenite::client_async(req, stream).await.unwrap_or_else(|e| panic!("websocket handshake: {e}"));
    let create = json!({"type": "response.create", "model": "gpt-5.4", "instructions": "", "stream": true,
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]});
    ws.send(Message::text(create.to_string())).await.unwrap_or_else(|e| panic!("{e}"));
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        let frame = frame.unwrap_or_else(|_| panic!("no frame within 10 s")).unwrap_or_else(|| panic!("closed"));
        if let Message::Text(t) = frame.unwrap_or_else(|e| panic!("{e}")) {
            let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
            let kind = v["type"].as_str().unwrap_or_default().to_string();
            if matches!(kind.as_str(), "response.completed" | "response.failed" | "error") {
                return kind;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_recipe_serves_a_team_through_its_balancer() {
    let (fake, _creds, db) = seed(fake_codex::FakeConfig::default(), 2).await;
    let compose = read("compose.yaml");
    let vars: HashMap<&str, String> = [
        ("POSTGRES_PASSWORD", "unused: the test's server".to_string()),
        ("CODEX_GATEWAY_ADMIN_KEY", ADMIN_KEY.to_string()),
        ("GATEWAY_HOST", HOST.to_string()),
    ]
    .into_iter()
    .collect();
    let mut env = compose_environment(&compose, &vars);
    let balancer_ip = balancer_address(&compose);
    let mut origins = None;
    for (k, v) in &mut env {
        match k.as_str() {
            "CODEX_GATEWAY_DATABASE_URL" => {
                assert!(v.starts_with("postgres://gateway:") && v.contains("@postgres:5432/"), "{v}");
                *v = db.clone();
            }
            // The gateways trust the balancer's address, and the test's balancer is on loopback.
            "CODEX_GATEWAY_TRUSTED_PROXIES" => {
                assert_eq!(*v, balancer_ip, "the gateways must trust the balancer's address in compose.yaml");
                *v = "127.0.0.1".into();
            }
            "CODEX_GATEWAY_ALLOWED_ORIGINS" => origins = Some(v.clone()),
            _ => {}
        }
    }
    assert_eq!(origins.as_deref(), Some("https://gateway.test"), "the dashboard's origin is allowed");
    // The harness sets a shared client key; the recipe has none (developers' keys are their own).
    env.push(("CODEX_GATEWAY_API_KEY".into(), String::new()));

    let certified = rcgen::generate_simple_self_signed(vec![HOST.to_string()]).unwrap_or_else(|e| panic!("{e}"));
    let (cert_pem, key_pem) = (certified.cert.pem(), certified.signing_key.serialize_pem());
    // The recipe's balancer listens on 443, where browsers leave the port out of the origin; the test's listens
    // on a free port, whose origin the gateways must allow as well.
    let port = free_port();
    for (k, v) in &mut env {
        if k == "CODEX_GATEWAY_ALLOWED_ORIGINS" {
            *v = format!("{v},https://{HOST}:{port}");
        }
    }
    let start = async || {
        let (config, dir) = config_with_env(&fake, &db, "", &env);
        start_instance(config, dir).await
    };
    let (a, b, c) = (start().await, start().await, start().await);
    let balancer = start_balancer(&[&a, &b, &c], &cert_pem, &key_pem, port);
    let http = developer(&cert_pem, balancer.port);
    let edge = format!("https://{HOST}:{}", balancer.port);
    let at = |path: &str| format!("{edge}{path}");

    // Every instance answers behind the balancer (round robin: three requests reach all three).
    for _ in 0..3 {
        let r = http.get(at("/health")).send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status().as_u16(), 200);
    }

    // The admin (the break-glass key) adds a developer.
    let (s, v) = call(
        &http,
        &at("/admin/users"),
        ADMIN_KEY,
        Method::POST,
        Some(json!({"name": "dev", "role": "member", "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let dev = v["id"].as_str().unwrap_or_default().to_string();

    // The developer signs in to the dashboard through the balancer: a Secure cookie (the balancer said https),
    // honoured by whichever instance serves each page.
    let r = http.get(at("/dashboard/login")).send().await.unwrap_or_else(|e| panic!("{e}"));
    let login = cookie_named(&r, "cgw_login").unwrap_or_else(|| panic!("no login cookie"));
    assert!(login.contains("; Secure"), "{login}");
    let login = login.split(';').next().unwrap_or_default().to_string();
    let csrf = login.trim_start_matches("cgw_login=").to_string();
    let form = json!({"name": "dev", "password": PASSWORD, "csrf": csrf});
    let foreign = http
        .post(at("/dashboard/login"))
        .header("origin", "https://elsewhere.test")
        .header("cookie", &login)
        .json(&form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(foreign.status().as_u16(), 403, "a page of another site may not sign anyone in");
    let r = http
        .post(at("/dashboard/login"))
        .header("origin", edge.as_str())
        .header("cookie", &login)
        .json(&form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 200);
    let session = cookie_named(&r, "cgw_session").unwrap_or_else(|| panic!("no session cookie"));
    assert!(session.contains("; Secure"), "{session}");
    let session = session.split(';').next().unwrap_or_default().to_string();
    for _ in 0..3 {
        let r = http.get(at("/dashboard/keys")).header("cookie", &session).send().await;
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status().as_u16(), 200, "a member's page on every instance");
        assert!(r.text().await.unwrap_or_default().contains("dev"));
    }

    // On the admin API too; a key made on instance A is used on B and C, and through the balancer.
    let (s, v) =
        call(&http, &at("/admin/sign-in"), "", Method::POST, Some(json!({"name": "dev", "password": PASSWORD}))).await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap_or_default().to_string();
    let direct = super::http();
    let (s, key) =
        call(&direct, &a.url("/admin/keys"), &token, Method::POST, Some(json!({"name": "dev laptop"}))).await;
    assert_eq!((s, &key["owner"]), (201, &json!(dev)), "{key}");
    let secret = key["secret"].as_str().unwrap_or_default().to_string();
    for other in [&b, &c] {
        let served = until(Duration::from_secs(3), async || stream_chat(&direct, &other.base, &secret).await.0 == 200);
        assert!(served.await.is_some(), "the key made on A is not served by {}", other.base);
    }
    for _ in 0..3 {
        let (s, text) = stream_chat(&http, &edge, &secret).await;
        assert_eq!(s, 200, "{text}");
        assert!(text.contains("data: [DONE]"), "the stream arrives whole through the balancer: {text}");
    }
    assert_eq!(websocket_turn(certified.cert.der().clone(), balancer.port, &secret).await, "response.completed");

    // The trail names the developer's machine, not the balancer; a header a client sends straight to an instance
    // is not believed.
    let liar = reqwest::Client::builder().no_proxy().local_address(DEVELOPER).build().unwrap_or_else(|e| panic!("{e}"));
    let r = liar
        .post(a.url("/admin/sign-in"))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({"name": "dev", "password": "not the password"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status().as_u16(), 401);
    let (s, trail) = call(&http, &at("/admin/audit?action=user.sign_in&limit=100"), ADMIN_KEY, Method::GET, None).await;
    assert_eq!(s, 200, "{trail}");
    let sources: Vec<&str> =
        trail["entries"].as_array().into_iter().flatten().filter_map(|e| e["source"].as_str()).collect();
    assert!(sources.len() >= 3, "{trail}");
    assert!(sources.iter().all(|s| *s == DEVELOPER.to_string()), "sign-ins recorded from {sources:?}");

    // Disabled through the balancer: the session, the dashboard cookie and the key refused on every instance.
    let (s, v) =
        call(&http, &at(&format!("/admin/users/{dev}")), ADMIN_KEY, Method::PATCH, Some(json!({"disabled": true})))
            .await;
    assert_eq!(s, 200, "{v}");
    for instance in [&a, &b, &c] {
        let refused = until(Duration::from_secs(5), async || {
            let me = call(&direct, &instance.url("/admin/me"), &token, Method::GET, None).await.0;
            let chat = stream_chat(&direct, &instance.base, &secret).await.0;
            me == 401 && chat == 401
        });
        let took = refused.await;
        assert!(took.is_some_and(|t| t < Duration::from_secs(3)), "{} still serves the user: {took:?}", instance.base);
    }
    for _ in 0..3 {
        let r = http.get(at("/dashboard/keys")).header("cookie", &session).send().await;
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        let to_login = r.status().is_redirection() || r.url().path() == "/dashboard/login";
        assert!(to_login, "a disabled user's dashboard session still opens pages: {}", r.status());
    }
    drop(balancer);
}
