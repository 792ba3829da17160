//! Cost of the sliding summary with statsd_exporter's default options (0.5/0.9/0.99,
//! 10 minutes in 5 buckets, 500-entry buffer): `observe` per event, `snapshot` per scrape;
//! the CKMS estimator (the default) and the opt-in DDSketch one (`ddsketch_*`, α = 1%).

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use statsgate::store::options::SummaryOptions;
use statsgate::store::summary::{SketchSummary, SlidingSummary};

/// Enough distinct values that the streams see a realistic spread, few enough to stay in cache.
const VALUES: usize = 4096;

fn random_values() -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(42);
    (0..VALUES)
        .map(|_| -(1.0 - rng.f64()).ln() * 100.0)
        .collect()
}

fn observe(c: &mut Criterion) {
    let opts = SummaryOptions::default();
    let now = Instant::now();
    let values = random_values();
    let mut group = c.benchmark_group("summary_observe");
    group.throughput(Throughput::Elements(1));

    group.bench_function("single_value", |b| {
        let mut s = SlidingSummary::new(&opts, now);
        b.iter(|| s.observe(black_box(12.5), 1, now));
    });

    group.bench_function("random_values", |b| {
        let mut s = SlidingSummary::new(&opts, now);
        let mut i = 0;
        b.iter(|| {
            s.observe(black_box(values[i % VALUES]), 1, now);
            i += 1;
        });
    });

    // A hostile `@0.000001` sample rate: one call standing for a million observations.
    group.bench_function("random_values_count_1e6", |b| {
        let mut s = SlidingSummary::new(&opts, now);
        let mut i = 0;
        b.iter(|| {
            s.observe(black_box(values[i % VALUES]), 1_000_000, now);
            i += 1;
        });
    });
    group.bench_function("ddsketch_random_values", |b| {
        let mut s = SketchSummary::new(&opts, 0.01, now);
        let mut i = 0;
        b.iter(|| {
            s.observe(black_box(values[i % VALUES]), 1, now);
            i += 1;
        });
    });
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    let opts = SummaryOptions::default();
    let now = Instant::now();
    let values = random_values();
    let mut group = c.benchmark_group("summary_snapshot");

    // A scrape of a busy series with nothing new since the last scrape.
    group.bench_function("steady_100k", |b| {
        let mut s = SlidingSummary::new(&opts, now);
        for i in 0..100_000 {
            s.observe(values[i % VALUES], 1, now);
        }
        b.iter(|| black_box(s.snapshot(now)));
    });

    // A scrape that first has to merge a half-full buffer (250 new observations).
    group.bench_function("after_250_new", |b| {
        let mut s = SlidingSummary::new(&opts, now);
        for i in 0..100_000 {
            s.observe(values[i % VALUES], 1, now);
        }
        let mut i = 0;
        b.iter_batched_ref(
            || (),
            |()| {
                for _ in 0..250 {
                    s.observe(values[i % VALUES], 1, now);
                    i += 1;
                }
                black_box(s.snapshot(now))
            },
            BatchSize::SmallInput,
        );
    });

    group.bench_function("ddsketch_steady_100k", |b| {
        let mut s = SketchSummary::new(&opts, 0.01, now);
        for i in 0..100_000 {
            s.observe(values[i % VALUES], 1, now);
        }
        b.iter(|| black_box(s.snapshot(now)));
    });

    // Creating a series: what the store pays the first time a name is seen.
    group.bench_function("new_series", |b| {
        b.iter(|| black_box(SlidingSummary::new(&opts, now)));
    });
    group.finish();
}

criterion_group!(benches, observe, snapshot);
criterion_main!(benches);
