//! Prometheus text format 0.0.4, written the way client_golang writes it (statsd_exporter's
//! output), and OpenMetrics 1.0 text (what changes is in `openmetrics.rs`); streamed
//! in chunks so a million series never sit in memory as one string.

use std::sync::atomic::{AtomicBool, Ordering};

use super::gzip::{Deflater, GzipFramer, Piece};
use super::nice;

use super::openmetrics;
use super::samples::{BoundLabel, SampleValue, for_each_sample};
use crate::store::{Family, Series, Store, TextStyle};

/// Which text exposition to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TextFormat {
    /// Prometheus text 0.0.4 (statsd_exporter's output).
    #[default]
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

/// How many series of one family are read per lock hold.
const SERIES_PER_LOCK: usize = 4096;

/// A family block rendered elsewhere (the gateway's own metrics), merged in name order.
#[derive(Clone, Debug)]
pub struct ExtraFamily {
    /// The family name, for ordering.
    pub name: String,
    /// The complete `# HELP`/`# TYPE`/samples text, ending in a newline.
    pub text: String,
}

/// Splits a rendered exposition into its families (by `# HELP`/`# TYPE` headers), sorted by
/// name, so they can be merged with the store's families.
pub fn split_families(text: &str) -> Vec<ExtraFamily> {
    let mut out: Vec<ExtraFamily> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let header_name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .and_then(|r| r.split(' ').next());
        match (header_name, out.last_mut()) {
            (Some(n), Some(last)) if last.name == n => {}
            (Some(n), _) => out.push(ExtraFamily {
                name: n.to_string(),
                text: String::new(),
            }),
            (None, None) => continue,
            (None, Some(_)) => {}
        }
        if let Some(last) = out.last_mut() {
            last.text.push_str(line);
            last.text.push('\n');
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Renders every family of `store` in text 0.0.4, merged with `extra` in name order,
/// handing out chunks of about `chunk_bytes` to `emit`. Returns false if `emit` asked to
/// stop (the client went away).
pub fn render(
    store: &Store,
    extra: &[ExtraFamily],
    chunk_bytes: usize,
    emit: impl FnMut(Vec<u8>) -> bool,
) -> bool {
    render_format(store, extra, TextFormat::Prometheus, chunk_bytes, emit)
}

/// [`render`] in the given text format.
pub fn render_format(
    store: &Store,
    extra: &[ExtraFamily],
    format: TextFormat,
    chunk_bytes: usize,
    emit: impl FnMut(Vec<u8>) -> bool,
) -> bool {
    let opts = RenderOptions {
        format,
        chunk_bytes,
        threads: 1,
        gzip: false,
    };
    render_with(store, extra, &opts, emit)
}

/// How [`render_with`] renders.
#[derive(Clone, Copy, Debug)]
pub struct RenderOptions {
    /// The text format.
    pub format: TextFormat,
    /// About how many bytes of text each chunk handed out holds (before compression).
    pub chunk_bytes: usize,
    /// How many threads render (and compress) at once. A store small enough for one job
    /// renders on the caller's thread whatever this says.
    pub threads: usize,
    /// Hand out one gzip member, compressed piece by piece, instead of text.
    pub gzip: bool,
}

/// About how many series one rendering job covers: small enough that the threads share
/// the work evenly, large enough that handing jobs over costs nothing. A family is never
/// split, so one family larger than this is a job of its own.
const JOB_SERIES: usize = 2048;

/// How many families ahead of the one being read a walk asks the CPU to load.
const PREFETCH_AHEAD: usize = 8;

/// A chunk as a worker hands it to the caller's thread.
enum Out {
    Text(Vec<u8>),
    Gzip(Piece),
    /// The job is complete.
    End,
}

/// Renders every family of `store`, merged with `extra` in name order, handing out chunks
/// in order to `emit`: with `threads` > 1, jobs of consecutive families are rendered (and
/// compressed) by that many threads, each a little ahead of what `emit` has taken, so at
/// most two chunks per thread wait in memory. Returns false if `emit` asked to stop (the
/// client went away); the threads then stop after their current chunk.
pub fn render_with(
    store: &Store,
    extra: &[ExtraFamily],
    opts: &RenderOptions,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> bool {
    let families = store.families();
    let now = store.clock().now_ms();
    let job = Job {
        families: &families,
        // Where each extra family goes: before the store family at that index.
        extra_at: extra
            .iter()
            .map(|e| families.partition_point(|f| f.name() < e.name.as_str()))
            .collect(),
        extra,
        at: store.clock().instant_at(now),
        opts,
    };
    let mut jobs: Vec<std::ops::Range<usize>> = Vec::new();
    let (mut start, mut series) = (0, 0);
    for (i, fam) in families.iter().enumerate() {
        if let Some(ahead) = families.get(i + PREFETCH_AHEAD) {
            ahead.prefetch();
        }
        series += fam.len().max(1);
        if series >= JOB_SERIES {
            jobs.push(start..i + 1);
            (start, series) = (i + 1, 0);
        }
    }
    // The last job (the only one that ends at the last family, or an empty one when there
    // are no families) writes the extras after every family, and `# EOF`.
    if start < families.len() || jobs.is_empty() {
        jobs.push(start..families.len());
    }
    let mut framer = GzipFramer::default();
    let threads = opts.threads.clamp(1, jobs.len());
    // A store small enough for one job renders on the caller's thread; anything larger on
    // render threads, which yield to ingest (`nice`).
    let ok = if jobs.len() == 1 {
        render_here(&job, &jobs, &mut framer, &mut emit)
    } else {
        render_parallel(&job, &jobs, threads, &mut framer, &mut emit)
    };
    ok && (!opts.gzip || emit(framer.finish()))
}

fn render_parallel(
    job: &Job<'_>,
    jobs: &[std::ops::Range<usize>],
    threads: usize,
    framer: &mut GzipFramer,
    emit: &mut impl FnMut(Vec<u8>) -> bool,
) -> bool {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let mut inboxes = Vec::with_capacity(threads);
        for w in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Out>(2);
            inboxes.push(rx);
            let stop = &stop;
            let spawned = std::thread::Builder::new()
                .name("statsgate-render".into())
                .spawn_scoped(scope, move || {
                    nice::lower_this_thread();
                    let mut deflater = job.opts.gzip.then(Deflater::default);
                    for range in jobs.iter().skip(w).step_by(threads) {
                        let mut send = |chunk: Vec<u8>| {
                            let out = match deflater.as_mut() {
                                Some(d) => Out::Gzip(d.piece(&chunk)),
                                None => Out::Text(chunk),
                            };
                            !stop.load(Ordering::Relaxed) && tx.send(out).is_ok()
                        };
                        if !job.render(range.clone(), &mut send) || tx.send(Out::End).is_err() {
                            return;
                        }
                    }
                });
            if spawned.is_err() {
                // No thread to be had: the caller's thread renders alone.
                stop.store(true, Ordering::Relaxed);
                drop(inboxes);
                return None;
            }
        }
        for (j, _) in jobs.iter().enumerate() {
            loop {
                let chunk = match inboxes[j % threads].recv() {
                    Ok(Out::Text(c)) => c,
                    Ok(Out::Gzip(p)) => framer.frame(p),
                    Ok(Out::End) => break,
                    Err(_) => return Some(false),
                };
                if !emit(chunk) {
                    stop.store(true, Ordering::Relaxed);
                    return Some(false);
                }
            }
        }
        Some(true)
    })
    .unwrap_or_else(|| render_here(job, jobs, framer, emit))
}

/// Renders every job in turn on the caller's thread.
fn render_here(
    job: &Job<'_>,
    jobs: &[std::ops::Range<usize>],
    framer: &mut GzipFramer,
    emit: &mut impl FnMut(Vec<u8>) -> bool,
) -> bool {
    let mut deflater = job.opts.gzip.then(Deflater::default);
    let mut out = |chunk: Vec<u8>| match deflater.as_mut() {
        Some(d) => emit(framer.frame(d.piece(&chunk))),
        None => emit(chunk),
    };
    jobs.iter().all(|range| job.render(range.clone(), &mut out))
}

/// What every rendering job shares.
struct Job<'a> {
    families: &'a [std::sync::Arc<Family>],
    extra: &'a [ExtraFamily],
    extra_at: Vec<usize>,
    at: std::time::Instant,
    opts: &'a RenderOptions,
}

impl Job<'_> {
    /// Renders the families in `range` (and the extras that go among them; after the last
    /// family, the rest of the extras and `# EOF`), handing chunks to `out`.
    fn render(&self, range: std::ops::Range<usize>, out: &mut dyn FnMut(Vec<u8>) -> bool) -> bool {
        let format = self.opts.format;
        let chunk_bytes = self.opts.chunk_bytes;
        let om = format == TextFormat::OpenMetrics;
        let last = range.end == self.families.len();
        let mut buf: Vec<u8> = Vec::with_capacity(chunk_bytes + 4096);
        let mut next_extra = self.extra_at.partition_point(|&p| p < range.start);
        let write_extra = |buf: &mut Vec<u8>, e: &ExtraFamily| {
            if om {
                buf.extend_from_slice(&openmetrics::convert_extra(e));
            } else {
                buf.extend_from_slice(e.text.as_bytes());
            }
        };
        for i in range {
            while next_extra < self.extra.len() && self.extra_at[next_extra] == i {
                write_extra(&mut buf, &self.extra[next_extra]);
                next_extra += 1;
            }
            if let Some(ahead) = self.families.get(i + PREFETCH_AHEAD) {
                ahead.prefetch();
            }
            if let Some(near) = self.families.get(i + PREFETCH_AHEAD / 2) {
                near.prefetch_name();
            }
            let fam = &self.families[i];
            // The header goes out with the first series, so a family emptied by expiry
            // shows nothing, without taking its lock once more to ask.
            let mut header = false;
            let mut ok = true;
            fam.for_each_series(SERIES_PER_LOCK, |s| {
                if !ok {
                    return;
                }
                if !header {
                    write_header(&mut buf, fam, format);
                    header = true;
                }
                write_series(&mut buf, fam, s, self.at, format);
                if buf.len() >= chunk_bytes {
                    ok = out(std::mem::replace(
                        &mut buf,
                        Vec::with_capacity(chunk_bytes + 4096),
                    ));
                }
            });
            if !ok {
                return false;
            }
        }
        if last {
            for e in &self.extra[next_extra..] {
                write_extra(&mut buf, e);
            }
            if om {
                buf.extend_from_slice(openmetrics::EOF);
            }
        }
        buf.is_empty() || out(buf)
    }
}

/// Renders into one string in text 0.0.4 (tests, small stores).
pub fn render_to_string(store: &Store, extra: &[ExtraFamily]) -> String {
    render_format_to_string(store, extra, TextFormat::Prometheus)
}

/// Renders into one string in the given format (tests, small stores).
pub fn render_format_to_string(store: &Store, extra: &[ExtraFamily], format: TextFormat) -> String {
    let mut out = Vec::new();
    render_format(store, extra, format, 1 << 16, |chunk| {
        out.extend_from_slice(&chunk);
        true
    });
    String::from_utf8_lossy(&out).into_owned()
}

fn write_header(buf: &mut Vec<u8>, fam: &Family, format: TextFormat) {
    let (name, kind) = match format {
        TextFormat::Prometheus => (fam.name(), Some(fam.family_type().as_str())),
        TextFormat::OpenMetrics => openmetrics::family_header(fam),
    };
    buf.extend_from_slice(b"# HELP ");
    buf.extend_from_slice(name.as_bytes());
    buf.push(b' ');
    if format == TextFormat::OpenMetrics {
        openmetrics::write_help(buf, fam.help());
    } else {
        write_escaped(buf, fam.help(), false);
    }
    buf.push(b'\n');
    if let Some(kind) = kind {
        buf.extend_from_slice(b"# TYPE ");
        buf.extend_from_slice(name.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(kind.as_bytes());
        buf.push(b'\n');
    }
}

fn write_labels(
    buf: &mut Vec<u8>,
    labels: &[(Box<str>, Box<str>)],
    bound: Option<BoundLabel>,
    style: TextStyle,
    format: TextFormat,
) {
    if labels.is_empty() && bound.is_none() {
        // `{}` on a series without labels is Envoy's quirk, kept only in the format Envoy
        // itself writes.
        if style == TextStyle::Envoy && format == TextFormat::Prometheus {
            buf.extend_from_slice(b"{}");
        }
        return;
    }
    buf.push(b'{');
    let mut first = true;
    for (k, v) in labels {
        if !first {
            buf.push(b',');
        }
        first = false;
        buf.extend_from_slice(k.as_bytes());
        buf.extend_from_slice(b"=\"");
        write_escaped(buf, v, true);
        buf.push(b'"');
    }
    if let Some(bound) = bound {
        if !first {
            buf.push(b',');
        }
        buf.extend_from_slice(bound.name().as_bytes());
        buf.extend_from_slice(b"=\"");
        bound.write_value(buf, style);
        buf.push(b'"');
    }
    buf.push(b'}');
}

fn write_series(
    buf: &mut Vec<u8>,
    fam: &Family,
    s: &Series,
    at: std::time::Instant,
    format: TextFormat,
) {
    // Sample names are the same in both formats (see `openmetrics`).
    let name = fam.name().as_bytes();
    let style = fam.style();
    for_each_sample(fam, s, at, |sample| {
        buf.extend_from_slice(name);
        buf.extend_from_slice(sample.suffix.as_bytes());
        write_labels(buf, s.labels(), sample.bound, style, format);
        buf.push(b' ');
        match sample.value {
            SampleValue::Float(v) => write_float(buf, v),
            SampleValue::Count(c) => write_u64(buf, c),
        }
        buf.push(b'\n');
    });
}

/// Writes `v` as Go's `strconv.FormatFloat(v, 'g', -1, 64)` does (client_golang's format):
/// shortest round-trip digits, and exponent form when the decimal exponent is below -4 or
/// at least 6 (`1e+06`, `123456`, `1e-05`, `0.0001`). Dashboards parse either form, but
/// byte-identical output makes a side-by-side migration diffable. Hand-written around
/// `ryu`'s digits because no crate prints Go's `'g'` layout.
pub(crate) fn write_float(buf: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        buf.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        buf.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    if v == 0.0 {
        buf.extend_from_slice(if v.is_sign_negative() { b"-0" } else { b"0" });
        return;
    }
    // Most statsd values are whole numbers below 1e6 (counts, bytes, milliseconds): Go
    // prints them as integers, and so can we without finding shortest digits.
    if v.fract() == 0.0 && v.abs() < 1e6 {
        if v < 0.0 {
            buf.push(b'-');
        }
        write_u64(buf, v.abs() as u64);
        return;
    }
    let mut ryu_buf = ryu::Buffer::new();
    let (neg, digits, exp) = decompose(ryu_buf.format_finite(v).as_bytes());
    let digits = &digits.0[..digits.1];
    if neg {
        buf.push(b'-');
    }
    if !(-4..6).contains(&exp) {
        buf.push(digits[0]);
        if digits.len() > 1 {
            buf.push(b'.');
            buf.extend_from_slice(&digits[1..]);
        }
        buf.push(b'e');
        buf.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            buf.push(b'0');
        }
        write_u64(buf, u64::from(e));
    } else if exp < 0 {
        buf.extend_from_slice(b"0.");
        for _ in 0..(-exp - 1) {
            buf.push(b'0');
        }
        buf.extend_from_slice(digits);
    } else {
        let int_len = exp as usize + 1;
        for i in 0..int_len {
            buf.push(digits.get(i).copied().unwrap_or(b'0'));
        }
        if digits.len() > int_len {
            buf.push(b'.');
            buf.extend_from_slice(&digits[int_len..]);
        }
    }
}

/// Up to 17 significant digits (the most a shortest round-trip f64 needs) and their count.
type Digits = ([u8; 24], usize);

/// Splits `ryu`'s output (`-1.5e-7`, `123456.0`, `0.001`, `1e21`) into sign, significant
/// digits without leading or trailing zeros, and the decimal exponent of the first digit.
fn decompose(s: &[u8]) -> (bool, Digits, i32) {
    let (neg, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let (mant, exp_part) = match s.iter().position(|&b| b == b'e' || b == b'E') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[][..]),
    };
    let mut exp: i32 = 0;
    let mut exp_neg = false;
    for &b in exp_part {
        match b {
            b'-' => exp_neg = true,
            b'0'..=b'9' => exp = exp * 10 + i32::from(b - b'0'),
            _ => {}
        }
    }
    if exp_neg {
        exp = -exp;
    }
    let mut digits = [0u8; 24];
    let mut nd = 0usize;
    // Position of the decimal point relative to the digits seen, and of the first
    // significant digit.
    let mut int_digits: i32 = 0;
    let mut seen_point = false;
    let mut first_sig: Option<i32> = None;
    let mut pos: i32 = 0;
    for &b in mant {
        if b == b'.' {
            seen_point = true;
            continue;
        }
        if !seen_point {
            int_digits += 1;
        }
        if b != b'0' || first_sig.is_some() {
            if first_sig.is_none() {
                first_sig = Some(pos);
            }
            if nd < digits.len() {
                digits[nd] = b;
                nd += 1;
            }
        }
        pos += 1;
    }
    while nd > 1 && digits[nd - 1] == b'0' {
        nd -= 1;
    }
    let first = first_sig.unwrap_or(0);
    (neg, (digits, nd), exp + int_digits - 1 - first)
}

/// Writes `n` in decimal.
pub(crate) fn write_u64(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `s`, escaping `\\` and newline (and `"` when `quote`), as the text format wants:
/// copied whole when nothing needs escaping, which is nearly always.
pub(crate) fn write_escaped(buf: &mut Vec<u8>, s: &str, quote: bool) {
    let bytes = s.as_bytes();
    let special = if quote {
        memchr::memchr3(b'\\', b'\n', b'"', bytes)
    } else {
        memchr::memchr2(b'\\', b'\n', bytes)
    };
    let Some(first) = special else {
        buf.extend_from_slice(bytes);
        return;
    };
    buf.extend_from_slice(&bytes[..first]);
    for &b in &bytes[first..] {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'"' if quote => buf.extend_from_slice(b"\\\""),
            _ => buf.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut b = Vec::new();
        write_float(&mut b, v);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn floats_match_go_g_format() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (2.5, "2.5"),
            (0.005, "0.005"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (-10.0, "-10"),
            (327.0, "327"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-07"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (1e100, "1e+100"),
            (123456.5, "123456.5"),
            (999999.0, "999999"),
            (-0.5, "-0.5"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (1e-4 * 3.0, "0.00030000000000000003"),
            (-1234567.0, "-1.234567e+06"),
            (1e15 + 0.3, "1.0000000000000002e+15"),
        ];
        for (v, want) in cases {
            assert_eq!(f(v), want, "{v}");
        }
    }

    fn counter(store: &Store, name: &str, labels: Vec<(String, String)>, v: f64) {
        let spec = crate::store::SeriesSpec {
            name,
            help: None,
            kind: crate::store::SeriesKind::Counter,
            labels,
            ttl: std::time::Duration::ZERO,
            style: TextStyle::default(),
        };
        assert!(store.resolve(&spec).unwrap().counter_add(v));
    }

    /// A store of many small families and a few larger than a job, with extra families
    /// falling before, among and after them.
    fn mixed_store() -> (Store, Vec<ExtraFamily>) {
        let store = Store::new(crate::store::StoreOptions::default());
        for i in 0..9_000 {
            counter(&store, &format!("m{i:05}"), Vec::new(), f64::from(i) + 0.25);
        }
        for f in ["m03000_big", "m07777_big"] {
            for i in 0..(JOB_SERIES + 300) {
                counter(&store, f, vec![("i".into(), format!("{i}"))], 1.0);
            }
        }
        let extra = split_families(
            "# HELP a_first A.\n# TYPE a_first gauge\na_first 1\n\
             # HELP m04000x Among.\n# TYPE m04000x gauge\nm04000x 2\n\
             # HELP z_last Z.\n# TYPE z_last gauge\nz_last 3\n",
        );
        (store, extra)
    }

    fn rendered(store: &Store, extra: &[ExtraFamily], threads: usize, gzip: bool) -> Vec<u8> {
        let opts = RenderOptions {
            format: TextFormat::OpenMetrics,
            chunk_bytes: 10_000,
            threads,
            gzip,
        };
        let mut out = Vec::new();
        assert!(render_with(store, extra, &opts, |c| {
            out.extend_from_slice(&c);
            true
        }));
        if gzip {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[..]), &mut text)
                .unwrap();
            text
        } else {
            out
        }
    }

    #[test]
    fn threads_and_gzip_render_the_same_bytes_in_the_same_order() {
        let (store, extra) = mixed_store();
        let one = rendered(&store, &extra, 1, false);
        let text = String::from_utf8(one.clone()).unwrap();
        assert!(text.starts_with("# HELP a_first A."), "{}", &text[..40]);
        assert!(text.ends_with("z_last 3\n# EOF\n"));
        let among = text.find("m04000x 2").unwrap();
        assert!(text.find("\nm04000 ").unwrap() < among && among < text.find("\nm04001 ").unwrap());
        for (threads, gzip) in [(2, false), (3, false), (1, true), (2, true), (4, true)] {
            assert!(
                rendered(&store, &extra, threads, gzip) == one,
                "{threads} threads, gzip {gzip}"
            );
        }
    }

    /// The families fill the last job exactly: the extras after them and `# EOF` come once.
    #[test]
    fn a_last_job_filled_exactly_ends_the_exposition_once() {
        let store = Store::new(crate::store::StoreOptions::default());
        for i in 0..10 {
            counter(&store, "a", vec![("i".into(), format!("{i}"))], 1.0);
        }
        for i in 0..JOB_SERIES - 10 {
            counter(&store, "b", vec![("i".into(), format!("{i}"))], 1.0);
        }
        let extra = split_families("# HELP z Z.\n# TYPE z gauge\nz 3\n");
        for threads in [1, 2] {
            let text = String::from_utf8(rendered(&store, &extra, threads, false)).unwrap();
            assert_eq!(text.matches("# EOF").count(), 1, "{threads} threads");
            assert_eq!(text.matches("\nz 3\n").count(), 1, "{threads} threads");
            assert!(text.ends_with("\nz 3\n# EOF\n"));
        }
        // Two jobs: the one that ends the families is the last.
        let (store, extra) = mixed_store();
        let text = String::from_utf8(rendered(&store, &extra, 2, false)).unwrap();
        assert_eq!(text.matches("# EOF").count(), 1);
    }

    #[test]
    fn a_client_that_stops_stops_every_thread() {
        let (store, extra) = mixed_store();
        for gzip in [false, true] {
            let opts = RenderOptions {
                format: TextFormat::Prometheus,
                chunk_bytes: 1_000,
                threads: 3,
                gzip,
            };
            let mut taken = 0;
            let ok = render_with(&store, &extra, &opts, |_| {
                taken += 1;
                taken < 5
            });
            assert!(!ok);
            assert_eq!(taken, 5);
        }
    }

    /// Whether `ours` and `std` are two shortest spellings of `v` that differ only because
    /// `v` lies exactly halfway between them, and `ours` took the even last digit. Go (like
    /// `ryu`) breaks such a tie to even, Rust's `{:e}` upwards:
    /// `strconv.FormatFloat(606864127104782.25, 'g', -1, 64)` is `6.068641271047822e+14`,
    /// where `{:e}` gives `6.068641271047823e14`.
    fn go_breaks_a_tie_to_even(v: f64, ours: &str, std: &str) -> bool {
        let digits = |s: &str| -> String {
            let mant = s.split('e').next().unwrap_or(s);
            let d: String = mant.chars().filter(char::is_ascii_digit).collect();
            d.trim_start_matches('0').to_owned()
        };
        let (a, b) = (digits(ours), digits(std));
        if a.len() != b.len() || a.is_empty() || ours.parse::<f64>() != Ok(v) {
            return false;
        }
        let common = &a[..a.len() - 1];
        if !b.starts_with(common) {
            return false;
        }
        let (last_a, last_b) = (a.as_bytes()[a.len() - 1], b.as_bytes()[b.len() - 1]);
        if last_a.abs_diff(last_b) != 1 || (last_a - b'0') % 2 != 0 {
            return false;
        }
        // Rust prints a float exactly when given a precision: a tie is the common digits, the
        // lower last digit, a 5 and nothing but zeros after.
        let exact = digits(&format!("{:.800e}", v.abs()));
        let low = last_a.min(last_b) as char;
        let tie = format!("{common}{low}5");
        exact.starts_with(&tie) && exact[tie.len()..].bytes().all(|d| d == b'0')
    }

    #[test]
    fn a_tie_between_two_shortest_spellings_goes_to_even_as_in_go() {
        let v = f64::from_bits(4828210113930639474);
        assert_eq!(format!("{v:.2}"), "606864127104782.25", "exactly halfway");
        assert_eq!(f(v), "6.068641271047822e+14", "Go's output");
        assert_eq!(
            go_g(v),
            "6.068641271047823e+14",
            "Rust's {{:e}} rounds the tie up"
        );
        assert!(go_breaks_a_tie_to_even(v, &f(v), &go_g(v)));
        // Not ties: a wrong digit, and the odd one of a tie.
        assert!(!go_breaks_a_tie_to_even(
            v,
            "6.068641271047824e+14",
            &go_g(v)
        ));
        assert!(!go_breaks_a_tie_to_even(v, &go_g(v), &f(v)));
        let near = 606864127104782.5;
        assert!(!go_breaks_a_tie_to_even(
            near,
            "6.068641271047824e+14",
            &go_g(near)
        ));
    }

    /// Go's `'g'` layout from Rust's shortest `{:e}` digits, the slow way.
    fn go_g(v: f64) -> String {
        let e = format!("{:e}", v.abs());
        let (mant, exp) = e.split_once('e').unwrap();
        let exp: i32 = exp.parse().unwrap();
        let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
        let sign = if v < 0.0 { "-" } else { "" };
        let body = if !(-4..6).contains(&exp) {
            let (first, rest) = digits.split_at(1);
            let frac = if rest.is_empty() {
                String::new()
            } else {
                format!(".{rest}")
            };
            format!(
                "{first}{frac}e{}{:02}",
                if exp < 0 { '-' } else { '+' },
                exp.abs()
            )
        } else if exp < 0 {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        } else {
            let int_len = exp as usize + 1;
            let padded = format!("{digits:0<int_len$}");
            let (int, frac) = padded.split_at(int_len);
            if frac.is_empty() {
                int.to_string()
            } else {
                format!("{int}.{frac}")
            }
        };
        format!("{sign}{body}")
    }

    proptest::proptest! {
        #[test]
        fn any_finite_float_matches_go(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            if v.is_finite() && v != 0.0 {
                let (ours, std) = (f(v), go_g(v));
                if ours != std {
                    proptest::prop_assert!(
                        go_breaks_a_tie_to_even(v, &ours, &std),
                        "{ours} != {std}"
                    );
                }
            }
        }

        #[test]
        fn decimal_looking_floats_match_go(m in -10_000_000i64..10_000_000, e in -12i32..12) {
            let v = m as f64 * 10f64.powi(e);
            if v != 0.0 {
                proptest::prop_assert_eq!(f(v), go_g(v));
            }
        }
    }

    #[test]
    fn splits_rendered_families() {
        let t = "# HELP b x\n# TYPE b counter\nb 1\n\n# HELP a y\n# TYPE a gauge\na{k=\"v\"} 2\n";
        let fams = split_families(t);
        assert_eq!(fams.len(), 2);
        assert_eq!(fams[0].name, "a");
        assert_eq!(fams[0].text, "# HELP a y\n# TYPE a gauge\na{k=\"v\"} 2\n");
    }
}
