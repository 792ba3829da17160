//! The protobuf exposition: length-delimited `io.prometheus.client.MetricFamily` messages
//! (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited`), the format Prometheus asks for first when native histograms are on,
//! and the only one that carries them.
//!
//! The messages are client_model's `io/prometheus/client/metrics.proto` (proto2), written
//! as prost derives so the build needs no `protoc`; exemplars and timestamps are left out
//! (the gateway has neither). Each message is preceded by its length as a varint.
//!
//! A family of more than [`SERIES_PER_MESSAGE`] series is written as several messages of
//! the same name, type and help, so a scrape holds at most that many series decoded at
//! once whatever the family's size; Prometheus reads every message on its own.
//! Like client_golang, a classic histogram's `+Inf` bucket is left out (`sample_count` is
//! its count), and a histogram with native buckets carries both layouts in one message;
//! the native buckets are only in this format (the text formats have no way to write them).

use prost::Message as _;

use super::text::ExtraFamily;
use crate::store::native::{NativeBuckets, ZERO_THRESHOLD};
use crate::store::{Family, FamilyType, Series, Store};

/// How many series of one family go into one message (and are read per lock hold).
pub const SERIES_PER_MESSAGE: usize = 4096;

/// `io.prometheus.client.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    /// A counter.
    Counter = 0,
    /// A gauge.
    Gauge = 1,
    /// A summary.
    Summary = 2,
    /// A sample of unknown type.
    Untyped = 3,
    /// A histogram (classic, native, or both).
    Histogram = 4,
    /// A gauge histogram (never written by the gateway).
    GaugeHistogram = 5,
}

/// `io.prometheus.client.MetricFamily`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricFamily {
    /// The family name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The HELP text, unescaped.
    #[prost(string, optional, tag = "2")]
    pub help: Option<String>,
    /// The type.
    #[prost(enumeration = "MetricType", optional, tag = "3")]
    pub r#type: Option<i32>,
    /// The series.
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
    /// The unit (OpenMetrics'), if any.
    #[prost(string, optional, tag = "5")]
    pub unit: Option<String>,
}

/// `io.prometheus.client.Metric`: one series.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// Labels, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    /// A gauge's value.
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Gauge>,
    /// A counter's value.
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Counter>,
    /// A summary's state.
    #[prost(message, optional, tag = "4")]
    pub summary: Option<Summary>,
    /// An untyped value.
    #[prost(message, optional, tag = "5")]
    pub untyped: Option<Untyped>,
    /// A histogram's state.
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
    /// Milliseconds since the epoch; never set (the scrape time is the sample's).
    #[prost(int64, optional, tag = "6")]
    pub timestamp_ms: Option<i64>,
}

/// `io.prometheus.client.LabelPair`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    /// The label name.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// The label value, unescaped.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// `io.prometheus.client.Gauge`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Gauge {
    /// The value.
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

/// `io.prometheus.client.Counter` (without exemplar and created timestamp).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Counter {
    /// The value.
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

/// `io.prometheus.client.Untyped`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Untyped {
    /// The value.
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

/// `io.prometheus.client.Quantile`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Quantile {
    /// The quantile, in [0, 1].
    #[prost(double, optional, tag = "1")]
    pub quantile: Option<f64>,
    /// Its estimated value.
    #[prost(double, optional, tag = "2")]
    pub value: Option<f64>,
}

/// `io.prometheus.client.Summary` (without created timestamp).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// Observations in the summary's life.
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    /// Their sum.
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    /// Quantiles over the sliding window, ascending.
    #[prost(message, repeated, tag = "3")]
    pub quantile: Vec<Quantile>,
}

/// `io.prometheus.client.Bucket`: one classic bucket.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Bucket {
    /// Observations at or below `upper_bound`.
    #[prost(uint64, optional, tag = "1")]
    pub cumulative_count: Option<u64>,
    /// The bucket's inclusive upper bound.
    #[prost(double, optional, tag = "2")]
    pub upper_bound: Option<f64>,
}

/// `io.prometheus.client.BucketSpan`: a run of consecutive native buckets.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// Gap to the previous span's end, or the first bucket's index for the first span.
    #[prost(sint32, optional, tag = "1")]
    pub offset: Option<i32>,
    /// How many consecutive buckets.
    #[prost(uint32, optional, tag = "2")]
    pub length: Option<u32>,
}

/// `io.prometheus.client.Histogram` (integer counts; without exemplars and created
/// timestamp).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Observations in the histogram's life.
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    /// Their sum.
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    /// Classic buckets, by increasing bound; `+Inf` left out.
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    /// Native resolution: bucket boundaries are powers of `2^(2^-schema)`.
    #[prost(sint32, optional, tag = "5")]
    pub schema: Option<i32>,
    /// Observations with absolute value at most this go to the zero bucket.
    #[prost(double, optional, tag = "6")]
    pub zero_threshold: Option<f64>,
    /// The zero bucket's count.
    #[prost(uint64, optional, tag = "7")]
    pub zero_count: Option<u64>,
    /// Spans of negative native buckets.
    #[prost(message, repeated, tag = "9")]
    pub negative_span: Vec<BucketSpan>,
    /// Negative bucket counts, each as the difference to the previous one.
    #[prost(sint64, repeated, tag = "10")]
    pub negative_delta: Vec<i64>,
    /// Spans of positive native buckets.
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    /// Positive bucket counts, each as the difference to the previous one.
    #[prost(sint64, repeated, tag = "13")]
    pub positive_delta: Vec<i64>,
}

/// Renders every family of `store`, merged with `extra` (the gateway's own metrics, as
/// text 0.0.4) in name order, as delimited messages handed out in chunks of about
/// `chunk_bytes`. Returns false if `emit` asked to stop.
pub fn render(
    store: &Store,
    extra: &[ExtraFamily],
    chunk_bytes: usize,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> bool {
    let mut buf: Vec<u8> = Vec::with_capacity(chunk_bytes + 4096);
    let mut flush = |buf: &mut Vec<u8>, force: bool| -> bool {
        if buf.is_empty() || (!force && buf.len() < chunk_bytes) {
            return true;
        }
        emit(std::mem::replace(
            buf,
            Vec::with_capacity(chunk_bytes + 4096),
        ))
    };
    let families = store.families();
    let mut extra = extra.iter().peekable();
    let at = store.clock().instant_at(store.clock().now_ms());
    for fam in families.iter() {
        while let Some(e) = extra.next_if(|e| e.name.as_str() < fam.name()) {
            write_message(&mut buf, &parse_extra(e));
        }
        if fam.is_empty() {
            continue;
        }
        let mut message = family_message(fam);
        let mut ok = true;
        fam.for_each_series(SERIES_PER_MESSAGE, |s| {
            if !ok {
                return;
            }
            message.metric.push(series_metric(fam, s, at));
            if message.metric.len() >= SERIES_PER_MESSAGE {
                write_message(&mut buf, &message);
                message.metric.clear();
                ok = flush(&mut buf, false);
            }
        });
        if !ok {
            return false;
        }
        if !message.metric.is_empty() {
            write_message(&mut buf, &message);
        }
        if !flush(&mut buf, false) {
            return false;
        }
    }
    for e in extra {
        write_message(&mut buf, &parse_extra(e));
    }
    flush(&mut buf, true)
}

fn write_message(buf: &mut Vec<u8>, message: &MetricFamily) {
    // Encoding into a Vec cannot run out of room.
    let _ = message.encode_length_delimited(buf);
}

fn family_message(fam: &Family) -> MetricFamily {
    let t = match fam.family_type() {
        FamilyType::Counter => MetricType::Counter,
        FamilyType::Gauge => MetricType::Gauge,
        FamilyType::Summary => MetricType::Summary,
        FamilyType::Histogram => MetricType::Histogram,
    };
    MetricFamily {
        name: Some(fam.name().to_string()),
        help: Some(fam.help().to_string()),
        r#type: Some(t as i32),
        metric: Vec::new(),
        unit: None,
    }
}

fn label_pairs(s: &Series) -> Vec<LabelPair> {
    s.labels()
        .iter()
        .map(|(k, v)| LabelPair {
            name: Some(k.to_string()),
            value: Some(v.to_string()),
        })
        .collect()
}

fn series_metric(fam: &Family, s: &Series, at: std::time::Instant) -> Metric {
    let mut m = Metric {
        label: label_pairs(s),
        ..Metric::default()
    };
    match fam.family_type() {
        FamilyType::Counter => {
            m.counter = Some(Counter {
                value: Some(s.scalar()),
            })
        }
        FamilyType::Gauge => {
            m.gauge = Some(Gauge {
                value: Some(s.scalar()),
            })
        }
        FamilyType::Summary => {
            let snap = s.summary_snapshot(at);
            let (count, sum, mut quantiles) = snap
                .map(|snap| (snap.count, snap.sum, snap.quantiles))
                .unwrap_or_default();
            // client_golang writes quantiles in ascending order, as the text does.
            quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
            m.summary = Some(Summary {
                sample_count: Some(count),
                sample_sum: Some(sum),
                quantile: quantiles
                    .into_iter()
                    .map(|(q, v)| Quantile {
                        quantile: Some(q),
                        value: Some(v),
                    })
                    .collect(),
            });
        }
        FamilyType::Histogram => {
            let mut h = Histogram::default();
            if let Some((bounds, snap)) = s.histogram_full_snapshot() {
                h.sample_count = Some(snap.cumulative.last().copied().unwrap_or(0));
                h.sample_sum = Some(snap.sum);
                h.bucket = bounds
                    .iter()
                    .zip(&snap.cumulative)
                    .map(|(b, c)| Bucket {
                        cumulative_count: Some(*c),
                        upper_bound: Some(*b),
                    })
                    .collect();
                if let Some(native) = &snap.native {
                    write_native(&mut h, native);
                }
            }
            m.histogram = Some(h);
        }
    }
    m
}

/// Adds native buckets as client_golang writes them. The zero threshold is never 0, so
/// even a histogram without observations reads as native to Prometheus.
fn write_native(h: &mut Histogram, native: &NativeBuckets) {
    let spans = |spans: Vec<(i32, u32)>| {
        spans
            .into_iter()
            .map(|(offset, length)| BucketSpan {
                offset: Some(offset),
                length: Some(length),
            })
            .collect()
    };
    h.schema = Some(native.schema);
    h.zero_threshold = Some(ZERO_THRESHOLD);
    h.zero_count = Some(native.zero_count);
    let (positive, deltas) = native.positive.spans_and_deltas();
    h.positive_span = spans(positive);
    h.positive_delta = deltas;
    let (negative, deltas) = native.negative.spans_and_deltas();
    h.negative_span = spans(negative);
    h.negative_delta = deltas;
}

/// Reads one of the gateway's own families back from its text 0.0.4 rendering (counters
/// and gauges with labels; nothing else is rendered there). A line that does not parse is
/// left out rather than failing the scrape.
fn parse_extra(e: &ExtraFamily) -> MetricFamily {
    let mut fam = MetricFamily {
        name: Some(e.name.clone()),
        ..MetricFamily::default()
    };
    let mut t = MetricType::Untyped;
    for line in e.text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let help = rest.split_once(' ').map_or("", |(_, h)| h);
            fam.help = Some(unescape(help, false));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            t = match rest.rsplit(' ').next() {
                Some("counter") => MetricType::Counter,
                Some("gauge") => MetricType::Gauge,
                _ => MetricType::Untyped,
            };
        } else if !line.starts_with('#')
            && let Some((label, value)) = parse_sample(line)
        {
            let mut m = Metric {
                label,
                ..Metric::default()
            };
            match t {
                MetricType::Counter => m.counter = Some(Counter { value: Some(value) }),
                MetricType::Gauge => m.gauge = Some(Gauge { value: Some(value) }),
                _ => m.untyped = Some(Untyped { value: Some(value) }),
            }
            fam.metric.push(m);
        }
    }
    fam.r#type = Some(t as i32);
    fam
}

/// Undoes text 0.0.4's escapes (`\\`, `\n`, and `\"` in label values).
fn unescape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            Some(other) => {
                if other != '\\' {
                    out.push('\\');
                }
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `name{k="v",...} value` → labels and value.
fn parse_sample(line: &str) -> Option<(Vec<LabelPair>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let mut labels = Vec::new();
    if let Some(open) = series.find('{') {
        let mut rest = series[open + 1..].strip_suffix('}')?;
        while !rest.is_empty() {
            let (name, after) = rest.split_once("=\"")?;
            // The value ends at the first quote not escaped by a backslash.
            let bytes = after.as_bytes();
            let mut i = 0;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            let raw = after.get(..i)?;
            labels.push(LabelPair {
                name: Some(name.trim_start_matches(',').to_string()),
                value: Some(unescape(raw, true)),
            });
            rest = after.get(i + 1..)?.trim_start_matches(',');
        }
    }
    Some((labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_metrics_read_back_from_text() {
        let fams = super::super::text::split_families(
            "# HELP c_total Lines, \\\\ and \\n.\n# TYPE c_total counter\n\
             c_total{reason=\"a \\\"b\\\" \\\\ c\",x=\"\"} 3\nc_total 4\n",
        );
        let fam = parse_extra(&fams[0]);
        assert_eq!(fam.name.as_deref(), Some("c_total"));
        assert_eq!(fam.help.as_deref(), Some("Lines, \\ and \n."));
        assert_eq!(fam.r#type, Some(MetricType::Counter as i32));
        assert_eq!(fam.metric.len(), 2);
        let labels: Vec<(String, String)> = fam.metric[0]
            .label
            .iter()
            .map(|l| (l.name.clone().unwrap(), l.value.clone().unwrap()))
            .collect();
        assert_eq!(
            labels,
            [
                ("reason".to_string(), "a \"b\" \\ c".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert_eq!(fam.metric[0].counter.as_ref().unwrap().value, Some(3.0));
        assert!(fam.metric[1].label.is_empty());
    }

    #[test]
    fn a_large_family_goes_out_in_bounded_messages() {
        let store = Store::new(crate::store::StoreOptions::default());
        let n = SERIES_PER_MESSAGE + 10;
        for i in 0..n {
            let spec = crate::store::SeriesSpec {
                name: "big",
                help: None,
                kind: crate::store::SeriesKind::Counter,
                labels: vec![("i".to_string(), format!("{i:05}"))],
                ttl: std::time::Duration::ZERO,
                style: crate::store::TextStyle::default(),
            };
            assert!(store.resolve(&spec).unwrap().counter_add(1.0));
        }
        let mut out = Vec::new();
        assert!(render(&store, &[], 1 << 16, |c| {
            out.extend_from_slice(&c);
            true
        }));
        let mut rest = &out[..];
        let mut sizes = Vec::new();
        while !rest.is_empty() {
            let fam = MetricFamily::decode_length_delimited(&mut rest).unwrap();
            assert_eq!(fam.name.as_deref(), Some("big"));
            assert_eq!(fam.r#type, Some(MetricType::Counter as i32));
            sizes.push(fam.metric.len());
        }
        assert_eq!(sizes, [SERIES_PER_MESSAGE, 10]);
    }

    #[test]
    fn messages_are_length_delimited() {
        let store = Store::new(crate::store::StoreOptions::default());
        let extra = super::super::text::split_families("# HELP g G.\n# TYPE g gauge\ng 1\n");
        let mut out = Vec::new();
        assert!(render(&store, &extra, 1 << 16, |c| {
            out.extend_from_slice(&c);
            true
        }));
        let mut rest = &out[..];
        let fam = MetricFamily::decode_length_delimited(&mut rest).unwrap();
        assert!(rest.is_empty());
        assert_eq!(fam.metric[0].gauge.as_ref().unwrap().value, Some(1.0));
    }
}
