//! Retry strategies: how many attempts, how long between them, which errors, and where the retry goes.

use super::JobError;
use chrono::{DateTime, Utc};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How long to wait before attempt `n + 1` after attempt `n` failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// The same wait every time.
    Constant(Duration),
    /// `step × attempt`.
    Linear(Duration),
    /// `base × 2^(attempt − 1)`, at most `max`.
    Exponential {
        /// The first wait.
        base: Duration,
        /// The longest wait.
        max: Duration,
    },
}

impl Backoff {
    fn delay(self, attempt: u32) -> Duration {
        match self {
            Backoff::Constant(d) => d,
            Backoff::Linear(step) => step.saturating_mul(attempt.max(1)),
            Backoff::Exponential { base, max } => {
                let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
                base.saturating_mul(factor).min(max)
            }
        }
    }
}

/// Where and when a failed job runs again. Fields left `None` keep the job's current values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetryDecision {
    /// When to run it again; now when `None`.
    pub at: Option<DateTime<Utc>>,
    /// Move it to this queue.
    pub queue: Option<String>,
    /// Give it this priority.
    pub priority: Option<i32>,
    /// Give it this lock.
    pub lock: Option<String>,
}

type Decide = Arc<dyn Fn(u32, &JobError) -> Option<RetryDecision> + Send + Sync>;

/// A task's retry strategy.
///
/// The [default](Self::default) retries: 20 attempts in all, waiting 10 s after the first failure and
/// twice as long after each next one, at most 6 h, each wait spread randomly by ±20 % so that jobs failed
/// together do not come back together. A job that keeps failing thus fails for good about two days after
/// its first attempt (about 12 h of doubling waits, then seven of 6 h) — long enough to ride out an outage
/// of whatever it calls, in line with River's 25 attempts and Oban's 20. [`RetryStrategy::none`] runs a
/// job once.
///
/// ```
/// use jobq_core::worker::{Backoff, RetryStrategy};
/// use std::time::Duration;
///
/// let strategy = RetryStrategy::new(5)
///     .backoff(Backoff::Exponential { base: Duration::from_secs(1), max: Duration::from_secs(300) })
///     .jitter(0.2)
///     .only_kinds(["timeout", "unavailable"]);
/// ```
#[derive(Clone)]
pub struct RetryStrategy {
    max_attempts: u32,
    backoff: Backoff,
    jitter: f64,
    kinds: Option<Vec<String>>,
    decide: Option<Decide>,
}

impl fmt::Debug for RetryStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryStrategy")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("jitter", &self.jitter)
            .field("kinds", &self.kinds)
            .field("custom", &self.decide.is_some())
            .finish()
    }
}

impl Default for RetryStrategy {
    /// [`DEFAULT_MAX_ATTEMPTS`](Self::DEFAULT_MAX_ATTEMPTS) attempts with
    /// [`DEFAULT_BACKOFF`](Self::DEFAULT_BACKOFF) and [`DEFAULT_JITTER`](Self::DEFAULT_JITTER).
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_ATTEMPTS)
            .backoff(Self::DEFAULT_BACKOFF)
            .jitter(Self::DEFAULT_JITTER)
    }
}

impl RetryStrategy {
    /// Attempts in all under the [default](Self::default) strategy.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;

    /// The default strategy's backoff: 10 s doubling, at most 6 h.
    pub const DEFAULT_BACKOFF: Backoff = Backoff::Exponential {
        base: Duration::from_secs(10),
        max: Duration::from_secs(6 * 60 * 60),
    };

    /// The default strategy's jitter: each wait spread by up to 20 % either way.
    pub const DEFAULT_JITTER: f64 = 0.2;

    /// No retries: one attempt.
    pub fn none() -> Self {
        Self::new(1)
    }

    /// At most `max_attempts` attempts in all, retried at once unless a backoff is set.
    pub fn new(max_attempts: u32) -> Self {
        Self {
            max_attempts,
            backoff: Backoff::Constant(Duration::ZERO),
            jitter: 0.0,
            kinds: None,
            decide: None,
        }
    }

    /// The wait between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Spreads each wait randomly by up to this fraction (0.0 to 1.0) either way.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// Retries only errors of these kinds (see [`JobError::kind`]); others fail at once.
    pub fn only_kinds<S: Into<String>>(mut self, kinds: impl IntoIterator<Item = S>) -> Self {
        self.kinds = Some(kinds.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the time computed from the backoff with a decision of your own, which may also move the job
    /// to another queue, priority or lock, or refuse the retry (`None`). It is asked only while attempts
    /// remain and the error is retryable.
    pub fn decide(
        mut self,
        decide: impl Fn(u32, &JobError) -> Option<RetryDecision> + Send + Sync + 'static,
    ) -> Self {
        self.decide = Some(Arc::new(decide));
        self
    }

    /// The most attempts a job gets.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// What to do after attempt `attempt` (1-based) failed with `error`: retry, or `None` to fail the job.
    pub fn after_failure(&self, attempt: u32, error: &JobError) -> Option<RetryDecision> {
        if attempt >= self.max_attempts || !error.is_retryable() {
            return None;
        }
        if let Some(kinds) = &self.kinds
            && !error
                .kind()
                .is_some_and(|k| kinds.iter().any(|allowed| allowed == k))
        {
            return None;
        }
        if let Some(decide) = &self.decide {
            return decide(attempt, error);
        }
        let delay = self.backoff.delay(attempt);
        let delay = if self.jitter > 0.0 {
            let factor = 1.0 + self.jitter * (2.0 * fastrand::f64() - 1.0);
            Duration::try_from_secs_f64(delay.as_secs_f64() * factor).unwrap_or(Duration::MAX)
        } else {
            delay
        };
        // Any delay is accepted: one beyond what PostgreSQL stores retries "practically never".
        Some(RetryDecision {
            at: Some(crate::limits::after(delay)),
            ..RetryDecision::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoffs_grow_as_named() {
        let s = Duration::from_secs;
        assert_eq!(Backoff::Constant(s(3)).delay(5), s(3));
        assert_eq!(Backoff::Linear(s(2)).delay(3), s(6));
        let exp = Backoff::Exponential {
            base: s(1),
            max: s(10),
        };
        assert_eq!(
            [1, 2, 3, 4, 5].map(|a| exp.delay(a)),
            [s(1), s(2), s(4), s(8), s(10)]
        );
        assert_eq!(exp.delay(1000), s(10), "no overflow");
    }

    #[test]
    fn attempts_kinds_and_permanent_errors_limit_retries() {
        let strategy = RetryStrategy::new(3).only_kinds(["timeout"]);
        let timeout = JobError::new("slow").with_kind("timeout");
        assert!(strategy.after_failure(1, &timeout).is_some());
        assert!(strategy.after_failure(2, &timeout).is_some());
        assert!(
            strategy.after_failure(3, &timeout).is_none(),
            "three attempts in all"
        );
        assert!(
            strategy.after_failure(1, &JobError::new("other")).is_none(),
            "not a chosen kind"
        );
        assert!(
            RetryStrategy::new(9)
                .after_failure(1, &JobError::permanent("no"))
                .is_none()
        );
        assert!(
            RetryStrategy::none()
                .after_failure(1, &JobError::new("x"))
                .is_none()
        );
    }

    #[test]
    fn huge_delays_retry_practically_never_and_never_panic() {
        for strategy in [
            RetryStrategy::new(5).backoff(Backoff::Constant(Duration::MAX)),
            RetryStrategy::new(5)
                .backoff(Backoff::Constant(Duration::MAX))
                .jitter(0.1),
            RetryStrategy::new(5).backoff(Backoff::Linear(Duration::MAX)),
        ] {
            let at = strategy.after_failure(3, &JobError::new("x")).unwrap().at;
            assert_eq!(at, Some(crate::limits::LATEST), "{strategy:?}");
        }
    }

    #[test]
    fn the_default_retries_for_about_two_days_with_capped_waits() {
        let strategy = RetryStrategy::default();
        assert_eq!(strategy.max_attempts(), RetryStrategy::DEFAULT_MAX_ATTEMPTS);
        let waits: Vec<Duration> = (1..RetryStrategy::DEFAULT_MAX_ATTEMPTS)
            .map(|a| RetryStrategy::DEFAULT_BACKOFF.delay(a))
            .collect();
        assert_eq!(waits[0], Duration::from_secs(10));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(6 * 60 * 60));
        let total: Duration = waits.iter().sum();
        let hours = total.as_secs() / 3600;
        assert!((40..=60).contains(&hours), "{hours} h in all");
        let error = JobError::new("x");
        assert!(strategy.after_failure(1, &error).is_some());
        assert!(
            strategy
                .after_failure(RetryStrategy::DEFAULT_MAX_ATTEMPTS, &error)
                .is_none()
        );
        assert!(
            strategy
                .after_failure(1, &JobError::permanent("no"))
                .is_none()
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let strategy = RetryStrategy::new(5)
            .backoff(Backoff::Constant(Duration::from_secs(100)))
            .jitter(0.1);
        for _ in 0..50 {
            let at = strategy
                .after_failure(1, &JobError::new("x"))
                .unwrap()
                .at
                .unwrap();
            let secs = (at - Utc::now()).num_milliseconds() as f64 / 1000.0;
            assert!((89.0..=111.0).contains(&secs), "{secs}");
        }
    }
}
