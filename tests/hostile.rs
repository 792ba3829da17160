//! Hostile input: malformed lines of every kind, reserved label names, invalid UTF-8, huge
//! names and lines, and random datagrams. Afterwards the gateway is alive, `/metrics` passes
//! promtool, and a control counter sent alongside is exact.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::{Gateway, XorShift, promtool_check};

fn hostile_lines() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "",
        ":",
        "::",
        "|",
        "a",
        "a:",
        ":1|c",
        "a:1",
        "a:1|",
        "a:1||",
        "a:|c",
        "a:x|c",
        "a:1|c|@",
        "a:1|c|@x",
        "a:1|zz",
        "a:1|s",
        "a:1|c|#",
        "a:1|c|#,",
        "a:1|c|#:",
        "a:1|c|#k:",
        "a:1|c|#:v",
        "a:1|c|c",
        "a:1|c|c:",
        "a:1|c|T",
        "a:1:2|c",
        "a:1:2|g|#k:v",
        "a[k=v:1|c",
        "a]k=v[:1|c",
        "a[k=v]:1|c|#k:v",
        "a,=:1|c",
        "a#=:1|c",
        "a:1|c|@0",
        "a:1|ms|@1e-300",
        "a:1|ms|@-1",
        "a:1e400|c",
        "a:-0|c",
        "a:0x1p-2|g",
        "a:1_000|c",
        "a:1|c|#__name__:evil",
        "q:1|ms|#quantile:0.5",
        "h:1|h|#le:1",
        "a:1|c|#__x:1,__y:2",
        "a.b.c:1|c|#1bad:key",
        "-:1|c",
        "0:1|c",
        "..:1|c",
        "a\t:1|c",
        "a :1 |c",
        "\"quoted\":1|c",
        "back\\slash:1|c|#k:v\\",
        "newline:1|c|#k:v\r",
        "a:1|c|@0.5|#k:v|c:id|T123",
        "a:1|c|x|y|z|w|v",
        "a:nan|c",
        "a:-inf|c",
        "a:+inf|g",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(b"bad\xff\xfeutf8:1|c".to_vec());
    v.push(b"ok:1|c|#k:\xc3\x28".to_vec());
    v.push([b"x".repeat(60_000), b":1|c".to_vec()].concat());
    v.push([b"y:1|c|#".to_vec(), b"k:v,".repeat(5_000)].concat());
    v.push([b"z:".to_vec(), b"1:".repeat(10_000), b"1|ms".to_vec()].concat());
    v
}

/// Sends UDP datagrams in bursts the kernel's default socket buffer can hold: this test is
/// about exactness under bad input, not about loss under load (that is BENCHMARKS.md's).
struct Paced<'g> {
    gw: &'g Gateway,
    sent: u64,
    unsynced_bytes: usize,
}

impl Paced<'_> {
    fn send(&mut self, d: &[u8]) {
        self.gw.send_udp(d);
        self.sent += 1;
        self.unsynced_bytes += d.len() + 64;
        // The default socket buffer holds ~200 KiB: sync well before that, whatever the
        // machine's load.
        if self.sent % 16 == 0 || self.unsynced_bytes > 64 * 1024 {
            let want = self.sent as f64;
            self.gw.wait_for("the gateway to catch up", |s| {
                s.count("statsd_exporter_udp_packets_total") >= want
            });
            self.unsynced_bytes = 0;
        }
    }
}

#[test]
fn hostile_input_leaves_the_gateway_healthy_and_exact() {
    let mut gw = Gateway::start(&[]);
    let mut paced = Paced {
        gw: &gw,
        sent: 0,
        unsynced_bytes: 0,
    };
    let mut sent_control = 0u64;
    let lines = hostile_lines();
    for (i, line) in lines.iter().enumerate() {
        paced.send(line);
        // Mixed into the same datagram too.
        let mut mixed = line.clone();
        mixed.extend_from_slice(b"\ncontrol.counter:1|c\n");
        if line.len() < 30_000 {
            // Twice, unless that would exceed the largest UDP datagram.
            mixed.extend_from_slice(line);
        }
        paced.send(&mixed);
        sent_control += 1;
        if i % 8 == 0 {
            gw.send_tcp(&[line.as_slice(), b"\ncontrol.counter:1|c\n"].concat());
            sent_control += 1;
        }
    }
    let mut rng = XorShift(0x5eed_cafe_f00d_d00d);
    for _ in 0..300 {
        let len = (rng.next() % 1400) as usize;
        let alphabet = b"ab.:|#@,=[]c0123456789-+eE\n\xff_ ";
        let d: Vec<u8> = (0..len)
            .map(|_| {
                let r = rng.next();
                if r % 5 == 0 {
                    (r >> 8) as u8
                } else {
                    alphabet[(r >> 16) as usize % alphabet.len()]
                }
            })
            .collect();
        paced.send(&d);
    }
    // A TCP line over 4096 bytes closes that connection and is counted.
    let mut long = TcpStream::connect(gw.tcp.unwrap()).unwrap();
    let _ = long.write_all(&[b"long:".repeat(2000), b"1|c\n".to_vec()].concat());
    drop(long);
    paced.send(b"control.counter:1|c");
    sent_control += 1;
    let sent_datagrams = paced.sent as f64;

    let s = gw.wait_for("the control counter", |s| {
        s.count("control_counter") >= sent_control as f64
    });
    assert_eq!(s.count("statsd_exporter_udp_packets_total"), sent_datagrams);
    assert!(gw.alive(), "gateway died:\n{}", gw.log_text());
    assert_eq!(
        s.get("control_counter"),
        Some(sent_control as f64),
        "exact, not more"
    );
    promtool_check(&s.text);
    let s = gw.wait_for("too-long line counted", |s| {
        s.count("statsd_exporter_tcp_too_long_lines_total") >= 1.0
    });
    assert!(s.count("statsd_exporter_sample_errors_total{reason=\"malformed_line\"}") > 0.0);
    assert!(s.count("statsd_exporter_sample_errors_total{reason=\"malformed_value\"}") > 0.0);
    assert!(s.count("statsgate_labels_dropped_total") >= 3.0);
    assert_eq!(gw.get("/-/healthy").0, 200);
    assert!(!gw.log_text().contains("panicked"), "{}", gw.log_text());
}
