//! Line grammar throughput: lines/s and MB/s per line shape, and tag decoding on its own.
//!
//! Run: `cargo bench --bench parse -- --warm-up-time 1 --measurement-time 2`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use statsgate::line::{Dialects, ParseCounters, Sample, parse_line};
use statsgate::mapping::profile::ENVOY_DIALECTS;
use std::hint::black_box;

const LINES: &[(&str, &str)] = &[
    (
        "envoy_counter",
        "envoy.cluster.outbound_9080_v1_reviews.upstream_rq_200:1|c",
    ),
    (
        "timer_with_rate",
        "envoy.cluster.x.upstream_rq_time:12|ms|@0.1",
    ),
    (
        "dogstatsd_tags",
        "foo.bar:1|c|#env:prod,service:api,code:200",
    ),
    ("influx_tags", "foo.bar,env=prod,service=api,code=200:1|c"),
    ("librato_tags", "foo.bar#env=prod,service=api,code=200:1|c"),
    (
        "signalfx_tags",
        "foo.[env=prod,service=api,code=200]bar:1|c",
    ),
    ("multi_value", "foo.bar:1|c:2|c:3|g"),
    (
        "extended_aggregation",
        "foo.timing:0.5:120:3000:10|ms|#env:prod",
    ),
];

fn parse_benches(c: &mut Criterion) {
    let dialects = Dialects::default();
    let mut group = c.benchmark_group("parse_line");
    for (name, line) in LINES {
        let bytes = line.as_bytes();
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}/lines"), |b| {
            b.iter(|| {
                let mut counters = ParseCounters::default();
                parse_line(black_box(bytes), &dialects, &mut counters, |s| {
                    black_box(s);
                });
                counters
            })
        });
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(format!("{name}/bytes"), |b| {
            b.iter(|| {
                let mut counters = ParseCounters::default();
                parse_line(black_box(bytes), &dialects, &mut counters, |s| {
                    black_box(s);
                });
                counters
            })
        });
    }
    group.finish();
}

/// One Envoy stat as each of Envoy's statsd sinks writes it, parsed with the Envoy profile's
/// dialects; and the plain sink's line without the Graphite dialect, for what looking for a
/// `;` in every name costs.
fn envoy_sink_benches(c: &mut Criterion) {
    let without_graphite = Dialects {
        graphite: false,
        ..ENVOY_DIALECTS
    };
    let mut group = c.benchmark_group("parse_line_envoy");
    group.throughput(Throughput::Elements(1));
    for (name, line, dialects) in [
        (
            "statsd_sink",
            "envoy.cluster.outbound_9080_v1_reviews.upstream_rq_200:1|c",
            &ENVOY_DIALECTS,
        ),
        (
            "statsd_sink_without_graphite",
            "envoy.cluster.outbound_9080_v1_reviews.upstream_rq_200:1|c",
            &without_graphite,
        ),
        (
            "dog_statsd_sink",
            "envoy.cluster.upstream_rq:1|c|#envoy.cluster_name:outbound_9080_v1_reviews,envoy.response_code:200",
            &ENVOY_DIALECTS,
        ),
        (
            "graphite_statsd_sink",
            "envoy.cluster.upstream_rq;envoy.cluster_name=outbound_9080_v1_reviews;envoy.response_code=200:1|c",
            &ENVOY_DIALECTS,
        ),
    ] {
        let bytes = line.as_bytes();
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut counters = ParseCounters::default();
                parse_line(black_box(bytes), dialects, &mut counters, |s| {
                    black_box(s);
                });
                counters
            })
        });
    }
    group.finish();
}

fn first_sample(line: &str) -> Option<Sample<'_>> {
    let mut out = None;
    parse_line(
        line.as_bytes(),
        &Dialects::default(),
        &mut ParseCounters::default(),
        |s| {
            out.get_or_insert(s);
        },
    );
    out
}

fn decode_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, line) in [
        (
            "dogstatsd_3_tags",
            "foo.bar:1|c|#env:prod,service:api,code:200",
        ),
        ("influx_3_tags", "foo.bar,env=prod,service=api,code=200:1|c"),
        (
            "dogstatsd_escaped_keys",
            "foo:1|c|#envoy.cluster_name:x,envoy.response_code:200",
        ),
    ] {
        let Some(sample) = first_sample(line) else {
            continue;
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0usize;
                let counts = black_box(&sample.tags).decode(|k, v| {
                    n += k.len() + v.len();
                });
                (counts, n)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parse_benches, envoy_sink_benches, decode_benches);
criterion_main!(benches);
