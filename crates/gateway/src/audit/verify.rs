//! The chain walked in id order: the first row whose id leaves a gap, whose link is not the previous row's hash,
//! or whose own hash does not match its fields. The last row's id and hash are the trail's head, for an operator
//! to note elsewhere (rows removed from the end leave no gap; a head noted earlier shows them).

use crate::store::audit::{AuditRow, GENESIS};

/// A whole trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whole {
    pub rows: usize,
    /// The last row's id and hash (`None`: no rows).
    pub head: Option<(i64, String)>,
}

/// What is wrong at the first bad row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// Ids jump from `after` to `id`: rows between them were removed.
    Gap { after: i64, id: i64 },
    /// The row's `prev_hash` is not the previous row's hash.
    Link { id: i64 },
    /// The row's fields do not give its hash: it was edited.
    Hash { id: i64 },
}

impl Broken {
    /// The id of the first row found wrong.
    pub fn id(&self) -> i64 {
        match self {
            Broken::Gap { id, .. } | Broken::Link { id } | Broken::Hash { id } => *id,
        }
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Gap { after, id } => write!(f, "row {id}: ids jump from {after} to {id} (rows removed)"),
            Broken::Link { id } => write!(f, "row {id}: its link is not the previous row's hash"),
            Broken::Hash { id } => write!(f, "row {id}: its hash does not match its fields (edited)"),
        }
    }
}

/// Walk `rows` (oldest first, from the first row: id 1).
pub fn verify(rows: &[AuditRow]) -> Result<Whole, Broken> {
    let (mut last_id, mut prev) = (0i64, GENESIS);
    for row in rows {
        if row.id != last_id + 1 {
            return Err(Broken::Gap { after: last_id, id: row.id });
        }
        if row.prev_hash != prev {
            return Err(Broken::Link { id: row.id });
        }
        if super::chain::seal(&row.prev_hash, row) != row.hash {
            return Err(Broken::Hash { id: row.id });
        }
        (last_id, prev) = (row.id, &row.hash);
    }
    Ok(Whole { rows: rows.len(), head: rows.last().map(|r| (r.id, r.hash.clone())) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditRow> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|id| {
                let mut row = AuditRow {
                    id,
                    at_ms: 1_000 * id,
                    actor: "admin-key".into(),
                    source: Some("127.0.0.1".into()),
                    action: "account.disable".into(),
                    target: Some(format!("acct{id}")),
                    details: "{}".into(),
                    outcome: "ok".into(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                row.hash = super::super::chain::seal(&prev, &row);
                prev = row.hash.clone();
                row
            })
            .collect()
    }

    #[test]
    fn a_whole_chain_verifies_and_names_its_head() {
        let rows = chain(3);
        assert_eq!(verify(&rows), Ok(Whole { rows: 3, head: Some((3, rows[2].hash.clone())) }));
        assert_eq!(verify(&[]), Ok(Whole { rows: 0, head: None }));
    }

    #[test]
    fn the_first_bad_row_is_named() {
        let mut edited = chain(4);
        edited[1].target = Some("other".into());
        assert_eq!(verify(&edited), Err(Broken::Hash { id: 2 }));

        let mut removed = chain(4);
        removed.remove(2);
        assert_eq!(verify(&removed), Err(Broken::Gap { after: 2, id: 4 }));

        let mut relinked = chain(4);
        relinked[2].prev_hash = GENESIS.into();
        assert_eq!(verify(&relinked), Err(Broken::Link { id: 3 }));

        // A row rewritten with a fresh hash of its own still breaks the next row's link.
        let mut resealed = chain(4);
        resealed[1].details = r#"{"x":1}"#.into();
        resealed[1].hash = super::super::chain::seal(&resealed[1].prev_hash, &resealed[1]);
        assert_eq!(verify(&resealed), Err(Broken::Link { id: 3 }));
    }
}
