//! Where in a mapping file's text an error belongs: serde_yaml_ng's errors sorted into
//! [`MappingError`] variants, and a line finder for the checks that run after
//! deserializing, when the parser's positions are gone.

use crate::mapping::error::{ErrorLocation, MappingError};

/// Turns a serde_yaml_ng error into the variant for its cause, with line and key.
pub(super) fn classify_yaml_error(text: &str, e: serde_yaml_ng::Error) -> MappingError {
    let line = e.location().map(|l| l.line());
    let mut message = e.to_string();
    // serde_yaml_ng appends " at line L column C"; the location is reported separately.
    if let Some(pos) = message.rfind(" at line ") {
        message.truncate(pos);
    }
    // And prefixes the key path ("mappings[1].labels: ...") when there is one.
    let (key, detail) = match message.split_once(": ") {
        Some((path, rest))
            if !path.is_empty()
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.[]".contains(&b)) =>
        {
            (path.to_string(), rest.to_string())
        }
        _ => (String::new(), message.clone()),
    };
    let at = ErrorLocation {
        file: None,
        line,
        key,
    };
    if let Some(name) = detail
        .strip_prefix("invalid label name \"")
        .and_then(|rest| rest.strip_suffix('"'))
    {
        // serde_yaml_ng reports the labels block's first line; point at the key itself.
        let mut at = at;
        if let Some(index) = at
            .key
            .strip_prefix("mappings[")
            .and_then(|rest| rest.strip_suffix("].labels"))
            .and_then(|n| n.parse::<usize>().ok())
        {
            let labels_line = locate(text, Some(index), Some("labels")).line;
            let key_line = locate(text, Some(index), Some(name)).line;
            if key_line > labels_line {
                at.line = key_line;
            }
        }
        return MappingError::InvalidLabelName {
            at,
            name: name.to_string(),
        };
    }
    if detail.starts_with("unknown field `timer_type`")
        || detail.starts_with("unknown field `buckets`")
        || detail.starts_with("unknown field `quantiles`")
    {
        MappingError::LegacyKey { at, detail }
    } else if detail.starts_with("unknown field") {
        MappingError::UnknownKey { at, detail }
    } else if detail.starts_with("duplicate") {
        MappingError::DuplicateKey { at, detail }
    } else if detail.starts_with("invalid match_type")
        || detail.starts_with("invalid observer_type")
        || detail.starts_with("invalid action")
        || detail.starts_with("invalid match_metric_type")
    {
        MappingError::InvalidEnum { at, detail }
    } else if detail.starts_with("invalid duration") {
        MappingError::InvalidDuration { at, detail }
    } else {
        MappingError::Syntax { at, detail }
    }
}

/// Finds the line of `mappings[index].field` (or of a top-level `defaults` field when `index`
/// is `None`) in block-style YAML. Flow-style documents fall back to the enclosing item or
/// block, and the key path is always given, so an error stays unambiguous.
pub(crate) fn locate(text: &str, index: Option<usize>, field: Option<&str>) -> ErrorLocation {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let meaningful = |l: &str| {
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('#') && t != "---"
    };
    let section = if index.is_some() {
        "mappings"
    } else {
        "defaults"
    };
    let key_path = match (index, field) {
        (Some(i), _) => format!("mappings[{i}]"),
        (None, Some(f)) => format!("defaults.{f}"),
        (None, None) => "defaults".into(),
    };
    let mut at = ErrorLocation {
        file: None,
        line: None,
        key: key_path,
    };
    let Some(start) = lines
        .iter()
        .position(|l| l.starts_with(section) && l[section.len()..].trim_start().starts_with(':'))
    else {
        return at;
    };
    at.line = Some(start + 1);
    // The block's lines, up to the next top-level key.
    let end = lines[start + 1..]
        .iter()
        .position(|l| meaningful(l) && indent(l) == 0 && !l.starts_with('-'))
        .map_or(lines.len(), |p| start + 1 + p);
    let (from, to) = match index {
        None => (start + 1, end),
        Some(i) => {
            let items: Vec<usize> = (start + 1..end)
                .filter(|&n| lines[n].trim_start().starts_with('-') && meaningful(lines[n]))
                .collect();
            let item_indent = items.first().map(|&n| indent(lines[n]));
            let items: Vec<usize> = items
                .into_iter()
                .filter(|&n| Some(indent(lines[n])) == item_indent)
                .collect();
            let Some(&item) = items.get(i) else {
                return at;
            };
            at.line = Some(item + 1);
            (item, items.get(i + 1).copied().unwrap_or(end))
        }
    };
    if let Some(field) = field {
        let found = (from..to).find(|&n| {
            let t = lines[n].trim_start();
            let t = t.strip_prefix('-').map_or(t, str::trim_start);
            t.strip_prefix(field)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        });
        if let Some(n) = found {
            at.line = Some(n + 1);
        }
    }
    at
}
