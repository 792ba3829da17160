//! A strict reader of the Prometheus text format as the gateway writes it (client_golang's
//! dialect of 0.0.4): every family is `# HELP` then `# TYPE` then at least one sample; names,
//! label names and escapes follow the grammar exactly; values are `NaN`, `+Inf`, `-Inf` or a
//! plain decimal. Anything the gateway must never write is an error, so a fuzz target or a
//! property test can check the rendering instead of trusting a lenient parser.
//!
//! Shared by `fuzz/fuzz_targets/datagram_to_exposition.rs` and `tests/properties.rs`.

#![allow(dead_code)]

/// One family block.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFamily {
    /// The family name from `# HELP`/`# TYPE`.
    pub name: String,
    /// The HELP text, unescaped.
    pub help: String,
    /// The TYPE word.
    pub kind: String,
    /// The samples, in text order.
    pub samples: Vec<ParsedSample>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    /// The metric name (the family name plus any `_bucket`/`_sum`/`_count` suffix).
    pub name: String,
    /// Labels in text order, values unescaped.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `NaN`, `+Inf`, `-Inf`, or `-?digits[.digits][e(+|-)digits]`.
pub fn parse_float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => return Ok(f64::NAN),
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if digits(&mut i) == 0 {
        return Err(format!("float {s:?}: no integer digits"));
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return Err(format!("float {s:?}: no fraction digits"));
        }
    }
    if b.get(i) == Some(&b'e') {
        i += 1;
        if !matches!(b.get(i), Some(b'+' | b'-')) {
            return Err(format!("float {s:?}: exponent without sign"));
        }
        i += 1;
        if digits(&mut i) < 2 {
            return Err(format!("float {s:?}: exponent under two digits"));
        }
    }
    if i != b.len() {
        return Err(format!("float {s:?}: trailing text"));
    }
    s.parse::<f64>().map_err(|e| format!("float {s:?}: {e}"))
}

/// Unescapes a HELP text: only `\\` and `\n` are escapes, and a backslash is always one.
pub fn unescape_help(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => return Err(format!("HELP {s:?}: bad escape {other:?}")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Reads `"value"` at the start of `s` (escapes `\\`, `\"`, `\n`); returns the value and the
/// rest after the closing quote.
pub fn read_label_value(s: &str) -> Result<(String, &str), String> {
    let Some(body) = s.strip_prefix('"') else {
        return Err(format!("label value {s:?}: no opening quote"));
    };
    let mut out = String::new();
    let mut it = body.char_indices();
    while let Some((i, c)) = it.next() {
        match c {
            '"' => return Ok((out, &body[i + 1..])),
            '\\' => match it.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                other => return Err(format!("label value {s:?}: bad escape {other:?}")),
            },
            '\n' => return Err(format!("label value {s:?}: raw newline")),
            c => out.push(c),
        }
    }
    Err(format!("label value {s:?}: unterminated"))
}

fn parse_sample(line: &str) -> Result<ParsedSample, String> {
    let end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("sample {line:?}: no value"))?;
    let name = &line[..end];
    if !is_metric_name(name) {
        return Err(format!("sample {line:?}: bad metric name"));
    }
    let mut rest = &line[end..];
    let mut labels: Vec<(String, String)> = Vec::new();
    if let Some(mut r) = rest.strip_prefix('{') {
        if let Some(after) = r.strip_prefix('}') {
            r = after;
        } else {
            loop {
                let eq = r
                    .find('=')
                    .ok_or_else(|| format!("sample {line:?}: label without ="))?;
                let key = &r[..eq];
                if !is_label_name(key) {
                    return Err(format!("sample {line:?}: bad label name {key:?}"));
                }
                if labels.iter().any(|(k, _)| k == key) {
                    return Err(format!("sample {line:?}: label {key:?} twice"));
                }
                let (value, after) = read_label_value(&r[eq + 1..])?;
                labels.push((key.to_string(), value));
                if let Some(after) = after.strip_prefix(',') {
                    r = after;
                } else if let Some(after) = after.strip_prefix('}') {
                    r = after;
                    break;
                } else {
                    return Err(format!("sample {line:?}: expected , or }}"));
                }
            }
        }
        rest = r;
    }
    let Some(value) = rest.strip_prefix(' ') else {
        return Err(format!("sample {line:?}: no space before the value"));
    };
    Ok(ParsedSample {
        name: name.to_string(),
        labels,
        value: parse_float(value)?,
    })
}

/// Parses a whole exposition; every rule of the module doc is checked.
pub fn parse(text: &str) -> Result<Vec<ParsedFamily>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err("text does not end in a newline".into());
    };
    let mut families: Vec<ParsedFamily> = Vec::new();
    let mut lines = body.split('\n').peekable();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("# HELP ") {
            let (name, help) = h
                .split_once(' ')
                .ok_or_else(|| format!("HELP {line:?}: no text"))?;
            if !is_metric_name(name) {
                return Err(format!("HELP {line:?}: bad name"));
            }
            let help = unescape_help(help)?;
            let ty = lines
                .next()
                .and_then(|l| l.strip_prefix("# TYPE "))
                .ok_or_else(|| format!("HELP {line:?}: no TYPE after it"))?;
            let (ty_name, kind) = ty
                .split_once(' ')
                .ok_or_else(|| format!("TYPE {ty:?}: no type"))?;
            if ty_name != name {
                return Err(format!("TYPE {ty:?} after HELP for {name:?}"));
            }
            if !matches!(
                kind,
                "counter" | "gauge" | "histogram" | "summary" | "untyped"
            ) {
                return Err(format!("TYPE {ty:?}: unknown type"));
            }
            if families.iter().any(|f| f.name == name) {
                return Err(format!("family {name:?} twice"));
            }
            families.push(ParsedFamily {
                name: name.to_string(),
                help,
                kind: kind.to_string(),
                samples: Vec::new(),
            });
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(format!("unexpected line {line:?}"));
        }
        let fam = families
            .last_mut()
            .ok_or_else(|| format!("sample {line:?} before any family"))?;
        let s = parse_sample(line)?;
        let suffix = s
            .name
            .strip_prefix(fam.name.as_str())
            .ok_or_else(|| format!("sample {line:?} outside family {:?}", fam.name))?;
        let ok = match (fam.kind.as_str(), suffix) {
            ("counter" | "gauge" | "untyped", "") => true,
            ("histogram", "_bucket") => s.labels.last().is_some_and(|(k, _)| k == "le"),
            ("histogram", "_sum" | "_count") | ("summary", "_sum" | "_count") => true,
            ("summary", "") => s.labels.last().is_some_and(|(k, _)| k == "quantile"),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "sample {line:?} does not fit a {} family",
                fam.kind
            ));
        }
        if fam
            .samples
            .iter()
            .any(|o| o.name == s.name && o.labels == s.labels)
        {
            return Err(format!("sample {line:?} twice"));
        }
        fam.samples.push(s);
    }
    if let Some(f) = families.iter().find(|f| f.samples.is_empty()) {
        return Err(format!("family {:?} without samples", f.name));
    }
    Ok(families)
}
