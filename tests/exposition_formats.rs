//! `/metrics` in every format a scraper can negotiate: text 0.0.4 (the default), OpenMetrics
//! 1.0 text and protobuf, checked by the real `promtool` and by a real Prometheus scraping
//! each format.

mod common;

use std::collections::BTreeMap;
use std::io::Read as _;

use prost::Message as _;
use statsgate::expose::protobuf as pb;
use std::time::Duration;

use common::prometheus::{self, Prometheus};
use common::{Gateway, Samples, TempDir, promtool_check, series};

/// What Prometheus 2.x sends by default: OpenMetrics preferred.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const MAPPING: &str = r#"
mappings:
- match: "req.*"
  name: "requests"
  help: "Requests, by route \\ path"
  labels:
    route: "$1"
- match: "lat.*"
  observer_type: histogram
  histogram_options:
    buckets: [0.01, 0.1, 1]
    # Classic buckets only (a factor of 1 turns native buckets off, as in statsd_exporter).
    native_histogram_bucket_factor: 1
  name: "latency_seconds"
  labels:
    route: "$1"
- match: "size.*"
  observer_type: summary
  name: "size_bytes"
  labels:
    route: "$1"
"#;

/// Native histograms: the defaults (factor 1.1, so schema 3; 256 buckets at most) with
/// classic buckets alongside, and one allowed only 10 buckets.
const NATIVE_RULES: &str = r#"
- match: "nat.*"
  observer_type: histogram
  histogram_options:
    buckets: [0.05, 0.1]
  name: "native_seconds"
  labels:
    route: "$1"
- match: "bounded"
  observer_type: histogram
  histogram_options:
    native_histogram_max_buckets: 10
  name: "bounded"
"#;

/// Counters (one named without `_total`, one with), gauges, a histogram, a summary, label
/// values with every escape the text formats know.
const TRAFFIC: &[&[u8]] = &[
    b"req.api:3|c|#path:C:\\dir,quote:say \"hi\"\nreq.web:2|c\nbytes_sent_total:10|c",
    b"temp:21.5|g|#room:a\\b\ntemp:-3|g|#room:cold",
    b"lat.api:5|ms\nlat.api:50|ms\nlat.api:500|ms\nlat.api:5000|ms",
    b"size.api:100|h\nsize.api:300|h",
];

/// Scrapes `/metrics` with `accept`; returns (Content-Type, body).
fn scrape(gw: &Gateway, accept: Option<&str>, gzip: bool) -> (String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let mut req = agent.get(&format!("http://{}/metrics", gw.http));
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    if gzip {
        req = req.header("Accept-Encoding", "gzip");
    }
    let mut resp = req.call().expect("scrape");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = header("content-type");
    let encoding = header("content-encoding");
    assert_eq!(encoding == "gzip", gzip, "Content-Encoding {encoding:?}");
    let raw = resp.body_mut().read_to_vec().expect("body");
    let body = if gzip {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .expect("gzip body");
        text
    } else {
        String::from_utf8(raw).expect("utf-8 body")
    };
    (content_type, body)
}

/// A rule whose HELP has a double quote: OpenMetrics must escape it (`\"`), and text
/// 0.0.4 must not (its parser, promtool's, refuses `\"` in HELP).
const QUOTED_HELP_RULE: &str = r#"
- match: "quoted.*"
  name: "quoted"
  help: "Say \"hi\""
"#;

fn start_fed_gateway(extra_rules: &str) -> (Gateway, TempDir) {
    let dir = TempDir::new("expo");
    let mapping = dir.0.join("mapping.yml");
    std::fs::write(&mapping, format!("{MAPPING}{extra_rules}")).unwrap();
    let gw = Gateway::start(&[&format!("--statsd.mapping-config={}", mapping.display())]);
    for payload in TRAFFIC {
        gw.send_udp(payload);
    }
    gw.wait_for("all lines", |s| {
        s.count("statsd_exporter_lines_total") >= 11.0
    });
    (gw, dir)
}

/// The user's samples of a scrape (self-metrics move between scrapes).
fn user_samples(s: &Samples) -> Vec<(String, f64)> {
    s.values
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("process_")
                && !k.starts_with("statsd_exporter_")
                && !k.starts_with("statsd_metric_mapper_")
                && !k.starts_with("statsgate_")
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[test]
fn text_is_the_default_and_openmetrics_is_negotiated() {
    let (gw, _dir) = start_fed_gateway("");

    let (ct, text) = scrape(&gw, None, false);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    promtool_check(&text);
    assert!(!text.contains("# EOF"), "{text}");
    let (ct, _) = scrape(&gw, Some("*/*"), false);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");

    let (ct, om) = scrape(&gw, Some(PROMETHEUS_ACCEPT), false);
    assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
    assert!(om.ends_with("\n# EOF\n"), "{om}");
    assert_eq!(om.matches("# EOF").count(), 1);
    // promtool reads text 0.0.4 only. OpenMetrics without a `"` in a HELP text is close
    // enough for it to parse, which is what `promtool_check` asserts (its lint findings are
    // about the `_total` samples it takes for untyped families). The real Prometheus test
    // below reads OpenMetrics with its own parser.
    promtool_check(&om);

    // A counter named `x_total` is an OpenMetrics counter, family `x`, sample unchanged; a
    // counter named otherwise keeps its name, untyped (renaming it `requests_total` would
    // split the series in Prometheus, which prefers OpenMetrics).
    assert!(
        om.contains("# HELP requests Requests, by route \\\\ path\nrequests{"),
        "{om}"
    );
    assert!(!om.contains("# TYPE requests"), "{om}");
    assert!(om.contains("# TYPE bytes_sent counter\n"), "{om}");
    assert!(om.contains("\nbytes_sent_total 10\n"), "{om}");
    assert!(
        om.contains(&format!(
            "\n{} 3\n",
            series(
                "requests",
                &[
                    ("path", "C:\\dir"),
                    ("quote", "say \"hi\""),
                    ("route", "api")
                ]
            )
        )),
        "{om}"
    );
    assert!(om.contains("\nrequests{route=\"web\"} 2\n"), "{om}");
    assert!(
        om.contains("# TYPE process_cpu_seconds counter\n# UNIT process_cpu_seconds seconds\n"),
        "{om}"
    );
    assert!(
        om.contains("# TYPE statsd_exporter_lines counter\n"),
        "{om}"
    );
    assert!(om.contains("\nstatsd_exporter_lines_total "), "{om}");
    // Histograms and summaries as in text, `le` spelt the same so series keep their identity.
    for line in [
        "# TYPE latency_seconds histogram",
        "latency_seconds_bucket{route=\"api\",le=\"0.01\"} 1",
        "latency_seconds_bucket{route=\"api\",le=\"1\"} 3",
        "latency_seconds_bucket{route=\"api\",le=\"+Inf\"} 4",
        "latency_seconds_sum{route=\"api\"} 5.555",
        "latency_seconds_count{route=\"api\"} 4",
        "# TYPE size_bytes summary",
        "size_bytes_count{route=\"api\"} 2",
        "size_bytes_sum{route=\"api\"} 400",
        "temp{room=\"a\\\\b\"} 21.5",
    ] {
        assert!(om.contains(&format!("\n{line}\n")), "{line} in\n{om}");
    }
    // Every sample has the same name, labels and value in both formats.
    assert_eq!(
        user_samples(&Samples::parse(&text)),
        user_samples(&Samples::parse(&om))
    );
    assert!(user_samples(&Samples::parse(&om)).len() >= 15);

    // Compression is negotiated as before, whatever the format.
    let (ct, gz) = scrape(&gw, Some(PROMETHEUS_ACCEPT), true);
    assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
    assert!(gz.ends_with("\n# EOF\n"));
    let (ct, gz) = scrape(&gw, None, true);
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    promtool_check(&gz);
}

fn query(p: &Prometheus, q: &str) -> Option<f64> {
    p.first_value(q)
}

/// A family's (type, unit) as Prometheus' metadata API reports it.
fn metadata(p: &Prometheus, family: &str) -> Option<(String, String)> {
    let v = p
        .api(
            "/api/v1/metadata",
            &[("metric", family)],
            Duration::from_secs(2),
        )
        .ok()?;
    let m = v["data"][family].as_array()?.first()?.clone();
    Some((
        m["type"].as_str()?.to_string(),
        m["unit"].as_str()?.to_string(),
    ))
}

fn wait_value(p: &Prometheus, q: &str) -> f64 {
    p.wait_value(q)
}

/// Prometheus 2.x asks for OpenMetrics first: its strict parser must take the whole
/// exposition, and queries see the statsd values.
#[test]
fn real_prometheus_reads_openmetrics() {
    let (gw, _dir) = start_fed_gateway(QUOTED_HELP_RULE);
    gw.send_udp(b"quoted.x:1|g");
    gw.wait_for("quoted", |s| s.get("quoted") == Some(1.0));
    let (_, om) = scrape(&gw, Some(PROMETHEUS_ACCEPT), false);
    assert!(om.contains("\n# HELP quoted Say \\\"hi\\\"\n"), "{om}");
    let (_, text) = scrape(&gw, None, false);
    assert!(text.contains("\n# HELP quoted Say \"hi\"\n"), "{text}");
    let prom = prometheus::start(&format!(
        "  - job_name: om\n    static_configs:\n      - targets: ['{}']\n",
        gw.http
    ));
    assert_eq!(wait_value(&prom, "up{job=\"om\"}"), 1.0);
    assert_eq!(wait_value(&prom, "requests{route=\"web\"}"), 2.0);
    assert_eq!(wait_value(&prom, "bytes_sent_total"), 10.0);
    assert_eq!(wait_value(&prom, "quoted"), 1.0);
    assert_eq!(wait_value(&prom, "temp{room=\"a\\\\b\"}"), 21.5);
    assert_eq!(
        wait_value(&prom, "latency_seconds_bucket{route=\"api\",le=\"1\"}"),
        3.0
    );
    assert_eq!(wait_value(&prom, "size_bytes_count{route=\"api\"}"), 2.0);
    // The metadata shows OpenMetrics was read: the family is named without `_total`, and
    // units came through.
    assert_eq!(
        metadata(&prom, "bytes_sent"),
        Some(("counter".to_string(), String::new()))
    );
    assert_eq!(
        metadata(&prom, "requests"),
        Some(("unknown".to_string(), String::new()))
    );
    assert_eq!(
        metadata(&prom, "process_cpu_seconds"),
        Some(("counter".to_string(), "seconds".to_string()))
    );
    // Nothing the gateway exposed was rejected by the OpenMetrics parser.
    let scraped = wait_value(&prom, "scrape_samples_scraped{job=\"om\"}");
    let added = wait_value(&prom, "scrape_samples_post_metric_relabeling{job=\"om\"}");
    assert_eq!(scraped, added);
    assert!(scraped > 30.0, "{scraped}");
}

/// A store large enough to be rendered by several threads and gzipped in pieces, scraped
/// by a real Prometheus (Go's gzip reader, OpenMetrics parser): every series arrives, and
/// the scrape adds every sample it reads.
#[test]
fn real_prometheus_reads_a_scrape_gzipped_in_pieces() {
    let gw = Gateway::start(&["--web.render-threads=3"]);
    let families = 7_000u32;
    let mut batch = String::new();
    for f in 0..families {
        batch.push_str(&format!("pieces.f{f:05}:{}|c|#k:v{}\n", f % 7 + 1, f % 3));
        if batch.len() > 1200 {
            gw.send_tcp(batch.as_bytes());
            batch.clear();
        }
    }
    gw.send_tcp(batch.as_bytes());
    gw.wait_for("every line", |s| {
        s.count("statsd_exporter_lines_total") >= f64::from(families)
    });
    let prom = prometheus::start(&format!(
        "  - job_name: pieces\n    static_configs:\n      - targets: ['{}']\n",
        gw.http
    ));
    assert_eq!(wait_value(&prom, "up{job=\"pieces\"}"), 1.0);
    assert_eq!(
        wait_value(&prom, "count({__name__=~\"pieces_f.*\"})"),
        f64::from(families)
    );
    let want: u32 = (0..families).map(|f| f % 7 + 1).sum();
    assert_eq!(
        wait_value(&prom, "sum({__name__=~\"pieces_f.*\"})"),
        f64::from(want)
    );
    assert_eq!(wait_value(&prom, "pieces_f06999{k=\"v0\"}"), 7.0);
    let scraped = wait_value(&prom, "scrape_samples_scraped{job=\"pieces\"}");
    let added = wait_value(
        &prom,
        "scrape_samples_post_metric_relabeling{job=\"pieces\"}",
    );
    assert_eq!(scraped, added);
    assert!(scraped > f64::from(families), "{scraped}");
}

/// What Prometheus 2.x sends with `--enable-feature=native-histograms`: protobuf first.
const PROMETHEUS_PROTOBUF_ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Scrapes `/metrics` as Prometheus does with native histograms on, and decodes the
/// length-delimited messages.
fn scrape_protobuf(gw: &Gateway) -> Vec<pb::MetricFamily> {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let mut resp = agent
        .get(&format!("http://{}/metrics", gw.http))
        .header("Accept", PROMETHEUS_PROTOBUF_ACCEPT)
        .call()
        .expect("scrape");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some(PROTOBUF_CONTENT_TYPE)
    );
    let raw = resp.body_mut().read_to_vec().expect("body");
    let mut rest = &raw[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        out.push(
            pb::MetricFamily::decode_length_delimited(&mut rest).expect("a delimited MetricFamily"),
        );
    }
    out
}

fn label_text(labels: &[pb::LabelPair], bound: Option<(&str, f64)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|l| {
            format!(
                "{}=\"{}\"",
                l.name(),
                l.value()
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    if let Some((name, v)) = bound {
        let v = if v == f64::INFINITY {
            "+Inf".to_string()
        } else {
            v.to_string()
        };
        parts.push(format!("{name}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// The samples the text format would show for these messages.
fn protobuf_samples(families: &[pb::MetricFamily]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for f in families {
        let name = f.name();
        for m in &f.metric {
            let l = |bound| label_text(&m.label, bound);
            match f.r#type() {
                pb::MetricType::Counter => {
                    out.insert(
                        format!("{name}{}", l(None)),
                        m.counter.as_ref().unwrap().value(),
                    );
                }
                pb::MetricType::Gauge => {
                    out.insert(
                        format!("{name}{}", l(None)),
                        m.gauge.as_ref().unwrap().value(),
                    );
                }
                pb::MetricType::Summary => {
                    let s = m.summary.as_ref().unwrap();
                    for q in &s.quantile {
                        out.insert(
                            format!("{name}{}", l(Some(("quantile", q.quantile())))),
                            q.value(),
                        );
                    }
                    out.insert(format!("{name}_sum{}", l(None)), s.sample_sum());
                    out.insert(format!("{name}_count{}", l(None)), s.sample_count() as f64);
                }
                pb::MetricType::Histogram => {
                    let h = m.histogram.as_ref().unwrap();
                    for b in &h.bucket {
                        out.insert(
                            format!("{name}_bucket{}", l(Some(("le", b.upper_bound())))),
                            b.cumulative_count() as f64,
                        );
                    }
                    out.insert(
                        format!("{name}_bucket{}", l(Some(("le", f64::INFINITY)))),
                        h.sample_count() as f64,
                    );
                    out.insert(format!("{name}_sum{}", l(None)), h.sample_sum());
                    out.insert(format!("{name}_count{}", l(None)), h.sample_count() as f64);
                }
                other => panic!("unexpected type {other:?} for {name}"),
            }
        }
    }
    out
}

#[test]
fn protobuf_carries_what_text_shows() {
    let (gw, _dir) = start_fed_gateway("");
    let families = scrape_protobuf(&gw);
    let (_, text) = scrape(&gw, None, false);
    let text = Samples::parse(&text);
    let proto = Samples {
        text: String::new(),
        values: protobuf_samples(&families),
    };
    assert_eq!(user_samples(&proto), user_samples(&text));
    assert!(user_samples(&proto).len() >= 15);
    // Types, HELP and the gateway's own metrics come through too; families are sorted.
    let family = |n: &str| {
        families
            .iter()
            .find(|f| f.name() == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(family("requests").r#type(), pb::MetricType::Counter);
    assert_eq!(family("requests").help(), "Requests, by route \\ path");
    assert_eq!(
        family("latency_seconds").r#type(),
        pb::MetricType::Histogram
    );
    assert_eq!(family("size_bytes").r#type(), pb::MetricType::Summary);
    assert_eq!(family("temp").r#type(), pb::MetricType::Gauge);
    assert_eq!(
        family("statsd_exporter_lines_total").r#type(),
        pb::MetricType::Counter
    );
    assert!(
        family("statsd_exporter_lines_total").metric[0]
            .counter
            .as_ref()
            .unwrap()
            .value()
            >= 11.0
    );
    assert_eq!(
        family("process_cpu_seconds_total").r#type(),
        pb::MetricType::Counter
    );
    let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "one message per family, sorted by name");
}

/// Prometheus with native histograms on asks for protobuf: it must read the whole
/// exposition, and queries see the statsd values.
#[test]
fn real_prometheus_reads_protobuf() {
    let (gw, _dir) = start_fed_gateway("");
    let prom = prometheus::start_with_args(
        &format!(
            "  - job_name: pb\n    static_configs:\n      - targets: ['{}']\n",
            gw.http
        ),
        &["--enable-feature=native-histograms"],
    );
    assert_eq!(wait_value(&prom, "up{job=\"pb\"}"), 1.0);
    assert_eq!(wait_value(&prom, "requests{route=\"web\"}"), 2.0);
    assert_eq!(
        wait_value(
            &prom,
            "requests{path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\"}"
        ),
        3.0
    );
    assert_eq!(wait_value(&prom, "temp{room=\"a\\\\b\"}"), 21.5);
    assert_eq!(wait_value(&prom, "size_bytes_sum{route=\"api\"}"), 400.0);
    assert_eq!(
        wait_value(&prom, "size_bytes{route=\"api\",quantile=\"0.5\"}"),
        100.0
    );
    // Protobuf carries bounds as doubles, and Prometheus 2.x's protobuf parser spells them
    // as OpenMetrics' canonical floats (`1.0`), as it does for every client_golang target.
    assert_eq!(
        wait_value(&prom, "latency_seconds_bucket{route=\"api\",le=\"1.0\"}"),
        3.0
    );
    assert_eq!(wait_value(&prom, "count(latency_seconds_bucket)"), 4.0);
    // Metadata from protobuf: a counter is a counter, whatever its name.
    assert_eq!(
        metadata(&prom, "requests"),
        Some(("counter".to_string(), String::new()))
    );
    let scraped = wait_value(&prom, "scrape_samples_scraped{job=\"pb\"}");
    let added = wait_value(&prom, "scrape_samples_post_metric_relabeling{job=\"pb\"}");
    assert_eq!(scraped, added);
    assert!(scraped > 30.0, "{scraped}");
}

/// Sends `nat.api` 1..=100 ms (0.001..0.1 s after the timer's ms-to-seconds scaling) and
/// `bounded` values spread over twelve decades.
fn feed_native(gw: &Gateway) {
    for chunk in (1..=100).collect::<Vec<u32>>().chunks(20) {
        let lines: Vec<String> = chunk.iter().map(|i| format!("nat.api:{i}|ms")).collect();
        gw.send_udp(lines.join("\n").as_bytes());
    }
    let lines: Vec<String> = (0..60)
        .map(|i| format!("bounded:{}|h", 1e-6 * 1.6f64.powi(i)))
        .collect();
    for chunk in lines.chunks(20) {
        gw.send_udp(chunk.join("\n").as_bytes());
    }
    gw.wait_for("native observations", |s| {
        s.get("native_seconds_count{route=\"api\"}") == Some(100.0)
            && s.get("bounded_count") == Some(60.0)
    });
}

#[test]
fn native_histograms_go_out_in_protobuf_only() {
    let (gw, _dir) = start_fed_gateway(NATIVE_RULES);
    feed_native(&gw);
    let families = scrape_protobuf(&gw);
    let family = |n: &str| {
        families
            .iter()
            .find(|f| f.name() == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    let h = family("native_seconds").metric[0]
        .histogram
        .clone()
        .unwrap();
    // Classic buckets alongside, as configured.
    let classic: Vec<(f64, u64)> = h
        .bucket
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    assert_eq!(classic, [(0.05, 50), (0.1, 100)]);
    assert_eq!(h.sample_count(), 100);
    assert_eq!(h.schema(), 3);
    assert_eq!(h.zero_threshold(), 2.938735877055719e-39);
    assert_eq!(h.zero_count(), 0);
    assert!(h.negative_span.is_empty());
    // The deltas add up to every observation; the first bucket is the one 0.001 falls in:
    // frexp(0.001) = (0.512, -9), first bound >= 0.512 is #1, so 1 + (-10) * 8 = -79.
    let mut count = 0i64;
    let mut total = 0i64;
    for d in &h.positive_delta {
        count += d;
        total += count;
    }
    assert_eq!(total, 100);
    assert_eq!(h.positive_span[0].offset(), -79);
    let lengths: u32 = h.positive_span.iter().map(|s| s.length()).sum();
    assert_eq!(lengths as usize, h.positive_delta.len());
    // Sixty values over twelve decades with room for ten buckets: the resolution was halved
    // until they fit (memory stays bounded whatever arrives).
    let b = family("bounded").metric[0].histogram.clone().unwrap();
    assert_eq!(b.sample_count(), 60);
    assert!(b.schema() < 3, "resolution halved: schema {}", b.schema());
    let populated = b.positive_delta.len();
    assert!(populated <= 11, "{populated} buckets for a limit of 10");
    // A classic-only histogram has no native fields at all.
    let c = family("latency_seconds").metric[0]
        .histogram
        .clone()
        .unwrap();
    assert_eq!(c.schema, None);
    assert_eq!(c.zero_threshold, None);
    // The text formats keep the classic buckets only.
    let (_, text) = scrape(&gw, None, false);
    assert!(
        text.contains("\nnative_seconds_bucket{route=\"api\",le=\"0.05\"} 50\n"),
        "{text}"
    );
    let (_, om) = scrape(&gw, Some(PROMETHEUS_ACCEPT), false);
    assert!(
        om.contains("\nnative_seconds_bucket{route=\"api\",le=\"+Inf\"} 100\n"),
        "{om}"
    );
}

/// A real Prometheus with native histograms on scrapes protobuf and answers
/// `histogram_quantile` over the native histogram within its bucket's relative error.
#[test]
fn real_prometheus_quantiles_over_native_histograms() {
    let (gw, _dir) = start_fed_gateway(NATIVE_RULES);
    feed_native(&gw);
    let prom = prometheus::start_with_args(
        &format!(
            "  - job_name: native\n    static_configs:\n      - targets: ['{}']\n",
            gw.http
        ),
        &["--enable-feature=native-histograms"],
    );
    assert_eq!(wait_value(&prom, "up{job=\"native\"}"), 1.0);
    assert_eq!(
        wait_value(&prom, "histogram_count(native_seconds{route=\"api\"})"),
        100.0
    );
    let sum = wait_value(&prom, "histogram_sum(native_seconds{route=\"api\"})");
    assert!((sum - 5.05).abs() < 1e-9, "{sum}");
    // The 90th of 1..=100 ms is 90 ms; a schema 3 bucket spans a factor of 2^(1/8).
    let factor = 2f64.powf(1.0 / 8.0);
    for q in [
        "histogram_quantile(0.9, native_seconds{route=\"api\"})",
        "histogram_quantile(0.9, sum(native_seconds))",
    ] {
        let p90 = wait_value(&prom, q);
        assert!(
            p90 > 0.09 / factor && p90 < 0.09 * factor,
            "{q} = {p90}, want 0.09 within a factor of {factor}"
        );
    }
    // Only the native histogram was ingested: no classic bucket series under its name.
    assert!(query(&prom, "native_seconds_bucket").is_none());
    let scraped = wait_value(&prom, "scrape_samples_scraped{job=\"native\"}");
    let added = wait_value(
        &prom,
        "scrape_samples_post_metric_relabeling{job=\"native\"}",
    );
    assert_eq!(scraped, added);
}
