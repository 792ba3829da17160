//! Log output in the two formats statsd_exporter offers (`--log.format=logfmt|json`), so
//! log pipelines that parse its lines keep working, and the one rate limiter every stage
//! puts in front of messages that input from the network could repeat.

use std::fmt::{self, Write as _};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::{LogFormat, LogLevel};

/// Lets one message through per interval, so a flood of bad input or a persistent socket
/// error cannot flood the log, and counts the ones it holds back. A `static` shared by every
/// thread of a listener, or a field of one worker.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    interval_ms: u64,
    /// When a message was last let through, in ms since [`EPOCH`] plus one; 0 is never.
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

/// The limiters' clock: monotonic, so a wall-clock step back cannot silence logging.
static EPOCH: OnceLock<Instant> = OnceLock::new();

impl LogLimiter {
    /// At most one message per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        LogLimiter {
            interval_ms: interval.as_millis() as u64,
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when the caller may log now, `n` being how many messages were held back
    /// since the last one let through; `None` (one more held back) otherwise.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.interval_ms;
        // Of threads that find it due at once, the one whose swap succeeds logs.
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Formats events as logfmt: `time=... level=info source=module msg="..." key=value`.
struct Logfmt;

struct LogfmtFields {
    msg: String,
    rest: String,
}

fn quote_if_needed(out: &mut String, v: &str) {
    if !v.is_empty() && !v.contains([' ', '"', '=', '\n', '\\']) {
        out.push_str(v);
    } else {
        let _ = write!(out, "{v:?}");
    }
}

impl Visit for LogfmtFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg = value.to_string();
        } else {
            let _ = write!(self.rest, " {}=", field.name());
            quote_if_needed(&mut self.rest, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = LogfmtFields {
            msg: String::new(),
            rest: String::new(),
        };
        event.record(&mut fields);
        let meta = event.metadata();
        let level = match *meta.level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let now = humantime_now();
        let mut msg = String::new();
        quote_if_needed(&mut msg, &fields.msg);
        writeln!(
            w,
            "time={now} level={level} source={} msg={msg}{}",
            meta.target(),
            fields.rest
        )
    }
}

/// RFC 3339 UTC timestamp with milliseconds, without pulling in a date crate.
fn humantime_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (year, month, day, sod) = civil_from_unix(d.as_secs() as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        d.subsec_millis()
    )
}

/// Unix seconds as the UTC (year, month, day, seconds of the day), proleptic Gregorian
/// calendar: Howard Hinnant's civil-from-days, so that timestamps need no date crate.
pub(crate) fn civil_from_unix(secs: i64) -> (i64, i64, i64, i64) {
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, sod)
}

/// Installs the global log subscriber, writing to stderr.
pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => Level::DEBUG,
        LogLevel::Info => Level::INFO,
        LogLevel::Warn => Level::WARN,
        LogLevel::Error => Level::ERROR,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Logfmt => builder.event_format(Logfmt).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_lets_one_through_per_interval_and_counts_the_rest() {
        let limiter = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), None);
        assert_eq!(limiter.allow(), None);
        // As if the interval had passed: the next message goes out with the held-back count.
        limiter.last_ms.store(0, Ordering::Relaxed);
        assert_eq!(limiter.allow(), Some(2));
        assert_eq!(limiter.allow(), None);
    }

    #[test]
    fn timestamp_shape() {
        let t = super::humantime_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }

    #[test]
    fn logfmt_quoting() {
        let mut s = String::new();
        super::quote_if_needed(&mut s, "plain");
        super::quote_if_needed(&mut s, " has space");
        assert_eq!(s, "plain\" has space\"");
    }
}
