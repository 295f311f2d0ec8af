//! The thread id a conversation goes upstream with, as the official client has one: its prompt cache key is its
//! thread id (a UUID), so a caller's UUID key is kept, and any other key stands for a UUID derived from it, which
//! goes upstream as the prompt cache key too ([`super::shape`]). A conversation whose identifiers went to one
//! account gets ids of its own on another ([`account_thread_id`]; docs/protocol.md, "Long sessions").

use sha2::{Digest, Sha256};

/// The thread id for a conversation key: the key itself when it is a UUID (the official client's prompt cache key
/// is its thread id), else a UUID derived from it, stable across the conversation's turns.
pub fn thread_id_for(key: &str) -> String {
    match uuid::Uuid::try_parse(key) {
        Ok(id) => id.hyphenated().to_string(),
        Err(_) => session_uuid(key),
    }
}

/// The thread id `account` gets for a conversation (or a caller's thread) whose own id `thread` went to another
/// account: a UUID derived from both, the same for every turn of the conversation on that account.
pub fn account_thread_id(thread: &str, account: &str) -> String {
    session_uuid(&format!("{thread}\n{account}"))
}

/// A UUID-shaped session id derived from the conversation key, stable across the conversation's turns.
fn session_uuid(key: &str) -> String {
    let d = Sha256::digest(key.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_key_is_its_own_thread_and_any_other_key_gets_a_stable_one() {
        let official = "0195f3c1-5a2b-7c3d-8e4f-0123456789ab";
        assert_eq!(thread_id_for(official), official);
        let derived = thread_id_for("gw-abc");
        assert_eq!(derived, thread_id_for("gw-abc"));
        assert!(uuid::Uuid::try_parse(&derived).is_ok() && derived != thread_id_for("gw-abd"));
        let moved = account_thread_id(&derived, "acct-2");
        assert!(moved != derived && moved == account_thread_id(&derived, "acct-2"));
        assert_ne!(moved, account_thread_id(&derived, "acct-3"));
    }
}
