//! Feeds a datagram through the real worker into a real store, renders the text exposition
//! and reads it back with a strict parser (`common/strict_text.rs`):
//!
//! * the text always parses: HELP then TYPE per family, valid names and label names, only
//!   the escapes client_golang writes, Go-style floats, no duplicate series;
//! * every non-empty store family appears once, with its HELP and TYPE, and no other does;
//! * every counter and gauge series appears with its labels in order and a value equal, bit
//!   for bit (NaN as NaN), to what the store holds, and no other sample does;
//! * every histogram series has strictly ascending `le` bounds ending in `+Inf`, cumulative
//!   counts that never decrease, `_count` equal to the `+Inf` bucket, and a `_sum`; every
//!   summary series has ascending quantiles in [0, 1], a `_sum` and an integral `_count`.
//!
//! Input: one flags byte (profile, mapping file, dialects), then the datagram.
#![no_main]

#[path = "../common/strict_text.rs"]
mod strict_text;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use statsgate::expose::text::render_to_string;
use statsgate::line::Dialects;
use statsgate::mapping::{CacheOptions, LiveMapper, Mapper, Profile};
use statsgate::store::{CoarseClock, FamilyType, Store, StoreOptions};
use statsgate::worker::Workers;
use strict_text::{ParsedSample, parse};

/// Timers become histograms by default and `s.*` summaries, so every family type is reached.
const MAPPING: &str = r#"
defaults:
  observer_type: histogram
  histogram_options:
    buckets: [0.001, 1, 250]
mappings:
  - match: "s.*"
    name: "summ_${1}"
    observer_type: summary
    help: "a \\ summary\nwith a newline"
    labels:
      part: "$1"
  - match: "drop.*"
    name: "dropped"
    action: drop
"#;

fn mapping_file() -> Mapper {
    match Mapper::from_yaml(MAPPING, CacheOptions::default()) {
        Ok(m) => m,
        Err(e) => panic!("the target's own mapping file does not load: {e}"),
    }
}

// Compiling Envoy's tag rules and the mapping file's regexes took most of an execution
// (31 runs/s under ASan), so each is built once per process. The mappers' lookup caches
// then carry over between runs; `mapping_config` checks that a cached lookup equals an
// uncached one, so that changes no result.
fn envoy_profile() -> &'static Profile {
    static PROFILE: OnceLock<Profile> = OnceLock::new();
    PROFILE.get_or_init(|| match Profile::envoy("envoy", "envoy") {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    })
}

fn mapped() -> Arc<LiveMapper> {
    static MAPPER: OnceLock<Arc<LiveMapper>> = OnceLock::new();
    MAPPER
        .get_or_init(|| Arc::new(LiveMapper::new(mapping_file())))
        .clone()
}

fn unmapped() -> Arc<LiveMapper> {
    static MAPPER: OnceLock<Arc<LiveMapper>> = OnceLock::new();
    MAPPER
        .get_or_init(|| Arc::new(LiveMapper::new(Mapper::empty(CacheOptions::default()))))
        .clone()
}

/// A stored series' labels in the strict reader's form.
fn owned_labels(labels: &[(Box<str>, Box<str>)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn labels_of(s: &ParsedSample, drop_last: bool) -> Vec<(String, String)> {
    let mut l = s.labels.clone();
    if drop_last {
        l.pop();
    }
    l
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, datagram)) = data.split_first() else {
        return;
    };
    let profile = match flags & 3 {
        0 | 3 => Profile::Statsd,
        1 => Profile::IstioMixer,
        _ => envoy_profile().clone(),
    };
    let mapper = if flags & 4 != 0 { mapped() } else { unmapped() };
    let dialects = Dialects {
        dogstatsd: flags & 8 != 0,
        influxdb: flags & 16 != 0,
        librato: flags & 32 != 0,
        signalfx: flags & 64 != 0,
        dogstatsd_tags_last: flags & 128 != 0,
        // Every bit of the flag byte is taken: Graphite tags go with the other dialect
        // Envoy's sinks need, as under the Envoy profile.
        graphite: flags & 128 != 0,
    };
    let store = Arc::new(Store::with_clock(
        StoreOptions::default(),
        CoarseClock::manual(),
    ));
    let workers = Workers::new(store.clone(), mapper, dialects, profile);
    let mut worker = workers.worker();
    worker.datagram(datagram);
    worker.flush();

    let text = render_to_string(&store, &[]);
    let parsed = match parse(&text) {
        Ok(p) => p,
        Err(e) => panic!("{e}\n--- text ---\n{text}"),
    };
    let mut by_name: HashMap<&str, &strict_text::ParsedFamily> =
        parsed.iter().map(|f| (f.name.as_str(), f)).collect();

    for fam in store.families().iter() {
        if fam.is_empty() {
            assert!(!by_name.contains_key(fam.name()), "{text}");
            continue;
        }
        let Some(p) = by_name.remove(fam.name()) else {
            panic!("family {} missing\n{text}", fam.name());
        };
        assert_eq!(p.help, fam.help(), "{text}");
        assert_eq!(p.kind, fam.family_type().as_str(), "{text}");
        let mut seen = 0usize;
        match fam.family_type() {
            FamilyType::Counter | FamilyType::Gauge => {
                fam.for_each_series(64, |s| {
                    let want = owned_labels(s.labels());
                    let Some(got) = p.samples.iter().find(|x| x.labels == want) else {
                        panic!("series {want:?} of {} missing\n{text}", fam.name());
                    };
                    assert!(
                        same(got.value, s.scalar()),
                        "{} {want:?}\n{text}",
                        fam.name()
                    );
                    seen += 1;
                });
                assert_eq!(seen, p.samples.len(), "{text}");
            }
            FamilyType::Histogram => {
                fam.for_each_series(64, |s| {
                    let want = owned_labels(s.labels());
                    let bucket_name = format!("{}_bucket", fam.name());
                    let buckets: Vec<&ParsedSample> = p
                        .samples
                        .iter()
                        .filter(|x| x.name == bucket_name && labels_of(x, true) == want)
                        .collect();
                    assert!(!buckets.is_empty(), "{want:?}\n{text}");
                    let mut prev_le = f64::NEG_INFINITY;
                    let mut prev_count = 0.0;
                    for b in &buckets {
                        let le = match strict_text::parse_float(&b.labels[b.labels.len() - 1].1) {
                            Ok(v) => v,
                            Err(e) => panic!("{e}\n{text}"),
                        };
                        assert!(le > prev_le, "{text}");
                        assert!(b.value >= prev_count && b.value.fract() == 0.0, "{text}");
                        prev_le = le;
                        prev_count = b.value;
                    }
                    assert_eq!(prev_le, f64::INFINITY, "{text}");
                    let one = |suffix: &str| {
                        let name = format!("{}{suffix}", fam.name());
                        let found: Vec<_> = p
                            .samples
                            .iter()
                            .filter(|x| x.name == name && x.labels == want)
                            .collect();
                        assert_eq!(found.len(), 1, "{name} {want:?}\n{text}");
                        found[0].value
                    };
                    assert_eq!(one("_count"), prev_count, "{text}");
                    one("_sum");
                    seen += buckets.len() + 2;
                });
                assert_eq!(seen, p.samples.len(), "{text}");
            }
            FamilyType::Summary => {
                fam.for_each_series(64, |s| {
                    let want = owned_labels(s.labels());
                    let quantiles: Vec<&ParsedSample> = p
                        .samples
                        .iter()
                        .filter(|x| x.name == fam.name() && labels_of(x, true) == want)
                        .collect();
                    let mut prev_q = f64::NEG_INFINITY;
                    for q in &quantiles {
                        let v = match strict_text::parse_float(&q.labels[q.labels.len() - 1].1) {
                            Ok(v) => v,
                            Err(e) => panic!("{e}\n{text}"),
                        };
                        assert!(v > prev_q && (0.0..=1.0).contains(&v), "{text}");
                        prev_q = v;
                    }
                    let one = |suffix: &str| {
                        let name = format!("{}{suffix}", fam.name());
                        let found: Vec<_> = p
                            .samples
                            .iter()
                            .filter(|x| x.name == name && x.labels == want)
                            .collect();
                        assert_eq!(found.len(), 1, "{name} {want:?}\n{text}");
                        found[0].value
                    };
                    let count = one("_count");
                    assert!(count >= 0.0 && count.fract() == 0.0, "{text}");
                    one("_sum");
                    seen += quantiles.len() + 2;
                });
                assert_eq!(seen, p.samples.len(), "{text}");
            }
        }
    }
    assert!(
        by_name.is_empty(),
        "families not in the store: {by_name:?}\n{text}"
    );
});
