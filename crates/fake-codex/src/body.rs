//! The streaming response body: hands the reply's [`Step`]s to hyper one frame at a time, sleeping where the
//! plan pauses, and counts how each stream ended (completed, or dropped because the client went away).
//!
//! A body of its own rather than a producer task feeding a channel: the steps are all built before the response
//! starts, so the task and the channel only added a send, a receive and two tasks' wake-ups to every event. On a
//! 200-delta burst over HTTP/2 (c=64, the fake sharing its core with the load generator) the fake's CPU per
//! reply fell from ~500 to ~340 us with this body. The benchmark's fake shares a core with the load generator,
//! so its cost per event sets how fast bursts reach the gateway.

use crate::sse::{Framing, Step, TRICKLE_EVENTS};
use crate::state::Shared;
use axum::body::Bytes;
use http_body::{Body, Frame};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// What the body does once its current pause is over.
enum AfterPause {
    /// Go on with the next step.
    Next,
    /// Send a `: ping` comment and pause again, forever (`Step::Trickle`).
    Ping(u64),
    /// End the stream with an error: hyper aborts the connection (HTTP/1.1) or resets the stream (HTTP/2).
    Cut,
}

/// A reply's steps as an HTTP body.
pub(crate) struct StepBody {
    steps: std::vec::IntoIter<Step>,
    pause: Option<(Pin<Box<Sleep>>, AfterPause)>,
    /// `Framing::Trickle`: events handed over since the last yield.
    trickle_run: Option<usize>,
    /// `Framing::Trickle`: the event held back over a yield, handed over first at the next poll.
    held: Option<Bytes>,
    /// Set once the stream ended on its own (completed or cut): a body dropped before that was dropped by the
    /// client going away.
    ended: bool,
    shared: Arc<Shared>,
}

impl StepBody {
    pub(crate) fn new(shared: &Arc<Shared>, steps: Vec<Step>) -> Self {
        shared.stats.streams_started.fetch_add(1, Ordering::Relaxed);
        let trickle_run = (shared.cfg.framing == Framing::Trickle).then_some(0);
        Self { steps: steps.into_iter(), pause: None, trickle_run, held: None, ended: false, shared: shared.clone() }
    }

    fn pause(&mut self, ms: u64, then: AfterPause) {
        self.pause = Some((Box::pin(tokio::time::sleep(Duration::from_millis(ms))), then));
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.shared.stats.streams_completed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

type Polled = Poll<Option<Result<Frame<Bytes>, std::io::Error>>>;

impl Body for StepBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        if let Some(bytes) = this.held.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        loop {
            if let Some((sleep, _)) = &mut this.pause {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match this.pause.take().map(|(_, then)| then) {
                    None | Some(AfterPause::Next) => {}
                    Some(AfterPause::Ping(ms)) => {
                        this.pause(ms, AfterPause::Ping(ms));
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": ping\n\n")))));
                    }
                    Some(AfterPause::Cut) => {
                        this.end();
                        return Poll::Ready(Some(Err(std::io::Error::other("fake-codex: stream cut"))));
                    }
                }
            }
            match this.steps.next() {
                None => {
                    this.end();
                    return Poll::Ready(None);
                }
                Some(Step::Event(bytes)) => {
                    if let Some(run) = &mut this.trickle_run {
                        // A few events per write, with a task switch between writes: pending once (and woken at
                        // once) after every few, so the server writes what it holds.
                        if *run == TRICKLE_EVENTS {
                            *run = 1;
                            this.held = Some(bytes);
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        *run += 1;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
                Some(Step::Sleep(ms)) => this.pause(ms, AfterPause::Next),
                Some(Step::Trickle(ms)) => this.pause(ms, AfterPause::Ping(ms)),
                // Let the events already handed over reach the socket first: the abort discards whatever is
                // still buffered in the connection.
                Some(Step::Cut) => this.pause(50, AfterPause::Cut),
            }
        }
    }
}

impl Drop for StepBody {
    fn drop(&mut self) {
        if !self.ended {
            self.shared.stats.stream_dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FakeConfig;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    /// Counts its wake-ups.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn shared(framing: Framing) -> Arc<Shared> {
        Arc::new(Shared::new(FakeConfig { framing, ..FakeConfig::default() }, String::new()))
    }

    fn events(n: usize) -> Vec<Step> {
        (0..n).map(|i| Step::Event(Bytes::from(format!("data: {i}\n\n")))).collect()
    }

    /// Polls until pending or the end: the data frames handed over, and whether the body ended.
    fn drain(body: &mut StepBody, cx: &mut Context<'_>) -> (Vec<Bytes>, bool) {
        let mut got = Vec::new();
        loop {
            match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Pending => return (got, false),
                Poll::Ready(None) => return (got, true),
                Poll::Ready(Some(Ok(frame))) => got.push(frame.into_data().unwrap_or_default()),
                Poll::Ready(Some(Err(e))) => panic!("unexpected error frame: {e}"),
            }
        }
    }

    #[test]
    fn a_burst_is_handed_over_whole_in_order_and_counted_completed() {
        let shared = shared(Framing::PerEvent);
        let mut body = StepBody::new(&shared, events(200));
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let (got, ended) = drain(&mut body, &mut Context::from_waker(&waker));
        assert!(ended);
        assert_eq!(got.len(), 200);
        assert_eq!(got[199], Bytes::from("data: 199\n\n"));
        drop(body);
        let stats = shared.stats.snapshot();
        assert_eq!((stats["streams_started"].as_u64(), stats["streams_completed"].as_u64()), (Some(1), Some(1)));
        assert_eq!(stats["streams_dropped"].as_u64(), Some(0));
    }

    #[test]
    fn trickle_framing_yields_after_every_few_events_and_wakes_itself() {
        let shared = shared(Framing::Trickle);
        let mut body = StepBody::new(&shared, events(10));
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut runs = Vec::new();
        let mut all = Vec::new();
        loop {
            let (got, ended) = drain(&mut body, &mut cx);
            runs.push(got.len());
            all.extend(got);
            if ended {
                break;
            }
        }
        assert_eq!(runs, vec![TRICKLE_EVENTS, TRICKLE_EVENTS, 10 - 2 * TRICKLE_EVENTS]);
        assert_eq!(count.0.load(Ordering::Relaxed), 2, "woken once per yield");
        let expected: Vec<Bytes> = (0..10).map(|i| Bytes::from(format!("data: {i}\n\n"))).collect();
        assert_eq!(all, expected, "nothing lost or reordered over a yield");
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_counts_as_dropped_and_a_cut_ends_in_an_error() {
        let shared = shared(Framing::PerEvent);
        let mut steps = events(2);
        steps.push(Step::Sleep(60_000));
        steps.extend(events(1));
        let mut body = StepBody::new(&shared, steps);
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let (got, ended) = drain(&mut body, &mut Context::from_waker(&waker));
        assert_eq!((got.len(), ended), (2, false), "pending in the pause");
        drop(body);
        let stats = shared.stats.snapshot();
        assert_eq!((stats["streams_dropped"].as_u64(), stats["streams_completed"].as_u64()), (Some(1), Some(0)));

        let mut steps = events(1);
        steps.push(Step::Cut);
        let mut body = StepBody::new(&shared, steps);
        let first = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(first.is_some_and(|f| f.is_ok()));
        let cut = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(cut.is_some_and(|f| f.is_err()), "the cut ends in an error frame");
        drop(body);
        let stats = shared.stats.snapshot();
        assert_eq!(stats["streams_completed"].as_u64(), Some(1), "a cut stream ended on its own");
        assert_eq!(stats["streams_dropped"].as_u64(), Some(1));
    }
}
