//! Mapping files through the running gateway: conflicts (statsd_exporter's
//! TestConflictingMetrics), reload over HTTP and SIGHUP (also under load), bad files,
//! `--check-config`, and TTL expiry.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Gateway, TempDir, promtool_check, series};
use serde_json::Value;
use statsgate::mapping::naming::escape_metric_name;

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.0.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn statsd_line(e: &Value) -> String {
    let t = match e["type"].as_str().unwrap() {
        "counter" => "c",
        "gauge" => "g",
        _ => "h",
    };
    let mut line = format!("{}:{}|{t}", e["name"].as_str().unwrap(), e["value"]);
    if let Some(l) = e["labels"].as_object().filter(|o| !o.is_empty()) {
        let tags: Vec<String> = l
            .iter()
            .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap()))
            .collect();
        line.push_str(&format!("|#{}", tags.join(",")));
    }
    line
}

#[test]
fn exporter_conflict_cases_through_sockets() {
    let all = common::cases();
    for case in all["exporter_conflicts"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let dir = TempDir::new("conflicts");
        let cfg = write(
            &dir,
            "mapping.yml",
            case["mapping_config"].as_str().unwrap(),
        );
        let gw = Gateway::start(&[&format!("--statsd.mapping-config={cfg}")]);
        let events = case["events_in_order"].as_array().unwrap();
        // TCP keeps the order of events, which decides who wins a conflict.
        let payload: String = events.iter().map(|e| statsd_line(e) + "\n").collect();
        gw.send_tcp(payload.as_bytes());
        let s = gw.wait_for(name, |s| {
            s.count("statsd_exporter_lines_total") >= events.len() as f64
        });
        promtool_check(&s.text);
        let expected = case["expected_values_of_first_n_events"]
            .as_array()
            .unwrap();
        for (i, want) in expected.iter().enumerate() {
            let e = &events[i];
            let n = escape_metric_name(e["name"].as_str().unwrap()).into_owned();
            let labels: Vec<(String, String)> = e["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let l: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let key = if e["type"] == "observer" {
                series(&format!("{n}_sum"), &l)
            } else {
                series(&n, &l)
            };
            assert_eq!(s.get(&key), want.as_f64(), "{name}: {key}\n{}", s.text);
        }
        let conflicts: f64 = s
            .values
            .iter()
            .filter(|(k, _)| k.starts_with("statsd_exporter_events_conflict_total"))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(
            conflicts,
            (events.len() - expected.len()) as f64,
            "{name}: every later event is a conflict"
        );
    }
}

const MAP_A: &str =
    "mappings:\n- match: load.*\n  name: loadtest\n  labels:\n    version: a\n    which: $1\n";
const MAP_B: &str =
    "mappings:\n- match: load.*\n  name: loadtest\n  labels:\n    version: b\n    which: $1\n";

/// The mapping file of generation `generation`: the same rule, a label naming the generation.
fn generation_map(generation: usize) -> String {
    format!(
        "mappings:\n- match: load.*\n  name: loadtest\n  labels:\n    generation: g{generation}\n"
    )
}

#[test]
fn reload_over_http_under_load_loses_and_doubles_nothing() {
    const RELOADS: usize = 20;
    const CHUNK: u64 = 100;
    // Bounds the sender if the test goes wrong; far more than the reloads take.
    const MAX_CHUNKS: u64 = 20_000;
    let dir = TempDir::new("reload");
    let cfg = write(&dir, "mapping.yml", &generation_map(0));
    let gw = Gateway::start(&[
        &format!("--statsd.mapping-config={cfg}"),
        "--web.enable-lifecycle",
    ]);

    // One TCP connection sends without pause until every reload is done, so each reload
    // happens while lines are arriving.
    let tcp = gw.tcp.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(tcp).unwrap();
            let chunk = "load.x:1|c\n".repeat(CHUNK as usize);
            let mut sent = 0;
            while !stop.load(Ordering::Acquire) && sent < MAX_CHUNKS * CHUNK {
                s.write_all(chunk.as_bytes()).unwrap();
                if sent == 0 {
                    started_tx.send(()).unwrap();
                }
                sent += CHUNK;
                // Spread the load over the reloads rather than filling the socket at once.
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
            s.flush().unwrap();
            (sent, stop.load(Ordering::Acquire))
        })
    };
    started_rx.recv_timeout(common::WAIT).unwrap();
    let counted = |s: &common::Samples, generation: usize| {
        s.count(&series(
            "loadtest",
            &[("generation", &format!("g{generation}"))],
        ))
    };
    for generation in 1..=RELOADS {
        std::fs::write(&cfg, generation_map(generation)).unwrap();
        let (st, body) = gw.send("POST", "/-/reload");
        assert_eq!((st, body.as_str()), (200, "Requesting reload"));
        // Only this generation's rules make this series: seeing it proves the reload took
        // effect while the lines kept coming.
        gw.wait_for(&format!("lines under generation {generation}"), |s| {
            counted(s, generation) > 0.0
        });
    }
    stop.store(true, Ordering::Release);
    let (sent, stopped) = sender.join().unwrap();
    assert!(
        stopped,
        "the sender hit its bound before the reloads were done"
    );

    let total = |s: &common::Samples| (0..=RELOADS).map(|g| counted(s, g)).sum::<f64>();
    let s = gw.wait_for("every line", |s| {
        s.count("statsd_exporter_lines_total") >= sent as f64 && total(s) >= sent as f64
    });
    assert_eq!(s.count("statsd_exporter_lines_total"), sent as f64);
    assert_eq!(
        total(&s),
        sent as f64,
        "each of {sent} lines counted exactly once across {RELOADS} reloads"
    );
    assert_eq!(
        s.count("statsd_exporter_config_reloads_total{outcome=\"success\"}"),
        RELOADS as f64
    );
    assert_eq!(
        s.count("statsd_exporter_config_reloads_total{outcome=\"failure\"}"),
        0.0
    );
    assert_eq!(s.get("statsd_exporter_loaded_mappings"), Some(1.0));
}

#[test]
fn bad_file_keeps_old_rules_and_counts_failure() {
    let dir = TempDir::new("badreload");
    let cfg = write(&dir, "mapping.yml", MAP_A);
    let gw = Gateway::start(&[
        &format!("--statsd.mapping-config={cfg}"),
        "--web.enable-lifecycle",
    ]);
    std::fs::write(
        &cfg,
        "mappings:\n- match: load.*\n  name: loadtest\n  labels:\n    1bad: x\n",
    )
    .unwrap();
    let (st, body) = gw.send("PUT", "/-/reload");
    assert_eq!(st, 500, "{body}");
    assert!(body.contains("line"), "the reason names the line: {body}");
    gw.send_udp(b"load.y:2|c");
    let s = gw.wait_for("the line", |s| {
        s.count("statsd_exporter_lines_total") >= 1.0
    });
    assert_eq!(
        s.get(&series("loadtest", &[("version", "a"), ("which", "y")])),
        Some(2.0)
    );
    assert_eq!(
        s.count("statsd_exporter_config_reloads_total{outcome=\"failure\"}"),
        1.0
    );
    assert_eq!(s.get("statsd_exporter_loaded_mappings"), Some(1.0));
}

#[test]
fn sighup_reloads() {
    let dir = TempDir::new("sighup");
    let cfg = write(&dir, "mapping.yml", MAP_A);
    let gw = Gateway::start(&[&format!("--statsd.mapping-config={cfg}")]);
    std::fs::write(&cfg, format!("{MAP_B}- match: other.*\n  name: other\n")).unwrap();
    let st = Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    gw.wait_for("two mappings", |s| {
        s.get("statsd_exporter_loaded_mappings") == Some(2.0)
    });
    gw.send_udp(b"load.z:1|c");
    let s = gw.wait_for("the line", |s| {
        s.count("statsd_exporter_lines_total") >= 1.0
    });
    assert_eq!(
        s.get(&series("loadtest", &[("version", "b"), ("which", "z")])),
        Some(1.0)
    );
    assert_eq!(
        s.count("statsd_exporter_config_reloads_total{outcome=\"success\"}"),
        1.0
    );
}

#[test]
fn bad_mapping_at_startup_is_an_error() {
    let dir = TempDir::new("badstart");
    let cfg = write(
        &dir,
        "mapping.yml",
        "mappings:\n- match: a.*\n  name: x\n  timer_type: histogram\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args([
            &format!("--statsd.mapping-config={cfg}"),
            "--web.listen-address=127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mapping.yml") && err.contains("timer_type"),
        "{err}"
    );
}

#[test]
fn check_config_validates_and_exits() {
    let dir = TempDir::new("check");
    let good = write(&dir, "good.yml", MAP_A);
    let bad = write(
        &dir,
        "bad.yml",
        "mappings:\n- match: a.*\n  name: x\n  match_type: globby\n",
    );
    let run = |f: &str| {
        Command::new(env!("CARGO_BIN_EXE_statsgate"))
            .args(["--check-config", &format!("--statsd.mapping-config={f}")])
            .output()
            .unwrap()
    };
    let ok = run(&good);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("1 mappings"));
    let ko = run(&bad);
    assert_eq!(ko.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&ko.stderr).contains("bad.yml"));
}

#[test]
fn ttl_expires_idle_series_and_an_event_brings_it_back() {
    let dir = TempDir::new("ttl");
    let cfg = write(
        &dir,
        "mapping.yml",
        "defaults:\n  ttl: 1s\nmappings:\n- match: keep.*\n  name: kept\n  ttl: 1h\n",
    );
    let gw = Gateway::start(&[&format!("--statsd.mapping-config={cfg}")]);
    gw.send_udp(b"idle:5|c\nkeep.me:1|c");
    let s = gw.wait_for("both series", |s| {
        s.get("idle").is_some() && s.get("kept").is_some()
    });
    assert_eq!(s.get("idle"), Some(5.0));
    // The expiry counter moves just after the series goes: wait for both.
    let s = gw.wait_for("idle to expire", |s| {
        s.get("idle").is_none() && s.count("statsgate_series_expired_total") >= 1.0
    });
    assert_eq!(s.get("kept"), Some(1.0), "a series with a longer ttl stays");
    assert!(s.count("statsgate_series_expired_total") >= 1.0);
    gw.send_udp(b"idle:2|c");
    let s = gw.wait_for("idle to return", |s| s.get("idle").is_some());
    assert_eq!(s.get("idle"), Some(2.0), "a new series starts from zero");
}

#[test]
fn mapped_histograms_and_summaries_render_and_pass_promtool() {
    let dir = TempDir::new("observers");
    let cfg = write(
        &dir,
        "mapping.yml",
        "mappings:\n- match: envoy.cluster.*.upstream_rq_time\n  name: envoy_cluster_upstream_rq_time\n  observer_type: histogram\n  histogram_options: { buckets: [0.005, 0.05, 0.5, 5] }\n  labels: { cluster_name: \"$1\" }\n- match: api.*.latency\n  name: api_latency\n  observer_type: summary\n  summary_options: { quantiles: [{quantile: 0.5, error: 0.05}], max_age: 1m }\n  labels: { route: \"$1\" }\n  help: API latency.\n- match: drop.*\n  name: dropped\n  action: drop\n",
    );
    let gw = Gateway::start(&[&format!("--statsd.mapping-config={cfg}")]);
    gw.send_udp(b"envoy.cluster.xds.upstream_rq_time:40|ms\nenvoy.cluster.xds.upstream_rq_time:4000|ms|#le:9\napi.users.latency:100|ms\ndrop.me:1|c\nunmapped:1|c");
    let s = gw.wait_for("five lines", |s| {
        s.count("statsd_exporter_lines_total") >= 5.0
    });
    promtool_check(&s.text);
    assert_eq!(
        s.type_of("envoy_cluster_upstream_rq_time").as_deref(),
        Some("histogram")
    );
    assert_eq!(
        s.get("envoy_cluster_upstream_rq_time_bucket{cluster_name=\"xds\",le=\"0.05\"}"),
        Some(1.0)
    );
    assert_eq!(
        s.get("envoy_cluster_upstream_rq_time_bucket{cluster_name=\"xds\",le=\"5\"}"),
        Some(2.0)
    );
    assert_eq!(
        s.get("envoy_cluster_upstream_rq_time_bucket{cluster_name=\"xds\",le=\"+Inf\"}"),
        Some(2.0)
    );
    assert_eq!(
        s.get("envoy_cluster_upstream_rq_time_count{cluster_name=\"xds\"}"),
        Some(2.0)
    );
    assert_eq!(
        s.get("api_latency{route=\"users\",quantile=\"0.5\"}"),
        Some(0.1)
    );
    assert!(s.text.contains("# HELP api_latency API latency.\n"));
    assert!(s.get("dropped").is_none());
    assert_eq!(
        s.count("statsd_exporter_events_actions_total{action=\"drop\"}"),
        1.0
    );
    assert_eq!(
        s.count("statsd_exporter_events_actions_total{action=\"map\"}"),
        3.0
    );
    assert_eq!(s.count("statsd_exporter_events_unmapped_total"), 1.0);
    assert_eq!(
        s.count("statsgate_labels_dropped_total"),
        1.0,
        "le on a histogram"
    );
}
