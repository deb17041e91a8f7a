//! Open-loop pacing: sends are scheduled at fixed times, whatever the server does.
//!
//! A closed-loop generator (send, wait, send) slows down with the server and hides queueing. Here
//! each message's time is fixed in advance (`start + n × interval`) and its latency is measured from
//! that scheduled time, so a server that falls behind shows it as latency (no coordinated omission).

use std::time::Duration;

use tokio::time::Instant;

/// The schedule of one sender.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    interval: Duration,
    sent: u64,
}

impl Pacer {
    /// `rate` messages per second starting at `start` (a first send may be offset to stagger
    /// senders).
    pub fn new(start: Instant, rate: f64) -> Self {
        let interval = if rate > 0.0 {
            Duration::from_secs_f64(1.0 / rate)
        } else {
            Duration::MAX
        };
        Self {
            start,
            interval,
            sent: 0,
        }
    }

    /// When the next message is due.
    pub fn next_due(&self) -> Instant {
        let offset = self
            .interval
            .saturating_mul(self.sent.min(u32::MAX as u64) as u32);
        self.start + offset
    }

    /// Wait until the next message is due and claim it; returns its scheduled time. When behind
    /// schedule it returns at once (catching up), never skipping a message.
    pub async fn tick(&mut self) -> Instant {
        let due = self.next_due();
        tokio::time::sleep_until(due).await;
        self.sent += 1;
        due
    }

    /// How many messages are due by `now` (for tests and reports).
    pub fn due_by(&self, now: Instant) -> u64 {
        if now < self.start || self.interval == Duration::MAX {
            return 0;
        }
        let elapsed = now - self.start;
        (elapsed.as_nanos() / self.interval.as_nanos().max(1)) as u64 + 1
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_follow_the_schedule_not_the_sender() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, 100.0);
        assert_eq!(pacer.interval(), Duration::from_millis(10));
        let first = pacer.tick().await;
        assert_eq!(first, start);
        let second = pacer.tick().await;
        assert_eq!(second - start, Duration::from_millis(10));
        // The sender stalls for 55 ms: the next ticks return at once with their original times.
        tokio::time::advance(Duration::from_millis(55)).await;
        let late = pacer.tick().await;
        assert_eq!(late - start, Duration::from_millis(20));
        assert!(Instant::now() - start >= Duration::from_millis(65));
        for expected in [30, 40, 50, 60] {
            assert_eq!(pacer.tick().await - start, Duration::from_millis(expected));
        }
        // Caught up: now it waits again.
        let before = Instant::now();
        let next = pacer.tick().await;
        assert_eq!(next - start, Duration::from_millis(70));
        assert!(Instant::now() >= before);
    }

    #[tokio::test(start_paused = true)]
    async fn one_second_at_rate_r_is_r_messages() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, 250.0);
        let end = start + Duration::from_secs(1);
        let mut n = 0;
        while pacer.next_due() < end {
            pacer.tick().await;
            n += 1;
        }
        assert_eq!(n, 250);
        assert_eq!(pacer.due_by(start + Duration::from_millis(999)), 250);
        assert_eq!(Pacer::new(start, 0.0).due_by(end), 0);
    }
}
