//! Both summary estimators through the real binary: the same timers sent over UDP on
//! 127.0.0.1 to a default gateway (CKMS, statsd_exporter's) and to one started with
//! `--statsd.summary-estimator=ddsketch`, both scraped over HTTP and checked against the
//! exact quantiles of what was sent.

mod common;

use common::{Gateway, TempDir, XorShift, promtool_check};

/// Timer values in milliseconds, spread over four decades, some sent with a sample rate.
fn timer_lines(n: usize) -> (Vec<String>, Vec<(f64, u32)>) {
    let mut rng = XorShift(0x5DEE_CE66_D1CE_4E5B);
    let mut lines = Vec::new();
    let mut sent = Vec::new();
    for i in 0..n {
        // 0.1 ms to 1000 ms, log-uniform, with three decimals as a client would print.
        let e = rng.below(4_000) as f64 / 1000.0 - 1.0;
        let ms = (10f64.powf(e) * 1000.0).round() / 1000.0;
        if i % 10 == 0 {
            // @0.25: statsd_exporter counts it four times.
            lines.push(format!("api.request_time:{ms}|ms|@0.25"));
            sent.push((ms / 1000.0, 4));
        } else {
            lines.push(format!("api.request_time:{ms}|ms"));
            sent.push((ms / 1000.0, 1));
        }
    }
    (lines, sent)
}

/// The value of rank ⌊q·(n−1)⌋ of the weighted values, and the range of ranks
/// (`below`, `at_or_below`) a given value occupies.
struct Exact(Vec<(f64, u32)>);

impl Exact {
    fn new(mut v: Vec<(f64, u32)>) -> Exact {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        Exact(v)
    }
    fn n(&self) -> u64 {
        self.0.iter().map(|&(_, w)| u64::from(w)).sum()
    }
    fn quantile(&self, q: f64) -> f64 {
        let rank = (q * (self.n() - 1) as f64).floor() as u64;
        let mut below = 0;
        for &(v, w) in &self.0 {
            below += u64::from(w);
            if below > rank {
                return v;
            }
        }
        panic!("rank {rank} beyond the data");
    }
    /// CKMS's error measure: how far `q·n` is from the ranks `value` occupies, over n.
    fn rank_error(&self, q: f64, value: f64) -> f64 {
        let below: u64 = self
            .0
            .iter()
            .filter(|&&(v, _)| v < value)
            .map(|&(_, w)| u64::from(w))
            .sum();
        let upto: u64 = self
            .0
            .iter()
            .filter(|&&(v, _)| v <= value)
            .map(|&(_, w)| u64::from(w))
            .sum();
        let target = q * self.n() as f64;
        let d = if target < below as f64 {
            below as f64 - target
        } else if target > upto as f64 {
            target - upto as f64
        } else {
            0.0
        };
        d / self.n() as f64
    }
}

fn send_packed(gw: &Gateway, lines: &[String]) {
    let mut datagram = String::new();
    for l in lines {
        if datagram.len() + l.len() + 1 > 1400 {
            gw.send_udp(datagram.as_bytes());
            datagram.clear();
            // Paced so a loopback burst cannot overflow the receive buffer.
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        if !datagram.is_empty() {
            datagram.push('\n');
        }
        datagram.push_str(l);
    }
    gw.send_udp(datagram.as_bytes());
}

#[test]
fn ddsketch_quantiles_are_within_the_relative_accuracy_and_ckms_within_its_objectives() {
    let (lines, sent) = timer_lines(5_000);
    let exact = Exact::new(sent.clone());
    let n = exact.n() as f64;
    let sum: f64 = sent.iter().map(|&(v, w)| v * f64::from(w)).sum();

    let ckms = Gateway::start(&[]);
    let sketch = Gateway::start(&["--statsd.summary-estimator=ddsketch"]);
    let coarse = Gateway::start(&[
        "--statsd.summary-estimator=ddsketch",
        "--statsd.summary-relative-accuracy=0.05",
    ]);
    for gw in [&ckms, &sketch, &coarse] {
        send_packed(gw, &lines);
    }
    let count = "api_request_time_count";
    let scrapes: Vec<_> = [&ckms, &sketch, &coarse]
        .iter()
        .map(|gw| gw.wait_for("every timer", |s| s.count(count) >= n))
        .collect();

    for s in &scrapes {
        assert_eq!(s.type_of("api_request_time").as_deref(), Some("summary"));
        assert_eq!(s.get(count), Some(n));
        let got_sum = s.get("api_request_time_sum").expect("a _sum");
        assert!((got_sum - sum).abs() <= sum * 1e-12, "{got_sum} vs {sum}");
        promtool_check(&s.text);
    }
    // The status API says which estimator each gateway runs.
    for (gw, name, accuracy) in [
        (&ckms, "ckms", None),
        (&sketch, "ddsketch", Some(0.01)),
        (&coarse, "ddsketch", Some(0.05)),
    ] {
        let (code, body) = gw.get("/api/v1/status");
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_str(&body).expect("JSON status");
        assert_eq!(status["config"]["summary_estimator"], name);
        assert_eq!(
            status["config"]["summary_relative_accuracy"].as_f64(),
            accuracy
        );
    }
    let (_, page) = coarse.get("/");
    assert!(page.contains(
        "<th scope=\"row\">Summary estimator</th><td>ddsketch (relative accuracy 0.05)</td>"
    ));
    // statsd_exporter's default objectives, each checked by its own measure.
    for (q, rank_bound) in [(0.5, 0.05), (0.9, 0.01), (0.99, 0.001)] {
        let key = format!("api_request_time{{quantile=\"{q}\"}}");
        let got = scrapes[0].get(&key).expect("a CKMS quantile");
        let err = exact.rank_error(q, got);
        assert!(err <= rank_bound, "ckms q={q}: rank error {err}");
        let want = exact.quantile(q);
        for (s, alpha) in [(&scrapes[1], 0.01), (&scrapes[2], 0.05)] {
            let got = s.get(&key).expect("a sketch quantile");
            let rel = (got - want).abs() / want;
            assert!(
                rel <= alpha * (1.0 + 1e-9),
                "ddsketch α={alpha} q={q}: {got} against exact {want} ({rel})"
            );
        }
    }
}

#[test]
fn ddsketch_honours_the_mapping_files_quantiles_and_window() {
    let dir = TempDir::new("sketch-mapping");
    let mapping = dir.0.join("mapping.yml");
    std::fs::write(
        &mapping,
        "mappings:\n- match: api.*\n  name: api_seconds\n  labels:\n    op: $1\n  \
         observer_type: summary\n  summary_options:\n    quantiles:\n    - quantile: 0.75\n      \
         error: 0.05\n    - quantile: 0.999\n      error: 0.0001\n    max_age: 30s\n",
    )
    .unwrap();
    let flag = format!("--statsd.mapping-config={}", mapping.display());
    let gw = Gateway::start(&["--statsd.summary-estimator=ddsketch", &flag]);
    let values: Vec<f64> = (1..=1000).map(f64::from).collect();
    let lines: Vec<String> = values.iter().map(|v| format!("api.get:{v}|ms")).collect();
    send_packed(&gw, &lines);
    let s = gw.wait_for("1000 timers", |s| {
        s.count("api_seconds_count{op=\"get\"}") >= 1000.0
    });
    let exact = Exact::new(values.iter().map(|&v| (v / 1000.0, 1)).collect());
    for q in [0.75, 0.999] {
        let got = s
            .get(&format!("api_seconds{{op=\"get\",quantile=\"{q}\"}}"))
            .unwrap_or_else(|| panic!("quantile {q} in\n{}", s.text));
        let want = exact.quantile(q);
        assert!((got - want).abs() <= 0.01 * want, "q={q}: {got} vs {want}");
    }
    assert!(s.get("api_seconds{op=\"get\",quantile=\"0.5\"}").is_none());
}
