//! The engine's wall clock, handed to whatever schedules by its caller.
//!
//! Stored times are unix milliseconds (due times, leases, `failing_since`),
//! so the parts that schedule need the wall time; durations between two
//! moments use tokio's `Instant`. A `Clock` gives the wall time either from
//! the system, or anchored once and then moved by tokio's clock: under
//! `tokio::time::pause` that wall time stands still until the test (or the
//! runtime's auto-advance) moves it, so a retry due in ten minutes is
//! tested in no time and without a race against a real second.

use std::sync::Arc;
use tokio::time::Instant;

/// Where now comes from. Cheap to clone; clones read the same time.
#[derive(Clone, Debug, Default)]
pub struct Clock(Source);

#[derive(Clone, Debug, Default)]
enum Source {
    /// `SystemTime::now()`.
    #[default]
    System,
    /// `wall_ms` at `at`, moving with `tokio::time::Instant` from there.
    Anchored(Arc<Anchor>),
}

#[derive(Debug)]
struct Anchor {
    wall_ms: i64,
    at: Instant,
}

impl Clock {
    /// The system's wall clock: what the engine runs on.
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// The wall time now, moving with tokio's clock from here on (in a
    /// runtime whose time is paused, only as that time is advanced).
    pub fn following_tokio() -> Self {
        Self::starting_at(crate::now_ms())
    }

    /// `wall_ms` now, moving with tokio's clock from here on.
    pub fn starting_at(wall_ms: i64) -> Self {
        Self(Source::Anchored(Arc::new(Anchor {
            wall_ms,
            at: Instant::now(),
        })))
    }

    /// Now, in unix milliseconds.
    pub fn unix_ms(&self) -> i64 {
        match &self.0 {
            Source::System => crate::now_ms(),
            Source::Anchored(a) => {
                let since = i64::try_from(a.at.elapsed().as_millis()).unwrap_or(i64::MAX);
                a.wall_ms.saturating_add(since)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn an_anchored_clock_moves_only_with_tokio_time() {
        let c = Clock::starting_at(1_000);
        let copy = c.clone();
        assert_eq!(c.unix_ms(), 1_000);
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(c.unix_ms(), 1_250);
        assert_eq!(copy.unix_ms(), 1_250, "clones read the same time");
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(c.unix_ms(), 601_250);
    }

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let before = crate::now_ms();
        let now = Clock::system().unix_ms();
        assert!((before..=crate::now_ms()).contains(&now));
    }
}
