//! The sliding-window summary estimator, behaving like client_golang's `prometheus.Summary`
//! (which statsd_exporter builds with `Objectives`, `MaxAge`, `AgeBuckets` and `BufCap`).
//! [`Summary`] is what a series holds: this estimator ([`SlidingSummary`], the default) or,
//! when the gateway is started with `--statsd.summary-estimator=ddsketch`, the relative-error
//! sketch of `summary/sketch.rs` over the same window.
//!
//! How it ages data, as client_golang does:
//! * the window `max_age` is covered by `age_buckets` CKMS streams; every observation goes
//!   into all of them;
//! * every `max_age / age_buckets` (an *interval*, counted from the series' creation) the
//!   head stream, the oldest, is reset and becomes the newest; quantiles are read from the
//!   head, which has seen the last `age_buckets − 1` whole intervals plus the current one;
//! * observations first land in a hot buffer of `buf_cap` entries, which is merged into the
//!   streams when it fills, when an observation arrives in a later interval than the buffer
//!   was started in, and on every snapshot (client_golang flushes on `Write`), so a snapshot
//!   always sees everything observed before it;
//! * a flush merges the buffer *before* rotating, so buffered observations from an interval
//!   that has since ended are still counted by the surviving streams (client_golang's
//!   `flushColdBuf` order);
//! * `_sum` and `_count` are cumulative over the series' life, never windowed;
//! * with nothing in the head stream every quantile is NaN.
//!
//! The merge can wait, as client_golang's does: a full hot buffer is swapped with a cold one
//! and [`observe`](SlidingSummary::observe) says so ([`Observed::MergeDue`]); the caller
//! merges it later with [`merge_due`](SlidingSummary::merge_due), off its busiest moment
//! (client_golang hands it to a goroutine). Whoever comes first merges it: the next swap
//! and every snapshot merge a waiting cold buffer before anything else, so the streams see
//! the same inserts and rotations, in the same order, as a merge done at once, and the
//! quantiles do not depend on when the merge ran. At most one cold buffer waits per series.
//!
//! Differences from client_golang, on purpose:
//! * `observe(v, count)` stores one weighted entry: memory and time do not grow with `count`.
//!   Quantiles stay within the objectives' errors but are not bit-identical to `count`
//!   separate observations once the stream has compressed; `_sum` grows by `v × count` (one
//!   rounding instead of `count`). Weights are never capped; the stream counts in `f64`,
//!   exact up to 2^53 observations per window;
//! * quantiles are returned in the objectives' order (client_golang sorts them);
//! * a zero `max_age`, `age_buckets` or `buf_cap` falls back to client_golang's default
//!   (10 minutes, 5, 500), as `newSummary` does; objectives' quantiles and errors are clamped
//!   into [0, 1] for the estimator (the snapshot reports the configured quantile);
//! * with no objectives there are no streams at all: only `_sum` and `_count` are kept;
//! * a NaN or infinite observation, or one that would make `_sum` overflow, is refused
//!   (client_golang records it and the series shows NaN or ±Inf for good); `_count`
//!   saturates at `u64::MAX`.

mod ckms;
mod sketch;

use std::time::{Duration, Instant};

use crate::store::options::{SummaryEstimator, SummaryOptions};
use ckms::{CkmsStream, Target};
pub use sketch::SketchSummary;

/// client_golang's `DefMaxAge`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);
/// client_golang's `DefAgeBuckets`.
const DEFAULT_AGE_BUCKETS: u32 = 5;
/// client_golang's `DefBufCap`.
const DEFAULT_BUF_CAP: u32 = 500;

/// One summary series' state. Not internally synchronised: the store wraps it in a Mutex.
#[derive(Debug)]
pub struct SlidingSummary {
    /// The configured quantiles, reported in this order.
    quantiles: Vec<f64>,
    /// The estimator's targets (clamped copies of the objectives).
    targets: Vec<Target>,
    /// `age_buckets` streams, or none without objectives.
    streams: Vec<CkmsStream>,
    /// Index of the oldest live stream, the one queried.
    head: usize,
    /// Observations not yet merged into the streams: (value, weight).
    hot: Vec<(f64, u32)>,
    /// A full (or expired) hot buffer swapped out and not merged yet, when `cold_due`.
    cold: Vec<(f64, u32)>,
    cold_due: bool,
    buf_cap: usize,
    /// Where the window's intervals fall.
    intervals: Intervals,
    /// The interval the hot buffer belongs to (client_golang's `hotBufExpTime` is its end).
    hot_interval: u64,
    /// The end of `hot_interval`, cached so `observe` compares instants instead of dividing;
    /// `None` when it is beyond what `Instant` can represent.
    hot_end: Option<Instant>,
    /// The interval the head stream was last rotated for (`headStreamExpTime`'s).
    head_interval: u64,
    totals: Totals,
}

/// `_sum` and `_count`, cumulative over a series' life, kept alike by both estimators.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    pub(crate) sum: f64,
    pub(crate) count: u64,
}

impl Totals {
    /// Adds `value` `count` times; false, and nothing added, when `value` is not finite or
    /// `_sum` would leave the finite range (a NaN or infinite sum would stay for good).
    pub(crate) fn add(&mut self, value: f64, count: u32) -> bool {
        let sum = self.sum + value * f64::from(count);
        if !sum.is_finite() {
            return false;
        }
        if count > 0 {
            self.sum = sum;
            self.count = self.count.saturating_add(u64::from(count));
        }
        true
    }
}

/// What [`SlidingSummary::observe`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Nothing recorded: the value is not finite or `_sum` would overflow.
    Refused,
    /// Recorded.
    Recorded,
    /// Recorded, and a buffer now waits for [`SlidingSummary::merge_due`].
    MergeDue,
}

impl Observed {
    /// Whether the observation was recorded.
    pub fn recorded(self) -> bool {
        self != Observed::Refused
    }
}

/// A summary series' state under the estimator the gateway was started with.
#[derive(Debug)]
pub enum Summary {
    /// client_golang's CKMS streams, statsd_exporter's quantiles bit for bit (the default).
    Ckms(SlidingSummary),
    /// The opt-in relative-error sketch (see [`SketchSummary`]).
    Sketch(SketchSummary),
}

impl Summary {
    /// An empty summary whose first interval starts at `now`.
    pub fn new(opts: &SummaryOptions, estimator: SummaryEstimator, now: Instant) -> Summary {
        match estimator {
            SummaryEstimator::Ckms => Summary::Ckms(SlidingSummary::new(opts, now)),
            SummaryEstimator::DdSketch { relative_accuracy } => {
                Summary::Sketch(SketchSummary::new(opts, relative_accuracy, now))
            }
        }
    }

    /// See [`SlidingSummary::observe`]; the sketch never asks for a merge.
    #[inline]
    pub fn observe(&mut self, value: f64, count: u32, now: Instant) -> Observed {
        match self {
            Summary::Ckms(s) => s.observe(value, count, now),
            Summary::Sketch(s) => s.observe(value, count, now),
        }
    }

    /// See [`SlidingSummary::merge_due`].
    pub fn merge_due(&mut self) {
        if let Summary::Ckms(s) = self {
            s.merge_due();
        }
    }

    /// The quantiles (in the objectives' order), sum and count as of `now`.
    pub fn snapshot(&mut self, now: Instant) -> SummarySnapshot {
        match self {
            Summary::Ckms(s) => s.snapshot(now),
            Summary::Sketch(s) => s.snapshot(now),
        }
    }
}

/// What a scrape shows of one summary series.
#[derive(Clone, Debug, PartialEq)]
pub struct SummarySnapshot {
    /// `(quantile, value)` in the objectives' order; the value is NaN when the window is empty.
    pub quantiles: Vec<(f64, f64)>,
    /// The sum of all observations ever made (always finite: non-finite observations are
    /// refused).
    pub sum: f64,
    /// The number of observations ever made.
    pub count: u64,
}

impl SlidingSummary {
    /// Creates an empty summary whose first interval starts at `now`.
    pub fn new(opts: &SummaryOptions, now: Instant) -> SlidingSummary {
        let (intervals, age_buckets) = Intervals::new(opts, now);
        let buf_cap = if opts.buf_cap == 0 {
            DEFAULT_BUF_CAP
        } else {
            opts.buf_cap
        };
        let targets: Vec<Target> = opts
            .objectives
            .iter()
            .map(|o| Target {
                quantile: o.quantile.clamp(0.0, 1.0),
                error: o.error.clamp(0.0, 1.0),
            })
            .collect();
        let streams = if targets.is_empty() {
            Vec::new()
        } else {
            (0..age_buckets).map(|_| CkmsStream::default()).collect()
        };
        let mut summary = SlidingSummary {
            quantiles: opts.objectives.iter().map(|o| o.quantile).collect(),
            targets,
            streams,
            head: 0,
            // Grows on demand up to `buf_cap` and keeps its capacity: no allocation once warm,
            // and an idle series does not hold buf_cap slots.
            hot: Vec::new(),
            cold: Vec::new(),
            cold_due: false,
            buf_cap: buf_cap as usize,
            intervals,
            hot_interval: 0,
            hot_end: None,
            head_interval: 0,
            totals: Totals::default(),
        };
        summary.hot_end = summary.intervals.end(0);
        summary
    }

    /// Records `value` `count` times (count may be 0 = no-op; statsd sampling sends e.g.
    /// count=10 for @0.1). O(1) amortised whatever `count` is; allocation-free once the
    /// buffers have grown to their working size. Refuses, recording nothing, a `value` that
    /// is not finite or would take `_sum` out of the finite range: a NaN or infinite sum (or
    /// a NaN in the quantile streams) would stay for the series' life.
    ///
    /// [`Observed::MergeDue`] asks for a later [`merge_due`](Self::merge_due); a caller that
    /// never calls it loses nothing (see the module doc), it only pays for the merge at the
    /// next swap or snapshot instead.
    pub fn observe(&mut self, value: f64, count: u32, now: Instant) -> Observed {
        if !self.totals.add(value, count) {
            return Observed::Refused;
        }
        if count == 0 || self.streams.is_empty() {
            return Observed::Recorded;
        }
        let mut due = false;
        if self.hot_end.is_some_and(|end| now > end) {
            self.swap(now);
            due = true;
        }
        self.hot.push((value, count));
        if self.hot.len() >= self.buf_cap {
            self.swap(now);
            due = true;
        }
        if due {
            Observed::MergeDue
        } else {
            Observed::Recorded
        }
    }

    /// Merges the buffer waiting since an [`Observed::MergeDue`], if it still waits.
    pub fn merge_due(&mut self) {
        if !self.cold_due {
            return;
        }
        self.cold_due = false;
        // Sorted once here rather than once per stream: each stream then receives sorted runs.
        self.cold.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        for stream in &mut self.streams {
            stream.insert_sorted(&self.targets, &self.cold);
        }
        self.cold.clear();
        // `hot_interval` is still the one set by the swap: only a swap moves it, and a swap
        // merges a waiting buffer first.
        self.rotate();
    }

    /// The quantiles (in the objectives' order), sum and count as of `now`.
    pub fn snapshot(&mut self, now: Instant) -> SummarySnapshot {
        self.flush(now);
        let targets = &self.targets;
        let quantiles = match self.streams.get_mut(self.head) {
            Some(head) if head.count() > 0.0 => self
                .quantiles
                .iter()
                .map(|&q| (q, head.query(targets, q.clamp(0.0, 1.0))))
                .collect(),
            _ => self.quantiles.iter().map(|&q| (q, f64::NAN)).collect(),
        };
        SummarySnapshot {
            quantiles,
            sum: self.totals.sum,
            count: self.totals.count,
        }
    }

    /// Merges the hot buffer into every stream, then rotates the streams up to `now`
    /// (client_golang's `swapBufs` + `flushColdBuf` + `maybeRotateStreams`).
    fn flush(&mut self, now: Instant) {
        self.swap(now);
        self.merge_due();
    }

    /// Makes the hot buffer the cold one, due for a merge that rotates the streams up to
    /// `now` (client_golang's `swapBufs`, which also waits for the previous merge).
    fn swap(&mut self, now: Instant) {
        self.merge_due();
        // The hot buffer's interval only moves forward, even if `now` goes back.
        let interval = self.intervals.of(now);
        if interval > self.hot_interval {
            self.hot_interval = interval;
            self.hot_end = self.intervals.end(interval);
        }
        // Both keep their capacity: no allocation once warm.
        std::mem::swap(&mut self.hot, &mut self.cold);
        self.cold_due = true;
    }

    /// Resets the head and advances it once per interval elapsed since the last rotation.
    /// After a gap of more than `age_buckets` intervals every stream has been reset and the
    /// rest of the steps only move the head, so the loop is bounded by the stream count.
    fn rotate(&mut self) {
        let len = self.streams.len();
        if len == 0 {
            self.head_interval = self.hot_interval;
            return;
        }
        let steps = self.hot_interval.saturating_sub(self.head_interval);
        let resets = usize::try_from(steps).unwrap_or(usize::MAX).min(len);
        for k in 0..resets {
            self.streams[(self.head + k) % len].reset();
        }
        // `len` fits in u64 and the remainder is below `len`, so both conversions are exact.
        let shift = (steps % len as u64) as usize;
        self.head = (self.head + shift) % len;
        self.head_interval = self.hot_interval;
    }

    /// Total tuples held by all streams plus the hot buffer's length: the memory footprint.
    #[cfg(test)]
    fn internal_samples(&self) -> usize {
        self.hot.len()
            + self.cold.len()
            + self
                .streams
                .iter()
                .map(CkmsStream::tuple_count)
                .sum::<usize>()
    }
}

/// The window's intervals, as client_golang counts them from a series' creation: interval
/// `k` is `(start + k×d, start + (k+1)×d]` with `d = max_age / age_buckets`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Intervals {
    start: Instant,
    /// `d` in nanoseconds; at least 1, so the arithmetic never divides by zero.
    nanos: u128,
}

impl Intervals {
    /// The intervals of a window starting at `now`, and the age bucket count, with
    /// client_golang's defaults for zero `max_age` or `age_buckets`.
    pub(crate) fn new(opts: &SummaryOptions, now: Instant) -> (Intervals, u32) {
        let max_age = if opts.max_age.is_zero() {
            DEFAULT_MAX_AGE
        } else {
            opts.max_age
        };
        let age_buckets = if opts.age_buckets == 0 {
            DEFAULT_AGE_BUCKETS
        } else {
            opts.age_buckets
        };
        let nanos = (max_age.as_nanos() / u128::from(age_buckets)).max(1);
        (Intervals { start: now, nanos }, age_buckets)
    }

    /// The interval `now` falls in: interval k is `(start + k×d, start + (k+1)×d]`, so an
    /// instant exactly on a boundary still belongs to the earlier one (client_golang compares
    /// with `After`). Instants before `start` count as interval 0.
    pub(crate) fn of(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let k = elapsed.div_ceil(self.nanos).saturating_sub(1);
        u64::try_from(k).unwrap_or(u64::MAX)
    }

    /// `start + (interval + 1) × d`, or `None` if that overflows.
    pub(crate) fn end(&self, interval: u64) -> Option<Instant> {
        let nanos = (u128::from(interval) + 1).checked_mul(self.nanos)?;
        let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
        // The remainder is below 10^9, so it fits in u32.
        let sub = (nanos % 1_000_000_000) as u32;
        self.start.checked_add(Duration::new(secs, sub))
    }
}

#[cfg(test)]
mod tests;
