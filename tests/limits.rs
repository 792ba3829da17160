//! Bounded under abuse: the series limits, the per-line size limits, refused values and the
//! bounded self-metric labels, against the real binary on loopback. Every drop is counted in
//! `statsgate_events_dropped_total{reason}` (or statsd_exporter's own counter where it has
//! one), logged at most once per 10 s, and never disturbs the series already held.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Gateway, Samples, TempDir, promtool_check, series};

/// A flood takes a while through a debug build: longer than `common::WAIT`.
const FLOOD_WAIT: Duration = Duration::from_secs(120);

fn wait_long(gw: &Gateway, what: &str, cond: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + FLOOD_WAIT;
    loop {
        let s = Samples::parse(&gw.scrape());
        if cond(&s) {
            return gw.wait_for(what, cond);
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn dropped(s: &Samples, reason: &str) -> f64 {
    s.count(&format!(
        "statsgate_events_dropped_total{{reason=\"{reason}\"}}"
    ))
}

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/pid/status");
    kb * 1024
}

/// The gateway's log events that report a limit, by reason.
fn limit_logs(gw: &Gateway) -> Vec<String> {
    gw.log_events()
        .iter()
        .filter(|e| {
            e.get("msg")
                .or_else(|| e.get("message"))
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.contains("statsgate_events_dropped_total"))
        })
        .filter_map(|e| e.get("reason")?.as_str().map(str::to_string))
        .collect()
}

const MAX_SERIES: usize = 10_000;
const FLOOD_TCP: usize = 280_000;
const FLOOD_UDP: usize = 20_000;
const CONTROLS: usize = 3;

#[test]
fn a_flood_of_new_names_stays_bounded_and_existing_series_stay_exact() {
    let gw = Gateway::start(&[&format!("--statsd.max-series={MAX_SERIES}")]);
    let started = Instant::now();
    // The control series exist before the flood and must keep counting exactly through it.
    gw.send_udp(b"control.counter:1|c\ncontrol.gauge:5|g\ncontrol.timer:10|ms");
    gw.wait_for("the control series", |s| {
        s.get("control_counter") == Some(1.0)
    });
    let mut control = 1u64;

    let mut tcp = TcpStream::connect(gw.tcp.unwrap()).unwrap();
    let mut lines = 3usize;
    let mut batch = Vec::new();
    for i in 0..FLOOD_TCP {
        writeln!(batch, "flood.tcp.n{i}:1|c").unwrap();
        lines += 1;
        if i % 100 == 0 {
            batch.extend_from_slice(b"control.counter:1|c\ncontrol.gauge:+1|g\n");
            control += 1;
            lines += 2;
        }
        if batch.len() > 64 * 1024 {
            tcp.write_all(&batch).unwrap();
            batch.clear();
        }
    }
    tcp.write_all(&batch).unwrap();
    drop(tcp);

    // UDP in full datagrams, paced so the default socket buffer never overflows: this test
    // is about what the gateway keeps, not about kernel loss.
    let mut sent_datagrams = 1.0;
    let mut datagram = Vec::new();
    let flush = |d: &mut Vec<u8>, sent: &mut f64| {
        gw.send_udp(d);
        d.clear();
        *sent += 1.0;
        if *sent as u64 % 32 == 0 {
            let want = *sent;
            wait_long(&gw, "the UDP flood to be read", |s| {
                s.count("statsd_exporter_udp_packets_total") >= want
            });
        }
    };
    for i in 0..FLOOD_UDP {
        if !datagram.is_empty() {
            datagram.push(b'\n');
        }
        write!(datagram, "flood.udp.n{i}:2|g").unwrap();
        lines += 1;
        if i % 40 == 0 {
            datagram.extend_from_slice(b"\ncontrol.counter:1|c");
            control += 1;
            lines += 1;
        }
        if datagram.len() > 1300 {
            flush(&mut datagram, &mut sent_datagrams);
        }
    }
    if !datagram.is_empty() {
        flush(&mut datagram, &mut sent_datagrams);
    }

    let want_lines = lines as f64;
    let s = wait_long(&gw, "every line", |s| {
        s.count("statsd_exporter_lines_total") >= want_lines
    });
    assert_eq!(s.get("statsd_exporter_lines_total"), Some(want_lines));
    assert_eq!(s.get("control_counter"), Some(control as f64), "exact");
    assert_eq!(s.get("control_gauge"), Some(5.0 + (FLOOD_TCP / 100) as f64));
    assert_eq!(s.get("control_timer_count"), Some(1.0));
    let flood_series = MAX_SERIES - CONTROLS;
    let flood = (FLOOD_TCP + FLOOD_UDP) as f64;
    assert_eq!(dropped(&s, "max_series"), flood - flood_series as f64);
    let held = s.values.keys().filter(|k| k.starts_with("flood_")).count();
    assert_eq!(held, flood_series);
    let s = gw.wait_for("statsgate_series to be published", |s| {
        s.get("statsgate_series") == Some(MAX_SERIES as f64)
    });
    promtool_check(&s.text);

    // Without the limit, these 300k names take ~145 MiB in this debug build; 10k series,
    // their handles and the workers' memory of refused names stay under 64 MiB (~27 MiB
    // measured).
    let rss = rss_bytes(gw.pid());
    assert!(rss < 64 << 20, "RSS {} MiB", rss >> 20);

    // One log line per 10 s at most, for every receive thread together.
    let logs = limit_logs(&gw);
    let periods = started.elapsed().as_secs() / 10 + 1;
    assert!(
        !logs.is_empty() && logs.len() as u64 <= periods,
        "{} limit log lines in {:?}: {logs:?}",
        logs.len(),
        started.elapsed()
    );
}

#[test]
fn per_metric_and_size_limits_are_counted_and_never_touch_other_series() {
    let gw = Gateway::start(&[
        "--statsd.max-series-per-metric=5",
        "--statsd.max-tags-per-line=4",
        "--statsd.max-label-value-length=16",
        "--statsd.max-metric-name-length=32",
    ]);
    let mut payload = String::new();
    for i in 0..20 {
        payload.push_str(&format!("per.metric:1|c|#id:{i}\n"));
    }
    payload.push_str("tags.ok:1|c|#a:1,b:2,c:3,d:4\n");
    payload.push_str("tags.many:1|c|#a:1,b:2,c:3,d:4,e:5\n");
    payload.push_str("tags.influx,a=1,b=2,c=3,d=4,e=5:1|c\n");
    payload.push_str(&format!("tags.huge:1|c|#{}\n", "k:v,".repeat(900)));
    payload.push_str("value.ok:1|c|#k:0123456789abcdef\n");
    payload.push_str("value.long:1|c|#k:0123456789abcdefg\n");
    payload.push_str(&format!("{}:1|c\n", "n".repeat(33)));
    payload.push_str(&format!("label.name:1|c|#{}:v\n", "k".repeat(33)));
    payload.push_str("control:1|c\n");
    // Every refused line again: counted again, from the worker's memory.
    let again: String = payload
        .lines()
        .filter(|l| !l.starts_with("per.metric") && !l.starts_with("control"))
        .map(|l| format!("{l}\n"))
        .collect();
    payload.push_str(&again);
    gw.send_tcp(payload.as_bytes());
    let lines = payload.lines().count() as f64;
    let s = gw.wait_for("every line", |s| {
        s.count("statsd_exporter_lines_total") >= lines
    });
    promtool_check(&s.text);
    assert_eq!(dropped(&s, "max_series_per_metric"), 15.0);
    assert_eq!(dropped(&s, "too_many_tags"), 6.0);
    assert_eq!(dropped(&s, "label_value_too_long"), 2.0);
    assert_eq!(dropped(&s, "metric_name_too_long"), 2.0);
    assert_eq!(dropped(&s, "label_name_too_long"), 2.0);
    assert_eq!(dropped(&s, "max_series"), 0.0);
    let per_metric = s
        .values
        .keys()
        .filter(|k| k.starts_with("per_metric{"))
        .count();
    assert_eq!(per_metric, 5);
    let tags: [(&str, &str); 4] = [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")];
    assert_eq!(s.get(&series("tags_ok", &tags)), Some(2.0));
    assert_eq!(
        s.get(&series("value_ok", &[("k", "0123456789abcdef")])),
        Some(2.0)
    );
    assert_eq!(s.get("control"), Some(1.0));
    for gone in [
        "tags_many",
        "tags_influx",
        "tags_huge",
        "value_long",
        "nnnn",
        "label_name",
    ] {
        assert!(
            !s.values.keys().any(|k| k.starts_with(gone)),
            "{gone} was stored"
        );
    }
    let logs = limit_logs(&gw);
    assert_eq!(logs.len(), 1, "one log line per 10 s: {logs:?}");
}

#[test]
fn a_refused_series_gets_in_once_ttl_expiry_makes_room() {
    let dir = TempDir::new("limits-ttl");
    let mapping = dir.0.join("mapping.yml");
    std::fs::write(&mapping, "defaults:\n  ttl: 1s\nmappings: []\n").unwrap();
    let gw = Gateway::start(&[
        "--statsd.max-series=2",
        &format!("--statsd.mapping-config={}", mapping.display()),
    ]);
    gw.send_udp(b"a:1|c\nb:1|c\nc:1|c");
    let s = gw.wait_for("c refused", |s| dropped(s, "max_series") >= 1.0);
    assert!(s.get("c").is_none());
    let s = gw.wait_for("a and b expired", |s| {
        s.count("statsgate_series_expired_total") >= 2.0
    });
    assert!(s.get("a").is_none() && s.get("b").is_none());
    gw.send_udp(b"c:5|c");
    let s = gw.wait_for("c stored", |s| s.get("c") == Some(5.0));
    assert_eq!(dropped(&s, "max_series"), 1.0);
}

#[test]
fn bad_values_are_refused_counted_and_create_no_series() {
    let gw = Gateway::start(&[]);
    let lines = [
        "inf.counter:+Inf|c",
        "nan.counter:NaN|c",
        "nan.timer:NaN|ms",
        "inf.hist:-Inf|h",
        "rate.timer:1|ms|@5",
        "rate.negative:1|h|@-1",
        "tiny.rate:1|ms|@1e-300",
        "neg.counter:-5|c",
        "big.counter:1e308|c",
        "big.counter:1e308|c",
        "tagged:1|c|#my.tag:a,my-tag:b",
        "dup:1|c|#k:1,k:2",
        "control:1|c",
    ];
    gw.send_tcp(format!("{}\n", lines.join("\n")).as_bytes());
    let s = gw.wait_for("every line", |s| {
        s.count("statsd_exporter_lines_total") >= lines.len() as f64
    });
    promtool_check(&s.text);
    for gone in [
        "inf_counter",
        "nan_counter",
        "nan_timer",
        "inf_hist",
        "rate_timer",
        "rate_negative",
        "tiny_rate",
        "neg_counter",
    ] {
        assert!(
            !s.values.keys().any(|k| k.starts_with(gone)),
            "{gone}: a dropped event created a series"
        );
    }
    let errors = |reason: &str| {
        s.count(&format!(
            "statsd_exporter_events_error_total{{reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(errors("illegal_non_finite_value"), 5.0, "{}", s.text);
    assert_eq!(errors("illegal_negative_counter"), 1.0);
    assert_eq!(
        s.count("statsd_exporter_sample_errors_total{reason=\"invalid_sample_factor\"}"),
        3.0
    );
    assert_eq!(s.get("big_counter"), Some(1e308));
    assert_eq!(s.get(&series("tagged", &[("my_tag", "b")])), Some(1.0));
    assert_eq!(s.get(&series("dup", &[("k", "2")])), Some(1.0));
    assert_eq!(s.count("statsd_exporter_tag_errors_total"), 1.0);
    assert_eq!(s.get("control"), Some(1.0));
}

/// statsd_exporter creates no series for an event it drops: a counter whose only increment
/// was negative, or a sampled observation too big for a new series' `_sum`, leaves no family
/// behind (no HELP, no TYPE), while the drop is counted; a later good value creates it.
#[test]
fn a_dropped_first_event_leaves_no_family_behind() {
    let gw = Gateway::start(&[]);
    gw.send_udp(b"neg.counter:-5|c\nbig.hist:1e308|h|@0.1");
    let errors = |s: &Samples, reason: &str| {
        s.count(&format!(
            "statsd_exporter_events_error_total{{reason=\"{reason}\"}}"
        ))
    };
    let s = gw.wait_for("both refusals", |s| {
        errors(s, "illegal_negative_counter") >= 1.0
            && errors(s, "illegal_non_finite_value") >= 10.0
    });
    for gone in ["neg_counter", "big_hist"] {
        assert!(!s.text.contains(gone), "{gone}:\n{}", s.text);
    }
    assert_eq!(errors(&s, "illegal_negative_counter"), 1.0);
    assert_eq!(errors(&s, "illegal_non_finite_value"), 10.0);

    gw.send_udp(b"neg.counter:3|c");
    let s = gw.wait_for("the good increment", |s| s.get("neg_counter").is_some());
    promtool_check(&s.text);
    assert_eq!(s.get("neg_counter"), Some(3.0));
    assert_eq!(s.type_of("neg_counter").as_deref(), Some("counter"));
    assert_eq!(errors(&s, "illegal_negative_counter"), 1.0);
}

#[test]
fn conflicting_names_stop_growing_the_conflict_metric_at_its_cap() {
    let gw = Gateway::start(&[]);
    let names = 1_100;
    let mut payload = String::new();
    for i in 0..names {
        payload.push_str(&format!("conflict.n{i}:1|c\n"));
    }
    for i in 0..names {
        payload.push_str(&format!("conflict.n{i}:1|g\n"));
    }
    gw.send_tcp(payload.as_bytes());
    let s = gw.wait_for("every line", |s| {
        s.count("statsd_exporter_lines_total") >= 2.0 * names as f64
    });
    let conflicts: Vec<(&String, &f64)> = s
        .values
        .iter()
        .filter(|(k, _)| k.starts_with("statsd_exporter_events_conflict_total{"))
        .collect();
    assert_eq!(conflicts.len(), 1_001, "1,000 names and __other__");
    let total: f64 = conflicts.iter().map(|(_, v)| **v).sum();
    assert_eq!(total, names as f64);
    assert_eq!(
        s.get("statsd_exporter_events_conflict_total{metric_name=\"__other__\",type=\"gauge\"}"),
        Some(100.0)
    );
}
