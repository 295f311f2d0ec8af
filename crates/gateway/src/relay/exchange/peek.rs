//! The last phase of opening an exchange: the upstream's first events read until one carries output, so that a
//! failure inside a 200 stream (a refusal, the content filter before any output, a cut) is still the account's
//! failure and another account may try; everything read is put back for the encoder.

use std::time::Instant;

use dialects::failure::{Reason, Refusal};
use dialects::responses::event::Terminal;
use dialects::sse::SseFrame;
use dialects::{Event, UpstreamFailure};

use crate::relay::reader::{EventReader, Read};

/// Read until the first event that carries output (or `until` passes). A failure before that is returned as an
/// error; everything read is put back for the encoder.
///
/// A frame the gateway cannot read ends the peek without failing: it is not the account's failure (no other
/// account would answer better, `dialects::failure`), and whether it fails the answer is the encoder's to say:
/// the Responses passthrough forwards it as it came, a translated dialect reports it in its own error shape.
pub(super) async fn peek(reader: &mut EventReader, until: Instant) -> Result<(), UpstreamFailure> {
    // `None`: a frame put back unparsed.
    let mut seen: Vec<(SseFrame, Option<Event<'static>>)> = Vec::new();
    let result = loop {
        if Instant::now() >= until {
            break Ok(());
        }
        match reader.next_until(until).await {
            Read::Frame(frame) => {
                // Owned (a copy only for the one delta that ends the peek), so it can wait beside its frame.
                let event = reader.event(&frame).into_owned();
                // The content filter ended the response before any output: a refusal, as the policy codes are.
                if let Event::Finished { terminal: Terminal::Incomplete { reason }, output, .. } = &event
                    && output.is_empty()
                    && let Some(refusal) = Refusal::before_output(reason)
                {
                    break Err(UpstreamFailure::Refused(refusal));
                }
                match event {
                    Event::Created { .. } | Event::Ignored | Event::Unknown { .. } => seen.push((frame, Some(event))),
                    Event::Failed(refusal) if refusal.reason == Reason::MalformedEvent => {
                        seen.push((frame, None));
                        break Ok(());
                    }
                    Event::Failed(refusal) => break Err(UpstreamFailure::Refused(*refusal)),
                    _ => {
                        seen.push((frame, Some(event)));
                        break Ok(());
                    }
                }
            }
            Read::Idle => break Ok(()),
            Read::End => break Err(UpstreamFailure::StreamCut),
            Read::Error(failure) => break Err(*failure),
        }
    };
    for (frame, event) in seen.into_iter().rev() {
        match event {
            Some(event) => reader.unread(frame, event),
            None => reader.unread_unparsed(frame),
        }
    }
    result
}
