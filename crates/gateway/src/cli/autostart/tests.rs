//! What `service install` decides: the command per service manager, where secrets go, which binaries it refuses.

use std::path::PathBuf;

use super::*;

fn wanted() -> Wanted {
    Wanted {
        program: "/usr/local/bin/codex-gateway".into(),
        data_dir: PathBuf::from("/home/me/.local/share/codex-gateway"),
        logs: PathBuf::from("/Users/me/Library/Logs/codex-gateway"),
        ..Wanted::default()
    }
}

#[test]
fn the_service_runs_serve_with_the_data_directory_and_only_the_options_given() -> anyhow::Result<()> {
    let bare = plan(Target::Systemd, &wanted())?;
    assert_eq!(bare.args, ["serve", "--data-dir", "/home/me/.local/share/codex-gateway"]);
    assert!(bare.env.is_empty() && bare.output.is_none());

    let w = Wanted {
        config: Some("/etc/cg.toml".into()),
        host: Some("0.0.0.0".into()),
        port: Some(9000),
        log_format: Some("json".into()),
        ..wanted()
    };
    let full = plan(Target::Systemd, &w)?;
    let expected = [
        "serve",
        "--data-dir",
        "/home/me/.local/share/codex-gateway",
        "--config",
        "/etc/cg.toml",
        "--host",
        "0.0.0.0",
        "--port",
        "9000",
        "--log-format",
        "json",
    ];
    assert_eq!(full.args, expected);
    Ok(())
}

#[test]
fn launchd_and_a_task_log_to_a_file_since_neither_has_a_journal() -> anyhow::Result<()> {
    let agent = plan(Target::Launchd, &wanted())?;
    assert_eq!(agent.args[3..], ["--log-file", "/Users/me/Library/Logs/codex-gateway/gateway.log"]);
    assert_eq!(agent.output.as_deref(), Some("/Users/me/Library/Logs/codex-gateway/gateway.out"));
    let task = plan(Target::Task, &wanted())?;
    assert_eq!(task.args[3..], ["--log-file", "/home/me/.local/share/codex-gateway/gateway.log"]);
    let given = Wanted { log_file: Some("/var/log/cg.log".into()), ..wanted() };
    assert_eq!(plan(Target::Launchd, &given)?.args[3..], ["--log-file", "/var/log/cg.log"]);
    assert_eq!(plan(Target::Systemd, &given)?.args[3..], ["--log-file", "/var/log/cg.log"]);
    Ok(())
}

#[test]
fn a_key_given_as_an_option_goes_into_the_environment_and_a_task_refuses_it() -> anyhow::Result<()> {
    let w = Wanted { api_key: Some("sk-secret".into()), ..wanted() };
    for target in [Target::Systemd, Target::Launchd] {
        let l = plan(target, &w)?;
        assert_eq!(l.env, [("CODEX_GATEWAY_API_KEY".to_owned(), "sk-secret".to_owned())]);
        assert!(!l.args.iter().any(|a| a.contains("sk-secret")), "{target:?}: the key on the command line");
    }
    assert!(matches!(plan(Target::Task, &w), Err(Refusal::SecretOnCommandLine { option: "--api-key" })));
    Ok(())
}

#[test]
fn a_path_with_a_control_character_is_refused_rather_than_mangled() {
    let w = Wanted { data_dir: PathBuf::from("/home/me/da\nta"), ..wanted() };
    for target in [Target::Systemd, Target::Launchd, Target::Task] {
        assert!(matches!(plan(target, &w), Err(Refusal::Unrepresentable { what: "the data directory", .. })));
    }
}

#[test]
fn binaries_run_by_one_run_tools_are_temporary() {
    let tmp = "/tmp";
    for (exe, place) in [
        ("/home/me/.npm/_npx/6a9b/node_modules/@codex-gateway/linux-x64/bin/codex-gateway", Temporary::Npx),
        (r"C:\Users\me\AppData\Local\npm-cache\_npx\6a9b\node_modules\x\codex-gateway.exe", Temporary::Npx),
        ("/home/me/.cache/uv/archive-v0/Xy12/bin/codex-gateway", Temporary::Uvx),
        (r"C:\Users\me\AppData\Local\uv\cache\archive-v0\Xy\Scripts\codex-gateway.exe", Temporary::Uvx),
        ("/home/me/.local/share/pipx/.cache/0f3e/bin/codex-gateway", Temporary::PipxRun),
        ("/home/me/.cache/pnpm/dlx/abc/node_modules/x/codex-gateway", Temporary::PnpmDlx),
        ("/tmp/bunx-1000-codex-gateway/codex-gateway", Temporary::TempDir),
    ] {
        assert_eq!(temporary(exe, tmp), Some(place), "{exe}");
    }
    for exe in [
        "/usr/local/bin/codex-gateway",
        "/home/me/.local/share/pipx/venvs/codex-gateway/bin/codex-gateway",
        "/home/me/.local/share/uv/tools/codex-gateway/bin/codex-gateway",
        "/usr/lib/node_modules/codex-gateway/node_modules/@codex-gateway/linux-x64/bin/codex-gateway",
        "/tmpfiles/codex-gateway",
    ] {
        assert_eq!(temporary(exe, tmp), None, "{exe}");
    }
    assert_eq!(
        temporary(r"C:\Users\me\AppData\Local\Temp\x\cg.exe", r"C:\Users\me\AppData\Local\Temp\"),
        Some(Temporary::TempDir)
    );
}

#[test]
fn a_verbatim_windows_path_is_written_plain() {
    assert_eq!(plain_windows_path(r"\\?\C:\Program Files\cg.exe"), r"C:\Program Files\cg.exe");
    assert_eq!(plain_windows_path(r"\\?\UNC\server\share\cg.exe"), r"\\server\share\cg.exe");
    assert_eq!(plain_windows_path("/usr/bin/cg"), "/usr/bin/cg");
}

#[test]
fn the_variables_named_as_not_carried_are_the_gateways_less_those_written_as_options() {
    let set = ["CODEX_GATEWAY_API_KEY", "CODEX_GATEWAY_PORT", "PATH", "CODEX_HOME", "CODEX_GATEWAY_DATA_DIR", "HOME"];
    assert_eq!(not_carried(set.into_iter().map(String::from)), ["CODEX_GATEWAY_API_KEY", "CODEX_HOME"]);
}
