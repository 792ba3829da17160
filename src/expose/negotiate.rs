//! Which exposition format a scrape gets, from its `Accept` header, the way client_golang's
//! `expfmt.NegotiateAccept` picks one: the header's media ranges are ranked by q-value
//! (then concrete types before wildcards), and the first range that matches a format we
//! serve wins; nothing matching means text 0.0.4.
//!
//! Two departures, both towards RFC 9110: a range with `q=0` means "not acceptable" and is
//! skipped (client_golang would still pick it), and parameter values may be quoted.

/// An exposition format /metrics can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4, the default.
    Text,
    /// OpenMetrics 1.0 text; `legacy_version` when the scraper asked for version 0.0.1
    /// (the same encoding, answered under the version it asked for, as client_golang does).
    OpenMetrics {
        /// The client asked for `version=0.0.1` (or no version).
        legacy_version: bool,
    },
    /// Length-delimited `io.prometheus.client.MetricFamily` protobuf messages.
    Protobuf,
}

/// The protobuf media type's `proto` parameter, as Prometheus sends it.
const PROTO_PROTOCOL: &str = "io.prometheus.client.MetricFamily";

/// Formats in the order a wildcard range (`*/*`, `application/*`) picks them: text first,
/// so a bare `curl` keeps getting what it always got.
const SERVED: [Format; 4] = [
    Format::Text,
    Format::OpenMetrics {
        legacy_version: false,
    },
    Format::OpenMetrics {
        legacy_version: true,
    },
    Format::Protobuf,
];

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics {
                legacy_version: false,
            } => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::OpenMetrics {
                legacy_version: true,
            } => "application/openmetrics-text; version=0.0.1; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
        }
    }

    /// True when `range` asks for this format.
    fn matches(self, range: &MediaRange<'_>) -> bool {
        if range.main == "*" && range.sub == "*" {
            return true;
        }
        let (main, sub) = match self {
            Format::Text => ("text", "plain"),
            Format::OpenMetrics { .. } => ("application", "openmetrics-text"),
            Format::Protobuf => ("application", "vnd.google.protobuf"),
        };
        if (range.main != "*" && !range.main.eq_ignore_ascii_case(main))
            || (range.sub != "*" && !range.sub.eq_ignore_ascii_case(sub))
        {
            return false;
        }
        // `text/*` or `application/*`: any format of that type, without looking at params.
        if range.sub == "*" {
            return true;
        }
        let version = range.param("version");
        match self {
            Format::Text => version.is_none_or(|v| v == "0.0.4"),
            Format::OpenMetrics { legacy_version } => {
                // client_golang reads a missing version as 0.0.1.
                let v = version.unwrap_or("0.0.1");
                if legacy_version {
                    v == "0.0.1"
                } else {
                    v == "1.0.0"
                }
            }
            Format::Protobuf => {
                range.param("proto") == Some(PROTO_PROTOCOL)
                    && range.param("encoding") == Some("delimited")
            }
        }
    }
}

/// One media range of an `Accept` header.
#[derive(Debug)]
struct MediaRange<'a> {
    main: &'a str,
    sub: &'a str,
    q: f64,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> MediaRange<'a> {
    fn param(&self, key: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }

    /// Parses `type/subtype; k=v; q=0.5`; `None` for a malformed range, which is ignored
    /// (as goautoneg ignores it).
    fn parse(part: &'a str) -> Option<Self> {
        let mut pieces = part.split(';');
        let media = pieces.next()?.trim();
        let (main, sub) = match media.split_once('/') {
            Some((m, s)) if !s.contains('/') => (m.trim(), s.trim()),
            // goautoneg reads a lone `*` as `*/*`.
            None if media == "*" => ("*", "*"),
            _ => return None,
        };
        if main.is_empty() || sub.is_empty() {
            return None;
        }
        let mut range = MediaRange {
            main,
            sub,
            q: 1.0,
            params: Vec::new(),
        };
        for p in pieces {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            if k.eq_ignore_ascii_case("q") {
                // An unreadable q-value counts as 0, as goautoneg's ParseFloat error does.
                range.q = v
                    .parse::<f64>()
                    .ok()
                    .filter(|q| q.is_finite())
                    .unwrap_or(0.0)
                    .clamp(0.0, 1.0);
            } else {
                range.params.push((k, v));
            }
        }
        Some(range)
    }
}

/// The format to serve for a request with this `Accept` header (`None`: no header).
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut ranges: Vec<MediaRange<'_>> = accept
        .split(',')
        .filter_map(MediaRange::parse)
        .filter(|r| r.q > 0.0)
        .collect();
    // Stable: ranges of equal rank keep the order the client wrote them in.
    ranges.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then((a.main == "*").cmp(&(b.main == "*")))
            .then((a.sub == "*").cmp(&(b.sub == "*")))
    });
    ranges
        .iter()
        .find_map(|r| SERVED.into_iter().find(|f| f.matches(r)))
        .unwrap_or(Format::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM1: Format = Format::OpenMetrics {
        legacy_version: false,
    };
    const OM0: Format = Format::OpenMetrics {
        legacy_version: true,
    };

    #[test]
    fn no_header_or_nothing_known_is_text() {
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(negotiate(Some("")), Format::Text);
        assert_eq!(negotiate(Some("application/json")), Format::Text);
        assert_eq!(negotiate(Some("*/*")), Format::Text);
        assert_eq!(negotiate(Some("garbage;;,/,x/y/z")), Format::Text);
    }

    #[test]
    fn what_prometheus_sends() {
        // Prometheus 2.x's default scrape Accept header.
        let v2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                  version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(v2)), OM1);
        // With native histograms enabled, protobuf comes first.
        let native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;\
                      encoding=delimited;q=0.8,application/openmetrics-text;version=1.0.0;q=0.7,\
                      text/plain;version=0.0.4;q=0.6,*/*;q=0.5";
        assert_eq!(negotiate(Some(native)), Format::Protobuf);
        // Prometheus 3's `scrape_protocols: [PrometheusText0.0.4]`.
        assert_eq!(
            negotiate(Some("text/plain;version=0.0.4;q=0.9,*/*;q=0.8")),
            Format::Text
        );
    }

    #[test]
    fn q_values_rank_ranges() {
        let h =
            "text/plain;version=0.0.4;q=0.3, application/openmetrics-text; version=1.0.0; q=0.9";
        assert_eq!(negotiate(Some(h)), OM1);
        let h = "application/openmetrics-text;version=1.0.0;q=0.2,text/plain;q=0.4";
        assert_eq!(negotiate(Some(h)), Format::Text);
        // q=0 is "not acceptable".
        let h = "application/openmetrics-text;version=1.0.0;q=0";
        assert_eq!(negotiate(Some(h)), Format::Text);
        // An unreadable q is 0, as in goautoneg.
        let h = "application/openmetrics-text;version=1.0.0;q=high,text/plain;q=0.1";
        assert_eq!(negotiate(Some(h)), Format::Text);
        // Equal q: a concrete type outranks a wildcard written before it.
        let h = "*/*;q=0.5,application/openmetrics-text;version=1.0.0;q=0.5";
        assert_eq!(negotiate(Some(h)), OM1);
    }

    #[test]
    fn versions_and_params_must_match() {
        assert_eq!(
            negotiate(Some("application/openmetrics-text; version=0.0.1")),
            OM0
        );
        // No version is 0.0.1, as client_golang reads it.
        assert_eq!(negotiate(Some("application/openmetrics-text")), OM0);
        assert_eq!(
            negotiate(Some("application/openmetrics-text; version=\"1.0.0\"")),
            OM1
        );
        assert_eq!(
            negotiate(Some("application/openmetrics-text; version=2.0.0")),
            Format::Text
        );
        assert_eq!(negotiate(Some("text/plain; version=1.0.0")), Format::Text);
        assert_eq!(
            negotiate(Some(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"
            )),
            Format::Text
        );
        assert_eq!(
            negotiate(Some(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
            )),
            Format::Protobuf
        );
        assert_eq!(
            negotiate(Some("application/vnd.google.protobuf;encoding=delimited")),
            Format::Text
        );
        assert_eq!(negotiate(Some("application/*")), OM1);
        assert_eq!(
            negotiate(Some("Application/OpenMetrics-Text; Version=1.0.0")),
            OM1
        );
    }

    #[test]
    fn content_types_are_client_golangs() {
        assert_eq!(
            OM1.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert_eq!(
            Format::Text.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
}
