//! Chaining a conversation's turns on one upstream WebSocket, as the gateway hands it in: the pool keeps what each
//! connection's last completed turn left (a [`Lineage`], opaque here) and asks the request's [`Chain`] how each
//! send goes. Which members a request has, what its items mean and when a turn may chain are decided outside the
//! transport (the gateway's implementation is on `dialects::upstream_request::chain`); the pool carries the
//! bytes it is given and the events it reads.

use std::any::Any;

/// What a connection keeps of its conversation after a completed turn, for the next turn's [`Chain`].
pub type Lineage = Box<dyn Any + Send + Sync>;

/// How a request chains on the connections it is sent over.
pub trait Chain: Send + Sync + std::fmt::Debug {
    /// One send of the request's `body` over a connection whose last completed turn left `lineage` (`None`: a
    /// new connection, the last turn did not complete, or the request is to go whole).
    fn turn(&self, body: &[u8], lineage: Option<Lineage>) -> Box<dyn Turn>;
}

/// A request's chaining as the pool takes it.
pub type ChainRequest = dyn Chain;

/// One send of a request on a connection.
pub trait Turn: Send {
    /// Whether the turn continues the connection's chain: a refusal for want of the response it chains from
    /// (`previous_response_not_found`) then sends the request whole on a new connection.
    fn chains(&self) -> bool;
    /// The body to send in place of the request's (a chained turn's); `None`: the request's own.
    fn take_body(&mut self) -> Option<Vec<u8>>;
    /// An event of the answer, by its type and JSON data.
    fn see(&mut self, kind: &str, data: &str);
    /// What the connection keeps after the answer ended cleanly; `None` when there is nothing to chain on.
    fn finish(self: Box<Self>) -> Option<Lineage>;
}
