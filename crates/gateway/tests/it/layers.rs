//! The layers of docs/architecture.md ("Layers"), held by a scan of the sources: every `crate::…` path (and a
//! `super::…` that climbs out of its folder) of a module's production code names the top-level module it
//! reaches into; a rule below says which of those a layer must not reach. Test modules are not scanned (a test
//! may build what it needs from anywhere). Run alone: `cargo test -p codex-gateway --test it -- layers::`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn crate_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// A layer rule: the top-level modules `from` (of the gateway crate) reach none of `never`, save the
/// `allowed` paths (a known exception, named whole, that the layers above are to take back).
struct Rule {
    from: Modules,
    never: Modules,
    allowed: &'static [&'static str],
    why: &'static str,
}

#[derive(Clone, Copy)]
enum Modules {
    These(&'static [&'static str]),
    AllBut(&'static [&'static str]),
}

impl Modules {
    fn has(self, module: &str) -> bool {
        match self {
            Modules::These(list) => list.contains(&module),
            Modules::AllBut(list) => !list.contains(&module),
        }
    }
}

/// The main rules: the request path's layers point one way (docs/architecture.md, "Layers").
const RULES: &[Rule] = &[
    Rule {
        from: Modules::AllBut(&["cli"]),
        never: Modules::These(&["cli"]),
        allowed: &[],
        why: "the command line is the top: nothing serves it",
    },
    Rule {
        from: Modules::AllBut(&["cli", "server"]),
        never: Modules::These(&["server"]),
        allowed: &[],
        why: "only the command line starts the server; the app state, the relay, the ledger and the dashboard \
              know nothing of routes",
    },
    Rule {
        from: Modules::These(&["dashboard"]),
        never: Modules::These(&["relay"]),
        allowed: &[],
        why: "the dashboard reads the app state and the layers under it, not the request path",
    },
    Rule {
        from: Modules::These(&["relay"]),
        never: Modules::These(&["dashboard"]),
        allowed: &[],
        why: "the relay serves the routes, not the pages",
    },
    Rule {
        from: Modules::AllBut(&["cli", "server", "dashboard", "relay", "app"]),
        never: Modules::These(&["app", "relay", "dashboard"]),
        allowed: &[],
        why: "the app state is built from the layers under it: none of them reaches back up",
    },
    // The middle band, top to bottom: keys, users, audit, usage, upstream, accounts, auth, record. Each rank
    // reaches none above it.
    Rule {
        from: Modules::These(&["users", "audit", "usage", "accounts", "upstream", "auth", "record"]),
        never: Modules::These(&["keys"]),
        allowed: &[],
        why: "a client key is a user's, so the keys build on the users, never the other way",
    },
    Rule {
        from: Modules::These(&["audit", "usage", "accounts", "upstream", "auth", "record"]),
        never: Modules::These(&["users"]),
        allowed: &[],
        why: "the people who sign in are recorded in the trail and the ledger, which know nothing of them",
    },
    Rule {
        from: Modules::These(&["usage", "accounts", "upstream", "auth", "record"]),
        never: Modules::These(&["audit"]),
        allowed: &[],
        why: "the trail records the changes of the layers under it; a change's note is the store's",
    },
    Rule {
        from: Modules::These(&["accounts", "upstream", "auth", "record"]),
        never: Modules::These(&["usage"]),
        allowed: &[],
        why: "the ledger is fed by records; the pool and the upstream know nothing of it",
    },
    Rule {
        from: Modules::These(&["accounts", "auth", "record"]),
        never: Modules::These(&["upstream"]),
        allowed: &[],
        why: "the upstream sends as an account; the pool builds an account's client on the transport crate and \
              reads its errors there, never through the upstream",
    },
    Rule {
        from: Modules::These(&["auth"]),
        never: Modules::These(&["accounts"]),
        allowed: &[],
        why: "credentials are under the pool and the upstream: the pool saves a login as an account \
              (accounts/manage.rs), and the headers of the calls beside the turns are auth/side.rs's",
    },
    Rule {
        from: Modules::These(&["record"]),
        never: Modules::These(&["accounts", "auth"]),
        allowed: &[],
        why: "a record is filled by the layers above it: what it carries (a hold, a key's permit) is its own",
    },
    Rule {
        from: Modules::These(&["config"]),
        never: Modules::AllBut(&["config", "catalog", "store"]),
        allowed: &[],
        why: "the configuration describes (and names the store it opens, and the client version it presents, \
              from the catalog's versions): the layers above build their own types from it",
    },
    Rule {
        from: Modules::These(&["catalog"]),
        never: Modules::AllBut(&["catalog", "store"]),
        allowed: &[],
        why: "the model catalog's types are under the configuration, which names them",
    },
    Rule {
        from: Modules::These(&["store"]),
        never: Modules::AllBut(&["store"]),
        allowed: &[],
        why: "the store, the lowest layer that holds state, owns the types it stores and knows no layer above it",
    },
];

#[test]
fn no_layer_of_the_gateway_reaches_one_it_must_not() {
    let broken = broken(RULES);
    assert!(broken.is_empty(), "layer rules broken (docs/architecture.md, \"Layers\"):\n{}", broken.join("\n"));
}

/// The transport crate knows no gateway type, the translation crate neither the gateway nor the transport.
#[test]
fn the_lower_crates_import_no_crate_above_them() {
    for (krate, above) in
        [("transport", &["codex_gateway"][..]), ("dialects", &["codex_gateway", "upstream_transport"][..])]
    {
        let manifest = std::fs::read_to_string(crate_dir(krate).join("Cargo.toml")).unwrap_or_default();
        assert!(!manifest.is_empty(), "{krate}'s Cargo.toml");
        for name in above {
            let dependency = name.replace('_', "-");
            let depends = manifest.lines().any(|l| {
                let l = l.trim_start();
                l.strip_prefix(dependency.as_str()).is_some_and(|rest| rest.trim_start().starts_with(['=', '.']))
            });
            assert!(!depends, "{krate} depends on {dependency}");
        }
        for (file, text) in sources(&crate_dir(krate).join("src")) {
            for name in above {
                assert!(!code(&text).contains(&format!("{name}::")), "{} names {name}", file.display());
            }
        }
    }
}

/// Every import of the gateway's production code that a rule forbids, one line each.
fn broken(rules: &[Rule]) -> Vec<String> {
    let src = crate_dir("gateway").join("src");
    let tests = test_only_files(&src);
    let mut broken = Vec::new();
    for (file, text) in sources(&src) {
        if tests.contains(&file) {
            continue;
        }
        let rel = file.strip_prefix(&src).unwrap_or(&file).to_path_buf();
        let Some(from) = top_module(&rel) else { continue };
        for (line, path) in reaches(&rel, &production(&text)) {
            let Some(to) = path.strip_prefix("crate::").and_then(|p| p.split("::").next()) else { continue };
            for rule in rules {
                let allowed = rule.allowed.iter().any(|a| path == *a || path.starts_with(&format!("{a}::")));
                if to != from && rule.from.has(&from) && rule.never.has(to) && !allowed {
                    broken.push(format!("{}:{line}: {path} ({from} -> {to}: {})", rel.display(), rule.why));
                }
            }
        }
    }
    broken
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                out.push((path, text));
            }
        }
    }
    assert!(!out.is_empty(), "no sources under {}", dir.display());
    out
}

/// The top-level module a file belongs to (`server/http1/mod.rs` -> `server`, `config.rs` -> `config`); the
/// crate root (lib.rs, main.rs) has none.
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Files compiled only for tests: declared `#[cfg(test)] mod name;` by their parent.
fn test_only_files(src: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for (file, text) in sources(src) {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            let declared =
                pair[1].strip_prefix("pub(crate) ").or_else(|| pair[1].strip_prefix("pub ")).unwrap_or(pair[1]);
            let Some(name) = declared.strip_prefix("mod ").and_then(|m| m.strip_suffix(';')) else { continue };
            if pair[0] != "#[cfg(test)]" {
                continue;
            }
            let dir = match file.file_name().and_then(|n| n.to_str()) {
                Some("mod.rs" | "lib.rs" | "main.rs") => file.parent().map(Path::to_path_buf),
                _ => Some(file.with_extension("")),
            };
            if let Some(dir) = dir {
                out.insert(dir.join(format!("{name}.rs")));
                out.insert(dir.join(name).join("mod.rs"));
            }
        }
    }
    out
}

/// The code of a file without its comments (`//` to the end of a line, which doc comments are too).
fn code(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The production code: the file without its comments and without a `#[cfg(test)] mod … {` block to its end
/// (where this code base keeps inline tests).
fn production(text: &str) -> String {
    let code = code(text);
    let lines: Vec<&str> = code.lines().collect();
    let end = (0..lines.len().saturating_sub(1))
        .find(|&i| {
            lines[i].trim() == "#[cfg(test)]"
                && lines[i + 1].trim_start().starts_with("mod ")
                && lines[i + 1].trim_end().ends_with('{')
        })
        .unwrap_or(lines.len());
    lines[..end].join("\n")
}

/// Every path into the crate the code names, made absolute (`crate::a::b`), with its line: `crate::…` paths (a
/// group `crate::{a, b}` counts each), and `super::…` paths that climb out of the file's own folder.
fn reaches(rel: &Path, code: &str) -> Vec<(usize, String)> {
    let depth = module_depth(rel);
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = [rest.find("crate::"), rest.find("super::")].into_iter().flatten().min() {
            let start = rest[at..].starts_with("super::").then_some(at);
            let (head, tail) = match start {
                Some(at) => {
                    let (climbs, tail) = supers(&rest[at..]);
                    // Within the folder (or at its top): not a reach into another module.
                    if climbs < depth || at > 0 && is_ident(rest.as_bytes()[at - 1]) {
                        rest = &rest[at + "super::".len()..];
                        continue;
                    }
                    (String::from("crate::"), tail)
                }
                None if at > 0 && (is_ident(rest.as_bytes()[at - 1]) || rest.as_bytes()[at - 1] == b'$') => {
                    rest = &rest[at + "crate::".len()..];
                    continue;
                }
                None => (String::from("crate::"), &rest[at + "crate::".len()..]),
            };
            for path in paths_after(tail) {
                out.push((n + 1, format!("{head}{path}")));
            }
            rest = tail;
        }
    }
    out
}

/// How many `super::` a path starts with, and what follows them.
fn supers(mut path: &str) -> (usize, &str) {
    let mut climbs = 0;
    while let Some(rest) = path.strip_prefix("super::") {
        climbs += 1;
        path = rest;
    }
    (climbs, path)
}

/// How deep a file's module sits under the crate root: `config.rs` 1, `server/mod.rs` 1, `server/errors.rs` 2.
fn module_depth(rel: &Path) -> usize {
    let parts = rel.components().count();
    match rel.file_name().and_then(|n| n.to_str()) {
        Some("mod.rs") => parts - 1,
        _ => parts,
    }
}

/// The paths written after `crate::`: one (`a::b::C`), or each of a group (`{a, b::c}`).
fn paths_after(tail: &str) -> Vec<String> {
    let path = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect::<String>();
    match tail.strip_prefix('{') {
        Some(group) => {
            let group = group.split('}').next().unwrap_or_default();
            group.split(',').map(|p| path(p.trim())).filter(|p| !p.is_empty()).collect()
        }
        None => vec![path(tail).trim_end_matches(':').to_string()],
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[test]
fn the_scan_reads_paths_groups_and_climbs() {
    let found =
        |rel: &str, code: &str| -> Vec<String> { reaches(Path::new(rel), code).into_iter().map(|(_, p)| p).collect() };
    assert_eq!(found("relay/pump.rs", "use crate::{record, tokens};"), ["crate::record", "crate::tokens"]);
    assert_eq!(found("relay/pump.rs", "let s = crate::app::request_id(&h);"), ["crate::app::request_id"]);
    assert_eq!(found("server/errors.rs", "use super::dialect::Shape;"), Vec::<String>::new());
    assert_eq!(found("server/mod.rs", "use super::config::Config;"), ["crate::config::Config"]);
    assert_eq!(found("server/http1/mod.rs", "use super::super::app::AppState;"), ["crate::app::AppState"]);
    assert_eq!(found("lib.rs", "$crate::cli::output::line"), Vec::<String>::new());
    let code = "use crate::a::B;\n#[cfg(test)]\nmod tests {\n    use crate::c::D;\n}\n";
    assert_eq!(found("x.rs", &production(code)), ["crate::a::B"]);
}
