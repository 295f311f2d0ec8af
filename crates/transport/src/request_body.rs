//! What every transport sends: a request body in up to two parts that leave as one, so a per-send addition to a
//! serialized request (the identity's `client_metadata`, docs/protocol.md "Identity") needs no copy of the request.

use bytes::Bytes;

/// A request body: `head`, then `tail`, sent as one body.
#[derive(Debug, Clone, Default)]
pub struct RequestBody {
    pub head: Bytes,
    pub tail: Bytes,
}

impl RequestBody {
    /// The body's length on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body in one piece: the head itself when there is no tail, else a copy of both (for the senders that
    /// take one buffer: reqwest, the compressor, the WebSocket's message).
    pub fn joined(&self) -> Bytes {
        if self.tail.is_empty() {
            return self.head.clone();
        }
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.tail);
        Bytes::from(out)
    }
}

impl From<Bytes> for RequestBody {
    fn from(head: Bytes) -> RequestBody {
        RequestBody { head, tail: Bytes::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_join_in_order_and_a_whole_body_is_not_copied() {
        let body = RequestBody { head: Bytes::from_static(b"{\"a\":1"), tail: Bytes::from_static(b",\"b\":2}") };
        assert_eq!((body.len(), &body.joined()[..]), (13, &b"{\"a\":1,\"b\":2}"[..]));
        let whole = RequestBody::from(Bytes::from(b"{}".to_vec()));
        assert_eq!(whole.joined().as_ptr(), whole.head.as_ptr(), "no copy without a tail");
        assert!(RequestBody::default().is_empty());
    }
}
