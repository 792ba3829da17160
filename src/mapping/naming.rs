//! How statsd names become Prometheus names: the escaping of metric names (which the
//! profiles apply, and the line parser applies to tag keys, as statsd_exporter's mapper
//! package does), valid label names, and the label names the exposition reserves.

use std::borrow::Cow;

/// Escapes a statsd name into a Prometheus metric name exactly as current statsd_exporter
/// does (`pkg/mapper/escape.go`): a leading digit gets a `_` prefix, every character outside
/// `[a-zA-Z0-9_]` becomes one `_`, except that a `-` directly after a `-` is dropped.
///
/// Borrows when the name is already valid, which is the steady state for Envoy names after
/// the first sight, so callers on the hot path do not allocate.
pub fn escape_metric_name(name: &str) -> Cow<'_, str> {
    escape_with(name, true)
}

/// The escaping of statsd_exporter 0.5/0.6 (Istio's Mixer era): every character outside
/// `[a-zA-Z0-9_]` becomes `_`, with no double-dash rule.
pub fn escape_metric_name_legacy(name: &str) -> Cow<'_, str> {
    escape_with(name, false)
}

fn escape_with(name: &str, fold_double_dash: bool) -> Cow<'_, str> {
    let bytes = name.as_bytes();
    let clean = !bytes.is_empty()
        && !bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if clean || name.is_empty() {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 1);
    if bytes[0].is_ascii_digit() {
        out.push('_');
    }
    let mut prev_dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
            prev_dash = false;
        } else if c == '-' && prev_dash && fold_double_dash {
            // statsd_exporter >= 0.22.3 drops a dash that follows a dash.
        } else {
            out.push('_');
            prev_dash = c == '-';
        }
    }
    Cow::Owned(out)
}

/// True when `name` is a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Label names that the exposition owns and a tag must never set: `__`-prefixed names are
/// reserved by Prometheus (`__name__` would rename the series), `le` belongs to histogram
/// buckets and `quantile` to summary quantiles. statsd_exporter 0.22–0.27 crashes or serves
/// HTTP 500 on these; statsgate drops such a tag and counts it (see `store`).
pub fn is_reserved_label(name: &str, for_histogram: bool, for_summary: bool) -> bool {
    name.starts_with("__") || (for_histogram && name == "le") || (for_summary && name == "quantile")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_statsd_exporter() {
        let cases = [
            ("clean", "clean"),
            ("with_underscore", "with_underscore"),
            ("with--doubledash", "with_doubledash"),
            ("with---multiple-dashes", "with_multiple_dashes"),
            ("with.dot", "with_dot"),
            ("with😱emoji", "with_emoji"),
            ("with.*.multiple", "with___multiple"),
            ("test.web-server.foo.bar", "test_web_server_foo_bar"),
            ("0starts_with_digit", "_0starts_with_digit"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(escape_metric_name(input), want, "input {input:?}");
        }
    }

    #[test]
    fn clean_names_borrow() {
        assert!(matches!(
            escape_metric_name("envoy_cluster_x"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn legacy_escape_keeps_every_dash() {
        assert_eq!(
            escape_metric_name_legacy("with--doubledash"),
            "with__doubledash"
        );
        assert_eq!(
            escape_metric_name_legacy("out.istio-pilot.istio-system|http-discovery"),
            "out_istio_pilot_istio_system_http_discovery"
        );
    }

    #[test]
    fn label_name_validity() {
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a:b"));
        assert!(is_reserved_label("__name__", false, false));
        assert!(is_reserved_label("le", true, false));
        assert!(!is_reserved_label("le", false, true));
        assert!(is_reserved_label("quantile", false, true));
    }
}
