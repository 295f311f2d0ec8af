//! The files that start the gateway at login, rendered from one [`Launch`]: a systemd user unit, a launchd
//! agent's property list, a Task Scheduler task definition. Pure text, compiled on every system, so all three are
//! tested wherever the tests run; autostart/system.rs writes them and tells the system's service manager.

use std::fmt::Write as _;

/// The systemd user unit's name.
pub(crate) const SYSTEMD_UNIT: &str = "codex-gateway.service";
/// The launchd agent's label (and its file's name, `<label>.plist`).
pub(crate) const LAUNCHD_LABEL: &str = "com.codex-gateway.gateway";
/// The scheduled task's name.
pub(crate) const TASK_NAME: &str = "codex-gateway";

/// What the service manager starts, whatever the system.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Launch {
    /// The program, an absolute path.
    pub(crate) program: String,
    /// `serve` and its options.
    pub(crate) args: Vec<String>,
    /// Variables set for it: only secrets the user passed explicitly (`--api-key`), kept off the command line
    /// where `ps` shows them; the file holding them is written 0600. Empty for a task (autostart.rs refuses).
    pub(crate) env: Vec<(String, String)>,
    /// Where launchd puts what the process prints itself (its listening line, a fatal error, a panic); the other
    /// managers keep it themselves (the journal) or drop it (a task, whose log goes to `--log-file`).
    pub(crate) output: Option<String>,
}

/// A systemd user unit (`~/.config/systemd/user/codex-gateway.service`). It mirrors the packaged system unit
/// (packaging/codex-gateway.service) where a user manager allows it: the restart policy, the stop bounds, the file
/// limit and the hardening that needs no privileges (the seccomp-based options; systemd implies NoNewPrivileges for
/// them in a user manager). The mount-namespace options (ProtectSystem, ProtectHome, PrivateTmp, ...) are left out:
/// a user manager cannot set them up without unprivileged user namespaces, and ProtectHome would hide the data
/// directory, which lives in the home directory here.
pub(crate) fn systemd_unit(l: &Launch) -> String {
    let exec: Vec<String> = std::iter::once(&l.program).chain(&l.args).map(|w| systemd_word(w)).collect();
    let mut env = String::new();
    for (k, v) in &l.env {
        let _ = writeln!(env, "Environment={}", systemd_quote(&format!("{k}={v}"), Dollar::Literal));
    }
    format!(
        "# Written by `codex-gateway service install`; `codex-gateway service uninstall` removes it.
# Settings: the config file (read at each start; `systemctl --user reload codex-gateway` applies what can change
# live) and the options below. The shell's environment is not copied here.

[Unit]
Description=codex-gateway: the Codex models of a ChatGPT subscription as OpenAI, Anthropic, Gemini and Ollama APIs

[Service]
Type=exec
ExecStart={exec}
# A bare name: systemd looks it up in its own PATH (/bin/kill is absent on some distributions).
ExecReload=kill -HUP $MAINPID
{env}UMask=0077
# Logs go to the journal (stderr): `journalctl --user -u codex-gateway`.

# A failed start or a crash is retried; a clean stop is not.
Restart=on-failure
RestartSec=2s
# SIGTERM: open streams finish (shutdown_timeout_secs, 30 by default), then the usage ledger drains (the same
# bound). Past both, systemd kills it.
KillSignal=SIGTERM
TimeoutStopSec=70s
LimitNOFILE=65536

NoNewPrivileges=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged

[Install]
WantedBy=default.target
",
        exec = exec.join(" "),
    )
}

/// What `$` means where a quoted string goes: ExecStart expands `$VAR` (so a literal one is `$$`), Environment=
/// does not.
#[derive(Clone, Copy)]
enum Dollar {
    Expanded,
    Literal,
}

/// One word of an ExecStart line: bare when it holds only characters systemd takes literally, else quoted.
fn systemd_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:=,@".contains(c);
    match !word.is_empty() && word.chars().all(plain) {
        true => word.to_owned(),
        false => systemd_quote(word, Dollar::Expanded),
    }
}

/// A double-quoted string as systemd unquotes it: C escapes for `\`, `"` and control characters, `%%` for a
/// literal `%` (specifiers are expanded everywhere, quotes or not) and `$$` for a literal `$` where variables are.
fn systemd_quote(s: &str, dollar: Dollar) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => match dollar {
                Dollar::Expanded => out.push_str("$$"),
                Dollar::Literal => out.push('$'),
            },
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A launchd agent (`~/Library/LaunchAgents/<label>.plist`): started at login (RunAtLoad), started again when it
/// exits with a failure (KeepAlive SuccessfulExit false, so a clean stop stays stopped), launchd's default 256 open
/// files raised to the systemd unit's limit.
pub(crate) fn launchd_plist(l: &Launch) -> String {
    let mut args = String::new();
    for a in std::iter::once(&l.program).chain(&l.args) {
        let _ = writeln!(args, "\t\t<string>{}</string>", xml(a));
    }
    let mut env = String::new();
    if !l.env.is_empty() {
        env.push_str("\t<key>EnvironmentVariables</key>\n\t<dict>\n");
        for (k, v) in &l.env {
            let _ = writeln!(env, "\t\t<key>{}</key>\n\t\t<string>{}</string>", xml(k), xml(v));
        }
        env.push_str("\t</dict>\n");
    }
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `codex-gateway service install`; `codex-gateway service uninstall` removes it. -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{label}</string>
	<key>ProgramArguments</key>
	<array>
{args}	</array>
{env}	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>SoftResourceLimits</key>
	<dict>
		<key>NumberOfFiles</key>
		<integer>65536</integer>
	</dict>
{out}</dict>
</plist>
"#,
        label = xml(LAUNCHD_LABEL),
        out = l.output.as_deref().map_or(String::new(), |o| {
            let o = xml(o);
            format!("\t<key>StandardOutPath</key>\n\t<string>{o}</string>\n\t<key>StandardErrorPath</key>\n\t<string>{o}</string>\n")
        }),
    )
}

/// A Task Scheduler task (`schtasks /Create /XML`) that runs the gateway at this user's logon, with this user's
/// rights (not elevated). The XML rather than `schtasks /SC ONLOGON /TR "..."`: /TR holds at most 261
/// characters (a path under `C:\Users\...\AppData` with `--data-dir` and `--config` passes that), it keeps the
/// program apart from its arguments (no quoting of quotes inside /TR), and only the XML can lift the defaults
/// that would stop a gateway: no start on battery, a stop when the laptop goes on battery, and a stop after 72 h.
/// `user` (DOMAIN\name) limits the trigger to this user's logon; without it the trigger is any user's, which
/// needs an administrator.
pub(crate) fn task_xml(l: &Launch, user: Option<&str>) -> String {
    let user_id = user.map(|u| format!("      <UserId>{}</UserId>\n", xml(u))).unwrap_or_default();
    let args: Vec<String> = l.args.iter().map(|a| windows_arg(a)).collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-16"?>
<!-- Written by `codex-gateway service install`; `codex-gateway service uninstall` removes it. -->
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>codex-gateway at logon (codex-gateway service install)</Description>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
{user_id}    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
{user_id}      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>false</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <WakeToRun>false</WakeToRun>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>7</Priority>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>3</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{command}</Command>
      <Arguments>{args}</Arguments>
    </Exec>
  </Actions>
</Task>
"#,
        command = xml(&windows_arg(&l.program)),
        args = xml(&args.join(" ")),
    )
}

/// One argument as the Microsoft C runtime splits a command line (CommandLineToArgvW): quoted when it holds a
/// space, a tab or a quote (or is empty); inside quotes, a `"` is `\"` and the backslashes before a quote (or the
/// closing one) are doubled, other backslashes are literal (`C:\dir\` stays readable).
pub(crate) fn windows_arg(a: &str) -> String {
    if !a.is_empty() && !a.contains([' ', '\t', '\n', '\u{b}', '"']) {
        return a.to_owned();
    }
    let mut out = String::from('"');
    let mut backslashes = 0usize;
    for c in a.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            c => {
                out.extend(std::iter::repeat_n('\\', backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.extend(std::iter::repeat_n('\\', backslashes * 2));
    out.push('"');
    out
}

/// Text as XML character data or an attribute value.
fn xml(s: &str) -> String {
    crate::auth::login::html_escape(s).replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path with every character the formats treat specially: a space, `%`, `$`, `&`, `<`, `>`, a quote, a
    /// backslash.
    const AWKWARD: &str = "/home/me/My Apps & <Tools>/100% \"$HOME\" \\x/codex-gateway";

    fn launch(program: &str, env: Vec<(String, String)>) -> Launch {
        Launch {
            program: program.into(),
            args: vec!["serve".into(), "--data-dir".into(), "/home/me/data dir".into(), "--port".into(), "9000".into()],
            env,
            output: Some("/Users/me/Library/Logs/codex-gateway/gateway.out".into()),
        }
    }

    fn line<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
        text.lines().filter_map(|l| l.strip_prefix(key)).collect()
    }

    #[test]
    fn the_unit_runs_serve_with_its_options_and_mirrors_the_packaged_units_limits() {
        let unit = systemd_unit(&launch("/usr/local/bin/codex-gateway", vec![]));
        assert_eq!(
            line(&unit, "ExecStart="),
            ["/usr/local/bin/codex-gateway serve --data-dir \"/home/me/data dir\" --port 9000"]
        );
        for setting in ["Restart=on-failure", "LimitNOFILE=65536", "WantedBy=default.target", "TimeoutStopSec=70s"] {
            assert!(unit.lines().any(|l| l == setting), "{setting} missing:\n{unit}");
        }
        assert!(line(&unit, "Environment=").is_empty(), "nothing in the environment unless passed");
        // A user manager cannot set these up, and ProtectHome would hide the data directory.
        for absent in ["ProtectSystem", "ProtectHome", "PrivateTmp", "User=", "multi-user.target"] {
            assert!(!unit.contains(absent), "{absent} in a user unit");
        }
    }

    #[test]
    fn an_exec_start_word_escapes_quotes_backslashes_specifiers_and_variables() {
        let unit = systemd_unit(&launch(AWKWARD, vec![]));
        let exec = line(&unit, "ExecStart=")[0];
        let quoted = r#""/home/me/My Apps & <Tools>/100%% \"$$HOME\" \\x/codex-gateway""#;
        assert_eq!(exec, format!("{quoted} serve --data-dir \"/home/me/data dir\" --port 9000"));
        assert_eq!(systemd_word(""), "\"\"", "an empty argument stays an argument");
        assert_eq!(systemd_word("a\nb"), "\"a\\nb\"");
        assert_eq!(systemd_word(";"), "\";\"", "a lone `;` is not a command separator");
    }

    #[test]
    fn a_secret_passed_explicitly_is_in_the_units_environment_not_its_command_line() {
        let unit = systemd_unit(&launch("/bin/cg", vec![("CODEX_GATEWAY_API_KEY".into(), "k$1%\"x".into())]));
        // Environment= expands specifiers but not variables.
        assert_eq!(line(&unit, "Environment="), [r#""CODEX_GATEWAY_API_KEY=k$1%%\"x""#]);
        assert!(!line(&unit, "ExecStart=")[0].contains("k$1"));
    }

    #[test]
    fn the_plist_escapes_xml_and_keeps_each_argument_whole() {
        let plist = launchd_plist(&launch(AWKWARD, vec![("CODEX_GATEWAY_API_KEY".into(), "a&b".into())]));
        let args: Vec<&str> = plist
            .lines()
            .skip_while(|l| !l.contains("<key>ProgramArguments</key>"))
            .take_while(|l| !l.contains("</array>"))
            .filter_map(|l| l.trim().strip_prefix("<string>")?.strip_suffix("</string>"))
            .collect();
        assert_eq!(
            args,
            [
                "/home/me/My Apps &amp; &lt;Tools&gt;/100% &quot;$HOME&quot; \\x/codex-gateway",
                "serve",
                "--data-dir",
                "/home/me/data dir",
                "--port",
                "9000"
            ]
        );
        assert!(plist.contains(&format!("<string>{LAUNCHD_LABEL}</string>")));
        assert!(plist.contains("<key>RunAtLoad</key>\n\t<true/>"));
        assert!(plist.contains("<key>SuccessfulExit</key>\n\t\t<false/>"));
        assert!(plist.contains("<key>CODEX_GATEWAY_API_KEY</key>\n\t\t<string>a&amp;b</string>"));
        assert_eq!(plist.matches("<string>/Users/me/Library/Logs/codex-gateway/gateway.out</string>").count(), 2);
        assert!(!plist.contains("& ") && !plist.contains("<Tools>"), "raw XML characters:\n{plist}");
    }

    #[test]
    fn the_task_quotes_its_command_line_as_windows_splits_it_then_escapes_it_as_xml() {
        let mut l = launch(r"C:\Program Files\codex-gateway\codex-gateway.exe", vec![]);
        l.args = vec!["serve".into(), "--data-dir".into(), r#"C:\Users\A & B\say "hi"\"#.into(), "".into()];
        let task = task_xml(&l, Some(r"PC\me"));
        assert!(task.contains(r"<Command>&quot;C:\Program Files\codex-gateway\codex-gateway.exe&quot;</Command>"));
        // `"C:\Users\A & B\say \"hi\"\\"`: the quote escaped, the trailing backslash doubled before the closing quote.
        let args = r#"serve --data-dir &quot;C:\Users\A &amp; B\say \&quot;hi\&quot;\\&quot; &quot;&quot;"#;
        assert!(task.contains(&format!("<Arguments>{args}</Arguments>")), "{task}");
        assert_eq!(task.matches(r"<UserId>PC\me</UserId>").count(), 2, "trigger and principal");
        for setting in [
            "<ExecutionTimeLimit>PT0S</ExecutionTimeLimit>",
            "<DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>",
            "<StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>",
            "<RunLevel>LeastPrivilege</RunLevel>",
            "<LogonTrigger>",
        ] {
            assert!(task.contains(setting), "{setting} missing");
        }
        assert!(!task_xml(&l, None).contains("<UserId>"));
    }

    #[test]
    fn windows_arguments_split_back_to_what_was_quoted() {
        for (arg, quoted) in [
            ("plain", "plain"),
            (r"C:\dir\", r"C:\dir\"),
            (r"C:\my dir\", r#""C:\my dir\\""#),
            (r#"a"b"#, r#""a\"b""#),
            (r#"a\"b"#, r#""a\\\"b""#),
            ("", r#""""#),
        ] {
            assert_eq!(windows_arg(arg), quoted, "{arg}");
        }
    }
}
