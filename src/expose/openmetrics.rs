//! What OpenMetrics 1.0 text changes from text 0.0.4; the walk itself is [`super::text`]'s.
//!
//! - Sample names never change: a series is the same series in Prometheus whichever format
//!   it negotiated (Prometheus 2.x and 3.x both prefer OpenMetrics when offered, so a
//!   renamed sample would split every series, and the dashboards reading it, on upgrade).
//!   A counter whose name ends in `_total` (every counter of the gateway's own) is an
//!   OpenMetrics counter: family named without `_total`, sample with it. A counter named
//!   without `_total` (most statsd counters: `requests`) would have to be exposed as
//!   `requests_total` to be an OpenMetrics counter, so it is left untyped instead (HELP and
//!   no `# TYPE`: OpenMetrics' `unknown`, and a form promtool's text 0.0.4 parser reads too)
//!   and keeps its name; `rate()` and `increase()` work the same on it. `_created` is not
//!   written: the store does not keep when a series was created.
//! - `# UNIT` is written only for the gateway's own metrics whose names end in a base
//!   unit (`_seconds`, `_bytes`): a statsd name carries no unit the gateway could vouch
//!   for, and OpenMetrics requires a family with a unit to end in it.
//! - `le` and `quantile` values are written exactly as in text 0.0.4 (`le="1"`, not
//!   client_golang's OpenMetrics `le="1.0"`): Prometheus 2.x keeps them as strings, and
//!   Prometheus prefers OpenMetrics when it is offered, so another spelling would split
//!   every bucket series, and the dashboards reading it, on upgrade.
//! - HELP escapes `"` as well, a series without labels never gets `{}`, and the body ends
//!   with `# EOF`.

use super::text::ExtraFamily;
use crate::store::Family;

/// The last line of every OpenMetrics exposition.
pub(crate) const EOF: &[u8] = b"# EOF\n";

/// The OpenMetrics family name and type of a store family: a counter named `x_total` is
/// family `x`; a counter named otherwise has no type (`None`: no `# TYPE` line; see the
/// module notes).
pub(crate) fn family_header(family: &Family) -> (&str, Option<&'static str>) {
    header_for(family.name(), family.family_type().as_str())
}

fn header_for<'a, 'k>(name: &'a str, kind: &'k str) -> (&'a str, Option<&'k str>) {
    match (kind, name.strip_suffix("_total")) {
        ("counter", Some(base)) => (base, Some(kind)),
        ("counter", None) | ("untyped", _) => (name, None),
        _ => (name, Some(kind)),
    }
}

/// The unit a gateway-owned family name ends in, if any.
fn unit_of(family_name: &str) -> Option<&'static str> {
    ["seconds", "bytes"].into_iter().find(|u| {
        family_name
            .strip_suffix(u)
            .is_some_and(|rest| rest.ends_with('_'))
    })
}

/// Appends a HELP text with OpenMetrics' escapes (`\\`, `\n`, `\"`).
pub(crate) fn write_help(buf: &mut Vec<u8>, help: &str) {
    for b in help.bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'"' => buf.extend_from_slice(b"\\\""),
            _ => buf.push(b),
        }
    }
}

/// Rewrites one of the gateway's own families (text 0.0.4, as the telemetry renders it)
/// for OpenMetrics: headers as [`family_header`] names and types them, HELP re-escaped,
/// `# UNIT` added where the name ends in one. Samples are kept as they are.
pub(crate) fn convert_extra(family: &ExtraFamily) -> Vec<u8> {
    let kind = family
        .text
        .lines()
        .find_map(|l| l.strip_prefix("# TYPE ").and_then(|r| r.rsplit(' ').next()))
        .unwrap_or("untyped");
    let (name, kind) = header_for(&family.name, kind);
    let mut out = Vec::with_capacity(family.text.len() + 64);
    for line in family.text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let help = rest.split_once(' ').map_or("", |(_, h)| h);
            out.extend_from_slice(b"# HELP ");
            out.extend_from_slice(name.as_bytes());
            out.push(b' ');
            // Text 0.0.4 escapes `\\` and `\n` already; only `"` needs adding.
            for b in help.bytes() {
                if b == b'"' {
                    out.push(b'\\');
                }
                out.push(b);
            }
        } else if line.starts_with("# TYPE ") {
            let Some(kind) = kind else { continue };
            out.extend_from_slice(b"# TYPE ");
            out.extend_from_slice(name.as_bytes());
            out.push(b' ');
            out.extend_from_slice(kind.as_bytes());
            if let Some(unit) = unit_of(name) {
                out.extend_from_slice(b"\n# UNIT ");
                out.extend_from_slice(name.as_bytes());
                out.push(b' ');
                out.extend_from_slice(unit.as_bytes());
            }
        } else if line.starts_with('#') {
            // Text 0.0.4 comments have no place in OpenMetrics.
            continue;
        } else {
            out.extend_from_slice(line.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extra(text: &str) -> String {
        let fams = super::super::text::split_families(text);
        String::from_utf8(convert_extra(&fams[0])).unwrap()
    }

    #[test]
    fn own_counters_lose_total_and_gain_units() {
        assert_eq!(
            extra(
                "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
                 # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 0.5\n"
            ),
            "# HELP process_cpu_seconds Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds counter\n# UNIT process_cpu_seconds seconds\n\
             process_cpu_seconds_total 0.5\n"
        );
        assert_eq!(
            extra("# HELP g a \"quoted\" \\\\ help\n# TYPE g gauge\ng{a=\"b\"} 1\n"),
            "# HELP g a \\\"quoted\\\" \\\\ help\n# TYPE g gauge\ng{a=\"b\"} 1\n"
        );
    }

    #[test]
    fn counters_without_total_keep_their_name_untyped() {
        assert_eq!(
            header_for("requests_total", "counter"),
            ("requests", Some("counter"))
        );
        assert_eq!(header_for("requests", "counter"), ("requests", None));
        assert_eq!(header_for("x_total", "gauge"), ("x_total", Some("gauge")));
        assert_eq!(header_for("h", "histogram"), ("h", Some("histogram")));
        assert_eq!(
            extra("# HELP c C.\n# TYPE c counter\nc{a=\"b\"} 1\n"),
            "# HELP c C.\nc{a=\"b\"} 1\n"
        );
    }

    #[test]
    fn units_only_for_whole_suffixes() {
        assert_eq!(unit_of("process_resident_memory_bytes"), Some("bytes"));
        assert_eq!(unit_of("process_start_time_seconds"), Some("seconds"));
        assert_eq!(unit_of("megabytes"), None);
        assert_eq!(unit_of("statsd_exporter_lines"), None);
    }
}
