//! The pure parts of the client's resilience, with time as an argument so
//! tests drive them without a clock.
//!
//! - [`RetryPolicy`]: how often and how long to wait before asking again
//!   after a 429, a 5xx, a timeout or a refused connection;
//! - [`CircuitBreaker`]: after `threshold` failed attempts in a row, every
//!   call fails at once for `cool_down`, then one trial call decides. So an
//!   API outage costs the worker and the intake nothing: they are told "no
//!   answer" immediately instead of waiting out timeouts and retries;
//! - [`Pacer`]: at most `rate` requests a second, whatever asks.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use backon::ExponentialBuilder;

/// Bounded retries with exponential backoff and jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts).
    pub max_retries: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// The backoff, with jitter (several daemons do not retry in step).
    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries as usize)
            .with_jitter()
    }

    /// Whether an answer with `status` is worth asking again: too many
    /// requests, or the processor's own trouble. A 401 or a 404 will
    /// answer the same again.
    pub fn retryable_status(status: u16) -> bool {
        status == 429 || (500..=599).contains(&status)
    }
}

/// What the breaker lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail at once until the cool-down ends.
    Open,
    /// The cool-down is over: one trial call goes through; its outcome
    /// closes or re-opens the breaker.
    HalfOpen,
}

/// A consecutive-failure circuit breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    failures: u32,
    open_until: Option<Instant>,
    trial_out: bool,
}

impl CircuitBreaker {
    pub fn new(threshold: NonZeroU32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.get(),
            cool_down,
            failures: 0,
            open_until: None,
            trial_out: false,
        }
    }

    pub fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether an attempt may go out now (a half-open breaker lets one
    /// trial out at a time).
    pub fn admit(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen if self.trial_out => false,
            BreakerState::HalfOpen => {
                self.trial_out = true;
                true
            }
        }
    }

    /// The API answered (whatever it said: a 401 or 404 is an answer).
    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.trial_out = false;
    }

    /// An attempt failed (5xx, 429, timeout, no connection).
    pub fn failure(&mut self, now: Instant) {
        self.trial_out = false;
        if self.open_until.is_some() {
            // The trial failed: another cool-down.
            self.open_until = Some(now + self.cool_down);
            return;
        }
        self.failures += 1;
        if self.failures >= self.threshold {
            self.open_until = Some(now + self.cool_down);
        }
    }
}

/// Spaces requests `1/rate` apart: each caller reserves the next free slot
/// and waits until it.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Duration,
    next: Option<Instant>,
}

impl Pacer {
    pub fn new(rate: NonZeroU32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate.get(),
            next: None,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The time the caller may send at (now, or later when the previous
    /// slots are that recent).
    pub fn reserve(&mut self, now: Instant) -> Instant {
        let slot = self.next.map_or(now, |next| next.max(now));
        self.next = Some(slot + self.interval);
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).expect("positive")
    }

    #[test]
    fn only_throttling_and_server_errors_are_retried() {
        for status in [429, 500, 502, 503, 504] {
            assert!(RetryPolicy::retryable_status(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 422] {
            assert!(!RetryPolicy::retryable_status(status), "{status}");
        }
    }

    #[test]
    fn the_backoff_is_bounded_grows_and_stays_under_its_cap() {
        let policy = RetryPolicy {
            max_retries: 4,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let delays: Vec<Duration> = backon::BackoffBuilder::build(policy.backoff()).collect();
        assert_eq!(delays.len(), 4, "{delays:?}");
        // Jitter adds up to one more delay: each is at least its base
        // (100, 200, 400, 500 ms) and at most twice the cap.
        let bases = [100, 200, 400, 500];
        for (delay, base) in delays.iter().zip(bases) {
            assert!(*delay >= Duration::from_millis(base), "{delays:?}");
            assert!(*delay <= Duration::from_millis(1000), "{delays:?}");
        }
    }

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_a_trial_decides() {
        let start = Instant::now();
        let cool = Duration::from_secs(30);
        let mut breaker = CircuitBreaker::new(n(3), cool);
        // Failures interrupted by an answer do not add up.
        breaker.failure(start);
        breaker.failure(start);
        breaker.success();
        breaker.failure(start);
        breaker.failure(start);
        assert_eq!(breaker.state(start), BreakerState::Closed);
        assert!(breaker.admit(start));
        breaker.failure(start);
        assert_eq!(breaker.state(start), BreakerState::Open);
        assert!(!breaker.admit(start + cool / 2));
        // After the cool-down one trial goes out, not two.
        let later = start + cool;
        assert_eq!(breaker.state(later), BreakerState::HalfOpen);
        assert!(breaker.admit(later));
        assert!(!breaker.admit(later));
        // A failed trial: another full cool-down from then.
        breaker.failure(later);
        assert_eq!(breaker.state(later + cool / 2), BreakerState::Open);
        let again = later + cool;
        assert!(breaker.admit(again));
        breaker.success();
        assert_eq!(breaker.state(again), BreakerState::Closed);
        assert!(breaker.admit(again) && breaker.admit(again));
    }

    #[test]
    fn the_pacer_spaces_requests_at_the_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::new(n(4));
        assert_eq!(pacer.interval(), Duration::from_millis(250));
        // Five callers at once: 0, 250, 500, 750, 1000 ms.
        let slots: Vec<Duration> = (0..5).map(|_| pacer.reserve(start) - start).collect();
        assert_eq!(
            slots,
            [0, 250, 500, 750, 1000].map(Duration::from_millis).to_vec()
        );
        // A caller long after the last slot goes at once.
        let idle = start + Duration::from_secs(10);
        assert_eq!(pacer.reserve(idle), idle);
        assert_eq!(pacer.reserve(idle), idle + Duration::from_millis(250));
    }
}
