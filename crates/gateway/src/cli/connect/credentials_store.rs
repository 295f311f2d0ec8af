//! `connect codex --sign-in`: where the Codex CLI keeps the gateway token it gets (`gateway_oauth.credentials_store`).
//! The CLI keeps it in the OS keyring unless told otherwise, and on Linux its keyring is the Secret Service on the
//! session D-Bus: a machine without one (a server over SSH, a container, WSL) gets its token (200) and then cannot
//! keep it ("Gateway OAuth authentication failed; check the gateway configuration and credential store"). So the
//! store is chosen here, from facts about this machine ([`Machine`], gathered once) by a pure function ([`choose`]),
//! or taken from `--credentials-store`, and `connect` says which and why.

use clap::ValueEnum;

use crate::config::Env;

/// The stores the CLI's `gateway_oauth` table takes (`credentials_store`): exactly these two (0.171.0 refuses the
/// whole provider for any other value, `auto` included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsStore {
    /// `CODEX_HOME/secrets/gateway_oauth.json`, readable by this user only.
    File,
    /// An encrypted file whose key the CLI keeps in the OS keyring (Keychain, Credential Manager, the Secret
    /// Service); the CLI's default, and a failed sign-in where there is no keyring.
    Keyring,
}

impl CredentialsStore {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialsStore::File => "file",
            CredentialsStore::Keyring => "keyring",
        }
    }
}

/// `--credentials-store`: one of the CLI's stores, or `auto` (the default): chosen for this machine.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreFlag {
    File,
    Keyring,
    Auto,
}

/// What this machine says about a keyring, gathered once by [`Machine::here`].
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// `std::env::consts::OS`.
    pub os: &'static str,
    /// `DBUS_SESSION_BUS_ADDRESS` is set.
    pub session_bus: bool,
    /// Whether `org.freedesktop.secrets` is on the session bus or can be started there; `None`: not asked (no
    /// `dbus-send`, or no answer).
    pub secret_service: Option<bool>,
    /// A login over SSH (`SSH_CONNECTION`, `SSH_TTY`): a desktop's keyring, if any, is locked to it.
    pub ssh: bool,
    /// The container this runs in, as it announces itself.
    pub container: Option<&'static str>,
    /// Windows Subsystem for Linux (`WSL_DISTRO_NAME`, `WSL_INTEROP`).
    pub wsl: bool,
}

impl Machine {
    /// The facts of the machine `connect` runs on (where the CLI it configures runs).
    pub fn here(env: &dyn Env) -> Machine {
        let session_bus = env.get("DBUS_SESSION_BUS_ADDRESS").is_some();
        let os = std::env::consts::OS;
        let container = if std::path::Path::new("/.dockerenv").exists() {
            Some("Docker")
        } else if std::path::Path::new("/run/.containerenv").exists() {
            Some("Podman")
        } else if env.get("container").is_some() {
            Some("a container")
        } else {
            None
        };
        Machine {
            os,
            session_bus,
            secret_service: (session_bus && matches!(os, "linux" | "freebsd" | "openbsd"))
                .then(secret_service_on_the_bus)
                .flatten(),
            ssh: env.get("SSH_CONNECTION").is_some() || env.get("SSH_TTY").is_some(),
            container,
            wsl: env.get("WSL_DISTRO_NAME").is_some() || env.get("WSL_INTEROP").is_some(),
        }
    }
}

/// Asks the session bus whether the Secret Service is there or can be started (`dbus-send`, 2 s at most each).
fn secret_service_on_the_bus() -> Option<bool> {
    const NAME: &str = "org.freedesktop.secrets";
    let mut seen = false;
    for method in ["ListNames", "ListActivatableNames"] {
        let out = std::process::Command::new("dbus-send")
            .args(["--session", "--print-reply=literal", "--reply-timeout=2000", "--dest=org.freedesktop.DBus"])
            .args(["/org/freedesktop/DBus", &format!("org.freedesktop.DBus.{method}")])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        seen |= String::from_utf8_lossy(&out.stdout).split_whitespace().any(|w| w == NAME);
    }
    Some(seen)
}

/// The store to write and why (a phrase for `connect`'s output).
pub fn choose(flag: StoreFlag, m: &Machine) -> (CredentialsStore, String) {
    use CredentialsStore::{File, Keyring};
    match flag {
        StoreFlag::File => return (File, "as --credentials-store file asks".into()),
        StoreFlag::Keyring => return (Keyring, "as --credentials-store keyring asks".into()),
        StoreFlag::Auto => {}
    }
    let unix_keyring = matches!(m.os, "linux" | "freebsd" | "openbsd");
    let (store, why) = if let Some(c) = m.container {
        (File, format!("this runs in {c}, which has no keyring"))
    } else if m.wsl {
        (File, "this is WSL, which has no Secret Service keyring".into())
    } else if m.ssh {
        (File, "this is a login over SSH, where a keyring is missing or locked".into())
    } else if unix_keyring && !m.session_bus {
        (File, "there is no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset), so no Secret Service keyring".into())
    } else if unix_keyring && m.secret_service == Some(false) {
        (File, "the session D-Bus has no Secret Service (org.freedesktop.secrets)".into())
    } else if unix_keyring {
        (Keyring, "the session D-Bus has a Secret Service keyring".into())
    } else {
        (Keyring, format!("{} has a keyring", if m.os == "macos" { "macOS" } else { m.os }))
    };
    (store, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CredentialsStore::{File, Keyring};

    fn linux() -> Machine {
        Machine { os: "linux", session_bus: true, secret_service: Some(true), ..Machine::default() }
    }

    /// Every fact that rules the keyring out, alone on an otherwise able desktop; and what the flag overrides.
    #[test]
    fn the_store_follows_the_machine_and_the_flag_wins() {
        let cases: &[(Machine, CredentialsStore)] = &[
            (linux(), Keyring),
            (Machine { secret_service: None, ..linux() }, Keyring),
            (Machine { secret_service: Some(false), ..linux() }, File),
            (Machine { session_bus: false, secret_service: None, ..linux() }, File),
            (Machine { ssh: true, ..linux() }, File),
            (Machine { container: Some("Docker"), ..linux() }, File),
            (Machine { wsl: true, ..linux() }, File),
            (Machine { os: "macos", session_bus: false, ..Machine::default() }, Keyring),
            (Machine { os: "windows", ..Machine::default() }, Keyring),
            (Machine { os: "macos", ssh: true, ..Machine::default() }, File),
        ];
        for (m, want) in cases {
            let (got, why) = choose(StoreFlag::Auto, m);
            assert_eq!(got, *want, "{m:?}: {why}");
            assert!(!why.is_empty());
        }
        assert_eq!(choose(StoreFlag::Keyring, &Machine { ssh: true, ..linux() }).0, Keyring);
        assert_eq!(choose(StoreFlag::File, &linux()).0, File);
    }
}
