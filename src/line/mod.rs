//! The statsd line grammar: `&[u8]` in, borrowed samples out.
//!
//! Parsing never allocates for the common case: names, values and tag sections are slices
//! of the receive buffer. Tags are decoded lazily ([`Tags::decode`]) because the hot path
//! resolves a series from the raw bytes ([`Sample::identity`]) and only decodes tags the
//! first time it sees a series.
//!
//! The behaviour (split order, error reasons, sampling, tag dialects) follows current
//! statsd_exporter's `pkg/line/line.go`; see §1 of the reference notes.

use std::borrow::Cow;

/// Which tag dialects are recognised. The four of statsd_exporter are on by default, as there
/// (`--[no-]statsd.parse-{dogstatsd,influxdb,librato,signalfx}-tags`); Graphite tags, which
/// statsd_exporter does not read, are off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dialects {
    /// `name:1|c|#k:v,k2:v2`
    pub dogstatsd: bool,
    /// `name,k=v,k2=v2:1|c`
    pub influxdb: bool,
    /// `name#k=v,k2=v2:1|c`
    pub librato: bool,
    /// `name[k=v,k2=v2]:1|c`
    pub signalfx: bool,
    /// `name;k=v;k2=v2:1|c`, Graphite's tag format, which Envoy's `graphite_statsd` sink
    /// writes. Off by default: statsd_exporter takes such a name whole.
    pub graphite: bool,
    /// The DogStatsD tag section runs to the end of the line, so tag values may contain `|`.
    /// Off by default (statsd_exporter splits on every `|`); the Envoy profile turns it on
    /// because Envoy's `dog_statsd` sink always writes tags last and Istio cluster names
    /// (`outbound|9080|v1|reviews...`) contain `|`.
    pub dogstatsd_tags_last: bool,
}

impl Dialects {
    /// Every dialect off: names are taken whole and `|#` sections ignored.
    pub const NONE: Dialects = Dialects {
        dogstatsd: false,
        influxdb: false,
        librato: false,
        signalfx: false,
        graphite: false,
        dogstatsd_tags_last: false,
    };
}

impl Default for Dialects {
    fn default() -> Self {
        Dialects {
            dogstatsd: true,
            influxdb: true,
            librato: true,
            signalfx: true,
            graphite: false,
            dogstatsd_tags_last: false,
        }
    }
}

/// The event kind a sample turns into, which selects the Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// `c`
    Counter,
    /// `g`
    Gauge,
    /// `ms`, `h`, `d`: observed into a summary or histogram.
    Observer,
}

impl EventKind {
    /// The label value statsd_exporter uses for this kind in its self-metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Counter => "counter",
            EventKind::Gauge => "gauge",
            EventKind::Observer => "observer",
        }
    }
}

/// The statsd type letter of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatType {
    /// `c`
    Counter,
    /// `g`
    Gauge,
    /// `ms`: milliseconds, converted to seconds unless a profile asks for raw values.
    Timer,
    /// `h`
    Histogram,
    /// `d`
    Distribution,
}

impl StatType {
    /// The event kind of this type.
    pub fn kind(self) -> EventKind {
        match self {
            StatType::Counter => EventKind::Counter,
            StatType::Gauge => EventKind::Gauge,
            StatType::Timer | StatType::Histogram | StatType::Distribution => EventKind::Observer,
        }
    }
}

/// Why a line or a sample was rejected. [`SampleError::reason`] is both the `reason` label
/// value of `statsd_exporter_sample_errors_total` and the error's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleError {
    /// No `:`, empty name, or not valid UTF-8.
    MalformedLine,
    /// Name-embedded tags and DogStatsD tags on one line.
    MixedTaggingStyles,
    /// Fewer than two `|`-separated parts after the colon.
    NotEnoughPartsAfterColon,
    /// DogStatsD extended aggregation (`a:1:2|x`) on a type other than ms/h/d.
    InvalidExtendedAggregateType,
    /// Too few or too many components, or an empty one.
    MalformedComponent,
    /// The value is not a float.
    MalformedValue,
    /// A bad `@rate`, or an unknown component.
    InvalidSampleFactor,
    /// `|c` without `:id`, or with an empty id.
    MalformedContainerId,
    /// An unknown or unsupported type letter (`s` included).
    IllegalEvent,
}

impl SampleError {
    /// Every reason, in a fixed order; `index()` gives a reason's position here.
    pub const ALL: [SampleError; 9] = [
        SampleError::MalformedLine,
        SampleError::MixedTaggingStyles,
        SampleError::NotEnoughPartsAfterColon,
        SampleError::InvalidExtendedAggregateType,
        SampleError::MalformedComponent,
        SampleError::MalformedValue,
        SampleError::InvalidSampleFactor,
        SampleError::MalformedContainerId,
        SampleError::IllegalEvent,
    ];

    /// Position in [`SampleError::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The `reason` label value.
    pub fn reason(self) -> &'static str {
        match self {
            SampleError::MalformedLine => "malformed_line",
            SampleError::MixedTaggingStyles => "mixed_tagging_styles",
            SampleError::NotEnoughPartsAfterColon => "not_enough_parts_after_colon",
            SampleError::InvalidExtendedAggregateType => "invalid_extended_aggregate_type",
            SampleError::MalformedComponent => "malformed_component",
            SampleError::MalformedValue => "malformed_value",
            SampleError::InvalidSampleFactor => "invalid_sample_factor",
            SampleError::MalformedContainerId => "malformed_container_id",
            SampleError::IllegalEvent => "illegal_event",
        }
    }
}

impl std::fmt::Display for SampleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for SampleError {}

/// Counters a parse produces, accumulated by the caller over a batch and published once
/// (so the hot path touches no shared cache line per line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParseCounters {
    /// `statsd_exporter_samples_total`: every sample attempted, valid or not.
    pub samples: u64,
    /// `statsd_exporter_sample_errors_total{reason}`, indexed by [`SampleError::index`].
    pub errors: [u64; 9],
    /// Tag errors that no emitted [`Sample`] carries to [`Tags::decode`]: name tags of a line
    /// that yielded no sample (`not_enough_parts_after_colon`, `mixed_tagging_styles`, ...)
    /// and DogStatsD tags of a sample dropped after its tags were read. statsd_exporter
    /// counts these too, so `statsd_exporter_tag_errors_total` = this + the
    /// [`TagCounts::errors`] of every emitted sample.
    pub tag_errors: u64,
}

impl ParseCounters {
    /// Records one error.
    pub fn record(&mut self, err: SampleError) {
        self.errors[err.index()] += 1;
    }
}

/// One valid sample of a line. Everything borrows the line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// The metric name with any name-embedded tag block removed. Borrowed unless a SignalFx
    /// block sat in the middle of the name (`foo.[a=b]test` → `foo.test`).
    pub metric: Cow<'a, str>,
    /// The statsd type letter.
    pub stat_type: StatType,
    /// The value as sent, divided by the sample rate for counters. Timer values are still in
    /// milliseconds: see [`Sample::value_in_base_unit`].
    pub value: f64,
    /// The value text began with `+` or `-` (relative gauge update).
    pub relative: bool,
    /// How many observations this sample stands for: `int(1/rate)` for observers sent with
    /// `@rate`, else 1. Never 0: an observer whose rate gives no observation (above 1,
    /// negative, NaN, or so small that `1/rate` leaves int64, where Go on amd64 gets 0) is
    /// not emitted but counted as `invalid_sample_factor`. Counts above `u32::MAX` saturate,
    /// so callers should observe a large repeat as one weighted observation rather than
    /// loop.
    pub repeat: u32,
    /// The sample rate the value was scaled by: the last `@rate` component after Go's
    /// rules (a bad rate falls back, 0 means 1), or 1 without one. Replaying a cached line
    /// shape with a new value needs it (see [`split_for_replay`]).
    pub rate: f64,
    /// The tags of this sample, decoded on demand.
    pub tags: Tags<'a>,
}

impl Sample<'_> {
    /// The event kind.
    pub fn kind(&self) -> EventKind {
        self.stat_type.kind()
    }

    /// The value statsd_exporter observes: timers (`ms`) in seconds, everything else as is.
    pub fn value_in_base_unit(&self) -> f64 {
        if self.stat_type == StatType::Timer {
            self.value / 1000.0
        } else {
            self.value
        }
    }

    /// The raw byte sections that determine this sample's series, apart from its type:
    /// the whole name section (name-embedded tags included), the DogStatsD tag section, and
    /// the container id. Two samples with equal identity and kind decode to the same name
    /// and labels.
    pub fn identity(&self) -> [&[u8]; 3] {
        [
            self.tags.name_section.as_bytes(),
            self.tags.dogstatsd.unwrap_or("").as_bytes(),
            self.tags.container_id.unwrap_or("").as_bytes(),
        ]
    }
}

/// What [`Tags::decode`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TagCounts {
    /// Valid tags passed to the callback (duplicates included), container id included.
    pub labels: u32,
    /// `statsd_exporter_tag_errors_total` increments: empty tags, missing separators, empty
    /// keys or values, a lone SignalFx bracket.
    pub errors: u32,
}

/// The tag sections of a sample, still raw. The dialect flags in force at parse time are
/// kept so decoding agrees with the parse.
#[derive(Clone, Debug, PartialEq)]
pub struct Tags<'a> {
    /// The whole name section of the line (before the first `:`), with embedded tags.
    pub name_section: &'a str,
    /// The DogStatsD tag section after `|#`, if present and the dialect is on.
    pub dogstatsd: Option<&'a str>,
    /// The DogStatsD container id after `|c:`.
    pub container_id: Option<&'a str>,
    /// The dialects that were on at parse time.
    pub dialects: Dialects,
}

impl<'a> Tags<'a> {
    /// Decodes every tag in a fixed order (name-embedded tags, then DogStatsD tags, then
    /// `container_id`), calling `f(key, value)` for each valid one. Keys are escaped with
    /// [`crate::mapping::naming::escape_metric_name`]; values are passed as sent. A later duplicate key
    /// must overwrite an earlier one: that is the caller's job.
    pub fn decode(&self, f: impl FnMut(Cow<'a, str>, &'a str)) -> TagCounts {
        tags::decode(self, f)
    }

    /// [`decode`](Self::decode) for at most `max_tags` tags (valid or not, the container id
    /// included), calling `f(raw_key, escaped_key, value)` so callers can tell a repeated tag
    /// from two tags whose names escape alike. `None` as soon as the sample carries more
    /// than `max_tags`: no tag beyond the limit is looked at, so a line with thousands of
    /// tags costs no more than one at the limit.
    pub fn decode_within(
        &self,
        max_tags: usize,
        f: impl FnMut(&'a str, Cow<'a, str>, &'a str),
    ) -> Option<TagCounts> {
        tags::decode_within(self, max_tags, f)
    }

    /// Whether the tags came apart from the metric name in a dialect that carries a
    /// sender's own tag extraction: a DogStatsD section, or a Graphite tag list (`name;k=v`).
    /// Envoy's `dog_statsd` and `graphite_statsd` sinks send the tag-extracted name this
    /// way, so the Envoy profile must not extract tags from it again.
    pub fn extracted_by_sender(&self) -> bool {
        self.dogstatsd.is_some() || tags::is_graphite(self.name_section, &self.dialects)
    }

    /// Every valid tag as [`decode`](Self::decode) finds them and in its order, calling
    /// `f(key, value)` with the key as sent (not escaped), so nothing is allocated. For callers
    /// that need the tags only to tell series apart, such as the relay choosing a target.
    pub fn for_each_raw(&self, f: impl FnMut(&'a str, &'a str)) -> TagCounts {
        tags::walk(self, f)
    }
}

mod float;
mod grammar;
mod tags;

/// Parses one line (no trailing newline), calling `on_sample` for each valid sample and
/// recording samples and errors in `counters`. Empty lines yield nothing.
///
/// Nothing is allocated unless a SignalFx tag block sits in the middle of the name
/// (`foo.[a=b]test`), whose metric name must be joined.
pub fn parse_line<'a>(
    line: &'a [u8],
    dialects: &Dialects,
    counters: &mut ParseCounters,
    on_sample: impl FnMut(Sample<'a>),
) {
    grammar::parse_line(line, dialects, counters, on_sample)
}

/// A line cut at its first `:` and the first `|` after it, for replaying a cached parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayParts<'a> {
    /// Everything before the first `:`.
    pub name_section: &'a [u8],
    /// The value text between `:` and the first `|`; it holds no `:`.
    pub value: &'a [u8],
    /// Everything from that first `|` on: type, rate, tags, container id.
    pub tail: &'a [u8],
}

/// Cuts a single-value line for replay, or `None` when it has no `:`, no `|`, or several
/// values (a `:` in the value part).
///
/// The invariant that makes replay sound: two lines with equal `name_section` and `tail`,
/// each with a single value, parse to the same samples, errors and tags except for
/// `value` and `relative`, provided both values parse; and `value` is then
/// [`parse_value`] of the value text, divided by [`Sample::rate`] for counters when the
/// tail holds at most one `@` component. The whole line is valid UTF-8 when the cached
/// line was and the new value parses (a parsed value is ASCII).
pub fn split_for_replay(line: &[u8]) -> Option<ReplayParts<'_>> {
    grammar::replay_parts(line)
}

/// Parses a value as the grammar does (Go's `strconv.ParseFloat`); `None` when the grammar
/// would count `malformed_value`.
pub fn parse_value(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    float::parse_go_float(text).ok()
}
