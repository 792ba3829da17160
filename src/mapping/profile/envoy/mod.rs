//! Envoy's stats tag extraction and Prometheus naming, for `--profile=envoy`.
//!
//! Envoy's plain statsd sink sends full stat names (`envoy.cluster.xds-grpc.upstream_rq_200`);
//! Envoy's own `/stats/prometheus` shows the same stat as
//! `envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="xds-grpc"}`.
//! [`TagExtractor`] reproduces that mapping with Envoy's (or Istio's) tag rules.
//!
//! # Algorithm (Envoy `tag_producer_impl.cc`, `tag_extractor_impl.cc`)
//! Every rule runs against the **full** name in declared order, skipped when its substring
//! prefilter is absent or when its tag name was already produced. A match yields the tag
//! value from capture group 2 (group 1 when the regex has no group 2) and marks the span of
//! group 1 for removal; the tag-extracted name is the full name with the union of those spans
//! cut out.
//!
//! # Regex dialect
//! The rules are ECMAScript `std::regex` (one is RE2): byte-wise, `.` excludes `\n` and `\r`,
//! `\d`/`\w` are ASCII, and captures follow backtracking (leftmost-first) priority. The
//! `regex` crate's `bytes::Regex` with Unicode off and CRLF mode on has exactly that
//! character model and the same leftmost-first capture semantics; what it lacks is
//! lookahead, which `rewrite_lookahead` removes with an equivalence-preserving rewrite.

mod rules;

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use regex::bytes::{Regex, RegexBuilder};

pub use rules::{RegexEngine, TagRule};

/// Envoy's default histogram bucket bounds, in milliseconds (`histogram_impl.cc`), as shown in
/// `/stats/prometheus` `le` labels.
pub const ENVOY_DEFAULT_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Which embedded tag-extraction rule set to apply (`--envoy.tag-rules`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagRuleSet {
    /// Envoy's default rules as of 2021 (`envoy-2021`), with substring prefilters; the default.
    Envoy,
    /// Envoy's default rules of the Istio 0.8/1.0 era, Envoy ~1.6-1.8 (`envoy-2018`).
    Envoy2018,
    /// Istio 1.0's bootstrap `stats_tags` (`istio-1.0-bootstrap`): labels without the `envoy.`
    /// prefix, whole Istio cluster names kept.
    Istio,
}

impl TagRuleSet {
    /// Every rule set, in the order they are documented.
    pub const ALL: [TagRuleSet; 3] = [TagRuleSet::Envoy, TagRuleSet::Envoy2018, TagRuleSet::Istio];

    /// The embedded rules, in Envoy's declared evaluation order.
    pub fn rules(self) -> &'static [TagRule] {
        match self {
            TagRuleSet::Envoy => rules::ENVOY_2021,
            TagRuleSet::Envoy2018 => rules::ENVOY_2018,
            TagRuleSet::Istio => rules::ISTIO_1_0,
        }
    }

    /// Where the rules were read from: repository, path and commit.
    pub fn source(self) -> &'static str {
        match self {
            TagRuleSet::Envoy => rules::ENVOY_2021_SOURCE,
            TagRuleSet::Envoy2018 => rules::ENVOY_2018_SOURCE,
            TagRuleSet::Istio => rules::ISTIO_1_0_SOURCE,
        }
    }

    /// The `era` column of `envoy-tag-regexes.tsv` this set reproduces.
    pub fn era(self) -> &'static str {
        match self {
            TagRuleSet::Envoy => "envoy-2021",
            TagRuleSet::Envoy2018 => "envoy-2018",
            TagRuleSet::Istio => "istio-1.0-bootstrap",
        }
    }

    /// The flag value that selects this set.
    pub fn flag_value(self) -> &'static str {
        match self {
            TagRuleSet::Envoy => "envoy",
            TagRuleSet::Envoy2018 => "envoy-2018",
            TagRuleSet::Istio => "istio",
        }
    }
}

impl fmt::Display for TagRuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag_value())
    }
}

/// A `--envoy.tag-rules` value that names no rule set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown Envoy tag rule set {0:?}: expected envoy, envoy-2018 or istio")]
pub struct UnknownTagRuleSet(pub String);

impl FromStr for TagRuleSet {
    type Err = UnknownTagRuleSet;

    fn from_str(s: &str) -> Result<TagRuleSet, UnknownTagRuleSet> {
        TagRuleSet::ALL
            .into_iter()
            .find(|set| set.flag_value() == s)
            .ok_or_else(|| UnknownTagRuleSet(s.to_owned()))
    }
}

/// A stat name after tag extraction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// The tag-extracted name, dots kept: `cluster.upstream_rq`.
    pub name: String,
    /// `(tag name as emitted, value)` pairs in extraction order, e.g.
    /// `("envoy.cluster_name", "xds-grpc")`.
    pub tags: Vec<(String, String)>,
}

/// One rule's match against a stat name, borrowing from the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagMatch<'a> {
    /// Tag name as emitted, e.g. `envoy.cluster_name`.
    pub tag_name: &'static str,
    /// The tag value (capture group 2, or group 1 when the rule has no group 2).
    pub value: &'a str,
    /// Byte range of capture group 1, which is cut out of the name.
    pub removed: Range<usize>,
}

/// A rule ready to run; built once by [`TagExtractor::new`].
#[derive(Clone, Debug)]
struct CompiledRule {
    tag_name: &'static str,
    substr_prefilter: &'static str,
    regex: Regex,
    /// Envoy takes the value from group 2 whenever the regex declares one.
    has_value_group: bool,
}

/// The rules a name with a given first token must try, in declared order: those whose regex
/// requires that token and those that require none.
#[derive(Clone, Debug)]
struct TokenRules {
    token: &'static str,
    rules: Box<[usize]>,
}

/// Applies one [`TagRuleSet`] to Envoy stat names. Compiled once; `Send + Sync`.
///
/// Rules whose regex starts with a literal token (`^cluster\.`, `^http(?=\.)`) can only match
/// names whose first dot-separated token is that literal, so names are dispatched by their
/// first token to the rules that can match them (as newer Envoy does), and each rule's
/// substring prefilter is checked before its regex. A name that touches no rule costs a
/// token lookup and a few substring scans.
#[derive(Clone, Debug)]
pub struct TagExtractor {
    set: TagRuleSet,
    rules: Box<[CompiledRule]>,
    /// Dispatch by first token; keeping declared order means dispatch never reorders tags.
    by_token: Box<[TokenRules]>,
    /// Indices of the rules with no leading token, for names whose token has no rules.
    untokened: Box<[usize]>,
}

impl TagExtractor {
    /// Compiles the embedded rules of `set`.
    ///
    /// # Panics
    /// Never for the embedded rules: every one is compiled by the unit tests, so a failure here
    /// is a bug in this module, not something input can trigger.
    pub fn new(set: TagRuleSet) -> TagExtractor {
        let rules: Box<[CompiledRule]> = set
            .rules()
            .iter()
            .map(|rule| {
                let regex = compile_pattern(rule.regex).unwrap_or_else(|err| {
                    panic!(
                        "embedded Envoy tag rule {} does not compile: {err}",
                        rule.tag_name
                    )
                });
                CompiledRule {
                    tag_name: rule.tag_name,
                    substr_prefilter: rule.substr_prefilter,
                    has_value_group: regex.captures_len() > 2,
                    regex,
                }
            })
            .collect();
        let tokens: Vec<Option<&'static str>> = set
            .rules()
            .iter()
            .map(|rule| leading_token(rule.regex))
            .collect();
        let untokened: Box<[usize]> = (0..rules.len()).filter(|&i| tokens[i].is_none()).collect();
        let mut by_token: Vec<TokenRules> = Vec::new();
        for token in tokens.iter().flatten() {
            if by_token.iter().any(|entry| entry.token == *token) {
                continue;
            }
            let indices = (0..rules.len())
                .filter(|&i| tokens[i].is_none_or(|t| t == *token))
                .collect();
            by_token.push(TokenRules {
                token,
                rules: indices,
            });
        }
        TagExtractor {
            set,
            rules,
            by_token: by_token.into_boxed_slice(),
            untokened,
        }
    }

    /// The rule set this extractor applies.
    pub fn rule_set(&self) -> TagRuleSet {
        self.set
    }

    /// Extracts tags from a full Envoy stat name (prefix already stripped, e.g.
    /// `cluster.xds-grpc.upstream_rq_200`).
    pub fn extract(&self, name: &str) -> Extracted {
        let mut matches = Vec::new();
        self.extract_matches(name, &mut matches);
        Extracted {
            name: remove_spans(name, &matches),
            tags: matches
                .iter()
                .map(|m| (m.tag_name.to_owned(), m.value.to_owned()))
                .collect(),
        }
    }

    /// Fills `out` (cleared first) with the rules' matches on `name`, in extraction order,
    /// borrowing the values from `name`. Lets a caller reuse one buffer across names.
    pub fn extract_matches<'a>(&self, name: &'a str, out: &mut Vec<TagMatch<'a>>) {
        out.clear();
        // Envoy looks the token up only when the name has a dot; a `^token\.` rule cannot
        // match a name without one anyway.
        let candidates = name
            .split_once('.')
            .and_then(|(token, _)| self.by_token.iter().find(|entry| entry.token == token))
            .map_or(&self.untokened, |entry| &entry.rules);
        self.run_rules(name, candidates.iter().copied(), out);
    }

    fn run_rules<'a>(
        &self,
        name: &'a str,
        candidates: impl Iterator<Item = usize>,
        out: &mut Vec<TagMatch<'a>>,
    ) {
        for index in candidates {
            let rule = &self.rules[index];
            if out.iter().any(|m| m.tag_name == rule.tag_name) {
                continue;
            }
            if !name.contains(rule.substr_prefilter) {
                continue;
            }
            let Some(captures) = rule.regex.captures(name.as_bytes()) else {
                continue;
            };
            let Some(removed) = captures.get(1) else {
                continue;
            };
            let value = if rule.has_value_group {
                // An unset group 2 reads as "" in std::regex; no embedded rule has one.
                captures.get(2).map_or(0..0, |m| m.range())
            } else {
                removed.range()
            };
            // Every embedded rule's group boundaries sit next to an ASCII literal or at the
            // ends, so they are char boundaries; checking keeps a byte-wise match from ever
            // splitting a UTF-8 character.
            let removed = removed.range();
            let (Some(_), Some(value)) = (name.get(removed.clone()), name.get(value)) else {
                continue;
            };
            out.push(TagMatch {
                tag_name: rule.tag_name,
                value,
                removed,
            });
        }
    }

    /// Like [`TagExtractor::extract_matches`] but tries every rule (substring prefilters
    /// still apply, as in Envoy), bypassing the token dispatch; the reference the dispatch is
    /// tested against.
    #[cfg(test)]
    fn extract_matches_every_rule<'a>(&self, name: &'a str, out: &mut Vec<TagMatch<'a>>) {
        out.clear();
        self.run_rules(name, 0..self.rules.len(), out);
    }
}

/// `name` with the union of the matches' removed spans cut out (Envoy's
/// `StringUtil::removeCharacters` over an interval set).
fn remove_spans(name: &str, matches: &[TagMatch<'_>]) -> String {
    let mut spans: Vec<Range<usize>> = matches.iter().map(|m| m.removed.clone()).collect();
    spans.sort_unstable_by_key(|span| span.start);
    let mut out = String::with_capacity(name.len());
    let mut kept_from = 0;
    for span in spans {
        if span.start > kept_from {
            out.push_str(&name[kept_from..span.start]);
        }
        kept_from = kept_from.max(span.end);
    }
    out.push_str(&name[kept_from..]);
    out
}

/// Envoy's Prometheus metric name: `envoy_` + the extracted name with every byte outside
/// `[a-zA-Z0-9_]` replaced by `_` (`prometheus_stats.cc` `sanitizeName`, which works on
/// bytes, so a multi-byte character becomes several underscores).
pub fn prometheus_metric_name(extracted_name: &str) -> String {
    let mut out = String::with_capacity("envoy_".len() + extracted_name.len());
    out.push_str("envoy_");
    push_sanitized(&mut out, extracted_name);
    out
}

/// Envoy's Prometheus label name: the tag name with every byte outside `[a-zA-Z0-9_]`
/// replaced by `_` (`envoy.cluster_name` → `envoy_cluster_name`).
pub fn prometheus_label_name(tag_name: &str) -> String {
    let mut out = String::with_capacity(tag_name.len());
    push_sanitized(&mut out, tag_name);
    out
}

fn push_sanitized(out: &mut String, name: &str) {
    out.extend(name.bytes().map(|b| {
        if b.is_ascii_alphanumeric() || b == b'_' {
            char::from(b)
        } else {
            '_'
        }
    }));
}

/// Strips the statsd sink prefix and its dot (`envoy.` for prefix `envoy`); `None` when the
/// name does not carry it. An empty prefix strips nothing.
pub fn sink_prefix_strip<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(name);
    }
    name.strip_prefix(prefix)?.strip_prefix('.')
}

/// Why an embedded pattern could not be compiled; only ever seen by tests.
#[derive(Debug, thiserror::Error)]
enum PatternError {
    #[error("lookahead at byte {0} is not the supported `(?=\\.).*` form followed by `\\.`")]
    UnsupportedLookahead(usize),
    #[error(transparent)]
    Regex(#[from] regex::Error),
}

/// Compiles an Envoy rule regex with std::regex's character model (see the module docs).
fn compile_pattern(pattern: &str) -> Result<Regex, PatternError> {
    let rewritten = rewrite_lookahead(pattern)?;
    Ok(RegexBuilder::new(&rewritten)
        .unicode(false)
        .crlf(true)
        .build()?)
}

/// Rewrites the one lookahead idiom Envoy's rules use, `(?=\.).*?` and `(?=\.).*`, when what
/// follows must itself match a `.` at that position.
///
/// Why this is exact: let `p` be the position of the assertion and `C` the continuation,
/// which starts by matching `\.` at the position it is given. The original tries `.*?` with
/// lengths 0, 1, 2, … (greedy `.*`: longest first, down to 0); the assertion demands a `.` at
/// `p`, which length 0 gets from `C` and every longer length gets by consuming it as its
/// first character. `(?:\..*?)??` (greedy: `(?:\..*)?`) accepts exactly the same lengths in
/// exactly the same priority order, with the `.` at `p` spelled out, so the first match found
/// and all its captures are the same.
fn rewrite_lookahead(pattern: &str) -> Result<String, PatternError> {
    const ASSERT_DOT: &str = r"(?=\.)";
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut rest = pattern;
    while let Some(at) = rest.find("(?=") {
        let offset = pattern.len() - rest.len() + at;
        out.push_str(&rest[..at]);
        let after = rest[at..]
            .strip_prefix(ASSERT_DOT)
            .ok_or(PatternError::UnsupportedLookahead(offset))?;
        let (replacement, continuation) = if let Some(tail) = after.strip_prefix(".*?") {
            (r"(?:\..*?)??", tail)
        } else if let Some(tail) = after.strip_prefix(".*") {
            (r"(?:\..*)?", tail)
        } else {
            return Err(PatternError::UnsupportedLookahead(offset));
        };
        // Opening capture groups consume nothing, so `(\.x)` also starts with a `\.`.
        // `(?:`, `(?=` and the like are refused here, as they no longer start with `\.`.
        if !continuation.trim_start_matches('(').starts_with(r"\.") {
            return Err(PatternError::UnsupportedLookahead(offset));
        }
        out.push_str(replacement);
        rest = continuation;
    }
    out.push_str(rest);
    Ok(out)
}

/// The literal first token a regex requires (`^cluster\.` and `^cluster(?=\.)` → `cluster`),
/// following Envoy's `TagExtractorImplBase::extractRegexPrefix`.
fn leading_token(regex: &str) -> Option<&str> {
    let body = regex.strip_prefix('^')?;
    let end = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    let rest = &body[end..];
    (end > 0 && (rest.starts_with(r"\.") || rest.starts_with(r"(?=\.)"))).then(|| &body[..end])
}

#[cfg(test)]
mod tests;
