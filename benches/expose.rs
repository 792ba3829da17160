//! One full text exposition of stores of 10k, 100k and 1M counter series into a sink that
//! only counts bytes: the cost of a scrape minus the network.
//!
//! Targets (issue 4): 100k series ≤ 50 ms, 1M ≤ 500 ms.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use statsgate::expose::text::render;
use statsgate::store::{DEFAULT_HELP, SeriesKind, SeriesSpec, Store, StoreOptions};

/// 1k Envoy-like families, each with `series / 1000` label sets (cluster × response code).
fn store_with(series: usize) -> Store {
    let store = Store::new(StoreOptions::default());
    let families = 1000;
    let per_family = series / families;
    for f in 0..families {
        let name = format!("envoy_cluster_upstream_rq_{f}");
        for s in 0..per_family {
            let spec = SeriesSpec {
                name: &name,
                help: Some(DEFAULT_HELP),
                kind: SeriesKind::Counter,
                labels: vec![
                    (
                        "envoy_cluster_name".into(),
                        format!("outbound|9080|v1|svc{}.default.svc.cluster.local", s / 5),
                    ),
                    ("envoy_response_code".into(), (200 + s % 5).to_string()),
                ],
                ttl: Duration::ZERO,
                style: Default::default(),
            };
            if let Err(e) = store.resolve(&spec) {
                panic!("creating bench series: {e}");
            }
        }
    }
    store
}

fn expose(c: &mut Criterion) {
    let mut g = c.benchmark_group("expose");
    g.sample_size(10);
    for series in [10_000usize, 100_000, 1_000_000] {
        let store = store_with(series);
        g.throughput(Throughput::Elements(series as u64));
        g.bench_with_input(BenchmarkId::new("render", series), &store, |b, store| {
            b.iter(|| {
                let mut bytes = 0usize;
                render(store, &[], 64 * 1024, |chunk| {
                    bytes += chunk.len();
                    true
                });
                bytes
            })
        });
    }
    g.finish();
}

criterion_group!(benches, expose);
criterion_main!(benches);
