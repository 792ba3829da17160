//! Real remote_write receivers for end-to-end tests, each on 127.0.0.1 with its storage in
//! a temp dir and killed on drop: Debian's `prometheus` (`--web.enable-remote-write-receiver`)
//! and `victoria-metrics`; and a scripted in-process receiver that answers a chosen status
//! sequence and records every request it decodes.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message as _;
use statsgate::remote_write::proto::WriteRequest;

use super::TempDir;

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A series as `name{k="v",...}` with labels sorted by name and values escaped as the text
/// format does, whatever order the labels came in: scrape keys and receiver results
/// compare equal through it.
pub fn canonical(name: &str, labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    super::series(name, &pairs)
}

/// Parses a scrape's series key (`name{k="v",...}`, escaped) into name and labels.
pub fn parse_series(key: &str) -> (String, BTreeMap<String, String>) {
    let Some((name, rest)) = key.split_once('{') else {
        return (key.to_string(), BTreeMap::new());
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let mut k = String::new();
        for c in chars.by_ref() {
            match c {
                '=' => break,
                ',' if k.is_empty() => {}
                '}' => return (name.to_string(), labels),
                c => k.push(c),
            }
        }
        assert_eq!(chars.next(), Some('"'), "bad series key {key}");
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => v.push('\n'),
                    Some(c) => v.push(c),
                    None => {}
                },
                c => v.push(c),
            }
        }
        labels.insert(k, v);
    }
}

/// The samples of a scrape whose name starts with `prefix`, by canonical key.
pub fn scraped(text: &str, prefix: &str) -> BTreeMap<String, f64> {
    super::Samples::parse(text)
        .values
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| {
            let (name, labels) = parse_series(k);
            (canonical(&name, &labels), *v)
        })
        .collect()
}

/// True when both maps hold the same keys and values (NaN equal to NaN).
pub fn same_values(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && (va == vb || (va.is_nan() && vb.is_nan())))
}

/// Which server a [`Receiver`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Debian's `prometheus`.
    Prometheus,
    /// Debian's `victoria-metrics`.
    VictoriaMetrics,
}

/// A real receiver process.
pub struct Receiver {
    kind: Kind,
    child: Option<Child>,
    args: Vec<String>,
    /// `127.0.0.1:port`.
    pub addr: String,
    scheme: &'static str,
    pub dir: TempDir,
}

impl Receiver {
    /// Prometheus accepting remote_write, with no scrape job.
    pub fn prometheus() -> Receiver {
        let dir = TempDir::new("prometheus-rw");
        std::fs::write(
            dir.0.join("prometheus.yml"),
            "global:\n  scrape_interval: 1m\n",
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let args = vec![
            format!("--config.file={}", dir.0.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.0.join("data").display()),
            format!("--web.listen-address={addr}"),
            "--web.enable-remote-write-receiver".to_string(),
        ];
        Self::start(Kind::Prometheus, args, addr, dir, "http")
    }

    /// VictoriaMetrics, every sample queryable as soon as it is stored. `extra` adds flags
    /// (TLS, for instance); `tls` makes its URLs `https://`.
    pub fn victoria_metrics(extra: &[String], tls: bool) -> Receiver {
        let dir = TempDir::new("victoria-metrics");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            format!("-storageDataPath={}", dir.0.join("data").display()),
            format!("-httpListenAddr={addr}"),
            "-search.latencyOffset=0s".to_string(),
            "-search.disableCache".to_string(),
            "-loggerLevel=ERROR".to_string(),
        ];
        args.extend(extra.iter().cloned());
        Self::start(
            Kind::VictoriaMetrics,
            args,
            addr,
            dir,
            if tls { "https" } else { "http" },
        )
    }

    fn start(
        kind: Kind,
        args: Vec<String>,
        addr: String,
        dir: TempDir,
        scheme: &'static str,
    ) -> Receiver {
        let mut r = Receiver {
            kind,
            child: None,
            args,
            addr,
            scheme,
            dir,
        };
        r.restart();
        r
    }

    fn program(&self) -> &'static str {
        match self.kind {
            Kind::Prometheus => "prometheus",
            Kind::VictoriaMetrics => "victoria-metrics",
        }
    }

    /// Starts the process again (same port, same storage), and waits until it is ready.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let program = self.program();
        let child = Command::new(program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{program} not found ({e}): install Debian's `{program}` package (scripts/test-all.sh does)")
            });
        self.child = Some(child);
        if self.scheme == "http" {
            let ready = match self.kind {
                Kind::Prometheus => "/-/ready",
                Kind::VictoriaMetrics => "/health",
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while http_get(&format!("http://{}{ready}", self.addr)).map(|(s, _)| s) != Some(200) {
                assert!(Instant::now() < deadline, "{program} never became ready");
                std::thread::sleep(Duration::from_millis(100));
            }
        } else {
            let deadline = Instant::now() + Duration::from_secs(60);
            while std::net::TcpStream::connect(&self.addr).is_err() {
                assert!(Instant::now() < deadline, "{program} never listened");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Stops the process gracefully (SIGTERM, so it writes what it holds) and waits.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The remote_write endpoint.
    pub fn write_url(&self) -> String {
        format!("{}://{}/api/v1/write", self.scheme, self.addr)
    }

    /// An instant query: every resulting series by canonical key (`__name__` as the name).
    pub fn query(&self, q: &str) -> Option<BTreeMap<String, f64>> {
        assert_eq!(self.scheme, "http", "query an https receiver with curl");
        let (status, body) = http_get_query(&format!("http://{}/api/v1/query", self.addr), q)?;
        if status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let mut out = BTreeMap::new();
        for r in v["data"]["result"].as_array()? {
            let mut labels: BTreeMap<String, String> = r["metric"]
                .as_object()?
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            let name = labels.remove("__name__").unwrap_or_default();
            let value = parse_value(r["value"][1].as_str()?);
            out.insert(canonical(&name, &labels), value);
        }
        Some(out)
    }

    /// Raw samples of the series matching `selector` over the last `range` (a range-vector
    /// query on Prometheus, the export API on VictoriaMetrics, which returns what it stored).
    pub fn raw_samples(&self, selector: &str, range: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
        let mut out = BTreeMap::new();
        match self.kind {
            Kind::Prometheus => {
                let url = format!("http://{}/api/v1/query", self.addr);
                let (_, body) = http_get_query(&url, &format!("{selector}[{range}]"))
                    .expect("prometheus query");
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                for r in v["data"]["result"].as_array().unwrap() {
                    let (key, samples) = series_samples(r, |s| {
                        let pairs = s["values"].as_array().unwrap();
                        pairs
                            .iter()
                            .map(|p| {
                                (
                                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                                    parse_value(p[1].as_str().unwrap()),
                                )
                            })
                            .collect()
                    });
                    out.insert(key, samples);
                }
            }
            Kind::VictoriaMetrics => {
                let url = format!("http://{}/api/v1/export", self.addr);
                let agent = agent();
                let mut resp = agent
                    .get(&url)
                    .query("match[]", selector)
                    .call()
                    .expect("victoria-metrics export");
                let body = resp.body_mut().read_to_string().unwrap();
                for line in body.lines().filter(|l| !l.trim().is_empty()) {
                    let r: serde_json::Value = serde_json::from_str(line).unwrap();
                    let (key, samples) = series_samples(&r, |s| {
                        let ts = s["timestamps"].as_array().unwrap();
                        let vs = s["values"].as_array().unwrap();
                        ts.iter()
                            .zip(vs)
                            .map(|(t, v)| {
                                let v = v
                                    .as_f64()
                                    .or_else(|| v.as_str().map(parse_value))
                                    .unwrap_or(f64::NAN);
                                (t.as_i64().unwrap(), v)
                            })
                            .collect()
                    });
                    out.insert(key, samples);
                }
            }
        }
        out
    }
}

fn series_samples(
    r: &serde_json::Value,
    samples: impl Fn(&serde_json::Value) -> Vec<(i64, f64)>,
) -> (String, Vec<(i64, f64)>) {
    let mut labels: BTreeMap<String, String> = r["metric"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect();
    let name = labels.remove("__name__").unwrap_or_default();
    (canonical(&name, &labels), samples(r))
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn parse_value(s: &str) -> f64 {
    match s {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or(f64::NAN),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

fn http_get(url: &str) -> Option<(u16, String)> {
    let mut resp = agent().get(url).call().ok()?;
    Some((
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap_or_default(),
    ))
}

fn http_get_query(url: &str, q: &str) -> Option<(u16, String)> {
    let mut resp = agent().get(url).query("query", q).call().ok()?;
    Some((
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap_or_default(),
    ))
}

/// One request the scripted receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// The status it answered.
    pub status: u16,
    /// Request headers, names lowercased.
    pub headers: BTreeMap<String, String>,
    /// `(canonical series, value, timestamp ms)` for every sample in it.
    pub samples: Vec<(String, f64, i64)>,
}

struct Script {
    statuses: Vec<u16>,
    then: u16,
    got: Vec<Received>,
}

/// An in-process remote_write receiver on 127.0.0.1: answers the scripted statuses in
/// order, then `then` forever, and decodes (snappy + protobuf) every request.
pub struct ScriptedReceiver {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ScriptedReceiver {
    pub fn start(statuses: &[u16], then: u16) -> ScriptedReceiver {
        let script = Arc::new(Mutex::new(Script {
            statuses: statuses.iter().rev().copied().collect(),
            then,
            got: Vec::new(),
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = script.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new()
                    .route("/api/v1/write", axum::routing::post(receive))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        ScriptedReceiver {
            addr,
            script,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().got.clone()
    }

    /// Waits until `cond` holds on the requests so far, or panics after `wait`.
    pub fn wait_for(
        &self,
        what: &str,
        wait: Duration,
        cond: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + wait;
        loop {
            let got = self.received();
            if cond(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; {} requests: {:?}",
                got.len(),
                got.iter().map(|r| r.status).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ScriptedReceiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn receive(
    axum::extract::State(script): axum::extract::State<Arc<Mutex<Script>>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy block body");
    let req = WriteRequest::decode(raw.as_slice()).expect("protobuf WriteRequest");
    let mut samples = Vec::new();
    for ts in req.timeseries {
        let mut labels: BTreeMap<String, String> =
            ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        let name = labels.remove("__name__").expect("__name__");
        let key = canonical(&name, &labels);
        for s in ts.samples {
            samples.push((key.clone(), s.value, s.timestamp));
        }
    }
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let mut s = script.lock().unwrap();
    let status = s.statuses.pop().unwrap_or(s.then);
    s.got.push(Received {
        status,
        headers,
        samples,
    });
    axum::http::StatusCode::from_u16(status).unwrap()
}

/// A private CA and a server certificate for `receiver.test` and 127.0.0.1, made with the
/// real `openssl`. Returns (dir, ca.pem, server.pem, server.key).
pub fn make_certificates() -> (TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = TempDir::new("tls");
    let p = |n: &str| dir.0.join(n);
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir.0)
            .output()
            .expect("openssl not found: install Debian's `openssl` package");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        p("server.ext"),
        "subjectAltName=DNS:receiver.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=statsgate test CA",
        "-days",
        "2",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=receiver.test",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    let (ca, cert, key) = (p("ca.pem"), p("server.pem"), p("server.key"));
    (dir, ca, cert, key)
}
