//! When a login's password may be checked: the pure rule of progressive
//! delays ([`decide`]), and the caps on checks running at once
//! ([`CheckGate`]).
//!
//! Why delays per name rather than a lockout by address: behind the
//! recommended HTTPS proxy every user shares one address, so a lockout by
//! address lets one burst lock everybody out. A name that keeps failing
//! waits longer and longer between its attempts (1 s, 2 s, 4 s, ... up to
//! [`LoginPolicy::max_delay`]) after a few free ones; a name that has not
//! failed is never held back by the failures of others, whichever address
//! they came from. An address that has failed many times only takes the
//! free attempts away from the names that failed from anywhere.
//!
//! Why caps on checks in flight: argon2 costs tens of milliseconds of CPU
//! and 19 MiB. One name gets at most [`LoginPolicy::checks_per_user`]
//! checks at once (more are answered 429 at once, without a check), and
//! the whole console at most [`CheckGate::new`]'s `total`, so a burst over
//! many names cannot take every core from the worker beside it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The limits of logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginPolicy {
    /// Failures counted within this window; older attempts are forgotten
    /// (and pruned).
    pub window: Duration,
    /// Attempts of one name that may fail within the window before the
    /// next must wait.
    pub free_failures: u32,
    /// The wait after the first failure beyond the free ones; each further
    /// failure doubles it.
    pub first_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// Failures from one address within the window after which the names
    /// that have failed get no free attempts.
    pub address_failures: u32,
    /// Password checks of one name running at once.
    pub checks_per_user: usize,
    /// How long a login waits for one of the console's places for a check
    /// before it is answered 429.
    pub check_wait: Duration,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(3600),
            free_failures: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            address_failures: 20,
            checks_per_user: 1,
            check_wait: Duration::from_secs(10),
        }
    }
}

pub use crate::store::console::LoginAttemptCounts as AttemptCounts;

/// Whether the password may be checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginDecision {
    Check,
    /// Not before this long (answered 429 with `Retry-After`).
    Wait(Duration),
}

impl LoginPolicy {
    /// The wait owed after `failures` failures of a name when the first
    /// `free` attempts cost nothing: none below `free` failures, then
    /// `first_delay`, doubled with each failure beyond, at most
    /// `max_delay`.
    pub fn delay(&self, failures: i64, free: u32) -> Duration {
        let beyond = failures.saturating_sub(i64::from(free));
        if beyond < 0 {
            return Duration::ZERO;
        }
        // 2^30 of anything is past any sensible cap.
        let doublings = u32::try_from(beyond).unwrap_or(u32::MAX).min(30);
        self.first_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay)
    }
}

/// The rule: a name that has not failed is always checked; a name that
/// has waits [`LoginPolicy::delay`] after its last failure, with no free
/// failures when its caller's address is over
/// [`LoginPolicy::address_failures`]. A clock that went back owes no
/// more than the delay itself.
pub fn decide(policy: &LoginPolicy, counts: AttemptCounts, now: DateTime<Utc>) -> LoginDecision {
    let Some(last) = counts.last_user_failure else {
        return LoginDecision::Check;
    };
    if counts.user_failures <= 0 {
        return LoginDecision::Check;
    }
    let free = if counts.address_failures >= i64::from(policy.address_failures) {
        0
    } else {
        policy.free_failures
    };
    let delay = policy.delay(counts.user_failures, free);
    let elapsed = (now - last).to_std().unwrap_or(Duration::ZERO);
    match delay.checked_sub(elapsed) {
        Some(left) if !left.is_zero() => LoginDecision::Wait(left),
        _ => LoginDecision::Check,
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The caps on password checks running at once: per name, and for the
/// whole console.
#[derive(Debug)]
pub struct CheckGate {
    per_user: usize,
    running: Mutex<HashMap<String, usize>>,
    total: Arc<tokio::sync::Semaphore>,
}

/// A name's place among the checks running; freed when dropped.
#[derive(Debug)]
pub struct UserSlot<'a> {
    gate: &'a CheckGate,
    key: String,
}

impl CheckGate {
    /// At most `per_user` checks of one name and `total` checks in all at
    /// once (each at least 1).
    pub fn new(per_user: usize, total: usize) -> Self {
        Self {
            per_user: per_user.max(1),
            running: Mutex::new(HashMap::new()),
            total: Arc::new(tokio::sync::Semaphore::new(total.max(1))),
        }
    }

    /// Half the machine's cores (at least one): the other half stays with
    /// the worker and the intake.
    pub fn default_total() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get() / 2)
            .unwrap_or(1)
            .max(1)
    }

    /// A place for a check of the name under `key` (its digest), or
    /// `None` when the name has its cap of checks running already.
    pub fn try_user(&self, key: &str) -> Option<UserSlot<'_>> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let count = running.entry(key.to_owned()).or_insert(0);
        if *count >= self.per_user {
            return None;
        }
        *count += 1;
        Some(UserSlot {
            gate: self,
            key: key.to_owned(),
        })
    }

    /// One of the console's places for a check, waiting at most `wait`
    /// for it; `None` when none came free in time.
    pub async fn total(&self, wait: Duration) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::time::timeout(wait, self.total.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

impl Drop for UserSlot<'_> {
    fn drop(&mut self) {
        let mut running = self
            .gate
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = running.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0)
            .single()
            .expect("time")
    }

    fn counts(user_failures: i64, last: i64, address_failures: i64) -> AttemptCounts {
        AttemptCounts {
            user_failures,
            last_user_failure: Some(at(last)),
            address_failures,
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_name_waits_longer_after_each_failure_beyond_the_free_ones() {
        let policy = LoginPolicy::default();
        let d = |failures| policy.delay(failures, 5);
        assert_eq!(d(0), Duration::ZERO);
        assert_eq!(d(4), Duration::ZERO);
        assert_eq!(d(5), SECOND);
        assert_eq!(d(6), 2 * SECOND);
        assert_eq!(d(7), 4 * SECOND);
        assert_eq!(d(14), 512 * SECOND);
        assert_eq!(d(15), policy.max_delay);
        assert_eq!(d(i64::MAX), policy.max_delay);
        // Five failures: the sixth attempt waits 1 s after the fifth.
        let decide_at = |now, c| decide(&policy, c, at(now));
        assert_eq!(decide_at(0, counts(4, 0, 4)), LoginDecision::Check);
        assert_eq!(
            decide_at(0, counts(5, 0, 5)),
            LoginDecision::Wait(SECOND),
            "after the fifth failure"
        );
        assert_eq!(decide_at(1, counts(5, 0, 5)), LoginDecision::Check);
        assert_eq!(
            decide_at(1, counts(7, 0, 7)),
            LoginDecision::Wait(3 * SECOND)
        );
        // A clock that went back owes the delay, no more.
        assert_eq!(decide_at(-60, counts(5, 0, 5)), LoginDecision::Wait(SECOND));
    }

    #[test]
    fn a_busy_address_holds_back_only_the_names_that_failed() {
        let policy = LoginPolicy::default();
        // A name that never failed is checked, whatever its address did.
        let fresh = AttemptCounts {
            user_failures: 0,
            last_user_failure: None,
            address_failures: 10_000,
        };
        assert_eq!(decide(&policy, fresh, at(0)), LoginDecision::Check);
        // Under the address's limit a name has its free failures...
        assert_eq!(
            decide(&policy, counts(1, 0, 19), at(0)),
            LoginDecision::Check
        );
        // ... over it, none.
        assert_eq!(
            decide(&policy, counts(1, 0, 20), at(0)),
            LoginDecision::Wait(2 * SECOND)
        );
        assert_eq!(
            decide(&policy, counts(2, 0, 20), at(1)),
            LoginDecision::Wait(3 * SECOND)
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(900)), 900);
    }

    #[tokio::test]
    async fn a_name_gets_at_most_its_cap_of_checks_at_once() {
        let gate = CheckGate::new(1, 1);
        let first = gate.try_user("a").expect("a first check");
        assert!(gate.try_user("a").is_none(), "a second check of a");
        let other = gate.try_user("b").expect("another name");
        let permit = gate.total(Duration::from_millis(10)).await.expect("one");
        assert!(
            gate.total(Duration::from_millis(10)).await.is_none(),
            "the console's cap"
        );
        drop(permit);
        assert!(gate.total(Duration::from_millis(10)).await.is_some());
        drop(first);
        assert!(gate.try_user("a").is_some(), "freed when done");
        drop(other);
        assert!(gate.running.lock().expect("lock").is_empty());
    }

    proptest! {
        /// More failures never wait less; the wait never passes the cap;
        /// a name that never failed is never held back; once the delay
        /// has passed since the last failure, the name is checked.
        #[test]
        fn delays_grow_and_stay_bounded(
            failures in 0i64..100,
            address in 0i64..100,
            elapsed in 0i64..2_000,
        ) {
            let policy = LoginPolicy::default();
            prop_assert!(policy.delay(failures, 5) <= policy.delay(failures + 1, 5));
            prop_assert!(policy.delay(failures, 5) <= policy.max_delay);
            prop_assert!(policy.delay(failures, 0) >= policy.delay(failures, 5));
            let decision = decide(&policy, counts(failures, 0, address), at(elapsed));
            let free = if address >= 20 { 0 } else { 5 };
            let owed = policy.delay(failures, free);
            match decision {
                LoginDecision::Check => prop_assert!(
                    failures == 0 || Duration::from_secs(elapsed.unsigned_abs()) >= owed
                ),
                LoginDecision::Wait(left) => {
                    prop_assert!(failures > 0);
                    prop_assert!(left <= policy.max_delay);
                    prop_assert_eq!(left + Duration::from_secs(elapsed.unsigned_abs()), owed);
                }
            }
        }
    }
}
