//! The HTTP server under abuse, against the real binary on loopback: scrapers that never
//! read, slowloris headers, idle connections, and more connections than the cap.

mod abuse;
mod common;

use std::time::Duration;

use abuse::{
    closed_within, ensure_open_files, non_reading_scrape, populate, proc_status, slowloris,
    status_waiting, timed_scrape, wait_idle,
};
use common::{Gateway, Samples};
use statsgate::expose::SCRAPE_STALL_EVICT;

/// Series in the big store: ~3.7 MB of text in 5,000 long series, more than a
/// non-reading client's socket buffers and the gateway's own per-scrape buffers hold.
const BIG: usize = 5_000;

/// Opens `n` connections from 4 threads: on a loaded machine one thread opening 1,600
/// connections in turn takes longer than the test should.
fn open_many(n: usize, open: impl Fn() -> std::net::TcpStream + Sync) -> Vec<std::net::TcpStream> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| (0..n / 4).map(|_| open()).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("opener thread"))
            .collect()
    })
}

#[test]
fn non_reading_scrapers_and_slowloris_cannot_lock_a_scraper_out() {
    // 600 + 1,000 sockets here, as many in the gateway, plus its own.
    ensure_open_files(8192);
    let _heavy = abuse::heavy();
    let gw = Gateway::start(&[]);
    let size = populate(&gw, BIG);
    assert!(
        size > 3_000_000,
        "the scrape must not fit in buffers: {size}"
    );

    let opening = std::time::Instant::now();
    let mut stalled = open_many(600, || non_reading_scrape(gw.http));
    let slow = open_many(1000, || slowloris(gw.http));
    eprintln!("opened 1,600 connections in {:?}", opening.elapsed());
    // The 16 served scrapes render until their buffers fill, then stall; once the gateway
    // is idle every client is in place, and after SCRAPE_STALL_EVICT their slots may be taken.
    wait_idle(gw.pid(), Duration::from_secs(30));
    std::thread::sleep(SCRAPE_STALL_EVICT);

    let (status, len, took) = timed_scrape(&gw, Duration::from_secs(10));
    assert_eq!(status, 200);
    assert!(len > 3_000_000, "a whole scrape: {len}");
    assert!(took < Duration::from_secs(2), "scrape took {took:?}");

    let rss_kb = proc_status(gw.pid(), "VmRSS");
    let threads = proc_status(gw.pid(), "Threads");
    eprintln!(
        "with 600 non-reading scrapers and 1000 slowloris: RSS {rss_kb} kB, {threads} threads, scrape {took:?}"
    );
    assert!(rss_kb < 200 * 1024, "RSS {rss_kb} kB");
    // 16 scrape slots, 2 async workers, receive and maintenance threads: not one per client.
    assert!(threads < 64, "{threads} threads");
    drop(slow);

    let s = Samples::parse(&gw.scrape());
    // Only the 16 slots, and the scrapes that took a slot from one stalled for a second,
    // were ever served; the others were turned away at once.
    let took_over =
        s.count("statsgate_http_connections_closed_total{reason=\"stalled_scrape_evicted\"}");
    let (mut ok, mut busy, mut none) = (0, 0, 0);
    for st in stalled.iter_mut() {
        match status_waiting(st) {
            200 => ok += 1,
            503 => busy += 1,
            _ => none += 1,
        }
    }
    assert!(
        f64::from(ok) <= 16.0 + took_over,
        "{ok} non-reading scrapes were served, {took_over} slots taken over"
    );
    // The rest got 503 at once, or, when the 1,000 slowloris connections arrived before the
    // gateway had read their request, were evicted as connections still waiting for one.
    // How many of each depends on the machine's load, so only the sum is asserted.
    assert_eq!(ok + busy + none, 600);
    assert!(
        busy > 0,
        "some scrapes were turned away with 503: {busy} got 503, {none} nothing"
    );
    let s = Samples::parse(&gw.scrape());
    assert!(s.count("statsgate_http_scrapes_rejected_total") >= f64::from(busy));
    assert!(
        s.count("statsgate_http_connections_closed_total{reason=\"evicted\"}") >= 500.0,
        "1,600 connections against a cap of 1,024 evict the longest idle:\n{}",
        s.text
            .lines()
            .filter(|l| l.contains("statsgate_http"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn connections_beyond_the_cap_evict_idle_ones_or_are_closed() {
    let _heavy = abuse::heavy();
    let gw = Gateway::start(&["--web.max-connections=8", "--web.max-concurrent-scrapes=8"]);
    populate(&gw, BIG);
    // The scrapes that populate made have closed their connections by the time the gateway
    // is idle; the table then holds only this test's connections.
    wait_idle(gw.pid(), Duration::from_secs(30));

    // Eight idle connections fill the table; a ninth evicts the oldest.
    let mut idle: Vec<_> = (0..8)
        .map(|_| {
            let s = std::net::TcpStream::connect(gw.http).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            s
        })
        .collect();
    let _ninth = std::net::TcpStream::connect(gw.http).unwrap();
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(2)).is_some(),
        "the longest idle connection is evicted"
    );
    drop(idle);
    drop(_ninth);
    std::thread::sleep(Duration::from_millis(200));

    // Eight scrapes stalled by their clients: every connection is busy, so a new one is
    // closed at once, without an answer.
    let stalled: Vec<_> = (0..8).map(|_| non_reading_scrape(gw.http)).collect();
    // Idle once all eight requests are read and their scrapes have stalled.
    wait_idle(gw.pid(), Duration::from_secs(30));
    let mut extra = non_reading_scrape(gw.http);
    assert_eq!(status_waiting(&mut extra), 0, "no response beyond the cap");
    let closed = closed_within(&mut extra, Duration::from_secs(2));
    assert!(
        closed.is_some(),
        "a connection beyond the cap must be closed"
    );
    drop(stalled);
    // The stalled scrapes left; the gateway serves again.
    std::thread::sleep(Duration::from_millis(300));
    let s = Samples::parse(&gw.scrape());
    assert!(s.count("statsgate_http_connections_refused_total") >= 1.0);
}

#[test]
fn slow_and_idle_connections_are_closed_after_their_timeouts() {
    let gw = Gateway::start(&["--web.read-header-timeout=1s", "--web.idle-timeout=2s"]);

    // A header dripping a byte every 100 ms is still cut at 1 s from its first byte.
    let mut s = slowloris(gw.http);
    let start = std::time::Instant::now();
    let dripper = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            for _ in 0..50 {
                if w.write_all(b"a").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let took = closed_within(&mut s, Duration::from_secs(5)).expect("slowloris closed");
    let total = start.elapsed();
    assert!(
        total >= Duration::from_millis(900) && total < Duration::from_secs(3),
        "closed after {took:?}"
    );
    let _ = dripper.join();

    // A connection that never sends anything gets the same header timeout.
    let mut silent = std::net::TcpStream::connect(gw.http).unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(5)).expect("silent closed");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // After a complete exchange a keep-alive connection may idle for the idle timeout.
    let mut ka = std::net::TcpStream::connect(gw.http).unwrap();
    {
        use std::io::{Read, Write};
        ka.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        let n = ka.read(&mut buf).unwrap();
        assert!(
            std::str::from_utf8(&buf[..n])
                .unwrap()
                .starts_with("HTTP/1.1 200")
        );
    }
    let took = closed_within(&mut ka, Duration::from_secs(6)).expect("idle closed");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(4),
        "idle connection closed after {took:?}"
    );

    let s = Samples::parse(&gw.scrape());
    assert!(
        s.count("statsgate_http_connections_closed_total{reason=\"read_header_timeout\"}") >= 2.0
    );
    assert!(s.count("statsgate_http_connections_closed_total{reason=\"idle_timeout\"}") >= 1.0);
}

#[test]
fn a_scrape_whose_client_stops_reading_is_dropped_after_the_write_timeout() {
    let _heavy = abuse::heavy();
    let gw = Gateway::start(&["--web.write-timeout=1s"]);
    populate(&gw, BIG);
    let mut s = non_reading_scrape(gw.http);
    std::thread::sleep(Duration::from_millis(2500));
    let samples = gw.wait_for("the write timeout", |s| {
        s.count("statsgate_http_connections_closed_total{reason=\"write_timeout\"}") >= 1.0
    });
    drop(samples);
    // What the client finds when it reads at last: part of the scrape, then the end.
    assert!(closed_within(&mut s, Duration::from_secs(5)).is_some());
}
