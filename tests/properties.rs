//! Properties of escaping and rendering, checked with proptest against the strict reader
//! of the text format that the `datagram_to_exposition` fuzz target also uses:
//!
//! * any label value and any HELP text come back unchanged through rendering and the
//!   format's unescaping;
//! * metric-name escaping (current and legacy) yields a valid Prometheus name and is
//!   idempotent;
//! * counters and gauges with any values, NaN and infinities included, render to text the
//!   strict reader accepts, with every value equal bit for bit to the stored one.

#[path = "../fuzz/common/strict_text.rs"]
mod strict_text;

use std::time::Duration;

use proptest::prelude::*;
use statsgate::expose::text::render_to_string;
use statsgate::mapping::naming::{escape_metric_name, escape_metric_name_legacy};
use statsgate::store::{SeriesKind, SeriesSpec, Store, StoreOptions, TextStyle};

fn spec<'a>(
    name: &'a str,
    help: Option<&'a str>,
    kind: SeriesKind<'a>,
    labels: Vec<(String, String)>,
) -> SeriesSpec<'a> {
    SeriesSpec {
        name,
        help,
        kind,
        labels,
        ttl: Duration::ZERO,
        style: TextStyle::default(),
    }
}

fn parse(text: &str) -> Vec<strict_text::ParsedFamily> {
    match strict_text::parse(text) {
        Ok(p) => p,
        Err(e) => panic!("{e}\n--- text ---\n{text}"),
    }
}

fn sorted(mut l: Vec<(String, String)>) -> Vec<(String, String)> {
    l.sort();
    l
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Strings that favour the characters escaping is about.
fn tricky_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just('\\'),
            Just('"'),
            Just('\n'),
            Just('n'),
            Just(','),
            Just('}'),
            Just('='),
            Just(' '),
            any::<char>(),
        ],
        0..24,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// Any f64 bit pattern, so NaNs, infinities, zeros and subnormals all occur.
fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(1e21),
        Just(123456.0),
        Just(1e-5),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn label_values_and_help_round_trip(a in tricky_string(), b in tricky_string(), help in tricky_string()) {
        let store = Store::new(StoreOptions::default());
        let labels = vec![("a".to_string(), a), ("b".to_string(), b)];
        let series = store
            .resolve(&spec("m", Some(&help), SeriesKind::Counter, labels.clone()))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        series.counter_add(1.0);
        let text = render_to_string(&store, &[]);
        let parsed = parse(&text);
        prop_assert_eq!(parsed.len(), 1);
        prop_assert_eq!(&parsed[0].help, &help);
        prop_assert_eq!(parsed[0].samples.len(), 1);
        prop_assert_eq!(sorted(parsed[0].samples[0].labels.clone()), sorted(labels));
    }

    #[test]
    fn escaped_metric_names_are_valid_and_idempotent(name in tricky_string()) {
        for escape in [escape_metric_name, escape_metric_name_legacy] {
            let once = escape(&name).into_owned();
            if name.is_empty() {
                prop_assert_eq!(&once, "");
                continue;
            }
            prop_assert!(strict_text::is_label_name(&once), "{:?} -> {:?}", name, once);
            prop_assert_eq!(escape(&once).into_owned(), once);
        }
    }

    #[test]
    fn rendered_counters_and_gauges_parse_back_to_the_stored_values(
        updates in prop::collection::vec(
            (0usize..4, any::<bool>(), 0usize..3, tricky_string(), any_f64()),
            1..32,
        )
    ) {
        const NAMES: [&str; 4] = ["alpha", "beta_total", "gamma:sub", "_d"];
        const KEYS: [&str; 3] = ["code", "path", "le_not"];
        let store = Store::new(StoreOptions::default());
        for (n, gauge, key, value, v) in &updates {
            let kind = if *gauge { SeriesKind::Gauge } else { SeriesKind::Counter };
            let labels = vec![(KEYS[*key].to_string(), value.clone())];
            // A name already taken by the other type is a counted conflict, not a property.
            let Ok(series) = store.resolve(&spec(NAMES[*n], None, kind, labels)) else {
                continue;
            };
            if *gauge {
                series.gauge_update(*v, false);
            } else {
                series.counter_add(*v);
            }
        }
        let text = render_to_string(&store, &[]);
        let parsed = parse(&text);
        let mut series_seen = 0;
        for fam in store.families().iter().filter(|f| !f.is_empty()) {
            let Some(p) = parsed.iter().find(|p| p.name == fam.name()) else {
                return Err(TestCaseError::fail(format!("{} missing\n{text}", fam.name())));
            };
            prop_assert_eq!(p.kind.as_str(), fam.family_type().as_str());
            prop_assert_eq!(p.samples.len(), fam.len());
            let mut failure = None;
            fam.for_each_series(16, |s| {
                series_seen += 1;
                let want: Vec<(String, String)> = s
                    .labels()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                match p.samples.iter().find(|x| x.labels == want) {
                    Some(got) if same(got.value, s.scalar()) => {}
                    other => failure = Some(format!("{want:?}: {other:?} vs {}", s.scalar())),
                }
            });
            if let Some(f) = failure {
                return Err(TestCaseError::fail(format!("{f}\n{text}")));
            }
        }
        prop_assert_eq!(series_seen, parsed.iter().map(|p| p.samples.len()).sum::<usize>());
    }
}
