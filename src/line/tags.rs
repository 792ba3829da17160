//! Placeholder: tag dialect decoding is being written.
use super::{TagCounts, Tags};
use std::borrow::Cow;

pub(super) fn decode<'a>(_tags: &Tags<'a>, _f: impl FnMut(Cow<'a, str>, &'a str)) -> TagCounts {
    todo!("tag decoding")
}
