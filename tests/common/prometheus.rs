//! A real Prometheus server (Debian's `prometheus` package) on a loopback port, with its
//! storage in a temporary directory; killed on drop.

use std::process::{Child, Command, Stdio};

use super::TempDir;
use super::receivers::free_port;

/// A running Prometheus server.
pub struct Prometheus {
    child: Child,
    /// `127.0.0.1:PORT` of its HTTP API.
    pub addr: String,
    _dir: TempDir,
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
