//! The top-level members of a Responses body the gateway knows, in one list: where the official client writes
//! each (`order.rs`), whether it compares it before it chains a turn (`digest.rs`), and whether a client's value
//! goes on upstream as sent (`responses::decode`). A member added here is written, compared and passed alike.

/// Where the official client (Codex CLI 0.171, which the parity suite compares: `tests/clients/test_parity.py`)
/// writes a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// First, in [`MEMBERS`]' order.
    Front,
    /// After the front, in the order the body has it (as every member this list does not name).
    Body,
    /// At the very end, in [`MEMBERS`]' order, after `client_metadata` (which the gateway adds at send time).
    Tail,
}

/// One top-level member of a Responses body.
pub struct Member {
    pub name: &'static str,
    pub place: Place,
    /// The official client compares it before it chains a turn on a connection (an input item may differ).
    pub compared: bool,
    /// A client's value goes on upstream as sent; else the decoder reads it itself (`stream`, `store`).
    pub passed: bool,
}

use Place::{Body, Front, Tail};

/// Every member the gateway knows, the front and tail ones in the official client's order. Codex CLI 0.171 writes
/// `stream` and `service_tier` right after the model (an older source of its request type lists them after
/// `store`); chaining's `previous_response_id` goes right before `input`, as the CLI's does.
pub const MEMBERS: &[Member] = &[
    Member { name: "model", place: Front, compared: true, passed: true },
    Member { name: "instructions", place: Front, compared: true, passed: true },
    Member { name: "stream", place: Front, compared: true, passed: false },
    Member { name: "service_tier", place: Front, compared: true, passed: true },
    Member { name: "input", place: Front, compared: false, passed: true },
    Member { name: "tools", place: Front, compared: true, passed: true },
    Member { name: "tool_choice", place: Front, compared: true, passed: true },
    Member { name: "parallel_tool_calls", place: Front, compared: true, passed: true },
    Member { name: "reasoning", place: Front, compared: true, passed: true },
    Member { name: "store", place: Front, compared: true, passed: false },
    Member { name: "include", place: Front, compared: true, passed: true },
    Member { name: "prompt_cache_key", place: Front, compared: true, passed: true },
    Member { name: "text", place: Front, compared: true, passed: true },
    // This one and the two tail members are Codex CLI 0.169+'s (its request type's fields, in its binary's order;
    // this one the GPT-6 prompt cache's lifetime): they go on as a client sent them; the gateway never adds them.
    Member { name: "prompt_cache_options", place: Front, compared: false, passed: true },
    Member { name: "client_metadata", place: Body, compared: false, passed: true },
    Member { name: "truncation", place: Body, compared: false, passed: true },
    Member { name: "access_programs", place: Tail, compared: false, passed: true },
    Member { name: "request_country", place: Tail, compared: false, passed: true },
];

/// The names of the members at `place`, in [`MEMBERS`]' order.
pub fn at(place: Place) -> impl Iterator<Item = &'static str> {
    MEMBERS.iter().filter(move |m| m.place == place).map(|m| m.name)
}

/// Where a member is written: its place in [`MEMBERS`], else in the body's order (between front and tail).
pub fn place(name: &str) -> Place {
    MEMBERS.iter().find(|m| m.name == name).map_or(Body, |m| m.place)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_member_is_listed_once_and_unknown_ones_keep_the_bodys_order() {
        for (i, m) in MEMBERS.iter().enumerate() {
            assert!(MEMBERS[..i].iter().all(|o| o.name != m.name), "{} twice", m.name);
        }
        assert_eq!(at(Tail).collect::<Vec<_>>(), ["access_programs", "request_country"]);
        assert_eq!((place("model"), place("truncation"), place("zz")), (Front, Body, Body));
    }
}
