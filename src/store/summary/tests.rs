//! Unit tests; the parent declares this module under #[cfg(test)].
//!
//! Behaviour of the sliding summary: accuracy, window aging, buffering, weights, odd values.

use super::*;
use crate::store::options::Objective;
use std::time::Duration;

fn default_opts() -> SummaryOptions {
    SummaryOptions::default()
}

/// The rank error of `value` as an answer for quantile `q` of `sorted` (weighted pairs):
/// the distance from `q·n` to the range of ranks `value` occupies, as a fraction of `n`.
fn rank_error(sorted: &[(f64, u64)], q: f64, value: f64) -> f64 {
    let n: u64 = sorted.iter().map(|&(_, w)| w).sum();
    let below: u64 = sorted
        .iter()
        .filter(|&&(v, _)| v < value)
        .map(|&(_, w)| w)
        .sum();
    let at_or_below: u64 = sorted
        .iter()
        .filter(|&&(v, _)| v <= value)
        .map(|&(_, w)| w)
        .sum();
    let target = q * n as f64;
    let (lo, hi) = (below as f64, at_or_below as f64);
    let distance = if target < lo {
        lo - target
    } else if target > hi {
        target - hi
    } else {
        0.0
    };
    distance / n as f64
}

fn assert_within_objectives(opts: &SummaryOptions, data: &[(f64, u64)], snap: &SummarySnapshot) {
    let mut sorted = data.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (objective, &(q, value)) in opts.objectives.iter().zip(&snap.quantiles) {
        assert_eq!(q, objective.quantile);
        let err = rank_error(&sorted, q, value);
        assert!(
            err <= objective.error,
            "q={q}: value {value} has rank error {err} > {}",
            objective.error
        );
    }
}

fn observe_all(values: &[f64]) -> (SummarySnapshot, Vec<(f64, u64)>) {
    let t0 = Instant::now();
    let mut s = SlidingSummary::new(&default_opts(), t0);
    for &v in values {
        s.observe(v, 1, t0);
    }
    (
        s.snapshot(t0),
        values.iter().map(|&v| (v, 1)).collect::<Vec<_>>(),
    )
}

#[test]
fn uniform_quantiles_within_error() {
    for n in [10_000, 100_000] {
        let mut rng = fastrand::Rng::with_seed(1);
        let values: Vec<f64> = (0..n).map(|_| rng.f64() * 1000.0).collect();
        let (snap, data) = observe_all(&values);
        assert_eq!(snap.count, n as u64);
        assert_within_objectives(&default_opts(), &data, &snap);
    }
}

#[test]
fn exponential_quantiles_within_error() {
    for n in [10_000, 100_000] {
        let mut rng = fastrand::Rng::with_seed(2);
        let values: Vec<f64> = (0..n).map(|_| -(1.0 - rng.f64()).ln() * 50.0).collect();
        let (snap, data) = observe_all(&values);
        assert_within_objectives(&default_opts(), &data, &snap);
    }
}

#[test]
fn integer_timers_with_many_duplicates_within_error() {
    // statsd timers are often whole milliseconds: many equal values.
    let mut rng = fastrand::Rng::with_seed(3);
    let values: Vec<f64> = (0..50_000).map(|_| f64::from(rng.u32(0..40))).collect();
    let (snap, data) = observe_all(&values);
    assert_within_objectives(&default_opts(), &data, &snap);
}

#[test]
fn ascending_input_within_error() {
    let up: Vec<f64> = (0..30_000).map(f64::from).collect();
    let (snap, data) = observe_all(&up);
    assert_within_objectives(&default_opts(), &data, &snap);
}

#[test]
fn descending_input_has_perks_bounded_error() {
    // perks' batch merge gives every batch inserted below all earlier data a pessimistic
    // delta, and its median drifts past the objective on strictly descending input (0.061 for
    // 0.05 here). client_golang shows the same numbers, so statsgate keeps them (the literal
    // perks comparison in `ckms` pins the algorithm); the drift stays within twice the error.
    let down: Vec<f64> = (0..30_000).rev().map(f64::from).collect();
    let (snap, data) = observe_all(&down);
    let loose = SummaryOptions {
        objectives: default_opts()
            .objectives
            .iter()
            .map(|o| Objective {
                quantile: o.quantile,
                error: o.error * 2.0,
            })
            .collect(),
        ..default_opts()
    };
    assert_within_objectives(&loose, &data, &snap);
}

#[test]
fn empty_window_is_nan_and_zero() {
    let t0 = Instant::now();
    let mut s = SlidingSummary::new(&default_opts(), t0);
    let snap = s.snapshot(t0);
    assert_eq!(snap.quantiles.len(), 3);
    assert!(snap.quantiles.iter().all(|&(_, v)| v.is_nan()));
    assert_eq!(
        snap.quantiles.iter().map(|&(q, _)| q).collect::<Vec<_>>(),
        vec![0.5, 0.9, 0.99]
    );
    assert_eq!((snap.sum, snap.count), (0.0, 0));
}

#[test]
fn quantiles_follow_objectives_order() {
    let opts = SummaryOptions {
        objectives: vec![
            Objective {
                quantile: 0.99,
                error: 0.001,
            },
            Objective {
                quantile: 0.1,
                error: 0.01,
            },
        ],
        ..SummaryOptions::default()
    };
    let t0 = Instant::now();
    let mut s = SlidingSummary::new(&opts, t0);
    for i in 1..=100 {
        s.observe(f64::from(i), 1, t0);
    }
    let snap = s.snapshot(t0);
    assert_eq!(snap.quantiles, vec![(0.99, 99.0), (0.1, 10.0)]);
}

#[test]
fn observations_expire_after_max_age_but_sum_and_count_stay() {
    let t0 = Instant::now();
    let opts = default_opts(); // 10 minutes, 5 buckets of 2 minutes
    let mut s = SlidingSummary::new(&opts, t0);
    s.observe(7.0, 1, t0);
    s.observe(9.0, 1, t0);
    let at_max_age = s.snapshot(t0 + opts.max_age);
    assert_eq!(at_max_age.quantiles[0].1, 7.0, "still inside the window");
    let later = s.snapshot(t0 + opts.max_age + Duration::from_millis(1));
    assert!(
        later.quantiles.iter().all(|&(_, v)| v.is_nan()),
        "{later:?}"
    );
    assert_eq!((later.sum, later.count), (16.0, 2));
}

#[test]
fn expiry_happens_even_if_the_buffer_was_never_flushed() {
    // The value sits in the hot buffer until the snapshot 11 minutes later; client_golang
    // merges it first, then rotates every stream away.
    let t0 = Instant::now();
    let mut s = SlidingSummary::new(&default_opts(), t0);
    s.observe(1.0, 1, t0 + Duration::from_secs(1));
    let snap = s.snapshot(t0 + Duration::from_secs(660));
    assert!(snap.quantiles[0].1.is_nan());
    assert_eq!(snap.count, 1);
}

#[test]
fn partial_aging_across_buckets() {
    let t0 = Instant::now();
    let opts = default_opts();
    let bucket = opts.max_age / opts.age_buckets;
    let mut s = SlidingSummary::new(&opts, t0);
    // 100 in the first interval, 200 in the third.
    s.observe(100.0, 1, t0 + Duration::from_secs(1));
    s.observe(200.0, 1, t0 + bucket * 2 + Duration::from_secs(1));
    // Both live: the median of {100, 200} is 100, the 0.99 quantile is 200.
    let both = s.snapshot(t0 + bucket * 3);
    assert_eq!(both.quantiles[0].1, 100.0);
    assert_eq!(both.quantiles[2].1, 200.0);
    // Interval 0 has aged out once interval 5 starts; interval 2's data remains.
    let one = s.snapshot(t0 + bucket * 5 + Duration::from_secs(1));
    assert_eq!(one.quantiles[0].1, 200.0);
    assert_eq!(one.quantiles[2].1, 200.0);
    // ... until interval 7 starts.
    let none = s.snapshot(t0 + bucket * 7 + Duration::from_secs(1));
    assert!(none.quantiles[0].1.is_nan());
    assert_eq!((none.sum, none.count), (300.0, 2));
}

#[test]
fn window_keeps_working_after_rotation() {
    let t0 = Instant::now();
    let opts = default_opts();
    let bucket = opts.max_age / opts.age_buckets;
    let mut s = SlidingSummary::new(&opts, t0);
    for k in 0..40u32 {
        let now = t0 + bucket * k + Duration::from_secs(1);
        s.observe(f64::from(k), 1, now);
        let snap = s.snapshot(now);
        // The head holds intervals k-4..=k, one value each; few values are answered exactly
        // (element ceil(m·q) − 1 of the sorted window).
        let window: Vec<f64> = (k.saturating_sub(4)..=k).map(f64::from).collect();
        let exact = |q: f64| window[((window.len() as f64 * q).ceil() as usize).max(1) - 1];
        for &(q, v) in &snap.quantiles {
            assert_eq!(v, exact(q), "k={k} q={q}");
        }
        assert_eq!(snap.count, u64::from(k) + 1);
    }
}

#[test]
fn huge_time_gap_is_fast_and_empty() {
    let t0 = Instant::now();
    let opts = SummaryOptions {
        max_age: Duration::from_nanos(5),
        ..SummaryOptions::default()
    };
    let mut s = SlidingSummary::new(&opts, t0);
    s.observe(1.0, 1, t0);
    // 10 years in 1ns intervals: a loop per interval would never finish.
    let snap = s.snapshot(t0 + Duration::from_secs(10 * 365 * 86_400));
    assert!(snap.quantiles[0].1.is_nan());
    s.observe(2.0, 1, t0 + Duration::from_secs(10 * 365 * 86_400));
    let snap = s.snapshot(t0 + Duration::from_secs(10 * 365 * 86_400));
    assert_eq!(snap.quantiles[0].1, 2.0);
}

#[test]
fn clock_going_backwards_does_not_panic_or_unexpire() {
    let t0 = Instant::now() + Duration::from_secs(3600);
    let mut s = SlidingSummary::new(&default_opts(), t0);
    s.observe(1.0, 1, t0 + Duration::from_secs(1200));
    s.observe(2.0, 1, t0 - Duration::from_secs(60));
    let snap = s.snapshot(t0);
    assert_eq!(snap.count, 2);
    assert_eq!(snap.quantiles[0].1, 1.0);
}

#[test]
fn snapshot_sees_buffered_observations() {
    let t0 = Instant::now();
    let opts = SummaryOptions {
        buf_cap: 1000,
        ..SummaryOptions::default()
    };
    let mut s = SlidingSummary::new(&opts, t0);
    s.observe(42.0, 1, t0);
    assert_eq!(s.hot.len(), 1, "still buffered");
    let snap = s.snapshot(t0);
    assert!(s.hot.is_empty(), "the snapshot flushed the buffer");
    assert!(snap.quantiles.iter().all(|&(_, v)| v == 42.0));
}

#[test]
fn full_buffer_is_swapped_out_and_merged_without_a_snapshot() {
    let t0 = Instant::now();
    let opts = SummaryOptions {
        buf_cap: 10,
        ..SummaryOptions::default()
    };
    let mut s = SlidingSummary::new(&opts, t0);
    for i in 0..9 {
        assert_eq!(s.observe(f64::from(i), 1, t0), Observed::Recorded);
    }
    assert_eq!(s.observe(9.0, 1, t0), Observed::MergeDue);
    assert!(s.hot.is_empty());
    assert_eq!(
        s.streams[s.head].count(),
        0.0,
        "the merge waits to be asked for"
    );
    s.merge_due();
    assert_eq!(s.streams[s.head].count(), 10.0);
    s.merge_due();
    assert_eq!(s.streams[s.head].count(), 10.0, "merged once");
    s.observe(1.0, 1, t0);
    assert_eq!(s.hot.len(), 1);
}

#[test]
fn weighted_equals_repeated_for_one_value() {
    let t0 = Instant::now();
    let mut weighted = SlidingSummary::new(&default_opts(), t0);
    let mut repeated = SlidingSummary::new(&default_opts(), t0);
    weighted.observe(3.25, 1000, t0);
    for _ in 0..1000 {
        repeated.observe(3.25, 1, t0);
    }
    assert_eq!(weighted.snapshot(t0), repeated.snapshot(t0));
}

#[test]
fn weighted_equals_repeated_while_exact() {
    // Below the stream buffer size both are answered exactly, so they agree bit for bit.
    let t0 = Instant::now();
    let mut weighted = SlidingSummary::new(&default_opts(), t0);
    let mut repeated = SlidingSummary::new(&default_opts(), t0);
    for (v, w) in [(1.5, 100u32), (2.5, 3), (0.5, 40), (9.0, 1), (4.0, 20)] {
        weighted.observe(v, w, t0);
        for _ in 0..w {
            repeated.observe(v, 1, t0);
        }
    }
    assert_eq!(weighted.snapshot(t0), repeated.snapshot(t0));
}

#[test]
fn weighted_and_repeated_agree_within_error_in_a_large_stream() {
    let t0 = Instant::now();
    let opts = default_opts();
    let mut weighted = SlidingSummary::new(&opts, t0);
    let mut repeated = SlidingSummary::new(&opts, t0);
    let mut rng = fastrand::Rng::with_seed(4);
    let mut data = Vec::new();
    for _ in 0..20_000 {
        let v = rng.f64() * 100.0;
        weighted.observe(v, 1, t0);
        repeated.observe(v, 1, t0);
        data.push((v, 1));
    }
    weighted.observe(50.0, 1000, t0);
    for _ in 0..1000 {
        repeated.observe(50.0, 1, t0);
    }
    data.push((50.0, 1000));
    let (w, r) = (weighted.snapshot(t0), repeated.snapshot(t0));
    assert_eq!((w.sum, w.count), (r.sum, r.count));
    assert_within_objectives(&opts, &data, &w);
    assert_within_objectives(&opts, &data, &r);
}

#[test]
fn huge_weights_stay_small_fast_and_accurate() {
    let t0 = Instant::now();
    let opts = default_opts();
    let mut s = SlidingSummary::new(&opts, t0);
    let mut rng = fastrand::Rng::with_seed(5);
    let mut data = Vec::new();
    for i in 0..20_000u32 {
        let v = rng.f64();
        // A mix of 1 and hostile sample rates (@0.000001 → 1_000_000 per event).
        let w = if i % 3 == 0 {
            1_000_000
        } else {
            rng.u32(1..=1000)
        };
        s.observe(v, w, t0);
        data.push((v, u64::from(w)));
    }
    let snap = s.snapshot(t0);
    assert_eq!(snap.count, data.iter().map(|&(_, w)| w).sum::<u64>());
    assert_within_objectives(&opts, &data, &snap);
    eprintln!(
        "internal samples after 20k weighted observations: {}",
        s.internal_samples()
    );
    assert!(
        s.internal_samples() < 5 * 1_000,
        "{} internal samples",
        s.internal_samples()
    );
}

#[test]
fn one_heavy_value_dominates_the_quantiles() {
    let t0 = Instant::now();
    let opts = default_opts();
    let mut s = SlidingSummary::new(&opts, t0);
    let mut data = Vec::new();
    for i in 0..2_000 {
        s.observe(f64::from(i), 1, t0);
        data.push((f64::from(i), 1));
    }
    s.observe(5000.0, 1_000_000, t0);
    data.push((5000.0, 1_000_000));
    let snap = s.snapshot(t0);
    assert_within_objectives(&opts, &data, &snap);
    assert_eq!(snap.quantiles[0].1, 5000.0);
}

#[test]
fn zero_count_is_a_no_op() {
    let t0 = Instant::now();
    let mut s = SlidingSummary::new(&default_opts(), t0);
    s.observe(1.0, 0, t0);
    let snap = s.snapshot(t0);
    assert_eq!(snap.count, 0);
    assert!(snap.quantiles[0].1.is_nan());
}

#[test]
fn nan_infinities_and_overflowing_sums_are_refused() {
    let t0 = Instant::now();
    let opts = SummaryOptions {
        buf_cap: 7,
        ..SummaryOptions::default()
    };
    let mut s = SlidingSummary::new(&opts, t0);
    let odd = [
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        1.0,
    ];
    let (mut count, mut sum) = (0u64, 0.0);
    for i in 0..5_000 {
        let (v, n) = (odd[i % odd.len()], (i % 4) as u32);
        assert_eq!(s.observe(v, n, t0).recorded(), v.is_finite(), "{v}");
        if v.is_finite() {
            count += u64::from(n);
            sum += v * f64::from(n);
        }
        if i % 997 == 0 {
            let _ = s.snapshot(t0);
        }
    }
    let snap = s.snapshot(t0);
    assert_eq!((snap.count, snap.sum), (count, sum));
    assert!(snap.quantiles.iter().all(|&(_, q)| q.is_finite()));

    let mut big = SlidingSummary::new(&default_opts(), t0);
    assert!(big.observe(f64::MAX, 1, t0).recorded());
    assert!(
        !big.observe(f64::MAX, 1, t0).recorded(),
        "the sum would overflow"
    );
    assert!(
        !big.observe(1e300, u32::MAX, t0).recorded(),
        "the weighted value overflows"
    );
    let snap = big.snapshot(t0);
    assert_eq!((snap.count, snap.sum), (1, f64::MAX));
}

#[test]
fn no_objectives_keeps_only_sum_and_count() {
    let t0 = Instant::now();
    let opts = SummaryOptions {
        objectives: Vec::new(),
        ..SummaryOptions::default()
    };
    let mut s = SlidingSummary::new(&opts, t0);
    s.observe(2.0, 5, t0);
    let snap = s.snapshot(t0);
    assert!(snap.quantiles.is_empty());
    assert_eq!((snap.sum, snap.count), (10.0, 5));
    assert_eq!(s.internal_samples(), 0);
}

#[test]
fn degenerate_options_fall_back_and_do_not_panic() {
    let t0 = Instant::now();
    let opts = SummaryOptions {
        objectives: vec![
            Objective {
                quantile: 1.0,
                error: 0.0,
            },
            Objective {
                quantile: 0.0,
                error: 0.5,
            },
            Objective {
                quantile: f64::NAN,
                error: 2.0,
            },
        ],
        max_age: Duration::ZERO,
        age_buckets: 0,
        buf_cap: 0,
    };
    let mut s = SlidingSummary::new(&opts, t0);
    assert_eq!(s.streams.len(), 5);
    assert_eq!(s.buf_cap, 500);
    for i in 0..3_000 {
        s.observe(f64::from(i), 1, t0);
    }
    // The invariant is infinite for these targets, so everything collapses into one tuple
    // (perks does the same): only the 1.0 quantile is meaningful.
    let snap = s.snapshot(t0 + Duration::from_secs(599));
    assert_eq!(snap.quantiles[0], (1.0, 2999.0));
    assert_eq!(snap.quantiles[1].0, 0.0);
    assert!(snap.quantiles[2].0.is_nan());
    assert_eq!(snap.count, 3_000);
}

#[test]
fn an_observation_after_the_interval_end_flushes_the_buffer_first() {
    let t0 = Instant::now();
    let opts = default_opts();
    let bucket = opts.max_age / opts.age_buckets;
    let mut s = SlidingSummary::new(&opts, t0);
    s.observe(1.0, 1, t0);
    // Exactly on the boundary still belongs to the first interval (client_golang's `After`).
    s.observe(2.0, 1, t0 + bucket);
    assert_eq!(s.hot.len(), 2);
    assert_eq!(
        s.observe(3.0, 1, t0 + bucket + Duration::from_nanos(1)),
        Observed::MergeDue
    );
    assert_eq!(
        s.hot.len(),
        1,
        "the old buffer was swapped out before the new value"
    );
    s.merge_due();
    assert_eq!(s.streams[s.head].count(), 2.0);
}

#[test]
fn memory_stays_bounded_for_a_long_busy_window() {
    // CKMS keeps O((1/ε)·log(εn)) tuples per stream; 200k observations must not approach
    // 200k stored samples.
    let t0 = Instant::now();
    let mut s = SlidingSummary::new(&default_opts(), t0);
    let mut rng = fastrand::Rng::with_seed(6);
    for _ in 0..200_000 {
        s.observe(rng.f64() * 1000.0, 1, t0);
    }
    let _ = s.snapshot(t0);
    let held = s.internal_samples();
    eprintln!("internal samples after 200k unit observations: {held}");
    assert!(held < 5 * 1_000, "{held} internal samples");
}

/// A merge put off (for a while, or until the summary's own next swap or snapshot) gives
/// bit for bit the quantiles of a merge done at once, across interval changes, buffers cut
/// short by time, and snapshots taken while a buffer waits.
#[test]
fn merges_put_off_give_the_quantiles_of_merges_done_at_once() {
    let opts = SummaryOptions {
        max_age: Duration::from_secs(10),
        age_buckets: 5,
        buf_cap: 50,
        ..default_opts()
    };
    let t0 = Instant::now();
    let mut rng = fastrand::Rng::with_seed(21);
    for round in 0..20 {
        let mut at_once = SlidingSummary::new(&opts, t0);
        let mut put_off = SlidingSummary::new(&opts, t0);
        let mut waiting = 0u32;
        let (mut due, mut merged_late) = (0u32, 0u32);
        let mut now = t0;
        for i in 0..20_000 {
            // Mostly dense observations, now and then a gap that ends buffers early or
            // rotates streams out.
            now += match rng.u32(0..1000) {
                0 => Duration::from_secs(rng.u64(1..15)),
                1..=20 => Duration::from_millis(rng.u64(1..900)),
                _ => Duration::ZERO,
            };
            let v = rng.f64() * 100.0 + f64::from(round);
            let count = if rng.u32(0..50) == 0 {
                rng.u32(2..10)
            } else {
                1
            };
            if at_once.observe(v, count, now) == Observed::MergeDue {
                at_once.merge_due();
            }
            if put_off.observe(v, count, now) == Observed::MergeDue {
                due += 1;
                waiting = rng.u32(0..80);
            }
            if waiting > 0 {
                waiting -= 1;
                if waiting == 0 {
                    put_off.merge_due();
                    merged_late += 1;
                }
            }
            if i % 997 == 0 {
                let (a, b) = (at_once.snapshot(now), put_off.snapshot(now));
                let bits = |s: &SummarySnapshot| {
                    s.quantiles
                        .iter()
                        .map(|&(q, v)| (q.to_bits(), v.to_bits()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(bits(&a), bits(&b), "round {round}, observation {i}");
                assert_eq!((a.sum.to_bits(), a.count), (b.sum.to_bits(), b.count));
            }
        }
        assert!(
            due > 100 && merged_late > 10,
            "{due} due, {merged_late} late"
        );
    }
}

/// A buffer waits at most once: a second swap merges the first buffer, so memory stays at
/// two buffers whatever the caller does.
#[test]
fn at_most_one_buffer_waits() {
    let opts = SummaryOptions {
        buf_cap: 10,
        ..default_opts()
    };
    let t0 = Instant::now();
    let mut s = SlidingSummary::new(&opts, t0);
    let mut due = 0;
    for i in 0..1_000 {
        if s.observe(f64::from(i), 1, t0) == Observed::MergeDue {
            due += 1;
        }
        assert!(s.hot.len() + s.cold.len() <= 20);
    }
    assert_eq!(due, 100);
    assert!(s.cold_due);
    let snap = s.snapshot(t0);
    assert!(!s.cold_due);
    assert_eq!(snap.count, 1_000);
}
