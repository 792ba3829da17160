//! Every `packet_parsing` case of statsd_exporter's TestHandlePacket, sent through real UDP,
//! TCP and unixgram sockets of a running gateway, checked by scraping `/metrics`.

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use common::{Gateway, Samples, cases, series};
use serde_json::Value;
use statsgate::mapping::naming::escape_metric_name;

#[derive(Default)]
struct Model {
    types: BTreeMap<String, &'static str>,
    scalars: BTreeMap<String, f64>,
    observers: BTreeMap<String, (f64, f64)>,
}

fn key(name: &str, labels: &BTreeMap<String, String>) -> (String, String) {
    let n = escape_metric_name(name).into_owned();
    let l: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    (n.clone(), series(&n, &l))
}

fn model(events: &[Value]) -> Model {
    let mut m = Model::default();
    for e in events {
        let t = e["type"].as_str().unwrap();
        let labels: BTreeMap<String, String> = e["labels"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let (name, s) = key(e["name"].as_str().unwrap(), &labels);
        let v = e["value"].as_f64().unwrap();
        let t: &'static str = match t {
            "counter" => "counter",
            "gauge" => "gauge",
            _ => "summary",
        };
        // The first type registered under a name wins; later events of another type are
        // conflicts and dropped.
        if *m.types.entry(name).or_insert(t) != t {
            continue;
        }
        match t {
            "counter" if v >= 0.0 => *m.scalars.entry(s).or_insert(0.0) += v,
            "counter" => {}
            "gauge" if e["relative"].as_bool() == Some(true) => {
                *m.scalars.entry(s).or_insert(0.0) += v
            }
            "gauge" => {
                m.scalars.insert(s, v);
            }
            _ => {
                let o = m.observers.entry(s).or_insert((0.0, 0.0));
                o.0 += 1.0;
                o.1 += v;
            }
        }
    }
    m
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn check(gw: &Gateway, case: &Value, lines: f64, transport: &str) {
    let id = case["id"].as_str().unwrap();
    // Self-metrics are separate counters published one after another, so wait until every
    // one this case moves has arrived, then compare them exactly.
    let samples = case["reference_counters"]["samples_total"]
        .as_f64()
        .unwrap();
    let events = case["expected_events"].as_array().unwrap().len() as f64;
    let rc = &case["reference_counters"];
    let tags = rc["tags_total"].as_f64().unwrap();
    let tag_errors = rc["tag_errors_total"].as_f64().unwrap();
    let errors: f64 = rc["sample_errors_by_reason"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_f64)
        .sum();
    let s: Samples = gw.wait_for(&format!("{id} over {transport}"), |s| {
        let sum = |name: &str, label: &str, values: &[&str]| -> f64 {
            values
                .iter()
                .map(|v| s.count(&format!("{name}{{{label}=\"{v}\"}}")))
                .sum()
        };
        let reasons = statsgate::line::SampleError::ALL.map(|e| e.reason());
        s.count("statsd_exporter_lines_total") >= lines
            && s.count("statsd_exporter_samples_total") >= samples
            && s.count("statsd_exporter_tags_total") >= tags
            && s.count("statsd_exporter_tag_errors_total") >= tag_errors
            && sum("statsd_exporter_sample_errors_total", "reason", &reasons) >= errors
            && sum(
                "statsd_exporter_events_total",
                "type",
                &["counter", "gauge", "observer"],
            ) >= events
    });
    let events = case["expected_events"].as_array().unwrap();
    let m = model(events);
    for (series, want) in &m.scalars {
        let got = s.get(series);
        assert!(
            got.is_some_and(|g| close(g, *want)),
            "{id} {transport}: {series} = {got:?}, want {want}\n{}",
            s.text
        );
    }
    for (series, (count, sum)) in &m.observers {
        let (c, sm) = match series.split_once('{') {
            Some((n, l)) => (format!("{n}_count{{{l}"), format!("{n}_sum{{{l}")),
            None => (format!("{series}_count"), format!("{series}_sum")),
        };
        assert_eq!(s.get(&c), Some(*count), "{id} {transport}: {c}\n{}", s.text);
        assert!(
            s.get(&sm).is_some_and(|g| close(g, *sum)),
            "{id} {transport}: {sm}\n{}",
            s.text
        );
    }
    assert_eq!(
        s.count("statsd_exporter_samples_total"),
        rc["samples_total"].as_f64().unwrap(),
        "{id} {transport} samples"
    );
    assert_eq!(
        s.count("statsd_exporter_tags_total"),
        rc["tags_total"].as_f64().unwrap(),
        "{id} {transport} tags"
    );
    assert_eq!(
        s.count("statsd_exporter_tag_errors_total"),
        rc["tag_errors_total"].as_f64().unwrap(),
        "{id} {transport} tag errors"
    );
    let errs = rc["sample_errors_by_reason"].as_object().unwrap();
    for reason in statsgate::line::SampleError::ALL.map(|e| e.reason()) {
        let want = errs.get(reason).and_then(Value::as_f64).unwrap_or(0.0);
        let got = s.count(&format!(
            "statsd_exporter_sample_errors_total{{reason=\"{reason}\"}}"
        ));
        assert_eq!(got, want, "{id} {transport}: sample errors {reason}");
    }
    let n_events = events.len() as f64;
    let seen: f64 = ["counter", "gauge", "observer"]
        .iter()
        .map(|t| s.count(&format!("statsd_exporter_events_total{{type=\"{t}\"}}")))
        .sum();
    assert_eq!(seen, n_events, "{id} {transport}: events_total");
}

fn dialect_flags(case: &Value) -> Vec<String> {
    let d = &case["dialects"];
    ["dogstatsd", "influxdb", "librato", "signalfx"]
        .iter()
        .map(|k| {
            let on = d[k].as_bool().unwrap_or(true);
            format!("--statsd.parse-{k}-tags={on}")
        })
        .collect()
}

#[test]
fn every_packet_case_over_udp_tcp_and_unixgram() {
    let all = cases();
    let list = all["packet_parsing"].as_array().unwrap();
    assert!(
        list.len() >= 40,
        "expected the whole TestHandlePacket table"
    );
    let mut ran = 0;
    for case in list {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(case["packet_base64"].as_str().unwrap())
            .unwrap();
        let lines = bytes.split(|b| *b == b'\n').count() as f64;
        let flags = dialect_flags(case);
        let args: Vec<&str> = flags.iter().map(String::as_str).collect();
        for transport in ["udp", "tcp", "unixgram"] {
            let gw = Gateway::start_with_unixgram(&args);
            match transport {
                "udp" => gw.send_udp(&bytes),
                "unixgram" => gw.send_unixgram(&bytes),
                _ => {
                    let mut framed = bytes.clone();
                    framed.push(b'\n');
                    gw.send_tcp(&framed);
                }
            }
            check(&gw, case, lines, transport);
            ran += 1;
        }
    }
    eprintln!("packet cases: {ran} case×transport runs passed");
}
