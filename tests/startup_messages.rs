//! What the real binary says as it starts: each listener announced once, a fatal error
//! written once with its cause once, and every flag checked whatever the profile (by
//! `--check-config` too).

mod common;

use std::collections::BTreeMap;
use std::net::{TcpListener, UdpSocket};

use common::{Gateway, run_until_exit};

#[test]
fn each_listener_is_announced_once() {
    let gw =
        Gateway::start_with_unixgram(&["--statsd.udp-sockets=2", "--statsd.read-buffer=65536"]);
    // The harness returns once it has read the HTTP announcement, written last.
    let mut announced: BTreeMap<String, usize> = BTreeMap::new();
    for event in gw.log_events() {
        let Some(listener) = event.get("listener").and_then(|l| l.as_str()) else {
            continue;
        };
        if event.get("address").is_some() || event.get("path").is_some() {
            *announced.entry(listener.to_owned()).or_default() += 1;
            if listener == "udp" || listener == "unixgram" {
                // The kernel doubles the request: the announcement says what it granted.
                let granted = event.get("read_buffer").and_then(|b| b.as_u64());
                assert!(granted >= Some(65536), "{event}");
            }
        }
    }
    let expected: BTreeMap<String, usize> = ["http", "tcp", "udp", "unixgram"]
        .into_iter()
        .map(|l| (l.to_owned(), 1))
        .collect();
    assert_eq!(announced, expected, "{}", gw.log_text());
}

/// The lines of `stderr` that mention an address in use, each checked to say so once.
fn address_in_use_lines(stderr: &str) -> Vec<&str> {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.to_lowercase().contains("address already in use"))
        .collect();
    for line in &lines {
        assert_eq!(
            line.to_lowercase()
                .matches("address already in use")
                .count(),
            1,
            "the cause is repeated: {line}"
        );
    }
    lines
}

#[test]
fn a_port_in_use_is_one_error_line_with_its_cause_once() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (tcp_at, udp_at) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let cases = [
        (
            "statsd TCP",
            [
                format!("--statsd.listen-tcp={tcp_at}"),
                "--statsd.listen-udp=".to_owned(),
                "--web.listen-address=127.0.0.1:0".to_owned(),
            ],
            tcp_at.port(),
        ),
        (
            "statsd UDP",
            [
                format!("--statsd.listen-udp={udp_at}"),
                "--statsd.listen-tcp=".to_owned(),
                "--web.listen-address=127.0.0.1:0".to_owned(),
            ],
            udp_at.port(),
        ),
        (
            "HTTP",
            [
                format!("--web.listen-address={tcp_at}"),
                "--statsd.listen-udp=127.0.0.1:0".to_owned(),
                "--statsd.listen-tcp=".to_owned(),
            ],
            tcp_at.port(),
        ),
    ];
    for (what, args, port) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, stderr) = run_until_exit(&args);
        let status = status.unwrap_or_else(|| panic!("{what}: ran on instead of exiting"));
        assert_eq!(status.code(), Some(1), "{what}: {stderr}");
        let lines = address_in_use_lines(&stderr);
        assert_eq!(lines.len(), 1, "{what}: printed once:\n{stderr}");
        assert!(lines[0].contains("level=error"), "{what}: {}", lines[0]);
        assert!(lines[0].contains(&port.to_string()), "{what}: {}", lines[0]);
        assert_eq!(
            stderr.lines().filter(|l| l.contains("level=error")).count(),
            1,
            "{what}: one error:\n{stderr}"
        );
    }
}

#[test]
fn check_config_checks_flags_of_a_profile_not_selected() {
    let (status, stderr) = run_until_exit(&["--check-config", "--envoy.tag-rules=/nonexistent"]);
    let status = status.expect("--check-config exits");
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("/nonexistent"), "{stderr}");
    // And with it, where the flag is read.
    let (status, stderr) = run_until_exit(&[
        "--check-config",
        "--profile=envoy",
        "--envoy.tag-rules=/nonexistent",
    ]);
    assert!(!status.expect("exits").success(), "{stderr}");
    let (status, stderr) = run_until_exit(&["--check-config", "--envoy.tag-rules=istio"]);
    assert!(status.expect("exits").success(), "{stderr}");
}
