//! Store updates on their own, without parsing or mapping: what a receive thread pays per
//! event once it holds a series handle, and what a first sight pays to find or create one.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use statsgate::store::{
    HistogramOptions, NativeHistogramOptions, ObserverOptions, SeriesKind, SeriesRef, SeriesSpec,
    Store, StoreOptions, TextStyle,
};

fn spec(name: &str, kind: SeriesKind<'_>, i: usize) -> SeriesSpec<'static> {
    let name: &'static str = Box::leak(name.to_string().into_boxed_str());
    let kind = match kind {
        SeriesKind::Counter => SeriesKind::Counter,
        SeriesKind::Gauge => SeriesKind::Gauge,
        SeriesKind::Observer(_) => SeriesKind::Observer(Box::leak(Box::new(
            ObserverOptions::Histogram(HistogramOptions::default()),
        ))),
    };
    SeriesSpec {
        name,
        help: None,
        kind,
        labels: vec![
            ("cluster_name".into(), format!("svc{}", i / 10)),
            ("response_code".into(), format!("{}", 200 + i % 10)),
        ],
        ttl: Duration::ZERO,
        style: TextStyle::default(),
    }
}

fn store_benches(c: &mut Criterion) {
    let store = Store::new(StoreOptions::default());
    let mut g = c.benchmark_group("store");

    let hot = store
        .resolve(&spec("hot_counter", SeriesKind::Counter, 0))
        .expect("resolve");
    g.throughput(Throughput::Elements(1));
    g.bench_function("counter_add_hot", |b| {
        b.iter(|| {
            hot.touch(store.clock().now_ms());
            hot.counter_add(std::hint::black_box(1.0));
        })
    });

    let many: Vec<SeriesRef> = (0..100_000)
        .map(|i| {
            store
                .resolve(&spec("envoy_cluster_upstream_rq", SeriesKind::Counter, i))
                .expect("resolve")
        })
        .collect();
    g.throughput(Throughput::Elements(many.len() as u64));
    g.bench_function("counter_add_100k_series", |b| {
        b.iter(|| {
            let now = store.clock().now_ms();
            for s in &many {
                s.touch(now);
                s.counter_add(1.0);
            }
        })
    });

    let hist = store
        .resolve(&spec(
            "rq_time",
            SeriesKind::Observer(&ObserverOptions::default()),
            0,
        ))
        .expect("resolve");
    g.throughput(Throughput::Elements(1));
    g.bench_function("histogram_observe_hot", |b| {
        b.iter(|| hist.observe(std::hint::black_box(0.042), 1, store.clock(), 0))
    });

    // The same with native buckets alongside (a mapping file's histograms, by default): the
    // classic update then runs under the native buckets' lock.
    let native = ObserverOptions::Histogram(HistogramOptions {
        native: Some(NativeHistogramOptions::default()),
        ..HistogramOptions::default()
    });
    let mut nspec = spec(
        "envoy_cluster_upstream_rq_time_native",
        SeriesKind::Gauge,
        0,
    );
    nspec.kind = SeriesKind::Observer(Box::leak(Box::new(native)));
    let nhist: SeriesRef = store.resolve(&nspec).expect("resolve");
    g.bench_function("native_histogram_observe_hot", |b| {
        b.iter(|| nhist.observe(std::hint::black_box(0.042), 1, store.clock(), 0))
    });

    // A first sight of a known series: labels sorted, family and series found under locks.
    let specs: Vec<SeriesSpec<'static>> = (0..1000)
        .map(|i| spec("envoy_cluster_upstream_rq", SeriesKind::Counter, i))
        .collect();
    g.throughput(Throughput::Elements(specs.len() as u64));
    g.bench_function("resolve_existing_1k", |b| {
        b.iter(|| {
            for s in &specs {
                std::hint::black_box(store.resolve(s).expect("resolve"));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, store_benches);
criterion_main!(benches);
