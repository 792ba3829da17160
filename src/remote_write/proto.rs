//! The remote_write 1.0 wire format.
//!
//! The messages are those of Prometheus's `prompb/remote.proto` and `prompb/types.proto`,
//! reduced to what remote_write 1.0 requires, and written out as prost derives so the build
//! needs no `protoc`:
//!
//! ```proto
//! message WriteRequest { repeated TimeSeries timeseries = 1; reserved 2; }
//! message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! message Label        { string name = 1; string value = 2; }
//! message Sample       { double value = 1; int64 timestamp = 2; }
//! ```
//!
//! The gateway encodes with `RequestEncoder`, which writes the same bytes as
//! `WriteRequest::encode` straight from the store's borrowed labels (no `String` per label
//! per push); the derives decode (tests, receivers) and pin the encoder's output in a test.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// A remote_write request body, before snappy compression.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series, each with its samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// One series: its labels (`__name__` included, sorted by name) and samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// A label pair.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// The label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The label value, unescaped.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A sample.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The bit pattern of Prometheus's staleness marker, a NaN no arithmetic produces: a
/// series that carries it at `t` has ended at `t`.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Label pairs handed out in ascending name order, as remote_write requires.
pub(crate) trait SortedLabels {
    /// Calls `f` for each `(name, value)`, in name order. Called twice per series (once to
    /// measure, once to write), and must yield the same pairs both times.
    fn for_each(&self, f: &mut impl FnMut(&str, &str));
}

/// Writes a `WriteRequest` body one single-sample `TimeSeries` at a time.
#[derive(Debug, Default)]
pub(crate) struct RequestEncoder {
    buf: Vec<u8>,
    series: usize,
}

/// Length of a `string` field with a one-byte key; proto3 leaves an empty string out.
fn string_field_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        1 + encoded_len_varint(s.len() as u64) + s.len()
    }
}

fn write_string_field(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if s.is_empty() {
        return;
    }
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(s.len() as u64, buf);
    buf.extend_from_slice(s.as_bytes());
}

/// Length of a `Sample`; proto3 leaves zero fields out, as prost does (`-0.0` included).
fn sample_len(value: f64, timestamp: i64) -> usize {
    let v = if value != 0.0 { 1 + 8 } else { 0 };
    let t = if timestamp != 0 {
        1 + encoded_len_varint(timestamp as u64)
    } else {
        0
    };
    v + t
}

fn nested_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

impl RequestEncoder {
    /// Appends a series with one sample.
    pub(crate) fn push(&mut self, labels: &impl SortedLabels, value: f64, timestamp_ms: i64) {
        let mut labels_len = 0;
        labels.for_each(&mut |k, v| {
            labels_len += nested_len(string_field_len(k) + string_field_len(v));
        });
        let sample = sample_len(value, timestamp_ms);
        let series = labels_len + nested_len(sample);

        let buf = &mut self.buf;
        encode_key(1, WireType::LengthDelimited, buf);
        encode_varint(series as u64, buf);
        labels.for_each(&mut |k, v| {
            encode_key(1, WireType::LengthDelimited, buf);
            encode_varint((string_field_len(k) + string_field_len(v)) as u64, buf);
            write_string_field(1, k, buf);
            write_string_field(2, v, buf);
        });
        encode_key(2, WireType::LengthDelimited, buf);
        encode_varint(sample as u64, buf);
        if value != 0.0 {
            encode_key(1, WireType::SixtyFourBit, buf);
            buf.extend_from_slice(&value.to_bits().to_le_bytes());
        }
        if timestamp_ms != 0 {
            encode_key(2, WireType::Varint, buf);
            encode_varint(timestamp_ms as u64, buf);
        }
        self.series += 1;
    }

    /// Series written since the last [`clear`](Self::clear).
    pub(crate) fn len(&self) -> usize {
        self.series
    }

    /// True when nothing was written since the last [`clear`](Self::clear).
    pub(crate) fn is_empty(&self) -> bool {
        self.series == 0
    }

    /// The request body so far.
    pub(crate) fn body(&self) -> &[u8] {
        &self.buf
    }

    /// Starts a new request, keeping the buffer's capacity.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.series = 0;
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    struct Pairs<'a>(&'a [(&'a str, &'a str)]);

    impl SortedLabels for Pairs<'_> {
        fn for_each(&self, f: &mut impl FnMut(&str, &str)) {
            for (k, v) in self.0 {
                f(k, v);
            }
        }
    }

    fn owned(labels: &[(&str, &str)], value: f64, timestamp: i64) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(k, v)| Label {
                    name: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: vec![Sample { value, timestamp }],
        }
    }

    #[test]
    fn encoder_writes_what_prost_writes() {
        let long = "x".repeat(300);
        type Case<'a> = (Vec<(&'a str, &'a str)>, f64, i64);
        let cases: Vec<Case<'_>> = vec![
            (vec![("__name__", "up")], 1.0, 1_700_000_000_123),
            (vec![("__name__", "zero")], 0.0, 0),
            (vec![("__name__", "neg_zero")], -0.0, 5),
            (vec![("__name__", "nan")], f64::NAN, -1),
            (
                vec![("__name__", "stale")],
                f64::from_bits(STALE_NAN_BITS),
                42,
            ),
            (
                vec![
                    ("A", "upper first"),
                    ("__name__", "h_bucket"),
                    ("le", "+Inf"),
                ],
                12.0,
                1,
            ),
            (
                vec![("__name__", "long"), ("v", &long), ("empty", "")],
                3.5,
                9,
            ),
        ];
        let mut enc = RequestEncoder::default();
        let mut want = WriteRequest::default();
        for (labels, value, ts) in &cases {
            enc.push(&Pairs(labels), *value, *ts);
            want.timeseries.push(owned(labels, *value, *ts));
        }
        assert_eq!(enc.len(), cases.len());
        let body = enc.body().to_vec();
        enc.clear();
        assert_eq!(body, want.encode_to_vec());
        let back = WriteRequest::decode(body.as_slice()).unwrap();
        assert_eq!(back.timeseries.len(), cases.len());
        assert_eq!(
            back.timeseries[4].samples[0].value.to_bits(),
            STALE_NAN_BITS
        );
        assert!(enc.is_empty());
        enc.push(&Pairs(&[("__name__", "again")]), 2.0, 3);
        let mut again = WriteRequest::default();
        again
            .timeseries
            .push(owned(&[("__name__", "again")], 2.0, 3));
        assert_eq!(enc.body(), again.encode_to_vec().as_slice());
    }
}
