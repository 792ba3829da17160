//! Tag dialects: name-embedded (Graphite `;k=v`, SignalFx `[k=v]`, Librato `#k=v`, InfluxDB
//! `,k=v`) and DogStatsD (`|#k:v`), as `nom` productions walked in place without allocating:
//!
//! ```text
//! name_section   = graphite_list | signalfx_block | name_tag_list | metric ; first that applies
//! graphite_list  = metric ";" tag_list                            ; first `;`, tags split on `;`
//! signalfx_block = head "[" tag_list "]" tail                     ; first `[`, first `]`
//! name_tag_list  = metric ("#" | ",") tag_list                    ; first `#` or `,`
//! tag_list       = *(tag between) [tag]                           ; a trailing `between` adds none
//! tag            = ["#"] key assign value                         ; see `TagSyntax`
//! ```
//!
//! The grammar uses [`split_name`] and [`for_each_tag`] to cut the metric name and to decide
//! `mixed_tagging_styles`; [`decode`] runs the same walk again when the caller wants labels,
//! so a parse and a later decode can never disagree.

use super::grammar::{PResult, split_each, text_of};
use super::{Dialects, TagCounts, Tags};
use crate::mapping::naming::escape_metric_name;
use nom::Parser;
use nom::bytes::complete::{take, take_till, take_till1, take_until};
use nom::character::complete::char;
use nom::combinator::{iterator, opt, rest, verify};
use nom::sequence::{delimited, preceded, separated_pair, terminated};
use std::borrow::Cow;

/// How a dialect writes a tag list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TagSyntax {
    /// The byte between two tags.
    between: u8,
    /// The byte between a tag's key and its value; the first one splits, so a value may
    /// hold more.
    assign: u8,
    /// Each tag may start with a `#`, which is dropped: DogStatsD's PHP-client form
    /// (`#k:v,#k2:v2`).
    strip_hash: bool,
}

/// `|#k:v,k2:v2`.
pub(super) const DOGSTATSD: TagSyntax = TagSyntax {
    between: b',',
    assign: b':',
    strip_hash: true,
};

/// InfluxDB's `,k=v,k2=v2`, Librato's `#k=v,k2=v2` and SignalFx's `[k=v,k2=v2]`: a `#` is
/// part of the key.
const NAME_TAGS: TagSyntax = TagSyntax {
    between: b',',
    assign: b'=',
    strip_hash: false,
};

/// Graphite's `;k=v;k2=v2` (graphite.readthedocs.io, "Graphite Tag Support"), what Envoy's
/// `graphite_statsd` sink writes. Graphite forbids `=` in a tag name but not in a value, so
/// the first `=` splits. Graphite also forbids `!` and `^` in names and a leading `~` in
/// values, for its query language; Prometheus has no such need, so they are kept (and a key's
/// `!` or `^` escaped like any other byte), as the other dialects keep whatever they are sent.
const GRAPHITE: TagSyntax = TagSyntax {
    between: b';',
    assign: b'=',
    strip_hash: false,
};

/// The name section cut into the metric and its embedded tag list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct NameSplit<'a> {
    /// The metric is `head + tail`; `tail` is non-empty only when a SignalFx block sat in
    /// the middle of the name.
    pub(super) head: &'a str,
    pub(super) tail: &'a str,
    /// The `k=v,...` (or Graphite `k=v;...`) list, if the name carried one.
    pub(super) list: Option<&'a str>,
    /// How `list` is written.
    syntax: TagSyntax,
    /// A lone (or reversed) SignalFx bracket: one tag error, and the name is kept whole.
    pub(super) bad_bracket: bool,
}

impl<'a> NameSplit<'a> {
    /// The metric name; owned only for a mid-name SignalFx block.
    pub(super) fn metric(&self) -> Cow<'a, str> {
        match (self.head.is_empty(), self.tail.is_empty()) {
            (_, true) => Cow::Borrowed(self.head),
            (true, false) => Cow::Borrowed(self.tail),
            (false, false) => Cow::Owned([self.head, self.tail].concat()),
        }
    }

    /// Counts the name tags without handing them out.
    pub(super) fn counts(&self) -> TagCounts {
        let mut counts = TagCounts {
            labels: 0,
            errors: u32::from(self.bad_bracket),
        };
        if let Some(list) = self.list {
            add(&mut counts, for_each_tag(list, self.syntax, |_, _| {}));
        }
        counts
    }
}

/// `take_till` for either of two delimiters, searched with memchr: names run to tens of bytes,
/// and each is scanned once per line on the grammar's path, so SIMD pays. (`a == b` searches
/// for one delimiter.)
fn till_either<'a>(a: u8, b: u8) -> impl Fn(&'a [u8]) -> PResult<'a, &'a [u8]> {
    move |input: &'a [u8]| {
        let end = memchr::memchr2(a, b, input).unwrap_or(input.len());
        let (before, from) = input.split_at(end);
        Ok((from, before))
    }
}

/// Where a name's SignalFx brackets put its parts.
enum Brackets<'a> {
    /// Neither `[` nor `]`.
    None,
    /// `head [ list ] tail`.
    Block(&'a [u8], &'a [u8], &'a [u8]),
    /// A lone bracket, or a `]` before the first `[`.
    Bad,
}

/// `signalfx_block = head "[" tag_list "]" tail`, cut as statsd_exporter does at the first `[`
/// and the first `]` of the name, wherever they are (`foo.[a=b]test` is metric `foo.test`).
fn signalfx_block(name: &[u8]) -> Brackets<'_> {
    let Ok((from_bracket, head)) = till_either(b'[', b']')(name) else {
        return Brackets::None;
    };
    if from_bracket.is_empty() {
        return Brackets::None;
    }
    let block: PResult<'_, (&[u8], &[u8])> =
        (delimited(char('['), take_until("]"), char(']')), rest).parse(from_bracket);
    match block {
        Ok((_, (list, tail))) => Brackets::Block(head, list, tail),
        // statsd_exporter would slice `name[open+1:close]` out of bounds and panic on a
        // reversed pair; it is treated like a lone bracket instead.
        Err(_) => Brackets::Bad,
    }
}

/// `name_tag_list = metric ("#" | ",") tag_list`: the list starts at the first `#` (Librato)
/// or `,` (InfluxDB), of the dialects that are on.
fn name_tag_list<'a>(name: &'a [u8], dialects: &Dialects) -> Option<(&'a [u8], &'a [u8])> {
    let (a, b) = match (dialects.librato, dialects.influxdb) {
        (true, true) => (b'#', b','),
        (true, false) => (b'#', b'#'),
        (false, true) => (b',', b','),
        (false, false) => return None,
    };
    let parsed: PResult<'_, (&[u8], &[u8])> =
        separated_pair(till_either(a, b), take(1usize), rest).parse(name);
    parsed.ok().map(|(_, cut)| cut)
}

/// `graphite_list = metric ";" tag_list`: the list starts at the first `;`.
fn graphite_list(name: &[u8]) -> Option<(&[u8], &[u8])> {
    let parsed: PResult<'_, (&[u8], &[u8])> =
        separated_pair(till_either(b';', b';'), take(1usize), rest).parse(name);
    parsed.ok().map(|(_, cut)| cut)
}

/// Whether [`split_name`] takes `name` for a Graphite name: the dialect is on and the name
/// holds a `;`.
pub(super) fn is_graphite(name: &str, dialects: &Dialects) -> bool {
    dialects.graphite && memchr::memchr(b';', name.as_bytes()).is_some()
}

/// statsd_exporter's `parseNameAndTags`: `name_section = signalfx_block | name_tag_list |
/// metric`, SignalFx first, each only if its dialect is on; and before them all Graphite's
/// `graphite_list`, which statsd_exporter does not have. Graphite goes first because its tag
/// values may hold the other dialects' delimiters: Envoy's IPv6 listener address `[__]_15001`
/// is a Graphite tag value, not a SignalFx block, and no other dialect writes a `;`.
pub(super) fn split_name<'a>(name: &'a str, dialects: &Dialects) -> NameSplit<'a> {
    let whole = NameSplit {
        head: name,
        tail: "",
        list: None,
        syntax: NAME_TAGS,
        bad_bracket: false,
    };
    let bytes = name.as_bytes();
    if dialects.graphite
        && let Some((head, list)) = graphite_list(bytes)
    {
        return NameSplit {
            head: text_of(name, head),
            list: Some(text_of(name, list)),
            syntax: GRAPHITE,
            ..whole
        };
    }
    if dialects.signalfx {
        match signalfx_block(bytes) {
            Brackets::None => {}
            Brackets::Block(head, list, tail) => {
                return NameSplit {
                    head: text_of(name, head),
                    tail: text_of(name, tail),
                    list: Some(text_of(name, list)),
                    ..whole
                };
            }
            Brackets::Bad => {
                return NameSplit {
                    bad_bracket: true,
                    ..whole
                };
            }
        }
    }
    match name_tag_list(bytes, dialects) {
        Some((head, list)) => NameSplit {
            head: text_of(name, head),
            list: Some(text_of(name, list)),
            ..whole
        },
        None => whole,
    }
}

/// `tag = ["#"] key assign value`: key and value non-empty, split at the first `assign` (so
/// DogStatsD's `k:a:b` is `k` = `a:b`). The `#` is stripped once per tag only when the syntax
/// says so.
fn tag(piece: &[u8], syntax: TagSyntax) -> Option<(&[u8], &[u8])> {
    let sep = syntax.assign;
    let piece = if syntax.strip_hash {
        let stripped: PResult<'_, Option<char>> = opt(char('#')).parse(piece);
        stripped.map_or(piece, |(after, _)| after)
    } else {
        piece
    };
    let parsed: PResult<'_, (&[u8], &[u8])> = separated_pair(
        take_till1(|b| b == sep),
        char(char::from(sep)),
        verify(rest, |value: &[u8]| !value.is_empty()),
    )
    .parse(piece);
    parsed.ok().map(|(_, pair)| pair)
}

/// Walks `tag_list = *(tag between) [tag]` as statsd_exporter's `parseNameTags` and
/// `ParseDogStatsDTags` do, calling `f(key, value)` for each valid tag (key not yet escaped).
/// Every piece ended by a `between` byte is a tag, and the last piece only if it is not empty
/// (Go's `lastTagEndIndex < len`), so a trailing `,` adds no tag but `,,` adds an empty one.
/// An empty tag, a tag without its `assign` byte, or one with an empty key or value is an
/// error. Graphite lists (`;`) follow the same rules, so every dialect counts errors alike.
pub(super) fn for_each_tag<'a>(
    list: &'a str,
    syntax: TagSyntax,
    f: impl FnMut(&'a str, &'a str),
) -> TagCounts {
    let mut unlimited = usize::MAX;
    for_each_tag_within(list, syntax, &mut unlimited, f).unwrap_or_default()
}

/// [`for_each_tag`] that spends one unit of `budget` per tag, valid or not, and stops with
/// `None` at the first tag it cannot pay for: the rest of the list is never looked at.
fn for_each_tag_within<'a>(
    list: &'a str,
    syntax: TagSyntax,
    budget: &mut usize,
    mut f: impl FnMut(&'a str, &'a str),
) -> Option<TagCounts> {
    let mut counts = TagCounts::default();
    let mut one = |piece: &'a [u8], budget: &mut usize| -> Option<()> {
        *budget = budget.checked_sub(1)?;
        match tag(piece, syntax) {
            Some((key, value)) => {
                f(text_of(list, key), text_of(list, value));
                counts.labels += 1;
            }
            None => counts.errors += 1,
        }
        Some(())
    };
    let between = syntax.between;
    let mut pieces = iterator(
        list.as_bytes(),
        terminated(take_till(move |b| b == between), char(char::from(between))),
    );
    for piece in &mut pieces {
        one(piece, budget)?;
    }
    let last: PResult<'_, ()> = pieces.finish();
    if let Ok((last, ())) = last
        && !last.is_empty()
    {
        one(last, budget)?;
    }
    Some(counts)
}

fn add(total: &mut TagCounts, more: TagCounts) {
    total.labels += more.labels;
    total.errors += more.errors;
}

pub(super) fn decode<'a>(tags: &Tags<'a>, mut f: impl FnMut(Cow<'a, str>, &'a str)) -> TagCounts {
    decode_within(tags, usize::MAX, |_, k, v| f(k, v)).unwrap_or_default()
}

/// Decodes at most `max_tags` tags (valid or not, the container id included), calling
/// `f(raw_key, escaped_key, value)` for each valid one; `None` as soon as there are more,
/// having looked at no tag past the limit.
pub(super) fn decode_within<'a>(
    tags: &Tags<'a>,
    max_tags: usize,
    mut f: impl FnMut(&'a str, Cow<'a, str>, &'a str),
) -> Option<TagCounts> {
    walk_within(tags, max_tags, |k, v| f(k, escape_metric_name(k), v))
}

/// Every valid tag as sent, `f(raw_key, value)`, by [`decode`]'s walk and in its order.
pub(super) fn walk<'a>(tags: &Tags<'a>, f: impl FnMut(&'a str, &'a str)) -> TagCounts {
    walk_within(tags, usize::MAX, f).unwrap_or_default()
}

/// The walk behind [`decode_within`] and [`walk`]: keys are handed out as sent, so it
/// allocates nothing.
fn walk_within<'a>(
    tags: &Tags<'a>,
    max_tags: usize,
    mut f: impl FnMut(&'a str, &'a str),
) -> Option<TagCounts> {
    let mut budget = max_tags;
    let split = split_name(tags.name_section, &tags.dialects);
    let mut counts = TagCounts {
        labels: 0,
        errors: u32::from(split.bad_bracket),
    };
    if let Some(list) = split.list {
        let name_tags = for_each_tag_within(list, split.syntax, &mut budget, &mut f)?;
        add(&mut counts, name_tags);
    }

    if let Some(section) = tags.dogstatsd {
        let mut dog = |list: &'a str, budget: &mut usize| {
            for_each_tag_within(list, DOGSTATSD, budget, &mut f)
        };
        if tags.dialects.dogstatsd_tags_last {
            add(&mut counts, dog(section, &mut budget)?);
        } else {
            // The section runs from the first `#` component (its `#` already cut) to the end
            // of the last one; `tag_list *("|" ("#" tag_list | component))`, where the
            // components in between (`@rate`, `c:id`, `T...`) are skipped here.
            let mut first = true;
            let mut over = false;
            split_each(section.as_bytes(), b'|', |piece| {
                if over {
                    return;
                }
                let list: PResult<'_, &[u8]> = if first {
                    Ok((b"", piece))
                } else {
                    preceded(char('#'), rest).parse(piece)
                };
                first = false;
                if let Ok((_, list)) = list {
                    match dog(text_of(section, list), &mut budget) {
                        Some(more) => add(&mut counts, more),
                        None => over = true,
                    }
                }
            });
            if over {
                return None;
            }
        }
    }
    // Always last, whatever its place on the wire: the decode must be a function of
    // `Sample::identity`, which does not record where the container id sat. (Go's label map
    // lets whichever of `c:id` and a `#container_id:` tag comes later win.)
    if let Some(id) = tags.container_id {
        budget.checked_sub(1)?;
        f("container_id", id);
        counts.labels += 1;
    }
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Dialects {
        Dialects::default()
    }

    fn collect(tags: &Tags<'_>) -> (Vec<(String, String)>, TagCounts) {
        let mut out = Vec::new();
        let counts = tags.decode(|k, v| out.push((k.into_owned(), v.to_owned())));
        (out, counts)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tags<'a>(name: &'a str, dog: Option<&'a str>, container: Option<&'a str>) -> Tags<'a> {
        Tags {
            name_section: name,
            dogstatsd: dog,
            container_id: container,
            dialects: all(),
        }
    }

    #[test]
    fn signalfx_block_anywhere_in_the_name() {
        let s = split_name("foo.[a=b]test", &all());
        assert_eq!(s.metric(), "foo.test");
        assert!(matches!(s.metric(), Cow::Owned(_)));
        assert_eq!(s.list, Some("a=b"));
        assert!(matches!(
            split_name("[a=b]foo", &all()).metric(),
            Cow::Borrowed("foo")
        ));
        assert!(matches!(
            split_name("foo[a=b]", &all()).metric(),
            Cow::Borrowed("foo")
        ));
    }

    #[test]
    fn lone_or_reversed_bracket_is_one_error_and_keeps_the_name() {
        for name in ["[a=b,c=dfoo", "a=b]foo", "foo]a=b[", "x,[y"] {
            let s = split_name(name, &all());
            assert!(s.bad_bracket, "{name}");
            assert_eq!(s.metric(), name);
            assert_eq!(
                s.counts(),
                TagCounts {
                    labels: 0,
                    errors: 1
                }
            );
        }
    }

    #[test]
    fn first_hash_or_comma_starts_the_list() {
        let s = split_name("foo#a=b,c=d", &all());
        assert_eq!((s.head, s.list), ("foo", Some("a=b,c=d")));
        let s = split_name("foo,a=b#c=d", &all());
        assert_eq!((s.head, s.list), ("foo", Some("a=b#c=d")));
        let librato_only = Dialects {
            influxdb: false,
            ..all()
        };
        let s = split_name("foo,a=b#c=d", &librato_only);
        assert_eq!((s.head, s.list), ("foo,a=b", Some("c=d")));
    }

    #[test]
    fn dialects_off_leave_the_name_alone() {
        let none = Dialects::NONE;
        for name in ["foo#a=b", "foo,a=b", "foo[a=b]x", "[x", "foo;a=b"] {
            let s = split_name(name, &none);
            assert_eq!(s.metric(), name);
            assert_eq!(s.list, None);
            assert!(!s.bad_bracket);
        }
        // Graphite is off by default, as statsd_exporter does not read it.
        let s = split_name("foo;a=b", &all());
        assert_eq!((s.metric(), s.list), (Cow::Borrowed("foo;a=b"), None));
        assert!(!is_graphite("foo;a=b", &all()));
    }

    fn graphite() -> Dialects {
        Dialects {
            graphite: true,
            ..all()
        }
    }

    #[test]
    fn graphite_list_starts_at_the_first_semicolon() {
        let s = split_name(
            "envoy.cluster.upstream_rq;envoy.cluster_name=a;x=b",
            &graphite(),
        );
        assert_eq!(
            (s.metric(), s.list),
            (
                Cow::Borrowed("envoy.cluster.upstream_rq"),
                Some("envoy.cluster_name=a;x=b")
            )
        );
        assert!(is_graphite("a;", &graphite()));
        assert!(!is_graphite("a", &graphite()));
        // Before the other name dialects: their delimiters in a Graphite name are bytes of
        // the metric or of a tag value.
        let s = split_name("listener.x;envoy.listener_address=[__]_15001", &graphite());
        assert_eq!(
            (s.head, s.tail, s.list),
            ("listener.x", "", Some("envoy.listener_address=[__]_15001"))
        );
        assert!(!s.bad_bracket);
        assert_eq!(
            s.counts(),
            TagCounts {
                labels: 1,
                errors: 0
            }
        );
        let s = split_name("foo,a=b;c=d,e#f", &graphite());
        assert_eq!((s.head, s.list), ("foo,a=b", Some("c=d,e#f")));
        // Without a `;` the other dialects apply as before.
        let s = split_name("foo[a=b]x", &graphite());
        assert_eq!(
            (s.metric(), s.list),
            (Cow::Owned("foox".into()), Some("a=b"))
        );
        let s = split_name(";a=b", &graphite());
        assert_eq!((s.metric(), s.list), (Cow::Borrowed(""), Some("a=b")));
    }

    #[test]
    fn graphite_tags_decode_with_escaped_keys() {
        let t = Tags {
            dialects: graphite(),
            ..tags("foo;envoy.cluster_name=a|b.c;1st=x=y;bad;c=3", None, None)
        };
        let (got, counts) = collect(&t);
        assert_eq!(
            got,
            pairs(&[("envoy_cluster_name", "a|b.c"), ("_1st", "x=y"), ("c", "3")])
        );
        assert_eq!(
            counts,
            TagCounts {
                labels: 3,
                errors: 1
            }
        );
        let mut calls = 0;
        assert_eq!(decode_within(&t, 3, |_, _, _| calls += 1), None);
        assert_eq!(calls, 2, "the bad tag counts against the limit");
    }

    #[test]
    fn tag_list_errors_match_statsd_exporter() {
        let walk = |list: &str, syntax: TagSyntax| {
            let mut n = 0;
            let c = for_each_tag(list, syntax, |_, _| n += 1);
            assert_eq!(c.labels, n);
            (c.labels, c.errors)
        };
        assert_eq!(walk("", DOGSTATSD), (0, 0));
        assert_eq!(
            walk("a:b,,", DOGSTATSD),
            (1, 1),
            "trailing empty is skipped"
        );
        assert_eq!(walk(",", DOGSTATSD), (0, 1));
        assert_eq!(walk("a", DOGSTATSD), (0, 1), "missing separator");
        assert_eq!(
            walk(":b,a:", DOGSTATSD),
            (0, 2),
            "empty key and empty value"
        );
        assert_eq!(walk("#", DOGSTATSD), (0, 1));
        assert_eq!(walk("#a:b,#c:d", DOGSTATSD), (2, 0));
        assert_eq!(
            walk("#a=b", NAME_TAGS),
            (1, 0),
            "names keep the # in the key"
        );
    }

    #[test]
    fn graphite_lists_count_errors_as_the_other_dialects() {
        let walk = |list: &str| {
            let mut got = Vec::new();
            let c = for_each_tag(list, GRAPHITE, |k, v| got.push(format!("{k}={v}")));
            (got, c.errors)
        };
        assert_eq!(walk("a=1;b=2"), (vec!["a=1".into(), "b=2".into()], 0));
        assert_eq!(walk(""), (vec![], 0));
        assert_eq!(
            walk("a=1;"),
            (vec!["a=1".into()], 0),
            "a trailing ; adds none"
        );
        assert_eq!(walk("a=1;;b=2").1, 1, "an empty tag");
        assert_eq!(walk("a;b=;=c").1, 3, "no =, empty value, empty key");
        // The first `=` splits: Graphite names cannot hold one, values can; `,` `#` `:` `[`
        // are value bytes like any other.
        assert_eq!(
            walk("k=a=b;x=[__]_15001,#y:z"),
            (vec!["k=a=b".into(), "x=[__]_15001,#y:z".into()], 0)
        );
        // No `#` is stripped.
        assert_eq!(walk("#k=v"), (vec!["#k=v".into()], 0));
    }

    #[test]
    fn dogstatsd_split_is_on_the_first_colon() {
        let (got, counts) = collect(&tags("foo", Some("k:a:b"), None));
        assert_eq!(got, pairs(&[("k", "a:b")]));
        assert_eq!(
            counts,
            TagCounts {
                labels: 1,
                errors: 0
            }
        );
    }

    #[test]
    fn keys_are_escaped_values_are_not() {
        let (got, _) = collect(&tags("foo", Some("09digits:0.5,tag.with--dots:a.b"), None));
        assert_eq!(
            got,
            pairs(&[("_09digits", "0.5"), ("tag_with_dots", "a.b")])
        );
    }

    #[test]
    fn decode_order_is_name_then_dogstatsd_then_container() {
        let t = Tags {
            name_section: "foo,a=1",
            dogstatsd: Some("b:2"),
            container_id: Some("c1"),
            dialects: all(),
        };
        let (got, counts) = collect(&t);
        assert_eq!(
            got,
            pairs(&[("a", "1"), ("b", "2"), ("container_id", "c1")])
        );
        assert_eq!(
            counts,
            TagCounts {
                labels: 3,
                errors: 0
            }
        );
    }

    #[test]
    fn several_tag_components_skip_what_lies_between() {
        let line = "#a:1|@0.5|c:id|#b:2";
        let t = tags("foo", Some(&line[1..]), Some(&line[12..14]));
        let (got, counts) = collect(&t);
        assert_eq!(
            got,
            pairs(&[("a", "1"), ("b", "2"), ("container_id", "id")])
        );
        assert_eq!(counts.labels, 3);
    }

    #[test]
    fn the_raw_walk_is_the_decode_with_keys_as_sent() {
        let t = tags("foo,a.b=1,,c=2", Some("d-e:3|@0.5|#f:4"), Some("id"));
        let mut raw = Vec::new();
        let counts = walk(&t, |k, v| raw.push(format!("{k}={v}")));
        assert_eq!(raw, ["a.b=1", "c=2", "d-e=3", "f=4", "container_id=id"]);
        assert_eq!(counts, collect(&t).1);
    }

    #[test]
    fn decode_within_stops_at_the_limit_and_hands_out_raw_keys() {
        let t = tags("foo,a.b=1,c=2", Some("d-e:3|@0.5|#f:4"), Some("id"));
        let mut raw = Vec::new();
        let counts = decode_within(&t, 5, |r, k, v| raw.push(format!("{r}>{k}={v}")));
        assert_eq!(
            raw,
            [
                "a.b>a_b=1",
                "c>c=2",
                "d-e>d_e=3",
                "f>f=4",
                "container_id>container_id=id"
            ]
        );
        assert_eq!(counts.map(|c| c.labels), Some(5));
        for max in 0..5 {
            let mut calls = 0;
            assert_eq!(decode_within(&t, max, |_, _, _| calls += 1), None, "{max}");
            assert!(calls <= max);
        }
        // Invalid tags count against the limit too.
        let bad = tags("foo", Some(",,,,a:1"), None);
        assert_eq!(decode_within(&bad, 4, |_, _, _| {}), None);
    }

    #[test]
    fn a_huge_tag_list_costs_only_the_limit() {
        let list = "k:v,".repeat(100_000);
        let t = tags("foo", Some(&list), None);
        let mut calls = 0;
        assert_eq!(decode_within(&t, 64, |_, _, _| calls += 1), None);
        assert_eq!(calls, 64);
    }

    #[test]
    fn tags_last_keeps_pipes_in_values() {
        let t = Tags {
            dialects: Dialects {
                dogstatsd_tags_last: true,
                ..all()
            },
            ..tags("foo", Some("cluster:outbound|9080|v1|r,code:200"), None)
        };
        let (got, _) = collect(&t);
        assert_eq!(
            got,
            pairs(&[("cluster", "outbound|9080|v1|r"), ("code", "200")])
        );
    }
}
