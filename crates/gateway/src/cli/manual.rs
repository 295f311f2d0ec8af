//! Shell completions (`completions bash|zsh|fish`, clap_complete) and manual pages (`man [DIR]`, clap_mangen),
//! generated from the same clap definitions as the parser, so they cannot drift from the commands.

use std::path::PathBuf;

use clap::{Args, CommandFactory, ValueEnum};

use super::Cli;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    shell: Shell,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write one page per command (`codex-gateway.1`, `codex-gateway-start.1`, ...) into this directory instead
    /// of printing the main page.
    dir: Option<PathBuf>,
}

pub(crate) fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut out = Vec::new();
    write_completions(args.shell, &mut out);
    super::output::bytes(&out);
    Ok(())
}

fn write_completions(shell: Shell, out: &mut Vec<u8>) {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, name, out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, name, out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, name, out),
    }
}

pub(crate) fn man(args: ManArgs) -> anyhow::Result<()> {
    match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(Cli::command(), &dir)?;
            say!("manual pages written to {}", dir.display());
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            super::output::bytes(&out);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        write_completions(shell, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn completions_know_every_command_and_their_options() {
        for (shell, head) in [
            (Shell::Bash, "_codex__gateway()"),
            (Shell::Zsh, "#compdef codex-gateway"),
            (Shell::Fish, "complete -c codex-gateway"),
        ] {
            let s = script(shell);
            assert!(s.contains(head), "{shell:?}");
            for word in [
                "serve",
                "start",
                "stop",
                "restart",
                "status",
                "service",
                "doctor",
                "accounts",
                "completions",
                "offline",
                "verbose",
            ] {
                assert!(s.contains(word), "{shell:?} lacks {word}");
            }
        }
    }

    #[test]
    fn the_bash_script_loads_and_registers_the_completion() -> anyhow::Result<()> {
        let Ok(bash) = which("bash") else { return Ok(()) };
        let out = std::process::Command::new(bash)
            .args(["--norc", "-c", "source /dev/stdin && complete -p codex-gateway"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(script(Shell::Bash).as_bytes())?;
                }
                child.wait_with_output()
            })?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("codex-gateway"));
        Ok(())
    }

    fn which(name: &str) -> Result<PathBuf, ()> {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .ok_or(())
    }

    #[test]
    fn the_man_pages_cover_every_command() -> anyhow::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut out)?;
        let page = String::from_utf8_lossy(&out);
        assert!(page.starts_with(".ie") || page.contains(".TH codex-gateway 1"), "{page}");
        for word in ["start", "doctor", "completions", "\\-\\-data\\-dir"] {
            assert!(page.contains(word), "the main page lacks {word}");
        }
        let dir = std::env::temp_dir().join(format!("cgw-man-{}", uuid::Uuid::new_v4().simple()));
        man(ManArgs { dir: Some(dir.clone()) })?;
        for page in [
            "codex-gateway.1",
            "codex-gateway-start.1",
            "codex-gateway-doctor.1",
            "codex-gateway-accounts-import.1",
            "codex-gateway-service-install.1",
        ] {
            assert!(dir.join(page).is_file(), "{page}");
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
