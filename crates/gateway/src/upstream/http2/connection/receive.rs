//! What each frame the server sends does to a connection's state (RFC 9113 §5–§6): DATA, header blocks
//! (HEADERS and CONTINUATION), RST_STREAM, SETTINGS, PING, GOAWAY and WINDOW_UPDATE, and the connection and
//! stream errors the server's mistakes call for.

use std::task::Waker;

use bytes::{Buf, Bytes};

use super::super::error::H2Error;
use super::super::frame::{self, Head, MAX_WINDOW, Reason, flag, kind, setting};
use super::super::hpack::{self, Decoded};
use super::{Continuation, End, Head2, State};

/// The largest header block (HEADERS and its CONTINUATION frames) accepted before decoding.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

impl State {
    /// A connection error found in what the server sent: tell it (GOAWAY) and end the connection.
    fn connection_error(&mut self, reason: Reason, what: &'static str, wake: &mut Vec<Waker>) {
        frame::put_goaway(&mut self.out, 0, reason);
        self.end(H2Error::Protocol(what), wake);
    }

    /// A stream error: reset the stream with `reason`, its body gets `error`.
    fn stream_error(&mut self, id: u32, reason: Reason, error: H2Error, wake: &mut Vec<Waker>) {
        frame::put_reset(&mut self.out, id, reason);
        self.fail_stream(id, error, wake);
    }

    fn fail_stream(&mut self, id: u32, error: H2Error, wake: &mut Vec<Waker>) {
        if let Some(stream) = self.streams.get_mut(&id) {
            if matches!(stream.end, End::Open) {
                stream.end = End::Failed(error);
            }
            wake.extend(stream.waker.take());
        }
        self.stream_closed(id, wake);
    }

    /// A stream id the server may send frames for: one this client opened (`Some(known)`), or `None` for an id it
    /// never opened (a protocol error).
    fn opened(&self, id: u32) -> Option<bool> {
        (id % 2 == 1 && id < self.next_id).then(|| self.streams.contains_key(&id))
    }

    /// Apply one frame the server sent (`payload` without the frame header). Wakers to wake once the lock is
    /// released go to `wake`. Returns `false` once the connection is over.
    pub fn receive(&mut self, head: Head, mut payload: Bytes, wake: &mut Vec<Waker>) -> bool {
        if self.ended.is_some() {
            return false;
        }
        if let Some(pending) = &self.continuation
            && (head.kind != kind::CONTINUATION || head.stream != pending.stream)
        {
            self.connection_error(Reason::PROTOCOL_ERROR, "a header block was interrupted", wake);
            return false;
        }
        match head.kind {
            kind::DATA => self.data(head, payload, wake),
            kind::HEADERS => {
                if head.stream == 0 {
                    self.connection_error(Reason::PROTOCOL_ERROR, "HEADERS on stream 0", wake);
                } else if let Some(fragment) = strip_padding(&head, &mut payload) {
                    let skip = if head.has(flag::PRIORITY) { 5 } else { 0 };
                    if fragment.len() < skip {
                        self.connection_error(Reason::FRAME_SIZE_ERROR, "a HEADERS frame too short", wake);
                    } else {
                        let pending = Continuation {
                            stream: head.stream,
                            end_stream: head.has(flag::END_STREAM),
                            block: fragment[skip..].to_vec(),
                        };
                        self.header_fragment(pending, head.has(flag::END_HEADERS), wake);
                    }
                } else {
                    self.connection_error(Reason::PROTOCOL_ERROR, "a HEADERS frame's padding is too long", wake);
                }
            }
            kind::CONTINUATION => match self.continuation.take() {
                Some(mut pending) => {
                    pending.block.extend_from_slice(&payload);
                    self.header_fragment(pending, head.has(flag::END_HEADERS), wake);
                }
                None => self.connection_error(Reason::PROTOCOL_ERROR, "a CONTINUATION without HEADERS", wake),
            },
            kind::PRIORITY => {}
            kind::RST_STREAM => {
                if head.len != 4 {
                    self.connection_error(Reason::FRAME_SIZE_ERROR, "an RST_STREAM frame of the wrong size", wake);
                } else if self.opened(head.stream).is_none() {
                    self.connection_error(Reason::PROTOCOL_ERROR, "RST_STREAM for a stream never opened", wake);
                } else {
                    let reason = Reason(frame::u32_at(&payload, 0));
                    self.fail_stream(head.stream, H2Error::Reset(reason), wake);
                }
            }
            kind::SETTINGS => self.settings(head, &payload, wake),
            kind::PUSH_PROMISE => {
                self.connection_error(Reason::PROTOCOL_ERROR, "PUSH_PROMISE with push disabled", wake)
            }
            kind::PING => {
                if head.len != 8 || head.stream != 0 {
                    self.connection_error(Reason::FRAME_SIZE_ERROR, "a PING frame of the wrong size", wake);
                } else if !head.has(flag::ACK) {
                    let mut data = [0; 8];
                    data.copy_from_slice(&payload);
                    frame::put_ping_ack(&mut self.out, &data);
                }
            }
            kind::GOAWAY => self.goaway(head, &payload, wake),
            kind::WINDOW_UPDATE => self.window_update(head, &payload, wake),
            _ => {}
        }
        self.ended.is_none()
    }

    fn data(&mut self, head: Head, mut payload: Bytes, wake: &mut Vec<Waker>) {
        let len = head.len as i64;
        let Some(known) = self.opened(head.stream) else {
            self.connection_error(Reason::PROTOCOL_ERROR, "DATA for a stream never opened", wake);
            return;
        };
        if len > self.recv_window {
            self.connection_error(Reason::FLOW_CONTROL_ERROR, "DATA beyond the connection window", wake);
            return;
        }
        self.recv_window -= len;
        let Some(data) = strip_padding(&head, &mut payload) else {
            self.connection_error(Reason::PROTOCOL_ERROR, "a DATA frame's padding is too long", wake);
            return;
        };
        let padding = head.len - data.len();
        let accepted = if known { self.stream_data(head, data, wake) } else { false };
        // What no body will take (padding, a closed or failed stream's data) is given back at once.
        let released = if accepted { padding } else { head.len };
        if released > 0 {
            self.recv_unreleased += released as i64;
            if self.recv_unreleased >= self.windows.connection / 2 {
                frame::put_window_update(&mut self.out, 0, self.recv_unreleased as u32);
                self.recv_window += std::mem::take(&mut self.recv_unreleased);
            }
        }
    }

    /// DATA on an open stream; `false` if the stream does not take it.
    fn stream_data(&mut self, head: Head, data: Bytes, wake: &mut Vec<Waker>) -> bool {
        let id = head.stream;
        let Some(stream) = self.streams.get_mut(&id) else { return false };
        if !matches!(stream.end, End::Open) {
            return false;
        }
        if matches!(stream.head, Head2::Waiting) {
            self.stream_error(id, Reason::PROTOCOL_ERROR, H2Error::Protocol("DATA before the response headers"), wake);
            return false;
        }
        if head.len as i64 > stream.recv_window {
            let error = H2Error::Protocol("DATA beyond the stream's window");
            self.stream_error(id, Reason::FLOW_CONTROL_ERROR, error, wake);
            return false;
        }
        stream.recv_window -= head.len as i64;
        let padding = head.len - data.len();
        if padding > 0 {
            // The padding is given back with the connection's; the stream's here.
            stream.unreleased += padding as i64;
            if stream.unreleased >= self.windows.stream / 2 {
                frame::put_window_update(&mut self.out, id, stream.unreleased as u32);
                stream.recv_window += std::mem::take(&mut stream.unreleased);
            }
        }
        if !data.is_empty() {
            stream.data.push_back(data);
        }
        if head.has(flag::END_STREAM) {
            stream.end = End::Done;
        }
        wake.extend(stream.waker.take());
        if head.has(flag::END_STREAM) {
            self.stream_closed(id, wake);
        }
        true
    }

    fn header_fragment(&mut self, pending: Continuation, complete: bool, wake: &mut Vec<Waker>) {
        if pending.block.len() > MAX_HEADER_BLOCK {
            self.connection_error(Reason::PROTOCOL_ERROR, "a header block too large", wake);
        } else if complete {
            self.headers(pending, wake);
        } else {
            self.continuation = Some(pending);
        }
    }

    /// A complete header block: decoded whatever its stream (the table is the connection's), then applied.
    fn headers(&mut self, pending: Continuation, wake: &mut Vec<Waker>) {
        let id = pending.stream;
        let Some(known) = self.opened(id) else {
            self.connection_error(Reason::PROTOCOL_ERROR, "HEADERS for a stream never opened", wake);
            return;
        };
        let trailers = known && self.streams.get(&id).is_some_and(|s| !matches!(s.head, Head2::Waiting));
        let decoded = hpack::decode_response(&mut self.decoder, &pending.block, trailers);
        let open = known && self.streams.get(&id).is_some_and(|s| matches!(s.end, End::Open));
        match decoded {
            Err(None) => self.connection_error(Reason::COMPRESSION_ERROR, "a header block did not decode", wake),
            _ if !open => {}
            Err(Some(malformed)) => self.stream_error(id, Reason::PROTOCOL_ERROR, H2Error::Malformed(malformed), wake),
            Ok(Decoded::Interim) if !pending.end_stream => {}
            Ok(Decoded::Trailers) if pending.end_stream => self.finish(id, wake),
            Ok(Decoded::Response(status, fields)) if !trailers => {
                if let Some(stream) = self.streams.get_mut(&id) {
                    stream.head = Head2::Ready(status, fields);
                    wake.extend(stream.waker.take());
                }
                if pending.end_stream {
                    self.finish(id, wake);
                }
            }
            Ok(_) => {
                let error = H2Error::Protocol("a header block out of place");
                self.stream_error(id, Reason::PROTOCOL_ERROR, error, wake);
            }
        }
    }

    /// END_STREAM on stream `id`.
    fn finish(&mut self, id: u32, wake: &mut Vec<Waker>) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.end = End::Done;
            wake.extend(stream.waker.take());
        }
        self.stream_closed(id, wake);
    }

    fn settings(&mut self, head: Head, payload: &[u8], wake: &mut Vec<Waker>) {
        if head.stream != 0 {
            return self.connection_error(Reason::PROTOCOL_ERROR, "SETTINGS on a stream", wake);
        }
        if head.has(flag::ACK) {
            if head.len != 0 {
                self.connection_error(Reason::FRAME_SIZE_ERROR, "a SETTINGS ack with a payload", wake);
            }
            return;
        }
        if !head.len.is_multiple_of(6) {
            return self.connection_error(Reason::FRAME_SIZE_ERROR, "a SETTINGS frame of the wrong size", wake);
        }
        for param in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([param[0], param[1]]);
            let value = frame::u32_at(param, 2);
            match id {
                setting::ENABLE_PUSH if value > 1 => {
                    return self.connection_error(Reason::PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH above 1", wake);
                }
                setting::MAX_CONCURRENT_STREAMS => self.peer_max_streams = value as usize,
                setting::INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > MAX_WINDOW {
                        return self.connection_error(Reason::FLOW_CONTROL_ERROR, "an initial window too large", wake);
                    }
                    let delta = value - self.peer_initial_window;
                    self.peer_initial_window = value;
                    for stream in self.streams.values_mut() {
                        stream.send_window += delta;
                        if stream.send_window > MAX_WINDOW {
                            return self.connection_error(
                                Reason::FLOW_CONTROL_ERROR,
                                "a stream window overflowed",
                                wake,
                            );
                        }
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return self.connection_error(
                            Reason::PROTOCOL_ERROR,
                            "SETTINGS_MAX_FRAME_SIZE out of range",
                            wake,
                        );
                    }
                    self.peer_max_frame = value as usize;
                }
                // This client's blocks keep the server's table empty whatever its size (see `hpack`).
                setting::HEADER_TABLE_SIZE => {}
                // Unknown settings are ignored, as the protocol asks.
                _ => {}
            }
        }
        frame::put_settings_ack(&mut self.out);
        // A changed limit: waiting requests look again (and wait again if it is still reached).
        self.waiting.wake_all(wake);
        self.send_blocked();
    }

    fn goaway(&mut self, head: Head, payload: &[u8], wake: &mut Vec<Waker>) {
        if head.stream != 0 || head.len < 8 {
            return self.connection_error(Reason::PROTOCOL_ERROR, "a malformed GOAWAY", wake);
        }
        let last = frame::u32_at(payload, 0) & 0x7fff_ffff;
        let reason = Reason(frame::u32_at(payload, 4));
        self.going_away = Some(H2Error::GoAway { reason, unprocessed: true });
        let above: Vec<u32> = self.streams.keys().copied().filter(|id| *id > last).collect();
        for id in above {
            self.fail_stream(id, H2Error::GoAway { reason, unprocessed: true }, wake);
        }
        self.waiting.wake_all(wake);
    }

    fn window_update(&mut self, head: Head, payload: &[u8], wake: &mut Vec<Waker>) {
        if head.len != 4 {
            return self.connection_error(Reason::FRAME_SIZE_ERROR, "a WINDOW_UPDATE of the wrong size", wake);
        }
        let increment = i64::from(frame::u32_at(payload, 0) & 0x7fff_ffff);
        if head.stream == 0 {
            if increment == 0 {
                return self.connection_error(Reason::PROTOCOL_ERROR, "a WINDOW_UPDATE of 0", wake);
            }
            self.send_window += increment;
            if self.send_window > MAX_WINDOW {
                return self.connection_error(Reason::FLOW_CONTROL_ERROR, "the connection window overflowed", wake);
            }
        } else {
            let Some(known) = self.opened(head.stream) else {
                return self.connection_error(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE for a stream never opened", wake);
            };
            let Some(stream) = self.streams.get_mut(&head.stream).filter(|_| known) else { return };
            if increment == 0 || stream.send_window + increment > MAX_WINDOW {
                let error = H2Error::Protocol("a stream's WINDOW_UPDATE was 0 or overflowed it");
                return self.stream_error(head.stream, Reason::FLOW_CONTROL_ERROR, error, wake);
            }
            stream.send_window += increment;
        }
        self.send_blocked();
    }
}

/// The frame's data without its padding (RFC 9113 §6.1); `None` if the padding is longer than the frame.
fn strip_padding(head: &Head, payload: &mut Bytes) -> Option<Bytes> {
    if !head.has(flag::PADDED) {
        return Some(std::mem::take(payload));
    }
    let pad = usize::from(*payload.first()?);
    payload.advance(1);
    let len = payload.len().checked_sub(pad)?;
    Some(payload.split_to(len))
}
