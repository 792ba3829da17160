//! Prometheus text format 0.0.4, written the way client_golang writes it (statsd_exporter's
//! output), and OpenMetrics 1.0 text (what changes is in `openmetrics.rs`); streamed
//! in chunks so a million series never sit in memory as one string.

use std::io::Write as _;

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
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> bool {
    let om = format == TextFormat::OpenMetrics;
    let write_extra = |buf: &mut Vec<u8>, e: &ExtraFamily| {
        if om {
            buf.extend_from_slice(&openmetrics::convert_extra(e));
        } else {
            buf.extend_from_slice(e.text.as_bytes());
        }
    };
    let mut buf: Vec<u8> = Vec::with_capacity(chunk_bytes + 4096);
    let families = store.families();
    let mut extra = extra.iter().peekable();
    let now = store.clock().now_ms();
    let at = store.clock().instant_at(now);
    for fam in families.iter() {
        while let Some(e) = extra.next_if(|e| e.name.as_str() < fam.name()) {
            write_extra(&mut buf, e);
        }
        if fam.is_empty() {
            continue;
        }
        write_header(&mut buf, fam, format);
        let mut ok = true;
        fam.for_each_series(SERIES_PER_LOCK, |s| {
            if !ok {
                return;
            }
            write_series(&mut buf, fam, s, at, format);
            if buf.len() >= chunk_bytes {
                ok = emit(std::mem::replace(
                    &mut buf,
                    Vec::with_capacity(chunk_bytes + 4096),
                ));
            }
        });
        if !ok {
            return false;
        }
    }
    for e in extra {
        write_extra(&mut buf, e);
    }
    if om {
        buf.extend_from_slice(openmetrics::EOF);
    }
    buf.is_empty() || emit(buf)
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
        for b in fam.help().bytes() {
            match b {
                b'\\' => buf.extend_from_slice(b"\\\\"),
                b'\n' => buf.extend_from_slice(b"\\n"),
                _ => buf.push(b),
            }
        }
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
        for b in v.bytes() {
            match b {
                b'\\' => buf.extend_from_slice(b"\\\\"),
                b'"' => buf.extend_from_slice(b"\\\""),
                b'\n' => buf.extend_from_slice(b"\\n"),
                _ => buf.push(b),
            }
        }
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
            SampleValue::Count(c) => {
                let _ = write!(buf, "{c}");
            }
        }
        buf.push(b'\n');
    });
}

/// Writes `v` as Go's `strconv.FormatFloat(v, 'g', -1, 64)` does (client_golang's format):
/// shortest round-trip digits, and exponent form when the decimal exponent is below -4 or
/// at least 6 (`1e+06`, `123456`, `1e-05`, `0.0001`). Dashboards parse either form, but
/// byte-identical output makes a side-by-side migration diffable.
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
    // Rust's `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let mut tmp = [0u8; 40];
    let mut cur = std::io::Cursor::new(&mut tmp[..]);
    if write!(cur, "{v:e}").is_err() {
        let _ = write!(buf, "{v}");
        return;
    }
    let len = cur.position() as usize;
    let s = &tmp[..len];
    let (neg, s) = if s[0] == b'-' {
        (true, &s[1..])
    } else {
        (false, s)
    };
    let Some(epos) = s.iter().position(|b| *b == b'e') else {
        return;
    };
    let (mant, exp) = (&s[..epos], &s[epos + 1..]);
    let exp: i32 = std::str::from_utf8(exp)
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    let mut digits = [0u8; 24];
    let mut nd = 0;
    for b in mant.iter().filter(|b| b.is_ascii_digit()) {
        if nd < digits.len() {
            digits[nd] = *b;
            nd += 1;
        }
    }
    let digits = &digits[..nd];
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
        let _ = write!(buf, "{:02}", exp.unsigned_abs());
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
        ];
        for (v, want) in cases {
            assert_eq!(f(v), want, "{v}");
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
