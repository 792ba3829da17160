//! A targeted (biased) quantile stream: the CKMS algorithm from "Effective Computation of
//! Biased Quantiles over Data Streams" (Cormode, Korn, Muthukrishnan, Srivastava), with the
//! same insert/compress/query rules as beorn7/perks `quantile.NewTargeted`, which client_golang
//! summaries (and so statsd_exporter) use. Matching those rules keeps statsgate's quantiles
//! where users' dashboards expect them.
//!
//! Two extensions over perks, both invisible when every observation has weight 1:
//! * samples carry a weight (`width`), so `observe(v, 1_000_000)` is one tuple, not a million;
//! * the query knows that a weighted tuple nobody merged into (a "pure" tuple: all of its
//!   weight is one value) may be wider than the error invariant allows, and answers with that
//!   value when the target rank falls inside it (perks' rule would answer with the value
//!   before it, which is off by the whole width).
//!
//! Values are ordered with [`f64::total_cmp`], so NaN and infinities never break a sort:
//! negative NaN sorts first, positive NaN last (above `+Inf`).

use std::cmp::Ordering;

/// Pending samples kept unmerged before a compress, as in perks (`make(Samples, 0, 500)`).
/// Below this many, queries are answered exactly from the sorted buffer.
pub(crate) const STREAM_BUF_CAP: usize = 500;

/// One quantile target: the invariant keeps the rank error near `quantile` within `error`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Target {
    pub(crate) quantile: f64,
    pub(crate) error: f64,
}

/// A GK/CKMS tuple: `value`, the weight `width` it stands for (ranks since the previous
/// tuple), and `delta`, the uncertainty of its rank.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tuple {
    value: f64,
    width: f64,
    delta: f64,
    /// All of `width` is observations equal to `value` (never merged with another value).
    pure: bool,
}

/// The allowed `width + delta` of a tuple at rank `r` among `n`: the minimum over targets of
/// `2e·r/q` above the target rank and `2e·(n−r)/(1−q)` below it. NaN terms (a degenerate
/// target such as q = 0 at r = 0) are skipped by the comparison, like perks' `f < m`.
fn invariant(targets: &[Target], n: f64, r: f64) -> f64 {
    let mut allowed = f64::MAX;
    for t in targets {
        let f = if t.quantile * n <= r {
            2.0 * t.error * r / t.quantile
        } else {
            2.0 * t.error * (n - r) / (1.0 - t.quantile)
        };
        if f < allowed {
            allowed = f;
        }
    }
    allowed
}

/// A CKMS stream. Buffers grow on demand and keep their capacity, so a stream allocates while
/// it warms up and not after (a series seen once a minute never pays for 500 slots).
#[derive(Debug, Default)]
pub(crate) struct CkmsStream {
    /// Total weight merged into `tuples`.
    n: f64,
    /// Sorted by value (`total_cmp`). Merges happen in place, from the end, so a stream holds
    /// one tuple buffer rather than two.
    tuples: Vec<Tuple>,
    /// Samples not merged yet (width = weight, delta 0).
    pending: Vec<Tuple>,
    pending_weight: f64,
    pending_sorted: bool,
}

impl CkmsStream {
    /// Adds `value` with weight `width` (> 0).
    pub(crate) fn insert(&mut self, targets: &[Target], value: f64, width: f64) {
        self.pending.push(Tuple {
            value,
            width,
            delta: 0.0,
            pure: true,
        });
        self.pending_weight += width;
        self.pending_sorted = false;
        if self.pending.len() >= STREAM_BUF_CAP {
            self.flush(targets);
        }
    }

    /// Adds `(value, weight)` samples sorted by value ([`f64::total_cmp`]), weights > 0.
    /// When nothing is pending and the batch is exactly a buffer's worth, which is how the
    /// summary feeds its streams, the batch is merged straight from the slice: the flush
    /// perks would do after buffering it, without copying it into this stream's buffer first
    /// (the summary's five streams would each hold a copy).
    pub(crate) fn insert_sorted(&mut self, targets: &[Target], batch: &[(f64, u32)]) {
        if self.pending.is_empty() && batch.len() == STREAM_BUF_CAP {
            self.merge(targets, batch, |&(value, weight)| {
                (value, f64::from(weight))
            });
            self.compress(targets);
            return;
        }
        for &(value, weight) in batch {
            self.insert(targets, value, f64::from(weight));
        }
    }

    /// The total weight seen since the last reset.
    pub(crate) fn count(&self) -> f64 {
        self.n + self.pending_weight
    }

    /// Forgets everything, keeping the allocations.
    pub(crate) fn reset(&mut self) {
        self.n = 0.0;
        self.tuples.clear();
        self.pending.clear();
        self.pending_weight = 0.0;
        self.pending_sorted = true;
    }

    /// How many tuples the stream holds (merged and pending): its memory, for tests.
    #[cfg(test)]
    pub(crate) fn tuple_count(&self) -> usize {
        self.tuples.len() + self.pending.len()
    }

    /// The estimate of quantile `q`. An empty stream answers 0, like perks; the summary
    /// checks [`count`](Self::count) first and reports NaN instead.
    pub(crate) fn query(&mut self, targets: &[Target], q: f64) -> f64 {
        if self.tuples.is_empty() {
            // Never compressed yet: the buffer is the exact data (perks' fast path).
            return self.query_pending(q);
        }
        self.flush(targets);
        self.query_tuples(targets, q)
    }

    /// The summary feeds sorted batches, so pending is one sorted run (checked in one pass)
    /// or a few (batches cut short by snapshots), which the stable sort merges as runs. Equal
    /// values keep their arrival order.
    fn sort_pending(&mut self) {
        if self.pending_sorted {
            return;
        }
        self.pending_sorted = true;
        if !self
            .pending
            .is_sorted_by(|a, b| a.value.total_cmp(&b.value) != Ordering::Greater)
        {
            self.pending.sort_by(|a, b| a.value.total_cmp(&b.value));
        }
    }

    /// Exact weighted quantile of the pending samples: the element at 0-based index
    /// `ceil(total·q) − 1` (clamped at 0) of the expanded data, as perks does unweighted.
    fn query_pending(&mut self, q: f64) -> f64 {
        if self.pending.is_empty() {
            return 0.0;
        }
        self.sort_pending();
        let index = ((self.pending_weight * q).ceil() - 1.0).max(0.0);
        let mut cumulative = 0.0;
        for s in &self.pending {
            cumulative += s.width;
            if cumulative > index {
                return s.value;
            }
        }
        // q > 1 or NaN: the largest value, like an out-of-range index clamped high.
        self.pending.last().map_or(0.0, |s| s.value)
    }

    fn flush(&mut self, targets: &[Target]) {
        if self.pending.is_empty() {
            return;
        }
        self.sort_pending();
        let mut pending = std::mem::take(&mut self.pending);
        self.merge(targets, &pending, |t| (t.value, t.width));
        pending.clear();
        self.pending = pending;
        self.pending_weight = 0.0;
        self.compress(targets);
    }

    /// Merges sorted samples (`(value, width)` as `sample` reads them; all unmerged, so
    /// delta 0 and pure) into the tuples in one pass (perks inserts one at a time with a
    /// slice copy each; the result is the same). A sample inserted before an existing tuple
    /// gets delta `floor(f(r)) − 1` for its rank `r` at that moment, with `n` counting the
    /// samples merged so far; one appended past the end gets 0.
    ///
    /// The merge runs from the largest values down, in place, so no second buffer is needed.
    /// Ranks and counts are sums of integral weights, exact in `f64` below 2^53, so working
    /// them out from the totals gives the very values perks' forward sums give.
    fn merge<S>(&mut self, targets: &[Target], samples: &[S], sample: impl Fn(&S) -> (f64, f64)) {
        let n0 = self.n;
        let added: f64 = samples.iter().map(|s| sample(s).1).sum();
        let existing = self.tuples.len();
        self.tuples.resize(
            existing + samples.len(),
            Tuple {
                value: 0.0,
                width: 0.0,
                delta: 0.0,
                pure: true,
            },
        );
        // `a` existing tuples and `b` samples are still to place; `write` is one past the
        // next slot to fill.
        let (mut a, mut b, mut write) = (existing, samples.len(), existing + samples.len());
        // Weights of the samples placed so far (all larger than what remains).
        let mut samples_after = 0.0;
        // Weight of the existing tuples placed so far.
        let mut existing_after = 0.0;
        while b > 0 {
            let (value, width) = sample(&samples[b - 1]);
            if a > 0 && self.tuples[a - 1].value.total_cmp(&value) == Ordering::Greater {
                // An existing tuple above this sample moves up.
                let t = self.tuples[a - 1];
                existing_after += t.width;
                self.tuples[write - 1] = t;
                a -= 1;
            } else {
                let before = added - samples_after - width;
                let delta = if a < existing {
                    // As perks computes it forwards: rank = existing tuples at or below the
                    // value plus the samples before it; n = the old total plus those samples.
                    let rank = (n0 - existing_after) + before;
                    // Perks' `max(sample delta, …)` with the unmerged sample's delta of 0.
                    0.0_f64.max(invariant(targets, n0 + before, rank).floor() - 1.0)
                } else {
                    0.0
                };
                self.tuples[write - 1] = Tuple {
                    value,
                    width,
                    delta,
                    pure: true,
                };
                samples_after += width;
                b -= 1;
            }
            write -= 1;
        }
        self.n = n0 + added;
    }

    /// Merges each tuple into its successor while `width + successor width + successor delta`
    /// stays within the invariant, walking from the largest value down (perks' order, which
    /// decides which tuples survive). Done in place: survivors are written from the end.
    fn compress(&mut self, targets: &[Target]) {
        let len = self.tuples.len();
        if len < 2 {
            return;
        }
        let mut x = self.tuples[len - 1];
        let mut write = len - 1;
        let mut rank = self.n - 1.0 - x.width;
        for i in (0..len - 1).rev() {
            let c = self.tuples[i];
            if c.width + x.width + x.delta <= invariant(targets, self.n, rank) {
                x.pure = x.pure && c.pure && c.value.total_cmp(&x.value) == Ordering::Equal;
                x.width += c.width;
            } else {
                self.tuples[write] = x;
                write -= 1;
                x = c;
            }
            rank -= c.width;
        }
        self.tuples[write] = x;
        self.tuples.copy_within(write.., 0);
        self.tuples.truncate(len - write);
    }

    /// perks' query: aim at rank `t = ceil(q·n) + ceil(f(t)/2)` and answer with the last tuple
    /// whose successor's maximal rank does not pass `t`. A pure tuple wider than the invariant
    /// (a weighted observation) answers for the ranks it covers itself.
    fn query_tuples(&self, targets: &[Target], q: f64) -> f64 {
        let Some((first, rest)) = self.tuples.split_first() else {
            return 0.0;
        };
        let mut t = (q * self.n).ceil();
        t += (invariant(targets, self.n, t) / 2.0).ceil();
        let mut p = first;
        let mut rank = 0.0;
        for c in rest {
            rank += p.width;
            if rank + c.width + c.delta > t {
                let too_wide = c.width + c.delta > invariant(targets, self.n, rank);
                if c.pure && too_wide && rank + 1.0 + c.delta <= t {
                    return c.value;
                }
                return p.value;
            }
            p = c;
        }
        p.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<Target> {
        vec![
            Target {
                quantile: 0.5,
                error: 0.05,
            },
            Target {
                quantile: 0.9,
                error: 0.01,
            },
            Target {
                quantile: 0.99,
                error: 0.001,
            },
        ]
    }

    #[test]
    fn small_streams_are_exact() {
        let t = targets();
        let mut s = CkmsStream::default();
        for v in [5.0, 1.0, 4.0, 2.0, 3.0] {
            s.insert(&t, v, 1.0);
        }
        assert_eq!(s.query(&t, 0.5), 3.0);
        assert_eq!(s.query(&t, 0.0), 1.0);
        assert_eq!(s.query(&t, 1.0), 5.0);
        assert_eq!(s.count(), 5.0);
    }

    #[test]
    fn weighted_pending_query_matches_expanded() {
        let t = targets();
        let mut weighted = CkmsStream::default();
        let mut expanded = CkmsStream::default();
        for (v, w) in [(1.0, 3), (2.0, 1), (3.0, 6)] {
            weighted.insert(&t, v, f64::from(w));
            for _ in 0..w {
                expanded.insert(&t, v, 1.0);
            }
        }
        for q in [0.0, 0.1, 0.3, 0.31, 0.4, 0.41, 0.5, 0.9, 1.0] {
            assert_eq!(weighted.query(&t, q), expanded.query(&t, q), "q={q}");
        }
    }

    #[test]
    fn compress_keeps_order_and_weight() {
        let t = targets();
        let mut s = CkmsStream::default();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            s.insert(&t, rng.f64(), 1.0);
        }
        s.flush(&t);
        let total: f64 = s.tuples.iter().map(|x| x.width).sum();
        assert_eq!(total, 20_000.0);
        assert!(s.tuples.windows(2).all(|w| w[0].value <= w[1].value));
        assert!(s.tuples.len() < 2_000, "{} tuples", s.tuples.len());
    }

    /// perks' stream transcribed literally (one-at-a-time inserts with a shifting copy,
    /// compress removing in place), unweighted, to check the one-pass merge against.
    #[derive(Default)]
    struct LiteralPerks {
        n: f64,
        l: Vec<(f64, f64, f64)>,
        b: Vec<f64>,
    }

    impl LiteralPerks {
        fn insert(&mut self, t: &[Target], v: f64) {
            self.b.push(v);
            if self.b.len() == STREAM_BUF_CAP {
                self.flush(t);
            }
        }

        fn flush(&mut self, t: &[Target]) {
            self.b.sort_by(f64::total_cmp);
            let mut r = 0.0;
            let mut i = 0;
            for &v in &self.b.clone() {
                let mut inserted = false;
                while i < self.l.len() {
                    let c = self.l[i];
                    if c.0 > v {
                        let d = (invariant(t, self.n, r).floor() - 1.0).max(0.0);
                        self.l.insert(i, (v, 1.0, d));
                        i += 1;
                        inserted = true;
                        break;
                    }
                    r += c.1;
                    i += 1;
                }
                if !inserted {
                    self.l.push((v, 1.0, 0.0));
                    i += 1;
                }
                self.n += 1.0;
                r += 1.0;
            }
            self.b.clear();
            if self.l.len() < 2 {
                return;
            }
            let mut xi = self.l.len() - 1;
            let mut x = self.l[xi];
            let mut r = self.n - 1.0 - x.1;
            for i in (0..self.l.len() - 1).rev() {
                let c = self.l[i];
                if c.1 + x.1 + x.2 <= invariant(t, self.n, r) {
                    x.1 += c.1;
                    self.l[xi] = x;
                    self.l.remove(i);
                    xi -= 1;
                } else {
                    x = c;
                    xi = i;
                }
                r -= c.1;
            }
        }

        fn query(&mut self, t: &[Target], q: f64) -> f64 {
            self.flush(t);
            let mut target = (q * self.n).ceil();
            target += (invariant(t, self.n, target) / 2.0).ceil();
            let mut p = self.l[0];
            let mut r = 0.0;
            for &c in &self.l[1..] {
                r += p.1;
                if r + c.1 + c.2 > target {
                    return p.0;
                }
                p = c;
            }
            p.0
        }
    }

    #[test]
    fn matches_literal_perks_on_unit_weights() {
        let t = targets();
        let mut rng = fastrand::Rng::with_seed(11);
        let inputs: Vec<Vec<f64>> = vec![
            (0..20_000).map(|_| rng.f64()).collect(),
            (0..20_000).map(f64::from).collect(),
            (0..20_000).rev().map(f64::from).collect(),
            (0..20_000).map(|_| f64::from(rng.u32(0..50))).collect(),
        ];
        for input in inputs {
            let mut ours = CkmsStream::default();
            let mut literal = LiteralPerks::default();
            for &v in &input {
                ours.insert(&t, v, 1.0);
                literal.insert(&t, v);
            }
            ours.flush(&t);
            literal.flush(&t);
            let ours_tuples: Vec<_> = ours
                .tuples
                .iter()
                .map(|x| (x.value, x.width, x.delta))
                .collect();
            assert_eq!(ours_tuples, literal.l);
            for q in [0.5, 0.9, 0.99] {
                assert_eq!(ours.query(&t, q), literal.query(&t, q));
            }
        }
    }

    /// Batches merged straight from the caller's slice leave the stream exactly as the same
    /// samples inserted one by one, whether or not a partial buffer was pending.
    #[test]
    fn sorted_batches_match_one_by_one_inserts() {
        let t = targets();
        let mut rng = fastrand::Rng::with_seed(13);
        let mut direct = 0;
        for round in 0..30 {
            let mut batched = CkmsStream::default();
            let mut single = CkmsStream::default();
            for _ in 0..40 {
                let len = match rng.u32(0..4) {
                    0 => rng.usize(1..STREAM_BUF_CAP),
                    _ => STREAM_BUF_CAP,
                };
                let mut batch: Vec<(f64, u32)> = (0..len)
                    .map(|_| {
                        let v = f64::from(rng.u32(0..200 + round * 50));
                        (
                            v,
                            if rng.u32(0..20) == 0 {
                                rng.u32(2..9)
                            } else {
                                1
                            },
                        )
                    })
                    .collect();
                batch.sort_by(|a, b| a.0.total_cmp(&b.0));
                direct += usize::from(batched.pending.is_empty() && len == STREAM_BUF_CAP);
                batched.insert_sorted(&t, &batch);
                for &(v, w) in &batch {
                    single.insert(&t, v, f64::from(w));
                }
                if rng.u32(0..5) == 0 {
                    // A snapshot: a partial buffer is merged.
                    assert_eq!(batched.query(&t, 0.9), single.query(&t, 0.9));
                }
                assert_eq!(batched.tuples, single.tuples);
                assert_eq!(batched.pending, single.pending);
                assert_eq!(batched.count(), single.count());
            }
        }
        assert!(direct > 300, "{direct} batches merged directly");
    }

    #[test]
    fn pending_runs_are_sorted() {
        let t = targets();
        let mut rng = fastrand::Rng::with_seed(9);
        for runs in [1, 2, 3] {
            let mut s = CkmsStream::default();
            for _ in 0..runs {
                let mut run: Vec<f64> = (0..100).map(|_| rng.f64()).collect();
                run.sort_by(f64::total_cmp);
                for v in run {
                    s.insert(&t, v, 1.0);
                }
            }
            s.sort_pending();
            assert_eq!(s.pending.len(), 100 * runs);
            assert!(s.pending.windows(2).all(|w| w[0].value <= w[1].value));
        }
    }

    #[test]
    fn reset_empties() {
        let t = targets();
        let mut s = CkmsStream::default();
        for i in 0..1_000 {
            s.insert(&t, f64::from(i), 1.0);
        }
        s.reset();
        assert_eq!(s.count(), 0.0);
        assert_eq!(s.query(&t, 0.5), 0.0);
    }
}
