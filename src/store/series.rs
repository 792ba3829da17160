//! One series' state and the lock-free updates the hot path performs on it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::native::NativeBuckets;
use super::options::{HistogramOptions, SummaryEstimator, SummaryOptions};
use super::summary::{Observed, Summary, SummarySnapshot};

/// An `f64` updated atomically (bit pattern in an `AtomicU64`).
#[derive(Debug, Default)]
pub(crate) struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub(crate) fn new(v: f64) -> Self {
        AtomicF64(AtomicU64::new(v.to_bits()))
    }

    #[inline]
    pub(crate) fn load(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    #[inline]
    pub(crate) fn store(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn add(&self, v: f64) {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + v).to_bits();
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Adds `v` unless the result would not be finite (an overflow past `f64::MAX`, or a
    /// non-finite `v`); false, and nothing stored, when refused. A running total must never
    /// become `+Inf` or NaN: no later update could bring it back.
    #[inline]
    pub(crate) fn add_finite(&self, v: f64) -> bool {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let next = f64::from_bits(cur) + v;
            if !next.is_finite() {
                return false;
            }
            match self.0.compare_exchange_weak(
                cur,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// Adds `n` to a count, stopping at `u64::MAX` instead of wrapping to a small number.
#[inline]
pub(crate) fn saturating_add(count: &AtomicU64, n: u64) {
    // A CAS loop costs the same locked instruction as `fetch_add` when uncontended.
    let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
        Some(c.saturating_add(n))
    });
}

/// A histogram's buckets: per-bucket (not cumulative) counts so an observation touches one
/// bucket; the exposition accumulates.
#[derive(Debug)]
pub(crate) struct HistogramCell {
    pub(crate) bounds: Box<[f64]>,
    /// `bounds.len() + 1` counters; the last is the `+Inf` overflow bucket.
    pub(crate) counts: Box<[AtomicU64]>,
    pub(crate) sum: AtomicF64,
    /// Native buckets, when the family has them. Their lock is then held while the classic
    /// counts and the sum are updated too, so a scrape (which holds it while reading them
    /// all) sees one count for both layouts: Prometheus checks a native histogram's count
    /// against its buckets.
    native: Option<Mutex<NativeBuckets>>,
}

/// A histogram read at one instant.
#[derive(Debug)]
pub(crate) struct HistogramSnapshot {
    /// Cumulative classic counts, bounds order, then `+Inf` (the total count).
    pub(crate) cumulative: Vec<u64>,
    pub(crate) sum: f64,
    pub(crate) native: Option<NativeBuckets>,
}

impl HistogramCell {
    fn new(opts: &HistogramOptions) -> Self {
        let bounds: Box<[f64]> = opts.buckets.clone().into_boxed_slice();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        let native = opts.native.and_then(|n| {
            n.schema()
                .map(|schema| Mutex::new(NativeBuckets::new(schema, n.max_buckets)))
        });
        HistogramCell {
            bounds,
            counts,
            sum: AtomicF64::new(0.0),
            native,
        }
    }

    /// Observes finite `v` `n` times; false, and nothing recorded, when the sum would
    /// leave the finite range.
    #[inline]
    fn observe(&self, v: f64, n: u32) -> bool {
        let Some(native) = &self.native else {
            return self.observe_classic(v, n);
        };
        // A poisoned lock means a panic mid-update of plain counts; keep counting.
        let mut native = native.lock().unwrap_or_else(|e| e.into_inner());
        if !self.observe_classic(v, n) {
            return false;
        }
        native.observe(v, u64::from(n));
        true
    }

    #[inline]
    fn observe_classic(&self, v: f64, n: u32) -> bool {
        // The sum first: a refused observation must not show in a bucket.
        if !self.sum.add_finite(v * f64::from(n)) {
            return false;
        }
        // Prometheus buckets are upper-inclusive: v lands in the first bound >= v.
        let idx = self.bounds.partition_point(|b| *b < v);
        saturating_add(&self.counts[idx], u64::from(n));
        true
    }

    /// Classic and native buckets and the sum, consistent with each other.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let Some(native) = &self.native else {
            let (cumulative, sum) = self.classic_snapshot();
            return HistogramSnapshot {
                cumulative,
                sum,
                native: None,
            };
        };
        let native = native.lock().unwrap_or_else(|e| e.into_inner());
        let (cumulative, sum) = self.classic_snapshot();
        HistogramSnapshot {
            cumulative,
            sum,
            native: Some(native.clone()),
        }
    }

    /// Cumulative bucket counts (bounds order, then +Inf) and the sum.
    fn classic_snapshot(&self) -> (Vec<u64>, f64) {
        let mut acc = 0u64;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                acc = acc.saturating_add(c.load(Ordering::Relaxed));
                acc
            })
            .collect();
        (cumulative, self.sum.load())
    }
}

/// The value part of a series.
#[derive(Debug)]
pub(crate) enum SeriesValue {
    Counter(AtomicF64),
    Gauge(AtomicF64),
    /// Boxed like the summary, to keep scalar series small.
    Histogram(Box<HistogramCell>),
    /// Boxed: the estimator is ~200 bytes, and inline it would make every counter that big.
    Summary(Box<Mutex<Summary>>),
}

/// A series: its sorted labels, its value, and what TTL expiry needs.
#[derive(Debug)]
pub struct Series {
    pub(crate) labels: super::Labels,
    pub(crate) value: SeriesValue,
    /// Coarse-clock milliseconds of the last update.
    pub(crate) last_update: AtomicU64,
    /// Milliseconds without update after which the series expires; 0 = never.
    pub(crate) ttl_ms: AtomicU64,
    /// Set once the series has been removed from the store; holders must re-resolve.
    pub(crate) dead: AtomicBool,
}

impl Series {
    pub(crate) fn counter(labels: super::Labels, now: u64, ttl_ms: u64) -> Self {
        Self::with(
            labels,
            SeriesValue::Counter(AtomicF64::new(0.0)),
            now,
            ttl_ms,
        )
    }

    pub(crate) fn gauge(labels: super::Labels, now: u64, ttl_ms: u64) -> Self {
        Self::with(labels, SeriesValue::Gauge(AtomicF64::new(0.0)), now, ttl_ms)
    }

    pub(crate) fn histogram(
        labels: super::Labels,
        opts: &HistogramOptions,
        now: u64,
        ttl_ms: u64,
    ) -> Self {
        Self::with(
            labels,
            SeriesValue::Histogram(Box::new(HistogramCell::new(opts))),
            now,
            ttl_ms,
        )
    }

    pub(crate) fn summary(
        labels: super::Labels,
        opts: &SummaryOptions,
        estimator: SummaryEstimator,
        now: u64,
        ttl_ms: u64,
        at: std::time::Instant,
    ) -> Self {
        let s = Summary::new(opts, estimator, at);
        Self::with(
            labels,
            SeriesValue::Summary(Box::new(Mutex::new(s))),
            now,
            ttl_ms,
        )
    }

    fn with(labels: super::Labels, value: SeriesValue, now: u64, ttl_ms: u64) -> Self {
        Series {
            labels,
            value,
            last_update: AtomicU64::new(now),
            ttl_ms: AtomicU64::new(ttl_ms),
            dead: AtomicBool::new(false),
        }
    }

    /// The series' labels, sorted by name.
    pub fn labels(&self) -> &[(Box<str>, Box<str>)] {
        &self.labels
    }

    /// The coarse time after which the series has expired, if it has a TTL: `ttl` after
    /// its last update, plus `lag`, the most its stamp may lag real time
    /// ([`super::CoarseClock::lag_ms`]), so it never expires early.
    #[inline]
    pub(crate) fn deadline(&self, lag: u64) -> Option<u64> {
        match self.ttl_ms.load(Ordering::Relaxed) {
            0 => None,
            ttl => Some(
                self.last_update
                    .load(Ordering::Relaxed)
                    .saturating_add(ttl)
                    .saturating_add(lag),
            ),
        }
    }

    /// Hints that an update of this series comes soon: a worker handling a packed datagram
    /// across many series issues these for the lines ahead, so their cache misses overlap.
    #[inline]
    pub(crate) fn prefetch(&self) {
        crate::prefetch::prefetch(self);
    }

    /// True once TTL expiry removed the series; an update to it would be lost.
    #[inline]
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Stamps the series as updated at coarse time `now` (see [`super::CoarseClock`]).
    #[inline]
    pub fn touch(&self, now: u64) {
        // Only write when the coarse time moved: a hot series then stays in every core's
        // cache in shared state instead of bouncing on each event.
        if self.last_update.load(Ordering::Relaxed) != now {
            self.last_update.store(now, Ordering::Relaxed);
        }
    }

    /// Adds to a counter; false, and nothing stored, when the total would leave the finite
    /// range (or the series is not a counter). Negative increments are refused by the caller.
    #[inline]
    pub fn counter_add(&self, v: f64) -> bool {
        match &self.value {
            SeriesValue::Counter(c) => c.add_finite(v),
            _ => false,
        }
    }

    /// Sets a gauge, or adds to it when `relative`.
    #[inline]
    pub fn gauge_update(&self, v: f64, relative: bool) {
        if let SeriesValue::Gauge(g) = &self.value {
            if relative { g.add(v) } else { g.store(v) }
        }
    }

    /// Observes `v` `n` times into a histogram or summary. Refused, and nothing recorded,
    /// when `v` is not finite or the `_sum` would leave the finite range (or the series is
    /// not an observer): a NaN or infinite `_sum` would stay so for the series' life.
    /// [`Observed::MergeDue`]: a summary's buffer waits for [`Series::merge_due`].
    #[inline]
    pub fn observe(&self, v: f64, n: u32, clock: &super::clock::CoarseClock, now: u64) -> Observed {
        if !v.is_finite() {
            return Observed::Refused;
        }
        match &self.value {
            SeriesValue::Histogram(h) => {
                if h.observe(v, n) {
                    Observed::Recorded
                } else {
                    Observed::Refused
                }
            }
            SeriesValue::Summary(s) => {
                // A poisoned lock means a panic inside the estimator; keep serving with
                // its state rather than losing the series.
                let mut guard = s.lock().unwrap_or_else(|e| e.into_inner());
                guard.observe(v, n, clock.instant_at(now))
            }
            SeriesValue::Counter(_) | SeriesValue::Gauge(_) => Observed::Refused,
        }
    }

    /// Merges a summary's buffer left waiting by [`Series::observe`]; nothing for any other
    /// series, or when a swap or scrape has merged it already.
    pub fn merge_due(&self) {
        if let SeriesValue::Summary(s) = &self.value {
            s.lock().unwrap_or_else(|e| e.into_inner()).merge_due();
        }
    }

    /// A counter's or gauge's current value; NaN for observers.
    pub fn scalar(&self) -> f64 {
        match &self.value {
            SeriesValue::Counter(c) | SeriesValue::Gauge(c) => c.load(),
            _ => f64::NAN,
        }
    }

    /// Histogram bounds, cumulative counts (bounds order, then +Inf) and sum.
    pub(crate) fn histogram_snapshot(&self) -> Option<(&[f64], Vec<u64>, f64)> {
        self.histogram_full_snapshot()
            .map(|(bounds, s)| (bounds, s.cumulative, s.sum))
    }

    /// Histogram bounds and everything else, native buckets included.
    pub(crate) fn histogram_full_snapshot(&self) -> Option<(&[f64], HistogramSnapshot)> {
        match &self.value {
            SeriesValue::Histogram(h) => Some((&h.bounds, h.snapshot())),
            _ => None,
        }
    }

    pub(crate) fn summary_snapshot(&self, at: std::time::Instant) -> Option<SummarySnapshot> {
        match &self.value {
            SeriesValue::Summary(s) => {
                Some(s.lock().unwrap_or_else(|e| e.into_inner()).snapshot(at))
            }
            _ => None,
        }
    }
}
