//! `statsgate-loadgen`: sends statsd lines over UDP as fast as asked and reports what the
//! gateway counted, how much it lost, and what it cost in CPU and memory.
//!
//! Every datagram is built before the clock starts, so the send loop does nothing but
//! `sendmmsg`; the generator is then bounded by the kernel, not by formatting.

use std::net::{ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use serde::Serialize;

/// Statsd UDP load generator for statsgate (and statsd_exporter).
#[derive(Parser, Debug)]
#[command(name = "statsgate-loadgen", version)]
struct Args {
    /// UDP address of the gateway.
    #[arg(long, default_value = "127.0.0.1:9125")]
    target: String,
    /// The gateway's metrics URL, scraped before and after the run ("" skips it).
    #[arg(long, default_value = "http://127.0.0.1:9102/metrics")]
    scrape: String,
    /// Envoy stat names file (`name|type` per line, `#` comments); names get the `envoy.` prefix.
    #[arg(long, value_name = "FILE")]
    names: Option<PathBuf>,
    /// Number of distinct series in rotation (synthetic Envoy-like names, or the names file
    /// repeated over more clusters).
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Send one single series (overrides --names and --series).
    #[arg(long)]
    hot: bool,
    /// Pack lines into datagrams of at most --datagram-bytes instead of one line per datagram.
    #[arg(long)]
    packed: bool,
    /// Maximum datagram size when packing.
    #[arg(long, default_value_t = 1400)]
    datagram_bytes: usize,
    /// Lines per second to offer; 0 sends flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Datagrams per `sendmmsg` call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// The gateway's process id, for CPU and RSS; found from /proc/*/comm when absent.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// How long to wait after sending before the final scrape, in milliseconds.
    #[arg(long, default_value_t = 500)]
    settle_ms: u64,
    /// Also print the results as one JSON object.
    #[arg(long)]
    json: bool,
}

/// One series' line text without the trailing newline.
type Line = Vec<u8>;

/// Cluster stats an Envoy sidecar emits for every upstream cluster, with their statsd type.
const SYNTHETIC_STATS: &[(&str, &str)] = &[
    ("upstream_rq_200", "c"),
    ("upstream_rq_total", "c"),
    ("upstream_cx_active", "g"),
    ("upstream_rq_time", "ms"),
    ("upstream_cx_total", "c"),
    ("upstream_rq_pending_active", "g"),
    ("upstream_cx_length_ms", "ms"),
    ("upstream_rq_5xx", "c"),
    ("membership_healthy", "g"),
    ("upstream_cx_connect_ms", "ms"),
];

fn sample_value(kind: &str) -> &'static str {
    match kind {
        "g" => "42",
        "ms" => "12",
        _ => "1",
    }
}

fn line(name: &str, kind: &str) -> Line {
    format!("{name}:{}|{kind}", sample_value(kind)).into_bytes()
}

fn synthetic_lines(n: usize) -> Vec<Line> {
    (0..n)
        .map(|i| {
            let (stat, kind) = SYNTHETIC_STATS[i % SYNTHETIC_STATS.len()];
            let svc = i / SYNTHETIC_STATS.len();
            line(
                &format!(
                    "envoy.cluster.outbound|9080|v1|svc{svc}.default.svc.cluster.local.{stat}"
                ),
                kind,
            )
        })
        .collect()
}

/// Reads `name|type` lines; the type follows the last `|` because Istio cluster names
/// contain `|` themselves.
fn read_names(path: &Path) -> Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (name, kind) = l
            .rsplit_once('|')
            .ok_or_else(|| anyhow!("{}:{}: expected name|type", path.display(), i + 1))?;
        if !matches!(kind, "c" | "g" | "ms" | "h" | "d") {
            bail!("{}:{}: unknown type {kind:?}", path.display(), i + 1);
        }
        out.push((name.to_string(), kind.to_string()));
    }
    if out.is_empty() {
        bail!("{}: no names", path.display());
    }
    Ok(out)
}

/// Stretches the file's names to `n` series: copy `k` of the list moves every `default`
/// namespace to `nsK` (or suffixes the name), as more services in a mesh would.
fn names_lines(names: &[(String, String)], n: usize) -> Vec<Line> {
    let n = n.max(names.len());
    (0..n)
        .map(|i| {
            let (name, kind) = &names[i % names.len()];
            let copy = i / names.len();
            let name = if copy == 0 {
                name.clone()
            } else if name.contains(".default.") {
                name.replace(".default.", &format!(".ns{copy}."))
            } else {
                format!("{name}_{copy}")
            };
            line(&format!("envoy.{name}"), kind)
        })
        .collect()
}

/// Pre-built datagrams, each with the number of lines it carries.
struct Datagrams {
    payloads: Vec<Vec<u8>>,
    lines: Vec<u32>,
}

fn build_datagrams(lines: &[Line], packed: bool, max_bytes: usize) -> Datagrams {
    let mut d = Datagrams {
        payloads: Vec::new(),
        lines: Vec::new(),
    };
    if !packed {
        for l in lines {
            d.payloads.push(l.clone());
            d.lines.push(1);
        }
        return d;
    }
    // A single hot line is repeated to fill the datagram, as a busy client would.
    let repeat = if lines.len() == 1 {
        (max_bytes / (lines[0].len() + 1)).max(1)
    } else {
        1
    };
    let mut cur: Vec<u8> = Vec::with_capacity(max_bytes);
    let mut count = 0u32;
    for l in lines.iter().flat_map(|l| std::iter::repeat_n(l, repeat)) {
        if count > 0 && cur.len() + 1 + l.len() > max_bytes {
            d.payloads
                .push(std::mem::replace(&mut cur, Vec::with_capacity(max_bytes)));
            d.lines.push(count);
            count = 0;
        }
        if count > 0 {
            cur.push(b'\n');
        }
        cur.extend_from_slice(l);
        count += 1;
    }
    if count > 0 {
        d.payloads.push(cur);
        d.lines.push(count);
    }
    d
}

/// What a scrape of the gateway said.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    lines: f64,
    drops: f64,
    series: f64,
}

/// Sums every sample of `name` (any labels) in a text exposition.
fn sum_metric(body: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in body.lines() {
        let Some(rest) = l.strip_prefix(name) else {
            continue;
        };
        let rest = match rest.as_bytes().first() {
            Some(b' ') => rest,
            Some(b'{') => match rest.rfind('}') {
                Some(end) => &rest[end + 1..],
                None => continue,
            },
            _ => continue,
        };
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

fn counts(body: &str) -> Counts {
    Counts {
        lines: sum_metric(body, "statsd_exporter_lines_total").unwrap_or(0.0),
        drops: sum_metric(body, "statsd_exporter_udp_packet_drops_total").unwrap_or(0.0),
        // Non-comment, non-telemetry lines approximate the exported series.
        series: body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty() && !is_self_metric(l))
            .count() as f64,
    }
}

fn is_self_metric(l: &str) -> bool {
    [
        "statsd_exporter_",
        "statsgate_",
        "go_",
        "process_",
        "promhttp_",
    ]
    .iter()
    .any(|p| l.starts_with(p))
}

/// GETs the metrics page. Returns the body and how long the request took.
fn http_get(agent: &ureq::Agent, url: &str) -> Result<(String, Duration)> {
    let started = Instant::now();
    let mut resp = agent
        .get(url)
        .header("Accept", "text/plain")
        .call()
        .with_context(|| format!("GET {url}"))?;
    let body = resp
        .body_mut()
        // A 100k-series exposition is tens of MiB; ureq's default cap is 10 MiB.
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .with_context(|| format!("reading the body of {url}"))?;
    Ok((body, started.elapsed()))
}

fn scrape(agent: &ureq::Agent, url: &str) -> Option<(Counts, Duration)> {
    if url.is_empty() {
        return None;
    }
    match http_get(agent, url) {
        Ok((body, took)) => Some((counts(&body), took)),
        Err(e) => {
            eprintln!("statsgate-loadgen: scrape failed: {e:#}");
            None
        }
    }
}

fn find_gateway_pid() -> Option<u32> {
    let me = std::process::id();
    let mut found = None;
    for p in procfs::process::all_processes().ok()?.flatten() {
        let Ok(pid) = u32::try_from(p.pid) else {
            continue;
        };
        // A process may exit between the listing and the read: skip it.
        if pid == me || !p.stat().is_ok_and(|s| s.comm == "statsgate") {
            continue;
        }
        if found.is_some() {
            eprintln!("statsgate-loadgen: several statsgate processes; pass --gateway-pid");
            return None;
        }
        found = Some(pid);
    }
    found
}

fn process(pid: u32) -> Option<procfs::process::Process> {
    procfs::process::Process::new(i32::try_from(pid).ok()?).ok()
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = process(pid)?.stat().ok()?;
    Some(stat.utime + stat.stime)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    Some(process(pid)?.status().ok()?.vmrss? * 1024)
}

/// Totals of the send loop.
#[derive(Debug, Default)]
struct Sent {
    lines: u64,
    datagrams: u64,
    errors: u64,
    elapsed: Duration,
}

fn send(sock: &UdpSocket, d: &Datagrams, args: &Args) -> Sent {
    let batch = args.batch.clamp(1, 1024);
    let mut iovecs: Vec<libc::iovec> = d
        .payloads
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; all-zero is a valid empty header (no name, no control).
    let mut hdrs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
    let fd = sock.as_raw_fd();
    let deadline = Duration::from_secs_f64(args.duration.max(0.0));
    let started = Instant::now();
    let mut sent = Sent::default();
    let mut next = 0usize;
    let mut last_report = started;
    let mut last_lines = 0u64;
    loop {
        let now = started.elapsed();
        if now >= deadline {
            break;
        }
        if args.rate > 0 {
            let due = (now.as_secs_f64() * args.rate as f64) as u64;
            if sent.lines > due {
                let ahead = Duration::from_secs_f64((sent.lines - due) as f64 / args.rate as f64);
                if ahead > Duration::from_micros(200) {
                    std::thread::sleep(ahead.min(Duration::from_millis(10)));
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
        }
        let n = batch.min(iovecs.len() - next);
        for (h, iov) in hdrs.iter_mut().zip(&mut iovecs[next..next + n]) {
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_len = 0;
        }
        // SAFETY: `hdrs[..n]` point at `iovecs[next..next + n]`, which point into
        // `d.payloads`; all outlive the call and are not touched while it runs.
        let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
        if r < 0 {
            // ECONNREFUSED (nobody listening yet) or ENOBUFS: count and carry on.
            sent.errors += 1;
            std::thread::yield_now();
        } else {
            let r = r as usize;
            sent.datagrams += r as u64;
            sent.lines += d.lines[next..next + r]
                .iter()
                .map(|&l| u64::from(l))
                .sum::<u64>();
            next = (next + r) % iovecs.len();
        }
        let now = Instant::now();
        if now.duration_since(last_report) >= Duration::from_secs(1) {
            let rate =
                (sent.lines - last_lines) as f64 / now.duration_since(last_report).as_secs_f64();
            eprint!(
                "\r{:6.1}s  {:>12} lines  {:>10.0} lines/s",
                now.duration_since(started).as_secs_f64(),
                sent.lines,
                rate
            );
            last_report = now;
            last_lines = sent.lines;
        }
    }
    sent.elapsed = started.elapsed();
    eprintln!();
    sent
}

/// The `--json` line. Absent measurements (no scrape, no pid) are `null`.
#[derive(Serialize)]
struct Report {
    series: usize,
    packed: bool,
    offered_rate: u64,
    seconds: f64,
    lines_sent: u64,
    datagrams_sent: u64,
    send_errors: u64,
    send_rate: f64,
    lines_counted: Option<f64>,
    loss_pct: Option<f64>,
    kernel_drops: Option<f64>,
    gateway_cpu_pct: Option<f64>,
    gateway_rss_bytes: Option<u64>,
    scrape_ms: Option<f64>,
    exported_series: Option<f64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let lines = if args.hot {
        synthetic_lines(1)
    } else if let Some(path) = &args.names {
        names_lines(&read_names(path)?, args.series)
    } else {
        synthetic_lines(args.series.max(1))
    };
    let series = lines.len();
    let datagrams = build_datagrams(&lines, args.packed, args.datagram_bytes.max(1));
    drop(lines);
    let lines_per_cycle: u64 = datagrams.lines.iter().map(|&l| u64::from(l)).sum();

    let target = args
        .target
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", args.target))?
        .next()
        .ok_or_else(|| anyhow!("{} resolves to nothing", args.target))?;
    let bind = if target.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let sock = UdpSocket::bind(bind).context("binding the sending socket")?;
    sock.connect(target)
        .with_context(|| format!("connecting to {target}"))?;

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let pid = args.gateway_pid.or_else(find_gateway_pid);
    let before = scrape(&agent, &args.scrape);
    let ticks_before = pid.and_then(cpu_ticks);
    eprintln!(
        "statsgate-loadgen: {series} series, {} datagrams of {:.1} lines on average, to {target}{}",
        datagrams.payloads.len(),
        lines_per_cycle as f64 / datagrams.payloads.len() as f64,
        pid.map(|p| format!(", gateway pid {p}"))
            .unwrap_or_default()
    );

    let sent = send(&sock, &datagrams, &args);
    let ticks_after = pid.and_then(cpu_ticks);
    let cpu_wall = sent.elapsed;
    std::thread::sleep(Duration::from_millis(args.settle_ms));
    let after = scrape(&agent, &args.scrape);
    let rss = pid.and_then(rss_bytes);

    let secs = sent.elapsed.as_secs_f64().max(1e-9);
    let counted = match (before, after) {
        (Some((b, _)), Some((a, _))) => Some((a.lines - b.lines, a.drops - b.drops)),
        _ => None,
    };
    let loss = counted.map(|(c, _)| {
        if sent.lines == 0 {
            0.0
        } else {
            100.0 * (1.0 - c / sent.lines as f64)
        }
    });
    let cpu = match (ticks_before, ticks_after) {
        (Some(b), Some(a)) => Some(
            100.0 * (a.saturating_sub(b)) as f64
                / procfs::ticks_per_second() as f64
                / cpu_wall.as_secs_f64().max(1e-9),
        ),
        _ => None,
    };
    let scrape_ms = after.map(|(_, t)| t.as_secs_f64() * 1e3);
    let exported = after.map(|(a, _)| a.series);

    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map(f).unwrap_or_else(|| "n/a".into());
    println!(
        "sent {} lines in {:.2}s ({:.0} lines/s, {} datagrams, {} send errors); counted {}; loss {}; kernel drops {}; gateway cpu {}; rss {}; scrape {} ({} series)",
        sent.lines,
        secs,
        sent.lines as f64 / secs,
        sent.datagrams,
        sent.errors,
        opt(counted.map(|c| c.0), &|v| format!("{v:.0}")),
        opt(loss, &|v| format!("{v:.3}%")),
        opt(counted.map(|c| c.1), &|v| format!("{v:.0}")),
        opt(cpu, &|v| format!("{v:.0}%")),
        opt(rss.map(|r| r as f64), &|v| format!(
            "{:.1} MiB",
            v / 1048576.0
        )),
        opt(scrape_ms, &|v| format!("{v:.1} ms")),
        opt(exported, &|v| format!("{v:.0}")),
    );
    if args.json {
        let report = Report {
            series,
            packed: args.packed,
            offered_rate: args.rate,
            seconds: secs,
            lines_sent: sent.lines,
            datagrams_sent: sent.datagrams,
            send_errors: sent.errors,
            send_rate: sent.lines as f64 / secs,
            lines_counted: counted.map(|c| c.0),
            loss_pct: loss,
            kernel_drops: counted.map(|c| c.1),
            gateway_cpu_pct: cpu,
            gateway_rss_bytes: rss,
            scrape_ms,
            exported_series: exported,
        };
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_metric_over_labels() {
        let body = "# TYPE x counter\nstatsd_exporter_lines_total 10\nstatsd_exporter_lines_total_other 99\n\
                    statsd_exporter_udp_packet_drops_total{listener=\"udp\",socket=\"0\"} 2\n\
                    statsd_exporter_udp_packet_drops_total{listener=\"udp\",socket=\"1\"} 3\n";
        assert_eq!(sum_metric(body, "statsd_exporter_lines_total"), Some(10.0));
        assert_eq!(
            sum_metric(body, "statsd_exporter_udp_packet_drops_total"),
            Some(5.0)
        );
        assert_eq!(sum_metric(body, "missing"), None);
    }

    #[test]
    fn packs_lines_under_the_limit() {
        let lines = synthetic_lines(1000);
        let d = build_datagrams(&lines, true, 1400);
        assert!(d.payloads.iter().all(|p| p.len() <= 1400));
        assert_eq!(d.lines.iter().map(|&l| l as usize).sum::<usize>(), 1000);
        for (p, &n) in d.payloads.iter().zip(&d.lines) {
            assert_eq!(p.split(|b| *b == b'\n').count(), n as usize);
        }
        let hot = build_datagrams(&synthetic_lines(1), true, 1400);
        assert_eq!(hot.payloads.len(), 1);
        assert!(hot.lines[0] > 10);
        let single = build_datagrams(&lines, false, 1400);
        assert_eq!(single.payloads.len(), 1000);
    }

    #[test]
    fn names_split_on_the_last_bar_and_stretch() {
        let dir = std::env::temp_dir().join(format!("loadgen-names-{}", std::process::id()));
        std::fs::write(
            &dir,
            "# c\ncluster.outbound|9080|v1|r.default.svc.x.upstream_rq_200|c\nserver.live|g\n",
        )
        .unwrap();
        let names = read_names(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(
            names[0],
            (
                "cluster.outbound|9080|v1|r.default.svc.x.upstream_rq_200".into(),
                "c".into()
            )
        );
        let lines = names_lines(&names, 4);
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[2],
            b"envoy.cluster.outbound|9080|v1|r.ns1.svc.x.upstream_rq_200:1|c"
        );
        assert_eq!(lines[3], b"envoy.server.live_1:42|g");
    }
}
