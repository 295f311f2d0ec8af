//! Shared by the two HTTP/1.1 head parsers (`server/http1/head.rs` for clients' requests, `upstream/http1.rs` for
//! the backend's answers): header values and the path as slices of one copy of the received head, instead of a
//! copy (an allocation) per field.

use bytes::Bytes;

/// One copy of the head: the first `len` bytes of `buf`.
pub fn copy_head(buf: &[u8], len: usize) -> Bytes {
    Bytes::copy_from_slice(buf.get(..len).unwrap_or(buf))
}

/// `part`, a slice of `buf` (as httparse hands its fields out), as the same bytes of `head` (made by
/// [`copy_head`] from `buf`); a copy of its own if it does not lie within them.
pub fn slice_of(head: &Bytes, buf: &[u8], part: &[u8]) -> Bytes {
    let start = part.as_ptr().addr().wrapping_sub(buf.as_ptr().addr());
    match start.checked_add(part.len()) {
        Some(end) if end <= head.len() => head.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_the_same_bytes_of_the_copy_and_anything_else_is_copied() {
        let buf = b"GET /a HTTP/1.1\r\nx-one: first\r\n\r\nbody";
        let head = copy_head(buf, buf.len() - 4);
        let value = &buf[24..29];
        let shared = slice_of(&head, buf, value);
        assert_eq!(&shared[..], b"first");
        // A slice of the copy, not a copy of its own: it points into `head`.
        assert_eq!(shared.as_ptr().addr(), head.as_ptr().addr() + 24);
        // Past the copied head (the body), and from another buffer: copied.
        assert_eq!(&slice_of(&head, buf, &buf[buf.len() - 4..])[..], b"body");
        let other = b"elsewhere".to_vec();
        let copied = slice_of(&head, buf, &other);
        assert_eq!(&copied[..], b"elsewhere");
        assert!(
            copied.as_ptr().addr() < head.as_ptr().addr()
                || copied.as_ptr().addr() >= head.as_ptr().addr() + head.len()
        );
        assert!(slice_of(&head, buf, &buf[5..5]).is_empty());
    }
}
