//! `--remote-write.url`: the gateway pushes what `/metrics` shows to real receivers (Debian's
//! `prometheus` and `victoria-metrics`, started here on 127.0.0.1 with storage in a temp
//! dir) and to a scripted in-test receiver for the failure paths: retries with backoff on
//! 5xx/429, no retry on 400, counted drops, nothing sent twice, one last push at shutdown.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::receivers::{Receiver, ScriptedReceiver, make_certificates, same_values, scraped};
use common::{Gateway, TempDir};

/// A histogram and a summary beside a counter and a gauge.
const MAPPING: &str = "mappings:\n\
- match: rw.latency\n  name: rw_latency\n  observer_type: histogram\n  histogram_options: { buckets: [0.005, 0.05, 0.5] }\n\
- match: rw.size\n  name: rw_size\n  observer_type: summary\n\
- match: rw.brief\n  name: rw_brief\n  ttl: 1s\n";

/// Longest wait for a receiver to show what the gateway shows.
const RECEIVE_WAIT: Duration = Duration::from_secs(60);

fn mapping_file() -> (TempDir, String) {
    let dir = TempDir::new("rw-mapping");
    let path = dir.0.join("mapping.yml");
    std::fs::write(&path, MAPPING).unwrap();
    let flag = format!("--statsd.mapping-config={}", path.display());
    (dir, flag)
}

fn send_traffic(gw: &Gateway) {
    gw.send_udp(
        b"rw.requests:3|c|#route:/api,code:200\nrw.requests:4|c|#route:/api,code:200\n\
          rw.requests:1|c|#route:/q\"uo\\te,code:500\nrw.temp:21.5|g|#room:a\n\
          rw.latency:12|ms|#zz:last\nrw.latency:300|ms|#zz:last\nrw.latency:2|ms|#zz:last\n\
          rw.size:7|ms|#k:v\nrw.size:9|ms|#k:v\nrw.size:1|ms|#k:v",
    );
}

/// Waits until the gateway shows every family of `sent` rounds of [`send_traffic`], and
/// returns its samples whose names start with `rw_`.
fn gateway_samples(gw: &Gateway, sent: f64) -> BTreeMap<String, f64> {
    let s = gw.wait_for("the rw_ families", |s| {
        s.count("rw_requests{code=\"200\",route=\"/api\"}") == 7.0 * sent
            && s.get("rw_temp{room=\"a\"}").is_some()
            && s.count("rw_latency_count{zz=\"last\"}") == 3.0 * sent
            && s.count("rw_size_count{k=\"v\"}") == 3.0 * sent
    });
    scraped(&s.text, "rw_")
}

/// Waits until the receiver's latest values of every `rw_` series equal `want`.
fn wait_receiver_matches(r: &Receiver, want: &BTreeMap<String, f64>) {
    let deadline = Instant::now() + RECEIVE_WAIT;
    let mut last = None;
    loop {
        let got = r.query("{__name__=~\"rw_.*\"}");
        if let Some(g) = &got
            && same_values(g, want)
        {
            return;
        }
        if got.is_some() {
            last = got;
        }
        assert!(
            Instant::now() < deadline,
            "the receiver never showed the gateway's values\nwant: {want:#?}\ngot: {last:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn check_families(want: &BTreeMap<String, f64>) {
    // The comparison covers every kind of family, expanded as the exposition expands it.
    for key in [
        "rw_requests{code=\"200\",route=\"/api\"}",
        "rw_requests{code=\"500\",route=\"/q\\\"uo\\\\te\"}",
        "rw_temp{room=\"a\"}",
        "rw_latency_bucket{le=\"0.005\",zz=\"last\"}",
        "rw_latency_bucket{le=\"+Inf\",zz=\"last\"}",
        "rw_latency_sum{zz=\"last\"}",
        "rw_latency_count{zz=\"last\"}",
        "rw_size{k=\"v\",quantile=\"0.5\"}",
        "rw_size_sum{k=\"v\"}",
        "rw_size_count{k=\"v\"}",
    ] {
        assert!(want.contains_key(key), "{key} missing from {want:#?}");
    }
    assert_eq!(want["rw_requests{code=\"200\",route=\"/api\"}"], 7.0);
    assert_eq!(want["rw_latency_bucket{le=\"0.005\",zz=\"last\"}"], 1.0);
    assert_eq!(want["rw_size{k=\"v\",quantile=\"0.5\"}"], 0.007);
}

/// A remote_write self-metric of `url`; panics when the scrape lacks it (they are all
/// registered at start, so a missing one is a bug, not a zero).
fn rw(s: &common::Samples, family: &str, url: &str) -> f64 {
    let key = format!("statsgate_remote_write_{family}{{url=\"{url}\"}}");
    s.get(&key)
        .unwrap_or_else(|| panic!("{key} missing from the scrape:\n{}", s.text))
}

/// `statsgate_remote_write_failed_samples_total` of `url` for `reason`.
fn dropped(s: &common::Samples, reason: &str, url: &str) -> f64 {
    let key =
        format!("statsgate_remote_write_failed_samples_total{{reason=\"{reason}\",url=\"{url}\"}}");
    s.get(&key)
        .unwrap_or_else(|| panic!("{key} missing from the scrape:\n{}", s.text))
}

fn gateway_for(url: &str, extra: &[&str]) -> (Gateway, TempDir) {
    let (dir, mapping) = mapping_file();
    let mut args = vec![
        mapping,
        format!("--remote-write.url={url}"),
        "--remote-write.min-backoff=50ms".to_string(),
        "--remote-write.max-backoff=500ms".to_string(),
    ];
    if !extra
        .iter()
        .any(|a| a.starts_with("--remote-write.interval"))
    {
        args.push("--remote-write.interval=300ms".to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    (Gateway::start(&refs), dir)
}

#[test]
fn prometheus_receives_what_metrics_shows() {
    let prom = Receiver::prometheus();
    let (gw, _dir) = gateway_for(&prom.write_url(), &[]);
    send_traffic(&gw);
    let want = gateway_samples(&gw, 1.0);
    check_families(&want);
    wait_receiver_matches(&prom, &want);
    let s = gw.wait_for("pushes counted", |s| {
        rw(s, "samples_total", &prom.write_url()) > 0.0
    });
    assert_eq!(
        dropped(&s, "rejected", &prom.write_url()),
        0.0,
        "Prometheus refused samples (out of order or duplicate?):\n{}",
        gw.log_text()
    );
    // The gateway's own metrics travel too, as /metrics shows them.
    assert!(
        prom.query("statsd_exporter_lines_total")
            .is_some_and(|m| m.values().any(|v| *v >= 10.0))
    );
}

#[test]
fn victoria_metrics_receives_what_metrics_shows() {
    let vm = Receiver::victoria_metrics(&[], false);
    let (gw, _dir) = gateway_for(&vm.write_url(), &[]);
    send_traffic(&gw);
    let want = gateway_samples(&gw, 1.0);
    check_families(&want);
    wait_receiver_matches(&vm, &want);
}

#[test]
fn a_receiver_down_for_a_while_gets_the_data_after_backoff_once() {
    let mut vm = Receiver::victoria_metrics(&[], false);
    let url = vm.write_url();
    let (gw, _dir) = gateway_for(&url, &[]);
    send_traffic(&gw);
    let want = gateway_samples(&gw, 1.0);
    wait_receiver_matches(&vm, &want);

    vm.stop();
    let down_from = now_ms();
    send_traffic(&gw);
    let want = gateway_samples(&gw, 2.0);
    // Down across several pushes of the new values, which queue up meanwhile.
    std::thread::sleep(Duration::from_millis(1500));
    gw.wait_for("retries while the receiver is down", |s| {
        rw(s, "retries_total", &url) >= 3.0
    });
    let down_until = now_ms();
    vm.restart();
    wait_receiver_matches(&vm, &want);

    let raw = vm.raw_samples("rw_requests", "1h");
    let series = &raw["rw_requests{code=\"200\",route=\"/api\"}"];
    let stamps: Vec<i64> = series.iter().map(|(t, _)| *t).collect();
    let unique: HashSet<i64> = stamps.iter().copied().collect();
    assert_eq!(
        unique.len(),
        stamps.len(),
        "a timestamp stored twice: {series:?}"
    );
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "out of order: {series:?}"
    );
    // What was pushed while it was down arrived later, in order.
    assert!(
        series
            .iter()
            .any(|(t, v)| *t > down_from && *t < down_until && *v == 14.0),
        "no sample from the outage ({down_from}..{down_until}): {series:?}"
    );
    assert!(series.iter().all(|(_, v)| *v == 7.0 || *v == 14.0));
    let s = gw.scrape();
    let s = common::Samples::parse(&s);
    assert_eq!(
        dropped(&s, "queue_full", &url) + dropped(&s, "rejected", &url),
        0.0
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn a_400_gets_no_retry_and_the_drop_is_counted() {
    let rx = ScriptedReceiver::start(&[], 400);
    let url = rx.write_url();
    let (gw, _dir) = gateway_for(&url, &[]);
    send_traffic(&gw);
    let got = rx.wait_for("three refused pushes", Duration::from_secs(20), |r| {
        r.len() >= 3
    });
    let s = gw.wait_for("the drops counted", |s| {
        dropped(s, "rejected", &url) >= got.iter().map(|r| r.samples.len()).sum::<usize>() as f64
    });
    assert_eq!(rw(&s, "retries_total", &url), 0.0);
    assert_eq!(rw(&s, "samples_total", &url), 0.0);
    // No retry: every request carried a new snapshot (no sample sent twice).
    let all = rx.received();
    let mut seen = HashSet::new();
    for r in &all {
        for (k, _, t) in &r.samples {
            assert!(seen.insert((k.clone(), *t)), "{k} at {t} sent twice");
        }
    }
    let dropped = dropped(&s, "rejected", &url);
    assert!(dropped >= 10.0, "{dropped}");
}

#[test]
fn server_errors_and_429_are_retried_with_backoff_and_nothing_counts_twice() {
    let rx = ScriptedReceiver::start(&[500, 503, 429, 429], 204);
    let url = rx.write_url();
    let (gw, _dir) = gateway_for(&url, &["--remote-write.concurrency=1"]);
    send_traffic(&gw);
    let want = gateway_samples(&gw, 1.0);
    let key = "rw_requests{code=\"200\",route=\"/api\"}";
    let got = rx.wait_for("the counter accepted", RECEIVE_WAIT, |r| {
        r.iter()
            .filter(|r| r.status == 204)
            .any(|r| r.samples.iter().any(|(k, v, _)| k == key && *v == 7.0))
    });
    assert_eq!(
        got.iter().take(4).map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 503, 429, 429]
    );
    // The first push was refused four times, then accepted: the same samples, once.
    let first: HashSet<_> = got[0]
        .samples
        .iter()
        .map(|(k, _, t)| (k.clone(), *t))
        .collect();
    assert!(
        got[1..4].iter().all(|r| r
            .samples
            .iter()
            .map(|(k, _, t)| (k.clone(), *t))
            .collect::<HashSet<_>>()
            == first),
        "a retry carries the same request"
    );
    let mut accepted = HashSet::new();
    for r in got.iter().filter(|r| r.status == 204) {
        for (k, _, t) in &r.samples {
            assert!(
                accepted.insert((k.clone(), *t)),
                "{k} at {t} accepted twice"
            );
        }
    }
    assert!(
        first.iter().all(|s| accepted.contains(s)),
        "the retried push got through"
    );
    let s = gw.wait_for("the retries counted", |s| {
        rw(s, "retries_total", &url) == 4.0
    });
    for reason in ["queue_full", "rejected", "shutdown"] {
        assert_eq!(dropped(&s, reason, &url), 0.0);
    }
    // The receiver's latest value of each rw_ series is the gateway's.
    let mut latest: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for r in got.iter().filter(|r| r.status == 204) {
        for (k, v, t) in &r.samples {
            if k.starts_with("rw_") && latest.get(k).is_none_or(|(lt, _)| t > lt) {
                latest.insert(k.clone(), (*t, *v));
            }
        }
    }
    let latest: BTreeMap<String, f64> = latest.into_iter().map(|(k, (_, v))| (k, v)).collect();
    assert!(same_values(&latest, &want), "{latest:#?}\n{want:#?}");
}

#[test]
fn shutdown_pushes_once_more_with_the_protocol_headers_and_credentials() {
    let rx = ScriptedReceiver::start(&[], 204);
    let secrets = TempDir::new("rw-secrets");
    let token = secrets.0.join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let (mut gw, _dir) = gateway_for(
        &rx.write_url(),
        &[
            "--remote-write.interval=1h",
            &format!("--remote-write.bearer-token-file={}", token.display()),
            "--remote-write.header=X-Scope-OrgID: tenant-1",
        ],
    );
    send_traffic(&gw);
    gateway_samples(&gw, 1.0);
    assert!(
        rx.received().is_empty(),
        "nothing before the first interval"
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &gw.pid().to_string()])
        .status();
    assert!(
        gw.wait_exit().is_some_and(|s| s.success()),
        "{}",
        gw.log_text()
    );
    let got = rx.received();
    assert!(!got.is_empty(), "no push at shutdown");
    let h = &got[0].headers;
    assert_eq!(h["content-encoding"], "snappy");
    assert_eq!(h["content-type"], "application/x-protobuf");
    assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(h["authorization"], "Bearer s3cret-token");
    assert_eq!(h["x-scope-orgid"], "tenant-1");
    let stamps: HashSet<i64> = got
        .iter()
        .flat_map(|r| r.samples.iter().map(|(_, _, t)| *t))
        .collect();
    assert_eq!(stamps.len(), 1, "one snapshot, one timestamp");
    assert!(got.iter().any(|r| {
        r.samples
            .iter()
            .any(|(k, v, _)| k == "rw_requests{code=\"200\",route=\"/api\"}" && *v == 7.0)
    }));
}

#[test]
fn a_series_that_expires_gets_a_staleness_marker() {
    let rx = ScriptedReceiver::start(&[], 204);
    let (gw, _dir) = gateway_for(&rx.write_url(), &[]);
    gw.send_udp(b"rw.brief:1|c");
    rx.wait_for("the series pushed", RECEIVE_WAIT, |r| {
        r.iter().any(|r| {
            r.samples
                .iter()
                .any(|(k, v, _)| k == "rw_brief" && *v == 1.0)
        })
    });
    rx.wait_for("its staleness marker", RECEIVE_WAIT, |r| {
        r.iter().any(|r| {
            r.samples
                .iter()
                .any(|(k, v, _)| k == "rw_brief" && v.to_bits() == 0x7ff0_0000_0000_0002)
        })
    });
    std::thread::sleep(Duration::from_secs(1));
    let all = rx.received();
    let after: Vec<_> = all
        .iter()
        .flat_map(|r| r.samples.iter())
        .filter(|(k, _, _)| k == "rw_brief")
        .collect();
    assert_eq!(
        after.iter().filter(|(_, v, _)| v.is_nan()).count(),
        1,
        "one marker, then nothing: {after:?}"
    );
    assert!(after.last().is_some_and(|(_, v, _)| v.is_nan()));
}

#[test]
fn https_with_a_private_ca_and_a_server_name() {
    let (_certs, ca, cert, key) = make_certificates();
    let vm = Receiver::victoria_metrics(
        &[
            "-tls".to_string(),
            format!("-tlsCertFile={}", cert.display()),
            format!("-tlsKeyFile={}", key.display()),
        ],
        true,
    );
    // The URL names the IP; the certificate is checked against receiver.test.
    let url = vm.write_url();
    let (gw, _dir) = gateway_for(
        &url,
        &[
            &format!("--remote-write.tls.ca-file={}", ca.display()),
            "--remote-write.tls.server-name=receiver.test",
        ],
    );
    send_traffic(&gw);
    gw.wait_for("samples accepted over TLS", |s| {
        rw(s, "samples_total", &url) > 0.0
    });
    // The real curl, trusting the same CA, reads them back.
    let deadline = Instant::now() + RECEIVE_WAIT;
    loop {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--cacert",
                &ca.display().to_string(),
                "--resolve",
                &format!(
                    "receiver.test:{}:127.0.0.1",
                    vm.addr.rsplit(':').next().unwrap()
                ),
                &format!(
                    "https://receiver.test:{}/api/v1/query?query=rw_temp",
                    vm.addr.rsplit(':').next().unwrap()
                ),
            ])
            .output()
            .expect("curl not found: install Debian's `curl` package");
        let body = String::from_utf8_lossy(&out.stdout);
        if body.contains("\"21.5\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never read back over TLS: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Without the CA (system roots only) the same receiver is refused, and retried.
    let (gw2, _dir2) = gateway_for(&url, &["--remote-write.tls.server-name=receiver.test"]);
    send_traffic(&gw2);
    let s = gw2.wait_for("TLS failures retried", |s| {
        rw(s, "retries_total", &url) >= 2.0
    });
    assert_eq!(rw(&s, "samples_total", &url), 0.0);
    assert!(gw2.log_text().contains("certificate"), "{}", gw2.log_text());
}
