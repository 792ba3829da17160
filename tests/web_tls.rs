//! `--web.config.file` against real clients: `curl`, `openssl s_client` and a real Prometheus
//! server, over TLS (rustls) with bcrypt basic auth, on certificates made here with rcgen.
//! The tools come from Debian's `curl`, `openssl` and `prometheus` packages
//! (`scripts/test-all.sh` installs them); a missing one fails the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::prometheus::{self, Prometheus};
use common::{Gateway, TempDir};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// Certificates for one test: a CA, a server certificate for 127.0.0.1 and localhost, a
/// client certificate from the CA, and a self-signed client certificate from nobody.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("pki");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "statsgate test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        std::fs::write(dir.0.join("ca.pem"), ca.pem()).unwrap();

        let issue = |name: &str, sans: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.0.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.0.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        issue("server", vec!["127.0.0.1".into(), "localhost".into()]);
        issue("client", vec!["client.example".into()]);

        let stranger = rcgen::generate_simple_self_signed(vec!["stranger.example".into()]).unwrap();
        std::fs::write(dir.0.join("stranger.pem"), stranger.cert.pem()).unwrap();
        std::fs::write(
            dir.0.join("stranger.key"),
            stranger.signing_key.serialize_pem(),
        )
        .unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Writes `web.yml` next to the certificates (names in it are relative to it).
    fn write_config(&self, yaml: &str) -> PathBuf {
        let p = self.path("web.yml");
        std::fs::write(&p, yaml).unwrap();
        p
    }
}

fn hash(password: &str) -> String {
    // Cost 4 keeps the test fast; the server checks any cost.
    bcrypt::hash(password, 4).unwrap()
}

fn start(config: &Path, extra: &[&str]) -> Gateway {
    let flag = format!("--web.config.file={}", config.display());
    let mut args = vec![flag.as_str(), "--web.enable-lifecycle"];
    args.extend_from_slice(extra);
    Gateway::start(&args)
}

/// What curl reported: its exit code, the HTTP status (0 when there was none) and the
/// response headers.
struct CurlResult {
    exit: i32,
    status: u16,
    headers: String,
}

fn curl(args: &[&str]) -> CurlResult {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-o", "/dev/null", "-D", "-"])
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl not found: install Debian's `curl` package (scripts/test-all.sh does)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (headers, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    CurlResult {
        exit: out.status.code().unwrap_or(-1),
        status: code.trim().parse().unwrap_or(0),
        headers: headers.to_ascii_lowercase(),
    }
}

fn https(gw: &Gateway, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", gw.http.port())
}

fn tls_auth_config(pki: &Pki, users: &str, extra_tls: &str) -> PathBuf {
    pki.write_config(&format!(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n{extra_tls}\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n\
         basic_auth_users:\n{users}"
    ))
}

#[test]
fn curl_over_tls_right_wrong_and_no_password() {
    let pki = Pki::new();
    let cfg = tls_auth_config(&pki, &format!("  alice: '{}'\n", hash("wonderland")), "");
    let gw = start(&cfg, &[]);
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let url = https(&gw, "/metrics");

    let ok = curl(&["--cacert", ca, "-u", "alice:wonderland", &url]);
    assert_eq!((ok.exit, ok.status), (0, 200), "right password");
    assert!(
        ok.headers.contains("x-frame-options: deny"),
        "{}",
        ok.headers
    );
    assert!(ok.headers.contains("x-content-type-options: nosniff"));

    let wrong = curl(&["--cacert", ca, "-u", "alice:looking-glass", &url]);
    assert_eq!(wrong.status, 401, "wrong password");
    assert!(wrong.headers.contains("www-authenticate: basic"));
    // Headers from the config go on refusals too, as exporter-toolkit sets them first.
    assert!(wrong.headers.contains("x-frame-options: deny"));
    assert_eq!(curl(&["--cacert", ca, &url]).status, 401, "no password");
    assert_eq!(
        curl(&["--cacert", ca, "-u", "bob:wonderland", &url]).status,
        401,
        "unknown user"
    );

    // Lifecycle and every other endpoint sit behind the same auth.
    for path in ["/", "/api/v1/status", "/-/healthy", "/-/ready"] {
        let u = https(&gw, path);
        assert_eq!(curl(&["--cacert", ca, &u]).status, 401, "{path}");
        assert_eq!(
            curl(&["--cacert", ca, "-u", "alice:wonderland", &u]).status,
            200,
            "{path}"
        );
    }
    let reload = https(&gw, "/-/reload");
    assert_eq!(curl(&["--cacert", ca, "-X", "POST", &reload]).status, 401);
    assert_eq!(
        curl(&[
            "--cacert",
            ca,
            "-u",
            "alice:wonderland",
            "-X",
            "POST",
            &reload
        ])
        .status,
        200
    );
    let quit = https(&gw, "/-/quit");
    assert_eq!(curl(&["--cacert", ca, "-X", "PUT", &quit]).status, 401);

    // Plain HTTP on the TLS port gets no HTTP answer at all.
    let plain = curl(&[
        "-u",
        "alice:wonderland",
        &format!("http://{}/metrics", gw.http),
    ]);
    assert_ne!(plain.exit, 0, "plain HTTP must fail on the TLS port");
    assert_eq!(plain.status, 0);
    // A client that does not trust the certificate fails the handshake.
    assert_ne!(curl(&["-u", "alice:wonderland", &url]).exit, 0);

    let scrape = curl(&["--cacert", ca, "-u", "alice:wonderland", &url]);
    assert_eq!(scrape.status, 200);
    let metrics = Command::new("curl")
        .args(["-sS", "--cacert", ca, "-u", "alice:wonderland", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        text.contains("statsgate_http_auth_failures_total"),
        "{text}"
    );
    assert!(text.contains("statsgate_http_tls_handshake_errors_total"));
}

/// `openssl s_client` handshakes: true when one completed with `version` (`-tls1_2`, ...).
fn s_client(gw: &Gateway, pki: &Pki, version: &str) -> bool {
    let out = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", gw.http.port()))
        .args(["-CAfile", pki.path("ca.pem").to_str().unwrap(), version])
        .stdin(Stdio::null())
        .output()
        .expect("openssl not found: install Debian's `openssl` package (scripts/test-all.sh does)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    out.status.success() && text.contains("Verify return code: 0 (ok)")
}

#[test]
fn openssl_handshakes_honour_min_and_max_version() {
    let pki = Pki::new();
    let cfg = pki.write_config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS13\n",
    );
    let gw = start(&cfg, &[]);
    assert!(s_client(&gw, &pki, "-tls1_3"), "TLS 1.3 allowed");
    assert!(!s_client(&gw, &pki, "-tls1_2"), "TLS 1.2 below min_version");
    drop(gw);

    let cfg = pki.write_config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  max_version: TLS12\n",
    );
    let gw = start(&cfg, &[]);
    assert!(s_client(&gw, &pki, "-tls1_2"), "TLS 1.2 allowed");
    assert!(!s_client(&gw, &pki, "-tls1_3"), "TLS 1.3 above max_version");
    drop(gw);

    // Defaults: TLS 1.2 and 1.3.
    let cfg =
        pki.write_config("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n");
    let gw = start(&cfg, &[]);
    assert!(s_client(&gw, &pki, "-tls1_2"));
    assert!(s_client(&gw, &pki, "-tls1_3"));
}

#[test]
fn client_certificates_required_and_verified() {
    let pki = Pki::new();
    let cfg = pki.write_config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n",
    );
    let gw = start(&cfg, &[]);
    let p = |n: &str| pki.path(n).to_str().unwrap().to_string();
    let url = https(&gw, "/metrics");
    let with_cert = curl(&[
        "--cacert",
        &p("ca.pem"),
        "--cert",
        &p("client.pem"),
        "--key",
        &p("client.key"),
        &url,
    ]);
    assert_eq!((with_cert.exit, with_cert.status), (0, 200));
    let without = curl(&["--cacert", &p("ca.pem"), &url]);
    assert_eq!(
        without.status, 0,
        "no client certificate must not get an answer"
    );
    assert_ne!(without.exit, 0);
    let stranger = curl(&[
        "--cacert",
        &p("ca.pem"),
        "--cert",
        &p("stranger.pem"),
        "--key",
        &p("stranger.key"),
        &url,
    ]);
    assert_eq!(
        stranger.status, 0,
        "a certificate from another CA is refused"
    );
    drop(gw);

    // VerifyClientCertIfGiven: no certificate is fine, a bad one is not.
    let cfg = pki.write_config(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
         client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n",
    );
    let gw = start(&cfg, &[]);
    let url = https(&gw, "/metrics");
    assert_eq!(curl(&["--cacert", &p("ca.pem"), &url]).status, 200);
    let stranger = curl(&[
        "--cacert",
        &p("ca.pem"),
        "--cert",
        &p("stranger.pem"),
        "--key",
        &p("stranger.key"),
        &url,
    ]);
    assert_eq!(stranger.status, 0);
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + common::WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_passwords_and_keeps_the_old_config_when_the_new_one_is_bad() {
    let pki = Pki::new();
    let cfg = tls_auth_config(&pki, &format!("  alice: '{}'\n", hash("first")), "");
    let mut gw = start(&cfg, &[]);
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let url = https(&gw, "/metrics");
    assert_eq!(
        curl(&["--cacert", ca, "-u", "alice:first", &url]).status,
        200
    );

    tls_auth_config(&pki, &format!("  alice: '{}'\n", hash("second")), "");
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(gw.pid() as i32, libc::SIGHUP) }, 0);
    wait_until("the new password", || {
        curl(&["--cacert", ca, "-u", "alice:second", &url]).status == 200
    });
    assert_eq!(
        curl(&["--cacert", ca, "-u", "alice:first", &url]).status,
        401
    );

    // A broken file is refused; the previous configuration stays in force.
    pki.write_config("basic_auth_users:\n  alice: not-a-bcrypt-hash\n");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(gw.pid() as i32, libc::SIGHUP) }, 0);
    wait_until("the reload failure in the log", || {
        gw.log_text().contains("web config reload failed")
    });
    assert_eq!(
        curl(&["--cacert", ca, "-u", "alice:second", &url]).status,
        200
    );
    assert!(gw.alive());
}

#[test]
fn a_bad_web_config_stops_startup_with_a_clear_error() {
    let pki = Pki::new();
    let cases = [
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: server.key\n",
            "missing.pem",
        ),
        (
            "tls_server_config:\n  key_file: server.key\n",
            "missing one of cert or cert_file",
        ),
        ("basic_auth_users:\n  alice: plaintext\n", "bcrypt"),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: Sometimes\n",
            "client_auth_type",
        ),
        ("no_such_section: {}\n", "no_such_section"),
    ];
    for (yaml, expected) in cases {
        let cfg = pki.write_config(yaml);
        let out = Command::new(env!("CARGO_BIN_EXE_statsgate"))
            .arg(format!("--web.config.file={}", cfg.display()))
            .args([
                "--web.listen-address=127.0.0.1:0",
                "--statsd.listen-udp=127.0.0.1:0",
                "--statsd.listen-tcp=",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{yaml}: {stderr}");
        assert!(stderr.contains(expected), "{yaml}: {stderr}");
    }
}

fn wait_value(p: &Prometheus, q: &str) -> f64 {
    p.wait_value(q)
}

#[test]
fn real_prometheus_scrapes_over_tls_with_basic_auth() {
    let pki = Pki::new();
    let cfg = tls_auth_config(
        &pki,
        &format!("  prometheus: '{}'\n", hash("scrape-me")),
        "",
    );
    let gw = start(&cfg, &[]);
    gw.send_udp(b"tls.requests:7|c");
    let target = format!("127.0.0.1:{}", gw.http.port());
    let ca = pki.path("ca.pem");
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n    \
             basic_auth:\n      username: prometheus\n      password: {password}\n    \
             static_configs:\n      - targets: ['{target}']\n",
            ca.display()
        )
    };
    let prom = prometheus::start(&format!(
        "{}{}",
        job("right", "scrape-me"),
        job("wrong", "guess")
    ));
    assert_eq!(wait_value(&prom, "up{job=\"right\"}"), 1.0);
    assert_eq!(wait_value(&prom, "up{job=\"wrong\"}"), 0.0);
    assert_eq!(wait_value(&prom, "tls_requests{job=\"right\"}"), 7.0);
}
