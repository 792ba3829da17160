//! A worker's memory of how raw line bytes resolved, so the steady state skips tag
//! decoding, mapping and the store's locks.
//!
//! Two kinds of key share one table, told apart by their first byte:
//! - a *line shape* (name section and everything after the value, byte for byte) for
//!   single-value lines that parsed cleanly: a hit replays the cached parse with the new
//!   value and skips the grammar entirely (see [`crate::line::split_for_replay`]);
//! - a *series identity* (event kind, name section, DogStatsD tags, container id) for
//!   every other sample, reached after a full parse.

use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use metrics::Counter;

use crate::line::StatType;
use crate::mapping::Action;
use crate::store::{SeriesRef, Store};

use super::limits::{DropReason, ValueError};

/// Upper bounds on remembered keys per worker, in number and in key bytes; beyond either the
/// worker starts afresh, so a flood of distinct names cannot grow memory without bound. The
/// count matches the default `--statsd.max-series`, so a worker that sees every series of a
/// full store keeps them all.
const MAX_ENTRIES: usize = 1 << 20;
const MAX_KEY_BYTES: usize = 256 << 20;

/// Bounds on remembered keys that lead to no series (drops, conflicts, limits). A flood of
/// new names beyond a limit makes one such key per line; when these bounds are reached only
/// those keys are forgotten, so the series a worker updates keep their handles.
const MAX_NEGATIVE_ENTRIES: usize = 1 << 16;
const MAX_NEGATIVE_KEY_BYTES: usize = 16 << 20;

/// The first key byte of a line shape; identities use their kind index (0..=2).
pub(super) const SHAPE_TAG: u8 = 3;

/// Where a key's events go.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    /// Update this series, after multiplying by `scale`.
    Series { series: SeriesRef, scale: f64 },
    /// The mapping says drop.
    Dropped,
    /// The series cannot be created: count the event against `counter`.
    Failed { counter: Counter },
    /// A limit refused the series: count the event under `reason`. With a `room_epoch`
    /// (a store limit), the key is resolved again once the store's epoch has moved on.
    Limited {
        reason: DropReason,
        room_epoch: Option<u64>,
    },
    /// The first event's value was refused before the series existed, so none was created:
    /// count it. Never cached, so the next event of the key resolves afresh.
    BadValue(ValueError),
}

/// What resolving a key decided, replayed for each later event.
#[derive(Debug, Clone)]
pub(super) struct Resolution {
    pub(super) outcome: Outcome,
    pub(super) mapped: Option<Action>,
    pub(super) tag_errors: u32,
    pub(super) has_labels: bool,
    pub(super) labels_dropped: u32,
}

impl Resolution {
    /// The series expired since, or the store has made room since a limit refused it:
    /// resolve again.
    #[inline]
    pub(super) fn is_stale(&self, store: &Store) -> bool {
        match &self.outcome {
            Outcome::Series { series, .. } => series.is_dead(),
            Outcome::Limited {
                room_epoch: Some(epoch),
                ..
            } => store.room_epoch() != *epoch,
            _ => false,
        }
    }

    /// Whether the key leads to a series (worth keeping over keys that lead nowhere).
    fn is_positive(&self) -> bool {
        matches!(self.outcome, Outcome::Series { .. })
    }
}

/// What a line shape's cached parse fixed, besides the value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Replay {
    pub(super) stat_type: StatType,
    pub(super) rate: f64,
    pub(super) repeat: u32,
}

#[derive(Debug)]
pub(super) struct Entry {
    key: Box<[u8]>,
    hash: u64,
    pub(super) res: Resolution,
    pub(super) replay: Option<Replay>,
}

/// A key: a tag byte and byte parts, compared part by part without building it.
#[derive(Clone, Copy)]
pub(super) struct Key<'a> {
    pub(super) tag: u8,
    pub(super) parts: &'a [&'a [u8]],
}

impl Key<'_> {
    fn matches(&self, stored: &[u8]) -> bool {
        let Some((&t, mut rest)) = stored.split_first() else {
            return false;
        };
        if t != self.tag {
            return false;
        }
        for p in self.parts {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return false;
            };
            let len = u32::from_le_bytes(*len) as usize;
            if len != p.len() || tail.len() < len || &tail[..len] != *p {
                return false;
            }
            rest = &tail[len..];
        }
        rest.is_empty()
    }

    fn to_boxed(self) -> Box<[u8]> {
        let mut out = Vec::with_capacity(1 + self.parts.iter().map(|p| 4 + p.len()).sum::<usize>());
        out.push(self.tag);
        for p in self.parts {
            // Parts come from one datagram (< 64 KiB), so the length always fits.
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(p);
        }
        out.into_boxed_slice()
    }
}

/// Every key a worker has resolved, with its resolution. Seeded hashing: keys come from
/// the network.
#[derive(Debug, Default)]
pub(super) struct HandleTable {
    table: HashTable<Entry>,
    hasher: foldhash::fast::RandomState,
    key_bytes: usize,
    negative_entries: usize,
    negative_key_bytes: usize,
}

impl HandleTable {
    #[inline]
    pub(super) fn hash(&self, key: Key<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u8(key.tag);
        for p in key.parts {
            h.write(p);
            // Lines are valid UTF-8, where 0xff never occurs: parts cannot run together.
            h.write_u8(0xff);
        }
        h.finish()
    }

    #[inline]
    pub(super) fn get(&self, hash: u64, key: Key<'_>) -> Option<&Entry> {
        self.table
            .find(hash, |e| e.hash == hash && key.matches(&e.key))
    }

    /// Inserts or replaces the entry for `key`.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        key: Key<'_>,
        res: Resolution,
        replay: Option<Replay>,
    ) -> &Entry {
        if let Ok(old) = self
            .table
            .find_entry(hash, |e| e.hash == hash && key.matches(&e.key))
        {
            let (old, _) = old.remove();
            self.forget(&old);
        }
        let key = key.to_boxed();
        let positive = res.is_positive();
        if !positive
            && (self.negative_entries >= MAX_NEGATIVE_ENTRIES
                || self.negative_key_bytes + key.len() > MAX_NEGATIVE_KEY_BYTES)
        {
            self.table.retain(|e| e.res.is_positive());
            self.key_bytes -= self.negative_key_bytes;
            self.negative_entries = 0;
            self.negative_key_bytes = 0;
        }
        if self.table.len() >= MAX_ENTRIES || self.key_bytes + key.len() > MAX_KEY_BYTES {
            self.clear();
        }
        self.key_bytes += key.len();
        if !positive {
            self.negative_entries += 1;
            self.negative_key_bytes += key.len();
        }
        let entry = Entry {
            key,
            hash,
            res,
            replay,
        };
        self.table.insert_unique(hash, entry, |e| e.hash).into_mut()
    }

    /// Takes a removed entry out of the tallies.
    fn forget(&mut self, e: &Entry) {
        self.key_bytes -= e.key.len();
        if !e.res.is_positive() {
            self.negative_entries -= 1;
            self.negative_key_bytes -= e.key.len();
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn clear(&mut self) {
        self.table.clear();
        self.key_bytes = 0;
        self.negative_entries = 0;
        self.negative_key_bytes = 0;
    }
}
