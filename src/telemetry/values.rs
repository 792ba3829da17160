//! Reading the self-metrics back. `metrics-exporter-prometheus` keeps its values behind its
//! text output only, so the status page reads them by parsing that text: a few dozen series
//! (the network-named conflict label is capped by [`CONFLICT_NAMES_CAP`]), read every few
//! seconds at most.
//!
//! [`CONFLICT_NAMES_CAP`]: super::CONFLICT_NAMES_CAP

/// One self-metric series and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct SelfSample {
    /// The sample's name (a family name, or `_sum`/`_count` of one).
    pub name: String,
    /// Label names and values, unescaped, in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl SelfSample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample line of a text exposition; comments, blank lines and lines that do not
/// parse are skipped (the text comes from the recorder, so none should fail).
pub(super) fn parse_samples(text: &str) -> Vec<SelfSample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<SelfSample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = rest.split_once("=\"")?;
            let (value, after) = unescape_value(after)?;
            labels.push((label.to_string(), value));
            rest = after;
        }
    }
    // A timestamp may follow the value; the recorder writes none, but do not misread one.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(SelfSample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// A quoted label value up to its closing quote, and the text after the quote.
fn unescape_value(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values() {
        let text = "# HELP a_total A.\n# TYPE a_total counter\na_total 3\n\
                    b{reason=\"x\",type=\"q\\\"u\\\\o\\nte\"} 1.5\nc{} +Inf\n\nbroken\n";
        let s = parse_samples(text);
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0].name, "a_total");
        assert_eq!(s[0].value, 3.0);
        assert!(s[0].labels.is_empty());
        assert_eq!(s[1].label("reason"), Some("x"));
        assert_eq!(s[1].label("type"), Some("q\"u\\o\nte"));
        assert_eq!(s[1].value, 1.5);
        assert_eq!(s[2].value, f64::INFINITY);
    }
}
