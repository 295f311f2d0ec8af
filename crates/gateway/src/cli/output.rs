//! What a command prints on stdout, through [`say!`]: when the reader has gone away (`... | head`) the command
//! ends quietly with SIGPIPE's status, where `println!` would panic (restoring SIGPIPE would end the process on
//! a write to a closed socket of the commands' own HTTP calls too). [`table`] lines up the list commands' columns.

use std::io::{ErrorKind, Write};

/// The exit status of a process ended by SIGPIPE (128 + 13), what shells and `pipefail` expect.
const CLOSED_PIPE_STATUS: i32 = 141;

pub(crate) fn text(text: std::fmt::Arguments<'_>) {
    write(|out| out.write_fmt(text));
}

pub(crate) fn line(line: std::fmt::Arguments<'_>) {
    text(format_args!("{line}\n"));
}

pub(crate) fn bytes(bytes: &[u8]) {
    write(|out| out.write_all(bytes));
}

fn write(put: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = put(&mut out).and_then(|()| out.flush()) {
        match e.kind() {
            ErrorKind::BrokenPipe => std::process::exit(CLOSED_PIPE_STATUS),
            _ => {
                eprintln!("error: cannot write to stdout: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// `value` as pretty JSON (`--json`), else as `human` prints it.
pub(crate) fn json_or<T: serde::Serialize>(value: &T, json: bool, human: impl FnOnce(&T)) -> anyhow::Result<()> {
    match json {
        true => line(format_args!("{}", serde_json::to_string_pretty(value)?)),
        false => human(value),
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Align {
    Left,
    /// Numbers, so their digits line up.
    Right,
}

/// `rows` (the header first) as lines of columns two spaces apart, each as wide as its widest cell. A missing
/// cell is empty; a column past `align`'s end is left-aligned. Lines end without trailing spaces.
pub(crate) fn table(rows: &[Vec<String>], align: &[Align]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |i: usize| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns).map(width).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map_or("", String::as_str);
            let sep = if i == 0 { "" } else { "  " };
            match align.get(i).copied().unwrap_or(Align::Left) {
                Align::Left => line += &format!("{sep}{cell:<w$}"),
                Align::Right => line += &format!("{sep}{cell:>w$}"),
            }
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Align, table};

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let row = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let rows =
            [row(&["id", "email", "5h", "note"]), row(&["a", "someone@example.test", "7%", ""]), row(&["bb", "x"])];
        let out = table(&rows, &[Align::Left, Align::Left, Align::Right]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines, ["id  email                 5h  note", "a   someone@example.test  7%", "bb  x"]);
    }
}
