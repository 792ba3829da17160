//! Unit tests; the parent declares this module under #[cfg(test)].

use super::*;

fn spec<'a>(name: &'a str, kind: SeriesKind<'a>, labels: &[(&str, &str)]) -> SeriesSpec<'a> {
    SeriesSpec {
        name,
        help: None,
        kind,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ttl: Duration::ZERO,
        style: TextStyle::default(),
    }
}

fn store() -> Store {
    Store::with_clock(StoreOptions::default(), CoarseClock::manual())
}

#[test]
fn same_labels_in_any_order_find_one_series() {
    let s = store();
    let a = s
        .resolve(&spec("m", SeriesKind::Counter, &[("b", "2"), ("a", "1")]))
        .unwrap();
    let b = s
        .resolve(&spec("m", SeriesKind::Counter, &[("a", "1"), ("b", "2")]))
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(s.series_count(), 1);
    assert_eq!(a.labels()[0].0.as_ref(), "a");
}

#[test]
fn different_label_sets_under_one_name_are_kept() {
    let s = store();
    s.resolve(&spec("m", SeriesKind::Counter, &[("a", "1")]))
        .unwrap();
    s.resolve(&spec("m", SeriesKind::Counter, &[("b", "1")]))
        .unwrap();
    s.resolve(&spec("m", SeriesKind::Counter, &[])).unwrap();
    assert_eq!(s.families()[0].len(), 3);
}

#[test]
fn first_type_wins() {
    let s = store();
    s.resolve(&spec("m", SeriesKind::Counter, &[])).unwrap();
    let err = s.resolve(&spec("m", SeriesKind::Gauge, &[])).unwrap_err();
    assert!(matches!(
        err,
        ResolveError::Conflict {
            existing: "counter",
            ..
        }
    ));
}

#[test]
fn observer_suffixes_conflict_both_ways() {
    let hist = ObserverOptions::Histogram(HistogramOptions::default());
    let summ = ObserverOptions::Summary(SummaryOptions::default());
    let s = store();
    s.resolve(&spec("h", SeriesKind::Observer(&hist), &[]))
        .unwrap();
    for n in ["h_sum", "h_count", "h_bucket"] {
        assert!(
            s.resolve(&spec(n, SeriesKind::Counter, &[])).is_err(),
            "{n}"
        );
    }
    s.resolve(&spec("q", SeriesKind::Observer(&summ), &[]))
        .unwrap();
    assert!(s.resolve(&spec("q_sum", SeriesKind::Gauge, &[])).is_err());
    // statsd_exporter refuses X_bucket next to a summary X too, though a summary has no
    // bucket series.
    assert!(
        s.resolve(&spec("q_bucket", SeriesKind::Gauge, &[]))
            .is_err()
    );

    s.resolve(&spec("c_count", SeriesKind::Counter, &[]))
        .unwrap();
    assert!(
        s.resolve(&spec("c", SeriesKind::Observer(&hist), &[]))
            .is_err()
    );
    assert!(
        s.resolve(&spec("c", SeriesKind::Observer(&summ), &[]))
            .is_err()
    );
    // A counter named like the base is only a same-name conflict.
    s.resolve(&spec("plain", SeriesKind::Counter, &[])).unwrap();
    s.resolve(&spec("plain_sum", SeriesKind::Counter, &[]))
        .unwrap();
}

#[test]
fn reserved_names_are_refused() {
    let s = Store::with_clock(
        StoreOptions {
            shards: 4,
            reserved_names: vec!["statsd_exporter_lines_total".into()],
            ..StoreOptions::default()
        },
        CoarseClock::manual(),
    );
    let err = s
        .resolve(&spec(
            "statsd_exporter_lines_total",
            SeriesKind::Counter,
            &[],
        ))
        .unwrap_err();
    assert!(matches!(err, ResolveError::Reserved { .. }));
    let summ = ObserverOptions::Summary(SummaryOptions::default());
    let err = s.resolve(&spec(
        "statsd_exporter_lines",
        SeriesKind::Observer(&summ),
        &[],
    ));
    assert!(
        err.is_ok(),
        "its _sum/_count do not collide with lines_total"
    );
}

#[test]
fn ttl_expires_idle_series_and_keeps_fresh_ones() {
    let s = store();
    let mut a = spec("m", SeriesKind::Counter, &[("k", "a")]);
    a.ttl = Duration::from_secs(1);
    let mut b = spec("m", SeriesKind::Counter, &[("k", "b")]);
    b.ttl = Duration::from_secs(2);
    let sa = s.resolve(&a).unwrap();
    let sb = s.resolve(&b).unwrap();
    s.clock().advance(1000);
    assert_eq!(s.expire(), 0, "last_update + ttl == now is not yet expired");
    s.clock().advance(1);
    assert_eq!(s.expire(), 1);
    assert!(sa.is_dead());
    assert!(!sb.is_dead());
    sb.touch(s.clock().now_ms());
    s.clock().advance(1500);
    assert_eq!(s.expire(), 0, "an update refreshes the series");
    s.clock().advance(600);
    assert_eq!(s.expire(), 1);
    assert!(s.families().is_empty(), "an empty family goes too");
    // The name is free again, even for another type.
    s.resolve(&spec("m", SeriesKind::Gauge, &[])).unwrap();
}

#[test]
fn no_ttl_means_never_expire() {
    let s = store();
    s.resolve(&spec("m", SeriesKind::Counter, &[])).unwrap();
    s.clock().advance(u64::MAX / 4);
    assert_eq!(s.expire(), 0);
    assert_eq!(s.series_count(), 1);
}

#[test]
fn chunked_walk_sees_every_series_in_order() {
    let s = store();
    for i in 0..1000 {
        let v = format!("{i:04}");
        s.resolve(&spec("m", SeriesKind::Counter, &[("i", &v)]))
            .unwrap();
    }
    let fam = &s.families()[0];
    let mut seen = Vec::new();
    fam.for_each_series(7, |x| seen.push(x.labels()[0].1.to_string()));
    assert_eq!(seen.len(), 1000);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn counters_gauges_and_histograms_aggregate() {
    let s = store();
    let c = s.resolve(&spec("c", SeriesKind::Counter, &[])).unwrap();
    c.counter_add(1.5);
    c.counter_add(2.0);
    assert_eq!(c.scalar(), 3.5);
    let g = s.resolve(&spec("g", SeriesKind::Gauge, &[])).unwrap();
    g.gauge_update(333.0, false);
    g.gauge_update(-10.0, true);
    g.gauge_update(4.0, true);
    assert_eq!(g.scalar(), 327.0);
    let hist = ObserverOptions::Histogram(HistogramOptions::with_buckets(vec![1.0, 2.0]));
    let h = s
        .resolve(&spec("h", SeriesKind::Observer(&hist), &[]))
        .unwrap();
    h.observe(1.0, 1, s.clock(), 0);
    h.observe(1.5, 3, s.clock(), 0);
    h.observe(9.0, 1, s.clock(), 0);
    let super::series::SeriesValue::Histogram(cell) = &h.value else {
        panic!()
    };
    let snap = cell.snapshot();
    let (cum, sum) = (snap.cumulative, snap.sum);
    assert_eq!(cum, vec![1, 4, 5]);
    assert_eq!(sum, 1.0 + 4.5 + 9.0);
}

#[test]
fn a_native_histogram_keeps_both_layouts_in_step() {
    let s = store();
    let hist = ObserverOptions::Histogram(HistogramOptions {
        buckets: vec![1.0, 10.0],
        native: Some(crate::store::NativeHistogramOptions {
            bucket_factor: 1.1,
            max_buckets: 8,
        }),
    });
    let h = s
        .resolve(&spec("nh", SeriesKind::Observer(&hist), &[]))
        .unwrap();
    // 1.5 is native bucket 5 at schema 3 (2^(4/8) < 1.5 <= 2^(5/8)); 0 is the zero bucket.
    assert!(h.observe(1.5, 3, s.clock(), 0).recorded());
    assert!(h.observe(0.0, 1, s.clock(), 0).recorded());
    assert!(h.observe(-2.0, 1, s.clock(), 0).recorded());
    let (_, snap) = h.histogram_full_snapshot().unwrap();
    let native = snap.native.unwrap();
    assert_eq!(snap.cumulative, vec![2, 5, 5]);
    assert_eq!(native.schema, 3);
    assert_eq!(native.zero_count, 1);
    assert_eq!(native.positive.iter().collect::<Vec<_>>(), [(5, 3)]);
    // -2 = -(0.5 * 2^2): bucket 8 of the negative side.
    assert_eq!(native.negative.iter().collect::<Vec<_>>(), [(8, 1)]);
    // However many distinct values arrive, at most max_buckets stay populated (plus the one
    // that triggers the next halving), and both layouts count every observation.
    let mut v = 0.001;
    for _ in 0..2000 {
        assert!(h.observe(v, 1, s.clock(), 0).recorded());
        v *= 1.013;
    }
    let (_, snap) = h.histogram_full_snapshot().unwrap();
    let native = snap.native.unwrap();
    assert!(native.populated() <= 9, "{}", native.populated());
    assert!(native.schema < 3);
    let native_total: u64 = native.zero_count
        + native.positive.iter().map(|(_, c)| c).sum::<u64>()
        + native.negative.iter().map(|(_, c)| c).sum::<u64>();
    assert_eq!(native_total, 2005);
    assert_eq!(snap.cumulative.last(), Some(&2005));
}

#[test]
fn a_scalar_series_stays_small() {
    // Issue 4's budget: at most 200 bytes per counter or gauge beyond its name and labels.
    // The series itself, with its Arc header, is well under that.
    assert!(
        std::mem::size_of::<Series>() <= 64,
        "{}",
        std::mem::size_of::<Series>()
    );
}

#[test]
fn sorted_family_list_is_reused_until_a_family_changes() {
    let s = store();
    s.resolve(&spec("b", SeriesKind::Counter, &[])).unwrap();
    let first = s.families();
    let again = s.families();
    assert!(
        Arc::ptr_eq(&first, &again),
        "no new family: the sorted list is reused"
    );
    s.resolve(&spec("a", SeriesKind::Counter, &[])).unwrap();
    let names: Vec<String> = s.families().iter().map(|f| f.name().to_string()).collect();
    assert_eq!(names, ["a", "b"]);
}

fn limited(max_series: usize, max_series_per_metric: usize) -> Store {
    Store::with_clock(
        StoreOptions {
            max_series,
            max_series_per_metric,
            ..StoreOptions::default()
        },
        CoarseClock::manual(),
    )
}

fn counter_with(s: &Store, name: &str, v: &str) -> Result<SeriesRef, ResolveError> {
    s.resolve(&spec(name, SeriesKind::Counter, &[("k", v)]))
}

#[test]
fn max_series_refuses_new_series_and_keeps_existing_ones() {
    let s = limited(3, 0);
    let kept: Vec<SeriesRef> = ["a", "b", "c"]
        .iter()
        .map(|v| counter_with(&s, "m", v).unwrap())
        .collect();
    let err = counter_with(&s, "m", "d").unwrap_err();
    assert!(
        matches!(err, ResolveError::SeriesLimit { limit: 3, .. }),
        "{err}"
    );
    // A refused new family leaves nothing behind.
    assert!(matches!(
        counter_with(&s, "other", "x"),
        Err(ResolveError::SeriesLimit { .. })
    ));
    assert_eq!(s.families().len(), 1);
    assert_eq!(s.family_count(FamilyType::Counter), 1);
    assert_eq!(s.series_count(), 3);
    // Existing series are still found, and update exactly.
    for (v, want) in ["a", "b", "c"].iter().zip(&kept) {
        let again = counter_with(&s, "m", v).unwrap();
        assert!(Arc::ptr_eq(&again, want));
        assert!(again.counter_add(2.0));
    }
    assert_eq!(kept[1].scalar(), 2.0);
}

#[test]
fn max_series_per_metric_bounds_one_family_only() {
    let s = limited(0, 2);
    counter_with(&s, "m", "a").unwrap();
    counter_with(&s, "m", "b").unwrap();
    let err = counter_with(&s, "m", "c").unwrap_err();
    assert!(
        matches!(err, ResolveError::MetricSeriesLimit { limit: 2, .. }),
        "{err}"
    );
    counter_with(&s, "m", "a").unwrap();
    counter_with(&s, "n", "a").unwrap();
    counter_with(&s, "n", "b").unwrap();
    assert_eq!(s.series_count(), 4, "the refused one did not keep a slot");
}

#[test]
fn limits_hold_under_concurrent_creators() {
    let s = Arc::new(limited(1000, 0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..1000)
                    .filter(|i| {
                        counter_with(&s, &format!("f{}", i % 50), &format!("{t}-{i}")).is_ok()
                    })
                    .count()
            })
        })
        .collect();
    let created: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(created, 1000);
    assert_eq!(s.series_count(), 1000);
    let held: usize = s.families().iter().map(|f| f.len()).sum();
    assert_eq!(held, 1000);
}

#[test]
fn expiry_makes_room_and_moves_the_room_epoch() {
    let s = limited(1, 0);
    let mut a = spec("a", SeriesKind::Counter, &[]);
    a.ttl = Duration::from_secs(1);
    s.resolve(&a).unwrap();
    let epoch = s.room_epoch();
    assert!(matches!(
        s.resolve(&spec("b", SeriesKind::Counter, &[])),
        Err(ResolveError::SeriesLimit { .. })
    ));
    s.clock().advance(1001);
    assert_eq!(s.expire(), 1);
    assert_ne!(s.room_epoch(), epoch);
    s.resolve(&spec("b", SeriesKind::Counter, &[])).unwrap();
    assert_eq!(s.expire(), 0);
    assert_eq!(
        (s.family_count(FamilyType::Counter), s.series_count()),
        (1, 1)
    );
}

/// The maintenance thread's schedule, driven by a manual clock in the thread's 100 ms steps:
/// a 2 s TTL ends within 3 s among many families, and no pass runs while nothing is due.
#[test]
fn a_2s_ttl_expires_within_3s_and_passes_run_only_when_due() {
    let s = store();
    for i in 0..20_000 {
        s.resolve(&spec(&format!("idle{i}"), SeriesKind::Counter, &[]))
            .unwrap();
    }
    let mut t = spec("ttl", SeriesKind::Counter, &[("k", "v")]);
    t.ttl = Duration::from_secs(2);
    let series = s.resolve(&t).unwrap();
    let mut schedule = ExpirySchedule::default();
    let mut passes = 0;
    let mut expired_at = None;
    for _ in 0..50 {
        s.clock().advance(100);
        let before = schedule.last_pass_ms;
        if schedule.run(&s) > 0 {
            expired_at.get_or_insert(s.clock().now_ms());
        }
        passes += usize::from(schedule.last_pass_ms != before);
    }
    let at = expired_at.expect("the series expired");
    assert!((2001..=3000).contains(&at), "expired at {at} ms");
    assert!(series.is_dead());
    assert_eq!(passes, 1, "one pass, when the deadline had passed");
    assert_eq!(s.series_count(), 20_000);

    // A series kept fresh is never expired, and passes stay at least 500 ms apart.
    let mut t = spec("fresh", SeriesKind::Counter, &[]);
    t.ttl = Duration::from_millis(300);
    let fresh = s.resolve(&t).unwrap();
    let mut last = None;
    for _ in 0..50 {
        s.clock().advance(100);
        fresh.touch(s.clock().now_ms());
        let before = schedule.last_pass_ms;
        schedule.run(&s);
        if schedule.last_pass_ms != before {
            let now = s.clock().now_ms();
            if let Some(prev) = last {
                assert!(now - prev >= MIN_EXPIRY_PASS_INTERVAL_MS);
            }
            last = Some(now);
        }
    }
    assert!(!fresh.is_dead());
}

#[test]
fn expiry_keeps_per_type_counts() {
    let s = store();
    let hist = ObserverOptions::Histogram(HistogramOptions::default());
    let mut h = spec("h", SeriesKind::Observer(&hist), &[]);
    h.ttl = Duration::from_secs(1);
    s.resolve(&h).unwrap();
    s.resolve(&spec("g", SeriesKind::Gauge, &[])).unwrap();
    assert_eq!(s.family_count(FamilyType::Histogram), 1);
    s.clock().advance(1001);
    assert_eq!(s.expire(), 1);
    assert_eq!(s.family_count(FamilyType::Histogram), 0);
    assert_eq!(s.family_count(FamilyType::Gauge), 1);
}

#[test]
fn totals_never_become_infinite_or_wrap() {
    let s = store();
    let c = s.resolve(&spec("c", SeriesKind::Counter, &[])).unwrap();
    assert!(c.counter_add(f64::MAX));
    assert!(!c.counter_add(f64::MAX), "the total would overflow");
    assert!(!c.counter_add(f64::INFINITY));
    assert!(!c.counter_add(f64::NAN));
    assert_eq!(c.scalar(), f64::MAX);

    let hist = ObserverOptions::Histogram(HistogramOptions::with_buckets(vec![1.0]));
    let h = s
        .resolve(&spec("h", SeriesKind::Observer(&hist), &[]))
        .unwrap();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(!h.observe(bad, 1, s.clock(), 0).recorded(), "{bad}");
    }
    assert!(h.observe(2.0, u32::MAX, s.clock(), 0).recorded());
    assert!(
        !h.observe(f64::MAX, 2, s.clock(), 0).recorded(),
        "the sum would overflow"
    );
    let super::series::SeriesValue::Histogram(cell) = &h.value else {
        panic!()
    };
    cell.counts[1].store(u64::MAX - 1, Ordering::Relaxed);
    assert!(h.observe(2.0, 5, s.clock(), 0).recorded());
    let snap = cell.snapshot();
    let (cum, sum) = (snap.cumulative, snap.sum);
    assert_eq!(cum, vec![0, u64::MAX], "saturates instead of wrapping");
    assert_eq!(sum, 2.0 * f64::from(u32::MAX) + 10.0);
}

#[test]
fn a_pass_looks_only_where_a_deadline_has_passed() {
    let s = store();
    for i in 0..20_000 {
        let name = format!("long{i}");
        let mut long = spec(&name, SeriesKind::Counter, &[]);
        long.ttl = Duration::from_secs(600);
        s.resolve(&long).unwrap();
    }
    let mut short = spec("short", SeriesKind::Counter, &[]);
    short.ttl = Duration::from_secs(2);
    s.resolve(&short).unwrap();
    s.clock().advance(2001);
    let pass = s.expire_pass();
    assert_eq!(
        pass,
        ExpiryPass {
            expired: 1,
            families_checked: 1,
            shards_walked: 1
        }
    );
    assert_eq!(s.expire_pass(), ExpiryPass::default(), "nothing due");
    s.clock().advance(600_000);
    assert_eq!(s.expire_pass().expired, 20_000);
    assert!(s.families().is_empty());
}

#[test]
fn an_update_moves_a_family_deadline_and_the_series_is_still_expired_later() {
    let s = store();
    let mut t = spec("t", SeriesKind::Counter, &[]);
    t.ttl = Duration::from_secs(1);
    let series = s.resolve(&t).unwrap();
    s.clock().advance(900);
    series.touch(s.clock().now_ms());
    s.clock().advance(101);
    assert!(s.expiry_due(s.clock().now_ms()));
    assert_eq!(s.expire(), 0, "updated at 900: lives until 1900");
    assert!(!s.expiry_due(s.clock().now_ms()));
    s.clock().advance(900);
    assert!(s.expiry_due(s.clock().now_ms()));
    assert_eq!(s.expire(), 1);
}

#[test]
fn a_real_clock_delays_deadlines_by_its_lag() {
    assert_eq!(CoarseClock::manual().lag_ms(), 0);
    assert_eq!(CoarseClock::real().lag_ms(), clock::TICK.as_millis() as u64);
    let s = Series::counter(Arc::from(Vec::new()), 1000, 2000);
    assert_eq!(s.deadline(0), Some(3000));
    assert_eq!(s.deadline(100), Some(3100));
    assert_eq!(
        Series::counter(Arc::from(Vec::new()), 1000, 0).deadline(100),
        None
    );
}
