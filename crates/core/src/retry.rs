//! Retry schedule maths: how long to wait before retry number `n`.
//! The classifier (what counts as a failure, `Retry-After`) lives in the worker.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Backoff shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// Retry n waits n × base (1 s, 2 s, 3 s … by default).
    #[default]
    Incremental,
    /// Retry n waits base × 2^(n-1), ±20 % jitter.
    Exponential,
}

/// A webhook's retry schedule (`retry_policy` in the API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Shape of the schedule.
    pub backoff: Backoff,
    /// Base delay in milliseconds (default 1000).
    pub base_delay_ms: u64,
    /// Cap on any single delay, `Retry-After` included, in milliseconds (default 1 h).
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            backoff: Backoff::Incremental,
            base_delay_ms: 1000,
            max_delay_ms: 3_600_000,
        }
    }
}

impl RetryPolicy {
    /// Largest accepted `max_delay_ms` (7 days).
    pub const MAX_DELAY_LIMIT_MS: u64 = 7 * 24 * 3_600_000;

    /// Delay before retry number `n` (1-based), with `jitter` in `[-1, 1]`
    /// scaling the ±20 % of exponential backoff; capped by `max_delay_ms`.
    pub fn delay_with_jitter_ms(&self, n: u32, jitter: f64) -> u64 {
        let n = n.max(1);
        let raw = match self.backoff {
            Backoff::Incremental => self.base_delay_ms.saturating_mul(u64::from(n)),
            Backoff::Exponential => {
                let exp = self
                    .base_delay_ms
                    .saturating_mul(1u64.checked_shl(n - 1).unwrap_or(u64::MAX));
                let j = 1.0 + 0.2 * jitter.clamp(-1.0, 1.0);
                // f64 covers every delay we cap at 7 days exactly enough.
                (exp as f64 * j) as u64
            }
        };
        raw.min(self.max_delay_ms)
    }

    /// Delay before retry `n`. A receiver's `Retry-After` (already in
    /// milliseconds) is honoured as asked, shorter or longer than the
    /// backoff: the receiver knows when it will be back. Always within the cap.
    pub fn next_delay_ms(&self, n: u32, retry_after_ms: Option<u64>) -> u64 {
        match retry_after_ms {
            Some(ra) => ra.min(self.max_delay_ms),
            None => {
                let jitter = rand::rng().random_range(-1.0..=1.0);
                self.delay_with_jitter_ms(n, jitter)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_default_is_1_2_3_seconds() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_with_jitter_ms(1, 0.7), 1000);
        assert_eq!(p.delay_with_jitter_ms(2, 0.7), 2000);
        assert_eq!(p.delay_with_jitter_ms(3, -0.3), 3000);
    }

    #[test]
    fn exponential_doubles_with_bounded_jitter_and_cap() {
        let p = RetryPolicy {
            backoff: Backoff::Exponential,
            base_delay_ms: 100,
            max_delay_ms: 1000,
        };
        assert_eq!(p.delay_with_jitter_ms(1, 0.0), 100);
        assert_eq!(p.delay_with_jitter_ms(3, 0.0), 400);
        assert_eq!(p.delay_with_jitter_ms(3, 1.0), 480);
        assert_eq!(p.delay_with_jitter_ms(3, -1.0), 320);
        assert_eq!(p.delay_with_jitter_ms(5, 0.0), 1000);
        assert_eq!(p.delay_with_jitter_ms(80, 0.0), 1000);
        for _ in 0..100 {
            let d = p.next_delay_ms(2, None);
            assert!((160..=240).contains(&d), "{d}");
        }
    }

    #[test]
    fn retry_after_is_honoured_within_the_cap() {
        let p = RetryPolicy::default();
        // Longer and shorter than the 1 s backoff alike.
        assert_eq!(p.next_delay_ms(1, Some(5000)), 5000);
        assert_eq!(p.next_delay_ms(1, Some(10)), 10);
        assert_eq!(p.next_delay_ms(1, Some(u64::MAX)), 3_600_000);
    }
}
