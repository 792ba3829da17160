//! `--profile=envoy`: a realistic Envoy flush over UDP comes out with the names and labels
//! of Envoy's own /stats/prometheus, and the dog_statsd sink's lines land in the same series.

mod common;

use common::{Gateway, promtool_check};

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
