//! An account's door: how many of its requests are in flight, how many wait for one to end, and the wake-up
//! of waiters. The limit is not the gate's: the lease asks the account's governor for it at each entry
//! (`planner::Governor`, lowered after overload answers), so a changed limit holds from the next request on.
//!
//! A waiter is woken when a request ends (`release`) or when the account stops serving (`wake_all`: a cooldown,
//! a disable), and runs the pool's choice again; one woken for a slot it does not take passes the wake-up on, so
//! a slot never idles while another request waits for it.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Gate {
    in_flight: AtomicUsize,
    waiting: AtomicUsize,
    notify: Notify,
}

impl Gate {
    /// Take a slot if fewer than `limit` are taken.
    pub fn try_enter(&self, limit: usize) -> bool {
        self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).is_ok()
    }

    /// A request ended: its slot is free for the next waiter.
    pub fn release(&self) {
        let _ = self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.notify.notify_one();
    }

    /// The account cannot serve for a while: every waiter chooses again.
    pub fn wake_all(&self) {
        self.notify.notify_waiters();
    }

    /// A waiter woken for this gate took a slot elsewhere: the wake-up goes to the next one.
    pub fn pass_on(&self) {
        self.notify.notify_one();
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Wait in this gate's queue until a slot may be free or `deadline` passes; whether it was woken.
    pub async fn wait(&self, deadline: tokio::time::Instant) -> bool {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let woken = tokio::time::timeout_at(deadline, self.notify.notified()).await.is_ok();
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        woken
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn slots_up_to_the_limit_and_a_waiter_woken_when_one_ends() {
        let gate = Arc::new(Gate::default());
        assert!(gate.try_enter(2));
        assert!(gate.try_enter(2));
        assert!(!gate.try_enter(2), "the limit holds");
        assert!(gate.try_enter(3), "a raised limit lets one more in");
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                gate.wait(deadline).await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(gate.waiting(), 1);
        gate.release();
        assert_eq!(waiter.await.ok(), Some(true));
        assert_eq!(gate.in_flight(), 2);
        // No waiter: the deadline ends the wait.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        assert!(!gate.wait(deadline).await);
    }
}
