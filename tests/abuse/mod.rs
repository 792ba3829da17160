//! Abusive HTTP clients for the limit and shutdown suites: scrapers that never read,
//! slowloris headers, and a store big enough that a scrape cannot hide in socket buffers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::Gateway;

/// Raises this process's soft open-files limit to at least `want` (up to the hard limit);
/// the gateway, a child, inherits it. Panics when the hard limit is lower: the test would
/// not measure what it claims.
pub fn ensure_open_files(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur >= want {
        return;
    }
    assert!(
        lim.rlim_max >= want,
        "this test needs {want} open files; the hard limit is {}",
        lim.rlim_max
    );
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: `raised` is a valid rlimit, read only.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) }, 0);
}

/// Creates `series` gauges of ~750 bytes each in the exposition (over statsd TCP, which
/// does not drop), waits until the gateway holds them, and returns the size of a scrape.
/// Polls gently: a debug build on a shared machine ingests a few 10k lines a second.
pub fn populate(gw: &Gateway, series: usize) -> usize {
    let pad = "p".repeat(700);
    let mut payload = Vec::with_capacity(series * 760);
    for i in 0..series {
        payload.extend_from_slice(format!("abuse_big:1|g|#id:{i},pad:{pad}\n").as_bytes());
    }
    gw.send_tcp(&payload);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text, _) = timed_scrape_text(gw, Duration::from_secs(30));
        let held = text
            .lines()
            .find_map(|l| l.strip_prefix("statsgate_series "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if held >= series as f64 {
            return text.len();
        }
        assert!(
            Instant::now() < deadline,
            "the gateway holds {held} of {series} series after 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Sends a whole scrape request and never reads the answer. A small receive buffer, as an
/// attacker would choose, keeps the kernel from absorbing much of the scrape: the gateway
/// stalls after a megabyte or so of it.
pub fn non_reading_scrape(addr: SocketAddr) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    sock.connect(&addr.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("send request");
    s
}

/// Starts a request header and never finishes it.
pub fn slowloris(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        .expect("send partial header");
    s
}

/// Reads (and discards) until the server closes the connection; returns how long that took,
/// or `None` if it was still open after `within`.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(start.elapsed());
            }
            Err(_) => return None,
        }
    }
}

/// The status line's code of a response already waiting in the socket (0 if none).
pub fn status_waiting(s: &mut TcpStream) -> u16 {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 12];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    std::str::from_utf8(&buf[..got])
        .ok()
        .and_then(|t| t.strip_prefix("HTTP/1.1 "))
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// A field of /proc/PID/status, in its first unit (kB for memory).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// One plain scrape with a deadline; returns (status, body, time taken).
pub fn timed_scrape_text(gw: &Gateway, timeout: Duration) -> (u16, String, Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let start = Instant::now();
    let mut resp = agent
        .get(&format!("http://{}/metrics", gw.http))
        .call()
        .expect("scrape");
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .expect("scrape body");
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        start.elapsed(),
    )
}

/// One plain scrape with a deadline; returns (status, body length, time taken).
pub fn timed_scrape(gw: &Gateway, timeout: Duration) -> (u16, usize, Duration) {
    let (status, body, took) = timed_scrape_text(gw, timeout);
    (status, body.len(), took)
}

/// Serialises the heavy tests of one binary: each builds a big store and floods a gateway,
/// and the machine has two cores.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// CPU time (user + system, in clock ticks) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)
}

/// Waits until the process is nearly idle (under 10% of a core over half a second): the
/// abusive clients are all in place and the gateway is waiting on them, not working.
pub fn wait_idle(pid: u32, within: Duration) {
    let deadline = Instant::now() + within;
    let mut last = cpu_ticks(pid);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = cpu_ticks(pid);
        if now.saturating_sub(last) <= 5 {
            return;
        }
        last = now;
        assert!(
            Instant::now() < deadline,
            "the gateway stayed busy for {within:?}"
        );
    }
}
