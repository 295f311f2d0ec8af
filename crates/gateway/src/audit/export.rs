//! The trail as JSON lines: one object per row, oldest first, with its time also in RFC 3339 and its details as
//! an object (the stored text, which the hash covers, stays in the database).

use std::io::Write;

use serde_json::{Value, json};

use crate::store::audit::AuditRow;

/// One row as the export, the admin API and the dashboard show it.
pub fn row_json(r: &AuditRow) -> Value {
    json!({
        "id": r.id,
        "at": crate::usage::when::format_ms(r.at_ms),
        "at_ms": r.at_ms,
        "actor": r.actor,
        "source": r.source,
        "action": r.action,
        "target": r.target,
        "details": serde_json::from_str::<Value>(&r.details).unwrap_or(Value::String(r.details.clone())),
        "outcome": r.outcome,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    })
}

/// Write `rows` to `out`, one JSON object a line.
pub fn write_lines(rows: &[AuditRow], out: &mut impl Write) -> std::io::Result<()> {
    for r in rows {
        serde_json::to_writer(&mut *out, &row_json(r))?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
