//! Unit tests; the parent declares this module under #[cfg(test)].
//!
//! The replay of cached line shapes must be indistinguishable from running the grammar:
//! every template below is fed with pairs of values to a worker that replays and to one
//! that always parses, and the stores and counters must agree exactly.

use super::*;
use crate::expose::text::render_to_string;
use crate::mapping::CacheOptions;
use crate::store::{CoarseClock, StoreOptions};

fn worker(profile: Profile, replay: bool) -> Worker {
    let store = Arc::new(Store::with_clock(
        StoreOptions::default(),
        CoarseClock::manual(),
    ));
    let workers = Workers::new(
        store,
        Arc::new(LiveMapper::new(Mapper::empty(CacheOptions::default()))),
        Dialects::default(),
        profile,
    );
    let mut w = workers.worker();
    w.replay_enabled = replay;
    w
}

const TEMPLATES: &[&str] = &[
    "plain.counter:{v}|c",
    "rated.counter:{v}|c|@0.1",
    "rated.counter:{v}|c|@0.1|@0.5",
    "gauge:{v}|g",
    "timer:{v}|ms|@0.25",
    "hist:{v}|h",
    "rated.hist:{v}|h|@0.1",
    "dist:{v}|d|#k:v",
    "dog:{v}|c|#a:1,b:2,a:3",
    "dog.container:{v}|c|#a:1|c:abc",
    "dog.timestamp:{v}|c|#a:1|T1700000000",
    "influx,host=a,bad:{v}|c",
    "librato#host=a:{v}|g",
    "sfx.[k=v]name:{v}|c",
    "sfx.[broken:{v}|c",
    "multi:{v}|c:2|g",
    "multi2:{v}|c:+2|g:3|ms",
    "mixed[k=v]:{v}|c|#a:b",
    "bad.type:{v}|x",
    "bad.rate:{v}|c|@zz",
    "empty.component:{v}|c|",
    "too.many:{v}|c|@1|#a:b|c:x|T1|Z",
    "__name__.like:{v}|c|#__name__:x,quantile:1,le:2",
    "q:{v}|ms|#quantile:3",
    "conflict:{v}|c",
    "conflict:{v}|g",
];

const VALUES: &[&str] = &[
    "1", "-2", "+3.5", "0x1p-2", "1e3", "NaN", "-Inf", "bad", "", "1_0", "-0", "7", "1e308",
];

fn run(w: &mut Worker, lines: &[String]) -> (String, BatchCounts) {
    for l in lines {
        w.line(l.as_bytes());
    }
    let text = render_to_string(&w.shared.store, &[]);
    (text, w.counts.clone())
}

#[test]
fn replay_matches_the_grammar_exactly() {
    for profile in [|| Profile::Statsd, || Profile::IstioMixer] {
        let mut lines = Vec::new();
        for t in TEMPLATES {
            for a in VALUES {
                for b in VALUES {
                    lines.push(t.replace("{v}", a));
                    lines.push(t.replace("{v}", b));
                }
            }
        }
        let (fast_text, fast_counts) = run(&mut worker(profile(), true), &lines);
        let (slow_text, slow_counts) = run(&mut worker(profile(), false), &lines);
        assert_eq!(fast_counts, slow_counts);
        assert_eq!(fast_text, slow_text);
        assert!(
            fast_counts.events.iter().sum::<u64>() > 1000,
            "the templates produce events"
        );
    }
}

#[test]
fn packed_datagrams_handled_in_batches_match_the_grammar_line_by_line() {
    // A packed datagram is handled a batch of lines at a time (shapes hashed, entries
    // prefetched, then each line handled): first sights, repeats of a shape within one
    // batch, empty lines and batch boundaries must all come out as line by line.
    let mut lines = Vec::new();
    for a in VALUES {
        for t in TEMPLATES {
            lines.push(t.replace("{v}", a));
        }
        lines.push(String::new());
        for i in 0..40 {
            lines.push(format!("many.{i}:{a}|c"));
            lines.push(format!("many.{i}:{a}|c"));
        }
    }
    let mut fast = worker(Profile::Statsd, true);
    let mut sizes = [1usize, 2, 31, 32, 33, 64, 65, 7].into_iter().cycle();
    let mut rest = &lines[..];
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).min(rest.len());
        let (now, later) = rest.split_at(n);
        fast.datagram(now.join("\n").as_bytes());
        rest = later;
    }
    let fast_text = render_to_string(&fast.shared.store, &[]);
    let (slow_text, slow_counts) = run(&mut worker(Profile::Statsd, false), &lines);
    assert_eq!(fast.counts, slow_counts);
    assert_eq!(fast_text, slow_text);
    assert!(fast_text.contains("many_39 "), "{fast_text}");
}

#[test]
fn replay_matches_for_envoy_tags_last() {
    let lines: Vec<String> = VALUES
        .iter()
        .flat_map(|v| {
            [
                format!("envoy.cluster.upstream_rq:{v}|c|#envoy.cluster_name:outbound|9080|v1|r.default,envoy.response_code:200"),
                format!("envoy.cluster.a.upstream_rq_200:{v}|c"),
                format!("envoy.cluster.a.upstream_rq_time:{v}|ms"),
            ]
        })
        .collect();
    let (fast_text, fast_counts) = run(
        &mut worker(Profile::envoy("envoy", "envoy").unwrap(), true),
        &lines,
    );
    let (slow_text, slow_counts) = run(
        &mut worker(Profile::envoy("envoy", "envoy").unwrap(), false),
        &lines,
    );
    assert_eq!(fast_counts, slow_counts);
    assert_eq!(fast_text, slow_text);
}

#[test]
fn replayed_lines_skip_the_grammar() {
    let mut w = worker(Profile::Statsd, true);
    w.line(b"a:1|c|#k:v");
    let entries = w.handles.len();
    for _ in 0..100 {
        w.line(b"a:2|c|#k:v");
    }
    assert_eq!(w.handles.len(), entries, "one shape, no new keys");
    assert_eq!(w.counts.parse.samples, 101);
    assert!(render_to_string(&w.shared.store, &[]).contains("a{k=\"v\"} 201\n"));
}

#[test]
fn reload_forgets_cached_shapes() {
    let mut w = worker(Profile::Statsd, true);
    w.line(b"x.y:1|c");
    let mapper = Mapper::from_yaml(
        "mappings:\n- match: x.*\n  name: mapped_$1\n",
        CacheOptions::default(),
    )
    .unwrap();
    w.shared.mapper.replace(mapper);
    w.line(b"x.y:1|c");
    let text = render_to_string(&w.shared.store, &[]);
    assert!(
        text.contains("\nx_y 1\n") && text.contains("\nmapped_y 1\n"),
        "{text}"
    );
}

#[test]
fn expired_series_are_resolved_again() {
    let mut w = worker(Profile::Statsd, true);
    let mapper = Mapper::from_yaml(
        "defaults:\n  ttl: 1s\nmappings: []\n",
        CacheOptions::default(),
    )
    .unwrap();
    w.shared.mapper.replace(mapper);
    w.line(b"t:1|c");
    let store = w.shared.store.clone();
    store.clock().advance(1001);
    assert_eq!(store.expire(), 1);
    w.line(b"t:5|c");
    assert!(render_to_string(&store, &[]).contains("\nt 5\n"));
}

fn limited_worker(store: StoreOptions, limits: SampleLimits) -> Worker {
    let store = Arc::new(Store::with_clock(store, CoarseClock::manual()));
    let workers = Workers::new(
        store,
        Arc::new(LiveMapper::new(Mapper::empty(CacheOptions::default()))),
        Dialects::default(),
        Profile::Statsd,
    )
    .with_limits(limits);
    workers.worker()
}

fn max_series(n: usize) -> StoreOptions {
    StoreOptions {
        max_series: n,
        ..StoreOptions::default()
    }
}

fn dropped(w: &Worker, reason: limits::DropReason) -> u64 {
    w.counts.dropped[reason.index()]
}

fn text(w: &Worker) -> String {
    render_to_string(&w.shared.store, &[])
}

#[test]
fn a_full_store_drops_new_series_and_keeps_old_ones_exact() {
    let mut w = limited_worker(max_series(10), SampleLimits::default());
    for i in 0..10 {
        w.line(format!("kept{i}:1|c").as_bytes());
    }
    for round in 0..3 {
        for i in 0..1000 {
            w.line(format!("flood{i}:1|c").as_bytes());
            w.line(format!("kept{}:1|c", i % 10).as_bytes());
        }
        assert_eq!(
            dropped(&w, limits::DropReason::MaxSeries),
            1000 * (round + 1)
        );
    }
    let t = text(&w);
    for i in 0..10 {
        assert!(t.contains(&format!("\nkept{i} 301\n")), "{t}");
    }
    assert!(!t.contains("flood"));
    assert_eq!(w.shared.store.series_count(), 10);
    // The refusals are remembered: the second and third rounds added no key.
    let keys = w.handles.len();
    w.line(b"flood5:1|c");
    assert_eq!(w.handles.len(), keys);
}

#[test]
fn a_refused_series_is_created_once_expiry_makes_room() {
    let mut w = limited_worker(max_series(1), SampleLimits::default());
    let mapper = Mapper::from_yaml(
        "defaults:\n  ttl: 1s\nmappings: []\n",
        CacheOptions::default(),
    )
    .unwrap();
    w.shared.mapper.replace(mapper);
    w.line(b"a:1|c");
    w.line(b"b:1|c");
    assert_eq!(dropped(&w, limits::DropReason::MaxSeries), 1);
    let store = w.shared.store.clone();
    store.clock().advance(1001);
    assert_eq!(store.expire(), 1);
    w.line(b"b:2|c");
    assert!(text(&w).contains("\nb 2\n"), "{}", text(&w));
    assert_eq!(dropped(&w, limits::DropReason::MaxSeries), 1);
}

#[test]
fn per_metric_limit_leaves_other_metrics_alone() {
    let opts = StoreOptions {
        max_series_per_metric: 3,
        ..StoreOptions::default()
    };
    let mut w = limited_worker(opts, SampleLimits::default());
    for i in 0..10 {
        w.line(format!("m:1|c|#id:{i}").as_bytes());
        w.line(format!("n{i}:1|c").as_bytes());
    }
    assert_eq!(dropped(&w, limits::DropReason::MaxSeriesPerMetric), 7);
    assert_eq!(w.shared.store.series_count(), 13);
}

#[test]
fn size_limits_drop_and_count_at_first_sight() {
    let limits = SampleLimits {
        max_tags_per_line: 3,
        max_label_value_length: 5,
        max_metric_name_length: 12,
    };
    let mut w = limited_worker(StoreOptions::default(), limits);
    w.line(b"ok:1|c|#a:1,b:2,c:3");
    w.line(b"many:1|c|#a:1,b:2,c:3,d:4");
    w.line(b"many,a=1,b=2,c=3,d=4:1|c");
    w.line(b"many2:1|c|#a:1,b:2|c:container");
    w.line(b"long:1|c|#a:123456");
    w.line(b"toolong.name.x:1|c");
    w.line(b"lname:1|c|#abcdefghijklm:1");
    w.line(b"ok2,a=12345:1|g");
    use limits::DropReason::*;
    assert_eq!(dropped(&w, TooManyTags), 2);
    assert_eq!(
        dropped(&w, LabelValueTooLong),
        2,
        "the container id is a value too"
    );
    assert_eq!(dropped(&w, MetricNameTooLong), 1);
    assert_eq!(dropped(&w, LabelNameTooLong), 1);
    let t = text(&w);
    assert!(t.contains("ok{a=\"1\",b=\"2\",c=\"3\"} 1") && t.contains("ok2{a=\"12345\"} 1"));
    for gone in ["many", "long", "toolong", "lname"] {
        assert!(!t.contains(&format!("\n{gone}")), "{gone}: {t}");
    }
}

#[test]
fn thousands_of_tags_are_refused_without_decoding_them_all() {
    let line = format!("t:1|c|#{}", "k:v,".repeat(6000));
    let mut w = limited_worker(StoreOptions::default(), SampleLimits::default());
    w.line(line.as_bytes());
    assert_eq!(dropped(&w, limits::DropReason::TooManyTags), 1);
    // Without the limit, 6,000 distinct tags still make one series (linear dedup).
    let line: String = (0..6000).map(|i| format!("k{i}:v,")).collect();
    let mut w = limited_worker(StoreOptions::default(), SampleLimits::UNLIMITED);
    w.line(format!("t:1|c|#{line}").as_bytes());
    assert_eq!(w.shared.store.series_count(), 1);
    assert_eq!(w.shared.store.families()[0].len(), 1);
}

#[test]
fn refused_values_never_create_a_series() {
    let mut w = limited_worker(StoreOptions::default(), SampleLimits::default());
    for line in [
        "neg.counter:-5|c",
        "inf.counter:+Inf|c",
        "nan.counter:NaN|c",
        "nan.timer:NaN|ms",
        "inf.hist:-Inf|h",
        "rate.timer:1|ms|@5",
        "tiny.rate:1|ms|@1e-300",
    ] {
        w.line(line.as_bytes());
    }
    assert_eq!(w.shared.store.series_count(), 0, "{}", text(&w));
    assert_eq!(w.counts.negative_counter, 1);
    assert_eq!(w.counts.non_finite, 4);
    assert_eq!(
        w.counts.parse.errors[SampleError::InvalidSampleFactor.index()],
        2
    );
    // The next good value of the same line shape creates the series; a bad one later is
    // refused without touching it.
    w.line(b"neg.counter:5|c");
    w.line(b"neg.counter:-5|c");
    w.line(b"inf.counter:+Inf|c");
    w.line(b"inf.counter:2|c");
    w.line(b"nan.timer:2000|ms");
    w.line(b"nan.timer:NaN|ms");
    let t = text(&w);
    assert!(
        t.contains("\nneg_counter 5\n") && t.contains("\ninf_counter 2\n"),
        "{t}"
    );
    assert!(
        t.contains("nan_timer_sum 2\n") && t.contains("nan_timer_count 1\n"),
        "{t}"
    );
    assert_eq!((w.counts.negative_counter, w.counts.non_finite), (2, 6));
}

#[test]
fn a_sampled_observation_too_big_for_a_new_series_creates_none() {
    let mut w = limited_worker(StoreOptions::default(), SampleLimits::default());
    // Finite, but ten of them overflow the `_sum` of the series it would create.
    w.line(b"big.hist:1e308|h|@0.1");
    assert_eq!(w.shared.store.series_count(), 0, "{}", text(&w));
    assert_eq!(w.counts.non_finite, 10, "each of the ten events is counted");
    w.line(b"big.hist:1e307|h|@0.1");
    let t = text(&w);
    assert!(t.contains("big_hist_count 10\n"), "{t}");
}

#[test]
fn a_counter_total_never_overflows_to_infinity() {
    let mut w = limited_worker(StoreOptions::default(), SampleLimits::default());
    w.line(b"big:1e308|c");
    w.line(b"big:1e308|c");
    w.line(b"big:1e308|c|@0.5");
    assert_eq!(w.counts.non_finite, 2);
    assert!(text(&w).contains("\nbig 1e+308\n"), "{}", text(&w));
}

#[test]
fn tags_that_escape_alike_are_a_tag_error_and_the_later_wins() {
    let mut w = limited_worker(StoreOptions::default(), SampleLimits::default());
    w.line(b"t:1|c|#my.tag:a,my-tag:b");
    w.line(b"t:1|c|#k:1,k:2");
    assert_eq!(w.counts.tag_errors, 1, "the exact duplicate is no error");
    let t = text(&w);
    assert!(
        t.contains("t{my_tag=\"b\"} 1") && t.contains("t{k=\"2\"} 1"),
        "{t}"
    );
}

#[test]
fn mapping_drops_and_conflicts_stay_remembered_however_many() {
    let mut w = limited_worker(StoreOptions::default(), SampleLimits::default());
    let mapper = Mapper::from_yaml(
        "mappings:\n- match: drop.*\n  name: x\n  action: drop\n",
        CacheOptions::default(),
    )
    .unwrap();
    w.shared.mapper.replace(mapper);
    for pass in 0..2 {
        for i in 0..20_000 {
            w.line(format!("drop.n{i}:1|c").as_bytes());
            w.line(format!("conflict{i}:1|{}", ["c", "g"][pass]).as_bytes());
        }
        // The first pass keeps 20k drops and 20k counters; the second adds 20k conflicts.
        assert_eq!(w.handles.len(), 40_000 + 20_000 * pass, "pass {pass}");
    }
}

#[test]
fn keys_a_limit_refused_are_forgotten_first() {
    let mut w = limited_worker(max_series(100), SampleLimits::default());
    for i in 0..100 {
        w.line(format!("kept{i}:1|c").as_bytes());
    }
    for i in 0..200_000 {
        w.line(format!("flood{i}:1|c").as_bytes());
    }
    assert!(w.handles.len() <= 100 + (1 << 14), "{}", w.handles.len());
    let keys = w.handles.len();
    for i in 0..100 {
        w.line(format!("kept{i}:1|c").as_bytes());
    }
    assert_eq!(w.handles.len(), keys, "the kept series' handles survived");
    assert_eq!(dropped(&w, limits::DropReason::MaxSeries), 200_000);
}

fn sender_worker(store: StoreOptions) -> Worker {
    let store = Arc::new(Store::with_clock(store, CoarseClock::manual()));
    Workers::new(
        store,
        Arc::new(LiveMapper::new(Mapper::empty(CacheOptions::default()))),
        Dialects::default(),
        Profile::Statsd,
    )
    .with_sender_label(Some(SenderLabel::new("instance").unwrap()))
    .worker()
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

#[test]
fn without_a_sender_label_senders_are_ignored() {
    let mut w = worker(Profile::Statsd, true);
    assert!(!w.wants_sender());
    w.sender(ip("10.0.0.1"));
    w.line(b"g:1|g");
    w.sender(ip("10.0.0.2"));
    w.line(b"g:+1|g");
    assert!(text(&w).contains("\ng 2\n"), "{}", text(&w));
    assert_eq!(w.shared.store.series_count(), 1);
}

#[test]
fn each_sender_has_its_own_series_and_replay_never_crosses_senders() {
    let mut w = sender_worker(StoreOptions::default());
    assert!(w.wants_sender());
    // Replayable shapes, then lines found by identity (a timestamp is never replayed).
    for (a, b) in [
        ("g:1|g", "g:2|g"),
        ("c:1|c|T1700000000", "c:2|c|T1700000000"),
    ] {
        w.sender(ip("10.0.0.1"));
        w.line(a.as_bytes());
        w.sender(ip("10.0.0.2"));
        w.line(b.as_bytes());
        let entries = w.handles.len();
        for _ in 0..3 {
            w.sender(ip("10.0.0.1"));
            w.line(a.as_bytes());
            w.sender(ip("10.0.0.2"));
            w.line(b.as_bytes());
        }
        assert_eq!(w.handles.len(), entries, "steady state: no new keys");
    }
    let t = text(&w);
    assert!(t.contains("\ng{instance=\"10.0.0.1\"} 1\n"), "{t}");
    assert!(t.contains("\ng{instance=\"10.0.0.2\"} 2\n"), "{t}");
    assert!(t.contains("\nc{instance=\"10.0.0.1\"} 4\n"), "{t}");
    assert!(t.contains("\nc{instance=\"10.0.0.2\"} 8\n"), "{t}");
    assert_eq!(w.shared.store.series_count(), 4);

    // An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 sender) is the
    // same sender; an IPv6 one is shown canonically.
    w.sender(Some(
        std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().into(),
    ));
    w.line(b"g:+10|g");
    w.sender(ip("2001:db8:0:0::1"));
    w.line(b"g:3|g");
    let t = text(&w);
    assert!(t.contains("\ng{instance=\"10.0.0.1\"} 11\n"), "{t}");
    assert!(t.contains("\ng{instance=\"2001:db8::1\"} 3\n"), "{t}");
}

#[test]
fn the_sender_address_overrides_a_tag_or_mapping_label_and_is_counted() {
    let mut w = sender_worker(StoreOptions::default());
    let mapper = Mapper::from_yaml(
        "mappings:\n- match: mapped.*\n  name: mapped\n  labels:\n    instance: fixed\n    which: $1\n",
        CacheOptions::default(),
    )
    .unwrap();
    w.shared.mapper.replace(mapper);
    w.sender(ip("10.0.0.1"));
    w.line(b"spoof:1|g|#instance:10.9.9.9,k:v");
    w.line(b"spoof:2|g|#instance:10.9.9.9,k:v");
    w.line(b"mapped.x:1|c");
    w.line(b"plain:1|c");
    let t = text(&w);
    assert!(
        t.contains("\nspoof{instance=\"10.0.0.1\",k=\"v\"} 2\n"),
        "{t}"
    );
    assert!(
        t.contains("\nmapped{instance=\"10.0.0.1\",which=\"x\"} 1\n"),
        "{t}"
    );
    assert!(!t.contains("10.9.9.9") && !t.contains("fixed"), "{t}");
    assert_eq!(
        w.counts.sender_overrides, 3,
        "two spoofed events, one mapped"
    );

    // A unixgram sender has no address: the label is left off, and a tag of its name too.
    w.sender(None);
    w.line(b"local:1|g|#instance:10.9.9.9,k:v");
    w.line(b"local2:1|g");
    let t = text(&w);
    assert!(t.contains("\nlocal{k=\"v\"} 1\n"), "{t}");
    assert!(t.contains("\nlocal2 1\n"), "{t}");
    assert_eq!(w.counts.sender_overrides, 4);
}

#[test]
fn every_sender_series_counts_against_the_series_limits() {
    let mut w = sender_worker(max_series(3));
    for round in 0..2 {
        for i in 1..=10 {
            w.sender(ip(&format!("10.0.0.{i}")));
            w.line(b"g:1|g");
        }
        assert_eq!(dropped(&w, limits::DropReason::MaxSeries), 7 * (round + 1));
    }
    assert_eq!(w.shared.store.series_count(), 3);

    let opts = StoreOptions {
        max_series_per_metric: 2,
        ..StoreOptions::default()
    };
    let mut w = sender_worker(opts);
    for i in 1..=5 {
        w.sender(ip(&format!("10.0.0.{i}")));
        w.line(b"g:1|g");
        w.line(format!("other{i}:1|g").as_bytes());
    }
    assert_eq!(dropped(&w, limits::DropReason::MaxSeriesPerMetric), 3);
    assert_eq!(w.shared.store.series_count(), 7);
}

/// Summary merges wait for the end of the batch and are spread over several batches, and
/// the scrape shows the same quantiles whether the merges ran, waited, or were never run.
#[test]
fn summary_merges_wait_for_batch_ends_and_do_not_change_quantiles() {
    let mut deferred = worker(Profile::Statsd, true);
    let mut at_once = worker(Profile::Statsd, true);
    // 600 timers, each filling its 500-observation buffer in the same datagram run.
    let datagrams: Vec<Vec<u8>> = (0..500)
        .map(|round| {
            (0..600)
                .map(|t| format!("timer_{t}:{}|ms\n", (round * 7 + t * 13) % 1000))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    for d in &datagrams {
        deferred.datagram(d);
        at_once.datagram(d);
        at_once.merges.drain();
    }
    assert_eq!(deferred.merges.len(), 600, "every full buffer waits");
    deferred.flush();
    let left = deferred.merges.len();
    // At most 2 ms of merges, a fraction of what 600 take even in a release build.
    assert!(left > 100 && left < 600, "{left} left");
    // The scrape merges what still waits.
    assert_eq!(text(&deferred), text(&at_once));
    let started = std::time::Instant::now();
    while deferred.merges.len() > 0 && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(1));
        deferred.flush();
    }
    assert_eq!(deferred.merges.len(), 0);
}
