//! Every `line_parsing` vector (statsd_exporter's `line_test.go` tables) and every
//! `escape_metric_name` vector of `statsd_exporter_cases.json`, run through the real parser.
//!
//! The caller-side rules are the ones the gateway applies: observers expand `repeat` times,
//! labels come from `Tags::decode` with a later duplicate overwriting an earlier one,
//! `tags_total` counts samples with at least one label, and `tag_errors_total` is the sum of
//! decode errors plus `ParseCounters::tag_errors`.

mod common;

use base64::Engine;
use common::cases as load_cases;
use serde_json::Value;
use statsgate::line::{Dialects, EventKind, ParseCounters, SampleError, parse_line};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
struct Event {
    kind: &'static str,
    name: String,
    value: f64,
    relative: Option<bool>,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, PartialEq)]
struct Counts {
    errors: BTreeMap<String, u64>,
    samples: u64,
    tag_errors: u64,
    tags: u64,
}

fn dialects_of(case: &Value) -> Dialects {
    let flag = |k: &str| case["dialects"][k].as_bool().unwrap();
    Dialects {
        dogstatsd: flag("dogstatsd"),
        influxdb: flag("influxdb"),
        librato: flag("librato"),
        signalfx: flag("signalfx"),
        graphite: false,
        dogstatsd_tags_last: false,
    }
}

fn run(line: &[u8], dialects: &Dialects) -> (Vec<Event>, Counts) {
    let mut counters = ParseCounters::default();
    let mut events = Vec::new();
    let mut tag_errors = 0;
    let mut tags = 0;
    parse_line(line, dialects, &mut counters, |sample| {
        let mut labels = BTreeMap::new();
        let counts = sample.tags.decode(|k, v| {
            labels.insert(k.into_owned(), v.to_owned());
        });
        assert_eq!(counts.labels > 0, !labels.is_empty());
        tag_errors += u64::from(counts.errors);
        tags += u64::from(counts.labels > 0);
        let kind = sample.kind();
        let event = Event {
            kind: kind.as_str(),
            name: sample.metric.to_string(),
            value: sample.value_in_base_unit(),
            relative: (kind == EventKind::Gauge).then_some(sample.relative),
            labels,
        };
        let times = if kind == EventKind::Observer {
            sample.repeat
        } else {
            1
        };
        for _ in 0..times {
            events.push(event.clone());
        }
    });
    let errors = SampleError::ALL
        .iter()
        .filter(|e| counters.errors[e.index()] > 0)
        .map(|e| (e.reason().to_string(), counters.errors[e.index()]))
        .collect();
    let counts = Counts {
        errors,
        samples: counters.samples,
        tag_errors: tag_errors + counters.tag_errors,
        tags,
    };
    (events, counts)
}

fn expected_events(case: &Value) -> Vec<Event> {
    case["reference_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let kind = match e["type"].as_str().unwrap() {
                "counter" => "counter",
                "gauge" => "gauge",
                "observer" => "observer",
                other => panic!("unknown type {other}"),
            };
            Event {
                kind,
                name: e["name"].as_str().unwrap().to_string(),
                value: e["value"].as_f64().unwrap(),
                relative: (kind == "gauge").then(|| e["relative"].as_bool().unwrap_or(false)),
                labels: e["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
            }
        })
        .collect()
}

fn expected_counts(case: &Value) -> Counts {
    let c = &case["reference_counters"];
    Counts {
        errors: c["sample_errors_by_reason"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect(),
        samples: c["samples_total"].as_u64().unwrap(),
        tag_errors: c["tag_errors_total"].as_u64().unwrap(),
        tags: c["tags_total"].as_u64().unwrap(),
    }
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn same_events(got: &[Event], want: &[Event]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.kind == w.kind
                && g.name == w.name
                && close(g.value, w.value)
                && g.relative == w.relative
                && g.labels == w.labels
        })
}

#[test]
fn every_line_parsing_case() {
    let cases = load_cases();
    let cases = cases["line_parsing"].as_array().unwrap();
    let mut failures = Vec::new();
    let mut failed_ids = std::collections::BTreeSet::new();
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let line = base64::engine::general_purpose::STANDARD
            .decode(case["in_base64"].as_str().unwrap())
            .unwrap();
        let (events, counts) = run(&line, &dialects_of(case));
        let want_events = expected_events(case);
        let want_counts = expected_counts(case);
        if !same_events(&events, &want_events) {
            failed_ids.insert(id);
            failures.push(format!(
                "{id} events: got {events:?}\n want {want_events:?}"
            ));
        }
        if counts != want_counts {
            failed_ids.insert(id);
            failures.push(format!(
                "{id} counters: got {counts:?}\n want {want_counts:?}"
            ));
        }
    }
    eprintln!(
        "line_parsing: {} of {} cases pass",
        cases.len() - failed_ids.len(),
        cases.len()
    );
    assert_eq!(cases.len(), 212, "the data file changed");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn escape_metric_name_cases_through_tag_keys() {
    let cases = load_cases();
    let cases = cases["escape_metric_name"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let input = case["in"].as_str().unwrap();
        let want = case["out"].as_str().unwrap();
        // The same key as a DogStatsD tag and as an InfluxDB name tag.
        for line in [format!("m:1|c|#{input}:v"), format!("m,{input}=v:1|c")] {
            let (events, counts) = run(line.as_bytes(), &Dialects::default());
            assert_eq!(counts.tag_errors, 0, "{line}");
            let keys: Vec<_> = events[0].labels.keys().cloned().collect();
            assert_eq!(keys, [want], "{line}");
        }
    }
    eprintln!("escape_metric_name: {} cases pass", cases.len());
}

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static ALLOC: counting_alloc::Counting = counting_alloc::Counting;

#[test]
fn typical_lines_parse_and_decode_without_allocating() {
    let dialects = Dialects::default();
    let envoy = Dialects {
        dogstatsd_tags_last: true,
        graphite: true,
        ..Dialects::default()
    };
    let lines: [(&[u8], &Dialects); 10] = [
        (b"envoy.cluster.x.upstream_rq_200:1|c", &dialects),
        (b"foo:1|c|#a:b,c:d", &dialects),
        (b"foo:12|ms|@0.1", &dialects),
        (b"foo,a=b:1|c:2|g", &dialects),
        (b"foo:0.5:120:3000|ms|#a:b", &dialects),
        (b"foo:1|c|#bad,a:b|c:container", &dialects),
        (
            b"envoy.x:1|c|#envoy_cluster_name:outbound|9080|v1|r",
            &envoy,
        ),
        (
            b"envoy.x:1|c|#envoy.cluster_name:outbound|9080|v1|r",
            &envoy,
        ),
        (
            b"envoy.x;envoy_cluster_name=outbound|9080|v1|r;envoy_response_code=200:1|c",
            &envoy,
        ),
        (
            b"envoy.x;envoy.cluster_name=outbound|9080|v1|r;envoy.response_code=200:1|c",
            &envoy,
        ),
    ];
    for (line, dialects) in lines {
        let text = String::from_utf8_lossy(line).into_owned();
        let mut counters = ParseCounters::default();
        let mut emitted = 0;
        let before = counting_alloc::count();
        parse_line(line, dialects, &mut counters, |s| {
            emitted += 1;
            std::hint::black_box(s);
        });
        assert_eq!(counting_alloc::count() - before, 0, "parse: {text}");
        assert!(emitted > 0, "{text}");

        // Decoding borrows too, unless a key needs escaping (`envoy.cluster_name`), which
        // happens once per new series, not per line.
        let mut decode_allocations = 0;
        parse_line(line, dialects, &mut counters, |s| {
            let before = counting_alloc::count();
            s.tags.decode(|k, v| {
                std::hint::black_box((k, v));
            });
            decode_allocations += counting_alloc::count() - before;
        });
        let clean_keys = !text.contains("envoy.cluster_name");
        assert_eq!(decode_allocations == 0, clean_keys, "decode: {text}");
    }
}
