//! Native histogram buckets, kept as client_golang keeps them (statsd_exporter's
//! `native_histogram_bucket_factor` / `native_histogram_max_buckets`).
//!
//! Buckets are exponential: at schema `s` the bucket with index `k` holds observations `v`
//! with `2^((k-1)/2^s) < |v| <= 2^(k/2^s)`, so each bound is the previous one times
//! `2^(2^-s)`. The schema is the highest (finest) whose factor does not exceed the
//! configured bucket factor. Observations with `|v|` at most the zero threshold go to the
//! zero bucket. Only populated buckets are kept; when more than the configured maximum are
//! populated, the resolution is halved (schema minus one, neighbouring buckets merged), as
//! client_golang does when neither a reset interval nor a wider zero bucket is configured
//! (statsd_exporter configures neither). Schema -4 is the floor: there, a finite `f64` can
//! land in at most 130 buckets per sign, so memory stays bounded whatever arrives.

mod bounds;

/// The lowest resolution: each bucket spans a factor of 2^16.
pub const MIN_SCHEMA: i32 = -4;
/// The highest resolution: each bucket spans a factor of 2^(1/256).
pub const MAX_SCHEMA: i32 = 8;
/// client_golang's `DefNativeHistogramZeroThreshold`, 2^-128: observations at most this far
/// from zero are counted in the zero bucket.
pub const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;
/// statsd_exporter's default `native_histogram_bucket_factor`.
pub const DEFAULT_BUCKET_FACTOR: f64 = 1.1;
/// statsd_exporter's default `native_histogram_max_buckets`.
pub const DEFAULT_MAX_BUCKETS: u32 = 256;

/// The schema for a bucket factor: the largest `n` in [-4, 8] with `2^(2^-n) <= factor`
/// (client_golang's `pickSchema`). `None` when `factor <= 1` (or NaN): client_golang keeps
/// no native buckets then.
pub fn pick_schema(factor: f64) -> Option<i32> {
    if factor.is_nan() || factor <= 1.0 {
        return None;
    }
    let floor = factor.log2().log2().floor();
    Some(if floor <= -8.0 {
        MAX_SCHEMA
    } else if floor >= 4.0 {
        MIN_SCHEMA
    } else {
        -(floor as i32)
    })
}

/// Go's `math.Frexp`: `v = frac * 2^exp`, `0.5 <= |frac| < 1`; zero, infinities and NaN
/// come back as they are with exponent 0.
fn frexp(v: f64) -> (f64, i32) {
    if v == 0.0 || !v.is_finite() {
        return (v, 0);
    }
    let bits = v.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal: scale into the normal range first.
        let (frac, exp) = frexp(v * f64::from_bits(0x4350_0000_0000_0000)); // 2^54
        return (frac, exp - 54);
    }
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, biased - 1022)
}

/// The index of the bucket holding `|v|` at `schema` (client_golang's
/// `histogramCounts.observe`), for finite `v` outside the zero bucket.
pub fn bucket_index(v: f64, schema: i32) -> i32 {
    let (frac, exp) = frexp(v.abs());
    if schema > 0 {
        let bounds = bounds::BOUNDS[schema as usize];
        // sort.SearchFloat64s: the first bound >= frac.
        let i = bounds.partition_point(|b| *b < frac) as i32;
        i + (exp - 1) * bounds.len() as i32
    } else {
        let mut key = exp;
        if frac == 0.5 {
            key -= 1;
        }
        let offset = (1 << -schema) - 1;
        (key + offset) >> -schema
    }
}

/// The upper bound of bucket `index` at `schema` (the inverse of [`bucket_index`]).
pub fn bucket_upper_bound(index: i32, schema: i32) -> f64 {
    if schema < 0 {
        return 2f64.powi(index << -schema);
    }
    let frac = bounds::BOUNDS[schema as usize][(index & ((1 << schema) - 1)) as usize];
    let exp = (index >> schema) + 1;
    frac * 2f64.powi(exp)
}

/// The populated buckets of one sign: sorted by index, counts not cumulative.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Buckets(Vec<(i32, u64)>);

impl Buckets {
    /// Adds `n` to bucket `index`; true when the bucket is new.
    fn add(&mut self, index: i32, n: u64) -> bool {
        match self.0.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(pos) => {
                self.0[pos].1 = self.0[pos].1.saturating_add(n);
                false
            }
            Err(pos) => {
                self.0.insert(pos, (index, n));
                true
            }
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Merges neighbours into the buckets of the next lower schema (client_golang's
    /// `doubleBucketWidth`: index `k > 0` goes to `(k+1)/2`, others to `k/2`, rounded
    /// towards zero).
    fn halve(&mut self) {
        let old = std::mem::take(&mut self.0);
        for (i, c) in old {
            let merged = if i > 0 { (i + 1) / 2 } else { i / 2 };
            match self.0.last_mut() {
                Some((last, count)) if *last == merged => *count = count.saturating_add(c),
                _ => self.0.push((merged, c)),
            }
        }
    }

    /// `(index, count)` pairs, by increasing index.
    pub fn iter(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.0.iter().copied()
    }

    /// client_golang's `makeBuckets`: spans of consecutive indexes (a gap of one or two
    /// empty buckets is filled in rather than starting a span) and each count as the
    /// difference to the previous one.
    pub fn spans_and_deltas(&self) -> (Vec<(i32, u32)>, Vec<i64>) {
        let mut spans: Vec<(i32, u32)> = Vec::new();
        let mut deltas = Vec::with_capacity(self.0.len());
        let mut prev: i64 = 0;
        let mut next_index: i32 = 0;
        for (n, &(i, count)) in self.0.iter().enumerate() {
            let count = i64::try_from(count).unwrap_or(i64::MAX);
            let gap = i - next_index;
            if n == 0 || gap > 2 {
                spans.push((gap, 0));
            } else {
                for _ in 0..gap {
                    if let Some(s) = spans.last_mut() {
                        s.1 += 1;
                    }
                    deltas.push(-prev);
                    prev = 0;
                }
            }
            if let Some(s) = spans.last_mut() {
                s.1 += 1;
            }
            deltas.push(count - prev);
            prev = count;
            next_index = i + 1;
        }
        (spans, deltas)
    }
}

/// One series' native buckets.
#[derive(Clone, Debug, PartialEq)]
pub struct NativeBuckets {
    /// The current resolution (lowered when there are too many buckets).
    pub schema: i32,
    /// Observations with `|v| <= ZERO_THRESHOLD`.
    pub zero_count: u64,
    /// Buckets of positive observations.
    pub positive: Buckets,
    /// Buckets of negative observations (indexed by `|v|`).
    pub negative: Buckets,
    max_buckets: usize,
}

impl NativeBuckets {
    /// Empty buckets at `schema`, keeping at most `max_buckets` populated (0: no limit).
    pub fn new(schema: i32, max_buckets: u32) -> Self {
        NativeBuckets {
            schema: schema.clamp(MIN_SCHEMA, MAX_SCHEMA),
            zero_count: 0,
            positive: Buckets::default(),
            negative: Buckets::default(),
            max_buckets: max_buckets as usize,
        }
    }

    /// Counts finite `v` `n` times.
    pub fn observe(&mut self, v: f64, n: u64) {
        let created = if v > ZERO_THRESHOLD {
            self.positive.add(bucket_index(v, self.schema), n)
        } else if v < -ZERO_THRESHOLD {
            self.negative.add(bucket_index(v, self.schema), n)
        } else {
            self.zero_count = self.zero_count.saturating_add(n);
            false
        };
        // As client_golang: one halving per observation that finds the count over the
        // limit (each observation adds at most one bucket).
        if created
            && self.max_buckets > 0
            && self.positive.len() + self.negative.len() > self.max_buckets
            && self.schema > MIN_SCHEMA
        {
            self.schema -= 1;
            self.positive.halve();
            self.negative.halve();
        }
    }

    /// How many buckets are populated (the zero bucket not counted).
    pub fn populated(&self) -> usize {
        self.positive.len() + self.negative.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_from_bucket_factor() {
        // floor(log2(log2(f))), negated, clamped to [-4, 8].
        assert_eq!(pick_schema(1.1), Some(3)); // log2(log2(1.1)) = -2.86
        assert_eq!(pick_schema(2.0), Some(0));
        assert_eq!(pick_schema(1.5), Some(1)); // -0.77 -> floor -1
        assert_eq!(pick_schema(4.0), Some(-1));
        assert_eq!(pick_schema(1.0001), Some(8));
        assert_eq!(pick_schema(1e300), Some(-4));
        // 2^(2^-3) = 1.0905: the largest schema whose factor fits under 1.09 is 4.
        assert_eq!(pick_schema(1.09), Some(4));
        assert_eq!(pick_schema(1.0), None);
        assert_eq!(pick_schema(0.5), None);
        assert_eq!(pick_schema(f64::NAN), None);
    }

    #[test]
    fn frexp_matches_go() {
        assert_eq!(frexp(1.0), (0.5, 1));
        assert_eq!(frexp(8.0), (0.5, 4));
        assert_eq!(frexp(100.0), (0.78125, 7));
        assert_eq!(frexp(0.3), (0.6, -1));
        assert_eq!(frexp(f64::MIN_POSITIVE / 4.0), (0.5, -1023));
        assert_eq!(frexp(-3.0), (-0.75, 2));
        assert_eq!(frexp(5e-324), (0.5, -1073));
        assert_eq!(frexp(0.0), (0.0, 0));
    }

    /// Indexes worked out by hand from client_golang's formulas.
    #[test]
    fn bucket_indexes_by_hand() {
        // Schema 3: frexp(1) = (0.5, 1): first bound >= 0.5 is #0; 0 + 0*8 = 0.
        assert_eq!(bucket_index(1.0, 3), 0);
        // frexp(1.5) = (0.75, 1): first bound >= 0.75 is #5 (0.7711); 5 + 0 = 5, and
        // 2^(4/8) = 1.414 < 1.5 <= 2^(5/8) = 1.542.
        assert_eq!(bucket_index(1.5, 3), 5);
        // frexp(100) = (0.78125, 7): #6 (0.8409); 6 + 6*8 = 54: 98.7 < 100 <= 107.6.
        assert_eq!(bucket_index(100.0, 3), 54);
        // frexp(0.001) = (0.512, -9): #1 (0.5453); 1 + (-10)*8 = -79.
        assert_eq!(bucket_index(0.001, 3), -79);
        // Negative values index by magnitude.
        assert_eq!(bucket_index(-100.0, 3), 54);
        // Schema 0: frexp(4) = (0.5, 3): exactly 0.5, so 3 - 1 = 2 (4 <= 2^2).
        assert_eq!(bucket_index(4.0, 0), 2);
        assert_eq!(bucket_index(5.0, 0), 3);
        // Schema -1: frexp(5) = (0.625, 3), offset 1: (3 + 1) >> 1 = 2 (4 < 5 <= 16).
        assert_eq!(bucket_index(5.0, -1), 2);
        // Schema -2: frexp(0.3) = (0.6, -1), offset 3: (-1 + 3) >> 2 = 0 (1/16 < 0.3 <= 1).
        assert_eq!(bucket_index(0.3, -2), 0);
        // Schema 8 at a bucket boundary: 2^(1/256) is bound #1 of the octave.
        assert_eq!(bucket_index(2f64.powf(1.0 / 256.0), 8), 1);
    }

    #[test]
    fn every_value_is_inside_its_bucket() {
        for schema in MIN_SCHEMA..=MAX_SCHEMA {
            for v in [1e-9, 0.001, 0.3, 1.0, 1.5, 2.0, 7.0, 100.0, 12345.678, 1e12] {
                let i = bucket_index(v, schema);
                let upper = bucket_upper_bound(i, schema);
                let lower = bucket_upper_bound(i - 1, schema);
                assert!(
                    lower < v && v <= upper,
                    "{v} at schema {schema}: ({lower}, {upper}]"
                );
            }
        }
    }

    #[test]
    fn spans_fill_small_gaps_only() {
        let mut b = Buckets::default();
        for (i, c) in [(-2, 1), (-1, 3), (1, 2), (5, 4)] {
            b.add(i, c);
        }
        // -2, -1 consecutive; a gap of one (0) is filled; a gap of three (2..=4) is a new span.
        let (spans, deltas) = b.spans_and_deltas();
        assert_eq!(spans, [(-2, 4), (3, 1)]);
        assert_eq!(deltas, [1, 2, -3, 2, 2]);
    }

    #[test]
    fn too_many_buckets_halve_the_resolution() {
        let mut n = NativeBuckets::new(3, 4);
        for v in [1.0, 1.1, 1.2, 1.3] {
            n.observe(v, 1);
        }
        assert_eq!((n.schema, n.populated()), (3, 4));
        // Bucket indexes 0, 2, 3, 4 at schema 3; a fifth (1.5 -> 5) halves to schema 2:
        // 0 -> 0, 2 -> 1, 3 -> 2, 4 -> 2, 5 -> 3.
        n.observe(1.5, 1);
        assert_eq!(n.schema, 2);
        assert_eq!(
            n.positive.iter().collect::<Vec<_>>(),
            [(0, 1), (1, 1), (2, 2), (3, 1)]
        );
        // Memory stays bounded whatever arrives.
        let mut n = NativeBuckets::new(8, 16);
        let mut v = 1e-3;
        while v < 1e6 {
            n.observe(v, 1);
            n.observe(-v, 1);
            v *= 1.7;
        }
        assert!(n.populated() <= 17, "{}", n.populated());
        assert!(n.schema < 0);
        // At the lowest resolution a finite f64 has at most 130 buckets per sign.
        assert!(
            bucket_index(f64::MAX, MIN_SCHEMA) - bucket_index(f64::MIN_POSITIVE, MIN_SCHEMA) < 130
        );
        n.observe(0.0, 2);
        assert_eq!(n.zero_count, 2);
    }
}
