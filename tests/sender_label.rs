//! `--statsd.sender-label`: against the real binary on loopback, senders bound to different
//! loopback addresses (Linux routes all of 127/8 to `lo`) send the same names, over UDP and
//! TCP, IPv4 and IPv6; with the flag each sender has its own series labelled with its
//! address, without it they share one as in statsd_exporter. Every (series, sender) pair is
//! a series under `--statsd.max-series` and `--statsd.max-series-per-metric`.

mod common;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};

use common::{Gateway, Samples, promtool_check, run_until_exit, series};
use socket2::{Domain, Socket, Type};

const OVERRIDES: &str = "statsgate_sender_label_overrides_total";

/// Sends one datagram from a new socket bound to `from` (any port).
fn udp_from(from: &str, to: SocketAddr, payload: &str) {
    let from: IpAddr = from.parse().unwrap();
    let socket = UdpSocket::bind(SocketAddr::new(from, 0)).unwrap();
    socket.send_to(payload.as_bytes(), to).unwrap();
}

/// Sends `payload` over a new TCP connection from `from` (any port), then closes it.
fn tcp_from(from: &str, to: SocketAddr, payload: &str) {
    let from: IpAddr = from.parse().unwrap();
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.write_all(payload.as_bytes()).unwrap();
    stream.flush().unwrap();
}

fn labelled(name: &str, instance: &str) -> String {
    series(name, &[("instance", instance)])
}

fn has(s: &Samples, series: &str, value: f64) -> bool {
    s.get(series) == Some(value)
}

#[test]
fn udp_senders_each_get_their_own_series_labelled_with_their_address() {
    let gw = Gateway::start(&["--statsd.sender-label=instance"]);
    let udp = gw.udp.unwrap();
    udp_from("127.0.0.1", udp, "shared.gauge:1|g");
    udp_from("127.0.0.2", udp, "shared.gauge:2|g");
    gw.wait_for("a series per sender", |s| {
        has(s, &labelled("shared_gauge", "127.0.0.1"), 1.0)
            && has(s, &labelled("shared_gauge", "127.0.0.2"), 2.0)
    });

    // New sockets, so new source ports: the same senders, the same series.
    udp_from("127.0.0.1", udp, "shared.gauge:+5|g\nshared.counter:1|c");
    udp_from("127.0.0.2", udp, "shared.gauge:7|g\nshared.counter:2|c");
    udp_from("127.0.0.1", udp, "shared.counter:3|c");
    // `statsgate_series` is published about once a second.
    let s = gw.wait_for("the updates", |s| {
        has(s, &labelled("shared_counter", "127.0.0.1"), 4.0)
            && has(s, &labelled("shared_counter", "127.0.0.2"), 2.0)
            && has(s, "statsgate_series", 4.0)
    });
    assert_eq!(s.get(&labelled("shared_gauge", "127.0.0.1")), Some(6.0));
    assert_eq!(s.get(&labelled("shared_gauge", "127.0.0.2")), Some(7.0));
    assert_eq!(s.get("shared_gauge"), None, "no unlabelled series");
    assert_eq!(s.get(OVERRIDES), Some(0.0));
    promtool_check(&s.text);
}

#[test]
fn a_sender_cannot_pose_as_another_and_the_override_is_counted() {
    let gw = Gateway::start(&["--statsd.sender-label=instance"]);
    let udp = gw.udp.unwrap();
    udp_from("127.0.0.2", udp, "spoof:1|g|#instance:127.0.0.1,k:v");
    udp_from("127.0.0.2", udp, "spoof:2|g|#instance:127.0.0.1,k:v");
    let want = series("spoof", &[("instance", "127.0.0.2"), ("k", "v")]);
    let s = gw.wait_for("the spoofed gauge", |s| {
        has(s, &want, 2.0) && s.count(OVERRIDES) == 2.0
    });
    assert!(!s.text.contains("127.0.0.1"), "{}", s.text);
}

#[test]
fn without_the_flag_senders_share_one_series_as_in_statsd_exporter() {
    let gw = Gateway::start(&[]);
    let udp = gw.udp.unwrap();
    udp_from("127.0.0.1", udp, "shared.gauge:1|g\nshared.counter:1|c");
    gw.wait_for("the first sender", |s| has(s, "shared_gauge", 1.0));
    udp_from("127.0.0.2", udp, "shared.gauge:+2|g\nshared.counter:1|c");
    tcp_from("127.0.0.3", gw.tcp.unwrap(), "shared.counter:1|c\n");
    let s = gw.wait_for("every sender", |s| has(s, "shared_counter", 3.0));
    assert_eq!(s.get("shared_gauge"), Some(3.0));
    assert!(!s.text.contains("instance"), "{}", s.text);
    assert!(!s.text.contains(OVERRIDES), "no new self-metric");
}

#[test]
fn tcp_connections_are_labelled_with_their_peer_address() {
    let gw = Gateway::start(&["--statsd.sender-label=sender"]);
    let tcp = gw.tcp.unwrap();
    tcp_from("127.0.0.1", tcp, "tcp.gauge:1|g\ntcp.gauge:+1|g\n");
    tcp_from("127.0.0.2", tcp, "tcp.gauge:5|g\ntcp.timer:10|ms\n");
    gw.wait_for("the second peer", |s| {
        has(s, &series("tcp_gauge", &[("sender", "127.0.0.2")]), 5.0)
    });
    // A UDP datagram from the same host is the same sender.
    udp_from("127.0.0.2", gw.udp.unwrap(), "tcp.gauge:+1|g");
    let s = gw.wait_for("a series per peer", |s| {
        has(s, &series("tcp_gauge", &[("sender", "127.0.0.1")]), 2.0)
            && has(s, &series("tcp_gauge", &[("sender", "127.0.0.2")]), 6.0)
    });
    assert_eq!(
        s.get(&series("tcp_timer_count", &[("sender", "127.0.0.2")])),
        Some(1.0)
    );
    promtool_check(&s.text);
}

#[test]
fn ipv6_senders_are_shown_in_canonical_form() {
    let gw = Gateway::start(&[
        "--statsd.sender-label=instance",
        "--statsd.listen-udp=[::1]:0",
        "--statsd.listen-tcp=[::1]:0",
    ]);
    udp_from("::1", gw.udp.unwrap(), "v6.gauge:1|g");
    tcp_from("::1", gw.tcp.unwrap(), "v6.counter:2|c\n");
    gw.wait_for("the IPv6 sender's series", |s| {
        has(s, &labelled("v6_gauge", "::1"), 1.0) && has(s, &labelled("v6_counter", "::1"), 2.0)
    });
}

#[test]
fn unixgram_senders_have_no_address_so_the_label_is_left_off() {
    let gw = Gateway::start_with_unixgram(&["--statsd.sender-label=instance"]);
    gw.send_unixgram(b"local.gauge:1|g|#instance:10.9.9.9,k:v\nlocal.plain:2|g");
    udp_from("127.0.0.2", gw.udp.unwrap(), "local.plain:3|g");
    let s = gw.wait_for("the unixgram series", |s| {
        has(s, &series("local_gauge", &[("k", "v")]), 1.0)
            && has(s, "local_plain", 2.0)
            && has(s, &labelled("local_plain", "127.0.0.2"), 3.0)
    });
    assert_eq!(s.count(OVERRIDES), 1.0, "the tag was removed");
    assert!(!s.text.contains("10.9.9.9"), "{}", s.text);
}

const SENDERS: u8 = 20;

#[test]
fn every_sender_is_a_series_under_max_series() {
    let gw = Gateway::start(&["--statsd.sender-label=instance", "--statsd.max-series=5"]);
    let udp = gw.udp.unwrap();
    for i in 1..=SENDERS {
        udp_from(&format!("127.0.0.{i}"), udp, "limited:1|g");
    }
    let dropped = f64::from(SENDERS - 5);
    let s = gw.wait_for("the senders beyond the limit to be dropped", |s| {
        s.count("statsgate_events_dropped_total{reason=\"max_series\"}") == dropped
            && has(s, "statsgate_series", 5.0)
    });
    let kept = (1..=SENDERS)
        .filter(|i| s.get(&labelled("limited", &format!("127.0.0.{i}"))) == Some(1.0))
        .count();
    assert_eq!(kept, 5, "{}", s.text);
}

#[test]
fn every_sender_is_a_series_under_max_series_per_metric() {
    let gw = Gateway::start(&[
        "--statsd.sender-label=instance",
        "--statsd.max-series-per-metric=3",
    ]);
    let udp = gw.udp.unwrap();
    for i in 1..=SENDERS {
        udp_from(
            &format!("127.0.0.{i}"),
            udp,
            &format!("limited:1|g\nown{i}:1|g"),
        );
    }
    let dropped = f64::from(SENDERS - 3);
    let s = gw.wait_for("the senders beyond the limit to be dropped", |s| {
        s.count("statsgate_events_dropped_total{reason=\"max_series_per_metric\"}") == dropped
            && s.count("statsd_exporter_lines_total") == f64::from(2 * SENDERS)
            && has(s, "statsgate_series", f64::from(3 + SENDERS))
    });
    let kept = (1..=SENDERS)
        .filter(|i| s.get(&labelled("limited", &format!("127.0.0.{i}"))) == Some(1.0))
        .count();
    assert_eq!(kept, 3, "{}", s.text);
}

#[test]
fn a_bad_label_name_is_refused_at_startup_and_by_check_config() {
    for args in [
        &["--statsd.sender-label=sender-ip"][..],
        &["--check-config", "--statsd.sender-label=sender-ip"],
        &["--check-config", "--statsd.sender-label=__address__"],
    ] {
        let (status, stderr) = run_until_exit(args);
        let status = status.expect("exits by itself");
        assert!(!status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains("--statsd.sender-label"), "{stderr}");
    }
    let (status, stderr) = run_until_exit(&["--check-config", "--statsd.sender-label=instance"]);
    assert!(status.expect("exits by itself").success(), "{stderr}");
}
