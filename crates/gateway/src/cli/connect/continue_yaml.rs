//! `connect continue --write`: the gateway's model entry merged into Continue's `config.yaml` as text, so the
//! user's comments, order and layout stay (no YAML library writes YAML back without losing them). The entry is a
//! block under the top-level `models:` list, found again by its `name` on the next write; yaml-rust2 parses the
//! file before and after, and the write is refused unless everything but that one entry is unchanged.

use anyhow::{Context, bail};
use yaml_rust2::{Yaml, YamlLoader, yaml::Hash};

/// One model entry: its `name` (what finds it again) and its other fields in order.
pub(super) struct Entry {
    pub name: String,
    pub fields: Vec<(&'static str, String)>,
}

impl Entry {
    /// The entry as a block sequence item at `indent` spaces. Values are JSON strings, which YAML reads as
    /// double-quoted scalars (a key or URL with `:` or `#` stays one string).
    fn block(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        let q = |v: &str| serde_json::Value::String(v.to_string()).to_string();
        let mut out = format!("{pad}- name: {}\n", q(&self.name));
        for (k, v) in &self.fields {
            out += &format!("{pad}  {k}: {}\n", q(v));
        }
        out
    }
}

fn parse(text: &str) -> anyhow::Result<Yaml> {
    let mut docs = YamlLoader::load_from_str(text).context("the file is not YAML; fix or move it first")?;
    match docs.len() {
        0 => Ok(Yaml::Hash(Default::default())),
        1 => Ok(docs.remove(0)),
        _ => bail!("the file holds several YAML documents; add the entry by hand"),
    }
}

fn is_ours(item: &Yaml, name: &str) -> bool {
    item["name"].as_str() == Some(name)
}

/// Where the top-level `models:` list is: its key line, the indentation of its items, and the line after it.
struct List {
    key: usize,
    indent: usize,
    end: usize,
}

fn find_list(lines: &[&str]) -> anyhow::Result<Option<List>> {
    let Some(key) = lines.iter().position(|l| l.starts_with("models:")) else { return Ok(None) };
    let after = lines[key]["models:".len()..].trim();
    if !(after.is_empty() || after.starts_with('#')) {
        bail!("`models:` is not a block list (`models: {after}`); add the entry by hand");
    }
    let content = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let indent = lines[key + 1..]
        .iter()
        .find(|l| content(l))
        .filter(|l| l.trim_start().starts_with('-'))
        .map_or(2, |l| l.len() - l.trim_start().len());
    // The list ends at the first content line left of its items (a sequence may sit at the key's column, so a
    // `- ` at column 0 still belongs to it).
    let mut end = key + 1;
    for (i, l) in lines.iter().enumerate().skip(key + 1) {
        if content(l) {
            let col = l.len() - l.trim_start().len();
            if col < indent || (col == 0 && !l.starts_with('-')) {
                break;
            }
            end = i + 1;
        }
    }
    Ok(Some(List { key, indent, end }))
}

/// `existing` with `entry` added to (or replacing itself in) the top-level `models:` list.
pub(super) fn merged(existing: &str, entry: &Entry) -> anyhow::Result<String> {
    if existing.trim().is_empty() {
        return Ok(format!("name: codex-gateway\nversion: 0.0.1\nschema: v1\nmodels:\n{}", entry.block(2)));
    }
    let before = parse(existing)?;
    let Yaml::Hash(top) = &before else { bail!("the file is not a YAML mapping; add the entry by hand") };
    let lines: Vec<&str> = existing.lines().collect();
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match find_list(&lines)? {
        None => {
            out.push("models:".into());
            out.extend(entry.block(2).lines().map(str::to_string));
        }
        Some(list) => {
            // The items: each starts with `- ` at the list's indentation.
            let starts: Vec<usize> = (list.key + 1..list.end)
                .filter(|&i| {
                    let l = lines[i];
                    l.len() - l.trim_start().len() == list.indent && l.trim_start().starts_with('-')
                })
                .collect();
            let ours = starts.iter().enumerate().find_map(|(n, &s)| {
                let e = starts.get(n + 1).copied().unwrap_or(list.end);
                let item = parse(&lines[s..e].join("\n")).ok()?;
                is_ours(&item[0], &entry.name).then_some((s, e))
            });
            let block: Vec<String> = entry.block(list.indent).lines().map(str::to_string).collect();
            // Ours replaced where it is, else added at the list's end.
            let (s, e) = ours.unwrap_or((list.end, list.end));
            out.splice(s..e, block);
        }
    }
    let text = out.join("\n") + "\n";
    check(top, &parse(&text)?, entry)?;
    Ok(text)
}

/// Everything but the entry is as it was, and the entry reads back as written.
fn check(before: &Hash, after: &Yaml, entry: &Entry) -> anyhow::Result<()> {
    let Yaml::Hash(after) = after else { bail!("the merged file is not a mapping") };
    let models = Yaml::String("models".into());
    let others = |h: &Hash| h.iter().filter(|(k, _)| **k != models).count();
    let same_others =
        others(before) == others(after) && before.iter().all(|(k, v)| *k == models || after.get(k) == Some(v));
    let list = |h: &Hash| -> Vec<Yaml> { h.get(&models).and_then(Yaml::as_vec).cloned().unwrap_or_default() };
    let old: Vec<Yaml> = list(before).into_iter().filter(|m| !is_ours(m, &entry.name)).collect();
    let new: Vec<Yaml> = list(after).into_iter().filter(|m| !is_ours(m, &entry.name)).collect();
    let written = list(after).into_iter().find(|m| is_ours(m, &entry.name));
    let fields_ok = written.is_some_and(|w| entry.fields.iter().all(|(k, v)| w[*k].as_str() == Some(v.as_str())));
    if !(same_others && old == new && fields_ok) {
        bail!("the file's layout could not be merged safely; add the entry by hand:\n{}", entry.block(2));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> Entry {
        Entry {
            name: "gpt-5.4 (codex-gateway)".into(),
            fields: vec![
                ("provider", "openai".into()),
                ("model", "gpt-5.4".into()),
                ("apiBase", "http://127.0.0.1:9/v1".into()),
                ("apiKey", key.into()),
            ],
        }
    }

    #[test]
    fn the_entry_joins_the_list_keeps_the_rest_and_replaces_itself() -> anyhow::Result<()> {
        let mine = "# my assistant\nname: Mine\nversion: 1.0.0\nschema: v1\nmodels:\n  - name: Local\n    provider: ollama # here\n    model: llama3\n\ncontext:\n  - provider: code\n";
        let once = merged(mine, &entry("k-1"))?;
        assert!(once.starts_with("# my assistant\nname: Mine\n"), "{once}");
        assert!(
            once.contains("    provider: ollama # here\n    model: llama3\n  - name: \"gpt-5.4 (codex-gateway)\"\n"),
            "{once}"
        );
        assert!(once.ends_with("\ncontext:\n  - provider: code\n"), "{once}");
        assert_eq!(merged(&once, &entry("k-1"))?, once, "a second merge changes nothing");
        let rekeyed = merged(&once, &entry("k-2"))?;
        assert_eq!(rekeyed.matches("codex-gateway").count(), 1, "{rekeyed}");
        assert!(rekeyed.contains("apiKey: \"k-2\""), "{rekeyed}");
        // No list yet, a list at the key's column, a new file.
        assert!(merged("name: x\n", &entry("k"))?.ends_with("models:\n  - name: \"gpt-5.4 (codex-gateway)\"\n    provider: \"openai\"\n    model: \"gpt-5.4\"\n    apiBase: \"http://127.0.0.1:9/v1\"\n    apiKey: \"k\"\n"));
        let flush = merged("models:\n- name: a\n  model: b\nrules: []\n", &entry("k"))?;
        assert!(flush.contains("  model: b\n- name: \"gpt-5.4"), "{flush}");
        assert!(flush.ends_with("rules: []\n"), "{flush}");
        assert!(merged("", &entry("k"))?.starts_with("name: codex-gateway\n"));
        assert!(merged("models: []\n", &entry("k")).is_err(), "a flow list is left to the user");
        assert!(merged("models: [\n", &entry("k")).is_err(), "not YAML");
        Ok(())
    }
}
