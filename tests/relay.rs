//! `--statsd.relay.address`: every non-empty line received over any transport is forwarded
//! unmodified to another statsd server, as statsd_exporter does.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::Gateway;

#[test]
fn every_line_is_relayed_unmodified_and_counted() {
    let target = UdpSocket::bind("127.0.0.1:0").unwrap();
    target
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let addr = target.local_addr().unwrap().to_string();
    let gw = Gateway::start(&[
        &format!("--statsd.relay.address={addr}"),
        "--statsd.relay.packet-length=64",
    ]);
    gw.send_udp(b"a.b:1|c\n\nc.d:2|g|#k:v");
    gw.send_tcp(b"e.f:3|ms\r\nbad line\n");
    let long = format!("long:{}|c", "1".repeat(100));
    gw.send_udp(long.as_bytes());

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = ["a.b:1|c", "c.d:2|g|#k:v", "e.f:3|ms", "bad line"];
    while got.len() < want.len() && Instant::now() < deadline {
        let mut buf = [0u8; 2048];
        if let Ok(n) = target.recv(&mut buf) {
            assert!(n <= 64, "packets respect the packet length");
            assert_eq!(buf[n - 1], b'\n', "every relayed line ends in a newline");
            got.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            );
        }
    }
    got.sort();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        got, want,
        "the long line is not relayed; the rest arrive as sent"
    );

    let s = gw.wait_for("relay counters", |s| {
        s.count(&format!(
            "statsd_exporter_relay_long_lines_total{{target=\"{addr}\"}}"
        )) >= 1.0
    });
    assert_eq!(
        s.count(&format!(
            "statsd_exporter_relay_lines_relayed_total{{target=\"{addr}\"}}"
        )),
        4.0
    );
    assert!(
        s.count(&format!(
            "statsd_exporter_relay_packets_total{{target=\"{addr}\"}}"
        )) >= 1.0
    );
    assert_eq!(
        s.get("a_b"),
        Some(1.0),
        "relaying does not replace local processing"
    );
}

#[test]
fn an_unresolvable_relay_target_is_a_startup_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statsgate"))
        .args([
            "--statsd.relay.address=nowhere",
            "--web.listen-address=127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("relay"));
}
