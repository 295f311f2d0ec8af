//! Starting the independent servers of the interop suite: nginx, h2o and Caddy as TLS reverse proxies with HTTP/2
//! in front of fake-codex, hypercorn (Python's h2) as an SSE origin of its own, and nginx as a plain HTTP/1.1
//! server for the downstream battery. Each gets a directory of its own (configuration, certificate, logs), ports
//! picked free at run time on 127.0.0.1, and is stopped when dropped. A server binary that is missing fails the
//! test: `scripts/setup-test-deps` installs them (the distribution's `nginx`, `h2o`, `caddy`; hypercorn in `.venv`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every server's idle timeout: short, so the suite sees idle closes.
pub const IDLE_SECS: u64 = 1;
/// The stream limit the servers are given, below the suite's bursts (Caddy 2.6 has no setting for it and keeps
/// Go's 250).
pub const STREAM_LIMIT: usize = 4;
/// Extra header fields on every answer (HPACK's dynamic table, CONTINUATION frames): fake-codex adds them
/// (`FakeConfig::extra_response_headers`), and so does the SSE origin hypercorn serves.
pub const EXTRA_HEADERS: usize = 45;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    H2o,
    Caddy,
    Hypercorn,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::H2o => "h2o",
            Kind::Caddy => "caddy",
            Kind::Hypercorn => "hypercorn",
        }
    }
}

/// A directory of the suite's own, removed when dropped; world-readable and writable, since servers that drop
/// root (nginx's workers, h2o) write their temporary files there as `nobody`.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(what: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("cgw-interop-{what}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        set_mode(&dir, 0o777);
        Dir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        set_mode(&path, 0o644);
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as PEM files: the servers present it, the
/// gateway trusts it as its CA bundle.
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn certificate(dir: &Dir) -> Cert {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = rcgen::generate_simple_self_signed(names).unwrap_or_else(|e| panic!("{e}"));
    let cert = dir.write("cert.pem", &certified.cert.pem());
    let key = dir.write("key.pem", &certified.signing_key.serialize_pem());
    Cert { cert, key }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
}

pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The path of a server binary, or the test fails naming the setup script.
pub fn binary(kind: Kind) -> PathBuf {
    let found = match kind {
        Kind::Hypercorn => {
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/hypercorn");
            venv.is_file().then_some(venv)
        }
        _ => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
                .map(|dir| dir.join(kind.name()))
                .find(|path| path.is_file())
        }),
    };
    found.unwrap_or_else(|| {
        panic!("{} is not installed: run scripts/setup-test-deps (the interop suite needs it)", kind.name())
    })
}

/// A running server, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    pub kind: Kind,
    /// The HTTPS port (HTTP/2 by ALPN).
    pub port: u16,
    /// nginx only: a plain HTTP/1.1 port answering `200 ok` to anything (the downstream battery's reference).
    pub plain_port: Option<u16>,
    child: Child,
    dir: Dir,
}

impl Server {
    /// Start `kind` in front of `origin` (fake-codex's `http://127.0.0.1:PORT`; hypercorn ignores it).
    pub fn start(kind: Kind, origin: &str) -> Server {
        let dir = Dir::new(kind.name());
        let cert = certificate(&dir);
        let port = free_port();
        let plain_port = (kind == Kind::Nginx).then(free_port);
        let mut command = match kind {
            Kind::Nginx => nginx(&dir, &cert, port, plain_port.unwrap_or_default(), origin),
            Kind::H2o => h2o(&dir, &cert, port, origin),
            Kind::Caddy => caddy(&dir, &cert, port, origin),
            Kind::Hypercorn => hypercorn(&dir, &cert, port),
        };
        let log = std::fs::File::create(dir.0.join("stderr.log")).unwrap_or_else(|e| panic!("{e}"));
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", kind.name()));
        let mut server = Server { kind, port, plain_port, child, dir };
        server.wait_listening(port);
        if let Some(plain) = plain_port {
            server.wait_listening(plain);
        }
        server
    }

    fn wait_listening(&mut self, port: u16) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited ({status}) before listening: {}", self.kind.name(), self.log());
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{} never listened: {}", self.kind.name(), self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server wrote to stderr and its error log, for a failure's message.
    pub fn log(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .filter_map(|name| std::fs::read_to_string(self.dir.0.join(name)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The certificate the server presents (the gateway's CA bundle).
    pub fn cert(&self) -> PathBuf {
        self.dir.0.join("cert.pem")
    }

    /// nginx's graceful reload (SIGHUP): new workers take new connections, the old ones send GOAWAY and finish
    /// their streams within `worker_shutdown_timeout`.
    pub fn reload(&self) {
        self.signal(libc::SIGHUP);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the pid is this test's own child.
        unsafe { libc::kill(pid, signal) };
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx(dir: &Dir, cert: &Cert, port: u16, plain: u16, origin: &str) -> Command {
    let d = dir.0.display();
    let user = if running_as_root() { "user nobody nogroup;" } else { "" };
    let conf = format!(
        r#"daemon off;
master_process on;
worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_shutdown_timeout 1s;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_timeout {IDLE_SECS}s;
    http2_max_concurrent_streams {STREAM_LIMIT};
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        client_max_body_size 10m;
        client_body_buffer_size 1m;
        location / {{
            proxy_pass {origin};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
    server {{
        listen 127.0.0.1:{plain};
        location / {{ return 200 "ok\n"; }}
    }}
}}
"#,
        cert = cert.cert.display(),
        key = cert.key.display(),
    );
    let path = dir.write("nginx.conf", &conf);
    let mut command = Command::new(binary(Kind::Nginx));
    command.arg("-c").arg(path).arg("-p").arg(&dir.0);
    command
}

fn h2o(dir: &Dir, cert: &Cert, port: u16, origin: &str) -> Command {
    let d = dir.0.display();
    // h2o refuses to run as root without a user to switch to.
    let user = if running_as_root() { "user: nobody" } else { "" };
    let conf = format!(
        r#"{user}
pid-file: {d}/h2o.pid
error-log: {d}/error.log
num-threads: 1
http2-idle-timeout: {IDLE_SECS}
http2-max-concurrent-requests-per-connection: {STREAM_LIMIT}
listen:
  host: 127.0.0.1
  port: {port}
  ssl:
    certificate-file: {cert}
    key-file: {key}
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: {origin}/
"#,
        cert = cert.cert.display(),
        key = cert.key.display(),
    );
    let path = dir.write("h2o.conf", &conf);
    let mut command = Command::new(binary(Kind::H2o));
    command.arg("-c").arg(path);
    command
}

fn caddy(dir: &Dir, cert: &Cert, port: u16, origin: &str) -> Command {
    let conf = format!(
        r#"{{
    admin off
    auto_https off
    skip_install_trust
    servers {{
        timeouts {{
            idle {IDLE_SECS}s
        }}
    }}
}}
https://127.0.0.1:{port} {{
    tls {cert} {key}
    reverse_proxy {upstream} {{
        flush_interval -1
    }}
}}
"#,
        cert = cert.cert.display(),
        key = cert.key.display(),
        upstream = origin.trim_start_matches("http://"),
    );
    let path = dir.write("Caddyfile", &conf);
    let mut command = Command::new(binary(Kind::Caddy));
    command.args(["run", "--adapter", "caddyfile", "--config"]).arg(path);
    // Caddy keeps its state under these: the suite's own directory, not the user's.
    for var in ["HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"] {
        command.env(var, &dir.0);
    }
    command
}

fn hypercorn(dir: &Dir, cert: &Cert, port: u16) -> Command {
    let conf = format!(
        "bind = [\"127.0.0.1:{port}\"]\ncertfile = \"{cert}\"\nkeyfile = \"{key}\"\nkeep_alive_timeout = {IDLE_SECS}\n\
         h2_max_concurrent_streams = {STREAM_LIMIT}\nworkers = 1\naccesslog = \"-\"\n",
        cert = cert.cert.display(),
        key = cert.key.display(),
    );
    let path = dir.write("hypercorn.toml", &conf);
    let mut command = Command::new(binary(Kind::Hypercorn));
    command.arg("--config").arg(path).arg("sse_origin:app");
    command.env("PYTHONPATH", Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/interop"));
    command.env("PYTHONDONTWRITEBYTECODE", "1");
    command
}
