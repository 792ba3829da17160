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
    "1", "-2", "+3.5", "0x1p-2", "1e3", "NaN", "-Inf", "bad", "", "1_0", "-0", "7",
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
