//! Placeholder: the nom grammar is being written.
use super::{Dialects, ParseCounters, Sample};

pub(super) fn parse_line<'a>(
    _line: &'a [u8],
    _dialects: &Dialects,
    _counters: &mut ParseCounters,
    _on_sample: impl FnMut(Sample<'a>),
) {
    todo!("line grammar")
}
