//! Shutdown always ends: with a half-sent HTTP request, an idle statsd TCP connection and a
//! scrape whose client stopped reading all open, SIGTERM still exits 0 within the grace
//! period (plus the little the rest of the shutdown takes), and pending relay lines go out.

mod abuse;
mod common;

use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use abuse::{non_reading_scrape, populate, slowloris};
use common::Gateway;

/// SIGTERM to the gateway; returns its exit status and how long it took to exit.
fn terminate(gw: &mut Gateway) -> (Option<std::process::ExitStatus>, Duration) {
    let start = Instant::now();
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(gw.pid() as i32, libc::SIGTERM) }, 0);
    let status = gw.wait_exit();
    (status, start.elapsed())
}

fn stuck_clients(gw: &Gateway) -> (TcpStream, TcpStream, TcpStream) {
    let half_sent = slowloris(gw.http);
    let statsd = TcpStream::connect(gw.tcp.expect("tcp listener")).unwrap();
    let stalled = non_reading_scrape(gw.http);
    // Let the scrape fill the socket buffers and stall.
    std::thread::sleep(Duration::from_millis(500));
    (half_sent, statsd, stalled)
}

#[test]
fn sigterm_with_stuck_clients_exits_0_within_the_default_grace_period() {
    let _heavy = abuse::heavy();
    let mut gw = Gateway::start(&[]);
    populate(&gw, 5_000);
    let _clients = stuck_clients(&gw);
    let (status, took) = terminate(&mut gw);
    let status = status.expect("the gateway did not exit within 10 s");
    assert_eq!(status.code(), Some(0), "{}", gw.log_text());
    // The stalled scrape is given the 5 s default, then cut.
    assert!(took < Duration::from_secs(8), "exit took {took:?}");
    assert!(
        gw.log_text().contains("grace period over"),
        "{}",
        gw.log_text()
    );
}

#[test]
fn sigterm_with_a_short_grace_period_and_pending_relay_lines() {
    let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
    relay
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let target = format!("--statsd.relay.address={}", relay.local_addr().unwrap());
    let _heavy = abuse::heavy();
    let mut gw = Gateway::start(&["--shutdown.grace-period=1s", &target]);
    populate(&gw, 5_000);
    // Drain what the big store's lines relayed, so the next packet is the one that matters.
    let mut buf = vec![0u8; 65536];
    let _ = relay.set_read_timeout(Some(Duration::from_millis(1500)));
    while relay.recv(&mut buf).is_ok() {}
    let _clients = stuck_clients(&gw);
    gw.send_udp(b"last.words:1|c");
    let (status, took) = terminate(&mut gw);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", gw.log_text());
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    // The line was relayed, by the periodic flush or by the flush on exit.
    relay
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut seen = String::new();
    while let Ok(n) = relay.recv(&mut buf) {
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if seen.contains("last.words:1|c") {
            break;
        }
    }
    assert!(seen.contains("last.words:1|c"), "relayed: {seen:?}");
}

#[test]
fn sigterm_without_in_flight_requests_exits_at_once() {
    let mut gw = Gateway::start(&[]);
    let _half_sent = slowloris(gw.http);
    let _statsd = TcpStream::connect(gw.tcp.expect("tcp listener")).unwrap();
    let _idle = TcpStream::connect(gw.http).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (status, took) = terminate(&mut gw);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", gw.log_text());
    // Nothing is in flight, so nothing waits for the grace period.
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
}
