//! Envoy tag-extraction throughput over every stat name of `envoy-stat-names.txt`, per rule
//! set: the allocating `extract` and the buffer-reusing `extract_matches`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use statsgate::mapping::profile::envoy::{TagExtractor, TagRuleSet};

/// The data file's names, or a small built-in sample when `../shared` is absent.
fn stat_names() -> Vec<String> {
    let candidates = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/envoy-stat-names.txt"),
        PathBuf::from("/work/shared/data/envoy-stat-names.txt"),
    ];
    if let Some(text) = candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
    {
        return text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| line.rsplit_once('|').map(|(name, _)| name.to_owned()))
            .collect();
    }
    eprintln!("envoy bench: ../shared not found, using built-in names");
    [
        "cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_200",
        "cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_cx_total",
        "http.10.16.2.7_9080.downstream_rq_2xx",
        "listener.10.16.2.7_9080.http.10.16.2.7_9080.downstream_rq_2xx",
        "listener.0.0.0.0_15001.downstream_cx_total",
        "tcp.outbound|27017||mongodb.default.svc.cluster.local.downstream_cx_total",
        "server.uptime",
        "cluster_manager.cds.update_success",
    ]
    .map(str::to_owned)
    .to_vec()
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
