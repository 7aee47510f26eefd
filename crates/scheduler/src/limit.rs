//! Adaptive concurrency of one target host: how many attempts may be in
//! flight to it at once, moved by what the host shows.
//!
//! An AIMD limiter with slow start and a latency signal, after TCP's
//! congestion control and the adaptive request concurrency of vector and
//! Netflix's concurrency-limits:
//!
//! - **Grow** while the limit is what holds the host back (work waiting
//!   for it), answers are 2xx and latency stays near its
//!   floor: by one per answer until the first sign of overload (slow start:
//!   the limit doubles each round trip), then by one per round trip.
//! - **Shrink** on overload: timeouts, connection errors, 429 and 503 halve
//!   the limit; latency well above its floor takes a tenth. At most once per
//!   round trip, since the answers of one round trip tell of the same state.
//! - Other answers (4xx, 500, TLS failures) say nothing about load: they
//!   move neither the limit nor the latency floor.
//!
//! The latency floor is the fastest answer of the last one or two windows
//! of [`FLOOR_WINDOW`], so it follows a host whose baseline moves.
//! Hand-made rather than a crate: the limiter is a few lines of arithmetic
//! fed by the scheduler's own lane bookkeeping, with no timers or tasks of
//! its own, which the crates (built around a `tower` service per request)
//! do not fit.

use std::time::Duration;
use tokio::time::Instant;

/// How long the fastest answer seen counts as the latency floor.
const FLOOR_WINDOW: Duration = Duration::from_secs(30);
/// Latency above `floor × LATENCY_FACTOR + LATENCY_SLACK` is a sign of
/// queueing at the host.
const LATENCY_FACTOR: f64 = 2.0;
/// Absolute slack, so that the jitter of sub-millisecond answers on a
/// local network is not taken for queueing (a loopback host sharing two
/// busy cores settled at 52–78 in flight with it, `hookrelay-bench --hosts
/// 1 e2e`).
const LATENCY_SLACK_US: f64 = 10_000.0;
/// Weight of a new answer in the latency average.
const EWMA_WEIGHT: f64 = 0.1;
/// Factor applied to the limit on an overload answer.
const BACKOFF_OVERLOAD: f64 = 0.5;
/// Factor applied to the limit when latency rises.
const BACKOFF_LATENCY: f64 = 0.9;

/// Bounds of a host's limit, from `[delivery]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LimitBounds {
    /// Where a host starts.
    pub(crate) initial: usize,
    /// The least it goes down to.
    pub(crate) min: usize,
    /// The most it goes up to.
    pub(crate) max: usize,
    /// `false`: the limit stays at `initial`.
    pub(crate) adaptive: bool,
}

impl LimitBounds {
    /// Bounds that hold together whatever the configuration said:
    /// `1 ≤ min ≤ initial ≤ max`.
    pub(crate) fn sane(self) -> Self {
        let min = self.min.max(1);
        let max = self.max.max(min);
        Self {
            initial: self.initial.clamp(min, max),
            min,
            max,
            adaptive: self.adaptive,
        }
    }
}

/// What one answer says about the host's load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// A 2xx answer.
    Success,
    /// Timeout, connection error, 429 or 503.
    Overload,
    /// Any other answer: nothing about load.
    Neutral,
}

/// The adaptive limit of one host.
#[derive(Clone, Debug)]
pub(crate) struct HostLimit {
    limit: f64,
    bounds: LimitBounds,
    slow_start: bool,
    /// Fastest answer of the current and the previous window, µs.
    floor_now: f64,
    floor_before: f64,
    window_started: Instant,
    /// Average latency of recent answers, µs (0 before the first).
    ewma_us: f64,
    last_decrease: Option<Instant>,
}

impl HostLimit {
    pub(crate) fn new(bounds: LimitBounds, now: Instant) -> Self {
        let bounds = bounds.sane();
        Self {
            limit: bounds.initial as f64,
            bounds,
            slow_start: true,
            floor_now: f64::INFINITY,
            floor_before: f64::INFINITY,
            window_started: now,
            ewma_us: 0.0,
            last_decrease: None,
        }
    }

    /// Attempts that may be in flight now.
    pub(crate) fn current(&self) -> usize {
        (self.limit as usize).clamp(self.bounds.min, self.bounds.max)
    }

    fn floor_us(&self) -> f64 {
        self.floor_now.min(self.floor_before)
    }

    /// Takes one answer that took `rtt`; `limited` when work for the host
    /// was waiting for a slot as it came.
    pub(crate) fn observe(&mut self, rtt: Duration, signal: Signal, limited: bool, now: Instant) {
        if !self.bounds.adaptive {
            return;
        }
        let us = rtt.as_secs_f64() * 1e6;
        if signal != Signal::Overload {
            if now.saturating_duration_since(self.window_started) >= FLOOR_WINDOW {
                self.floor_before = self.floor_now;
                self.floor_now = f64::INFINITY;
                self.window_started = now;
            }
            self.floor_now = self.floor_now.min(us);
            self.ewma_us = if self.ewma_us == 0.0 {
                us
            } else {
                (1.0 - EWMA_WEIGHT) * self.ewma_us + EWMA_WEIGHT * us
            };
        }
        match signal {
            Signal::Neutral => {}
            Signal::Overload => self.decrease(BACKOFF_OVERLOAD, now),
            Signal::Success => {
                if self.ewma_us > self.floor_us() * LATENCY_FACTOR + LATENCY_SLACK_US {
                    self.decrease(BACKOFF_LATENCY, now);
                } else if limited {
                    // The limit is what holds the host back: try more.
                    self.limit += if self.slow_start {
                        1.0
                    } else {
                        1.0 / self.limit.max(1.0)
                    };
                    self.limit = self.limit.min(self.bounds.max as f64);
                }
            }
        }
    }

    fn decrease(&mut self, factor: f64, now: Instant) {
        self.slow_start = false;
        // The answers of one round trip tell of the same moment: one
        // decrease per round trip (at least 10 ms apart).
        let round_trip = Duration::from_secs_f64((self.ewma_us / 1e6).max(0.010));
        if self
            .last_decrease
            .is_some_and(|at| now.saturating_duration_since(at) < round_trip)
        {
            return;
        }
        self.last_decrease = Some(now);
        self.limit = (self.limit * factor).max(self.bounds.min as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: LimitBounds = LimitBounds {
        initial: 16,
        min: 2,
        max: 256,
        adaptive: true,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Answers `n` attempts at the limit, each `rtt` long, 1 ms apart.
    fn run(l: &mut HostLimit, now: &mut Instant, n: usize, rtt: Duration, signal: Signal) {
        for _ in 0..n {
            *now += ms(1);
            l.observe(rtt, signal, true, *now);
        }
    }

    #[test]
    fn a_fast_host_grows_to_the_ceiling() {
        let mut now = Instant::now();
        let mut l = HostLimit::new(BOUNDS, now);
        run(&mut l, &mut now, 300, ms(1), Signal::Success);
        assert_eq!(l.current(), 256);
    }

    #[test]
    fn a_host_that_is_not_using_its_limit_does_not_grow_it() {
        let mut now = Instant::now();
        let mut l = HostLimit::new(BOUNDS, now);
        for _ in 0..1000 {
            now += ms(1);
            l.observe(ms(1), Signal::Success, false, now);
        }
        assert_eq!(l.current(), 16);
    }

    #[test]
    fn overload_halves_once_per_round_trip_down_to_the_floor() {
        let mut now = Instant::now();
        let mut l = HostLimit::new(BOUNDS, now);
        run(&mut l, &mut now, 50, ms(5), Signal::Success);
        let grown = l.current();
        assert!(grown > 16, "{grown}");
        // A burst of 429s within one round trip: one halving.
        for _ in 0..5 {
            l.observe(ms(5), Signal::Overload, true, now);
        }
        assert_eq!(l.current(), grown / 2);
        // Round trip after round trip of timeouts: down to the floor.
        for _ in 0..20 {
            now += ms(50);
            l.observe(ms(1000), Signal::Overload, true, now);
        }
        assert_eq!(l.current(), 2);
    }

    #[test]
    fn after_overload_growth_is_additive() {
        let mut now = Instant::now();
        let mut l = HostLimit::new(BOUNDS, now);
        l.observe(ms(1), Signal::Overload, true, now);
        assert_eq!(l.current(), 8);
        // A round trip's worth of answers at the limit (nine, as the limit
        // grows meanwhile): one more slot, not nine.
        run(&mut l, &mut now, 9, ms(1), Signal::Success);
        assert_eq!(l.current(), 9);
    }

    #[test]
    fn rising_latency_shrinks_the_limit() {
        let mut now = Instant::now();
        let mut l = HostLimit::new(BOUNDS, now);
        run(&mut l, &mut now, 100, ms(2), Signal::Success);
        let grown = l.current();
        // The host slows to 20 ms an answer: the average climbs past twice
        // the floor plus slack, and the limit comes down.
        for _ in 0..200 {
            now += ms(20);
            l.observe(ms(20), Signal::Success, true, now);
        }
        assert!(l.current() < grown / 4, "{} vs {grown}", l.current());
        assert!(l.current() >= 2);
    }

    #[test]
    fn the_floor_follows_a_host_whose_baseline_moved() {
        let mut now = Instant::now();
        let mut l = HostLimit::new(BOUNDS, now);
        run(&mut l, &mut now, 20, ms(1), Signal::Success);
        // From now on the host answers in 30 ms at best (moved further
        // away): after two floor windows that is its new normal, and it
        // grows again.
        for _ in 0..100 {
            now += ms(1000);
            l.observe(ms(30), Signal::Success, true, now);
        }
        let settled = l.current();
        run(&mut l, &mut now, 200, ms(30), Signal::Success);
        assert!(l.current() > settled, "{} vs {settled}", l.current());
    }

    #[test]
    fn other_answers_move_nothing_and_a_fixed_limit_stays() {
        let mut now = Instant::now();
        let mut l = HostLimit::new(BOUNDS, now);
        run(&mut l, &mut now, 100, ms(1), Signal::Neutral);
        assert_eq!(l.current(), 16);
        let mut fixed = HostLimit::new(
            LimitBounds {
                adaptive: false,
                ..BOUNDS
            },
            now,
        );
        run(&mut fixed, &mut now, 100, ms(1), Signal::Success);
        run(&mut fixed, &mut now, 10, ms(1), Signal::Overload);
        assert_eq!(fixed.current(), 16);
        let odd = LimitBounds {
            initial: 1000,
            min: 0,
            max: 8,
            adaptive: true,
        }
        .sane();
        assert_eq!((odd.initial, odd.min, odd.max), (8, 1, 8));
    }
}
