//! Shared harness for end-to-end tests: runs the real `statsgate` binary on 127.0.0.1 with
//! ephemeral ports, sends statsd over real sockets, scrapes over real HTTP.
#![allow(dead_code)]

pub mod receivers;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bound for any wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running gateway, killed on drop.
pub struct Gateway {
    child: Child,
    pub http: SocketAddr,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub unixgram: Option<PathBuf>,
    pub log: Arc<Mutex<Vec<String>>>,
    _dir: Option<TempDir>,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("statsgate-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    Some(rest.split(' ').next().unwrap_or("").trim_matches('"'))
}

impl Gateway {
    /// Starts with loopback ephemeral UDP, TCP and HTTP listeners, plus `args`.
    pub fn start(args: &[&str]) -> Gateway {
        Self::start_with(args, false)
    }

    /// Also listens on a unixgram socket in a temp dir.
    pub fn start_with_unixgram(args: &[&str]) -> Gateway {
        Self::start_with(args, true)
    }

    fn start_with(args: &[&str], unixgram: bool) -> Gateway {
        let mut all: Vec<String> = vec![
            "--web.listen-address=127.0.0.1:0".into(),
            "--statsd.listen-udp=127.0.0.1:0".into(),
            "--statsd.listen-tcp=127.0.0.1:0".into(),
            "--statsd.udp-sockets=1".into(),
        ];
        let dir = unixgram.then(|| TempDir::new("unixgram"));
        if let Some(d) = &dir {
            all.push(format!(
                "--statsd.listen-unixgram={}",
                d.0.join("statsd.sock").display()
            ));
        }
        all.extend(args.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_statsgate"))
            .args(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn statsgate");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let (mut http, mut udp, mut tcp, mut ux) = (None, None, None, None);
        let deadline = Instant::now() + WAIT;
        while http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "statsgate did not start; log:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            };
            let addr = || field(&line, "address").and_then(|a| a.parse::<SocketAddr>().ok());
            if line.contains("serving metrics over HTTP") {
                http = addr();
            } else if line.contains("accepting statsd over UDP") {
                udp = addr();
            } else if line.contains("accepting statsd over TCP") {
                tcp = addr();
            } else if line.contains("accepting statsd over unixgram") {
                ux = field(&line, "path").map(PathBuf::from);
            }
        }
        Gateway {
            child,
            http: http.unwrap(),
            udp,
            tcp,
            unixgram: ux,
            log,
            _dir: dir,
        }
    }

    /// GET a path; returns (status, headers lowercased, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{}", self.http, path);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.get(&url).call().expect("http get");
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        (status, body)
    }

    /// PUT or POST a path; returns (status, body).
    pub fn send(&self, method: &str, path: &str) -> (u16, String) {
        let url = format!("http://{}{}", self.http, path);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = match method {
            "PUT" => agent.put(&url).send_empty(),
            _ => agent.post(&url).send_empty(),
        }
        .expect("http send");
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    /// Scrapes `/metrics`.
    pub fn scrape(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "scrape failed: {body}");
        body
    }

    pub fn send_udp(&self, payload: &[u8]) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(payload, self.udp.expect("udp listener")).unwrap();
    }

    pub fn send_tcp(&self, payload: &[u8]) {
        let mut s = TcpStream::connect(self.tcp.expect("tcp listener")).unwrap();
        s.write_all(payload).unwrap();
        s.flush().unwrap();
    }

    pub fn send_unixgram(&self, payload: &[u8]) {
        let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
        s.send_to(payload, self.unixgram.as_ref().expect("unixgram listener"))
            .unwrap();
    }

    /// Polls the scrape until `cond` holds on the parsed samples, or panics after [`WAIT`].
    /// Returns a scrape taken after `cond` was first seen to hold.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&Samples) -> bool) -> Samples {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = Samples::parse(&self.scrape());
            if cond(&s) {
                // A receive batch publishes its self-metrics one counter after another, and
                // the scrape that saw the awaited one may have read the others just before.
                // The publication takes microseconds and a scrape milliseconds, so one more
                // scrape sees the whole batch.
                let again = Samples::parse(&self.scrape());
                if cond(&again) {
                    return again;
                }
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; last scrape:\n{}", s.text);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed scrape: `series text as printed` → value.
pub struct Samples {
    pub text: String,
    pub values: BTreeMap<String, f64>,
}

impl Samples {
    pub fn parse(text: &str) -> Samples {
        let mut values = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some((series, v)) = line.rsplit_once(' ') {
                let v = match v {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    "NaN" => f64::NAN,
                    _ => v.parse().unwrap_or(f64::NAN),
                };
                values.insert(series.to_string(), v);
            }
        }
        Samples {
            text: text.to_string(),
            values,
        }
    }

    pub fn get(&self, series: &str) -> Option<f64> {
        self.values.get(series).copied()
    }

    /// Value or 0 when absent (counters that have not moved may be absent).
    pub fn count(&self, series: &str) -> f64 {
        self.get(series).unwrap_or(0.0)
    }

    /// `# TYPE` of a family.
    pub fn type_of(&self, name: &str) -> Option<String> {
        let pat = format!("# TYPE {name} ");
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(&pat).map(str::to_string))
    }
}

/// Formats a series key as the exposition prints it (labels sorted by name).
pub fn series(name: &str, labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return name.to_string();
    }
    let mut l: Vec<_> = labels.to_vec();
    l.sort();
    let inner: Vec<String> = l
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Runs the real `promtool check metrics` on an exposition. Fails loudly when promtool is
/// missing: `.ci/run` installs Debian's `prometheus` package.
pub fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install Debian's `prometheus` package (see README)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits 1 when the text does not parse, and 3 when it parses but has lint
    // findings. statsd_exporter's own output has lint findings by design (counters keep
    // their statsd names, without `_total`), so only a parse failure fails the check.
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(3)) && !report.contains("error while linting"),
        "promtool rejected the exposition (exit {code:?}):\n{report}\n--- exposition ---\n{text}"
    );
    let mut seen = std::collections::HashSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let series = line.rsplit_once(' ').map(|(s, _)| s).unwrap_or(line);
        assert!(
            seen.insert(series.to_string()),
            "series {series} appears twice"
        );
    }
}

/// A file of `../shared/data`, or None (with a loud notice) when the shared corpus is absent.
/// Under `CI=true` a missing corpus fails the test instead.
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let candidates = [
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data")
            .join(name),
        PathBuf::from("/work/shared/data").join(name),
    ];
    for c in &candidates {
        if c.exists() {
            return Some(c.clone());
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("../shared/data/{name} is missing, and CI=true requires the shared corpus");
    }
    eprintln!("SKIPPED: ../shared not found ({name}); corpus test not run");
    None
}

/// Reads the shared cases file as JSON.
pub fn cases() -> Option<serde_json::Value> {
    let p = shared_data("statsd_exporter_cases.json")?;
    let mut s = String::new();
    std::fs::File::open(p)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    Some(serde_json::from_str(&s).unwrap())
}
