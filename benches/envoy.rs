//! Envoy tag-extraction throughput over every stat name of `envoy-stat-names.txt`, per rule
//! set: the allocating `extract` and the buffer-reusing `extract_matches`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use statsgate::mapping::profile::envoy::{TagExtractor, TagRuleSet};

/// The names of `tests/data/envoy-stat-names.txt` (part of the repository).
fn stat_names() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/envoy-stat-names.txt"
    );
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.rsplit_once('|').map(|(name, _)| name.to_owned()))
        .collect()
}

fn extraction(c: &mut Criterion) {
    let names = stat_names();
    let mut group = c.benchmark_group("envoy_extract");
    group.throughput(Throughput::Elements(names.len() as u64));
    for set in TagRuleSet::ALL {
        let extractor = TagExtractor::new(set);
        group.bench_function(format!("{set}/extract"), |b| {
            b.iter(|| {
                for name in &names {
                    black_box(extractor.extract(black_box(name)));
                }
            })
        });
        let mut matches = Vec::new();
        group.bench_function(format!("{set}/extract_matches"), |b| {
            b.iter(|| {
                for name in &names {
                    extractor.extract_matches(black_box(name), &mut matches);
                    black_box(&matches);
                }
            })
        });
    }
    group.finish();

    // A name that touches no rule: the prefilter path alone.
    let mut group = c.benchmark_group("envoy_untagged");
    group.throughput(Throughput::Elements(1));
    for set in TagRuleSet::ALL {
        let extractor = TagExtractor::new(set);
        let mut matches = Vec::new();
        group.bench_function(format!("{set}/server.memory_allocated"), |b| {
            b.iter(|| extractor.extract_matches(black_box("server.memory_allocated"), &mut matches))
        });
    }
    group.finish();
}

criterion_group!(benches, extraction);
criterion_main!(benches);
