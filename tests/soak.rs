//! Soak and abuse run (issue 8): the real binary under a steady mix of valid and malformed
//! statsd traffic for a bounded time, with everything a bad day brings at once: a flood of
//! new names against `--statsd.max-series`, TCP clients that vanish mid-line (FIN and RST),
//! a client that idles on a partial line, HTTP clients that read a few bytes a second or
//! never, a scrape every second, and a mapping reload every quarter of the run, 5 to 30 s
//! apart (SIGHUP and `/-/reload` in turn, two mapping files in turn).
//!
//! Asserted at the end: every control line (counters with known totals, gauges with known
//! last values, over UDP and TCP, each datagram and batch shared with a malformed line) is
//! counted exactly, with no kernel drop; every scrape of the well-behaved scraper was a 200
//! that parses, none slower than [`MAX_SCRAPE`]; every reload succeeded and took effect;
//! the series held never exceeded the limit while the flood was refused and counted; RSS
//! after the warm-up stayed within [`RSS_MARGIN`] and [`RSS_SLACK`] of the warm-up's peak.
//! One summary line (`soak: ...`) is printed before the assertions.
//!
//! Length and load come from the environment, so the same code is CI's short run and the
//! 10-minute run of `scripts/soak.sh`: `STATSGATE_SOAK_SECS` (default 40: the whole test,
//! start-up and drain included, stays under a minute on a loaded machine) and
//! `STATSGATE_SOAK_RATE`, background lines asked for per second (default [`DEFAULT_RATE`]).
//!
//! UDP senders never overrun the gateway's receive buffer: before each burst they read the
//! socket's queue from `/proc/net/udp` and wait while it is over a quarter full. A starved
//! gateway then shows as a lower achieved rate and a pause time in the summary, not as a
//! kernel drop blamed on the gateway; kernel drops are still asserted to be zero.

mod abuse;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Gateway, Samples, TempDir, XorShift, promtool_check, series};

/// Background lines per second when `STATSGATE_SOAK_RATE` is not set: about what a debug
/// build ingests beside everything else on a 2-core machine (when it cannot, the senders
/// hold back and the summary shows the rate achieved).
const DEFAULT_RATE: u64 = 30_000;
/// `--statsd.max-series`: small, so the flood reaches it within the first seconds.
const MAX_SERIES: usize = 5_000;
/// New names per second from the flood; each lives for [`FLOOD_TTL`] once stored, so the
/// flood wants ~10,000 series and is refused for half of them: the store churns at the limit.
const FLOOD_RATE: u64 = 2_000;
const FLOOD_TTL: &str = "5s";
/// Control groups (six lines each) per second, over UDP and over TCP each.
const CONTROL_RATE: u64 = 500;
/// `--statsd.tcp-idle-timeout` and `--web.write-timeout`: short, so that the idle client
/// (and any slow HTTP reader that stalls a response) is cut and comes back several times
/// within a short run.
const TCP_IDLE_TIMEOUT: &str = "5s";
const WEB_WRITE_TIMEOUT: &str = "5s";
/// The slowest a well-behaved scrape may be.
const MAX_SCRAPE: Duration = Duration::from_secs(2);
/// RSS after the warm-up may exceed the warm-up's peak by this fraction plus [`RSS_SLACK`]:
/// the store is full (at the limit) by then, so what remains is allocator noise, a scrape's
/// buffers and the abusive clients coming and going. A leak of a kilobyte per connection or
/// a hundred bytes per expired series grows past it within the 10-minute run (~27k TCP
/// connections, ~480k flood series stored and expired).
const RSS_MARGIN: f64 = 0.2;
const RSS_SLACK: u64 = 8 << 20;
/// The bound on each wait at the end (the gateway catching up on what is queued).
const DRAIN: Duration = Duration::from_secs(30);

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------------------
// Mapping files

/// Rules both mapping files have: the flood's short TTL, and histograms for one timer family.
const RULES: &str = "mappings:
- match: \"soak.flood.*\"
  name: \"soak_flood_${1}\"
  ttl: FLOOD_TTL
- match: \"soak.bg.hist.*\"
  name: \"soak_bg_hist\"
  observer_type: histogram
  histogram_options:
    buckets: [0.01, 0.1, 1]
  labels:
    which: \"$1\"
";

/// The two mapping files the reloads alternate between, and how many rules each has (what
/// `statsd_exporter_loaded_mappings` shows once it is loaded). Neither renames a series the
/// run sends, so a reload must leave every count where it was.
fn mapping_file(second: bool) -> (String, f64) {
    let rules = RULES.replace("FLOOD_TTL", FLOOD_TTL);
    if second {
        let extra = "- match: \"soak.reload.*\"\n  name: \"soak_reload_${1}\"\n";
        (format!("{rules}{extra}"), 3.0)
    } else {
        (rules, 2.0)
    }
}

/// Replaces the file in one step, so a reload never reads half of it.
fn write_mapping(path: &Path, second: bool) -> f64 {
    let (text, rules) = mapping_file(second);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write mapping");
    std::fs::rename(&tmp, path).expect("rename mapping");
    rules
}

// ---------------------------------------------------------------------------------------
// Traffic

/// One control group: six control lines and one malformed neighbour, which must not disturb
/// them. UDP gauges are set to the group's number; TCP gauges go up by one per group.
fn control_group(proto: &str, seq: u64) -> Vec<u8> {
    let gauge = if proto == "udp" {
        format!("{seq}")
    } else {
        "+1".to_string()
    };
    format!(
        "soak.ctl.{proto}.count:1|c\n\
         soak.ctl.{proto}.big:7|c\n\
         soak.ctl.{proto}.sampled:1|c|@0.25\n\
         soak.ctl.{proto}.tagged:2|c|#ctl:yes,proto:{proto}\n\
         soak.ctl.{proto}.gauge:{gauge}|g\n\
         soak.ctl.{proto}.timer:{}|ms\n\
         soak.ctl.{proto}.count:oops|c",
        seq % 100
    )
    .into_bytes()
}

/// Control lines per group.
const CONTROL_LINES: u64 = 6;

/// Creates the control series (the timer with one observation) before anything else runs.
fn control_seed(proto: &str) -> String {
    format!(
        "soak.ctl.{proto}.count:0|c\nsoak.ctl.{proto}.big:0|c\nsoak.ctl.{proto}.sampled:0|c\n\
         soak.ctl.{proto}.tagged:0|c|#ctl:yes,proto:{proto}\nsoak.ctl.{proto}.gauge:0|g\n\
         soak.ctl.{proto}.timer:1|ms\n"
    )
}

/// What every control series must show after `groups` groups over `proto` (plus the seed).
fn control_expected(proto: &str, groups: u64) -> Vec<(String, f64)> {
    let n = groups as f64;
    let name = |what: &str| format!("soak_ctl_{proto}_{what}");
    vec![
        (name("count"), n),
        (name("big"), 7.0 * n),
        (name("sampled"), 4.0 * n),
        (
            series(&name("tagged"), &[("ctl", "yes"), ("proto", proto)]),
            2.0 * n,
        ),
        (name("gauge"), n),
        (name("timer_count"), n + 1.0),
    ]
}

/// Background series (counters, gauges, summaries, histograms, DogStatsD and InfluxDB
/// tags, sample rates) and malformed lines of every kind the gateway refuses.
const BG_COUNTERS: u64 = 200;
const BG_GAUGES: u64 = 100;
const BG_TIMERS: u64 = 20;
const BG_HISTOGRAMS: u64 = 10;

/// One background line and whether it is malformed (or refused by a limit).
fn background_line(rng: &mut XorShift) -> (Vec<u8>, bool) {
    let i = rng.below(1_000);
    let valid = match rng.below(100) {
        0..=29 => format!("soak.bg.c{}:{}|c", i % BG_COUNTERS, 1 + i % 5),
        30..=44 => format!("soak.bg.g{}:{}|g", i % BG_GAUGES, i),
        45..=49 => format!("soak.bg.g{}:+{}|g", i % BG_GAUGES, i % 7),
        50..=56 => format!("soak.bg.t{}:{}|ms", i % BG_TIMERS, i),
        57..=62 => format!("soak.bg.hist.{}:{}|ms", i % BG_HISTOGRAMS, i),
        63..=67 => format!("soak.bg.d:1|c|#env:e{},svc:s{}", i % 5, i % 4),
        68..=71 => format!("soak.bg.i,host=h{}:1|c", i % 3),
        72..=74 => "soak.bg.s:1|c|@0.1".to_string(),
        _ => String::new(),
    };
    if !valid.is_empty() {
        return (valid.into_bytes(), false);
    }
    let bad = match rng.below(13) {
        0 => "soak.bad.type:1|zz".to_string(),
        1 => "soak.bad.value:abc|c".to_string(),
        2 => "soak.bad.nan:NaN|g".to_string(),
        3 => "soak.bad.inf:+Inf|c".to_string(),
        4 => "soak.bad.rate:1|ms|@-1".to_string(),
        5 => "soak.bad.novalue|c".to_string(),
        6 => ":1|c".to_string(),
        7 => "soak.bad.empty:|c".to_string(),
        // Longer than --statsd.max-metric-name-length (1024).
        8 => format!("soak.long.{}:1|c", "x".repeat(1_100)),
        // More than --statsd.max-tags-per-line (64).
        9 => {
            let tags: Vec<String> = (0..70).map(|t| format!("k{t}:v")).collect();
            format!("soak.bg.c0:1|c|#{}", tags.join(","))
        }
        // A label value longer than --statsd.max-label-value-length (2048).
        10 => format!("soak.bg.c0:1|c|#k:{}", "v".repeat(2_100)),
        // Garbage bytes, invalid UTF-8 among them; no `:` and no newline, so never a line
        // of any dialect.
        _ => {
            let garbage = (0..(20 + i % 60))
                .map(|_| match rng.below(256) as u8 {
                    b'\n' | b':' => b'?',
                    b => b,
                })
                .collect();
            return (garbage, true);
        }
    };
    (bad.into_bytes(), true)
}

/// A packed datagram (also sent as one TCP batch): ~1,400 bytes of background lines, or one
/// long line alone. Returns (bytes, lines, malformed lines).
fn background_datagram(rng: &mut XorShift) -> (Vec<u8>, u64, u64) {
    let (mut out, mut lines, mut bad) = (Vec::new(), 0, 0);
    while out.len() < 1_400 {
        let (line, malformed) = background_line(rng);
        if !out.is_empty() && out.len() + line.len() > 1_400 {
            break;
        }
        if !out.is_empty() {
            out.push(b'\n');
        }
        out.extend_from_slice(&line);
        lines += 1;
        bad += malformed as u64;
    }
    (out, lines, bad)
}

/// Every valid background series, sent once over TCP before the run, so they all hold a
/// place before the flood fills the rest.
fn background_seed() -> String {
    let mut s = String::new();
    for i in 0..BG_COUNTERS {
        s += &format!("soak.bg.c{i}:0|c\n");
    }
    for i in 0..BG_GAUGES {
        s += &format!("soak.bg.g{i}:0|g\n");
    }
    for i in 0..BG_TIMERS {
        s += &format!("soak.bg.t{i}:1|ms\n");
    }
    for i in 0..BG_HISTOGRAMS {
        s += &format!("soak.bg.hist.{i}:1|ms\n");
    }
    for e in 0..5 {
        for v in 0..4 {
            s += &format!("soak.bg.d:0|c|#env:e{e},svc:s{v}\n");
        }
    }
    for h in 0..3 {
        s += &format!("soak.bg.i,host=h{h}:0|c\n");
    }
    s += "soak.bg.s:0|c\nsoak.vanish.whole:0|c\nsoak.idle.whole:0|c\n";
    s
}

// ---------------------------------------------------------------------------------------
// UDP back-pressure

/// Bytes queued on the gateway's UDP socket and the socket's kernel drop count, from
/// `/proc/net/udp` (`tx_queue:rx_queue` in hex is the 5th field, drops the 13th).
fn udp_queue(port: u16) -> (u64, u64) {
    // The kernel writes /proc/net/udp a page at a time from a hash table that other sockets
    // (this test's senders) change in between, so one read can miss a socket that exists:
    // only a socket missing from several reads in a row is gone.
    let local = format!(":{port:04X}");
    for _ in 0..20 {
        let text = std::fs::read_to_string("/proc/net/udp").expect("read /proc/net/udp");
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let loopback = f.get(1).is_some_and(|a| {
                (a.starts_with("0100007F") || a.starts_with("7F000001")) && a.ends_with(&local)
            });
            if loopback && f.len() >= 13 {
                let rx = f[4]
                    .split_once(':')
                    .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok())
                    .expect("rx_queue in /proc/net/udp");
                return (rx, f[12].parse().expect("drops in /proc/net/udp"));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the gateway's UDP socket 127.0.0.1:{port} is not in /proc/net/udp (20 reads)");
}

/// Holds UDP senders back while the gateway's receive queue is over `room` bytes.
struct UdpGate {
    port: u16,
    room: u64,
    /// Microseconds senders spent waiting, all together.
    paused_us: AtomicU64,
}

impl UdpGate {
    /// Waits for room; false when the deadline came first.
    fn wait_for_room(&self, deadline: Instant) -> bool {
        let start = Instant::now();
        loop {
            if udp_queue(self.port).0 < self.room {
                let waited = start.elapsed().as_micros() as u64;
                self.paused_us.fetch_add(waited, Ordering::Relaxed);
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Datagrams sent between two looks at the queue: a few KB each, well under a quarter of
/// the smallest buffer the kernel grants (2 × the default `net.core.rmem_max` of 208 KiB).
const BURST: u64 = 8;

/// Spreads `per_sec` units over time. A sender held back for more than half a second
/// forgets the backlog rather than bursting to catch up.
struct Pace {
    start: Instant,
    per_sec: f64,
    /// Units handed out or forgiven.
    credited: u64,
}

impl Pace {
    fn new(per_sec: f64) -> Pace {
        Pace {
            start: Instant::now(),
            per_sec,
            credited: 0,
        }
    }

    /// Units to send now (the caller sends them all); sleeps a little when none is due.
    fn due(&mut self) -> u64 {
        let owed = (self.start.elapsed().as_secs_f64() * self.per_sec) as u64;
        let backlog = ((self.per_sec / 2.0) as u64).max(1);
        let due = owed.saturating_sub(self.credited).min(backlog);
        self.credited = owed.max(self.credited);
        if due == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        due
    }
}

/// Sends the datagrams `next` makes at `per_sec` until the deadline, a burst at a time,
/// each burst once the gateway's queue has room. Returns the datagrams sent (`next` is
/// called once for each).
fn udp_sender(
    gw: &Gateway,
    gate: &UdpGate,
    deadline: Instant,
    per_sec: f64,
    mut next: impl FnMut() -> Vec<u8>,
) -> u64 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind UDP sender");
    sock.connect(gw.udp.expect("udp listener"))
        .expect("connect UDP sender");
    let mut pace = Pace::new(per_sec);
    let mut sent = 0;
    while Instant::now() < deadline {
        let mut due = pace.due();
        while due > 0 {
            if !gate.wait_for_room(deadline) {
                return sent;
            }
            let burst = due.min(BURST);
            for _ in 0..burst {
                sock.send(&next()).expect("UDP send on loopback");
                sent += 1;
            }
            due -= burst;
        }
    }
    sent
}

/// A TCP connection to the statsd listener that fails loudly instead of blocking forever
/// when the gateway stops reading.
fn statsd_tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("statsd TCP connect");
    s.set_write_timeout(Some(Duration::from_secs(20)))
        .expect("set write timeout");
    s
}

// ---------------------------------------------------------------------------------------
// The abusive TCP clients

#[derive(Default)]
struct Vanished {
    /// Connections that sent a whole line and half of one, then closed (FIN).
    fin: u64,
    /// Connections that sent half a line, then were reset (RST).
    rst: u64,
    /// Connections that sent a line over 4,095 bytes.
    too_long: u64,
}

/// Clients that connect, write half a line and vanish, 50 a second. Only the whole lines
/// count: a half line is handed to the parser at end of stream (as statsd_exporter does),
/// and is malformed by construction (no `|type`).
fn vanishing_clients(tcp: SocketAddr, deadline: Instant) -> Vanished {
    let mut v = Vanished::default();
    let mut i = 0u64;
    while Instant::now() < deadline {
        i += 1;
        let mut s = statsd_tcp(tcp);
        if i % 10 == 0 {
            // The gateway closes the connection at the long line; what it does not read
            // may fail the write, which is fine.
            let line = format!("soak.long.tcp:{}|c\n", "x".repeat(5_000));
            let _ = s.write_all(line.as_bytes());
            v.too_long += 1;
        } else if i % 2 == 1 {
            s.write_all(b"soak.vanish.whole:1|c\nsoak.vanish.half:1")
                .expect("write to a fresh connection");
            v.fin += 1;
        } else {
            s.write_all(b"soak.vanish.rst:1")
                .expect("write to a fresh connection");
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER");
            v.rst += 1;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    v
}

/// A client that sends a whole line and a partial one, then idles until the gateway closes
/// it (`--statsd.tcp-idle-timeout`), and starts over. Returns (connections, closed by the
/// gateway).
fn idle_client(tcp: SocketAddr, deadline: Instant) -> (u64, u64) {
    let (mut opened, mut closed) = (0, 0);
    while Instant::now() < deadline {
        let mut s = statsd_tcp(tcp);
        s.write_all(b"soak.idle.whole:1|c\nsoak.idle.partial:1")
            .expect("write to a fresh connection");
        opened += 1;
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set read timeout");
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => panic!("the statsd listener wrote to a client"),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return (opened, closed);
                    }
                }
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
    }
    (opened, closed)
}

// ---------------------------------------------------------------------------------------
// HTTP clients

/// Clients that ask for /metrics and read 16 bytes every 250 ms (`reading`), or nothing at
/// all, each for up to 10 s, with a 4 KiB receive buffer; then they start over. Returns the
/// connections made.
fn slow_reader(http: SocketAddr, deadline: Instant, reading: bool) -> u64 {
    let mut made = 0;
    while Instant::now() < deadline {
        let mut s = abuse::non_reading_scrape(http);
        made += 1;
        let until = deadline.min(Instant::now() + Duration::from_secs(10));
        if !reading {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            continue;
        }
        s.set_read_timeout(Some(Duration::from_millis(250)))
            .expect("set read timeout");
        let mut buf = [0u8; 16];
        while Instant::now() < until {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(250)),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
    }
    made
}

#[derive(Default)]
struct Scrapes {
    ok: u64,
    errors: Vec<String>,
    slowest: Duration,
    /// The most series the gateway reported holding.
    max_series: f64,
    /// Control series seen going down between two scrapes.
    went_down: Vec<String>,
    /// The last good scrape.
    last: String,
}

/// Names of the control series, for the monotonicity check.
fn control_names() -> Vec<String> {
    ["udp", "tcp"]
        .iter()
        .flat_map(|p| control_expected(p, 0).into_iter().map(|(k, _)| k))
        .collect()
}

/// Sample lines whose value is not a number.
fn unparsable_samples(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|l| {
            l.rsplit_once(' ').is_none_or(|(_, v)| {
                !matches!(v, "+Inf" | "-Inf" | "NaN") && v.parse::<f64>().is_err()
            })
        })
        .count()
}

/// A scraper as Prometheus is one: GET /metrics every second on a kept-alive connection.
fn scraper(http: SocketAddr, deadline: Instant) -> Scrapes {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let url = format!("http://{http}/metrics");
    let watched = control_names();
    let mut before: Option<Samples> = None;
    let mut r = Scrapes::default();
    let mut next = Instant::now();
    while Instant::now() < deadline {
        let start = Instant::now();
        let result = agent
            .get(&url)
            .call()
            .map_err(|e| e.to_string())
            .and_then(|mut resp| {
                let status = resp.status().as_u16();
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(1 << 30)
                    .read_to_string()
                    .map_err(|e| e.to_string())?;
                Ok((status, body))
            });
        let took = start.elapsed();
        r.slowest = r.slowest.max(took);
        match result {
            Ok((200, body)) if body.ends_with('\n') && unparsable_samples(&body) == 0 => {
                r.ok += 1;
                let s = Samples::parse(&body);
                r.max_series = r.max_series.max(s.count("statsgate_series"));
                if let Some(b) = &before {
                    for name in &watched {
                        if s.count(name) < b.count(name) {
                            r.went_down.push(format!(
                                "{name}: {} -> {}",
                                b.count(name),
                                s.count(name)
                            ));
                        }
                    }
                }
                before = Some(s);
                r.last = body;
            }
            Ok((status, body)) => r.errors.push(format!(
                "status {status}, {} bytes, {} unparsable samples",
                body.len(),
                unparsable_samples(&body)
            )),
            Err(e) => r.errors.push(e),
        }
        next += Duration::from_secs(1);
        let now = Instant::now();
        if next < now {
            next = now;
        }
        std::thread::sleep(next.min(deadline).saturating_duration_since(now));
    }
    r
}

/// A reload every `every`: the other mapping file each time, SIGHUP and POST /-/reload in
/// turn; each must take effect (the loaded rule count changes) and count as a success.
/// Returns reloads done.
fn reloader(gw: &Gateway, mapping: &Path, every: Duration, deadline: Instant) -> u64 {
    let mut done = 0u64;
    let mut at = Instant::now() + every;
    while at < deadline {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        done += 1;
        let rules = write_mapping(mapping, done % 2 == 1);
        if done % 2 == 1 {
            // SAFETY: kill only sends a signal to the gateway's pid, a child of this process.
            let sent = unsafe { libc::kill(gw.pid() as i32, libc::SIGHUP) };
            assert_eq!(sent, 0, "SIGHUP: {}", std::io::Error::last_os_error());
        } else {
            let (status, body) = gw.send("POST", "/-/reload");
            assert_eq!((status, body.as_str()), (200, "Requesting reload"));
        }
        let want = done as f64;
        gw.wait_for(&format!("reload {done} to take effect"), |s| {
            s.get("statsd_exporter_loaded_mappings") == Some(rules)
                && s.count("statsd_exporter_config_reloads_total{outcome=\"success\"}") == want
        });
        at += every;
    }
    done
}

/// VmRSS in bytes every second until the deadline: (seconds since the start, bytes).
fn rss_sampler(pid: u32, start: Instant, deadline: Instant) -> Vec<(f64, u64)> {
    let mut v = Vec::new();
    while Instant::now() < deadline {
        v.push((
            start.elapsed().as_secs_f64(),
            abuse::proc_status(pid, "VmRSS") * 1024,
        ));
        std::thread::sleep(Duration::from_secs(1));
    }
    v
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// Control lines a scrape accounts for over `proto`: each control series says how many
/// groups it saw (`big` counts 7 a group, `sampled` 4, `tagged` 2; the timer was seeded with
/// one observation); six lines a group.
fn control_lines_counted(s: &Samples, proto: &str) -> f64 {
    let per_group = [1.0, 7.0, 4.0, 2.0, 1.0, 1.0];
    let seed = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    control_expected(proto, 0)
        .iter()
        .zip(per_group.iter().zip(seed))
        .map(|((k, _), (per, seed))| (s.count(k) - seed) / per)
        .sum()
}

/// Everything the run's threads report.
struct Run {
    udp_groups: u64,
    tcp_groups: u64,
    background_lines: u64,
    background_malformed: u64,
    flood_names: u64,
    vanished: Vanished,
    /// (connections, closed by the gateway)
    idled: (u64, u64),
    slow_connections: u64,
    scrapes: Scrapes,
    reloads: u64,
    rss: Vec<(f64, u64)>,
}

/// Names per flood datagram.
const FLOOD_PER_DATAGRAM: u64 = 40;

/// Runs every client until `deadline`, each in its own thread, and joins them all.
fn run_clients(
    gw: &Gateway,
    gate: &UdpGate,
    mapping: &Path,
    rate: u64,
    reload_every: Duration,
    start: Instant,
    deadline: Instant,
) -> Run {
    let tcp = gw.tcp.expect("tcp listener");
    let http = gw.http;
    let mut rng = XorShift(0x50a4_5eed_0bad_cafe);
    let pool: Vec<(Vec<u8>, u64, u64)> = (0..512).map(|_| background_datagram(&mut rng)).collect();
    let per_datagram = pool.iter().map(|d| d.1).sum::<u64>() as f64 / pool.len() as f64;
    let pool = &pool;
    // A thread that panicked fails the test with its own message.
    fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
        h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
    std::thread::scope(|scope| {
        let control_udp = scope.spawn(move || {
            let mut seq = 0;
            udp_sender(gw, gate, deadline, CONTROL_RATE as f64, || {
                seq += 1;
                control_group("udp", seq)
            })
        });
        let control_tcp = scope.spawn(move || {
            let mut s = statsd_tcp(tcp);
            let mut pace = Pace::new(CONTROL_RATE as f64);
            let (mut seq, mut batch) = (0, Vec::new());
            while Instant::now() < deadline {
                for _ in 0..pace.due() {
                    seq += 1;
                    batch.extend_from_slice(&control_group("tcp", seq));
                    batch.push(b'\n');
                }
                if !batch.is_empty() {
                    s.write_all(&batch).expect("control TCP write");
                    batch.clear();
                }
            }
            seq
        });
        // Four fifths of the background over UDP, one fifth over TCP.
        let background_udp = scope.spawn(move || {
            let (mut i, mut lines, mut bad) = (0, 0, 0);
            let per_sec = rate as f64 * 0.8 / per_datagram;
            udp_sender(gw, gate, deadline, per_sec, || {
                let (d, n, b) = &pool[i % pool.len()];
                i += 1;
                lines += n;
                bad += b;
                d.clone()
            });
            (lines, bad)
        });
        let background_tcp = scope.spawn(move || {
            let mut s = statsd_tcp(tcp);
            let mut pace = Pace::new(rate as f64 * 0.2 / per_datagram);
            let (mut i, mut lines, mut bad, mut batch) = (7, 0, 0, Vec::new());
            while Instant::now() < deadline {
                for _ in 0..pace.due() {
                    let (d, n, b) = &pool[i % pool.len()];
                    i += 1;
                    batch.extend_from_slice(d);
                    batch.push(b'\n');
                    lines += n;
                    bad += b;
                }
                if !batch.is_empty() {
                    s.write_all(&batch).expect("background TCP write");
                    batch.clear();
                }
            }
            (lines, bad)
        });
        let flood = scope.spawn(move || {
            let mut next = 0u64;
            let per_sec = (FLOOD_RATE / FLOOD_PER_DATAGRAM) as f64;
            udp_sender(gw, gate, deadline, per_sec, || {
                let lines: Vec<String> = (next..next + FLOOD_PER_DATAGRAM)
                    .map(|n| format!("soak.flood.n{n}:1|c"))
                    .collect();
                next += FLOOD_PER_DATAGRAM;
                lines.join("\n").into_bytes()
            }) * FLOOD_PER_DATAGRAM
        });
        let vanish = scope.spawn(move || vanishing_clients(tcp, deadline));
        let idle = scope.spawn(move || idle_client(tcp, deadline));
        let slow: Vec<_> = [true, true, true, false, false]
            .into_iter()
            .map(|reading| scope.spawn(move || slow_reader(http, deadline, reading)))
            .collect();
        let scrapes = scope.spawn(move || scraper(http, deadline));
        let reloads = scope.spawn(move || reloader(gw, mapping, reload_every, deadline));
        let rss = scope.spawn(move || rss_sampler(gw.pid(), start, deadline));

        let (udp_lines, udp_bad) = join(background_udp);
        let (tcp_lines, tcp_bad) = join(background_tcp);
        Run {
            udp_groups: join(control_udp),
            tcp_groups: join(control_tcp),
            background_lines: udp_lines + tcp_lines,
            background_malformed: udp_bad + tcp_bad,
            flood_names: join(flood),
            vanished: join(vanish),
            idled: join(idle),
            slow_connections: slow.into_iter().map(join).sum(),
            scrapes: join(scrapes),
            reloads: join(reloads),
            rss: join(rss),
        }
    })
}

#[test]
fn soak_and_abuse() {
    let secs = env_u64("STATSGATE_SOAK_SECS", 40);
    assert!(secs >= 20, "STATSGATE_SOAK_SECS must be at least 20");
    let rate = env_u64("STATSGATE_SOAK_RATE", DEFAULT_RATE);
    let run = Duration::from_secs(secs);
    // The flood fills the store within a few seconds, and the receive thread's memory of
    // refused names (16k of them) within 20; by then every kind of client has also come and
    // gone at least once.
    let warmup = Duration::from_secs(20).max(run / 4);
    let reload_every = (run / 4).clamp(Duration::from_secs(5), Duration::from_secs(30));

    let launch = Instant::now();
    let dir = TempDir::new("soak");
    let mapping = dir.0.join("mapping.yml");
    write_mapping(&mapping, false);
    let mut gw = Gateway::start(&[
        &format!("--statsd.mapping-config={}", mapping.display()),
        "--web.enable-lifecycle",
        &format!("--statsd.max-series={MAX_SERIES}"),
        "--statsd.read-buffer=8388608",
        &format!("--statsd.tcp-idle-timeout={TCP_IDLE_TIMEOUT}"),
        &format!("--web.write-timeout={WEB_WRITE_TIMEOUT}"),
    ]);
    let udp = gw.udp.expect("udp listener");
    // What the kernel granted (capped by net.core.rmem_max), as the UDP listener's
    // announcement gives it.
    let granted = gw
        .log_events()
        .iter()
        .find_map(|e| {
            (e.get("listener")?.as_str()? == "udp").then_some(())?;
            e.get("read_buffer")?.as_u64()
        })
        .unwrap_or_else(|| panic!("no UDP receive buffer in the log:\n{}", gw.log_text()));
    let gate = UdpGate {
        port: udp.port(),
        room: granted / 4,
        paused_us: AtomicU64::new(0),
    };

    // Every control and background series first, over one TCP connection (in order, no
    // loss), so they all hold a place before the flood fills the store.
    let seed = format!(
        "{}{}{}soak.seed.done:1|c\n",
        control_seed("udp"),
        control_seed("tcp"),
        background_seed()
    );
    gw.send_tcp(seed.as_bytes());
    gw.wait_for("the seed", |s| s.get("soak_seed_done") == Some(1.0));

    let start = Instant::now();
    let started = launch.elapsed();
    let r = run_clients(&gw, &gate, &mapping, rate, reload_every, start, start + run);
    let ran = start.elapsed();

    // Everything sent is in the gateway's queues by now; it gets a bounded time to catch up,
    // then one more scrape, where any count over what was sent would show.
    let mut expected = control_expected("udp", r.udp_groups);
    expected.extend(control_expected("tcp", r.tcp_groups));
    expected.push(("soak_vanish_whole".into(), r.vanished.fin as f64));
    expected.push(("soak_idle_whole".into(), r.idled.0 as f64));
    let drain_start = Instant::now();
    let drain = drain_start + DRAIN;
    loop {
        let s = Samples::parse(&gw.scrape());
        if expected.iter().all(|(k, v)| s.count(k) >= *v) || Instant::now() > drain {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(200));
    let s = Samples::parse(&gw.scrape());
    let drained = drain_start.elapsed();
    let (_, socket_drops) = udp_queue(udp.port());

    let wrong: Vec<String> = expected
        .iter()
        .filter(|(k, v)| s.get(k) != Some(*v))
        .map(|(k, v)| format!("{k}: want {v}, have {:?}", s.get(k)))
        .collect();
    let control_sent = (r.udp_groups + r.tcp_groups) * CONTROL_LINES;
    let control_counted = control_lines_counted(&s, "udp") + control_lines_counted(&s, "tcp");
    let refused = s.count("statsgate_events_dropped_total{reason=\"max_series\"}");
    let kernel_drops = s.count("statsd_exporter_udp_packet_drops_total");
    let idle_closed = s.count("statsgate_tcp_idle_closed_total");
    let write_timeouts =
        s.count("statsgate_http_connections_closed_total{reason=\"write_timeout\"}");
    let reload_failures = s.count("statsd_exporter_config_reloads_total{outcome=\"failure\"}");
    let rss_max = |after: bool| {
        r.rss
            .iter()
            .filter(|(t, _)| (*t > warmup.as_secs_f64()) == after)
            .map(|(_, rss)| *rss)
            .max()
            .unwrap_or(0)
    };
    let (warm_rss, max_rss) = (rss_max(false), rss_max(true));
    let rss_limit = (warm_rss as f64 * (1.0 + RSS_MARGIN)) as u64 + RSS_SLACK;
    let rss_trend: Vec<String> = r
        .rss
        .iter()
        .step_by(5)
        .map(|(t, rss)| format!("{t:.0}s {:.1}", mib(*rss)))
        .collect();
    let rss_trend = rss_trend.join(", ");
    let paused = Duration::from_micros(gate.paused_us.load(Ordering::Relaxed));
    let v = &r.vanished;

    println!(
        "soak: {}s (warm-up {}s, start-up {:.1}s, drain {:.1}s), control lines {control_sent} sent / {control_counted} counted{}, \
         background {} lines at {:.0}/s ({:.0}% malformed), flood {} names, {refused} refused \
         at max-series {MAX_SERIES} (series at most {}), lines counted {}, scrapes {} ok / {} \
         errors, slowest {:.2}s ({:.0} KB), slow HTTP readers {} (write timeouts {write_timeouts}), \
         reloads {} ok / {reload_failures} failed, TCP vanish {} (FIN {}, RST {}, too long {}), \
         idle closed {idle_closed}, UDP kernel drops {kernel_drops} (senders paused {:.1}s), \
         RSS warm {:.1} MiB, max after {:.1} MiB ({:+.1}%; limit {:.1} MiB)",
        ran.as_secs(),
        warmup.as_secs(),
        started.as_secs_f64(),
        drained.as_secs_f64(),
        if wrong.is_empty() { "" } else { " (NOT EXACT)" },
        r.background_lines,
        r.background_lines as f64 / ran.as_secs_f64(),
        100.0 * r.background_malformed as f64 / r.background_lines.max(1) as f64,
        r.flood_names,
        r.scrapes.max_series,
        s.count("statsd_exporter_lines_total"),
        r.scrapes.ok,
        r.scrapes.errors.len(),
        r.scrapes.slowest.as_secs_f64(),
        s.text.len() as f64 / 1e3,
        r.slow_connections,
        r.reloads,
        v.fin + v.rst + v.too_long,
        v.fin,
        v.rst,
        v.too_long,
        paused.as_secs_f64(),
        mib(warm_rss),
        mib(max_rss),
        100.0 * (max_rss as f64 / warm_rss.max(1) as f64 - 1.0),
        mib(rss_limit),
    );

    assert!(gw.alive(), "the gateway died:\n{}", gw.log_text());
    assert!(wrong.is_empty(), "control series not exact: {wrong:#?}");
    assert_eq!(kernel_drops, 0.0, "the kernel dropped UDP datagrams");
    assert_eq!(
        socket_drops, 0,
        "/proc/net/udp shows drops on the gateway's socket"
    );
    assert!(
        r.scrapes.errors.is_empty(),
        "scrape errors: {:?}",
        r.scrapes.errors
    );
    assert!(
        r.scrapes.ok >= secs / 2,
        "{} scrapes in {secs} s: the scraper was starved",
        r.scrapes.ok
    );
    assert!(
        r.scrapes.slowest <= MAX_SCRAPE,
        "the slowest scrape took {:?}",
        r.scrapes.slowest
    );
    assert!(
        r.scrapes.went_down.is_empty(),
        "control series went down: {:?}",
        r.scrapes.went_down
    );
    assert!(
        r.scrapes.max_series <= MAX_SERIES as f64
            && s.count("statsgate_series") <= MAX_SERIES as f64,
        "more series than the limit: {}",
        r.scrapes.max_series
    );
    assert!(refused > 0.0, "the flood never reached the limit");
    assert!(
        s.count("statsgate_series_expired_total") > 0.0,
        "no flood series expired"
    );
    assert!(r.reloads >= 1, "no reload in {secs} s");
    assert_eq!(reload_failures, 0.0);
    assert!(
        r.idled.1 >= 1 && idle_closed >= r.idled.1 as f64,
        "idle connections: {} seen closed by the client, {idle_closed} counted",
        r.idled.1
    );
    assert!(s.count("statsd_exporter_tcp_too_long_lines_total") >= 1.0);
    assert!(s.count("statsd_exporter_sample_errors_total{reason=\"malformed_line\"}") > 0.0);
    assert!(
        max_rss <= rss_limit,
        "RSS grew after the warm-up: {:.1} MiB at most during it, {:.1} MiB after (limit {:.1} MiB); \
         every 5 s: {rss_trend}",
        mib(warm_rss),
        mib(max_rss),
        mib(rss_limit)
    );
    assert!(!gw.log_text().contains("panicked"), "{}", gw.log_text());
    promtool_check(&s.text);
}
