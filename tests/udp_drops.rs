//! The UDP sockets' receive buffers, through the real binary: the kernel's drop count when
//! one overflows is what `statsd_exporter_udp_packet_drops_total` says (and the log), even
//! when no datagram arrives after the drops; and the buffer the listener asks for and
//! announces.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::receivers::{Received, ScriptedReceiver};
use common::{Gateway, Samples};

const DROPS: &str = "statsd_exporter_udp_packet_drops_total";
const PACKETS: &str = "statsd_exporter_udp_packets_total";

/// The summed `drops` column of `/proc/net/udp` over the `sockets` sockets bound to
/// `127.0.0.1:port`.
fn kernel_drops(port: u16, sockets: usize) -> u64 {
    // The kernel writes /proc/net/udp a page at a time from a hash table that other sockets
    // change in between, so one read can miss a socket that exists: read again until one
    // read has them all.
    let local = format!("0100007F:{port:04X}");
    for _ in 0..20 {
        let text = std::fs::read_to_string("/proc/net/udp").expect("read /proc/net/udp");
        let drops: Vec<u64> = text
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.get(1) == Some(&local.as_str()) && f.len() >= 13)
            .map(|f| f[12].parse().expect("drops in /proc/net/udp"))
            .collect();
        if drops.len() == sockets {
            return drops.iter().sum();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the gateway's {sockets} UDP sockets on 127.0.0.1:{port} are not in /proc/net/udp");
}

/// Sends `signal` to the gateway.
fn signal(gw: &Gateway, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(gw.pid()).expect("pid fits pid_t");
    // SAFETY: kill only sends a signal to our own child process.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

/// Stops the gateway, floods its `sockets` UDP sockets (4096-byte buffers) with `sent`
/// datagrams, reads the kernel's drop count, and lets the gateway run again. Returns the count.
fn overflow(gw: &Gateway, sockets: usize, sent: u64) -> u64 {
    let udp = gw.udp.expect("udp listener");
    assert_eq!(kernel_drops(udp.port(), sockets), 0);
    // Stopped, the gateway reads nothing: its small buffers fill and the kernel drops the
    // rest. Senders on several loopback addresses reach both sockets of the group.
    signal(gw, libc::SIGSTOP);
    let senders: Vec<UdpSocket> = (2..10)
        .map(|last| UdpSocket::bind(SocketAddr::from(([127, 0, 0, last], 0))).unwrap())
        .collect();
    let payload = [b'x'; 1000];
    for i in 0..sent as usize {
        senders[i % senders.len()].send_to(&payload, udp).unwrap();
    }
    let dropped = kernel_drops(udp.port(), sockets);
    signal(gw, libc::SIGCONT);
    assert!(
        dropped > sent / 2,
        "the flood overflowed the buffers: {dropped}"
    );
    dropped
}

#[test]
fn drops_no_later_datagram_reports_are_counted_exactly() {
    let sockets = 2;
    let gw = Gateway::start(&[
        "--statsd.read-buffer=4096",
        &format!("--statsd.udp-sockets={sockets}"),
    ]);
    let udp = gw.udp.expect("udp listener");
    let before = Samples::parse(&gw.scrape());
    assert_eq!(before.get(DROPS), Some(0.0), "{}", before.text);
    let sent = 400;
    let dropped = overflow(&gw, sockets, sent);

    // Nothing is sent after the flood: the drops are read from the sockets themselves.
    let scraped = gw.wait_for("the queued datagrams read", |s| {
        s.count(PACKETS) as u64 + dropped == sent
    });
    assert_eq!(scraped.get(DROPS), Some(dropped as f64), "{}", scraped.text);
    assert_eq!(kernel_drops(udp.port(), sockets), dropped);
    // And again later, unchanged: the count is read, not added up.
    let again = Samples::parse(&gw.scrape());
    assert_eq!(again.get(DROPS), Some(dropped as f64), "{}", again.text);

    // The scrape that found the drops also logged them.
    let deadline = Instant::now() + common::WAIT;
    let warned = loop {
        let warned = gw.log_events().into_iter().find(|e| {
            e.get("listener").and_then(|l| l.as_str()) == Some("udp")
                && e.get("total").and_then(|t| t.as_u64()).is_some()
        });
        if warned.is_some() || Instant::now() > deadline {
            break warned;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let warned = warned.unwrap_or_else(|| panic!("no drop warning:\n{}", gw.log_text()));
    assert_eq!(warned["level"], "WARN", "{warned}");
    assert_eq!(warned["total"].as_u64(), Some(dropped), "{warned}");
    assert_eq!(warned["dropped"].as_u64(), Some(dropped), "{warned}");
}

#[test]
fn remote_write_snapshots_read_the_drops_too() {
    let rx = ScriptedReceiver::start(&[], 204);
    let sockets = 2;
    let gw = Gateway::start(&[
        "--statsd.read-buffer=4096",
        &format!("--statsd.udp-sockets={sockets}"),
        &format!("--remote-write.url={}", rx.write_url()),
        "--remote-write.interval=200ms",
    ]);
    let dropped = overflow(&gw, sockets, 400);
    // No scrape and no later datagram: the snapshot itself reads the sockets.
    let last_drops = |got: &[Received]| {
        got.iter()
            .flat_map(|r| &r.samples)
            .filter(|(series, _, _)| series.split('{').next() == Some(DROPS))
            .max_by_key(|(_, _, timestamp)| *timestamp)
            .map(|(_, value, _)| *value)
    };
    let got = rx.wait_for("the drops pushed", common::WAIT, |got| {
        last_drops(got) == Some(dropped as f64)
    });
    assert_eq!(last_drops(&got), Some(dropped as f64));
}

/// The UDP listener's announcement: `read_buffer` (SO_RCVBUF read back, twice the usable
/// bytes) and `read_buffer_set` (the option that set it).
fn announced_buffer(gw: &Gateway) -> (u64, String) {
    gw.log_events()
        .iter()
        .find_map(|e| {
            (e.get("listener")?.as_str()? == "udp").then_some(())?;
            Some((
                e.get("read_buffer")?.as_u64()?,
                e.get("read_buffer_set")?.as_str()?.to_owned(),
            ))
        })
        .unwrap_or_else(|| panic!("no UDP receive buffer in the log:\n{}", gw.log_text()))
}

fn rmem_max() -> u64 {
    let text = std::fs::read_to_string("/proc/sys/net/core/rmem_max").expect("rmem_max");
    text.trim().parse().expect("rmem_max is a number")
}

/// Whether this process (so the gateway it starts) has `CAP_NET_ADMIN`.
fn has_net_admin() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff in /proc/self/status");
    u64::from_str_radix(caps.trim(), 16).expect("CapEff is hexadecimal") & (1 << 12) != 0
}

#[test]
fn without_the_flag_the_buffer_is_the_largest_allowed_up_to_8_mib() {
    let gw = Gateway::start(&[]);
    let (granted, option) = announced_buffer(&gw);
    let wanted = 8u64 << 20;
    if has_net_admin() {
        assert_eq!((granted, option.as_str()), (2 * wanted, "SO_RCVBUFFORCE"));
    } else {
        assert_eq!(
            (granted, option.as_str()),
            (2 * wanted.min(rmem_max()), "SO_RCVBUF")
        );
    }
    // The kernel's default is 208 KiB, twice that read back.
    assert!(granted > 2 * 208 * 1024, "{granted}");
}

#[test]
fn an_explicit_buffer_is_set_as_statsd_exporter_sets_it() {
    let gw = Gateway::start(&["--statsd.read-buffer=65536"]);
    assert_eq!(
        announced_buffer(&gw),
        (2 * 65536u64.min(rmem_max()), "SO_RCVBUF".to_owned())
    );

    let gw = Gateway::start(&["--statsd.read-buffer=0"]);
    let event = gw
        .log_events()
        .into_iter()
        .find(|e| e.get("listener").and_then(|l| l.as_str()) == Some("udp"))
        .expect("the UDP listener is announced");
    assert_eq!(event.get("read_buffer"), None, "{event}");
    assert_eq!(
        event.get("read_buffer_set").and_then(|s| s.as_str()),
        Some("system default"),
        "{event}"
    );
}

const QUEUED: &str = "statsgate_udp_packets_queued_total";
const LINES: &str = "statsd_exporter_lines_total";

/// Sends `datagrams` datagrams of 25 lines each, every line a new counter, four datagrams
/// every 250 µs or so from one socket, and returns the lines sent: about 400 new series a
/// millisecond, more than a gateway (a debug build all the more) can create, so it falls
/// behind while they arrive, yet few enough between two reads ahead for any receive buffer.
fn new_series_burst(gw: &Gateway, datagrams: usize) -> u64 {
    let udp = gw.udp.expect("udp listener");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut lines = 0;
    for d in 0..datagrams {
        // Joined, not ended, by newlines: statsd_exporter counts the empty line after a final
        // newline in statsd_exporter_lines_total too.
        let payload = (0..25)
            .map(|l| format!("burst.series_{d}_{l}:1|c"))
            .collect::<Vec<_>>()
            .join("\n");
        client.send_to(payload.as_bytes(), udp).unwrap();
        lines += 25;
        if d % 4 == 3 {
            std::thread::sleep(Duration::from_micros(250));
        }
    }
    lines
}

/// Through the real binary: a burst of new series slows the receive thread, which reads its
/// socket ahead into the queue (`--statsd.udp-packet-queue-size`, default 10,000) and loses
/// nothing; the flag's 0 turns the queue off.
#[test]
fn a_receive_thread_slowed_by_new_series_reads_ahead_into_its_queue() {
    let gw = Gateway::start(&["--statsd.udp-sockets=1"]);
    let sent = new_series_burst(&gw, 400);
    let s = gw.wait_for("every line counted", |s| s.count(LINES) >= sent as f64);
    assert_eq!(s.count(LINES), sent as f64);
    assert_eq!(s.count(DROPS), 0.0);
    assert!(
        s.count(QUEUED) > 0.0,
        "handling 10,000 first sights took the thread away from its socket for over 1 ms at a \
         time, so it read ahead: {}",
        s.count(QUEUED)
    );
    let event = gw
        .log_events()
        .into_iter()
        .find(|e| e.get("listener").and_then(|l| l.as_str()) == Some("udp"))
        .expect("the UDP listener is announced");
    assert_eq!(
        event.get("packet_queue").and_then(|q| q.as_u64()),
        Some(10_000)
    );

    let gw = Gateway::start(&["--statsd.udp-sockets=1", "--statsd.udp-packet-queue-size=0"]);
    let sent = new_series_burst(&gw, 40);
    let s = gw.wait_for("every line counted or dropped", |s| {
        s.count(LINES) + 25.0 * s.count(DROPS) >= sent as f64
    });
    assert_eq!(s.count(QUEUED), 0.0, "no queue");
}
