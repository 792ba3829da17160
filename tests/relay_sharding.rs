//! Relay sharding: with `--statsd.relay.address` given several times, every line goes to
//! exactly one target, chosen by a consistent hash of its series. Real gateways on loopback:
//! a front gateway relays to downstream gateways and also keeps every series itself, which
//! makes it the reference. The union of the downstreams' series is exactly what the front
//! shows, no series is on two downstreams, each gets its share, every target is counted on
//! its own, and appending a fourth target moves about a quarter of the series, all to it.

mod common;
#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{Gateway, Samples, TempDir, run_until_exit};
use statsgate::ingest::{RelayTarget, Relayed, Sink, SinkFactory};

#[global_allocator]
static ALLOC: counting_alloc::Counting = counting_alloc::Counting;

/// Series in the traffic; each is updated three times.
const SERIES: usize = 3000;

/// How long the relayed lines may take to arrive everywhere.
const ARRIVAL: Duration = Duration::from_secs(30);

const KINDS: [(&str, &str); 3] = [("counter", "c"), ("gauge", "g"), ("timer", "ms")];
const ZONES: [&str; 4] = ["eu", "us", "ap", "sa"];
const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

/// One update in one of the four tag dialects: DogStatsD, InfluxDB, Librato, SignalFx.
fn render(name: &str, tags: &[(&str, String)], value: &str, rest: &str, dialect: usize) -> String {
    let list = |sep: &str| {
        tags.iter()
            .map(|(k, v)| format!("{k}{sep}{v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    match dialect {
        0 => format!("{name}:{value}|{rest}|#{}", list(":")),
        1 => format!("{name},{}:{value}|{rest}", list("=")),
        2 => format!("{name}#{}:{value}|{rest}", list("=")),
        _ => format!("{name}[{}]:{value}|{rest}", list("=")),
    }
}

/// The traffic: [`SERIES`] series of counters, gauges and timers, each updated three times,
/// each time in another dialect and another tag order, with a sample rate, a relative gauge
/// and a multi-value timer among the updates; and lines the grammar rejects.
fn traffic() -> (Vec<String>, Vec<String>) {
    let mut good = Vec::with_capacity(SERIES * 3);
    for i in 0..SERIES {
        let kind = i % 3;
        let name = format!("shard.{}.m{}", KINDS[kind].0, i % 50);
        let tags = [
            ("id", i.to_string()),
            ("host", format!("h{}", i % 7)),
            ("zone", ZONES[(i / 3) % 4].to_string()),
        ];
        for u in 0..3 {
            let (value, rest) = match (kind, u) {
                (0, 1) => ("1".to_string(), "c|@0.5".to_string()),
                (1, 2) => ("+5".to_string(), "g".to_string()),
                (1, _) => ((10 * i + u).to_string(), "g".to_string()),
                (2, 1) => ("1:2:3".to_string(), "ms".to_string()),
                _ => ((u + 1).to_string(), KINDS[kind].1.to_string()),
            };
            let order = ORDERS[(i + 2 * u) % 6];
            let tags: Vec<(&str, String)> = order.iter().map(|&t| tags[t].clone()).collect();
            good.push(render(&name, &tags, &value, &rest, (i + u) % 4));
        }
    }
    let bad = (0..SERIES / 100)
        .map(|i| format!("shard.bad.m{i}:x|c"))
        .collect();
    (good, bad)
}

fn is_user_series(series: &str) -> bool {
    series.starts_with("shard_")
}

/// The `id` label of a series as the exposition prints it.
fn id_of(series: &str) -> usize {
    let at = series
        .find("{id=\"")
        .or_else(|| series.find(",id=\""))
        .unwrap_or_else(|| panic!("{series} has no id label"));
    let rest = &series[at + 5..];
    let end = rest.find('"').unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("{series}: {e}"))
}

fn relayed(addr: &str) -> String {
    format!("statsd_exporter_relay_lines_relayed_total{{target=\"{addr}\"}}")
}

fn packets(addr: &str) -> String {
    format!("statsd_exporter_relay_packets_total{{target=\"{addr}\"}}")
}

/// The lines a downstream counts for what the front relayed to it: statsd_exporter counts
/// the empty line after each packet's final `\n` too.
fn lines_at_target(front: &Samples, addr: &str) -> f64 {
    front.count(&relayed(addr)) + front.count(&packets(addr))
}

/// Starts `targets` downstream gateways and a front one relaying to them in that order,
/// sends the traffic to the front, waits until every relayed line has arrived, checks the
/// downstreams against the front, and returns which target owns each series id.
fn sharded_round(targets: usize) -> BTreeMap<usize, usize> {
    // A large receive buffer, so a downstream descheduled for a moment on a busy machine
    // does not lose relayed packets.
    let downstream: Vec<Gateway> = (0..targets)
        .map(|_| Gateway::start(&["--statsd.read-buffer=4194304"]))
        .collect();
    let addrs: Vec<String> = downstream
        .iter()
        .map(|g| g.udp.expect("udp listener").to_string())
        .collect();
    let flags: Vec<String> = addrs
        .iter()
        .map(|a| format!("--statsd.relay.address={a}"))
        .collect();
    let front = Gateway::start(&flags.iter().map(String::as_str).collect::<Vec<_>>());

    let (good, bad) = traffic();
    let mut tcp = TcpStream::connect(front.tcp.expect("tcp listener")).unwrap();
    // Paced, so the relayed packets never pile up beyond a downstream's receive buffer.
    for chunk in good.chunks(100) {
        let mut text = chunk.join("\n");
        text.push('\n');
        tcp.write_all(text.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // Closing the connection drops its sink, which sends what its relays still hold.
    drop(tcp);
    front.send_udp(bad.join("\n").as_bytes());
    let sent = (good.len() + bad.len()) as f64;

    let scrape_all = || {
        let f = Samples::parse(&front.scrape());
        let d: Vec<Samples> = downstream
            .iter()
            .map(|g| Samples::parse(&g.scrape()))
            .collect();
        (f, d)
    };
    let arrived = |f: &Samples, d: &[Samples]| {
        f.count("statsd_exporter_lines_total") == sent
            && addrs.iter().map(|a| f.count(&relayed(a))).sum::<f64>() == sent
            && addrs
                .iter()
                .zip(d)
                .all(|(a, d)| d.count("statsd_exporter_lines_total") == lines_at_target(f, a))
    };
    let deadline = Instant::now() + ARRIVAL;
    let (front_s, down_s) = loop {
        let (f, d) = scrape_all();
        if arrived(&f, &d) {
            // As in `Gateway::wait_for`: one more scrape sees whole batches of self-metrics.
            let (f, d) = scrape_all();
            if arrived(&f, &d) {
                break (f, d);
            }
        }
        if Instant::now() > deadline {
            let report: Vec<String> = addrs
                .iter()
                .zip(&d)
                .map(|(a, d)| {
                    format!(
                        "{a}: relayed {} lines in {} packets, received {} lines, kernel drops {}",
                        f.count(&relayed(a)),
                        f.count(&packets(a)),
                        d.count("statsd_exporter_lines_total"),
                        d.count("statsd_exporter_udp_packet_drops_total")
                    )
                })
                .collect();
            panic!(
                "the relayed lines did not all arrive: sent {sent}, the front read {}\n{}",
                f.count("statsd_exporter_lines_total"),
                report.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    // Counted per target: each target's relayed lines and packets are what its downstream
    // received.
    for (a, d) in addrs.iter().zip(&down_s) {
        assert_eq!(
            d.count("statsd_exporter_udp_packets_total"),
            front_s.count(&packets(a)),
            "{a}"
        );
        assert_eq!(
            d.count("statsd_exporter_lines_total"),
            lines_at_target(&front_s, a),
            "{a}"
        );
    }
    let errors = "statsd_exporter_sample_errors_total{reason=\"malformed_value\"}";
    assert_eq!(front_s.count(errors), bad.len() as f64);
    assert_eq!(
        down_s.iter().map(|d| d.count(errors)).sum::<f64>(),
        bad.len() as f64,
        "rejected lines are relayed too"
    );

    // The union of the downstreams is the front, and no series is in two places.
    let mut union: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for (t, d) in down_s.iter().enumerate() {
        for (series, value) in d.values.iter().filter(|(s, _)| is_user_series(s)) {
            if let Some((_, other)) = union.insert(series, (*value, t)) {
                panic!("{series} is on targets {other} and {t}");
            }
        }
    }
    let reference: BTreeMap<&str, f64> = front_s
        .values
        .iter()
        .filter(|(s, _)| is_user_series(s))
        .map(|(s, v)| (s.as_str(), *v))
        .collect();
    assert!(
        reference.len() >= SERIES,
        "the front shows {} series",
        reference.len()
    );
    let missing: Vec<&&str> = reference
        .keys()
        .filter(|s| !union.contains_key(*s))
        .collect();
    let extra: Vec<&&str> = union
        .keys()
        .filter(|s| !reference.contains_key(*s))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing downstream: {missing:?}\nonly downstream: {extra:?}"
    );
    let differ: Vec<String> = reference
        .iter()
        .filter(|(s, v)| union[*s].0.to_bits() != v.to_bits())
        .map(|(s, v)| format!("{s}: front {v}, downstream {}", union[s].0))
        .collect();
    assert!(differ.is_empty(), "values differ:\n{}", differ.join("\n"));

    // Every exposed series of one statsd series is with the same target.
    let mut owner: BTreeMap<usize, usize> = BTreeMap::new();
    for (series, (_, t)) in &union {
        let id = id_of(series);
        let previous = *owner.entry(id).or_insert(*t);
        assert_eq!(previous, *t, "series id {id} is split");
    }
    assert_eq!(owner.len(), SERIES);
    for t in 0..targets {
        let share = owner.values().filter(|&&o| o == t).count() as f64 / SERIES as f64;
        assert!(
            share > 0.6 / targets as f64,
            "target {t} owns {share} of the series"
        );
    }
    owner
}

#[test]
fn three_targets_own_their_series_and_a_fourth_takes_a_quarter() {
    let three = sharded_round(3);
    let four = sharded_round(4);
    let mut moved = 0u32;
    for (id, before) in &three {
        let after = four[id];
        if after != *before {
            assert_eq!(after, 3, "series {id} moved from {before} to {after}");
            moved += 1;
        }
    }
    let fraction = f64::from(moved) / SERIES as f64;
    assert!(
        fraction > 0.0 && fraction <= 0.34,
        "{fraction} of the series moved"
    );
}

#[test]
fn a_relay_target_given_twice_is_a_startup_error() {
    let (status, stderr) = run_until_exit(&[
        "--statsd.relay.address=127.0.0.1:9125",
        "--statsd.relay.address=127.0.0.1:9126",
        "--statsd.relay.address=127.0.0.1:9125",
        "--web.listen-address=127.0.0.1:0",
        "--statsd.listen-udp=127.0.0.1:0",
        "--statsd.listen-tcp=",
    ]);
    assert!(status.is_some_and(|s| !s.success()), "{stderr}");
    assert!(stderr.contains("more than once"), "{stderr}");
}

/// The front gateway keeps every series itself, as statsd_exporter's relay does; a mapping
/// file that drops everything makes it a pure router (relaying happens before mapping).
#[test]
fn a_front_that_drops_everything_still_relays_everything() {
    let downstream = [Gateway::start(&[]), Gateway::start(&[])];
    let dir = TempDir::new("relay-router");
    let mapping = dir.0.join("drop-all.yml");
    std::fs::write(
        &mapping,
        "mappings:\n- match: \".\"\n  match_type: regex\n  name: dropped\n  action: drop\n",
    )
    .unwrap();
    let mut args = vec![format!("--statsd.mapping-config={}", mapping.display())];
    args.extend(
        downstream
            .iter()
            .map(|g| format!("--statsd.relay.address={}", g.udp.expect("udp listener"))),
    );
    let front = Gateway::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let lines: Vec<String> = (0..40)
        .map(|i| format!("router.m:{i}|g|#i:{i}\n"))
        .collect();
    front.send_tcp(lines.concat().as_bytes());
    let got: f64 = downstream
        .iter()
        .map(|d| {
            // Either downstream may own all forty, so each is waited for only as far as the
            // front says it relayed there.
            let addr = d.udp.expect("udp listener").to_string();
            let want = front
                .wait_for("the front to relay", |f| {
                    downstream
                        .iter()
                        .map(|g| f.count(&relayed(&g.udp.expect("udp listener").to_string())))
                        .sum::<f64>()
                        == 40.0
                })
                .count(&relayed(&addr));
            let held = |s: &Samples| {
                s.values
                    .keys()
                    .filter(|k| k.starts_with("router_m{"))
                    .count() as f64
            };
            held(&d.wait_for("the relayed series", |s| held(s) == want))
        })
        .sum();
    assert_eq!(got, 40.0, "the downstreams hold every series");
    let f = Samples::parse(&front.scrape());
    assert!(
        !f.values.keys().any(|k| k.starts_with("router_m")),
        "the front holds none:\n{}",
        f.text
    );
}

/// A sink that keeps nothing, to measure the relay alone.
struct Discard;

impl Sink for Discard {
    fn datagram(&mut self, _: &[u8]) {}
    fn line(&mut self, _: &[u8]) {}
    fn flush(&mut self) {}
}

struct Discards;

impl SinkFactory for Discards {
    type Sink = Discard;
    fn make_sink(&self) -> Discard {
        Discard
    }
}

#[test]
fn choosing_a_target_allocates_nothing() {
    let receivers: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<String> = receivers
        .iter()
        .map(|r| r.local_addr().unwrap().to_string())
        .collect();
    let mut sink = Relayed::new(Discards, RelayTarget::all(&addrs, 1400).unwrap()).make_sink();
    let lines: [&[u8]; 7] = [
        b"a.b:1|c|#x.y:1,y-z:2",
        b"a.b,y-z=2,x.y=1:1|c|@0.5",
        b"a.b#x.y=1:1|g",
        b"a.b[x.y=1,y-z=2]:1:2:3|ms",
        b"a.b:1|c|#x:1|c:container",
        b"bad line",
        b"",
    ];
    let datagram = lines.join(&b'\n');
    // Packets are built in buffers made once; after the first few lines nothing grows.
    for line in lines {
        sink.line(line);
    }
    let before = counting_alloc::count();
    for _ in 0..500 {
        for line in lines {
            sink.line(line);
        }
        sink.datagram(&datagram);
        sink.flush();
    }
    assert_eq!(counting_alloc::count() - before, 0);
}
