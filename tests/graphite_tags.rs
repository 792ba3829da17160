//! Graphite tags (`name;k=v;k2=v2:1|c`), what Envoy's `graphite_statsd` sink sends: under
//! `--profile=envoy` a stat lands in the same series whichever of Envoy's three statsd sinks
//! sent it; malformed tags are counted like any dialect's; and without the dialect (the
//! default profile) such a name is taken whole, as statsd_exporter takes it.

mod common;

use std::collections::BTreeSet;

use common::{Gateway, promtool_check, series};

/// One Envoy stat as each sink writes it: `statsd` (the full name), `dog_statsd` (the
/// tag-extracted name, DogStatsD tags after the type) and `graphite_statsd` (the
/// tag-extracted name, Graphite tags after the name). Envoy replaces `:` in stat names, so
/// no tag value holds one.
struct SinkLines {
    statsd: &'static str,
    dog_statsd: &'static str,
    graphite_statsd: &'static str,
    /// The series all three must land in.
    series: &'static str,
}

const STATS: &[SinkLines] = &[
    SinkLines {
        statsd: "envoy.cluster.xds-grpc.upstream_rq_200:{v}|c",
        dog_statsd: "envoy.cluster.upstream_rq:{v}|c|#envoy.cluster_name:xds-grpc,envoy.response_code:200",
        graphite_statsd: "envoy.cluster.upstream_rq;envoy.cluster_name=xds-grpc;envoy.response_code=200:{v}|c",
        series: "envoy_cluster_upstream_rq{envoy_cluster_name=\"xds-grpc\",envoy_response_code=\"200\"}",
    },
    // Envoy's IPv6 listener address is a SignalFX block to statsd_exporter; here it is a
    // tag value in every form.
    SinkLines {
        statsd: "envoy.listener.[__]_15001.downstream_cx_total:{v}|c",
        dog_statsd: "envoy.listener.downstream_cx_total:{v}|c|#envoy.listener_address:[__]_15001",
        graphite_statsd: "envoy.listener.downstream_cx_total;envoy.listener_address=[__]_15001:{v}|c",
        series: "envoy_listener_downstream_cx_total{envoy_listener_address=\"[__]_15001\"}",
    },
    SinkLines {
        statsd: "envoy.http.ingress_http.downstream_rq_5xx:{v}|c",
        dog_statsd: "envoy.http.downstream_rq_xx:{v}|c|#envoy.http_conn_manager_prefix:ingress_http,envoy.response_code_class:5",
        graphite_statsd: "envoy.http.downstream_rq_xx;envoy.http_conn_manager_prefix=ingress_http;envoy.response_code_class=5:{v}|c",
        series: "envoy_http_downstream_rq_xx{envoy_http_conn_manager_prefix=\"ingress_http\",envoy_response_code_class=\"5\"}",
    },
    // The tag-extracted name still starts `cluster.`: extracting again would take
    // `circuit_breakers` for the cluster, so a sink's tags must stand for the extraction.
    SinkLines {
        statsd: "envoy.cluster.xds-grpc.circuit_breakers.default.cx_open:{v}|g",
        dog_statsd: "envoy.cluster.circuit_breakers.default.cx_open:{v}|g|#envoy.cluster_name:xds-grpc",
        graphite_statsd: "envoy.cluster.circuit_breakers.default.cx_open;envoy.cluster_name=xds-grpc:{v}|g",
        series: "envoy_cluster_circuit_breakers_default_cx_open{envoy_cluster_name=\"xds-grpc\"}",
    },
    SinkLines {
        statsd: "envoy.server.uptime:{v}|g",
        dog_statsd: "envoy.server.uptime:{v}|g",
        graphite_statsd: "envoy.server.uptime:{v}|g",
        series: "envoy_server_uptime{}",
    },
];

fn line(template: &str, value: u32) -> String {
    template.replace("{v}", &value.to_string())
}

/// The `envoy_` series of a scrape, histogram buckets left out.
fn envoy_series(s: &common::Samples) -> BTreeSet<String> {
    s.values
        .keys()
        .filter(|k| k.starts_with("envoy_"))
        .cloned()
        .collect()
}

#[test]
fn the_statsd_dog_statsd_and_graphite_statsd_sinks_land_in_one_series() {
    let gw = Gateway::start(&["--profile=envoy"]);
    // One datagram per line, as Envoy's UDP sinks send them by default.
    for stat in STATS {
        gw.send_udp(line(stat.statsd, 1).as_bytes());
        gw.send_udp(line(stat.dog_statsd, 2).as_bytes());
        gw.send_udp(line(stat.graphite_statsd, 4).as_bytes());
    }
    let lines = (3 * STATS.len()) as f64;
    let s = gw.wait_for("every sink's lines", |s| {
        s.count("statsd_exporter_lines_total") >= lines
    });
    promtool_check(&s.text);
    let want: BTreeSet<String> = STATS.iter().map(|st| st.series.to_owned()).collect();
    assert_eq!(envoy_series(&s), want, "{}", s.text);
    for stat in STATS {
        // Counters add up all three deltas; the gauge keeps the last value sent.
        let value = if stat.statsd.ends_with("|g") {
            4.0
        } else {
            7.0
        };
        assert_eq!(s.get(stat.series), Some(value), "{}", stat.series);
    }
    assert_eq!(s.count("statsd_exporter_tag_errors_total"), 0.0);
    assert_eq!(
        s.count("statsd_exporter_sample_errors_total{reason=\"malformed_line\"}"),
        0.0
    );
}

#[test]
fn istio_cluster_names_as_graphite_tag_values_keep_their_pipes() {
    // Istio 1.0's rules keep the whole cluster name; in Graphite form the `|`s sit in the
    // name section, before the value's `:`.
    let gw = Gateway::start(&["--profile=envoy", "--envoy.tag-rules=istio"]);
    gw.send_udp(
        b"envoy.cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_200:1|c",
    );
    gw.send_udp(b"envoy.cluster.upstream_rq:2|c|#cluster_name:outbound|9080|v1|reviews.default.svc.cluster.local,response_code:200");
    gw.send_udp(b"envoy.cluster.upstream_rq;cluster_name=outbound|9080|v1|reviews.default.svc.cluster.local;response_code=200:4|c");
    // A timer as the graphite_statsd sink sends it, beside the statsd sink's.
    gw.send_udp(
        b"envoy.cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_time:12|ms",
    );
    gw.send_udp(b"envoy.cluster.upstream_rq_time;cluster_name=outbound|9080|v1|reviews.default.svc.cluster.local:700|ms");
    let s = gw.wait_for("five lines", |s| {
        s.count("statsd_exporter_lines_total") >= 5.0
    });
    promtool_check(&s.text);
    let cluster = "outbound|9080|v1|reviews.default.svc.cluster.local";
    assert_eq!(
        s.get(&series(
            "envoy_cluster_upstream_rq",
            &[("cluster_name", cluster), ("response_code", "200")]
        )),
        Some(7.0),
        "{}",
        s.text
    );
    assert_eq!(
        s.get(&series(
            "envoy_cluster_upstream_rq_time_count",
            &[("cluster_name", cluster)]
        )),
        Some(2.0),
        "{}",
        s.text
    );
    assert_eq!(
        s.get(&series(
            "envoy_cluster_upstream_rq_time_sum",
            &[("cluster_name", cluster)]
        )),
        Some(712.0)
    );
}

#[test]
fn malformed_graphite_tags_are_counted_like_other_tag_errors() {
    let gw = Gateway::start(&["--profile=envoy"]);
    // An emitted sample: its bad tags (no `=`, an empty value, an empty key, an empty tag)
    // are counted and left out of the labels, the good one kept.
    gw.send_udp(b"envoy.foo;bad;k=;=v;;envoy.cluster_name=a:1|c");
    // The DogStatsD form of the same mistakes counts the same.
    gw.send_udp(b"envoy.bar:1|c|#bad,k:,:v,,envoy.cluster_name:a");
    // A dropped line still counts the tags read before it was dropped.
    gw.send_udp(b"envoy.baz;bad;k=v:1");
    // Graphite and DogStatsD tags on one line are two styles.
    gw.send_udp(b"envoy.qux;k=v:1|c|#k2:v2");
    let s = gw.wait_for("four lines", |s| {
        s.count("statsd_exporter_lines_total") >= 4.0
    });
    promtool_check(&s.text);
    assert_eq!(
        s.count("statsd_exporter_tag_errors_total"),
        9.0,
        "4 + 4 + 1: {}",
        s.text
    );
    assert_eq!(
        s.count("statsd_exporter_sample_errors_total{reason=\"not_enough_parts_after_colon\"}"),
        1.0
    );
    assert_eq!(
        s.count("statsd_exporter_sample_errors_total{reason=\"mixed_tagging_styles\"}"),
        1.0
    );
    assert_eq!(s.get("envoy_foo{envoy_cluster_name=\"a\"}"), Some(1.0));
    assert_eq!(s.get("envoy_bar{envoy_cluster_name=\"a\"}"), Some(1.0));
    assert!(!s.text.contains("envoy_baz") && !s.text.contains("envoy_qux"));
}

#[test]
fn without_the_dialect_a_graphite_name_is_taken_whole() {
    // The default profile: statsd_exporter has no Graphite dialect and escapes the whole
    // name; a `,` in it still starts InfluxDB tags.
    let payload = b"foo;a=b:1|c\nbar;k=v;k2=v2:3|g\nbaz;a=b,c=d:2|c";
    let expect_off = |s: &common::Samples| {
        assert_eq!(s.get("foo_a_b"), Some(1.0), "{}", s.text);
        assert_eq!(s.get("bar_k_v_k2_v2"), Some(3.0));
        assert_eq!(s.get("baz_a_b{c=\"d\"}"), Some(2.0));
        assert_eq!(s.count("statsd_exporter_tag_errors_total"), 0.0);
        assert_eq!(
            s.count("statsd_exporter_tags_total"),
            1.0,
            "only InfluxDB's c=d"
        );
    };
    for args in [&[][..], &["--statsd.parse-graphite-tags=false"][..]] {
        let gw = Gateway::start(args);
        gw.send_udp(payload);
        let s = gw.wait_for("three lines", |s| {
            s.count("statsd_exporter_lines_total") >= 3.0
        });
        promtool_check(&s.text);
        expect_off(&s);
    }

    // Asked for, the default profile reads them too.
    let gw = Gateway::start(&["--statsd.parse-graphite-tags"]);
    gw.send_udp(payload);
    let s = gw.wait_for("three lines", |s| {
        s.count("statsd_exporter_lines_total") >= 3.0
    });
    promtool_check(&s.text);
    assert_eq!(s.get("foo{a=\"b\"}"), Some(1.0), "{}", s.text);
    assert_eq!(s.get("bar{k=\"v\",k2=\"v2\"}"), Some(3.0));
    assert_eq!(s.get("baz{a=\"b,c=d\"}"), Some(2.0));

    // And the Envoy profile can be told not to.
    let gw = Gateway::start(&["--profile=envoy", "--no-statsd.parse-graphite-tags"]);
    gw.send_udp(b"envoy.server.uptime;k=v:5|g");
    let s = gw.wait_for("one line", |s| {
        s.count("statsd_exporter_lines_total") >= 1.0
    });
    assert_eq!(s.count("statsd_exporter_tags_total"), 0.0, "{}", s.text);
    assert!(!s.text.contains("k=\"v\""), "{}", s.text);
}
