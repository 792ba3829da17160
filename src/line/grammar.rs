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
        self.after.into_iter().flat_map(|a| a.split('|')).chain(self.tail)
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
    let times = 1.0 / rate;
    if times.is_nan() || !(-9.223_372_036_854_775_808e18..9.223_372_036_854_775_808e18).contains(&times) {
        return 0;
    }
    let times = times.trunc();
    if times < 1.0 {
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
    }
    on_sample(Sample {
        metric: ctx.metric.clone(),
        stat_type,
        value,
        relative,
        repeat,
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
