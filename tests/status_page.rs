//! The status page at `/` and `/api/v1/status`, end to end: the real binary on 127.0.0.1 fed
//! known traffic over UDP, the JSON read with a plain HTTP client, and the page loaded in
//! headless Chromium (Debian's `chromium` package; scripts/test-all.sh installs it) after its
//! script ran. A screenshot is saved as `target/status-page.png` for review.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gateway, TempDir};
use serde_json::Value;

/// Upper bound for one Chromium run (start, load, script, dump or screenshot).
const BROWSER_WAIT: Duration = Duration::from_secs(90);

/// A headless Chromium run, killed on drop if it has not ended.
struct Browser {
    child: Child,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs headless Chromium with `args` then `url`; returns its stdout. Panics (the test fails)
/// when Chromium is missing, fails, or takes longer than [`BROWSER_WAIT`].
fn chromium(args: &[&str], url: &str) -> String {
    let profile = TempDir::new("chromium");
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run chromium ({e}): install Debian's chromium package \
                 (apt-get install chromium; scripts/test-all.sh does)"
            )
        });
    let mut browser = Browser {
        child,
        _profile: profile,
    };
    // Read both pipes on threads so a full pipe never stalls the browser.
    let mut stdout = browser.child.stdout.take().unwrap();
    let mut stderr = browser.child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + BROWSER_WAIT;
    let status = loop {
        if let Some(status) = browser.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not finish within {BROWSER_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(status.success(), "chromium failed ({status}): {stderr}");
    stdout
}

/// The status page's JSON, through a plain HTTP client.
fn status_json(gw: &Gateway) -> Value {
    let (code, body) = gw.get("/api/v1/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The text of `<tbody id="ID">…</tbody>`'s cells, row by row.
fn table_rows(html: &str, id: &str) -> Vec<Vec<String>> {
    let start = html
        .find(&format!("<tbody id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id} in {html}"));
    let end = start + html[start..].find("</tbody>").unwrap();
    html[start..end]
        .split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let text = &cell[cell.find('>').unwrap() + 1..];
                    let text = &text[..text.find("</td>").unwrap_or(text.len())];
                    strip_tags(text)
                })
                .collect()
        })
        .collect()
}

fn strip_tags(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// The text of the element whose `data-k` is `key`.
fn keyed(html: &str, key: &str) -> String {
    let at = html
        .find(&format!("data-k=\"{key}\""))
        .unwrap_or_else(|| panic!("no {key} in {html}"));
    let text = &html[at + html[at..].find('>').unwrap() + 1..];
    strip_tags(&text[..text.find('<').unwrap()])
}

/// Where the screenshot goes: `target/status-page.png`.
fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target directory")
        .join("status-page.png")
}

/// 25 metric names, `load_mNN` with NN + 1 series each, sent over UDP 10 lines a datagram.
/// Returns (lines, datagrams, bytes) sent.
fn send_known_traffic(gw: &Gateway) -> (u64, u64, u64) {
    let lines: Vec<String> = (0..25)
        .flat_map(|m| (0..=m).map(move |s| format!("load.m{m:02}:1|c|#shard:s{s}")))
        .collect();
    let (mut datagrams, mut bytes) = (0, 0);
    for chunk in lines.chunks(10) {
        let payload = chunk.join("\n");
        gw.send_udp(payload.as_bytes());
        datagrams += 1;
        bytes += payload.len() as u64;
    }
    (lines.len() as u64, datagrams, bytes)
}

#[test]
fn status_page_shows_the_traffic_the_gateway_received() {
    let dir = TempDir::new("status");
    let mapping = dir.0.join("mapping.yml");
    std::fs::write(
        &mapping,
        "mappings:\n- match: \"unused.*\"\n  name: \"unused_a\"\n- match: \"other.*\"\n  name: \"unused_b\"\n",
    )
    .unwrap();
    let gw = Gateway::start(&[
        &format!("--statsd.mapping-config={}", mapping.display()),
        "--statsd.max-series=1000",
    ]);
    let (lines, datagrams, bytes) = send_known_traffic(&gw);
    assert_eq!(lines, 325);
    gw.wait_for("every line", |s| {
        s.count("statsd_exporter_lines_total") >= lines as f64
    });
    let scrape = common::Samples::parse(&gw.scrape());
    assert_eq!(
        scrape.get("statsgate_received_bytes_total{transport=\"udp\"}"),
        Some(bytes as f64),
        "payload bytes counted"
    );

    // The JSON, field by field.
    let s = status_json(&gw);
    assert_eq!(s["build"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        s["build"]["revision"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert_eq!(s["config"]["profile"], "statsd");
    assert_eq!(s["config"]["summary_estimator"], "ckms");
    assert!(s["config"]["summary_relative_accuracy"].is_null());
    assert_eq!(s["config"]["mapping_file"], mapping.display().to_string());
    assert_eq!(s["config"]["mapping_rules"], 2);
    assert_eq!(s["config"]["last_reload"], Value::Null);
    let listeners = s["config"]["listeners"].as_array().unwrap();
    assert!(
        listeners
            .iter()
            .any(|l| l["transport"] == "udp" && l["address"] == gw.udp.unwrap().to_string())
    );
    assert!(
        listeners
            .iter()
            .any(|l| l["transport"] == "tcp" && l["address"] == gw.tcp.unwrap().to_string())
    );
    assert_eq!(s["ingest"]["lines_total"], lines);
    assert_eq!(s["ingest"]["datagrams_total"], datagrams);
    assert_eq!(s["ingest"]["bytes_total"], bytes);
    assert_eq!(s["ingest"]["dropped_total"], 0);
    // Measured from the sample taken at start, at most a few seconds ago: every line and
    // byte sent is in the rate, over a window no longer than the gateway has run.
    let window = s["ingest"]["window_seconds"].as_f64().unwrap();
    let uptime = s["build"]["uptime_seconds"].as_f64().unwrap();
    assert!(window > 0.0 && window <= uptime + 0.01, "{window} {uptime}");
    let lines_rate = s["ingest"]["lines_per_second"].as_f64().unwrap();
    assert!(
        (lines_rate * window - lines as f64).abs() < 1.0,
        "{lines_rate} over {window}"
    );
    let bytes_rate = s["ingest"]["bytes_per_second"].as_f64().unwrap();
    assert!(
        (bytes_rate * window - bytes as f64).abs() < 1.0,
        "{bytes_rate} over {window}"
    );
    assert_eq!(s["series"]["count"], 325);
    assert_eq!(s["series"]["limit"], 1000);
    assert_eq!(s["series"]["families"], 25);
    let top: Vec<(String, u64)> = s["top_metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["type"], "counter");
            (
                t["name"].as_str().unwrap().to_string(),
                t["series"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = (5..25)
        .rev()
        .map(|m| (format!("load_m{m:02}"), m + 1))
        .collect();
    assert_eq!(top, want, "the 20 names with the most series, most first");
    let drops = s["drops"].as_array().unwrap();
    assert!(drops.iter().any(|d| {
        d["metric"] == "statsgate_events_dropped_total"
            && d["reason"] == "max_series"
            && d["value"] == 0.0
    }));
    assert!(
        drops
            .iter()
            .any(|d| d["metric"] == "statsd_exporter_udp_packet_drops_total")
    );

    // Without JavaScript: the server-rendered page already shows the numbers.
    let (code, html) = gw.get("/");
    assert_eq!(code, 200);
    assert_eq!(keyed(&html, "series.count"), "325");
    assert_eq!(keyed(&html, "ingest.lines_total"), "325");
    assert!(
        html.contains("<th scope=\"row\">Summary estimator</th><td>ckms</td>"),
        "the estimator in the configuration table"
    );
    let rows = table_rows(&html, "top");
    assert_eq!(rows.len(), 20);
    assert_eq!(rows[0][..4], ["1", "load_m24", "counter", "25"]);
    assert!(html.contains("/-/healthy") && html.contains("/-/ready") && html.contains("/metrics"));

    // More traffic after the server rendered: the page's script must show it.
    gw.send_udp(b"late.metric:1|c\nlate.metric:1|c|#shard:a");
    gw.wait_for("the late lines", |s| {
        s.get("late_metric{shard=\"a\"}").is_some()
    });
    // The gateway reuses a collected status for a second: wait until it has collected
    // one with the late series, so the page's script cannot be served the earlier one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while status_json(&gw)["series"]["count"] != 327 {
        assert!(
            std::time::Instant::now() < deadline,
            "the status never showed the late series"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let url = format!("http://{}/", gw.http);
    let dom = chromium(&["--virtual-time-budget=3000", "--dump-dom"], &url);
    assert!(
        dom.contains("data-live=\"1\""),
        "the page's script refreshed it: {dom}"
    );
    assert_eq!(keyed(&dom, "series.count"), "327");
    assert_eq!(keyed(&dom, "series.families"), "26");
    let rows = table_rows(&dom, "top");
    assert_eq!(rows.len(), 20);
    for (row, (name, series)) in rows.iter().zip(&want) {
        assert_eq!(row[1], *name);
        assert_eq!(row[3], series.to_string());
    }
    // Zero errors: the errors table says so rather than listing zeros.
    assert_eq!(table_rows(&dom, "errors"), [["No errors since start."]]);

    let png = screenshot_path();
    let _ = std::fs::remove_file(&png);
    chromium(
        &[
            "--virtual-time-budget=3000",
            "--hide-scrollbars",
            "--window-size=1280,1600",
            &format!("--screenshot={}", png.display()),
        ],
        &url,
    );
    let image = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
    assert!(image.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        image.len() > 20_000,
        "{} bytes: an empty page?",
        image.len()
    );
}

#[test]
fn names_and_errors_from_outside_are_escaped() {
    let dir = TempDir::new("status-escape");
    let mapping = dir.0.join("mapping.yml");
    std::fs::write(&mapping, "mappings: []\n").unwrap();
    let gw = Gateway::start(&[
        &format!("--statsd.mapping-config={}", mapping.display()),
        "--web.enable-lifecycle",
    ]);
    // A statsd name with markup: escaped into a metric name on the way in.
    gw.send_udp(b"<script>alert(1)</script>:1|c");
    gw.wait_for("the line", |s| {
        s.count("statsd_exporter_events_total{type=\"counter\"}") >= 1.0
    });
    // A mapping file whose error quotes markup back.
    std::fs::write(
        &mapping,
        "mappings:\n- match: \"a.*\"\n  name: \"<script>alert(2)</script>\"\n",
    )
    .unwrap();
    let (code, body) = gw.send("POST", "/-/reload");
    assert_eq!(code, 500, "{body}");

    let s = status_json(&gw);
    let reload = &s["config"]["last_reload"];
    assert_eq!(reload["success"], false);
    assert!(
        reload["error"]
            .as_str()
            .is_some_and(|e| e.contains("<script>alert(2)</script>")),
        "{reload}"
    );
    let name = s["top_metrics"][0]["name"].as_str().unwrap().to_string();
    assert!(!name.contains('<'), "{name}");

    let (_, html) = gw.get("/");
    assert!(
        html.contains("&lt;script&gt;alert(2)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>alert"), "{html}");
    assert_eq!(html.matches("<script>").count(), 1, "only the page's own");

    // In the browser, after the script rebuilt the tables: still text, never markup.
    let dom = chromium(
        &["--virtual-time-budget=3000", "--dump-dom"],
        &format!("http://{}/", gw.http),
    );
    assert!(dom.contains("data-live=\"1\""));
    assert!(!dom.contains("<script>alert"), "{dom}");
    assert!(dom.contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
    assert_eq!(table_rows(&dom, "top")[0][1], name);
}
