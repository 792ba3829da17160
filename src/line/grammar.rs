//! statsd_exporter's `LineToEvents` (§1.2 of the reference notes) as `nom` parsers over the
//! line's bytes.
//!
//! One function per production; the name-section and tag-list productions live in
//! [`super::tags`]. The error reason a failed production stands for is on its right.
//!
//! ```text
//! line         = name_section ":" body            ; no `:`, empty name, bad UTF-8: malformed_line
//! name_section = graphite_list | signalfx_block | name_tag_list | metric          (tags.rs)
//! body         = values "|" ...                   ; no `|` at all: not_enough_parts_after_colon
//!              ; then the first shape that applies, in Go's order:
//!              = value 1*(":" value) "|" fields   ; extended aggregation; type ms, h or d, or
//!                                                 ;   invalid_extended_aggregate_type
//!              | sample                           ; the body holds `|#`: one sample only
//!              | sample *(":" sample)             ; multi-metric
//! sample       = value ["|" fields]
//! fields       = stat_type *("|" component) [tags_tail]  ; 2 to 6 parts in all with the value,
//!                                                 ;   or malformed_component
//! stat_type    = "c" | "g" | "ms" | "h" | "d"     ; illegal_event
//! component    = "@" sample_rate                  ; a bad rate: invalid_sample_factor, not fatal
//!              | "#" tag_list                     ; DogStatsD tags
//!              | "c:" container_id                ; `c` without `:id`: malformed_container_id
//!              | "T" timestamp                    ; anything else: invalid_sample_factor
//! tags_tail    = "#" <the rest of the line>       ; only with `dogstatsd_tags_last`
//! tag_list     = *(tag ",") [tag]                                                 (tags.rs)
//! ```
//!
//! The parsers find the structure; [`emit_sample`] then checks each sample in statsd_exporter's
//! order (the part count before the value, the value before empty components, the type
//! last), which is what makes the error reasons agree with Go's.
//!
//! Every production takes and returns sub-slices of the line. Once the whole line is known to
//! be UTF-8, a cut at an ASCII delimiter is valid text as well ([`text_of`]), so nothing is
//! copied; the only allocation is a metric name with a SignalFx block in its middle.

use super::float::parse_go_float;
use super::tags::{self, NameSplit};
use super::{Dialects, EventKind, ParseCounters, ReplayParts, Sample, SampleError, StatType, Tags};
use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_until, take_until1};
use nom::character::complete::char;
use nom::combinator::{all_consuming, cut, iterator, opt, peek, rest, verify};
use nom::sequence::{preceded, terminated};
use nom::{IResult, Parser};
use std::borrow::Cow;

/// A production's result over the line's bytes. A failure carries nothing: the caller knows
/// which reason (if any) a failed production stands for.
pub(super) type PResult<'a, O> = IResult<&'a [u8], O, ()>;

/// statsd_exporter accepts 2 to 6 `|`-separated parts per sample, the value included; the
/// parts after the value therefore fit a fixed array.
const MAX_FIELDS: usize = 5;

/// `line = name_section ":" body`: the name runs to the first `:` and is never empty
/// (`take_until1` finds the `:` with memchr). Returns the body and the name section.
fn line(input: &[u8]) -> PResult<'_, &[u8]> {
    terminated(take_until1(":"), char(':')).parse(input)
}

/// `values "|"`, the start of every body: statsd_exporter's `SplitN(rest, "|", 3)` must give
/// at least two parts. Returns the text after the first `|` and the values before it.
fn values(body: &[u8]) -> PResult<'_, &[u8]> {
    terminated(part, char('|')).parse(body)
}

/// The first `|#` anywhere in the body, as (the body before it, `#...` to the end).
///
/// Its mere presence matters, whatever the dogstatsd flag says: it makes name tags a
/// `mixed_tagging_styles` error and turns the multi-metric form off. Go finds it with
/// `strings.Contains(rest, "|#")`, so a `|#` inside a value list counts too.
fn dogstatsd_marker(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let found: PResult<'_, (&[u8], &[u8])> =
        (take_until("|#"), preceded(char('|'), rest)).parse(body);
    found.ok().map(|(_, cut)| cut)
}

/// The cut [`super::split_for_replay`] makes: `name ":" value "|" tail`, where the value runs
/// to the first `|` and holds no `:` (several values are not replayed). Unlike [`line`], an
/// empty name is cut too: such a line never parses, so it is never replayed either.
pub(super) fn replay_parts(input: &[u8]) -> Option<ReplayParts<'_>> {
    let parsed: PResult<'_, (&[u8], &[u8])> = (
        terminated(take_until(":"), char(':')),
        terminated(take_till(|b| b == b'|' || b == b':'), peek(char('|'))),
    )
        .parse(input);
    parsed
        .ok()
        .map(|(tail, (name_section, value))| ReplayParts {
            name_section,
            value,
            tail,
        })
}

/// Go's `strings.Split(input, sep)` as the production `*(piece sep) piece`: every piece,
/// empty ones included (`a:` is two samples, the second empty), handed to `each` in order.
pub(super) fn split_each<'a>(input: &'a [u8], sep: u8, mut each: impl FnMut(&'a [u8])) {
    let piece_and_sep = terminated(take_till(move |b| b == sep), char(char::from(sep)));
    let mut pieces = iterator(input, piece_and_sep);
    for piece in &mut pieces {
        each(piece);
    }
    // The separator-terminated pieces stop at the last one, which runs to the end.
    let last: PResult<'_, ()> = pieces.finish();
    if let Ok((last, ())) = last {
        each(last);
    }
}

/// A value or a part after it runs to the next `|`.
fn part(input: &[u8]) -> PResult<'_, &[u8]> {
    take_till(|b| b == b'|').parse(input)
}

/// `sample = value ["|" fields]`.
fn sample<'a>(
    text: &'a [u8],
    tail: Option<&'a [u8]>,
) -> (&'a [u8], Result<Fields<'a>, SampleError>) {
    let parsed: PResult<'_, (&[u8], Option<&[u8]>)> =
        (part, opt(preceded(char('|'), rest))).parse(text);
    match parsed {
        Ok((_, (value, after))) => (value, fields(after, tail)),
        // Neither `take_till` nor `opt` fails.
        Err(_) => (text, fields(None, tail)),
    }
}

/// The parts of a sample after its value: the type, then up to four components.
#[derive(Clone, Copy)]
struct Fields<'a> {
    parts: [&'a [u8]; MAX_FIELDS],
    len: usize,
}

impl<'a> Fields<'a> {
    /// The type text and the components after it.
    fn type_and_components(&self) -> (&'a [u8], &[&'a [u8]]) {
        let parts = self.parts.get(..self.len).unwrap_or_default();
        match parts.split_first() {
            Some((stat_type, components)) => (stat_type, components),
            None => (b"", parts),
        }
    }
}

/// `fields = stat_type *("|" component) [tags_tail]`: `text` split on `|`, then the
/// tags-last tail as one more part. A sample with fewer than 2 or more than 6 parts is a
/// malformed_component, decided before its value is looked at.
fn fields<'a>(text: Option<&'a [u8]>, tail: Option<&'a [u8]>) -> Result<Fields<'a>, SampleError> {
    let mut parts: [&[u8]; MAX_FIELDS] = [b""; MAX_FIELDS];
    let mut len = 0;
    let mut push = |part| {
        if let Some(slot) = parts.get_mut(len) {
            *slot = part;
        }
        len += 1;
    };
    if let Some(text) = text {
        split_each(text, b'|', &mut push);
    }
    if let Some(tail) = tail {
        push(tail);
    }
    if (1..=MAX_FIELDS).contains(&len) {
        Ok(Fields { parts, len })
    } else {
        Err(SampleError::MalformedComponent)
    }
}

/// `stat_type = "c" | "g" | "ms" | "h" | "d"`, the whole part. statsd_exporter has no sets, so
/// `s`, like anything else, is an illegal_event (decided after the components).
fn stat_type(part: &[u8]) -> Option<StatType> {
    let parsed: PResult<'_, StatType> = all_consuming(alt((
        tag("c").map(|_| StatType::Counter),
        tag("g").map(|_| StatType::Gauge),
        tag("ms").map(|_| StatType::Timer),
        tag("h").map(|_| StatType::Histogram),
        tag("d").map(|_| StatType::Distribution),
    )))
    .parse(part);
    parsed.ok().map(|(_, t)| t)
}

/// One component after the type.
#[derive(Clone, Copy)]
enum Component<'a> {
    /// `@rate`, the rate still as text: a bad one is counted but does not drop the sample.
    SampleRate(&'a [u8]),
    /// `#k:v,...`: the DogStatsD tag list after the `#`, decoded later from the raw section.
    Tags(&'a [u8]),
    /// `c:id` (DogStatsD 1.2).
    ContainerId(&'a [u8]),
    /// `T<unix seconds>` (DogStatsD 1.3): ignored and not validated, as statsd_exporter does.
    Timestamp,
}

/// `component = "@" sample_rate | "#" tag_list | "c:" container_id | "T" timestamp`, chosen by
/// the first byte as Go's `switch component[0]` does; any other first byte is an
/// invalid_sample_factor (Go's `default:` branch), and a `c` without `:id` a
/// malformed_container_id.
fn component(part: &[u8]) -> Result<Component<'_>, SampleError> {
    let parsed: PResult<'_, Component<'_>> = alt((
        preceded(char('@'), rest).map(Component::SampleRate),
        preceded(char('#'), rest).map(Component::Tags),
        // `cut`: once the `c` matched, no other branch may claim the part.
        preceded(
            char('c'),
            cut(preceded(
                char(':'),
                verify(rest, |id: &[u8]| !id.is_empty()),
            )),
        )
        .map(Component::ContainerId),
        char('T').map(|_| Component::Timestamp),
    ))
    .parse(part);
    match parsed {
        Ok((_, component)) => Ok(component),
        Err(nom::Err::Failure(())) => Err(SampleError::MalformedContainerId),
        Err(_) => Err(SampleError::InvalidSampleFactor),
    }
}

/// `sample_rate`: Go's `ParseFloat`. A bad rate is counted (invalid_sample_factor) but the
/// sample goes on with the value Go returns alongside the error (0, or ±Inf out of range),
/// and a rate of 0 means 1. Returns the rate and whether it was bad.
fn sample_rate(text: &str) -> (f64, bool) {
    let (rate, bad) = match parse_go_float(text) {
        Ok(rate) => (rate, false),
        Err(err) => (err.value(), true),
    };
    (if rate == 0.0 { 1.0 } else { rate }, bad)
}

/// `part`, a sub-slice of `whole`'s bytes, back as text.
pub(super) fn text_of<'a>(whole: &'a str, part: &[u8]) -> &'a str {
    span_of(whole, part, part)
}

/// The text of `whole` from the start of `first` to the end of `last`, both sub-slices of its
/// bytes. The grammar cuts only at ASCII delimiters, which never fall inside a multi-byte
/// character, so the span always lies on character boundaries.
fn span_of<'a>(whole: &'a str, first: &[u8], last: &[u8]) -> &'a str {
    let base = whole.as_ptr() as usize;
    let start = (first.as_ptr() as usize).wrapping_sub(base);
    let end = (last.as_ptr() as usize)
        .wrapping_sub(base)
        .wrapping_add(last.len());
    let text = whole.get(start..end);
    debug_assert!(
        text.is_some(),
        "a cut outside its line or inside a character"
    );
    text.unwrap_or_default()
}

/// What every sample of one line shares.
struct Line<'a, 'd> {
    /// The whole line, known to be UTF-8.
    text: &'a str,
    /// The raw name section, the cache identity of the name and its embedded tags.
    name: &'a str,
    metric: Cow<'a, str>,
    dialects: &'d Dialects,
}

pub(super) fn parse_line<'a>(
    input: &'a [u8],
    dialects: &Dialects,
    counters: &mut ParseCounters,
    mut on_sample: impl FnMut(Sample<'a>),
) {
    if input.is_empty() {
        return;
    }
    // statsd_exporter checks UTF-8 on the whole line, tag values included.
    let (Ok(text), Ok((rest, name))) = (std::str::from_utf8(input), line(input)) else {
        counters.record(SampleError::MalformedLine);
        return;
    };
    let name = text_of(text, name);
    let split = tags::split_name(name, dialects);
    let marker = dogstatsd_marker(rest);
    // Step 4: only name tags that yield a label make a second style; its tag errors are
    // counted because Go parsed the name tags before it gave up.
    if marker.is_some() && (split.list.is_some() || split.bad_bracket) {
        let name_tags = split.counts();
        if name_tags.labels > 0 {
            counters.record(SampleError::MixedTaggingStyles);
            counters.tag_errors += u64::from(name_tags.errors);
            return;
        }
    }

    let ctx = Line {
        text,
        name,
        metric: split.metric(),
        dialects,
    };
    let emitted = body(&ctx, rest, marker, counters, &mut on_sample);
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

/// Steps 5–6, `body`: cuts the text after the name into samples by the first shape that
/// applies and parses each. Returns how many were emitted.
fn body<'a>(
    ctx: &Line<'a, '_>,
    input: &'a [u8],
    marker: Option<(&'a [u8], &'a [u8])>,
    counters: &mut ParseCounters,
    on_sample: &mut impl FnMut(Sample<'a>),
) -> usize {
    let Ok((after_values, value_list)) = values(input) else {
        counters.record(SampleError::NotEnoughPartsAfterColon);
        return 0;
    };
    // With `dogstatsd_tags_last`, everything from the first `|#` on is one part (Istio
    // cluster names hold `|`), and only the head before it is split on `|`.
    let (head, tail) = match marker {
        Some((before, tags)) if ctx.dialects.dogstatsd_tags_last => (before, Some(tags)),
        _ => (input, None),
    };
    let mut emitted = 0;
    let mut emit = |value, parts, counters: &mut ParseCounters| {
        emitted += usize::from(emit_sample(ctx, value, parts, counters, on_sample));
    };

    if value_list.contains(&b':') {
        // DogStatsD extended aggregation `a:1:2:3|ms|...`. Go checks the part after the first
        // `|` of the whole body (its `lineParts[1]`), before any sample is counted.
        let type_text = part(after_values).map_or(&b""[..], |(_, t)| t);
        if stat_type(type_text).is_none_or(|t| t.kind() != EventKind::Observer) {
            counters.record(SampleError::InvalidExtendedAggregateType);
            return 0;
        }
        // Every value takes the same fields, so they are cut once. The type is not a `#...`
        // part, so the head still holds the first `|`.
        let shared = fields(values(head).ok().map(|(f, _)| f), tail);
        split_each(value_list, b':', |value| emit(value, shared, counters));
    } else if marker.is_some() {
        // DogStatsD tags turn the multi-metric form off: the body is one sample.
        let (value, parts) = sample(head, tail);
        emit(value, parts, counters);
    } else {
        split_each(input, b':', |text| {
            let (value, parts) = sample(text, None);
            emit(value, parts, counters);
        });
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

/// Step 7 for one sample, checked in statsd_exporter's order. Returns whether a sample was
/// emitted.
fn emit_sample<'a>(
    ctx: &Line<'a, '_>,
    value_text: &'a [u8],
    fields: Result<Fields<'a>, SampleError>,
    counters: &mut ParseCounters,
    on_sample: &mut impl FnMut(Sample<'a>),
) -> bool {
    counters.samples += 1;
    let fields = match fields {
        Ok(fields) => fields,
        Err(reason) => {
            counters.record(reason);
            return false;
        }
    };
    // Go: `strings.Index(valueStr, "+") == 0 || ...`; it matters to gauges only.
    let relative = matches!(value_text.first(), Some(b'+' | b'-'));
    let Ok(mut value) = parse_go_float(text_of(ctx.text, value_text)) else {
        counters.record(SampleError::MalformedValue);
        return false;
    };
    let (type_text, components) = fields.type_and_components();
    // Every component is checked for emptiness before any is interpreted.
    if components.iter().any(|c| c.is_empty()) {
        counters.record(SampleError::MalformedComponent);
        return false;
    }
    // Go decides how a rate applies on the type text, before the type itself is checked.
    let stat = stat_type(type_text);

    let mut repeat = 1;
    // The last `@` component's rate, which `Sample::rate` reports.
    let mut last_rate = 1.0;
    let mut container_id = None;
    // The first and the last `#` component: the DogStatsD section spans them.
    let mut dog: Option<(&[u8], &[u8])> = None;
    for (index, part) in components.iter().enumerate() {
        match component(part) {
            Ok(Component::SampleRate(text)) => {
                let (rate, bad) = sample_rate(text_of(ctx.text, text));
                if bad {
                    counters.record(SampleError::InvalidSampleFactor);
                }
                last_rate = rate;
                // Gauges ignore the rate; every `@` divides a counter again.
                match stat.map(StatType::kind) {
                    Some(EventKind::Counter) => value /= rate,
                    Some(EventKind::Observer) => repeat = repeat_for_rate(rate),
                    _ => {}
                }
            }
            Ok(Component::Tags(list)) => {
                // Without the dogstatsd flag a `#` component is skipped silently.
                if ctx.dialects.dogstatsd {
                    dog = Some((dog.map_or(list, |(first, _)| first), part));
                }
            }
            Ok(Component::ContainerId(id)) => container_id = Some(text_of(ctx.text, id)),
            Ok(Component::Timestamp) => {}
            Err(reason) => {
                counters.record(reason);
                counters.tag_errors += dogstatsd_errors(ctx, components.get(..index));
                return false;
            }
        }
    }

    // Only an observer's `repeat` was ever changed.
    let Some(stat_type) = stat else {
        counters.record(SampleError::IllegalEvent);
        counters.tag_errors += dogstatsd_errors(ctx, Some(components));
        return false;
    };
    if stat_type.kind() == EventKind::Observer && repeat == 0 {
        // A rate above 1, negative, NaN, or so small that Go's `int(1/rate)` overflows:
        // statsd_exporter emits no event and counts nothing; counting it here makes the
        // silent loss visible, and no series is created for a sample with no event.
        counters.record(SampleError::InvalidSampleFactor);
        counters.tag_errors += dogstatsd_errors(ctx, Some(components));
        return false;
    }
    on_sample(Sample {
        metric: ctx.metric.clone(),
        stat_type,
        value,
        relative,
        repeat,
        rate: last_rate,
        tags: Tags {
            name_section: ctx.name,
            dogstatsd: dog.map(|(first, last)| span_of(ctx.text, first, last)),
            container_id,
            dialects: *ctx.dialects,
        },
    });
    true
}

/// Tag errors in the `#` components of a sample that is then dropped: Go parsed (and
/// counted) them before it hit the bad part, but no decode will see them.
fn dogstatsd_errors(ctx: &Line<'_, '_>, components: Option<&[&[u8]]>) -> u64 {
    if !ctx.dialects.dogstatsd {
        return 0;
    }
    components
        .unwrap_or_default()
        .iter()
        .filter_map(|part| part.strip_prefix(b"#"))
        .map(|list| {
            let counts = tags::for_each_tag(text_of(ctx.text, list), tags::DOGSTATSD, |_, _| {});
            u64::from(counts.errors)
        })
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

    fn graphite() -> Dialects {
        Dialects {
            graphite: true,
            ..envoy()
        }
    }

    const ISTIO_GRAPHITE_LINE: &str = "envoy.cluster.upstream_rq;envoy.cluster_name=outbound|9080|v1|reviews.default.svc.cluster.local;envoy.response_code=200:1|c";

    #[test]
    fn graphite_tags_follow_the_name() {
        let (got, c) = parse_with(ISTIO_GRAPHITE_LINE.as_bytes(), graphite());
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
        // The same labels as the DogStatsD form of the line.
        let (dog, _) = parse_with(ISTIO_LINE.as_bytes(), graphite());
        assert_eq!(dog[0].labels, got[0].labels);
        assert_eq!(dog[0].metric, got[0].metric);
        // Every sample of a multi-value line carries them.
        let (got, c) = parse_with(b"t;k=v:1|c:2|g", graphite());
        assert_eq!(c, counters(2, &[], 0));
        assert!(got.iter().all(|g| g.labels == labels(&[("k", "v")])));
        let (got, _) = parse_with(b"t;k=v:1:2|ms|@0.5", graphite());
        assert_eq!(got.len(), 2);
        assert!(
            got.iter()
                .all(|g| (g.repeat, &g.labels) == (2, &labels(&[("k", "v")])))
        );
    }

    #[test]
    fn graphite_tag_errors_are_counted_as_the_other_dialects() {
        // Bad tags of an emitted sample go to its decode.
        let (got, c) = parse_with(b"foo;bad;k=;=v;;ok=1:1|c", graphite());
        assert_eq!(c, counters(1, &[], 0));
        assert_eq!(got[0].labels, labels(&[("ok", "1")]));
        assert_eq!(
            got[0].counts,
            TagCounts {
                labels: 1,
                errors: 4
            }
        );
        // A line that yields no sample counts them itself.
        let (_, c) = parse_with(b"foo;bad;k=v:1", graphite());
        assert_eq!(
            c,
            counters(0, &[(SampleError::NotEnoughPartsAfterColon, 1)], 1)
        );
        let (_, c) = parse_with(b"foo;bad:1|s", graphite());
        assert_eq!(c, counters(1, &[(SampleError::IllegalEvent, 1)], 1));
        // Graphite and DogStatsD tags on one line are two styles, as any name tags are.
        let (got, c) = parse_with(b"foo;a=b,bad:1|c|#x:y", graphite());
        assert!(got.is_empty());
        assert_eq!(c, counters(0, &[(SampleError::MixedTaggingStyles, 1)], 0));
        // A Graphite list with no valid tag is not a style.
        let (got, c) = parse_with(b"foo;bad:1|c|#x:y", graphite());
        assert_eq!(got[0].labels, labels(&[("x", "y")]));
        assert_eq!(got[0].counts.errors, 1);
        assert_eq!(c, counters(1, &[], 0));
    }

    #[test]
    fn graphite_off_keeps_the_name_whole() {
        for dialects in [Dialects::default(), envoy(), Dialects::NONE] {
            let (got, c) = parse_with(b"foo;a=b:1|c", dialects);
            assert_eq!(c, counters(1, &[], 0));
            assert_eq!(got[0].metric, "foo;a=b");
            assert!(got[0].labels.is_empty());
        }
        let (got, c) = parse_with(b"foo;a=b,c=d:1|c", Dialects::default());
        assert_eq!(c, counters(1, &[], 0));
        assert_eq!(
            (got[0].metric.as_str(), got[0].labels.clone()),
            ("foo;a=b", labels(&[("c", "d")])),
            "InfluxDB reads from the first `,`, as statsd_exporter"
        );
    }

    #[test]
    fn graphite_names_are_borrowed_and_in_the_identity() {
        let mut seen = Vec::new();
        parse_line(
            b"foo;a=b:1|c",
            &graphite(),
            &mut ParseCounters::default(),
            |s| {
                seen.push((
                    matches!(s.metric, Cow::Borrowed("foo")),
                    s.identity()[0].to_vec(),
                    s.tags.extracted_by_sender(),
                ))
            },
        );
        assert_eq!(seen, [(true, b"foo;a=b".to_vec(), true)]);
        parse_line(
            b"foo;a=b:1|c",
            &Dialects::default(),
            &mut ParseCounters::default(),
            |s| assert!(!s.tags.extracted_by_sender()),
        );
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
