//! Name and label templates, compiled once at load so a lookup only copies slices.
//!
//! Glob templates follow statsd_exporter's `fsm/formatter.go`; regex templates follow Go's
//! `regexp.Expand`. The two differ on purpose-built corner cases (`$1_foo`, `$0`), which is
//! why they are separate types.

use regex::Regex;

/// One piece of a compiled template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// A 0-based glob capture or a regex group index.
    Capture(usize),
}

/// A template for glob rules: `$n` / `${n}` with 1 ≤ n ≤ the pattern's `*` count is the n-th
/// capture; every other `$token` (`$0`, `$9` past the captures, `$name`, and `$1_foo`, which
/// is read as the token `1_foo`) becomes "".
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GlobTemplate {
    pieces: Vec<Piece>,
}

/// True for bytes the formatter's token class `[a-zA-Z0-9_$]` accepts.
fn is_glob_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

impl GlobTemplate {
    /// Compiles `text` for a pattern with `captures` stars.
    pub(crate) fn compile(text: &str, captures: usize) -> GlobTemplate {
        let bytes = text.as_bytes();
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < bytes.len() {
            // The token regex is `\$\{?([a-zA-Z0-9_$]+)\}?`, leftmost-first.
            if bytes[i] == b'$' {
                let mut j = i + 1;
                if j < bytes.len() && bytes[j] == b'{' {
                    j += 1;
                }
                let start = j;
                while j < bytes.len() && is_glob_token_byte(bytes[j]) {
                    j += 1;
                }
                if j > start {
                    let token = &text[start..j];
                    if j < bytes.len() && bytes[j] == b'}' {
                        j += 1;
                    }
                    if let Ok(n) = token.parse::<usize>()
                        && (1..=captures).contains(&n)
                    {
                        if !literal.is_empty() {
                            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                        }
                        pieces.push(Piece::Capture(n - 1));
                    }
                    i = j;
                    continue;
                }
            }
            // Copy up to the next `$` in one go; `$` and the text are ASCII-delimited, so the
            // slice boundaries are character boundaries.
            let next = text[i + 1..].find('$').map_or(bytes.len(), |p| i + 1 + p);
            literal.push_str(&text[i..next]);
            i = next;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        GlobTemplate { pieces }
    }

    /// True when the template uses no capture, so its expansion is known at load.
    pub(crate) fn is_static(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Literal(_)))
    }

    /// Expands with the captured segments.
    pub(crate) fn expand(&self, captures: &[&str]) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Capture(n) => out.push_str(captures.get(*n).copied().unwrap_or("")),
            }
        }
        out
    }
}

/// A template for regex rules with Go `regexp.Expand` semantics: `$name` takes the longest
/// run of `[a-zA-Z0-9_]` (so `$1_foo` is the group named `1_foo`, usually ""), `${name}`
/// delimits, `$$` is a `$`, a number is a group index (`$0` is the whole match; a leading zero
/// makes it a name), an unknown group is "", and a malformed `$` is kept as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegexTemplate {
    pieces: Vec<Piece>,
}

impl RegexTemplate {
    /// Compiles `text` against `regex`'s groups, resolving names to indexes once.
    pub(crate) fn compile(text: &str, regex: &Regex) -> RegexTemplate {
        let group_count = regex.captures_len();
        let resolve = |name: &str| -> Option<usize> {
            if let Some(n) = go_group_number(name) {
                return (n < group_count).then_some(n);
            }
            regex
                .capture_names()
                .position(|candidate| candidate == Some(name))
        };
        let bytes = text.as_bytes();
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'$' {
                let next = text[i..].find('$').map_or(bytes.len(), |p| i + p);
                literal.push_str(&text[i..next]);
                i = next;
                continue;
            }
            if bytes.get(i + 1) == Some(&b'$') {
                literal.push('$');
                i += 2;
                continue;
            }
            let braced = bytes.get(i + 1) == Some(&b'{');
            let start = if braced { i + 2 } else { i + 1 };
            let mut j = start;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            let well_formed = j > start && (!braced || bytes.get(j) == Some(&b'}'));
            if !well_formed {
                literal.push('$');
                i += 1;
                continue;
            }
            if let Some(group) = resolve(&text[start..j]) {
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Capture(group));
            }
            i = if braced { j + 1 } else { j };
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        RegexTemplate { pieces }
    }

    /// Expands against one match of the template's regex.
    pub(crate) fn expand(&self, haystack: &str, locations: &regex::CaptureLocations) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Capture(n) => {
                    if let Some((start, end)) = locations.get(*n) {
                        out.push_str(&haystack[start..end]);
                    }
                }
            }
        }
        out
    }
}

/// Go's `extract` number rule: all digits, below 1e8, no leading zero (except "0" itself).
fn go_group_number(name: &str) -> Option<usize> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    if name.len() > 8 {
        return None;
    }
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str, caps: &[&str]) -> String {
        GlobTemplate::compile(text, caps.len()).expand(caps)
    }

    fn regex_expand(pattern: &str, template: &str, haystack: &str) -> String {
        let re = Regex::new(pattern).unwrap();
        let t = RegexTemplate::compile(template, &re);
        let mut locs = re.capture_locations();
        re.captures_read(&mut locs, haystack).unwrap();
        t.expand(haystack, &locs)
    }

    #[test]
    fn glob_template_tokens() {
        assert_eq!(glob("${1}_foo", &["a"]), "a_foo");
        // `$1_foo` is the token `1_foo`, not `$1` followed by `_foo`.
        assert_eq!(glob("$1_foo", &["a"]), "");
        assert_eq!(glob("$1-$2-$3", &["foo", "bar"]), "foo-bar-");
        assert_eq!(glob("$0", &["a"]), "");
        assert_eq!(glob("x_${2}", &["a", "b"]), "x_b");
        assert_eq!(glob("static", &["a"]), "static");
        assert_eq!(glob("cost $", &["a"]), "cost $");
        assert_eq!(glob("${}x", &["a"]), "${}x");
        assert!(GlobTemplate::compile("plain", 2).is_static());
        assert!(!GlobTemplate::compile("p$1", 2).is_static());
        // A reference past the captures is dropped at compile time.
        assert!(GlobTemplate::compile("p$3", 2).is_static());
    }

    #[test]
    fn regex_template_follows_go_expand() {
        let re = r"(?P<app>\w+)\.(\w+)";
        assert_eq!(regex_expand(re, "$1", "web.get"), "web");
        assert_eq!(regex_expand(re, "${2}_total", "web.get"), "get_total");
        assert_eq!(regex_expand(re, "$app", "web.get"), "web");
        assert_eq!(regex_expand(re, "$0", "web.get"), "web.get");
        assert_eq!(regex_expand(re, "$1_foo", "web.get"), "");
        assert_eq!(regex_expand(re, "$$1", "web.get"), "$1");
        assert_eq!(regex_expand(re, "a$", "web.get"), "a$");
        assert_eq!(regex_expand(re, "${1", "web.get"), "${1");
        assert_eq!(regex_expand(re, "$01", "web.get"), "");
        assert_eq!(regex_expand(re, "$9", "web.get"), "");
        // An optional group that did not take part is "".
        assert_eq!(regex_expand(r"a(b)?", "<$1>", "a"), "<>");
    }
}
