//! The opt-in fast summary estimator (`--statsd.summary-estimator=ddsketch`): per age bucket,
//! counts in logarithmic buckets of relative width `α`, the DDSketch algorithm (Masson, Rim
//! and Lee, VLDB 2019), instead of client_golang's CKMS streams.
//!
//! What it trades, and why it is opt-in:
//! * it is not bit-identical to statsd_exporter: a quantile is a bucket's representative, so
//!   its *value* is within a relative `α` of the exact quantile of the window (the element of
//!   rank `⌊q·(n−1)⌋` in sorted order), then clamped into the window's minimum and maximum.
//!   CKMS instead bounds the *rank* error by each objective's error (±5% of ranks for the
//!   default median); the objectives' errors are not used here;
//! * an observation costs a logarithm and an increment, with nothing to merge later, so it
//!   is several times cheaper than five CKMS streams, and memory is a few counters per
//!   distinct order of magnitude instead of ~150 KB per series;
//! * the window ages as client_golang's: one bucket set per interval of
//!   `max_age / age_buckets`, a quantile reads the current interval and the
//!   `age_buckets − 1` before it, the same span the CKMS head stream covers. There is no hot
//!   buffer: an observation counts from the moment it is made;
//! * values with a magnitude below [`MIN_INDEXABLE`] count as zero, so the relative bound
//!   becomes an absolute error of at most that much for them;
//! * each bucket set holds at most [`max_buckets`] buckets per sign; past that the lowest
//!   magnitudes are folded into one bucket (DDSketch's collapsing), which only loosens the
//!   bound for quantiles falling into the folded range. With the default `α` of 1% that
//!   range starts beyond twelve orders of magnitude between a window's smallest and largest
//!   value.
//!
//! `_sum` and `_count`, refused values and empty windows behave exactly as for CKMS.

use std::time::Instant;

use super::{Intervals, Observed, SummarySnapshot, Totals};
use crate::store::options::SummaryOptions;

/// Magnitudes below this count as zero (DDSketch's minimum indexable value).
pub const MIN_INDEXABLE: f64 = 1e-9;

/// The ratio between a bucket set's largest and smallest magnitude before its lowest buckets
/// are folded: twelve orders of magnitude.
const FOLD_SPAN: f64 = 1e12;

/// The bucket count per sign of one interval's bucket set, for this relative accuracy.
pub fn max_buckets(relative_accuracy: f64) -> usize {
    let ln_gamma = Mapping::new(relative_accuracy).ln_gamma;
    // Finite and small for any accuracy the flag admits; the cast saturates otherwise.
    (FOLD_SPAN.ln() / ln_gamma).ceil() as usize + 1
}

/// Index `i` covers magnitudes in `(γ^(i−1), γ^i]`, `γ = (1+α)/(1−α)`; its representative
/// `2γ^i/(γ+1)` is within `α` of every magnitude in it.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    gamma: f64,
    ln_gamma: f64,
    inv_ln_gamma: f64,
}

impl Mapping {
    fn new(relative_accuracy: f64) -> Mapping {
        let a = relative_accuracy;
        let gamma = (1.0 + a) / (1.0 - a);
        let ln_gamma = gamma.ln();
        Mapping {
            gamma,
            ln_gamma,
            inv_ln_gamma: 1.0 / ln_gamma,
        }
    }

    /// The bucket of a magnitude of at least [`MIN_INDEXABLE`].
    #[inline]
    fn index(&self, magnitude: f64) -> i32 {
        // |ln| ≤ 710 for finite doubles, so the index fits an i32 for any α the flag admits.
        (magnitude.ln() * self.inv_ln_gamma).ceil() as i32
    }

    fn value(&self, index: i32) -> f64 {
        2.0 * (f64::from(index) * self.ln_gamma).exp() / (self.gamma + 1.0)
    }
}

/// Dense counts for a run of consecutive indexes.
#[derive(Clone, Debug, Default)]
struct Buckets {
    /// The index of `counts[0]`.
    offset: i32,
    counts: Vec<u64>,
    total: u64,
}

impl Buckets {
    #[inline]
    fn add(&mut self, index: i32, n: u64, max: usize) {
        self.total = self.total.saturating_add(n);
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(n);
            return;
        }
        let at = i64::from(index) - i64::from(self.offset);
        if let Ok(at) = usize::try_from(at)
            && let Some(c) = self.counts.get_mut(at)
        {
            *c = c.saturating_add(n);
            return;
        }
        self.add_outside(index, n, max);
    }

    /// An index outside the current run: grow the run, folding the lowest indexes into the
    /// lowest kept one when it would be longer than `max`.
    #[cold]
    fn add_outside(&mut self, index: i32, n: u64, max: usize) {
        let max = max.max(1);
        let low = self.offset;
        // The run is non-empty here and at most `max` (≤ i32::MAX) long.
        let high = low + (self.counts.len() as i32 - 1);
        if index < low {
            // Lower than everything: extend downwards, or fold into the lowest kept bucket.
            let want = i64::from(high) - i64::from(index) + 1;
            if want as u64 > max as u64 {
                self.counts[0] = self.counts[0].saturating_add(n);
                return;
            }
            let grow = (low - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
            self.counts[0] = n;
            return;
        }
        // Above the run: extend upwards, folding the lowest buckets if the run gets too long.
        let new_len = (i64::from(index) - i64::from(low) + 1) as u64;
        if new_len > max as u64 {
            let new_low = index - (max as i32 - 1);
            let fold = usize::try_from(i64::from(new_low) - i64::from(low))
                .unwrap_or(usize::MAX)
                .min(self.counts.len());
            let folded: u64 = self.counts[..fold]
                .iter()
                .fold(0u64, |a, &c| a.saturating_add(c));
            self.counts.drain(..fold);
            if self.counts.is_empty() {
                self.counts.push(0);
            }
            self.offset = new_low;
            // What was folded lands in the new lowest bucket; if the whole run was folded,
            // `counts` restarts at `new_low`, which is filled below.
            self.counts[0] = self.counts[0].saturating_add(folded);
        }
        let at = (i64::from(index) - i64::from(self.offset)) as usize;
        if at >= self.counts.len() {
            self.counts.resize(at + 1, 0);
        }
        self.counts[at] = self.counts[at].saturating_add(n);
    }

    fn clear(&mut self) {
        // Keeps the capacity: an interval's buckets are mostly the same as the last one's.
        self.counts.clear();
        self.total = 0;
    }

    fn high(&self) -> i32 {
        self.offset + self.counts.len() as i32 - 1
    }
}

/// One interval's observations.
#[derive(Clone, Debug)]
struct Window {
    /// Positive values by the bucket of their magnitude.
    positive: Buckets,
    /// Negative values by the bucket of their magnitude.
    negative: Buckets,
    zero: u64,
    min: f64,
    max: f64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            positive: Buckets::default(),
            negative: Buckets::default(),
            zero: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Window {
    fn count(&self) -> u64 {
        self.positive
            .total
            .saturating_add(self.negative.total)
            .saturating_add(self.zero)
    }

    fn clear(&mut self) {
        self.positive.clear();
        self.negative.clear();
        self.zero = 0;
        self.min = f64::INFINITY;
        self.max = f64::NEG_INFINITY;
    }
}

/// One summary series' state under the fast estimator. Not internally synchronised.
#[derive(Debug)]
pub struct SketchSummary {
    quantiles: Vec<f64>,
    mapping: Mapping,
    max_buckets: usize,
    /// One per age bucket, a ring; empty without objectives.
    windows: Vec<Window>,
    /// The window of `current`.
    newest: usize,
    /// The interval the newest window counts.
    current: u64,
    /// The end of `current`; `None` beyond what `Instant` can represent.
    current_end: Option<Instant>,
    intervals: Intervals,
    totals: Totals,
}

impl SketchSummary {
    /// An empty summary whose first interval starts at `now`, with quantiles within
    /// `relative_accuracy` (in (0, 1); the flag admits 0.001 to 0.5) of the exact ones.
    pub fn new(opts: &SummaryOptions, relative_accuracy: f64, now: Instant) -> SketchSummary {
        let (intervals, age_buckets) = Intervals::new(opts, now);
        let windows = if opts.objectives.is_empty() {
            Vec::new()
        } else {
            (0..age_buckets).map(|_| Window::default()).collect()
        };
        SketchSummary {
            quantiles: opts.objectives.iter().map(|o| o.quantile).collect(),
            mapping: Mapping::new(relative_accuracy),
            max_buckets: max_buckets(relative_accuracy),
            windows,
            newest: 0,
            current: 0,
            current_end: intervals.end(0),
            intervals,
            totals: Totals::default(),
        }
    }

    /// Records `value` `count` times; refuses, as [`super::SlidingSummary::observe`] does, a
    /// value that is not finite or would take `_sum` out of the finite range. Never asks for
    /// a merge.
    #[inline]
    pub fn observe(&mut self, value: f64, count: u32, now: Instant) -> Observed {
        if !self.totals.add(value, count) {
            return Observed::Refused;
        }
        if count == 0 || self.windows.is_empty() {
            return Observed::Recorded;
        }
        if self.current_end.is_some_and(|end| now > end) {
            self.advance(now);
        }
        let n = u64::from(count);
        let max = self.max_buckets;
        let w = &mut self.windows[self.newest];
        w.min = w.min.min(value);
        w.max = w.max.max(value);
        let magnitude = value.abs();
        if magnitude < MIN_INDEXABLE {
            w.zero = w.zero.saturating_add(n);
        } else if value > 0.0 {
            w.positive.add(self.mapping.index(magnitude), n, max);
        } else {
            w.negative.add(self.mapping.index(magnitude), n, max);
        }
        Observed::Recorded
    }

    /// The quantiles (in the objectives' order), sum and count as of `now`.
    pub fn snapshot(&mut self, now: Instant) -> SummarySnapshot {
        self.advance(now);
        SummarySnapshot {
            quantiles: self.quantiles(),
            sum: self.totals.sum,
            count: self.totals.count,
        }
    }

    /// Moves the newest window up to `now`'s interval, clearing the windows that leave the
    /// span; never backwards.
    fn advance(&mut self, now: Instant) {
        let len = self.windows.len();
        let k = self.intervals.of(now);
        if k <= self.current || len == 0 {
            return;
        }
        let steps = k - self.current;
        let clears = usize::try_from(steps).unwrap_or(usize::MAX).min(len);
        for s in 1..=clears {
            self.windows[(self.newest + s) % len].clear();
        }
        // `len` fits in u64 and the remainder is below it.
        self.newest = (self.newest + (steps % len as u64) as usize) % len;
        self.current = k;
        self.current_end = self.intervals.end(k);
    }

    /// For each objective, in their order, the value of rank `⌊q·(n−1)⌋` (0-based) among the
    /// window's observations, as the representative of the bucket holding it; NaN for an
    /// empty window. One walk over the buckets answers every quantile.
    fn quantiles(&self) -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = self.quantiles.iter().map(|&q| (q, f64::NAN)).collect();
        let n = self
            .windows
            .iter()
            .fold(0u64, |a, w| a.saturating_add(w.count()));
        if n == 0 {
            return out;
        }
        let (lo, hi) = self
            .windows
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), w| {
                (lo.min(w.min), hi.max(w.max))
            });
        // (rank, objective) by rank. Exact below 2^53 observations in the window; a rank
        // rounded beyond that still lands on a bucket.
        let mut wanted: Vec<(u64, usize)> = self
            .quantiles
            .iter()
            .enumerate()
            .map(|(i, &q)| ((q.clamp(0.0, 1.0) * (n - 1) as f64).floor() as u64, i))
            .collect();
        wanted.sort_unstable();
        // The extremes are known exactly, even when folding has blurred the lowest buckets.
        let mut next = wanted.iter().take_while(|&&(r, _)| r == 0).count();
        let end = wanted.len()
            - wanted[next..]
                .iter()
                .rev()
                .take_while(|&&(r, _)| r >= n - 1)
                .count();
        for &(r, i) in &wanted {
            if r == 0 {
                out[i].1 = lo;
            } else if r >= n - 1 {
                out[i].1 = hi;
            }
        }
        let mut below = 0u64;
        // The value is worked out only for the buckets that answer a quantile: an `exp` per
        // bucket walked would be most of a scrape's cost.
        let mut answer = |below: u64, value: &dyn Fn() -> f64, next: &mut usize| {
            while *next < end && wanted[*next].0 < below {
                out[wanted[*next].1].1 = within(value(), lo, hi);
                *next += 1;
            }
        };
        let negative: Vec<&Buckets> = self.windows.iter().map(|w| &w.negative).collect();
        let positive: Vec<&Buckets> = self.windows.iter().map(|w| &w.positive).collect();
        // Ascending values: negatives from the largest magnitude down, zero, positives up.
        walk(&negative, true, |i, c| {
            below = below.saturating_add(c);
            answer(below, &|| -self.mapping.value(i), &mut next);
            next < end
        });
        below = below.saturating_add(self.windows.iter().map(|w| w.zero).sum::<u64>());
        answer(below, &|| 0.0, &mut next);
        walk(&positive, false, |i, c| {
            below = below.saturating_add(c);
            answer(below, &|| self.mapping.value(i), &mut next);
            next < end
        });
        // Only left if saturated counts disagree with `n`: the largest value is the closest
        // answer.
        answer(u64::MAX, &|| hi, &mut next);
        out
    }

    /// Total buckets held by all windows: the memory footprint.
    #[cfg(test)]
    pub(crate) fn bucket_count(&self) -> usize {
        self.windows
            .iter()
            .map(|w| w.positive.counts.len() + w.negative.counts.len())
            .sum()
    }
}

/// `v` moved into `[lo, hi]`: a bucket's representative may lie beyond the window's extremes,
/// which are exact. Never panics, unlike `f64::clamp`, whatever the bounds.
fn within(v: f64, lo: f64, hi: f64) -> f64 {
    v.max(lo).min(hi)
}

/// Up to this many indexes between a sign's lowest and highest bucket, [`walk`] adds the
/// windows' runs into one dense slice (64 KiB at most) instead of stepping through each.
const DENSE_WALK: usize = 8192;

/// Visits the indexes any of `runs` holds, ascending (or descending), with the sum of their
/// counts there, until `visit` returns false. Gaps between the runs are skipped, so a window
/// whose intervals saw values many decades apart costs no more than its buckets.
fn walk(runs: &[&Buckets], descending: bool, mut visit: impl FnMut(i32, u64) -> bool) {
    let span =
        runs.iter()
            .filter(|b| !b.counts.is_empty())
            .fold(None, |acc: Option<(i32, i32)>, b| match acc {
                None => Some((b.offset, b.high())),
                Some((lo, hi)) => Some((b.offset.min(lo), b.high().max(hi))),
            });
    let Some((low, high)) = span else { return };
    let len = (i64::from(high) - i64::from(low) + 1) as usize;
    if len <= DENSE_WALK {
        // The usual case, intervals with overlapping runs: add them up and walk one slice.
        let mut sum = vec![0u64; len];
        for b in runs {
            let at = (i64::from(b.offset) - i64::from(low)) as usize;
            for (slot, &c) in sum[at.min(len)..].iter_mut().zip(&b.counts) {
                *slot = slot.saturating_add(c);
            }
        }
        let mut step = |(j, &c): (usize, &u64)| c == 0 || visit(low + j as i32, c);
        if descending {
            sum.iter().enumerate().rev().all(&mut step);
        } else {
            sum.iter().enumerate().all(&mut step);
        }
        return;
    }
    // Per run, how many of its buckets were visited.
    let mut done = vec![0usize; runs.len()];
    let at = |b: &Buckets, k: usize| -> i32 {
        // k < len ≤ max_buckets, which fits an i32.
        if descending {
            b.high() - k as i32
        } else {
            b.offset + k as i32
        }
    };
    loop {
        let mut next: Option<i32> = None;
        for (b, &k) in runs.iter().zip(&done) {
            if k < b.counts.len() {
                let i = at(b, k);
                next = Some(match next {
                    None => i,
                    Some(n) if descending => n.max(i),
                    Some(n) => n.min(i),
                });
            }
        }
        let Some(i) = next else { return };
        let mut sum = 0u64;
        for (b, k) in runs.iter().zip(done.iter_mut()) {
            if *k < b.counts.len() && at(b, *k) == i {
                let c = if descending {
                    b.counts[b.counts.len() - 1 - *k]
                } else {
                    b.counts[*k]
                };
                sum = sum.saturating_add(c);
                *k += 1;
            }
        }
        if !visit(i, sum) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::options::Objective;
    use proptest::prelude::Strategy;
    use std::time::Duration;

    const QS: [f64; 8] = [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0];

    fn opts(quantiles: &[f64]) -> SummaryOptions {
        SummaryOptions {
            objectives: quantiles
                .iter()
                .map(|&quantile| Objective {
                    quantile,
                    error: 0.01,
                })
                .collect(),
            ..SummaryOptions::default()
        }
    }

    /// [`opts`] over a 50 s window: 10 s intervals, as client_golang counts them.
    fn windowed(quantiles: &[f64]) -> SummaryOptions {
        SummaryOptions {
            max_age: Duration::from_secs(50),
            ..opts(quantiles)
        }
    }

    /// xorshift64*: deterministic data without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// The element of rank ⌊q·(n−1)⌋ of weighted `(value, weight)` pairs.
    fn exact(data: &[(f64, u32)], q: f64) -> f64 {
        let mut sorted = data.to_vec();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n: u64 = sorted.iter().map(|&(_, w)| u64::from(w)).sum();
        let rank = (q * (n - 1) as f64).floor() as u64;
        let mut below = 0;
        for (v, w) in sorted {
            below += u64::from(w);
            if below > rank {
                return v;
            }
        }
        unreachable!("rank {rank} beyond {n}")
    }

    /// How far `got` is from `want`, relative to `want` (absolute below MIN_INDEXABLE).
    fn relative_error(got: f64, want: f64) -> f64 {
        if want.abs() < MIN_INDEXABLE {
            (got - want).abs() / MIN_INDEXABLE
        } else {
            (got - want).abs() / want.abs()
        }
    }

    /// Observes `data` at one instant and returns the worst relative error over [`QS`].
    fn worst_error(data: &[(f64, u32)], alpha: f64) -> f64 {
        let t0 = Instant::now();
        let mut s = SketchSummary::new(&opts(&QS), alpha, t0);
        for &(v, w) in data {
            assert_eq!(s.observe(v, w, t0), Observed::Recorded);
        }
        let snap = s.snapshot(t0);
        let mut worst: f64 = 0.0;
        for &(q, got) in &snap.quantiles {
            let want = exact(data, q);
            let err = relative_error(got, want);
            assert!(
                err <= alpha * (1.0 + 1e-9) || want.abs() < MIN_INDEXABLE && err <= 1.0,
                "α={alpha} q={q}: got {got}, exact {want}, relative error {err}"
            );
            worst = worst.max(err);
        }
        worst
    }

    fn distributions(rng: &mut Rng, n: usize) -> Vec<(&'static str, Vec<(f64, u32)>)> {
        vec![
            (
                "uniform",
                (0..n).map(|_| (rng.unit() * 1000.0, 1)).collect::<Vec<_>>(),
            ),
            (
                "exponential",
                (0..n)
                    .map(|_| (-(1.0 - rng.unit()).ln() * 20.0, 1))
                    .collect(),
            ),
            (
                "log-uniform over 12 decades",
                (0..n)
                    .map(|_| (10f64.powf(rng.unit() * 12.0 - 6.0), 1))
                    .collect(),
            ),
            (
                "integer timers with duplicates, weighted",
                (0..n)
                    .map(|_| ((rng.next() % 50) as f64, 1 + (rng.next() % 10) as u32))
                    .collect(),
            ),
            (
                "negatives, zeros and positives",
                (0..n)
                    .map(|i| match i % 3 {
                        0 => (-(rng.unit() * 500.0), 1),
                        1 => (0.0, 1),
                        _ => (rng.unit() * 500.0, 1),
                    })
                    .collect(),
            ),
            ("constant", vec![(12.0, 1); n]),
        ]
    }

    #[test]
    fn quantiles_are_within_the_relative_accuracy_of_the_exact_ones() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for alpha in [0.05, 0.01, 0.001] {
            for (name, data) in distributions(&mut rng, 20_000) {
                let worst = worst_error(&data, alpha);
                if name == "constant" {
                    // Clamped into the window's extremes, which are exact.
                    assert_eq!(worst, 0.0, "{name}");
                }
            }
        }
    }

    #[test]
    fn the_bound_is_tight_not_loose() {
        // Values spread over buckets: some answer must use most of the allowed error, or
        // the test above would pass for a far coarser mapping too.
        let mut rng = Rng(7);
        let data: Vec<(f64, u32)> = (0..20_000)
            .map(|_| (10f64.powf(rng.unit() * 3.0), 1))
            .collect();
        let worst = worst_error(&data, 0.05);
        assert!(worst > 0.01, "worst error {worst}");
    }

    #[test]
    fn the_window_spans_the_current_interval_and_the_ones_before() {
        // max_age 50 s over 5 buckets: 10 s intervals, as client_golang counts them.
        let t0 = Instant::now();
        let o = windowed(&[0.0, 0.5, 1.0]);
        let mut s = SketchSummary::new(&o, 0.01, t0);
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        s.observe(1000.0, 1, at(5)); // interval 0
        for k in 1..5 {
            s.observe(1.0, 1, at(10 * k + 5));
        }
        // Interval 4: all five intervals are in the window.
        assert_eq!(s.snapshot(at(49)).quantiles[2].1, 1000.0);
        // Exactly on the boundary still belongs to interval 4 (client_golang's `After`).
        assert_eq!(s.snapshot(at(50)).quantiles[2].1, 1000.0);
        // Interval 5: interval 0 has left the window.
        let snap = s.snapshot(at(51));
        assert_eq!(snap.quantiles[2].1, 1.0);
        assert_eq!((snap.count, snap.sum), (5, 1004.0));
        // A gap longer than the window empties it; sum and count stay.
        let snap = s.snapshot(at(1000));
        assert!(snap.quantiles.iter().all(|&(_, v)| v.is_nan()));
        assert_eq!((snap.count, snap.sum), (5, 1004.0));
        // And it fills again.
        s.observe(7.0, 1, at(1001));
        assert_eq!(s.snapshot(at(1001)).quantiles[1].1, 7.0);
        // A clock going back neither panics nor brings anything back.
        assert_eq!(s.snapshot(at(3)).quantiles[1].1, 7.0);
    }

    #[test]
    fn an_aging_window_matches_the_exact_quantiles_of_its_intervals() {
        // Random times, with gaps of several intervals, checked against the observations
        // whose interval is one of the window's: the last five, as client_golang's.
        let t0 = Instant::now();
        let o = windowed(&QS);
        let alpha = 0.02;
        let mut s = SketchSummary::new(&o, alpha, t0);
        let mut rng = Rng(42);
        let mut log: Vec<(u64, f64, u32)> = Vec::new();
        let mut ms = 0u64;
        let interval_of = |ms: u64| (ms.div_ceil(10_000)).saturating_sub(1);
        let mut checked = 0;
        for round in 0..400 {
            ms += match rng.next() % 20 {
                0 => 60_000 + rng.next() % 30_000,
                _ => rng.next() % 3_000,
            };
            let now = t0 + Duration::from_millis(ms);
            for _ in 0..50 {
                let v = 10f64.powf(rng.unit() * 4.0) * if round % 7 == 0 { -1.0 } else { 1.0 };
                let w = 1 + (rng.next() % 3) as u32;
                s.observe(v, w, now);
                log.push((interval_of(ms), v, w));
            }
            let k = interval_of(ms);
            let window: Vec<(f64, u32)> = log
                .iter()
                .filter(|&&(i, _, _)| i + 5 > k)
                .map(|&(_, v, w)| (v, w))
                .collect();
            let snap = s.snapshot(now);
            for &(q, got) in &snap.quantiles {
                let want = exact(&window, q);
                let err = relative_error(got, want);
                assert!(
                    err <= alpha * (1.0 + 1e-9),
                    "round {round} q={q}: {got} vs {want}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 400 * QS.len());
    }

    #[test]
    fn intervals_hundreds_of_decades_apart_keep_the_bound() {
        // Each interval's values span little, but far from the others': the walk over the
        // windows skips the gap (a dense merge would take ~36k buckets here).
        let t0 = Instant::now();
        let o = windowed(&QS);
        let alpha = 0.01;
        let mut s = SketchSummary::new(&o, alpha, t0);
        let mut data = Vec::new();
        for (k, scale) in [1e-8, -1e-3, 1e5, -1e150, 1e300].into_iter().enumerate() {
            let at = t0 + Duration::from_secs(10 * k as u64 + 1);
            for m in 1..=200 {
                let v = scale * (1.0 + f64::from(m) / 100.0);
                s.observe(v, 1, at);
                data.push((v, 1));
            }
        }
        let snap = s.snapshot(t0 + Duration::from_secs(45));
        for &(q, got) in &snap.quantiles {
            let want = exact(&data, q);
            assert!(
                relative_error(got, want) <= alpha * (1.0 + 1e-9),
                "q={q}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn bucket_sets_stay_bounded_and_fold_only_the_lowest_magnitudes() {
        let t0 = Instant::now();
        let alpha = 0.01;
        let mut s = SketchSummary::new(&opts(&[0.0, 0.5, 0.99, 1.0]), alpha, t0);
        let top = 3;
        let max = max_buckets(alpha);
        // 1e-9 to 1e300: far more than one bucket set may hold.
        let mut data = Vec::new();
        for e in -9..=300 {
            for m in [1.0, 2.5, 5.0] {
                data.push((m * 10f64.powi(e), 1u32));
            }
        }
        for &(v, w) in &data {
            s.observe(v, w, t0);
        }
        assert!(s.bucket_count() <= max, "{} > {max}", s.bucket_count());
        let snap = s.snapshot(t0);
        assert_eq!(snap.count, data.len() as u64);
        // The 99th percentile lies in the top twelve decades, out of the folded range, and
        // keeps its bound; the median was folded and does not; the extremes are exact.
        let (q, got) = snap.quantiles[2];
        assert!(relative_error(got, exact(&data, q)) <= alpha * (1.0 + 1e-9));
        let (q, got) = snap.quantiles[1];
        assert!(relative_error(got, exact(&data, q)) > 1.0);
        assert_eq!(snap.quantiles[0].1, 1e-9);
        assert_eq!(snap.quantiles[top].1, exact(&data, 1.0));
        // Coming down again folds into the lowest kept bucket instead of growing.
        s.observe(1e-8, 1, t0);
        assert!(s.bucket_count() <= max);
    }

    #[test]
    fn hostile_values_in_every_interval_stay_within_the_documented_memory() {
        // Both signs, every magnitude a double has, in each of the five intervals: the worst a
        // sender can do to one summary. README states 110 KB at α = 1%.
        let t0 = Instant::now();
        let o = windowed(&QS);
        let alpha = 0.01;
        let mut s = SketchSummary::new(&o, alpha, t0);
        for k in 0..5u64 {
            let at = t0 + Duration::from_secs(10 * k + 1);
            for e in -320..=308 {
                for m in [1.0, 3.0] {
                    s.observe(m * 10f64.powi(e), 1, at);
                    s.observe(-m * 10f64.powi(e), 1, at);
                }
            }
        }
        assert_eq!(max_buckets(alpha), 1383);
        assert!(s.bucket_count() <= 2 * 5 * max_buckets(alpha));
        assert!(
            s.bucket_count() * 8 <= 110_640,
            "{} buckets",
            s.bucket_count()
        );
    }

    #[test]
    fn refusals_weights_and_empty_windows_behave_as_the_ckms_summary() {
        let t0 = Instant::now();
        let mut s = SketchSummary::new(&opts(&[0.5]), 0.01, t0);
        assert!(s.snapshot(t0).quantiles[0].1.is_nan());
        assert_eq!(s.observe(f64::NAN, 1, t0), Observed::Refused);
        assert_eq!(s.observe(f64::INFINITY, 1, t0), Observed::Refused);
        assert_eq!(s.observe(f64::MAX, 2, t0), Observed::Refused);
        assert_eq!(s.observe(5.0, 0, t0), Observed::Recorded);
        assert_eq!(s.observe(5.0, 3, t0), Observed::Recorded);
        assert_eq!(s.observe(100.0, 1, t0), Observed::Recorded);
        let snap = s.snapshot(t0);
        assert_eq!((snap.count, snap.sum), (4, 115.0));
        assert!(relative_error(snap.quantiles[0].1, 5.0) <= 0.01);

        let mut bare = SketchSummary::new(&opts(&[]), 0.01, t0);
        bare.observe(3.0, 2, t0);
        let snap = bare.snapshot(t0);
        assert!(snap.quantiles.is_empty());
        assert_eq!((snap.count, snap.sum), (2, 6.0));
        assert_eq!(bare.bucket_count(), 0);
    }

    proptest::proptest! {
        /// Any values, signs and weights whose magnitudes span less than the folding span
        /// (here 1e-3 to 1e8 of either sign, and zeros, or magnitudes below MIN_INDEXABLE).
        #[test]
        fn any_input_within_the_span_keeps_the_bound(
            data in proptest::collection::vec(
                (proptest::prop_oneof![
                    (proptest::bool::ANY, -3.0f64..8.0)
                        .prop_map(|(neg, e)| if neg { -(10f64.powf(e)) } else { 10f64.powf(e) }),
                    proptest::strategy::Just(0.0),
                    -1e-10f64..1e-10,
                ], 1u32..5),
                1..300,
            ),
            alpha in 0.0001f64..0.5,
        ) {
            worst_error(&data, alpha);
        }
    }
}
