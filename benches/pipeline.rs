//! In-process parse + map + aggregate through [`Worker::datagram`], no sockets: the
//! ceiling a receive thread could reach if the kernel handed it datagrams for free.
//!
//! Targets (issue 4): ≥ 10M lines/s/core for one hot series, ≥ 3M lines/s/core across
//! 100k series.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use statsgate::line::Dialects;
use statsgate::mapping::{CacheOptions, LiveMapper, Mapper, Profile};
use statsgate::store::{Store, StoreOptions};
use statsgate::worker::{SampleLimits, SenderLabel, Worker, Workers};

const DATAGRAM_BYTES: usize = 1400;

/// Packs lines into datagrams of at most [`DATAGRAM_BYTES`], as a client's statsd sink does.
fn pack(lines: &[String]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Vec::with_capacity(DATAGRAM_BYTES);
    for l in lines {
        if !cur.is_empty() && cur.len() + 1 + l.len() > DATAGRAM_BYTES {
            out.push(std::mem::replace(
                &mut cur,
                Vec::with_capacity(DATAGRAM_BYTES),
            ));
        }
        if !cur.is_empty() {
            cur.push(b'\n');
        }
        cur.extend_from_slice(l.as_bytes());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn lines_in(datagrams: &[Vec<u8>]) -> u64 {
    datagrams
        .iter()
        .map(|d| d.split(|b| *b == b'\n').count() as u64)
        .sum()
}

fn worker(profile: Profile) -> Worker {
    let store = Arc::new(Store::new(StoreOptions::default()));
    let workers = Workers::new(
        store,
        Arc::new(LiveMapper::new(Mapper::empty(CacheOptions::default()))),
        Dialects::default(),
        profile,
    );
    workers.worker()
}

fn envoy_name(i: usize) -> String {
    const STATS: [&str; 10] = [
        "upstream_rq_200",
        "upstream_rq_total",
        "upstream_cx_active",
        "upstream_rq_time",
        "upstream_cx_total",
        "upstream_rq_pending_active",
        "upstream_cx_length_ms",
        "upstream_rq_5xx",
        "membership_healthy",
        "upstream_cx_connect_ms",
    ];
    format!(
        "envoy.cluster.outbound|9080|v1|svc{}.default.svc.cluster.local.{}",
        i / STATS.len(),
        STATS[i % STATS.len()]
    )
}

/// Runs one pass over all `datagrams` per iteration, flushing once per 32 datagrams as the
/// UDP listener does per `recvmmsg` batch.
fn bench_datagrams(c: &mut Criterion, id: &str, datagrams: Vec<Vec<u8>>) {
    bench_with(c, id, datagrams, Profile::Statsd)
}

fn bench_with(c: &mut Criterion, id: &str, datagrams: Vec<Vec<u8>>, profile: Profile) {
    let mut w = worker(profile);
    // Warm-up pass: every series exists and every handle is cached, so the bench measures
    // the steady state rather than series creation.
    for d in &datagrams {
        w.datagram(d);
    }
    w.flush();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(lines_in(&datagrams)));
    g.bench_function(id, |b| {
        b.iter(|| {
            for chunk in datagrams.chunks(32) {
                for d in chunk {
                    w.datagram(std::hint::black_box(d));
                }
                w.flush();
            }
        })
    });
    g.finish();
}

/// Like [`bench_datagrams`] with `--statsd.sender-label`: `senders` hosts send the same
/// `datagrams`, each datagram named to the worker before it, as the UDP loop does.
fn bench_senders(c: &mut Criterion, id: &str, datagrams: Vec<Vec<u8>>, senders: u8) {
    let store = Arc::new(Store::new(StoreOptions::default()));
    let mut w = Workers::new(
        store,
        Arc::new(LiveMapper::new(Mapper::empty(CacheOptions::default()))),
        Dialects::default(),
        Profile::Statsd,
    )
    .with_sender_label(SenderLabel::new("instance").ok())
    .worker();
    let hosts: Vec<std::net::IpAddr> = (1..=senders)
        .map(|i| std::net::Ipv4Addr::new(10, 0, 0, i).into())
        .collect();
    let run = |w: &mut Worker| {
        for chunk in datagrams.chunks(32) {
            for d in chunk {
                for host in &hosts {
                    w.sender(Some(*host));
                    w.datagram(std::hint::black_box(d));
                }
            }
            w.flush();
        }
    };
    // Warm-up pass, as in bench_with.
    run(&mut w);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(
        lines_in(&datagrams) * u64::from(senders),
    ));
    g.bench_function(id, |b| b.iter(|| run(&mut w)));
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let hot: Vec<String> = vec![format!("{}:1|c", envoy_name(0)); 64 * 1024];
    bench_datagrams(c, "hot_counter", pack(&hot));

    let many: Vec<String> = (0..100_000)
        .map(|i| {
            let kind = ["c", "g", "ms"][i % 3];
            format!("{}:{}|{kind}", envoy_name(i), 1 + i % 50)
        })
        .collect();
    bench_datagrams(c, "100k_series_mixed", pack(&many));
    bench_senders(
        c,
        "100k_series_mixed_16_senders",
        pack(&many[..many.len() / 16]),
        16,
    );
    if let Ok(envoy) = Profile::envoy("envoy", "envoy") {
        // The same lines under --profile=envoy: timers become fixed-bucket histograms.
        bench_with(c, "100k_series_mixed_envoy_profile", pack(&many), envoy);
    }

    let scalars: Vec<String> = (0..100_000)
        .map(|i| {
            let kind = ["c", "g"][i % 2];
            format!("{}:{}|{kind}", envoy_name(i), 1 + i % 50)
        })
        .collect();
    bench_datagrams(c, "100k_series_counters_gauges", pack(&scalars));

    let tagged: Vec<String> = (0..100_000)
        .map(|i| {
            format!(
                "envoy.cluster.upstream_rq:1|c|#cluster_name:svc{}.default,response_code:{}",
                i / 5,
                200 + i % 5
            )
        })
        .collect();
    bench_datagrams(c, "100k_series_dogstatsd_tags", pack(&tagged));

    let timers: Vec<String> = (0..10_000)
        .map(|i| format!("{}:{}|ms", envoy_name(i * 10 + 3), i % 997))
        .collect();
    bench_datagrams(c, "10k_timers_summary", pack(&timers));
}

/// The first sight of one line carrying many distinct tags: what each line of a flood of
/// distinct tagged lines costs. A fresh worker per iteration, so nothing is remembered. With
/// the default limits the line is refused after 64 tags; without them every tag is decoded
/// and deduplicated (linear in the tag count).
fn first_sight(c: &mut Criterion) {
    let mut g = c.benchmark_group("first_sight");
    for tags in [1000usize, 6000] {
        let list: Vec<String> = (0..tags).map(|i| format!("k{i}:v{i}")).collect();
        let line = format!("t:1|c|#{}", list.join(","));
        for (id, limits) in [
            ("default_limits", SampleLimits::default()),
            ("no_limits", SampleLimits::UNLIMITED),
        ] {
            g.bench_function(format!("{tags}_tags_{id}"), |b| {
                b.iter_batched(
                    || {
                        let store = Arc::new(Store::new(StoreOptions::default()));
                        let mapper = Mapper::empty(CacheOptions::default());
                        Workers::new(
                            store,
                            Arc::new(LiveMapper::new(mapper)),
                            Dialects::default(),
                            Profile::Statsd,
                        )
                        .with_limits(limits)
                        .worker()
                    },
                    |mut w| {
                        w.line(line.as_bytes());
                        w
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(benches, pipeline, first_sight);
criterion_main!(benches);
