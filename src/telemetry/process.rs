//! `process_*` metrics as client_golang's process collector writes them, read from /proc.

use std::fmt::Write as _;

use super::catalog::{
    Family, PROCESS_CPU_SECONDS, PROCESS_MAX_FDS, PROCESS_NETWORK_RECEIVE,
    PROCESS_NETWORK_TRANSMIT, PROCESS_OPEN_FDS, PROCESS_RESIDENT_MEMORY, PROCESS_START_TIME,
    PROCESS_VIRTUAL_MEMORY, PROCESS_VIRTUAL_MEMORY_MAX,
};

struct Stat {
    cpu_seconds: f64,
    start_time: f64,
    vsize: f64,
    rss_bytes: f64,
}

fn read_stat() -> Option<Stat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // After the name, field k of proc(5) is at index k - 3.
    let num = |k: usize| f.get(k - 3).and_then(|s| s.parse::<f64>().ok());
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines().find_map(|l| {
            l.strip_prefix("btime ")
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
    })?;
    Some(Stat {
        cpu_seconds: (num(14)? + num(15)?) / ticks,
        start_time: boot + num(22)? / ticks,
        vsize: num(23)?,
        rss_bytes: num(24)? * page,
    })
}

fn max_fds() -> Option<f64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    (rc == 0).then_some(r.rlim_cur as f64)
}

/// The soft limit on address space; "unlimited" reads `u64::MAX`, as client_golang's procfs
/// reads it.
fn max_address_space() -> Option<f64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut r) };
    (rc == 0).then_some(r.rlim_cur as f64)
}

/// `IpExt` `InOctets` and `OutOctets` from `/proc/self/net/netstat`: a line of names then a
/// line of values, each starting `IpExt:`. A missing field reads 0, as in client_golang.
fn network_octets() -> Option<(f64, f64)> {
    let netstat = std::fs::read_to_string("/proc/self/net/netstat").ok()?;
    let mut ip_ext = netstat.lines().filter_map(|l| l.strip_prefix("IpExt:"));
    let (names, values) = (ip_ext.next()?, ip_ext.next()?);
    let field = |wanted: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(name, _)| *name == wanted)
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Some((field("InOctets"), field("OutOctets")))
}

fn family(out: &mut String, family: &Family<0>, value: f64) {
    let (name, help, kind) = (family.name, family.help, family.kind.as_str());
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}

/// Writes every `process_*` family that can be read, sorted by name as client_golang's
/// registry writes them; one that cannot be read is left out, as there.
pub(super) fn render(out: &mut String) {
    let stat = read_stat();
    if let Some(s) = &stat {
        family(out, &PROCESS_CPU_SECONDS, s.cpu_seconds);
    }
    if let Some(m) = max_fds() {
        family(out, &PROCESS_MAX_FDS, m);
    }
    if let Some((received, sent)) = network_octets() {
        family(out, &PROCESS_NETWORK_RECEIVE, received);
        family(out, &PROCESS_NETWORK_TRANSMIT, sent);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        family(out, &PROCESS_OPEN_FDS, dir.count() as f64);
    }
    if let Some(s) = &stat {
        family(out, &PROCESS_RESIDENT_MEMORY, s.rss_bytes);
        family(out, &PROCESS_START_TIME, s.start_time);
        family(out, &PROCESS_VIRTUAL_MEMORY, s.vsize);
    }
    if let Some(m) = max_address_space() {
        family(out, &PROCESS_VIRTUAL_MEMORY_MAX, m);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let mut s = String::new();
        super::render(&mut s);
        for n in super::super::catalog::PROCESS.iter().map(|e| e.name) {
            assert!(s.contains(&format!("\n{n} ")), "{n} missing in {s}");
        }
        let rss = s
            .lines()
            .find_map(|l| {
                l.strip_prefix(super::PROCESS_RESIDENT_MEMORY.name)?
                    .strip_prefix(' ')
            })
            .unwrap();
        assert!(rss.parse::<f64>().unwrap() > 1_000_000.0);
    }
}
