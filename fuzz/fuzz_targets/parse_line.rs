//! Fuzzes `parse_line` and `Tags::decode` and checks invariants, not only "no panic":
//!
//! * counter arithmetic: line-level errors stop a line before any sample is counted; every
//!   counted sample is either emitted or dropped with exactly one per-sample reason (a bad
//!   `@rate` is counted without dropping, so it only widens the bound);
//! * every slice a sample hands out lies inside the line, where the grammar says it does;
//! * `decode` calls back exactly `labels` times with non-empty, escaped keys and non-empty
//!   values, and gives the same answer twice;
//! * round trip: a plain sample rendered back as `name:value|type` parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statsgate::line::{Dialects, ParseCounters, SampleError, StatType, parse_line};

fn within(line: &[u8], part: &[u8]) -> bool {
    let start = line.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    p >= start && p + part.len() <= start + line.len()
}

fn type_letter(t: StatType) -> &'static str {
    match t {
        StatType::Counter => "c",
        StatType::Gauge => "g",
        StatType::Timer => "ms",
        StatType::Histogram => "h",
        StatType::Distribution => "d",
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, line)) = data.split_first() else {
        return;
    };
    let dialects = Dialects {
        dogstatsd: flags & 1 != 0,
        influxdb: flags & 2 != 0,
        librato: flags & 4 != 0,
        signalfx: flags & 8 != 0,
        dogstatsd_tags_last: flags & 16 != 0,
        graphite: flags & 32 != 0,
    };

    let mut counters = ParseCounters::default();
    let mut emitted = 0u64;
    let mut round_trips = Vec::new();
    parse_line(line, &dialects, &mut counters, |s| {
        emitted += 1;
        let name = s.tags.name_section.as_bytes();
        assert!(!name.is_empty() && within(line, name));
        assert_eq!(
            name.as_ptr(),
            line.as_ptr(),
            "the name section starts the line"
        );
        assert_eq!(line.get(name.len()), Some(&b':'));
        assert!(!name.contains(&b':'));
        assert!(!s.metric.contains(':'));
        assert!(s.metric.len() <= name.len());
        if let Some(dog) = s.tags.dogstatsd {
            assert!(dialects.dogstatsd);
            assert!(within(line, dog.as_bytes()));
            assert_eq!(
                line[dog.as_ptr() as usize - line.as_ptr() as usize - 2..][..2],
                *b"|#"
            );
        }
        if let Some(id) = s.tags.container_id {
            assert!(!id.is_empty() && within(line, id.as_bytes()));
        }
        if s.stat_type != StatType::Timer
            && s.stat_type != StatType::Histogram
            && s.stat_type != StatType::Distribution
        {
            assert_eq!(s.repeat, 1);
        }

        let mut calls = Vec::new();
        let counts = s.tags.decode(|k, v| {
            assert!(!k.is_empty() && !v.is_empty());
            assert!(!k.as_bytes()[0].is_ascii_digit());
            assert!(
                k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{k:?}"
            );
            calls.push((k.into_owned(), v.to_owned()));
        });
        assert_eq!(counts.labels as usize, calls.len());
        let mut again = Vec::new();
        assert_eq!(
            s.tags
                .decode(|k, v| again.push((k.into_owned(), v.to_owned()))),
            counts
        );
        assert_eq!(again, calls);

        let plain = |t: &str| !t.bytes().any(|b| b":|#,[]@\n".contains(&b));
        if !s.metric.is_empty()
            && plain(&s.metric)
            && s.tags.dogstatsd.is_none()
            && s.tags.container_id.is_none()
        {
            round_trips.push((
                format!("{}:{:?}|{}", s.metric, s.value, type_letter(s.stat_type)),
                s.value,
            ));
        }
    });

    let e = |r: SampleError| counters.errors[r.index()];
    let line_level = e(SampleError::MalformedLine)
        + e(SampleError::MixedTaggingStyles)
        + e(SampleError::NotEnoughPartsAfterColon)
        + e(SampleError::InvalidExtendedAggregateType);
    assert!(line_level <= 1);
    if line_level == 1 {
        assert_eq!((counters.samples, emitted), (0, 0));
    }
    if line.is_empty() {
        assert_eq!(counters, ParseCounters::default());
    }
    if std::str::from_utf8(line).is_err() {
        assert_eq!(e(SampleError::MalformedLine), 1);
    }
    let dropping = e(SampleError::MalformedComponent)
        + e(SampleError::MalformedValue)
        + e(SampleError::MalformedContainerId)
        + e(SampleError::IllegalEvent);
    assert!(emitted <= counters.samples);
    let dropped = counters.samples - emitted;
    assert!(dropping <= dropped && dropped <= dropping + e(SampleError::InvalidSampleFactor));

    // Parsing is a pure function of the line and the flags.
    let mut second = ParseCounters::default();
    parse_line(line, &dialects, &mut second, |_| {});
    assert_eq!(second, counters);

    for (text, value) in round_trips {
        let mut got = Vec::new();
        let mut c = ParseCounters::default();
        parse_line(text.as_bytes(), &dialects, &mut c, |s| got.push(s.value));
        assert_eq!(got.len(), 1, "{text}");
        assert!(
            got[0] == value || (got[0].is_nan() && value.is_nan()),
            "{text}"
        );
    }
});
