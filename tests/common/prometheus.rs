//! A real Prometheus server (Debian's `prometheus` package) on a loopback port, with its
//! storage in a temporary directory; killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TempDir;
use super::receivers::free_port;

/// A running Prometheus server.
pub struct Prometheus {
    child: Child,
    /// `127.0.0.1:PORT` of its HTTP API.
    pub addr: String,
    _dir: TempDir,
}

impl Prometheus {
    /// GET `path` (`/api/v1/query`, ...) of its HTTP API with `params`, parsed as JSON,
    /// whatever the HTTP status (Prometheus explains a refused query in the body). `Err`
    /// says why there is no JSON: transport, body or parse.
    pub fn api(
        &self,
        path: &str,
        params: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<serde_json::Value, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        let mut req = agent.get(&format!("http://{}{path}", self.addr));
        for (k, v) in params {
            req = req.query(k, v);
        }
        let mut resp = req.call().map_err(|e| format!("transport: {e}"))?;
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("body: {e}"))?;
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// The first result of the instant query `q`, `None` while it has none (or the server
    /// does not answer yet).
    pub fn first_result(&self, q: &str) -> Option<serde_json::Value> {
        let v = self
            .api("/api/v1/query", &[("query", q)], Duration::from_secs(2))
            .ok()?;
        v["data"]["result"].as_array()?.first().cloned()
    }

    /// The value of [`Prometheus::first_result`] as a number.
    pub fn first_value(&self, q: &str) -> Option<f64> {
        self.first_result(q)?["value"][1].as_str()?.parse().ok()
    }

    /// [`Prometheus::first_value`] once the query has a result; fails after a minute (the
    /// first scrapes and the first rule evaluation take a few seconds).
    pub fn wait_value(&self, q: &str) -> f64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = self.first_value(q) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "Prometheus never answered {q}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus scraping every second with `scrape_configs` (the YAML list under
/// `scrape_configs:`, indented by two spaces). Fails loudly when the binary is missing:
/// `scripts/test-all.sh` installs Debian's package.
pub fn start(scrape_configs: &str) -> Prometheus {
    start_with_args(scrape_configs, &[])
}

/// [`start`] with extra command-line flags (`--enable-feature=...`).
pub fn start_with_args(scrape_configs: &str, args: &[&str]) -> Prometheus {
    let dir = TempDir::new("prometheus");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{scrape_configs}"
    );
    std::fs::write(dir.0.join("prometheus.yml"), config).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.0.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus not found: install Debian's `prometheus` package (scripts/test-all.sh does)");
    Prometheus {
        child,
        addr,
        _dir: dir,
    }
}
