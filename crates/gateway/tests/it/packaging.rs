//! packaging/: the systemd unit passes `systemd-analyze verify` without a warning and carries its hardening; the
//! Docker image builds and its binary runs, where a Docker daemon answers (otherwise the test says it skipped
//! that, on stderr past the test harness's capture); the Dockerfile and compose file keep what
//! docs/deployment.md promises.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Printed even when the harness captures output: a skipped check must be visible.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn available(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).output().is_ok_and(|o| o.status.success())
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = read("packaging/codex-gateway.service");
    for line in [
        "ExecStart=/usr/local/bin/codex-gateway serve",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=codex-gateway",
        "StateDirectory=codex-gateway",
        "StateDirectoryMode=0700",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks `{line}`");
    }
    if !available("systemd-analyze", &["--version"]) {
        say("packaging: SKIPPED `systemd-analyze verify` (systemd-analyze is not installed)");
        return;
    }
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let dir = std::env::temp_dir().join(format!("cgw-unit-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("codex-gateway.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/codex-gateway", env!("CARGO_BIN_EXE_codex-gateway")))
        .unwrap_or_else(|e| panic!("{e}"));
    let o = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(o.status.success(), "systemd-analyze verify failed: {stderr}");
    // Unknown keys and bad values are only warnings (exit 0), printed with the unit's name.
    assert!(!stderr.contains("codex-gateway.service"), "systemd-analyze verify warned: {stderr}");
}

#[test]
fn the_docker_image_builds_where_a_daemon_answers() {
    let dockerfile = read("packaging/Dockerfile");
    assert_eq!(dockerfile.lines().filter(|l| l.starts_with("FROM ")).count(), 2, "multi-stage");
    for needle in [
        "USER nonroot:nonroot",
        "VOLUME [\"/data\"]",
        "HEALTHCHECK",
        "\"status\", \"--quiet\"",
        "CODEX_GATEWAY_HOST=0.0.0.0",
        "CODEX_GATEWAY_DATA_DIR=/data",
        // The release build users get from the image is the profile-guided one (docs/deployment.md).
        "RUN scripts/build-release --locked -p codex-gateway",
    ] {
        assert!(dockerfile.contains(needle), "the Dockerfile lacks {needle}");
    }
    let compose = read("packaging/compose.yaml");
    for needle in ["dockerfile: packaging/Dockerfile", "CODEX_GATEWAY_API_KEY: ${CODEX_GATEWAY_API_KEY:?", "/data"] {
        assert!(compose.contains(needle), "compose.yaml lacks {needle}");
    }
    if !available("docker", &["info"]) {
        say("packaging: skipped: no Docker daemon (`docker info` did not answer), the image was not built");
        return;
    }
    let tag = format!("codex-gateway-test:{}", uuid::Uuid::new_v4().simple());
    let build = Command::new("docker")
        .args(["build", "-f", "packaging/Dockerfile", "-t", &tag, "."])
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(build.status.success(), "docker build failed: {}", String::from_utf8_lossy(&build.stderr));
    let version = Command::new("docker").args(["run", "--rm", &tag, "--version"]).output();
    // Without a client key the image refuses to listen on 0.0.0.0, as the gateway does anywhere.
    let keyless = Command::new("docker").args(["run", "--rm", &tag]).output();
    let _ = Command::new("docker").args(["image", "rm", "-f", &tag]).output();
    let version = version.unwrap_or_else(|e| panic!("{e}"));
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.contains(env!("CARGO_PKG_VERSION")) && version.contains("build: profile-guided"), "{version}");
    let keyless = keyless.unwrap_or_else(|e| panic!("{e}"));
    assert!(!keyless.status.success());
    assert!(String::from_utf8_lossy(&keyless.stderr).contains("no client API key is set"));
    say("packaging: built and ran the Docker image");
}

/// `--version` names the target, the commit and how the binary was optimised (crates/gateway/build.rs reads the
/// rustflags it was built with): the profile-guided release build of scripts/build-release, or not; `-V` stays the
/// bare version.
#[test]
fn the_version_names_the_build() {
    let run = |flag: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_codex-gateway")).arg(flag).output();
        String::from_utf8_lossy(&out.unwrap_or_else(|e| panic!("{e}")).stdout).into_owned()
    };
    let long = run("--version");
    let build = long.lines().find_map(|l| l.strip_prefix("build: ")).unwrap_or_default();
    assert!(
        [
            "profile-guided (scripts/build-release)",
            "without a profile",
            "instrumented for profiling (scripts/pgo-train)"
        ]
        .contains(&build),
        "{long}"
    );
    assert_eq!(run("-V").trim(), concat!("codex-gateway ", env!("CARGO_PKG_VERSION")));
    // The target triple of this very build: its architecture and operating system lead and follow the vendor.
    let target = long.lines().find_map(|l| l.strip_prefix("target: ")).unwrap_or_default();
    assert!(target.starts_with(std::env::consts::ARCH) && target.contains(std::env::consts::OS), "{long}");
    let commit = long.lines().find_map(|l| l.strip_prefix("commit: ")).unwrap_or_default();
    assert!(!commit.is_empty(), "{long}");
}

/// Without Docker (hadolint is not here either): the Dockerfile is read as Docker's parser reads it (comments,
/// `\` continuations, one known instruction per line, JSON arrays where the exec form is used, `COPY --from`
/// naming an earlier stage) and compose.yaml parses as YAML with the service the docs describe.
#[test]
fn the_dockerfile_and_compose_file_parse() {
    const INSTRUCTIONS: [&str; 18] = [
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
        "MAINTAINER",
    ];
    let text = read("packaging/Dockerfile");
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                current += head;
                current.push(' ');
            }
            None => {
                current += t;
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    assert!(current.is_empty(), "the Dockerfile ends inside a continued line");
    let mut stages: Vec<String> = Vec::new();
    for l in &logical {
        let (word, rest) = l.split_once(' ').unwrap_or((l.as_str(), ""));
        assert!(INSTRUCTIONS.contains(&word), "not an instruction: `{l}`");
        let rest = rest.trim();
        assert!(!rest.is_empty(), "`{word}` without arguments");
        let exec_form = match word {
            "HEALTHCHECK" => rest.split_once("CMD ").map(|(_, c)| c.trim()),
            "CMD" | "ENTRYPOINT" | "VOLUME" | "SHELL" => Some(rest),
            _ => None,
        };
        if let Some(json) = exec_form.filter(|j| j.starts_with('[')) {
            let parsed: Result<Vec<String>, _> = serde_json::from_str(json);
            assert!(parsed.is_ok(), "`{word}` has a JSON array that does not parse: {json}");
        }
        if word == "FROM" {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            if let [_, as_, name] = parts.as_slice() {
                assert!(as_.eq_ignore_ascii_case("AS"), "{l}");
                stages.push(name.to_string());
            }
        }
        if let Some(from) = rest.split_whitespace().find_map(|a| a.strip_prefix("--from=")) {
            assert!(stages.iter().any(|s| s == from), "COPY --from={from} names no earlier stage");
        }
    }
    assert_eq!(logical.first().map(|l| l.starts_with("FROM ")), Some(true), "a Dockerfile starts with FROM");
    assert_eq!(logical.last().map(|l| l.starts_with("CMD ")), Some(true));

    let compose = yaml_rust2::YamlLoader::load_from_str(&read("packaging/compose.yaml"))
        .unwrap_or_else(|e| panic!("compose.yaml is not YAML: {e}"));
    let service = &compose[0]["services"]["codex-gateway"];
    assert_eq!(service["build"]["dockerfile"].as_str(), Some("packaging/Dockerfile"));
    // The released image first (packaging/image/Containerfile); `--build` makes it from source instead.
    let image = service["image"].as_str().unwrap_or_default();
    assert!(image.starts_with("ghcr.io/codex-gateway/codex-gateway:"), "{image}");
    assert_eq!(service["ports"][0].as_str(), Some("127.0.0.1:8765:8765"), "loopback only");
    assert!(service["volumes"][0].as_str().is_some_and(|v| v.ends_with(":/data")));
    assert!(!compose[0]["volumes"]["codex-gateway-data"].is_badvalue());
}
