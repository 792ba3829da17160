//! A real Prometheus server (Debian's `prometheus` package) scrapes a running gateway: the
//! exposition must be accepted whole, and queries must see the values sent over statsd.

mod common;

use std::time::{Duration, Instant};

use common::Gateway;
use common::prometheus::{self, Prometheus};

fn start_prometheus(target: &str) -> Prometheus {
    prometheus::start(&format!(
        "  - job_name: envoy\n    static_configs:\n      - targets: ['{target}']\n"
    ))
}

fn query(p: &Prometheus, q: &str) -> Option<serde_json::Value> {
    p.first_result(q)
}

fn wait_value(p: &Prometheus, q: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = query(p, q)
            && let Some(v) = r["value"][1].as_str().and_then(|s| s.parse::<f64>().ok())
        {
            return v;
        }
        assert!(Instant::now() < deadline, "Prometheus never answered {q}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn real_prometheus_scrapes_and_queries_the_gateway() {
    let gw = Gateway::start(&[]);
    gw.send_udp(b"envoy.cluster.mixer_server.upstream_rq_total:5|c\nenvoy.server.uptime:3600|g");
    gw.send_udp(b"envoy.cluster.mixer_server.upstream_rq_time:12|ms\nenvoy.cluster.mixer_server.upstream_rq_time:30|ms");
    gw.send_udp(b"tagged.requests:3|c|#route:/api,code:200");
    gw.wait_for("lines", |s| s.count("statsd_exporter_lines_total") >= 5.0);
    let prom = start_prometheus(&gw.http.to_string());
    assert_eq!(wait_value(&prom, "up{job=\"envoy\"}"), 1.0);
    assert_eq!(
        wait_value(&prom, "envoy_cluster_mixer_server_upstream_rq_total"),
        5.0
    );
    assert_eq!(wait_value(&prom, "envoy_server_uptime"), 3600.0);
    assert_eq!(
        wait_value(&prom, "envoy_cluster_mixer_server_upstream_rq_time_count"),
        2.0
    );
    assert_eq!(
        wait_value(&prom, "tagged_requests{route=\"/api\",code=\"200\"}"),
        3.0
    );
    assert!(wait_value(&prom, "statsd_exporter_lines_total") >= 5.0);
    // Everything the gateway exposed was ingested: no sample rejected by the scrape.
    let scraped = wait_value(&prom, "scrape_samples_scraped{job=\"envoy\"}");
    let added = wait_value(
        &prom,
        "scrape_samples_post_metric_relabeling{job=\"envoy\"}",
    );
    assert_eq!(scraped, added);
    assert!(scraped > 20.0, "self-metrics and user series: {scraped}");
}
