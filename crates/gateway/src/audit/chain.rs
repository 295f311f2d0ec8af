//! The chain: each row's hash is SHA-256 over the previous row's hash and the row's canonical bytes, so a row
//! edited, removed or inserted behind the store's back breaks every hash after it (`verify.rs` names the first).

use sha2::{Digest, Sha256};

use crate::store::audit::AuditRow;

/// The row's canonical bytes: a JSON array of its fields in a fixed order (strings escaped one way, numbers in
/// decimal), everything but the two hashes.
pub fn canonical(row: &AuditRow) -> Vec<u8> {
    let fields =
        serde_json::json!([row.id, row.at_ms, row.actor, row.source, row.action, row.target, row.details, row.outcome]);
    fields.to_string().into_bytes()
}

/// Lower-case hex SHA-256 of `prev_hash`, a newline and the row's canonical bytes (the store's `Seal`).
pub fn seal(prev_hash: &str, row: &AuditRow) -> String {
    let h = Sha256::new().chain_update(prev_hash).chain_update(b"\n").chain_update(canonical(row));
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
