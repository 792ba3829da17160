//! Rates over the last minute from cumulative counters: a small ring of timestamped
//! samples, taken every few seconds, and the rate from the oldest one kept to the values
//! now.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often the status page samples the ingest counters.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// How far back a rate looks.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Timestamped values of `N` cumulative counters over a sliding window. Holds at most
/// `window / interval` samples, so its memory is fixed whatever the traffic.
#[derive(Clone, Debug)]
pub struct RateWindow<const N: usize> {
    window: Duration,
    capacity: usize,
    samples: VecDeque<(Instant, [f64; N])>,
}

/// Per-second rates of the counters of a [`RateWindow`], and the span they were taken over.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rates<const N: usize> {
    /// Increase per second of each counter.
    pub per_second: [f64; N],
    /// The time between the oldest sample used and now.
    pub span: Duration,
}

impl<const N: usize> RateWindow<N> {
    /// A window of `window`, sampled every `interval` (at least one sample is kept).
    pub fn new(window: Duration, interval: Duration) -> Self {
        let capacity = (window.as_millis() / interval.as_millis().max(1)).max(1);
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).min(1024);
        RateWindow {
            window,
            capacity,
            samples: VecDeque::with_capacity(capacity),
        }
    }

    /// Keeps `values` taken `at`, forgetting the oldest sample when full.
    pub fn record(&mut self, at: Instant, values: [f64; N]) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back((at, values));
    }

    /// How many samples are held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True before the first sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The rates from the oldest sample no older than the window to `values` taken `now`;
    /// `None` when no sample is old enough to measure from. A counter that went down (a
    /// reset) counts from zero, as Prometheus's `rate` does.
    pub fn rates(&self, now: Instant, values: [f64; N]) -> Option<Rates<N>> {
        let (from, old) = self
            .samples
            .iter()
            .find(|(at, _)| now.saturating_duration_since(*at) <= self.window)?;
        let span = now.saturating_duration_since(*from);
        if span.is_zero() {
            return None;
        }
        let secs = span.as_secs_f64();
        let mut per_second = [0.0; N];
        for ((rate, new), old) in per_second.iter_mut().zip(values).zip(old) {
            let increase = if new >= *old { new - old } else { new };
            *rate = increase / secs;
        }
        Some(Rates { per_second, span })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_the_increase_since_the_oldest_sample_in_the_window() {
        let t0 = Instant::now();
        let mut w = RateWindow::<2>::new(Duration::from_secs(60), Duration::from_secs(5));
        assert!(w.rates(t0, [0.0, 0.0]).is_none(), "nothing to measure from");
        w.record(t0, [100.0, 0.0]);
        let r = w
            .rates(t0 + Duration::from_secs(10), [200.0, 50.0])
            .unwrap();
        assert_eq!(r.per_second, [10.0, 5.0]);
        assert_eq!(r.span, Duration::from_secs(10));
    }

    #[test]
    fn holds_a_fixed_number_of_samples_and_ignores_stale_ones() {
        let t0 = Instant::now();
        let mut w = RateWindow::<1>::new(Duration::from_secs(60), Duration::from_secs(5));
        for i in 0..100u32 {
            w.record(t0 + Duration::from_secs(5 * u64::from(i)), [f64::from(i)]);
        }
        assert_eq!(w.len(), 12);
        // The oldest kept is sample 88, taken at 440 s; at 500 s it is exactly 60 s old.
        let r = w.rates(t0 + Duration::from_secs(500), [100.0]).unwrap();
        assert_eq!(r.span, Duration::from_secs(60));
        assert!((r.per_second[0] - 12.0 / 60.0).abs() < 1e-9);
        // Long after the last sample, none is recent enough.
        assert!(w.rates(t0 + Duration::from_secs(10_000), [1.0]).is_none());
    }

    #[test]
    fn a_counter_reset_counts_from_zero() {
        let t0 = Instant::now();
        let mut w = RateWindow::<1>::new(Duration::from_secs(60), Duration::from_secs(5));
        w.record(t0, [1000.0]);
        let r = w.rates(t0 + Duration::from_secs(10), [30.0]).unwrap();
        assert_eq!(r.per_second, [3.0]);
    }
}
