//! A push's snapshot: every sample `/metrics` would show, stamped with one timestamp and
//! encoded into compressed requests.
//!
//! The walk is a scrape's: families one at a time, series in chunks with the family's lock
//! released in between, each series expanded by [`for_each_sample`] (so names, `le` and
//! `quantile` values are byte for byte the text exposition's). Label values travel
//! unescaped: the text format's escaping is undone by any parser of it, so a receiver
//! stores what a scraper would.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use super::proto::{RequestEncoder, STALE_NAN_BITS, SortedLabels};
use super::queue::Batch;
use crate::expose::samples::{BoundLabel, Sample, for_each_sample};
use crate::store::{Family, SeriesRef, Store};
use crate::telemetry::Telemetry;

/// How many series of one family are read per lock hold (as a scrape does).
const SERIES_PER_LOCK: usize = 4096;

/// A store sample's labels: `__name__`, the series' labels and the expansion's `le` or
/// `quantile`, merged into name order.
struct StoreLabels<'a> {
    name: &'a str,
    labels: &'a [(Box<str>, Box<str>)],
    bound: Option<(&'static str, &'a str)>,
}

impl SortedLabels for StoreLabels<'_> {
    fn for_each(&self, f: &mut impl FnMut(&str, &str)) {
        // Series labels are sorted and never `__name__`, `le` on a histogram or `quantile`
        // on a summary (the pipeline drops those), so a merge suffices.
        let specials = [Some(("__name__", self.name)), self.bound];
        let mut specials = specials.iter().flatten().peekable();
        for (k, v) in self.labels {
            while let Some((sk, sv)) = specials.next_if(|(sk, _)| *sk < &**k) {
                f(sk, sv);
            }
            f(k, v);
        }
        for (sk, sv) in specials {
            f(sk, sv);
        }
    }
}

/// Label pairs parsed from text.
type OwnedPairs = Vec<(String, String)>;

/// A self-metric sample's labels, sorted once after parsing.
struct OwnedLabels(OwnedPairs);

impl SortedLabels for OwnedLabels {
    fn for_each(&self, f: &mut impl FnMut(&str, &str)) {
        for (k, v) in &self.0 {
            f(k.as_str(), v.as_str());
        }
    }
}

/// Cuts the encoder's output into requests of `batch_size` samples and compresses them.
struct Batcher {
    encoder: RequestEncoder,
    batch_size: usize,
    snappy: snap::raw::Encoder,
    batches: Vec<Batch>,
    /// Reused for `family + suffix` and for a bound's value.
    name: String,
    bound: Vec<u8>,
}

impl Batcher {
    fn push(&mut self, labels: &impl SortedLabels, value: f64, timestamp: i64) {
        self.encoder.push(labels, value, timestamp);
        if self.encoder.len() >= self.batch_size {
            self.cut();
        }
    }

    fn push_store_sample(
        &mut self,
        family: &Family,
        series: &SeriesRef,
        sample: Sample,
        value: f64,
        timestamp: i64,
    ) {
        let mut name = std::mem::take(&mut self.name);
        let mut bound = std::mem::take(&mut self.bound);
        name.clear();
        name.push_str(family.name());
        name.push_str(sample.suffix);
        bound.clear();
        let bound_label = sample.bound.map(|b: BoundLabel| {
            b.write_value(&mut bound, family.style());
            b.name()
        });
        // A formatted number is ASCII.
        let bound_value = std::str::from_utf8(&bound).unwrap_or_default();
        let labels = StoreLabels {
            name: &name,
            labels: series.labels(),
            bound: bound_label.map(|n| (n, bound_value)),
        };
        self.push(&labels, value, timestamp);
        self.name = name;
        self.bound = bound;
    }

    fn cut(&mut self) {
        if self.encoder.is_empty() {
            return;
        }
        let samples = self.encoder.len();
        match self.snappy.compress_vec(self.encoder.body()) {
            Ok(body) => self.batches.push(Batch {
                body: Bytes::from(body),
                samples,
            }),
            // Only an input over snappy's 4 GiB limit fails, which a batch never reaches.
            Err(e) => warn!(error = %e, samples, "remote_write request not compressible; dropped"),
        }
        self.encoder.clear();
    }
}

/// A series' identity: family name and labels.
type SeriesKey<'a> = (&'a str, &'a [(Box<str>, Box<str>)]);

/// Takes snapshots; remembers the series of the last one to mark those that vanished.
pub(crate) struct Snapshotter {
    store: Arc<Store>,
    telemetry: Option<Telemetry>,
    batcher: Batcher,
    /// Series of the previous snapshot, and of the current one while it is taken.
    previous: Vec<(Arc<Family>, SeriesRef)>,
    current: Vec<(Arc<Family>, SeriesRef)>,
}

impl Snapshotter {
    pub(crate) fn new(
        store: Arc<Store>,
        telemetry: Option<Telemetry>,
        batch_size: usize,
    ) -> Snapshotter {
        Snapshotter {
            store,
            telemetry,
            batcher: Batcher {
                encoder: RequestEncoder::default(),
                batch_size: batch_size.max(1),
                snappy: snap::raw::Encoder::new(),
                batches: Vec::new(),
                name: String::new(),
                bound: Vec::new(),
            },
            previous: Vec::new(),
            current: Vec::new(),
        }
    }

    /// Every sample, stamped `timestamp` (ms since the epoch), as compressed requests.
    pub(crate) fn take(&mut self, timestamp: i64) -> Vec<Batch> {
        let clock = self.store.clock();
        let at = clock.instant_at(clock.now_ms());
        let families = self.store.families();
        let batcher = &mut self.batcher;
        let current = &mut self.current;
        current.clear();
        for family in families.iter() {
            family.for_each_series(SERIES_PER_LOCK, |series| {
                current.push((family.clone(), series.clone()));
                for_each_sample(family, series, at, |sample| {
                    let v = sample.value.as_f64();
                    batcher.push_store_sample(family, series, sample, v, timestamp);
                });
            });
        }
        self.mark_stale(timestamp, at);
        std::mem::swap(&mut self.previous, &mut self.current);
        self.current.clear();
        if let Some(t) = &self.telemetry {
            let text = t.render();
            for line in text.lines() {
                if let Some((name, mut labels, value)) = parse_text_sample(line) {
                    labels.push(("__name__".to_string(), name.to_string()));
                    labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    self.batcher.push(&OwnedLabels(labels), value, timestamp);
                }
            }
        }
        self.batcher.cut();
        std::mem::take(&mut self.batcher.batches)
    }

    /// Sends Prometheus's staleness marker for every sample of a series the previous
    /// snapshot held and the store has since removed (TTL expiry), unless a series with
    /// the same name and labels has been created again meanwhile.
    fn mark_stale(&mut self, timestamp: i64, at: std::time::Instant) {
        let dead: Vec<&(Arc<Family>, SeriesRef)> =
            self.previous.iter().filter(|(_, s)| s.is_dead()).collect();
        if dead.is_empty() {
            return;
        }
        let dead_families: HashSet<&str> = dead.iter().map(|(f, _)| f.name()).collect();
        let live: HashSet<SeriesKey<'_>> = self
            .current
            .iter()
            .filter(|(f, _)| dead_families.contains(f.name()))
            .map(|(f, s)| (f.name(), s.labels()))
            .collect();
        let stale = f64::from_bits(STALE_NAN_BITS);
        for (family, series) in dead {
            if live.contains(&(family.name(), series.labels())) {
                continue;
            }
            for_each_sample(family, series, at, |sample| {
                self.batcher
                    .push_store_sample(family, series, sample, stale, timestamp);
            });
        }
    }
}

/// Parses one sample line of the text format (`name{k="v",...} value [timestamp]`), as
/// the gateway's telemetry writes it; `None` for comments, blank or malformed lines.
fn parse_text_sample(line: &str) -> Option<(&str, OwnedPairs, f64)> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            r = r.trim_start_matches(',');
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = r.find('=')?;
            let key = r[..eq].trim();
            r = r[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            r = &r[end + 1..];
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prost::Message as _;

    use super::super::proto::WriteRequest;
    use super::*;
    use crate::expose::text::render_to_string;
    use crate::store::{
        CoarseClock, HistogramOptions, ObserverOptions, SeriesKind, SeriesSpec, StoreOptions,
        SummaryOptions, TextStyle,
    };

    fn spec<'a>(
        name: &'a str,
        kind: SeriesKind<'a>,
        labels: &[(&str, &str)],
        ttl: Duration,
    ) -> SeriesSpec<'a> {
        SeriesSpec {
            name,
            help: None,
            kind,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ttl,
            style: TextStyle::default(),
        }
    }

    /// Decodes every request into `name{labels}` → (value, timestamp), labels sorted and
    /// written like the text exposition (escaped), `__name__` taken out.
    fn decode(batches: &[Batch]) -> Vec<(String, f64, i64)> {
        let mut out = Vec::new();
        for b in batches {
            let raw = snap::raw::Decoder::new().decompress_vec(&b.body).unwrap();
            let req = WriteRequest::decode(raw.as_slice()).unwrap();
            assert_eq!(req.timeseries.len(), b.samples);
            for ts in req.timeseries {
                let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
                let mut sorted = names.clone();
                sorted.sort_unstable();
                assert_eq!(names, sorted, "labels must be sorted by name");
                let name = ts
                    .labels
                    .iter()
                    .find(|l| l.name == "__name__")
                    .unwrap()
                    .value
                    .clone();
                // The exposition writes `le`/`quantile` after the series' own labels.
                let is_bound = |n: &str| n == "le" || n == "quantile";
                let own = ts
                    .labels
                    .iter()
                    .filter(|l| l.name != "__name__" && !is_bound(&l.name));
                let bound = ts.labels.iter().filter(|l| is_bound(&l.name));
                let rest: Vec<String> = own
                    .chain(bound)
                    .map(|l| {
                        format!(
                            "{}=\"{}\"",
                            l.name,
                            l.value
                                .replace('\\', "\\\\")
                                .replace('"', "\\\"")
                                .replace('\n', "\\n")
                        )
                    })
                    .collect();
                let key = if rest.is_empty() {
                    name
                } else {
                    format!("{name}{{{}}}", rest.join(","))
                };
                assert_eq!(ts.samples.len(), 1);
                out.push((key, ts.samples[0].value, ts.samples[0].timestamp));
            }
        }
        out
    }

    fn exposition_samples(text: &str) -> Vec<(String, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                let (_, _, v) = parse_text_sample(&format!("x {v}"))?;
                Some((k.to_string(), v))
            })
            .collect()
    }

    #[test]
    fn a_snapshot_holds_exactly_the_exposition_samples() {
        let store = Arc::new(Store::new(StoreOptions::default()));
        let hist = ObserverOptions::Histogram(HistogramOptions::with_buckets(vec![0.5, 1e6]));
        let summ = ObserverOptions::Summary(SummaryOptions::default());
        let c = store
            .resolve(&spec(
                "requests",
                SeriesKind::Counter,
                &[("Zone", "a"), ("path", "/x\"y\\z\nw")],
                Duration::ZERO,
            ))
            .unwrap();
        c.counter_add(3.0);
        let g = store
            .resolve(&spec("temp", SeriesKind::Gauge, &[], Duration::ZERO))
            .unwrap();
        g.gauge_update(-1.5, false);
        let h = store
            .resolve(&spec(
                "latency",
                SeriesKind::Observer(&hist),
                &[("a", "1")],
                Duration::ZERO,
            ))
            .unwrap();
        let s = store
            .resolve(&spec(
                "size",
                SeriesKind::Observer(&summ),
                &[("zz", "1")],
                Duration::ZERO,
            ))
            .unwrap();
        let now = store.clock().now_ms();
        for v in [0.1, 2.0, 7.0] {
            h.observe(v, 1, store.clock(), now);
            s.observe(v, 1, store.clock(), now);
        }
        let mut snap = Snapshotter::new(store.clone(), None, 3);
        let batches = snap.take(1234);
        assert!(batches.iter().all(|b| b.samples <= 3));
        let got = decode(&batches);
        assert!(got.iter().all(|(_, _, t)| *t == 1234));
        let got: Vec<(String, f64)> = got.into_iter().map(|(k, v, _)| (k, v)).collect();
        let want = exposition_samples(&render_to_string(&store, &[]));
        assert_eq!(got.len(), want.len(), "{got:?}\n{want:?}");
        for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
            assert_eq!(gk, wk);
            assert!(
                gv == wv || (gv.is_nan() && wv.is_nan()),
                "{gk}: {gv} vs {wv}"
            );
        }
        assert!(
            want.iter()
                .any(|(k, _)| k == "latency_bucket{a=\"1\",le=\"1e+06\"}")
        );
        assert!(
            want.iter()
                .any(|(k, _)| k == "size{zz=\"1\",quantile=\"0.5\"}")
        );
    }

    #[test]
    fn a_vanished_series_gets_one_staleness_marker() {
        let store = Arc::new(Store::with_clock(
            StoreOptions::default(),
            CoarseClock::manual(),
        ));
        let ttl = Duration::from_secs(1);
        let keep = store
            .resolve(&spec("kept", SeriesKind::Gauge, &[], Duration::ZERO))
            .unwrap();
        keep.gauge_update(1.0, false);
        store
            .resolve(&spec("gone", SeriesKind::Counter, &[("k", "v")], ttl))
            .unwrap();
        store
            .resolve(&spec("back", SeriesKind::Counter, &[], ttl))
            .unwrap();
        let mut snap = Snapshotter::new(store.clone(), None, 100);
        assert_eq!(decode(&snap.take(1)).len(), 3);
        store.clock().advance(5_000);
        assert_eq!(store.expire(), 2);
        // Recreated before the next push: no marker for it, its new value instead.
        let back = store
            .resolve(&spec("back", SeriesKind::Counter, &[], ttl))
            .unwrap();
        back.counter_add(2.0);
        let got = decode(&snap.take(2));
        let keys: Vec<&str> = got.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, ["back", "kept", "gone{k=\"v\"}"]);
        assert_eq!(got[0].1, 2.0);
        assert_eq!(got[2].1.to_bits(), STALE_NAN_BITS);
        // Only once.
        let got = decode(&snap.take(3));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn parses_the_telemetry_text() {
        assert_eq!(parse_text_sample("# HELP x y"), None);
        assert_eq!(parse_text_sample("up 1"), Some(("up", vec![], 1.0)));
        let (name, labels, v) =
            parse_text_sample(r#"x_total{a="1",b="q\"u\\o\nte"} 2.5e3"#).unwrap();
        assert_eq!(name, "x_total");
        assert_eq!(
            labels,
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "q\"u\\o\nte".to_string())
            ]
        );
        assert_eq!(v, 2500.0);
        assert_eq!(parse_text_sample("y +Inf").unwrap().2, f64::INFINITY);
        assert!(parse_text_sample("z NaN").unwrap().2.is_nan());
        assert_eq!(parse_text_sample("broken{a=\"1\" 3"), None);
    }
}
