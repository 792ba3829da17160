//! `--profile=envoy`: a realistic Envoy flush over UDP comes out with the names and labels
//! of Envoy's own /stats/prometheus, and the dog_statsd sink's lines land in the same series.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Gateway, envoy_stat_names, promtool_check, series};
use statsgate::mapping::profile::envoy::{
    TagExtractor, TagRuleSet, prometheus_label_name, prometheus_metric_name,
};

/// One flush of Envoy's plain statsd sink: one line per datagram, as Envoy sends them.
const FLUSH: &[&str] = &[
    "envoy.cluster.xds-grpc.upstream_rq_200:3|c",
    "envoy.cluster.xds-grpc.upstream_rq_503:1|c",
    "envoy.cluster.xds-grpc.upstream_rq_2xx:3|c",
    "envoy.cluster.xds-grpc.upstream_rq_total:4|c",
    "envoy.cluster.xds-grpc.upstream_cx_active:2|g",
    "envoy.cluster.xds-grpc.upstream_rq_time:12|ms",
    "envoy.cluster.xds-grpc.upstream_rq_time:700|ms",
    "envoy.cluster.ratings.upstream_rq_200:5|c",
    "envoy.cluster.ratings.upstream_rq_time:3|ms",
    "envoy.listener.0.0.0.0_15001.downstream_cx_total:4|c",
    "envoy.server.uptime:3600|g",
    "envoy.server.memory_allocated:123456|g",
];

#[test]
fn envoy_flush_gets_envoys_own_names_and_labels() {
    let gw = Gateway::start(&["--profile=envoy"]);
    for l in FLUSH {
        gw.send_udp(l.as_bytes());
    }
    // A second flush: counters are deltas, so they add up.
    gw.send_udp(b"envoy.cluster.xds-grpc.upstream_rq_200:2|c");
    let s = gw.wait_for("the flush", |s| {
        s.count("statsd_exporter_lines_total") >= (FLUSH.len() + 1) as f64
    });
    promtool_check(&s.text);
    let get = |k: &str| s.get(k);
    assert_eq!(
        get(
            "envoy_cluster_upstream_rq{envoy_cluster_name=\"xds-grpc\",envoy_response_code=\"200\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        get(
            "envoy_cluster_upstream_rq{envoy_cluster_name=\"xds-grpc\",envoy_response_code=\"503\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "envoy_cluster_upstream_rq{envoy_cluster_name=\"ratings\",envoy_response_code=\"200\"}"
        ),
        Some(5.0)
    );
    assert_eq!(
        get(
            "envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"xds-grpc\",envoy_response_code_class=\"2\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        get("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"xds-grpc\"}"),
        Some(4.0)
    );
    assert_eq!(
        get("envoy_cluster_upstream_cx_active{envoy_cluster_name=\"xds-grpc\"}"),
        Some(2.0)
    );
    assert_eq!(
        s.type_of("envoy_cluster_upstream_cx_active").as_deref(),
        Some("gauge")
    );
    assert_eq!(
        get("envoy_listener_downstream_cx_total{envoy_listener_address=\"0.0.0.0_15001\"}"),
        Some(4.0)
    );
    // Envoy writes a series without tags as `name{}` (§7.3); so does the envoy profile.
    assert_eq!(get("envoy_server_uptime{}"), Some(3600.0));
    assert!(s.text.contains("\nenvoy_server_uptime{} 3600\n"));
    assert_eq!(get("envoy_server_memory_allocated{}"), Some(123456.0));

    // Timers: histograms in milliseconds with Envoy's default buckets.
    assert_eq!(
        s.type_of("envoy_cluster_upstream_rq_time").as_deref(),
        Some("histogram")
    );
    let b = |le: &str| {
        get(&format!(
            "envoy_cluster_upstream_rq_time_bucket{{envoy_cluster_name=\"xds-grpc\",le=\"{le}\"}}"
        ))
    };
    assert_eq!(b("0.5"), Some(0.0));
    assert_eq!(b("10"), Some(0.0));
    assert_eq!(b("25"), Some(1.0));
    assert_eq!(b("500"), Some(1.0));
    assert_eq!(b("1000"), Some(2.0));
    assert_eq!(b("3600000"), Some(2.0), "Envoy writes whole bounds in full");
    assert_eq!(b("+Inf"), Some(2.0));
    assert_eq!(
        get("envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"xds-grpc\"}"),
        Some(712.0)
    );
    assert_eq!(
        get("envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"ratings\"}"),
        Some(1.0)
    );
    let buckets = s
        .text
        .lines()
        .filter(|l| {
            l.starts_with("envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"ratings\"")
        })
        .count();
    assert_eq!(buckets, 20, "19 Envoy buckets and +Inf");
}

#[test]
fn dog_statsd_sink_lines_land_in_the_plain_sinks_series() {
    let gw = Gateway::start(&["--profile=envoy"]);
    gw.send_udp(b"envoy.cluster.xds-grpc.upstream_rq_200:1|c");
    gw.send_udp(
        b"envoy.cluster.upstream_rq:2|c|#envoy.cluster_name:xds-grpc,envoy.response_code:200",
    );
    let s = gw.wait_for("two lines", |s| {
        s.count("statsd_exporter_lines_total") >= 2.0
    });
    assert_eq!(
        s.get(
            "envoy_cluster_upstream_rq{envoy_cluster_name=\"xds-grpc\",envoy_response_code=\"200\"}"
        ),
        Some(3.0)
    );
}

#[test]
fn istio_cluster_names_with_pipes_and_dots() {
    // Envoy's default rules cut the cluster name at its first dot...
    let gw = Gateway::start(&["--profile=envoy"]);
    gw.send_udp(
        b"envoy.cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_200:1|c",
    );
    let s = gw.wait_for("line", |s| s.count("statsd_exporter_lines_total") >= 1.0);
    assert_eq!(
        s.get("envoy_cluster_default_svc_cluster_local_upstream_rq{envoy_cluster_name=\"outbound|9080|v1|reviews\",envoy_response_code=\"200\"}"),
        Some(1.0),
        "{}",
        s.text
    );
    drop(gw);

    // ...Istio 1.0's bootstrap rules keep it whole, and the dog_statsd sink's tag values
    // may contain `|` (statsd_exporter would split them apart).
    let gw = Gateway::start(&["--profile=envoy", "--envoy.tag-rules=istio"]);
    gw.send_udp(
        b"envoy.cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_200:1|c",
    );
    gw.send_udp(b"envoy.cluster.upstream_rq:4|c|#cluster_name:outbound|9080|v1|reviews.default.svc.cluster.local,response_code:200");
    let s = gw.wait_for("two lines", |s| {
        s.count("statsd_exporter_lines_total") >= 2.0
    });
    promtool_check(&s.text);
    assert_eq!(
        s.get("envoy_cluster_upstream_rq{cluster_name=\"outbound|9080|v1|reviews.default.svc.cluster.local\",response_code=\"200\"}"),
        Some(5.0),
        "{}",
        s.text
    );
}

#[test]
fn mapping_rules_apply_on_top_of_the_profile() {
    let dir = common::TempDir::new("envoy-map");
    let cfg = dir.0.join("m.yml");
    std::fs::write(
        &cfg,
        "mappings:\n- match: envoy.server.*\n  name: server_${1}\n",
    )
    .unwrap();
    let gw = Gateway::start(&[
        "--profile=envoy",
        &format!("--statsd.mapping-config={}", cfg.display()),
    ]);
    gw.send_udp(b"envoy.server.uptime:10|g\nenvoy.cluster.a.upstream_rq_200:1|c");
    let s = gw.wait_for("two lines", |s| {
        s.count("statsd_exporter_lines_total") >= 2.0
    });
    assert_eq!(
        s.get("server_uptime"),
        Some(10.0),
        "a mapped series is written as statsd_exporter does"
    );
    assert_eq!(
        s.get("envoy_cluster_upstream_rq{envoy_cluster_name=\"a\",envoy_response_code=\"200\"}"),
        Some(1.0)
    );
}

#[test]
fn unknown_tag_rules_are_a_startup_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args([
            "--profile=envoy",
            "--envoy.tag-rules=nonsense",
            "--web.listen-address=127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonsense"));
}

#[test]
fn untagged_envoy_histogram_is_written_as_envoy_does() {
    let gw = Gateway::start(&["--profile=envoy"]);
    gw.send_udp(b"envoy.server.initialization_time_ms:700|ms");
    let s = gw.wait_for("line", |s| s.count("statsd_exporter_lines_total") >= 1.0);
    promtool_check(&s.text);
    for line in [
        "envoy_server_initialization_time_ms_bucket{le=\"0.5\"} 0",
        "envoy_server_initialization_time_ms_bucket{le=\"1000\"} 1",
        "envoy_server_initialization_time_ms_bucket{le=\"3600000\"} 1",
        "envoy_server_initialization_time_ms_bucket{le=\"+Inf\"} 1",
        "envoy_server_initialization_time_ms_sum{} 700",
        "envoy_server_initialization_time_ms_count{} 1",
    ] {
        assert!(
            s.text.lines().any(|l| l == line),
            "{line} missing:\n{}",
            s.text
        );
    }
}

/// A series as the envoy profile writes it: labels sorted by name, `{}` when there are none.
fn envoy_series(name: &str, labels: &[(String, String)]) -> String {
    let labels: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    match series(name, &labels) {
        bare if labels.is_empty() => format!("{bare}{{}}"),
        with_labels => with_labels,
    }
}

/// Every name of Envoy's stat-name corpus (IPv6 listeners among them), sent the way Envoy's
/// statsd sink sends it, comes out under each rule set with exactly the name and labels of
/// Envoy's own tag extraction (checked against the reference algorithm in `envoy_names.rs`):
/// no byte of a name is taken for a tag of a dialect Envoy never sends.
#[test]
fn every_envoy_stat_name_keeps_its_bytes_under_every_rule_set() {
    let mut names = envoy_stat_names();
    assert!(
        names
            .iter()
            .any(|(n, _)| n == "listener.[__]_15001.downstream_cx_total"),
        "the corpus has the IPv4-mapped IPv6 listener"
    );
    for extra in [
        "listener.[2001_db8__1]_443.x",
        "listener.[2001_db8__1]_443.downstream_cx_total",
    ] {
        names.push((extra.to_owned(), "c".to_owned()));
    }
    for set in TagRuleSet::ALL {
        let extractor = TagExtractor::new(set);
        // What each series must read once every line is in: counters add up the names that
        // fold into them, a gauge keeps the last value, a histogram counts observations.
        let mut expected: BTreeMap<String, f64> = BTreeMap::new();
        let mut payload = String::new();
        for (i, (name, kind)) in names.iter().enumerate() {
            let extracted = extractor.extract(name);
            let metric = prometheus_metric_name(&extracted.name);
            let labels: Vec<(String, String)> = extracted
                .tags
                .iter()
                .map(|(k, v)| (prometheus_label_name(k), v.clone()))
                .collect();
            let value = i + 1;
            payload.push_str(&format!("envoy.{name}:{value}|{kind}\n"));
            match kind.as_str() {
                "c" => *expected.entry(envoy_series(&metric, &labels)).or_default() += value as f64,
                "g" => {
                    expected.insert(envoy_series(&metric, &labels), value as f64);
                }
                "ms" => {
                    *expected
                        .entry(envoy_series(&format!("{metric}_count"), &labels))
                        .or_default() += 1.0;
                    *expected
                        .entry(envoy_series(&format!("{metric}_sum"), &labels))
                        .or_default() += value as f64;
                }
                other => panic!("{name}: unknown type {other}"),
            }
        }
        let gw = Gateway::start(&["--profile=envoy", &format!("--envoy.tag-rules={set}")]);
        gw.send_tcp(payload.as_bytes());
        let s = gw.wait_for("every name", |s| {
            s.count("statsd_exporter_lines_total") >= names.len() as f64
        });
        promtool_check(&s.text);
        assert_eq!(s.count("statsd_exporter_tags_total"), 0.0, "{set}");
        assert_eq!(s.count("statsd_exporter_tag_errors_total"), 0.0, "{set}");
        let written: BTreeSet<&String> = s
            .values
            .keys()
            .filter(|k| k.starts_with("envoy_") && !k.contains("_bucket{"))
            .collect();
        for (series, value) in &expected {
            assert_eq!(s.get(series), Some(*value), "{set}: {series}");
        }
        let unexpected: Vec<&&String> = written
            .iter()
            .filter(|k| !expected.contains_key(k.as_str()))
            .collect();
        assert!(unexpected.is_empty(), "{set}: {unexpected:?}");
        for ipv6 in ["[__]_15001", "[2001_db8__1]_443"] {
            let label = if set == TagRuleSet::Istio {
                "listener_address"
            } else {
                "envoy_listener_address"
            };
            assert!(
                s.text.contains(&format!("{label}=\"{ipv6}\"")),
                "{set}: {ipv6}"
            );
        }
    }
}

#[test]
fn envoy_profile_reads_other_tag_dialects_only_when_asked() {
    let line = b"envoy.listener.[__]_15001.downstream_cx_total:2|c";
    let gw = Gateway::start(&["--profile=envoy"]);
    gw.send_udp(line);
    let s = gw.wait_for("line", |s| s.count("statsd_exporter_lines_total") >= 1.0);
    assert_eq!(
        s.get("envoy_listener_downstream_cx_total{envoy_listener_address=\"[__]_15001\"}"),
        Some(2.0),
        "{}",
        s.text
    );
    drop(gw);
    // Asked for explicitly, SignalFX parsing takes `[__]` as a (broken) tag block, as
    // statsd_exporter does.
    let gw = Gateway::start(&["--profile=envoy", "--statsd.parse-signalfx-tags"]);
    gw.send_udp(line);
    let s = gw.wait_for("line", |s| s.count("statsd_exporter_lines_total") >= 1.0);
    assert!(
        s.text.contains("envoy_listener_address=\"_15001\""),
        "{}",
        s.text
    );
    assert!(
        s.count("statsd_exporter_tag_errors_total") >= 1.0,
        "{}",
        s.text
    );
}
