//! Waiting on virtual time: a sleep that ends when the virtual clock passes a deadline, however the
//! clock got there (ticking, advanced, or set through the admin API). It owns changes to the clock so
//! that every change wakes the waiters; it decides nothing about what waits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Clock;

/// The virtual clock plus a way to wait on it.
#[derive(Debug)]
pub struct Timer {
    /// The one clock; change it only through the timer, or sleepers miss the change.
    clock: Arc<Clock>,
    /// Woken on every change to the clock, so each sleeper looks at the time again.
    changed: Notify,
}

impl Timer {
    /// A timer over `clock`.
    pub fn new(clock: Arc<Clock>) -> Timer {
        Timer { clock, changed: Notify::new() }
    }

    /// The clock itself, for reading.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// Virtual now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Moves virtual time forward (or back, when negative) and wakes every waiter.
    pub fn advance_ms(&self, ms: i64) {
        self.clock.advance_ms(ms);
        self.changed.notify_waiters();
    }

    /// Sets virtual time and wakes every waiter.
    pub fn set_ms(&self, epoch_ms: i64) {
        self.clock.set_ms(epoch_ms);
        self.changed.notify_waiters();
    }

    /// Puts the clock back to its start state and wakes every waiter.
    pub fn reset(&self) {
        self.clock.reset();
        self.changed.notify_waiters();
    }

    /// Returns once virtual time reaches `deadline_ms`. On a ticking clock this sleeps the real
    /// remainder, cut short when the clock is moved; on a frozen clock it waits for the clock to move.
    pub async fn sleep_until(&self, deadline_ms: i64) {
        loop {
            // Register interest before reading the clock, so a change in between is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.clock.now_ms();
            if now >= deadline_ms {
                return;
            }
            if self.clock.is_frozen() {
                notified.await;
            } else {
                let wait = Duration::from_millis((deadline_ms - now) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = &mut notified => {}
                }
            }
        }
    }

    /// Returns once `ms` of virtual time have passed from now.
    pub async fn sleep_ms(&self, ms: u64) {
        let deadline = self.clock.now_ms().saturating_add(ms as i64);
        self.sleep_until(deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frozen_waits_end_when_the_clock_is_advanced_past_the_deadline() {
        let t = Arc::new(Timer::new(Arc::new(Clock::frozen(0))));
        let w = t.clone();
        let waiter = tokio::spawn(async move { w.sleep_until(1_000).await });
        tokio::task::yield_now().await;
        t.advance_ms(999);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one millisecond short must keep waiting");
        t.advance_ms(1);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("joined");
    }

    #[tokio::test]
    async fn ticking_waits_end_early_when_the_clock_is_set_forward() {
        let t = Arc::new(Timer::new(Arc::new(Clock::system())));
        let w = t.clone();
        let deadline = t.now_ms() + 3_600_000;
        let waiter = tokio::spawn(async move { w.sleep_until(deadline).await });
        tokio::task::yield_now().await;
        t.set_ms(deadline + 1);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken").expect("joined");
    }
}
