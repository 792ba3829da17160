//! Shared harness for end-to-end tests: runs the real `statsgate` binary on 127.0.0.1 with
//! ephemeral ports, sends statsd over real sockets, scrapes over real HTTP.
#![allow(dead_code)]

pub mod prometheus;
pub mod receivers;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
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

/// Where a listener the gateway announced is: the `address` (or unixgram `path`) field of its
/// log event, looked up by the event's `listener` field. Key names are a contract of the log
/// output; message wording is not.
fn announced_listener(event: &serde_json::Value) -> Option<(&str, &str)> {
    let listener = event.get("listener")?.as_str()?;
    let at = event
        .get("address")
        .or_else(|| event.get("path"))?
        .as_str()?;
    Some((listener, at))
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

    /// Like [`Gateway::start`], with the process's descriptor limit (`RLIMIT_NOFILE`) set to
    /// `soft` and `hard` before it starts.
    pub fn start_with_descriptor_limit(args: &[&str], soft: u64, hard: u64) -> Gateway {
        Self::spawn(args, false, Some((soft, hard)))
    }

    fn start_with(args: &[&str], unixgram: bool) -> Gateway {
        Self::spawn(args, unixgram, None)
    }

    fn spawn(args: &[&str], unixgram: bool, descriptor_limit: Option<(u64, u64)>) -> Gateway {
        // A flag given in `args` replaces the harness's default for it (the CLI refuses a
        // flag given twice).
        let given = |flag: &str| args.iter().any(|a| a.split('=').next() == Some(flag));
        let mut all: Vec<String> = [
            "--web.listen-address=127.0.0.1:0",
            "--statsd.listen-udp=127.0.0.1:0",
            "--statsd.listen-tcp=127.0.0.1:0",
            "--statsd.udp-sockets=1",
        ]
        .into_iter()
        .filter(|d| !given(d.split('=').next().unwrap_or(d)))
        .map(String::from)
        .collect();
        let dir = unixgram.then(|| TempDir::new("unixgram"));
        if let Some(d) = &dir {
            all.push(format!(
                "--statsd.listen-unixgram={}",
                d.0.join("statsd.sock").display()
            ));
        }
        all.extend(args.iter().map(|s| s.to_string()));
        // JSON lines, so the harness reads the listeners' addresses by key.
        all.push("--log.format=json".into());
        let mut command = Command::new(env!("CARGO_BIN_EXE_statsgate"));
        command
            .args(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((soft, hard)) = descriptor_limit {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe
            // and reads a struct copied into the closure.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command.spawn().expect("spawn statsgate");
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
        // HTTP is announced last, once every statsd listener is up.
        while http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                panic!(
                    "statsgate did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            };
            // Not every stderr line is an event (a panic message is plain text).
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let Some((listener, at)) = announced_listener(&event) else {
                continue;
            };
            let addr = || {
                Some(
                    at.parse::<SocketAddr>()
                        .unwrap_or_else(|e| panic!("{listener} address {at:?}: {e}")),
                )
            };
            match listener {
                "http" => http = addr(),
                "udp" => udp = addr(),
                "tcp" => tcp = addr(),
                "unixgram" => ux = Some(PathBuf::from(at)),
                other => panic!("unknown listener {other:?} announced: {line}"),
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

    /// Everything the gateway wrote to stderr so far (JSON log lines).
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The log events so far, parsed; lines that are not JSON objects are left out.
    pub fn log_events(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
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

/// Runs the real binary with exactly `args` until it exits by itself, for at most [`WAIT`]
/// (then it is killed). Returns its exit status (`None` if it had to be killed) and stderr.
pub fn run_until_exit(args: &[&str]) -> (Option<std::process::ExitStatus>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn statsgate");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
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

/// A file of `tests/data`: corpora copied from statsd_exporter, Envoy and Istio (sources and
/// licences in `tests/data/README.md`). A missing file fails the test.
pub fn data_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing; it is part of the repository",
        path.display()
    );
    path
}

/// The text of a file of `tests/data`.
pub fn read_data(name: &str) -> String {
    let path = data_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// statsd_exporter's test cases (`tests/data/statsd_exporter_cases.json`).
pub fn cases() -> serde_json::Value {
    let text = read_data("statsd_exporter_cases.json");
    serde_json::from_str(&text).expect("statsd_exporter_cases.json is JSON")
}

/// `(stat name, type)` for every line of Envoy's stat-name corpus
/// (`tests/data/envoy-stat-names.txt`), split on the last `|` as its header says.
pub fn envoy_stat_names() -> Vec<(String, String)> {
    read_data("envoy-stat-names.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (name, kind) = line
                .rsplit_once('|')
                .unwrap_or_else(|| panic!("no type in {line:?}"));
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

/// A small deterministic generator (xorshift64), so a failing run replays from its seed.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next value; the seed must not be 0.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
