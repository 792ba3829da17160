//! Fuzzes the mapping-file loader and the loaded mapper's lookups:
//!
//! * `Mapper::from_yaml` never panics: any text gives a mapper or a typed error;
//! * a loaded mapper answers every lookup without panicking, and the same lookup gives the
//!   same answer cached (twice, so the second is a cache hit) and uncached;
//! * a match names a rule that exists, and its labels have valid label names.
//!
//! Input: the YAML text, then optionally a NUL and NUL-separated names to look up (tried
//! with each event kind, besides a few fixed names).
#![no_main]

use libfuzzer_sys::fuzz_target;
use statsgate::line::EventKind;
use statsgate::mapping::naming::is_valid_label_name;
use statsgate::mapping::{CacheKind, CacheOptions, Mapper};

const NAMES: &[&str] = &[
    "",
    "a",
    "a.b.c",
    "test.dispatcher.FooProcessor.send.success",
    "envoy.cluster.outbound|9080||x.default.svc.cluster.local.upstream_rq_200",
    "foo-bar.baz_qux.1",
    "..",
    "*",
];

fuzz_target!(|data: &[u8]| {
    let (yaml, names) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let Ok(yaml) = std::str::from_utf8(yaml) else {
        return;
    };
    let cache = CacheOptions {
        size: 4,
        kind: if data.len() % 2 == 0 {
            CacheKind::Lru
        } else {
            CacheKind::Random
        },
    };
    let Ok(mapper) = Mapper::from_yaml(yaml, cache) else {
        return;
    };
    let extra = names
        .split(|b| *b == 0)
        .filter_map(|n| std::str::from_utf8(n).ok());
    for name in NAMES.iter().copied().chain(extra).take(64) {
        for kind in [EventKind::Counter, EventKind::Gauge, EventKind::Observer] {
            let uncached = mapper.map_uncached(name, kind);
            let first = mapper.map(name, kind);
            let second = mapper.map(name, kind);
            // Compared as Debug text: a `scale: .nan` rule is equal to itself there.
            let want = format!("{uncached:?}");
            assert_eq!(format!("{first:?}"), want, "{name:?}");
            assert_eq!(format!("{second:?}"), want, "{name:?}");
            if let Some(m) = uncached {
                assert!(m.rule_index < mapper.rule_count());
                for (k, _) in &m.labels {
                    assert!(is_valid_label_name(k), "{k:?}");
                }
            }
        }
    }
});
