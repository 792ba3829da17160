//! statsd_exporter's `LineToEvents`, step for step (§1.2 of the reference notes), over a
//! borrowed line.
//!
//! The line is cut with `nom` at its fixed delimiters (the first `:`, the first `|`, the
//! first `|#`); a sample's components are then walked with `split('|')` iterators so no
//! `Vec` is built. The only allocation is a metric name with a SignalFx block in its middle.

use super::float::parse_go_float;
use super::tags::{self, NameSplit};
use super::{Dialects, ParseCounters, Sample, SampleError, StatType, Tags};
use nom::bytes::complete::{tag, take_till, take_until};
use nom::sequence::terminated;
use nom::{IResult, Parser};
use std::borrow::Cow;

/// statsd_exporter rejects a sample with fewer or more `|`-separated components.
const MIN_COMPONENTS: usize = 2;
const MAX_COMPONENTS: usize = 6;

/// `name:rest`: the name runs to the first `:`.
fn name_and_rest(line: &str) -> Option<(&str, &str)> {
    let parsed: IResult<&str, &str> = terminated(take_till(|c| c == ':'), tag(":")).parse(line);
    parsed.ok().map(|(rest, name)| (name, rest))
}

/// Byte offset of the first `|#` (the DogStatsD tag marker) in `rest`.
fn tag_marker(rest: &str) -> Option<usize> {
    let found: IResult<&str, &str> = take_until("|#").parse(rest);
    found.ok().map(|(_, before)| before.len())
}

/// What every sample of one line shares.
struct Line<'a, 'd> {
    /// The raw name section, the cache identity of the name and its embedded tags.
    name: &'a str,
    metric: Cow<'a, str>,
    /// Everything after the first `:`; every component is a slice of it.
    rest: &'a str,
    dialects: &'d Dialects,
}

/// One sample's components: `value`, then `after.split('|')`, then `tail` (the whole
/// DogStatsD section as one component when [`Dialects::dogstatsd_tags_last`] applies).
#[derive(Clone, Copy)]
struct Parts<'a> {
    value: &'a str,
    after: Option<&'a str>,
    tail: Option<&'a str>,
}

impl<'a> Parts<'a> {
    /// Splits `text` at its first `|` into the value and the components after it.
    fn of(text: &'a str, tail: Option<&'a str>) -> Self {
        match text.split_once('|') {
            Some((value, after)) => Parts {
                value,
                after: Some(after),
                tail,
            },
            None => Parts {
                value: text,
                after: None,
                tail,
            },
        }
    }

    fn count(&self) -> usize {
        let after = self
            .after
            .map_or(0, |a| a.bytes().filter(|&b| b == b'|').count() + 1);
        1 + after + usize::from(self.tail.is_some())
    }

    /// The components after the value: the type first, then rate, tags, container id...
    fn components(&self) -> impl Iterator<Item = &'a str> + Clone + use<'a> {
        self.after
            .into_iter()
            .flat_map(|a| a.split('|'))
            .chain(self.tail)
    }
}

pub(super) fn parse_line<'a>(
    line: &'a [u8],
    dialects: &Dialects,
    counters: &mut ParseCounters,
    mut on_sample: impl FnMut(Sample<'a>),
) {
    if line.is_empty() {
        return;
    }
    // statsd_exporter checks UTF-8 on the whole line, tag values included.
    let Some((name, rest)) = std::str::from_utf8(line)
        .ok()
        .and_then(name_and_rest)
        .filter(|(name, _)| !name.is_empty())
    else {
        counters.record(SampleError::MalformedLine);
        return;
    };

    let split = tags::split_name(name, dialects);
    let marker = tag_marker(rest);
    if marker.is_some() && (split.list.is_some() || split.bad_bracket) {
        let name_tags = split.counts();
        if name_tags.labels > 0 {
            counters.record(SampleError::MixedTaggingStyles);
            counters.tag_errors += u64::from(name_tags.errors);
            return;
        }
    }

    let ctx = Line {
        name,
        metric: split.metric(),
        rest,
        dialects,
    };
    let emitted = parse_samples(&ctx, marker, counters, &mut on_sample);
    if emitted == 0 {
        // No sample carries the name tags to a decode, so their errors are counted here.
        counters.tag_errors += u64::from(name_tag_errors(&split));
    }
}

fn name_tag_errors(split: &NameSplit<'_>) -> u32 {
    if split.list.is_some() || split.bad_bracket {
        split.counts().errors
    } else {
        0
    }
}

/// Steps 5–6: cuts `rest` into samples and parses each. Returns how many were emitted.
fn parse_samples<'a>(
    ctx: &Line<'a, '_>,
    marker: Option<usize>,
    counters: &mut ParseCounters,
    on_sample: &mut impl FnMut(Sample<'a>),
) -> usize {
    let rest = ctx.rest;
    let Some(first_pipe) = rest.find('|') else {
        counters.record(SampleError::NotEnoughPartsAfterColon);
        return 0;
    };
    // With `dogstatsd_tags_last`, everything from the first `|#` on is one tag component
    // (`#...`), and only what precedes it is split on `|`.
    let tags_last = marker.filter(|_| ctx.dialects.dogstatsd_tags_last);
    let tail = tags_last.map(|pos| &rest[pos + 1..]);
    let first_value_part = &rest[..first_pipe];
    let mut emitted = 0;

    if first_value_part.contains(':') {
        // DogStatsD extended aggregation: `a:1:2:3|ms|...`, each value with the same suffix.
        let after_pipe = &rest[first_pipe + 1..];
        let stat_type = after_pipe.split('|').next().unwrap_or("");
        if !matches!(stat_type, "ms" | "h" | "d") {
            counters.record(SampleError::InvalidExtendedAggregateType);
            return 0;
        }
        // The type sits before any `|#`, so the tag marker (if any) lies past `first_pipe`.
        let after = match tags_last {
            Some(pos) => &rest[first_pipe + 1..pos],
            None => after_pipe,
        };
        for value in first_value_part.split(':') {
            let parts = Parts {
                value,
                after: Some(after),
                tail,
            };
            emitted += usize::from(parse_sample(ctx, parts, counters, on_sample));
        }
    } else if marker.is_some() {
        // DogStatsD tags turn the multi-metric form off: the rest is one sample.
        let parts = match tags_last {
            Some(pos) => Parts::of(&rest[..pos], tail),
            None => Parts::of(rest, None),
        };
        emitted += usize::from(parse_sample(ctx, parts, counters, on_sample));
    } else {
        for sample in rest.split(':') {
            let parts = Parts::of(sample, None);
            emitted += usize::from(parse_sample(ctx, parts, counters, on_sample));
        }
    }
    emitted
}

/// Go's `int(1/rate)` on amd64 as a repeat count: NaN and values beyond the int64 range
/// become int64's minimum there, so nothing is observed; negatives observe nothing either.
/// Counts beyond `u32::MAX` saturate.
fn repeat_for_rate(rate: f64) -> u32 {
    // `i64::MAX as f64` rounds up to exactly 2^63, the first value outside int64.
    const INT64_END: f64 = i64::MAX as f64;
    let times = 1.0 / rate;
    // NaN, below 1 (rates above 1 or negative) and beyond int64 all observe nothing.
    if !(1.0..INT64_END).contains(&times) {
        0
    } else if times >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        times as u32
    }
}

fn stat_type(text: &str) -> Option<StatType> {
    match text {
        "c" => Some(StatType::Counter),
        "g" => Some(StatType::Gauge),
        "ms" => Some(StatType::Timer),
        "h" => Some(StatType::Histogram),
        "d" => Some(StatType::Distribution),
        _ => None,
    }
}

/// Step 7 for one sample. Returns whether a sample was emitted.
fn parse_sample<'a>(
    ctx: &Line<'a, '_>,
    parts: Parts<'a>,
    counters: &mut ParseCounters,
    on_sample: &mut impl FnMut(Sample<'a>),
) -> bool {
    counters.samples += 1;
    if !(MIN_COMPONENTS..=MAX_COMPONENTS).contains(&parts.count()) {
        counters.record(SampleError::MalformedComponent);
        return false;
    }
    let relative = parts.value.starts_with(['+', '-']);
    let Ok(mut value) = parse_go_float(parts.value) else {
        counters.record(SampleError::MalformedValue);
        return false;
    };
    let mut components = parts.components();
    let type_text = components.next().unwrap_or("");
    if components.clone().any(str::is_empty) {
        counters.record(SampleError::MalformedComponent);
        return false;
    }

    let mut repeat = 1;
    let mut sample_rate = 1.0;
    let mut container_id = None;
    // Offsets in `rest` of the first `#` component and of the end of the last one.
    let mut dog_span: Option<(usize, usize)> = None;
    for (index, component) in components.clone().enumerate() {
        match component.as_bytes().first() {
            Some(b'@') => {
                // A bad rate is counted but the sample goes on, with Go's fallback value.
                let rate = parse_go_float(&component[1..]).unwrap_or_else(|err| {
                    counters.record(SampleError::InvalidSampleFactor);
                    err.value()
                });
                let rate = if rate == 0.0 { 1.0 } else { rate };
                sample_rate = rate;
                match type_text {
                    "c" => value /= rate,
                    "ms" | "h" | "d" => repeat = repeat_for_rate(rate),
                    _ => {}
                }
            }
            Some(b'#') => {
                if ctx.dialects.dogstatsd {
                    let start = offset(ctx.rest, component);
                    let end = start + component.len();
                    dog_span = Some((dog_span.map_or(start, |(s, _)| s), end));
                }
            }
            Some(b'c') => match component.strip_prefix("c:") {
                Some(id) if !id.is_empty() => container_id = Some(id),
                _ => {
                    counters.record(SampleError::MalformedContainerId);
                    counters.tag_errors += dogstatsd_errors(ctx, components.clone(), index);
                    return false;
                }
            },
            Some(b'T') => {}
            _ => {
                counters.record(SampleError::InvalidSampleFactor);
                counters.tag_errors += dogstatsd_errors(ctx, components.clone(), index);
                return false;
            }
        }
    }

    let Some(stat_type) = stat_type(type_text) else {
        counters.record(SampleError::IllegalEvent);
        counters.tag_errors += dogstatsd_errors(ctx, components, usize::MAX);
        return false;
    };
    if stat_type.kind() != super::EventKind::Observer {
        repeat = 1;
    } else if repeat == 0 {
        // A rate above 1, negative, NaN, or so small that Go's `int(1/rate)` overflows:
        // statsd_exporter emits no event and counts nothing; counting it here makes the
        // silent loss visible, and no series is created for a sample with no event.
        counters.record(SampleError::InvalidSampleFactor);
        counters.tag_errors += dogstatsd_errors(ctx, components, usize::MAX);
        return false;
    }
    on_sample(Sample {
        metric: ctx.metric.clone(),
        stat_type,
        value,
        relative,
        repeat,
        rate: sample_rate,
        tags: Tags {
            name_section: ctx.name,
            // Skip the `#` of the first tag component.
            dogstatsd: dog_span.map(|(start, end)| &ctx.rest[start + 1..end]),
            container_id,
            dialects: *ctx.dialects,
        },
    });
    true
}

/// Byte offset of `part` inside `whole`; `part` must be a subslice of `whole`.
fn offset(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// Tag errors in the `#` components before `upto` of a sample that is then dropped: Go
/// parsed (and counted) them before it hit the bad component, but no decode will see them.
fn dogstatsd_errors<'a>(
    ctx: &Line<'a, '_>,
    components: impl Iterator<Item = &'a str>,
    upto: usize,
) -> u64 {
    if !ctx.dialects.dogstatsd {
        return 0;
    }
    components
        .take(upto)
        .filter_map(|c| c.strip_prefix('#'))
        .map(|list| u64::from(tags::for_each_tag(list, b':', true, |_, _| {}).errors))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::super::{EventKind, TagCounts, parse_line};
    use super::*;
    use std::collections::BTreeMap;

    /// One sample as the tests see it: kind, metric, value in base unit, repeat, relative,
    /// labels (later duplicates overwrite) and the decode counts.
    #[derive(Debug, PartialEq)]
    struct Got {
        kind: EventKind,
        metric: String,
        value: f64,
        repeat: u32,
        relative: bool,
        labels: BTreeMap<String, String>,
        counts: TagCounts,
    }

    fn parse_with(line: &[u8], dialects: Dialects) -> (Vec<Got>, ParseCounters) {
        let mut counters = ParseCounters::default();
        let mut got = Vec::new();
        parse_line(line, &dialects, &mut counters, |s| {
            let mut labels = BTreeMap::new();
            let counts = s.tags.decode(|k, v| {
                labels.insert(k.into_owned(), v.to_owned());
            });
            got.push(Got {
                kind: s.kind(),
                metric: s.metric.to_string(),
                value: s.value_in_base_unit(),
                repeat: s.repeat,
                relative: s.relative,
                labels,
                counts,
            });
        });
        (got, counters)
    }

    fn parse(line: &str) -> (Vec<Got>, ParseCounters) {
        parse_with(line.as_bytes(), Dialects::default())
    }

    fn errors(list: &[(SampleError, u64)]) -> [u64; 9] {
        let mut out = [0; 9];
        for (e, n) in list {
            out[e.index()] = *n;
        }
        out
    }

    fn counters(samples: u64, errs: &[(SampleError, u64)], tag_errors: u64) -> ParseCounters {
        ParseCounters {
            samples,
            errors: errors(errs),
            tag_errors,
        }
    }

    fn labels(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn one(line: &str) -> Got {
        let (mut got, c) = parse(line);
        assert_eq!(got.len(), 1, "{line}: {got:?} {c:?}");
        assert_eq!(c, counters(1, &[], 0), "{line}");
        got.remove(0)
    }

    /// Parses `line` expecting nothing emitted and exactly one error of `reason`.
    fn rejected(line: &str, reason: SampleError, samples: u64) {
        let (got, c) = parse(line);
        assert!(got.is_empty(), "{line}: {got:?}");
        assert_eq!(c, counters(samples, &[(reason, 1)], 0), "{line}");
    }

    #[test]
    fn types() {
        let c = one("foo:2|c");
        assert_eq!(
            (c.kind, c.metric.as_str(), c.value, c.repeat),
            (EventKind::Counter, "foo", 2.0, 1)
        );
        let g = one("foo:3|g");
        assert_eq!(
            (g.kind, g.value, g.relative),
            (EventKind::Gauge, 3.0, false)
        );
        let ms = one("foo:200|ms");
        assert_eq!((ms.kind, ms.value), (EventKind::Observer, 0.2));
        assert_eq!(one("foo:200|h").value, 200.0);
        assert_eq!(one("foo:200|d").value, 200.0);
    }

    #[test]
    fn timer_value_stays_in_milliseconds() {
        let mut seen = None;
        parse_line(
            b"foo:250|ms",
            &Dialects::default(),
            &mut ParseCounters::default(),
            |s| seen = Some((s.stat_type, s.value, s.value_in_base_unit())),
        );
        assert_eq!(seen, Some((StatType::Timer, 250.0, 0.25)));
    }

    #[test]
    fn sets_and_unknown_types_are_illegal() {
        rejected("foo:1|s", SampleError::IllegalEvent, 1);
        rejected("foo:1|x", SampleError::IllegalEvent, 1);
        rejected("foo:1|", SampleError::IllegalEvent, 1);
    }

    #[test]
    fn relative_gauges() {
        let g = one("foo:+10|g");
        assert_eq!((g.value, g.relative), (10.0, true));
        let g = one("foo:-10|g");
        assert_eq!((g.value, g.relative), (-10.0, true));
        assert!(!one("foo:10|g").relative);
    }

    #[test]
    fn counter_sampling_divides() {
        let c = one("foo:100|c|@0.1");
        assert!((c.value - 1000.0).abs() < 1e-9);
        assert_eq!(c.repeat, 1);
        // Every `@` applies in turn, as in Go.
        assert!((one("foo:1|c|@0.5|@0.5").value - 4.0).abs() < 1e-12);
    }

    #[test]
    fn gauge_ignores_rate() {
        let g = one("foo:7|g|@0.1");
        assert_eq!((g.value, g.repeat), (7.0, 1));
    }

    #[test]
    fn observer_sampling_repeats() {
        let t = one("foo:0.5|ms|@0.1");
        assert_eq!((t.value, t.repeat), (0.0005, 10));
        assert_eq!(one("foo:1|h|@0.3").repeat, 3, "int(1/0.3) truncates");
        assert_eq!(one("foo:1|ms|@0").repeat, 1, "rate 0 means 1");
        assert_eq!(one("foo:1|ms|@1e-12").repeat, u32::MAX, "saturates");
    }

    /// statsd_exporter emits no event for these (Go's `int(1/rate)` is 0 or, on amd64,
    /// int64's minimum) and counts nothing; statsgate counts `invalid_sample_factor`.
    #[test]
    fn observer_rates_that_observe_nothing_are_counted_and_dropped() {
        for line in [
            "foo:1|d|@2",
            "foo:1|d|@-1",
            "foo:1|ms|@1e-300",
            "foo:1|ms|@nan",
            "foo:1|h|@+Inf",
        ] {
            rejected(line, SampleError::InvalidSampleFactor, 1);
        }
        // Tags read before the drop are counted, as no decode will see them.
        let (got, c) = parse("foo:1|ms|@5|#,k:v");
        assert!(got.is_empty());
        assert_eq!(c, counters(1, &[(SampleError::InvalidSampleFactor, 1)], 1));
        // Counters and gauges keep statsd_exporter's arithmetic.
        assert!((one("foo:1|c|@2").value - 0.5).abs() < 1e-12);
        assert_eq!(one("foo:1|c|@-1").value, -1.0);
        assert_eq!(one("foo:1|g|@5").value, 1.0);
    }

    #[test]
    fn bad_rate_is_counted_and_the_sample_kept() {
        let (got, c) = parse("foo:1|c|@bar");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].value, 1.0, "rate 0 -> 1");
        assert_eq!(c, counters(1, &[(SampleError::InvalidSampleFactor, 1)], 0));
        // An overflowing rate is a Go range error that still yields +Inf.
        let (got, c) = parse("foo:5|c|@1e400");
        assert_eq!(got[0].value, 0.0);
        assert_eq!(c.errors[SampleError::InvalidSampleFactor.index()], 1);
        let (got, c) = parse("foo:5|ms|@1e400");
        assert!(got.is_empty(), "rate +Inf observes nothing");
        assert_eq!(c.errors[SampleError::InvalidSampleFactor.index()], 2);
    }

    #[test]
    fn multi_value_lines() {
        let (got, c) = parse("a:1|c:2|g:3|ms");
        assert_eq!(c, counters(3, &[], 0));
        let kinds: Vec<_> = got.iter().map(|g| (g.kind, g.value)).collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Counter, 1.0),
                (EventKind::Gauge, 2.0),
                (EventKind::Observer, 0.003)
            ]
        );
        // One bad sample does not stop the others.
        let (got, c) = parse("a:1|c:x|c:3|c");
        assert_eq!(got.len(), 2);
        assert_eq!(c, counters(3, &[(SampleError::MalformedValue, 1)], 0));
        // The container id form cannot survive the `:` split.
        let (got, c) = parse("a:1|c|c:abc");
        assert!(got.is_empty());
        assert_eq!(
            c,
            counters(
                2,
                &[
                    (SampleError::MalformedContainerId, 1),
                    (SampleError::MalformedComponent, 1)
                ],
                0
            )
        );
    }

    #[test]
    fn extended_aggregation() {
        let (got, c) = parse("t:0.5:120:3000|ms|@0.5|#k:v");
        assert_eq!(c, counters(3, &[], 0));
        let values: Vec<_> = got.iter().map(|g| (g.value, g.repeat)).collect();
        assert_eq!(values, [(0.0005, 2), (0.12, 2), (3.0, 2)]);
        assert!(got.iter().all(|g| g.labels == labels(&[("k", "v")])));
        rejected("t:1:2|c|#k:v", SampleError::InvalidExtendedAggregateType, 0);
        rejected("t:1:2|g", SampleError::InvalidExtendedAggregateType, 0);
        rejected("t:1:2|msx", SampleError::InvalidExtendedAggregateType, 0);
        // A bad value skips only its own sample.
        let (got, c) = parse("t:1:x:3|h");
        assert_eq!(got.len(), 2);
        assert_eq!(c, counters(3, &[(SampleError::MalformedValue, 1)], 0));
    }

    #[test]
    fn dogstatsd_tags() {
        let s = one("foo:100|c|#tag1:bar,#tag2:baz");
        assert_eq!(s.labels, labels(&[("tag1", "bar"), ("tag2", "baz")]));
        assert_eq!(
            s.counts,
            TagCounts {
                labels: 2,
                errors: 0
            }
        );
        let s = one("foo:1|c|#k:a:b");
        assert_eq!(s.labels, labels(&[("k", "a:b")]));
        let s = one("foo:1|c|#tag:value,,");
        assert_eq!(
            s.counts,
            TagCounts {
                labels: 1,
                errors: 1
            }
        );
        let s = one("foo:1|c|#a:1|@0.5|#b:2");
        assert_eq!(s.labels, labels(&[("a", "1"), ("b", "2")]));
        assert_eq!(s.value, 2.0);
        // `|#` turns the multi-metric form off.
        let (got, c) = parse("foo:1|c|#k:v:2|T1");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels, labels(&[("k", "v:2")]));
        assert_eq!(c.samples, 1);
    }

    #[test]
    fn librato_influx_signalfx_tags() {
        let s = one("foo#tag1=bar,tag2=baz:100|c");
        assert_eq!(
            (s.metric.as_str(), s.labels.clone()),
            ("foo", labels(&[("tag1", "bar"), ("tag2", "baz")]))
        );
        let s = one("foo,09digits=0,tag.with.dots=1:100|c");
        assert_eq!(
            s.labels,
            labels(&[("_09digits", "0"), ("tag_with_dots", "1")])
        );
        let s = one("foo.[tag1=bar]test:1|c");
        assert_eq!(
            (s.metric.as_str(), s.labels.clone()),
            ("foo.test", labels(&[("tag1", "bar")]))
        );
        let s = one("foo.[tag1,tag2]test:1|c");
        assert_eq!(
            s.counts,
            TagCounts {
                labels: 0,
                errors: 2
            }
        );
        let s = one("[tag1=bar,tag2=bazfoo.test:1|c");
        assert_eq!(s.metric, "[tag1=bar,tag2=bazfoo.test");
        assert_eq!(
            s.counts,
            TagCounts {
                labels: 0,
                errors: 1
            }
        );
    }

    #[test]
    fn metric_borrows_unless_signalfx_mid_name() {
        let d = Dialects::default();
        let mut owned = Vec::new();
        for line in [
            "envoy.cluster.x.upstream_rq_200:1|c",
            "foo#a=b:1|c",
            "[a=b]foo:1|c",
            "foo.[a=b]bar:1|c",
        ] {
            parse_line(line.as_bytes(), &d, &mut ParseCounters::default(), |s| {
                owned.push(matches!(s.metric, Cow::Owned(_)));
            });
        }
        assert_eq!(owned, [false, false, false, true]);
    }

    #[test]
    fn dialect_flags_off() {
        let none = Dialects::NONE;
        for line in ["foo#a=b:1|c", "foo,a=b:1|c", "foo[a=b]:1|c"] {
            let (got, c) = parse_with(line.as_bytes(), none);
            assert_eq!(got[0].metric, line.split(':').next().unwrap_or(""));
            assert!(got[0].labels.is_empty());
            assert_eq!(c, counters(1, &[], 0));
        }
        // DogStatsD off: `#` components are skipped silently, and mixed styles are still
        // detected from the name alone.
        let (got, _) = parse_with(b"foo:1|c|#a:b", none);
        assert!(got[0].labels.is_empty());
        let mut captured = None;
        parse_line(b"foo:1|c|#a:b", &none, &mut ParseCounters::default(), |s| {
            captured = Some(s.tags.dogstatsd)
        });
        assert_eq!(captured, Some(None));
        let no_dog = Dialects {
            dogstatsd: false,
            ..Dialects::default()
        };
        let (got, c) = parse_with(b"foo#x=y:1|c|#a:b", no_dog);
        assert!(got.is_empty());
        assert_eq!(c, counters(0, &[(SampleError::MixedTaggingStyles, 1)], 0));
    }

    #[test]
    fn mixed_tagging_styles() {
        rejected(
            "foo#tag1=foo:100|c|#tag1:bar",
            SampleError::MixedTaggingStyles,
            0,
        );
        rejected("foo[a=b]:1|c|#x:y", SampleError::MixedTaggingStyles, 0);
        // Name tags that decode to no valid label do not count as a style.
        let (got, c) = parse("foo#bad:1|c|#x:y");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels, labels(&[("x", "y")]));
        assert_eq!(
            got[0].counts,
            TagCounts {
                labels: 1,
                errors: 1
            }
        );
        assert_eq!(c, counters(1, &[], 0));
    }

    #[test]
    fn container_id() {
        let s = one("foo:100|c|#tag1:value|c:sha256:abcd");
        assert_eq!(
            s.labels,
            labels(&[("tag1", "value"), ("container_id", "sha256:abcd")])
        );
        assert_eq!(s.counts.labels, 2);
        rejected("foo:1|c|#a:b|c", SampleError::MalformedContainerId, 1);
        rejected("foo:1|c|#a:b|c:", SampleError::MalformedContainerId, 1);
        rejected("foo:1|c|#a:b|cx", SampleError::MalformedContainerId, 1);
        // The container id is decoded last wherever it sat, so equal identities decode
        // alike (Go would let a later `#container_id:` tag win).
        let s = one("foo:1|c|c:id|#container_id:tag");
        assert_eq!(s.labels, labels(&[("container_id", "id")]));
        let s = one("foo:1|c|#container_id:tag|c:id");
        assert_eq!(s.labels, labels(&[("container_id", "id")]));
    }

    #[test]
    fn timestamp_is_ignored() {
        let s = one("temperature:98.6|g|#location:kitchen|T1656581400");
        assert_eq!(s.labels, labels(&[("location", "kitchen")]));
        assert_eq!(one("foo:1|c|T").value, 1.0);
        assert_eq!(one("foo:1|c|Tnot-a-ts").value, 1.0);
    }

    #[test]
    fn invalid_utf8_anywhere_is_a_malformed_line() {
        for line in [
            &b"invalid\xc3(utf8:1|c"[..],
            b"foo:100|c|@0.1|#tag:\xc3(invalid",
        ] {
            let (got, c) = parse_with(line, Dialects::default());
            assert!(got.is_empty());
            assert_eq!(c, counters(0, &[(SampleError::MalformedLine, 1)], 0));
        }
    }

    #[test]
    fn each_error_reason() {
        rejected("foo", SampleError::MalformedLine, 0);
        rejected(":1|c", SampleError::MalformedLine, 0);
        rejected("foo:1", SampleError::NotEnoughPartsAfterColon, 0);
        rejected("foo:1|c|", SampleError::MalformedComponent, 1);
        rejected("foo:1|c||#a:b", SampleError::MalformedComponent, 1);
        rejected("foo:1|c|@1|@1|@1|@1|@1", SampleError::MalformedComponent, 1);
        rejected("foo:1o|c", SampleError::MalformedValue, 1);
        rejected("foo:|c", SampleError::MalformedValue, 1);
        rejected("foo:1|c|x", SampleError::InvalidSampleFactor, 1);
        rejected("foo:1:2|c", SampleError::InvalidExtendedAggregateType, 0);
        rejected("foo:1|c|#a:b|c", SampleError::MalformedContainerId, 1);
        rejected("foo:1|s", SampleError::IllegalEvent, 1);
        rejected("foo#a=b:1|c|#x:y", SampleError::MixedTaggingStyles, 0);
        // Six components are fine.
        assert_eq!(one("foo:1|c|@1|@1|@1|T1").value, 1.0);
        // Empty lines are nothing at all.
        let (got, c) = parse("");
        assert!(got.is_empty());
        assert_eq!(c, ParseCounters::default());
    }

    #[test]
    fn go_parse_float_edge_cases() {
        assert_eq!(one("foo:1e3|c").value, 1000.0);
        assert_eq!(one("foo:+Inf|g").value, f64::INFINITY);
        assert_eq!(one("foo:-infinity|g").value, f64::NEG_INFINITY);
        assert!(one("foo:NaN|g").value.is_nan());
        assert_eq!(one("foo:0x1p-2|h").value, 0.25);
        assert_eq!(
            one("foo:1_000|c").value,
            1000.0,
            "Go accepts digit separators"
        );
        rejected("foo:1e400|c", SampleError::MalformedValue, 1);
        rejected("foo:1__0|c", SampleError::MalformedValue, 1);
        rejected("foo:0x1|c", SampleError::MalformedValue, 1);
        rejected("foo:+nan|g", SampleError::MalformedValue, 1);
    }

    #[test]
    fn key_escaping() {
        let s = one("foo:1|c|#with--doubledash:a,with.dot:b,with\u{1f631}emoji:c,1st:d");
        assert_eq!(
            s.labels,
            labels(&[
                ("with_doubledash", "a"),
                ("with_dot", "b"),
                ("with_emoji", "c"),
                ("_1st", "d")
            ])
        );
    }

    #[test]
    fn duplicate_keys_arrive_in_wire_order() {
        let mut order = Vec::new();
        parse_line(
            b"foo:1|c|#k:1,k:2",
            &Dialects::default(),
            &mut ParseCounters::default(),
            |s| {
                let counts = s.tags.decode(|k, v| order.push(format!("{k}={v}")));
                assert_eq!(counts.labels, 2, "duplicates are counted");
            },
        );
        assert_eq!(order, ["k=1", "k=2"]);
        assert_eq!(one("foo,k=1,k=2:1|c").labels, labels(&[("k", "2")]));
    }

    #[test]
    fn tag_errors_without_a_sample_go_to_the_counters() {
        // Name tags read before the line was dropped.
        let (_, c) = parse("|h|#consumer:Kafka::Shared,topic:x");
        assert_eq!(
            c,
            counters(0, &[(SampleError::NotEnoughPartsAfterColon, 1)], 1)
        );
        let (_, c) = parse("foo#a=b,bad:1|c|#x:y");
        assert_eq!(c, counters(0, &[(SampleError::MixedTaggingStyles, 1)], 1));
        // DogStatsD tags read before a bad component or an illegal type.
        let (_, c) = parse("foo:1|c|#,a|zz|#b");
        assert_eq!(c, counters(1, &[(SampleError::InvalidSampleFactor, 1)], 2));
        let (_, c) = parse("foo:1|s|#,a");
        assert_eq!(c, counters(1, &[(SampleError::IllegalEvent, 1)], 2));
        // Tags after the bad component were never read.
        let (_, c) = parse("foo:1|c|zz|#,a");
        assert_eq!(c.tag_errors, 0);
        // Emitted samples carry their errors to decode instead.
        let (got, c) = parse("foo#bad:1|c");
        assert_eq!(
            got[0].counts,
            TagCounts {
                labels: 0,
                errors: 1
            }
        );
        assert_eq!(c.tag_errors, 0);
    }

    #[test]
    fn identity_is_the_raw_sections() {
        let mut ids = Vec::new();
        parse_line(
            b"foo,a=b:1|c|@0.5|#x:y|c:ct",
            &Dialects::default(),
            &mut ParseCounters::default(),
            |s| {
                ids.push(
                    s.identity()
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                )
            },
        );
        let _ = &mut ids;
        assert_eq!(ids.len(), 0, "mixed styles: dropped");
        parse_line(
            b"foo:1|c|@0.5|#x:y|c:ct",
            &Dialects::default(),
            &mut ParseCounters::default(),
            |s| {
                ids.push(
                    s.identity()
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                )
            },
        );
        assert_eq!(ids, [["foo", "x:y", "ct"]]);
    }

    fn envoy() -> Dialects {
        Dialects {
            dogstatsd_tags_last: true,
            ..Dialects::default()
        }
    }

    const ISTIO_LINE: &str = "envoy.cluster.upstream_rq:1|c|#envoy.cluster_name:outbound|9080|v1|reviews.default.svc.cluster.local,envoy.response_code:200";

    #[test]
    fn tags_last_keeps_pipes_in_tag_values() {
        let (got, c) = parse_with(ISTIO_LINE.as_bytes(), envoy());
        assert_eq!(c, counters(1, &[], 0));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].metric, "envoy.cluster.upstream_rq");
        assert_eq!(
            got[0].labels,
            labels(&[
                (
                    "envoy_cluster_name",
                    "outbound|9080|v1|reviews.default.svc.cluster.local"
                ),
                ("envoy_response_code", "200")
            ])
        );
        // Components before the tags still work.
        let (got, c) = parse_with(b"t:10|ms|@0.5|#k:a|b", envoy());
        assert_eq!(c, counters(1, &[], 0));
        assert_eq!(
            (got[0].repeat, got[0].labels.clone()),
            (2, labels(&[("k", "a|b")]))
        );
        let (got, _) = parse_with(b"t:1:2|ms|#k:a|b", envoy());
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|g| g.labels == labels(&[("k", "a|b")])));
        let (got, _) = parse_with(b"t:1|c|c:ct|#k:a|b", envoy());
        assert_eq!(
            got[0].labels,
            labels(&[("k", "a|b"), ("container_id", "ct")])
        );
        // `|#` as the type: the tag component is the type, as without the option.
        let (got, c) = parse_with(b"t:1|#k:v", envoy());
        assert!(got.is_empty());
        assert_eq!(c, counters(1, &[(SampleError::IllegalEvent, 1)], 0));
    }

    #[test]
    fn without_tags_last_the_istio_line_is_dropped() {
        let (got, c) = parse(ISTIO_LINE);
        assert!(got.is_empty());
        assert_eq!(c, counters(1, &[(SampleError::InvalidSampleFactor, 1)], 0));
        let (got, c) = parse("t:1|c|#k:a|b");
        assert!(got.is_empty());
        assert_eq!(c, counters(1, &[(SampleError::InvalidSampleFactor, 1)], 0));
    }
}
