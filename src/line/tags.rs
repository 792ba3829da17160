//! Tag dialects: name-embedded (SignalFx `[k=v]`, Librato `#k=v`, InfluxDB `,k=v`) and
//! DogStatsD (`|#k:v`), walked in place without allocating.
//!
//! The grammar uses [`split_name`] and [`for_each_tag`] to cut the metric name and to decide
//! `mixed_tagging_styles`; [`decode`] runs the same walk again when the caller wants labels,
//! so a parse and a later decode can never disagree.

use super::{Dialects, TagCounts, Tags};
use crate::mapping::naming::escape_metric_name;
use std::borrow::Cow;

/// The name section cut into the metric and its embedded tag list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct NameSplit<'a> {
    /// The metric is `head + tail`; `tail` is non-empty only when a SignalFx block sat in
    /// the middle of the name.
    pub(super) head: &'a str,
    pub(super) tail: &'a str,
    /// The `k=v,...` list, if the name carried one.
    pub(super) list: Option<&'a str>,
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
            add(&mut counts, for_each_tag(list, b'=', false, |_, _| {}));
        }
        counts
    }
}

/// statsd_exporter's `parseNameAndTags`: SignalFx first (first `[` and first `]`), else the
/// first `#` (Librato) or `,` (InfluxDB) in the name, each only if its dialect is on.
pub(super) fn split_name<'a>(name: &'a str, dialects: &Dialects) -> NameSplit<'a> {
    let whole = NameSplit {
        head: name,
        tail: "",
        list: None,
        bad_bracket: false,
    };
    let bytes = name.as_bytes();
    if dialects.signalfx {
        // memchr: names are scanned once per line on the grammar's path, so SIMD matters.
        let open = memchr::memchr(b'[', bytes);
        let close = memchr::memchr(b']', bytes);
        match (open, close) {
            (None, None) => {}
            (Some(open), Some(close)) if open < close => {
                return NameSplit {
                    head: &name[..open],
                    tail: &name[close + 1..],
                    list: Some(&name[open + 1..close]),
                    bad_bracket: false,
                };
            }
            // statsd_exporter would slice `name[open+1:close]` out of bounds and panic on a
            // reversed pair; treat it like a lone bracket instead.
            _ => {
                return NameSplit {
                    bad_bracket: true,
                    ..whole
                };
            }
        }
    }
    let start = match (dialects.librato, dialects.influxdb) {
        (true, true) => memchr::memchr2(b'#', b',', bytes),
        (true, false) => memchr::memchr(b'#', bytes),
        (false, true) => memchr::memchr(b',', bytes),
        (false, false) => None,
    };
    match start {
        Some(i) => NameSplit {
            head: &name[..i],
            list: Some(&name[i + 1..]),
            ..whole
        },
        None => whole,
    }
}

/// Walks a `,`-separated tag list as statsd_exporter's `parseNameTags` and
/// `ParseDogStatsDTags` do, calling `f(key, value)` for each valid tag (key not yet escaped).
/// A trailing empty segment is not a tag; any other empty tag, a tag without `sep`, or one
/// with an empty key or value is an error. `strip_hash` drops one leading `#` per tag
/// (the DogStatsD PHP-client form `#k:v,#k2:v2`).
pub(super) fn for_each_tag<'a>(
    list: &'a str,
    sep: u8,
    strip_hash: bool,
    f: impl FnMut(&'a str, &'a str),
) -> TagCounts {
    let mut unlimited = usize::MAX;
    for_each_tag_within(list, sep, strip_hash, &mut unlimited, f).unwrap_or_default()
}

/// [`for_each_tag`] that spends one unit of `budget` per tag, valid or not, and stops with
/// `None` at the first tag it cannot pay for: the rest of the list is never looked at.
fn for_each_tag_within<'a>(
    list: &'a str,
    sep: u8,
    strip_hash: bool,
    budget: &mut usize,
    mut f: impl FnMut(&'a str, &'a str),
) -> Option<TagCounts> {
    let mut counts = TagCounts::default();
    if list.is_empty() {
        return Some(counts);
    }
    let body = list.strip_suffix(',').unwrap_or(list);
    for tag in body.split(',') {
        *budget = budget.checked_sub(1)?;
        let tag = if strip_hash {
            tag.strip_prefix('#').unwrap_or(tag)
        } else {
            tag
        };
        match tag.bytes().position(|b| b == sep) {
            Some(i) if i > 0 && i + 1 < tag.len() => {
                f(&tag[..i], &tag[i + 1..]);
                counts.labels += 1;
            }
            _ => counts.errors += 1,
        }
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
    let mut budget = max_tags;
    let split = split_name(tags.name_section, &tags.dialects);
    let mut counts = TagCounts {
        labels: 0,
        errors: u32::from(split.bad_bracket),
    };
    if let Some(list) = split.list {
        let name_tags = for_each_tag_within(list, b'=', false, &mut budget, |k, v| {
            f(k, escape_metric_name(k), v)
        })?;
        add(&mut counts, name_tags);
    }

    if let Some(section) = tags.dogstatsd {
        let mut dog = |list: &'a str, budget: &mut usize| {
            for_each_tag_within(list, b':', true, budget, |k, v| {
                f(k, escape_metric_name(k), v)
            })
        };
        if tags.dialects.dogstatsd_tags_last {
            add(&mut counts, dog(section, &mut budget)?);
        } else {
            // The section runs from the first `#` component to the end of the last one; the
            // components in between (`@rate`, `c:id`, `T...`) are skipped here.
            for (i, piece) in section.split('|').enumerate() {
                let list = if i == 0 {
                    Some(piece)
                } else {
                    piece.strip_prefix('#')
                };
                if let Some(list) = list {
                    add(&mut counts, dog(list, &mut budget)?);
                }
            }
        }
    }
    // Always last, whatever its place on the wire: the decode must be a function of
    // `Sample::identity`, which does not record where the container id sat. (Go's label map
    // lets whichever of `c:id` and a `#container_id:` tag comes later win.)
    if let Some(id) = tags.container_id {
        budget.checked_sub(1)?;
        f("container_id", Cow::Borrowed("container_id"), id);
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
        for name in ["foo#a=b", "foo,a=b", "foo[a=b]x", "[x"] {
            let s = split_name(name, &none);
            assert_eq!(s.metric(), name);
            assert_eq!(s.list, None);
            assert!(!s.bad_bracket);
        }
    }

    #[test]
    fn tag_list_errors_match_statsd_exporter() {
        let walk = |list: &str, sep: u8, hash: bool| {
            let mut n = 0;
            let c = for_each_tag(list, sep, hash, |_, _| n += 1);
            assert_eq!(c.labels, n);
            (c.labels, c.errors)
        };
        assert_eq!(walk("", b':', true), (0, 0));
        assert_eq!(
            walk("a:b,,", b':', true),
            (1, 1),
            "trailing empty is skipped"
        );
        assert_eq!(walk(",", b':', true), (0, 1));
        assert_eq!(walk("a", b':', true), (0, 1), "missing separator");
        assert_eq!(
            walk(":b,a:", b':', true),
            (0, 2),
            "empty key and empty value"
        );
        assert_eq!(walk("#", b':', true), (0, 1));
        assert_eq!(walk("#a:b,#c:d", b':', true), (2, 0));
        assert_eq!(
            walk("#a=b", b'=', false),
            (1, 0),
            "names keep the # in the key"
        );
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
