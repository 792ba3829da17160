//! The Grafana dashboards of `dashboards/` against a real Prometheus (Debian's `prometheus`)
//! scraping two gateways, `--profile=envoy` and `--profile=istio-mixer`, that are fed
//! Envoy-like statsd traffic over UDP on loopback: every query of every panel, with the
//! template variables set as Grafana sets them, is valid PromQL and returns data.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::prometheus::{self, Prometheus};
use common::receivers::{ScriptedReceiver, free_port};
use common::{Gateway, TempDir};

/// The dashboards the issue asks for; any other JSON file in `dashboards/` is checked too.
const EXPECTED: &[&str] = &[
    "envoy-service-overview.json",
    "istio-mixer.json",
    "statsgate.json",
];

/// Grafana's built-in variables, set for a test whose Prometheus scrapes every second: a
/// rate window of ten scrapes, a time range of a minute.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "10s"),
    ("__interval", "2s"),
    ("__range", "1m"),
    ("__range_s", "60"),
];

/// What the sidecars of the test mesh send: two services in two versions each, and the
/// upstream clusters each service calls.
const SERVICES: &[(&str, &[&str])] = &[
    ("productpage", &["reviews", "details"]),
    ("reviews", &["ratings"]),
];
const VERSIONS: &[&str] = &["v1", "v2"];

/// Clusters of the Mixer-era mesh (Istio 0.2-1.0): Mixer, Envoy v1's discovery clusters,
/// 0.8's xDS gRPC cluster, an Envoy v1 Pilot cluster and an xDS v2 service cluster.
const MIXER_CLUSTERS: &[&str] = &[
    "mixer_check_server",
    "mixer_report_server",
    "cds",
    "lds",
    "rds",
    "sds",
    "xds-grpc",
    "out.istio-pilot.istio-system.svc.cluster.local|http-discovery",
    "outbound|9080|v1|reviews.default.svc.cluster.local",
];

/// One flush of every sidecar of the test mesh, as Envoy's `dog_statsd` sink sends it: the
/// tag-extracted names, the cluster and response code as tags, and the fixed `service` and
/// `version` tags of the sidecar's bootstrap (`stats_tags` with `fixed_value`). One
/// datagram per sidecar and cluster, as the sink batches them. `round` varies the values.
fn envoy_flush(round: u64) -> Vec<String> {
    let mut datagrams = Vec::new();
    for (service, clusters) in SERVICES {
        for (v, version) in VERSIONS.iter().enumerate() {
            for cluster in *clusters {
                let tags =
                    format!("service:{service},version:{version},envoy.cluster_name:{cluster}");
                let mut lines = vec![format!("envoy.cluster.upstream_rq_total:10|c|#{tags}")];
                for (code, class, n) in [("200", "2", 8), ("404", "4", 1), ("503", "5", 1)] {
                    lines.push(format!(
                        "envoy.cluster.upstream_rq:{n}|c|#{tags},envoy.response_code:{code}"
                    ));
                    lines.push(format!(
                        "envoy.cluster.upstream_rq_xx:{n}|c|#{tags},envoy.response_code_class:{class}"
                    ));
                }
                // The second version is the slower canary.
                let slow = 1 + v as u64;
                for ms in [3, 12, 40, 250] {
                    let ms = ms * slow + round % 7;
                    lines.push(format!("envoy.cluster.upstream_rq_time:{ms}|ms|#{tags}"));
                }
                for (stat, bytes) in [
                    ("upstream_rq_headers_size", 300),
                    ("upstream_rq_body_size", 1200),
                    ("upstream_rs_headers_size", 200),
                    ("upstream_rs_body_size", 9000),
                ] {
                    let bytes = bytes + round % 100;
                    lines.push(format!("envoy.cluster.{stat}:{bytes}|ms|#{tags}"));
                }
                lines.push(format!("envoy.cluster.upstream_cx_active:3|g|#{tags}"));
                datagrams.push(lines.join("\n"));
            }
        }
    }
    // A sidecar with the plain `statsd` sink: no tags, one line per datagram.
    datagrams.push("envoy.cluster.xds-grpc.upstream_rq_200:1|c".into());
    datagrams.push("envoy.cluster.xds-grpc.upstream_rq_2xx:1|c".into());
    datagrams
}

/// One flush of a Mixer-era sidecar: the plain `statsd` sink of Envoy v1 / Istio 0.8, one
/// line per datagram, the cluster inside each name.
fn mixer_flush(round: u64) -> Vec<String> {
    let mut lines = Vec::new();
    for cluster in MIXER_CLUSTERS {
        let c = format!("envoy.cluster.{cluster}");
        lines.push(format!("{c}.upstream_rq_total:10|c"));
        lines.push(format!("{c}.upstream_rq_2xx:8|c"));
        lines.push(format!("{c}.upstream_rq_4xx:1|c"));
        lines.push(format!("{c}.upstream_rq_5xx:1|c"));
        for ms in [2, 9, 30] {
            lines.push(format!("{c}.upstream_rq_time:{}|ms", ms + round % 5));
        }
        lines.push(format!("{c}.upstream_cx_active:2|g"));
        lines.push(format!("{c}.membership_healthy:2|g"));
        lines.push(format!("{c}.membership_total:3|g"));
    }
    // Envoy sends a counter once used, with its delta (0 when it did not move).
    let rejected = u64::from(round == 0);
    for manager in ["cluster_manager.cds", "listener_manager.lds"] {
        lines.push(format!("envoy.{manager}.update_attempt:1|c"));
        lines.push(format!("envoy.{manager}.update_rejected:{rejected}|c"));
    }
    lines
}

/// Sends a flush to both gateways every 200 ms until dropped, so every rate has moved.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(envoy: SocketAddr, mixer: SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP sender");
            let mut round = 0;
            while !flag.load(Ordering::Relaxed) {
                for d in envoy_flush(round) {
                    socket
                        .send_to(d.as_bytes(), envoy)
                        .expect("send to the gateway");
                }
                for l in mixer_flush(round) {
                    socket
                        .send_to(l.as_bytes(), mixer)
                        .expect("send to the gateway");
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A series' labels.
type Labels = BTreeMap<String, String>;

/// A variable's name → its value as interpolated.
type Variables = BTreeMap<String, String>;

/// The answer of Prometheus's instant query API: `Err` with its error when the query was
/// refused, else the result's samples as (labels, value).
fn query(prom: &Prometheus, q: &str) -> Result<Vec<(Labels, f64)>, String> {
    let v: Value = prom.api("/api/v1/query", &[("query", q)], Duration::from_secs(5))?;
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    let number = |s: &Value| s.as_str().and_then(|s| s.parse::<f64>().ok());
    let data = &v["data"];
    let samples = match data["resultType"].as_str() {
        Some("scalar") => vec![(
            BTreeMap::new(),
            number(&data["result"][1]).unwrap_or(f64::NAN),
        )],
        _ => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                (labels, number(&r["value"][1]).unwrap_or(f64::NAN))
            })
            .collect(),
    };
    Ok(samples)
}

/// `text` with Grafana's `$name` and `${name}` (`${name:format}`) replaced from `vars`, the
/// way Grafana interpolates a query. `$1` and the like (label_replace's capture groups)
/// are left alone; any other unknown variable is an error.
fn interpolate(text: &str, vars: &Variables) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let inner = &braced[..end];
            (inner.split(':').next().unwrap_or(inner), end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() || name.chars().all(|c| c.is_ascii_digit()) {
            out.push('$');
            rest = after;
            continue;
        }
        let value = vars
            .get(name)
            .ok_or_else(|| format!("unknown variable ${name} in {text:?}"))?;
        out.push_str(value);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A template variable's query text (Grafana stores either a string or an object).
fn variable_query(var: &Value) -> String {
    match &var["query"] {
        Value::String(s) => s.clone(),
        q => q["query"].as_str().unwrap_or_default().to_owned(),
    }
}

/// The values Grafana offers for a `query` variable, found by running its
/// `label_values(selector, label)` against Prometheus (after interpolating the variables
/// before it) and applying its `regex` (capture group 1 when it has one); sorted.
fn query_variable_values(
    prom: &Prometheus,
    var: &Value,
    vars: &Variables,
) -> Result<Vec<String>, String> {
    let text = interpolate(&variable_query(var), vars)?;
    let inner = text
        .trim()
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("only label_values(selector, label) is supported: {text:?}"))?;
    let (selector, label) = inner
        .rsplit_once(',')
        .ok_or_else(|| format!("label_values without a selector: {text:?}"))?;
    let (selector, label) = (selector.trim(), label.trim());
    let samples = query(prom, &format!("group by ({label}) ({selector})"))
        .map_err(|e| format!("{text}: {e}"))?;
    let pattern = var["regex"].as_str().unwrap_or_default();
    let regex = match pattern.strip_prefix('/').and_then(|p| p.strip_suffix('/')) {
        Some(p) => Some(regex::Regex::new(p).map_err(|e| format!("regex {pattern:?}: {e}"))?),
        None if pattern.is_empty() => None,
        None => return Err(format!("regex {pattern:?} is not /.../")),
    };
    let values: BTreeSet<String> = samples
        .into_iter()
        .filter_map(|(labels, _)| labels.get(label).cloned())
        .filter_map(|v| match &regex {
            None => Some(v),
            Some(re) => re.captures(&v).map(|c| {
                c.get(1)
                    .or_else(|| c.get(0))
                    .map(|m| m.as_str().to_owned())
                    .unwrap_or_default()
            }),
        })
        .filter(|v| !v.is_empty())
        .collect();
    Ok(values.into_iter().collect())
}

/// One way of setting a dashboard's variables: each to one value that exists, or each
/// multi-value variable to "All".
#[derive(Clone, Copy, Debug, PartialEq)]
enum Selection {
    OneValue,
    All,
}

/// A dashboard's variables set as Grafana would under `selection`: builtins, textboxes and
/// constants as stored, query variables from Prometheus. Single-value variables over the
/// same query take different values (an A/B pair compares two versions). Also returns,
/// per multi-value variable, its one-value setting, for panels repeated over it.
fn resolve_variables(
    prom: &Prometheus,
    dashboard: &Value,
    selection: Selection,
) -> Result<(Variables, Variables), String> {
    let mut vars: Variables = BUILTINS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut one_value = BTreeMap::new();
    let mut taken: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = var["name"].as_str().unwrap_or_default().to_owned();
        match var["type"].as_str().unwrap_or_default() {
            "datasource" => continue,
            "textbox" | "constant" => {
                let v = variable_query(var);
                vars.insert(name, v);
            }
            "query" => {
                let values = query_variable_values(prom, var, &vars)?;
                let multi = var["multi"].as_bool() == Some(true);
                let used = taken.entry(variable_query(var)).or_default();
                let value = values
                    .iter()
                    .find(|v| multi || !used.contains(*v))
                    .or(values.first())
                    .ok_or_else(|| {
                        format!("variable ${name} ({}) has no values", variable_query(var))
                    })?
                    .clone();
                if !multi {
                    used.insert(value.clone());
                }
                one_value.insert(name.clone(), value.clone());
                let all = var["includeAll"].as_bool() == Some(true) && selection == Selection::All;
                let set = if all {
                    var["allValue"].as_str().unwrap_or(".*").to_owned()
                } else {
                    value
                };
                vars.insert(name, set);
            }
            other => return Err(format!("variable ${name}: type {other} not supported")),
        }
    }
    Ok((vars, one_value))
}

/// A panel's query, with where it is shown.
struct Target {
    panel: String,
    /// The variable the panel (or its row) repeats over, if any.
    repeat: Option<String>,
    expr: String,
}

/// Every panel, in order, with rows' nested panels after their row.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut panels = Vec::new();
    for p in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    panels
}

/// The dashboard's structure as Grafana 10 imports it; returns its queries. A repeated row
/// repeats the panels below it up to the next row.
fn check_structure(file: &str, dashboard: &Value) -> Vec<Target> {
    for key in ["uid", "title"] {
        assert!(
            dashboard[key].as_str().is_some_and(|s| !s.is_empty()),
            "{file}: no {key}"
        );
    }
    let vars = dashboard["templating"]["list"].as_array();
    assert!(
        vars.into_iter()
            .flatten()
            .any(|v| v["type"] == "datasource" && v["name"] == "datasource"),
        "{file}: no `datasource` template variable"
    );
    let mut ids = BTreeSet::new();
    let mut targets = Vec::new();
    let mut row_repeat: Option<String> = None;
    for panel in all_panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{file}: panel {title:?} has no id"));
        assert!(ids.insert(id), "{file}: panel id {id} is used twice");
        assert!(
            panel["gridPos"]["w"].as_u64().is_some(),
            "{file}: panel {title:?} has no gridPos"
        );
        match panel["type"].as_str().unwrap_or_default() {
            "row" => {
                row_repeat = panel["repeat"].as_str().map(str::to_owned);
                continue;
            }
            "text" => continue,
            _ => {}
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{file}: panel {title:?} does not use the datasource variable"
        );
        let queries = panel["targets"].as_array().cloned().unwrap_or_default();
        assert!(!queries.is_empty(), "{file}: panel {title:?} has no query");
        let mut ref_ids = BTreeSet::new();
        for t in &queries {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.trim().is_empty(),
                "{file}: panel {title:?} has an empty query"
            );
            assert!(
                ref_ids.insert(t["refId"].as_str().unwrap_or_default().to_owned()),
                "{file}: panel {title:?} repeats a refId"
            );
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "{file}: a query of panel {title:?} does not use the datasource variable"
            );
            targets.push(Target {
                panel: title.clone(),
                repeat: panel["repeat"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| row_repeat.clone()),
                expr: expr.to_owned(),
            });
        }
    }
    targets
}

/// Starts a gateway on a port chosen beforehand, so Prometheus's configuration can name it
/// before the gateway runs.
fn gateway_at(port: u16, args: &[&str]) -> Gateway {
    let listen = format!("--web.listen-address=127.0.0.1:{port}");
    let mut all = vec![listen.as_str()];
    all.extend_from_slice(args);
    Gateway::start_with_unixgram(&all)
}

/// Waits, bounded, until Prometheus has scraped every target `scrapes` times, all up.
fn wait_for_scrapes(prom: &Prometheus, scrapes: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let value = |q: &str| query(prom, q).ok().and_then(|s| s.first().map(|(_, v)| *v));
    loop {
        let counted = value("min(count_over_time(up[1m]))");
        let up = value("min(up)");
        if counted.is_some_and(|c| c >= f64::from(scrapes)) && up == Some(1.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape every target {scrapes} times: {counted:?} scrapes, up {up:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// A dashboard: its file name, its JSON and its queries.
struct Dashboard {
    file: String,
    json: Value,
    targets: Vec<Target>,
}

/// Every JSON file of `dashboards/`, parsed and checked by [`check_structure`]; the
/// dashboards [`EXPECTED`] must be among them and no two may share a uid.
fn load_dashboards() -> Vec<Dashboard> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dashboards_dir())
        .expect("dashboards/ exists")
        .map(|e| e.expect("read dashboards/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for expected in EXPECTED {
        assert!(
            names.iter().any(|n| n == expected),
            "dashboards/{expected} is missing"
        );
    }
    let mut uids = BTreeSet::new();
    let mut dashboards = Vec::new();
    for (path, name) in files.iter().zip(&names) {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let dashboard: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        let targets = check_structure(name, &dashboard);
        assert!(
            uids.insert(dashboard["uid"].as_str().unwrap_or_default().to_owned()),
            "{name}: uid used by another dashboard"
        );
        dashboards.push(Dashboard {
            file: name.clone(),
            json: dashboard,
            targets,
        });
    }
    dashboards
}

#[test]
fn dashboards_parse_with_unique_panel_ids_and_the_datasource_variable() {
    let dashboards = load_dashboards();
    for d in &dashboards {
        assert!(!d.targets.is_empty(), "{}: no queries", d.file);
    }
}

#[test]
fn every_panel_of_every_dashboard_returns_data_from_a_real_prometheus() {
    let dashboards = load_dashboards();

    // A mapping file to reload; a remote_write receiver that first answers a 503 (retried)
    // and a 400 (dropped), so the remote_write panels have something to show.
    let dir = TempDir::new("dashboards");
    let mapping = dir.0.join("mapping.yml");
    std::fs::write(
        &mapping,
        "mappings:\n- match: test.dashboards.*\n  name: dashboards_${1}\n",
    )
    .expect("write the mapping file");
    let mapping_flag = format!("--statsd.mapping-config={}", mapping.display());
    let receiver = ScriptedReceiver::start(&[503, 400], 204);
    let remote_write = format!("--remote-write.url={}", receiver.write_url());
    // A relay target, so the relay panel has a target to show.
    let relay_target = UdpSocket::bind("127.0.0.1:0").expect("bind the relay target");
    let relay = format!(
        "--statsd.relay.address={}",
        relay_target.local_addr().expect("relay target address")
    );
    let statsd_args = [
        mapping_flag.as_str(),
        remote_write.as_str(),
        relay.as_str(),
        "--remote-write.interval=1s",
        "--remote-write.min-backoff=10ms",
        "--web.enable-lifecycle",
    ];

    let envoy_port = free_port();
    let mixer_port = std::iter::repeat_with(free_port)
        .find(|p| *p != envoy_port)
        .expect("a second free port");
    let prom = prometheus::start(&format!(
        "  - job_name: envoy\n    static_configs:\n      - targets: ['127.0.0.1:{envoy_port}']\n\
         \x20 - job_name: istio-mixer\n    static_configs:\n      - targets: ['127.0.0.1:{mixer_port}']\n"
    ));
    let mut envoy_args = vec!["--profile=envoy"];
    envoy_args.extend_from_slice(&statsd_args);
    let envoy = gateway_at(envoy_port, &envoy_args);
    let mut mixer_args = vec!["--profile=istio-mixer"];
    mixer_args.extend_from_slice(&statsd_args);
    let mixer = gateway_at(mixer_port, &mixer_args);

    // What the gateway's own dashboard shows beyond the steady flow: a reload, a bad line,
    // a name over the length limit, a name sent with two types, TCP and unixgram traffic.
    for gw in [&envoy, &mixer] {
        let (status, body) = gw.send("POST", "/-/reload");
        assert_eq!(status, 200, "reload: {body}");
        gw.send_udp(b"envoy.malformed_line_without_a_value");
        gw.send_udp(format!("envoy.{}:1|c", "x".repeat(1100)).as_bytes());
        gw.send_udp(b"envoy.conflicting.stat:1|c");
        gw.send_udp(b"envoy.conflicting.stat:1|g");
        gw.send_tcp(b"envoy.server.uptime:10|g\n");
        gw.send_unixgram(b"envoy.server.live:1|g");
    }
    let traffic = Traffic::start(
        envoy.udp.expect("udp listener"),
        mixer.udp.expect("udp listener"),
    );
    envoy.wait_for("the limit drop, the conflict and the unixgram packet", |s| {
        s.count("statsd_exporter_unixgram_packets_total") >= 1.0
            && s.count("statsd_exporter_events_conflict_total{metric_name=\"envoy_conflicting_stat\",type=\"gauge\"}") >= 1.0
    });
    wait_for_scrapes(&prom, 5);

    // Each query is retried, bounded, until it has data: a rate needs two scrapes after the
    // traffic started, a remote_write panel its first push.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut failures = Vec::new();
    let mut checked = 0;
    for Dashboard {
        file,
        json: dashboard,
        targets,
    } in &dashboards
    {
        for selection in [Selection::OneValue, Selection::All] {
            let (vars, one_value) = match resolve_variables(&prom, dashboard, selection) {
                Ok(v) => v,
                Err(e) => {
                    failures.push(format!("{file}: template variables: {e}"));
                    continue;
                }
            };
            for target in targets {
                let mut vars = vars.clone();
                if let Some(r) = &target.repeat
                    && let Some(v) = one_value.get(r)
                {
                    vars.insert(r.clone(), v.clone());
                }
                let expr = match interpolate(&target.expr, &vars) {
                    Ok(e) => e,
                    Err(e) => {
                        failures.push(format!("{file}: panel {:?}: {e}", target.panel));
                        continue;
                    }
                };
                checked += 1;
                let outcome = loop {
                    let outcome = match query(&prom, &expr) {
                        Err(e) => Err(format!("refused: {e}")),
                        Ok(samples) if samples.is_empty() => Err("no data".to_owned()),
                        Ok(samples) if !samples.iter().any(|(_, v)| v.is_finite()) => {
                            Err(format!("no finite value: {samples:?}"))
                        }
                        Ok(_) => Ok(()),
                    };
                    let refused = matches!(&outcome, Err(e) if e.contains("bad_data"));
                    if outcome.is_ok() || refused || Instant::now() > deadline {
                        break outcome;
                    }
                    std::thread::sleep(Duration::from_millis(250));
                };
                if let Err(e) = outcome {
                    failures.push(format!(
                        "{file}: panel {:?} ({selection:?}): {e}\n    {expr}",
                        target.panel
                    ));
                }
            }
        }
    }
    drop(traffic);
    assert!(
        failures.is_empty(),
        "{} of {checked} panel queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 100, "only {checked} queries checked");
}

#[test]
fn interpolation_reads_whole_variable_names_and_leaves_capture_groups() {
    let vars: Variables = [("version", "v1"), ("version_a", "v2"), ("__range", "1m")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        interpolate(
            r#"x{a="$version_a",b="${version}",c="${version:regex}"}[$__range]"#,
            &vars
        ),
        Ok(r#"x{a="v2",b="v1",c="v1"}[1m]"#.to_owned())
    );
    assert_eq!(
        interpolate(r#"label_replace(x, "c", "$1", "n", "(.+)")"#, &vars),
        Ok(r#"label_replace(x, "c", "$1", "n", "(.+)")"#.to_owned())
    );
    assert!(interpolate("x{a=\"$unknown\"}", &vars).is_err());
}
