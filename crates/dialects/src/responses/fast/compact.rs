//! The scanner's lane for compact payloads: no whitespace between tokens, no escape and no control byte anywhere,
//! at most [`MAX_LEN`] bytes. That is every delta the backend and fake-codex send.
//!
//! Why: the general scanner pays a few bounds checks and a whitespace skip at every token, and searches each
//! string 8 bytes at a time; that was ~1,800 instructions per 150-byte delta (callgrind), the largest single cost
//! of a burst and ~1/4 of the gateway's user-space instructions per paced event. Here the payload's quotes are
//! found once, 16 bytes per step, into a bit map; with no escape anywhere, every string is exactly the bytes
//! between one quote and the next, so each key and string value is two bit scans.
//!
//! Exactness: this lane reads a subset of what the general scanner reads, and reads it the same way. It decides
//! only where the general scanner would give the same answer (checked by property tests against it), and
//! otherwise says so (`None`): any whitespace, escape or control byte, or an unexpected byte where a token
//! should be.

use std::borrow::Cow;

use super::super::event::Event;
use super::{Key, event, kind_of, skip_value, summary_index_at};

/// The longest payload mapped (bytes). Longer ones (a long delta) go to the general scanner, as do payloads under
/// 16 bytes (too short for a delta).
pub(super) const MAX_LEN: usize = 512;

const WORDS: usize = MAX_LEN / 64;

/// Where a payload's quotes are, one bit per byte.
struct Quotes {
    bits: [u64; WORDS],
}

impl Quotes {
    /// The quotes of `b` (16 to [`MAX_LEN`] bytes), or `None` if it has a backslash or a control byte.
    fn of(b: &[u8]) -> Option<Quotes> {
        let n = b.len();
        if !(16..=MAX_LEN).contains(&n) {
            return None;
        }
        let mut bits = [0u64; WORDS];
        let mut special = 0u16;
        for (w, slot) in bits.iter_mut().enumerate().take(n.div_ceil(64)) {
            let mut q = 0u64;
            for k in 0..4 {
                let at = w * 64 + k * 16;
                if at >= n {
                    break;
                }
                // The last block may be short: the 16 bytes that end the payload are read instead (it has at
                // least 16), and the bits of the bytes before `at` shifted out.
                let (from, skip) = if at + 16 <= n { (at, 0) } else { (n - 16, at + 16 - n) };
                let block: &[u8; 16] = b.get(from..from + 16)?.try_into().ok()?;
                let (bq, bs) = block_masks(block);
                q |= u64::from(bq >> skip) << (k * 16);
                special |= bs >> skip;
            }
            *slot = q;
        }
        (special == 0).then_some(Quotes { bits })
    }

    /// The first quote at or after `from`.
    fn next(&self, from: usize) -> Option<usize> {
        let mut word = from / 64;
        let mut m = *self.bits.get(word)? & (u64::MAX << (from % 64));
        while m == 0 {
            word += 1;
            m = *self.bits.get(word)?;
        }
        Some(word * 64 + m.trailing_zeros() as usize)
    }
}

/// The quotes and the specials (backslash or control byte) of 16 bytes, one bit per byte.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn block_masks(word: &[u8; 16]) -> (u16, u16) {
    // SAFETY: this build's target has SSE2 (the cfg above; every x86_64 CPU does).
    unsafe { sse2_block_masks(word) }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn sse2_block_masks(word: &[u8; 16]) -> (u16, u16) {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: an unaligned load of exactly the 16 bytes `word` refers to.
    let v = unsafe { _mm_loadu_si128(word.as_ptr().cast()) };
    let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
    // A control byte is one at most 0x1f, unsigned: the smaller of it and 0x1f is itself.
    let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
    // Each movemask sets only its low 16 bits (one per byte), so the casts keep every bit.
    (_mm_movemask_epi8(quote) as u16, _mm_movemask_epi8(_mm_or_si128(backslash, control)) as u16)
}

/// The quotes and the specials (backslash or control byte) of 16 bytes, one bit per byte.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn block_masks(word: &[u8; 16]) -> (u16, u16) {
    portable_block_masks(word)
}

/// [`block_masks`] byte by byte: what other targets use, and what the SSE2 version is tested against.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
fn portable_block_masks(word: &[u8; 16]) -> (u16, u16) {
    let (mut quotes, mut specials) = (0u16, 0u16);
    for (j, &c) in word.iter().enumerate() {
        quotes |= u16::from(c == b'"') << j;
        specials |= u16::from(c == b'\\' || c < 0x20) << j;
    }
    (quotes, specials)
}

/// The general scanner's answer for `data` when this lane can give it: `Some(Some(event))`, or `Some(None)` for
/// a compact payload that is not a delta the scanner reads (the full parse decides it). `None`: not compact,
/// ask the general scanner.
pub(super) fn parse(data: &str) -> Option<Option<Event<'_>>> {
    let b = data.as_bytes();
    if b.first() != Some(&b'{') {
        return None;
    }
    let quotes = Quotes::of(b)?;
    // A string at `i`: its text's range, the closing quote at its end.
    let string_at = |i: usize| -> Option<(usize, usize)> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        Some((i + 1, quotes.next(i + 1)?))
    };
    let mut kind = None;
    let mut item_id = None;
    let mut delta = None;
    let mut summary_index = None;
    let mut seen = 0u16;
    let mut i = 1;
    loop {
        let (start, end) = string_at(i)?;
        let key = Key::of(&b[start..end]);
        let bit = key.wire_bit();
        if seen & bit != 0 {
            // The general scanner (like serde) refuses a repeated field it reads.
            return Some(None);
        }
        seen |= bit;
        if b.get(end + 1) != Some(&b':') {
            return None;
        }
        i = end + 2;
        i = match key {
            Key::Type => {
                let (start, end) = string_at(i)?;
                match kind_of(&b[start..end]) {
                    Some(k) => kind = Some(k),
                    // Not one of the four deltas: the general scanner gives up on it too.
                    None => return Some(None),
                }
                end + 1
            }
            Key::ItemId | Key::Delta => {
                let (start, end) = string_at(i)?;
                // No escape in the payload: the text is the bytes between the quotes, borrowed, as the general
                // scanner borrows it. Quotes are ASCII, so both ends are character boundaries.
                let text = Cow::Borrowed(data.get(start..end)?);
                if key == Key::ItemId {
                    item_id = Some(text);
                } else {
                    delta = Some(text);
                }
                end + 1
            }
            Key::SummaryIndex => {
                let (n, end) = summary_index_at(b, i)?;
                summary_index = Some(n);
                end
            }
            // The values deltas carry besides those: a string, a small integer, `[]`.
            Key::OtherWire(_) | Key::Other => match b.get(i) {
                Some(b'"') => string_at(i)?.1 + 1,
                Some(b'[') if b.get(i + 1) == Some(&b']') => i + 2,
                _ => skip_value(b, i)?,
            },
        };
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => break,
            _ => return None,
        }
    }
    if i + 1 != b.len() {
        return None;
    }
    // A field the delta needs is missing: the general scanner gives up as well.
    Some(match (kind, item_id, delta) {
        (Some(kind), Some(item_id), Some(delta)) => event(kind, item_id, delta, summary_index),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whenever the lane decides, its answer is the general scanner's.
    fn same_as_general(data: &str) -> Option<Option<Event<'_>>> {
        let lane = parse(data);
        if let Some(lane) = &lane {
            assert_eq!(lane, &super::super::general(data), "the lane differs from the general scanner on {data}");
        }
        lane
    }

    #[test]
    fn decides_the_compact_deltas_and_leaves_the_rest() {
        let fake = r#"{"content_index":0,"delta":"w1 ","item_id":"msg_x","logprobs":[],"output_index":0,"sequence_number":5,"type":"response.output_text.delta"}"#;
        assert!(matches!(same_as_general(fake), Some(Some(Event::TextDelta { delta: Cow::Borrowed("w1 "), .. }))));
        let real = r#"{"type":"response.reasoning_summary_text.delta","sequence_number":12,"item_id":"rs_1","output_index":1,"summary_index":2,"delta":"déjà 中","obfuscation":"xQ3","n":-4,"t":true,"z":null,"o":{}}"#;
        let expected =
            Event::ReasoningSummaryDelta { item_id: "rs_1".into(), summary_index: 2, delta: "déjà 中".into() };
        assert_eq!(same_as_general(real), Some(Some(expected)));
        // Decided as not a delta the scanner reads.
        for data in [
            r#"{"type":"response.output_text.done","item_id":"m","text":"t"}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a","delta":"b"}"#,
            r#"{"type":"response.output_text.delta","item_id":"m"}"#,
            r#"{"item_id":"m","delta":"a"}"#,
        ] {
            assert_eq!(same_as_general(data), Some(None), "{data}");
        }
        // Not compact: left to the general scanner.
        let long =
            format!(r#"{{"type":"response.output_text.delta","item_id":"m","delta":"{}"}}"#, "a".repeat(MAX_LEN));
        for data in [
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a\nb"}"#,
            "{\"type\":\"response.output_text.delta\",\"item_id\":\"m\",\"delta\":\"a\tb\"}",
            r#"{ "type":"response.output_text.delta","item_id":"m","delta":"a"}"#,
            r#"{"type" :"response.output_text.delta","item_id":"m","delta":"a"}"#,
            r#"{"type":"response.output_text.delta","item_id":"m","delta":"a"} "#,
            r#" {"type":"response.output_text.delta","item_id":"m","delta":"a"}"#,
            long.as_str(),
            "",
            "{",
            "{}",
        ] {
            assert_eq!(same_as_general(data), None, "{data}");
        }
    }

    /// Quotes found in every block position, across block and word boundaries, with the tail's zero padding
    /// never read as a quote or a control byte.
    #[test]
    fn quote_map_matches_a_byte_search() {
        for len in (16..200).chain(MAX_LEN - 70..=MAX_LEN) {
            for at in (0..len).step_by(7) {
                let mut b = vec![b'a'; len];
                b[at] = b'"';
                if at + 3 < len {
                    b[at + 3] = 0xe9;
                }
                let quotes = Quotes::of(&b).unwrap_or_else(|| panic!("no special byte in {b:?}"));
                for from in (0..=len).step_by(1 + len / 100) {
                    let naive = b.iter().skip(from).position(|&c| c == b'"').map(|p| p + from);
                    assert_eq!(quotes.next(from), naive, "len {len}, quote at {at}, from {from}");
                }
                b[at] = b'\\';
                assert!(Quotes::of(&b).is_none());
                b[at] = 0x1f;
                assert!(Quotes::of(&b).is_none());
            }
        }
        assert!(Quotes::of(b"{\"a\":\"bcdefgh\"}").is_none(), "under 16 bytes");
    }

    /// The SSE2 masks are the byte-by-byte ones for every byte value in every position.
    #[test]
    fn block_masks_match_the_portable_ones() {
        for at in 0..16 {
            for byte in 0..=255u8 {
                for filler in [b'a', 0x20, 0x1f, 0x80, 0xff, b'"', b'\\'] {
                    let mut word = [filler; 16];
                    word[at] = byte;
                    assert_eq!(block_masks(&word), portable_block_masks(&word), "{word:?}");
                }
            }
        }
    }

    mod generated {
        use super::*;
        use crate::responses::fast::tests::generated::field;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn the_lane_agrees_with_the_general_scanner(
                fields in prop::collection::vec(field(), 0..9),
                sep in prop::sample::select(vec![",", ", ", ",,", ""]),
                tail in prop::sample::select(vec!["}", "} ", "", "}}", ",}"]),
            ) {
                let data = format!("{{{}{tail}", fields.join(sep));
                same_as_general(&data);
                let base = r#""type":"response.output_text.delta","item_id":"m","delta":"d""#;
                same_as_general(&format!("{{{base},{}}}", fields.join(",")));
                // Every cut of it, too.
                for end in 0..data.len() {
                    if let Some(cut) = data.get(..end) {
                        same_as_general(cut);
                    }
                }
            }
        }
    }
}
