//! Mapper lookups, mirroring statsd_exporter's `pkg/mapper/mapper_benchmark_test.go`:
//! 10 and 100 glob rules, 10 and 100 regex rules, each uncached and with a 1000-entry LRU or
//! random cache, for a matching and a non-matching name.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use statsgate::line::EventKind;
use statsgate::mapping::{CacheKind, CacheOptions, Mapper};
use std::hint::black_box;
use std::time::Duration;

fn glob_rules(count: usize) -> String {
    let mut config = String::from("---\nmappings:\n");
    for i in 0..count {
        config.push_str(&format!(
            "- match: metric{i}.*\n  name: \"metric_single\"\n  labels:\n    name: \"$1\"\n"
        ));
    }
    config
}

fn regex_rules(count: usize) -> String {
    let mut config = String::from("---\ndefaults:\n  match_type: regex\nmappings:\n");
    for i in 0..count {
        config.push_str(&format!(
            "- match: metric{i}\\.([^.]*)\n  name: \"metric_single\"\n  labels:\n    name: \"$1\"\n"
        ));
    }
    config
}

const CACHES: [(&str, CacheOptions); 3] = [
    (
        "uncached",
        CacheOptions {
            size: 0,
            kind: CacheKind::Lru,
        },
    ),
    (
        "lru",
        CacheOptions {
            size: 1000,
            kind: CacheKind::Lru,
        },
    ),
    (
        "random",
        CacheOptions {
            size: 1000,
            kind: CacheKind::Random,
        },
    ),
];

fn bench_rules(c: &mut Criterion, group_name: &str, config: &str, matching: &str) {
    let mut group = c.benchmark_group(group_name);
    for (cache_name, options) in CACHES {
        let mapper = Mapper::from_yaml(config, options).unwrap_or_else(|e| panic!("{e}"));
        assert!(mapper.map(matching, EventKind::Counter).is_some());
        // statsd_exporter's benches look up `metric100.a`, which no rule 0..99 matches.
        for (case, name) in [("match", matching), ("no_match", "metric100.a")] {
            assert!(case == "match" || mapper.map(name, EventKind::Counter).is_none());
            group.bench_function(BenchmarkId::new(cache_name, case), |b| {
                b.iter(|| mapper.map(black_box(name), EventKind::Counter))
            });
        }
    }
    group.finish();
}

fn mapper_benches(c: &mut Criterion) {
    bench_rules(c, "glob_10_rules", &glob_rules(10), "metric5.a");
    bench_rules(c, "glob_100_rules", &glob_rules(100), "metric99.a");
    bench_rules(c, "regex_10_rules", &regex_rules(10), "metric5.a");
    bench_rules(c, "regex_100_rules", &regex_rules(100), "metric99.a");

    let multi = "---\nmappings:\n- match: metric.*.*.*.*.*.*.*.*.*.*.*.*\n  name: \"metric_multi\"\n  labels:\n    name: \"$1-$2-$3.$4-$5-$6.$7-$8-$9.$10-$11-$12\"\n";
    let mapper = Mapper::from_yaml(multi, CACHES[0].1).unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("glob_multiple_captures/uncached", |b| {
        b.iter(|| {
            mapper.map(
                black_box("metric.a.b.c.d.e.f.g.h.i.j.k.l"),
                EventKind::Counter,
            )
        })
    });
}

criterion_group! {
    name = benches;
    // Short runs: the build machine is shared.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = mapper_benches
}
criterion_main!(benches);
