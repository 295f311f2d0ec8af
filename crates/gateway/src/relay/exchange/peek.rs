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
    let mut seen: Vec<SseFrame> = Vec::new();
    let result = loop {
        if Instant::now() >= until {
            break Ok(());
        }
        match reader.next_until(until).await {
            Read::Frame(frame) => {
                let event = reader.event(&frame);
                // The content filter ended the response before any output: a refusal, as the policy codes are.
                if let Event::Finished { terminal: Terminal::Incomplete { reason }, output, .. } = &event
                    && output.is_empty()
                    && let Some(refusal) = Refusal::before_output(reason)
                {
                    break Err(UpstreamFailure::Refused(refusal));
                }
                let outcome = match event {
                    Event::Created { .. } | Event::Ignored | Event::Unknown { .. } => None,
                    Event::Failed(refusal) if refusal.reason == Reason::MalformedEvent => Some(Ok(())),
                    Event::Failed(refusal) => Some(Err(UpstreamFailure::Refused(*refusal))),
                    _ => Some(Ok(())),
                };
                match outcome {
                    Some(Err(failure)) => break Err(failure),
                    Some(Ok(())) => {
                        seen.push(frame);
                        break Ok(());
                    }
                    None => seen.push(frame),
                }
            }
            Read::Idle => break Ok(()),
            Read::End => break Err(UpstreamFailure::StreamCut),
            Read::Error(failure) => break Err(*failure),
        }
    };
    for frame in seen.into_iter().rev() {
        reader.unread(frame);
    }
    result
}
