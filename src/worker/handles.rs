//! A worker's memory of how raw line bytes resolved, so the steady state skips tag
//! decoding, mapping and the store's locks.
//!
//! Two kinds of key share one table, told apart by their first byte:
//! - a *line shape* (name section and everything after the value, byte for byte) for
//!   single-value lines that parsed cleanly: a hit replays the cached parse with the new
//!   value and skips the grammar entirely (see [`crate::line::split_for_replay`]);
//! - a *series identity* (event kind, name section, DogStatsD tags, container id) for
//!   every other sample, reached after a full parse.
//!
//! With a sender label, both kinds start with the sender's address (see `sender.rs`).

use std::hash::{BuildHasher, Hasher};

use metrics::Counter;

use crate::line::StatType;
use crate::mapping::Action;
use crate::store::{SeriesRef, Store};

use super::index::{Index, MAX_POSITION};
use super::limits::{DropReason, ValueError};

/// Upper bounds on remembered keys per worker, in number and in key bytes; beyond either the
/// worker starts afresh, so a flood of distinct names cannot grow memory without bound. The
/// count matches the default `--statsd.max-series`, so a worker that sees every series of a
/// full store keeps them all.
const MAX_ENTRIES: usize = 1 << 20;
const MAX_KEY_BYTES: usize = 256 << 20;

/// Bounds on remembered keys that a limit refused. A flood of new names beyond a limit makes
/// one such key per line, so they live in a table of their own, small and forgotten
/// wholesale when full: the table of series handles (and of mapping drops and conflicts,
/// which a healthy Istio mesh has by the thousand and sends every flush) neither grows nor
/// loses its entries because of them.
const MAX_REFUSED_ENTRIES: usize = 1 << 14;
const MAX_REFUSED_KEY_BYTES: usize = 4 << 20;

/// A position no entry has (see [`HandleTable::prefetch`]).
pub(super) const NOWHERE: u32 = u32::MAX;

/// The first key byte of a line shape; identities use their kind index (0..=2).
pub(super) const SHAPE_TAG: u8 = 3;

/// The `room_epoch` of a refusal no room can lift (a size limit). The store's epoch moves
/// at most once per expiry pass, so it never gets there.
pub(super) const NO_RETRY: u64 = u64::MAX;

/// Where a key's events go.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    /// Update this series, after multiplying by `scale`.
    Series { series: SeriesRef, scale: f64 },
    /// The mapping says drop.
    Dropped,
    /// The series cannot be created: count the event against `counter`.
    Failed { counter: Counter },
    /// A limit refused the series: count the event under `reason`. After a store limit,
    /// `room_epoch` is the store's [`Store::room_epoch`] when it refused, and the key is
    /// resolved again once that has moved on; after a size limit it is [`NO_RETRY`].
    Limited { reason: DropReason, room_epoch: u64 },
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
    /// The sender label replaced (or removed) a tag or mapping label of its name.
    pub(super) sender_overridden: bool,
}

impl Resolution {
    /// A resolution to drop, with nothing counted: what resolving starts from.
    pub(super) fn dropped() -> Resolution {
        Resolution {
            outcome: Outcome::Dropped,
            mapped: None,
            tag_errors: 0,
            has_labels: false,
            labels_dropped: 0,
            sender_overridden: false,
        }
    }

    /// The series expired since, or the store has made room since a limit refused it:
    /// resolve again.
    #[inline]
    pub(super) fn is_stale(&self, store: &Store) -> bool {
        match &self.outcome {
            Outcome::Series { series, .. } => series.is_dead(),
            Outcome::Limited { room_epoch, .. } => {
                *room_epoch != NO_RETRY && store.room_epoch() != *room_epoch
            }
            _ => false,
        }
    }

    /// Whether a limit refused the key (the first to forget when memory is bounded).
    fn is_refusal(&self) -> bool {
        matches!(self.outcome, Outcome::Limited { .. })
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

/// One table of keys and its key bytes.
///
/// The entries live in a dense vector, found through an [`Index`] of 64-bit slots (a
/// fingerprint of the hash and the entry's position): the lines of a packed datagram can
/// then have their slots, then their entries, then their keys and series prefetched ahead
/// of handling them (see [`HandleTable::prefetch_slot`]). Entries found by reading them,
/// one after another, would each be a stall.
#[derive(Debug, Default)]
struct Keys {
    index: Index,
    entries: Vec<Entry>,
    bytes: usize,
}

impl Keys {
    #[inline]
    fn position(&self, hash: u64, key: Key<'_>) -> Option<usize> {
        let entries = &self.entries;
        self.index.find(hash, |pos| {
            entries
                .get(pos)
                .is_some_and(|e| e.hash == hash && key.matches(&e.key))
        })
    }

    #[inline]
    fn get(&self, hash: u64, key: Key<'_>) -> Option<&Entry> {
        self.entries.get(self.position(hash, key)?)
    }

    fn remove(&mut self, hash: u64, key: Key<'_>) {
        let Some(pos) = self.position(hash, key) else {
            return;
        };
        self.index.remove(hash, pos);
        let old = self.entries.swap_remove(pos);
        self.bytes -= old.key.len();
        // The last entry moved into the hole: point its slot there.
        if let Some(moved) = self.entries.get(pos) {
            self.index.renumber(moved.hash, self.entries.len(), pos);
        }
    }

    /// Inserts a new entry, first forgetting everything if the table is at a bound.
    fn insert(&mut self, entry: Entry, max_entries: usize, max_bytes: usize) -> &Entry {
        if self.entries.len() >= max_entries.min(MAX_POSITION)
            || self.bytes + entry.key.len() > max_bytes
        {
            self.clear();
        }
        self.bytes += entry.key.len();
        let pos = self.entries.len();
        self.index.insert(entry.hash, pos);
        self.entries.push(entry);
        &self.entries[pos]
    }

    fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.bytes = 0;
    }
}

/// Every key a worker has resolved, with its resolution: keys a limit refused in a small
/// table, all others in the main one, each bounded. Seeded hashing: keys come from the
/// network.
#[derive(Debug, Default)]
pub(super) struct HandleTable {
    main: Keys,
    refused: Keys,
    hasher: foldhash::fast::RandomState,
}

impl HandleTable {
    #[inline]
    pub(super) fn hash(&self, key: Key<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u8(key.tag);
        for p in key.parts {
            h.write(p);
            // Lines are valid UTF-8, where 0xff never occurs: parts cannot run together. A
            // sender's address (16 bytes that may hold 0xff) is always the first part; were
            // two keys to hash alike through it, `matches` still tells them apart.
            h.write_u8(0xff);
        }
        h.finish()
    }

    /// The entry for `key`; one probe unless a limit refused the key.
    #[inline]
    pub(super) fn get(&self, hash: u64, key: Key<'_>) -> Option<&Entry> {
        match self.main.get(hash, key) {
            Some(e) => Some(e),
            None => self.refused.get(hash, key),
        }
    }

    /// Inserts or replaces the entry for `key`.
    pub(super) fn insert(
        &mut self,
        hash: u64,
        key: Key<'_>,
        res: Resolution,
        replay: Option<Replay>,
    ) -> &Entry {
        self.main.remove(hash, key);
        self.refused.remove(hash, key);
        let refusal = res.is_refusal();
        let entry = Entry {
            key: key.to_boxed(),
            hash,
            res,
            replay,
        };
        if refusal {
            self.refused
                .insert(entry, MAX_REFUSED_ENTRIES, MAX_REFUSED_KEY_BYTES)
        } else {
            self.main.insert(entry, MAX_ENTRIES, MAX_KEY_BYTES)
        }
    }

    /// Hints the slot where the probe for `hash` starts in the main table: the first of
    /// three steps ([`HandleTable::prefetch`], then [`HandleTable::prefetch_target`]), each
    /// taken some lines ahead of the line being handled, and after the step before it had
    /// time to bring in what it reads (see `Worker::datagram`).
    #[inline]
    pub(super) fn prefetch_slot(&self, hash: u64) {
        self.main.index.prefetch(hash);
    }

    /// Where the entry of `hash` probably is in the main table, with a hint to bring it in;
    /// [`NOWHERE`] when no entry has its fingerprint. A position goes stale when the table
    /// changes, and is only ever checked against the key (see [`HandleTable::get_at`]).
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) -> u32 {
        match self.main.index.find(hash, |_| true) {
            Some(pos) => {
                if let Some(e) = self.main.entries.get(pos) {
                    crate::prefetch::prefetch(e);
                }
                pos as u32
            }
            None => NOWHERE,
        }
    }

    /// Hints the key bytes and the series of the entry at `pos`, which [`HandleTable::prefetch`]
    /// gave. Reads that entry: call it once the entry had time to arrive.
    #[inline]
    pub(super) fn prefetch_target(&self, pos: u32) {
        if let Some(e) = self.main.entries.get(pos as usize) {
            crate::prefetch::prefetch_bytes(e.key.as_ptr(), e.key.len());
            if let Outcome::Series { series, .. } = &e.res.outcome {
                series.prefetch();
            }
        }
    }

    /// The entry for `key`, looked for first at `pos` in the main table (from
    /// [`HandleTable::prefetch`]), which saves a probe when the table has not changed since.
    #[inline]
    pub(super) fn get_at(&self, pos: u32, hash: u64, key: Key<'_>) -> Option<&Entry> {
        match self.main.entries.get(pos as usize) {
            Some(e) if e.hash == hash && key.matches(&e.key) => Some(e),
            _ => self.get(hash, key),
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.main.entries.len() + self.refused.entries.len()
    }

    pub(super) fn clear(&mut self) {
        self.main.clear();
        self.refused.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: u32) -> Vec<u8> {
        format!("metric.{i}").into_bytes()
    }

    /// Calls `f` with the key of name `i`.
    fn with_key<R>(i: u32, f: impl FnOnce(Key<'_>) -> R) -> R {
        let n = name(i);
        let parts: [&[u8]; 1] = [&n];
        f(Key {
            tag: SHAPE_TAG,
            parts: &parts,
        })
    }

    /// The entry found for key `i`, told by its `tag_errors`, which each test sets to `i`.
    fn found(t: &HandleTable, i: u32) -> Option<u32> {
        with_key(i, |key| t.get(t.hash(key), key).map(|e| e.res.tag_errors))
    }

    fn put(t: &mut HandleTable, i: u32) {
        let res = Resolution {
            tag_errors: i,
            ..Resolution::dropped()
        };
        with_key(i, |key| {
            t.insert(t.hash(key), key, res, None);
        });
    }

    #[test]
    fn replacing_entries_moves_others_without_losing_any() {
        // Replacing an entry removes it from the dense vector, which moves the last entry
        // into its place: every other key must still find its own entry afterwards.
        let mut t = HandleTable::default();
        for i in 0..1000 {
            put(&mut t, i);
        }
        for i in (0..1000).step_by(7) {
            put(&mut t, i);
        }
        assert_eq!(t.len(), 1000);
        for i in 0..1000 {
            assert_eq!(found(&t, i), Some(i), "key {i}");
        }
        assert_eq!(found(&t, 1000), None);
    }

    #[test]
    fn a_refused_key_moves_between_tables_and_is_found_in_either() {
        let mut t = HandleTable::default();
        for i in 0..10 {
            put(&mut t, i);
        }
        let refused = Resolution {
            outcome: Outcome::Limited {
                reason: DropReason::ALL[0],
                room_epoch: NO_RETRY,
            },
            tag_errors: 3,
            ..Resolution::dropped()
        };
        with_key(3, |key| {
            t.insert(t.hash(key), key, refused, None);
        });
        assert_eq!(t.main.entries.len(), 9);
        assert_eq!(t.refused.entries.len(), 1);
        for i in 0..10 {
            assert_eq!(found(&t, i), Some(i), "key {i}");
        }
        put(&mut t, 3);
        assert_eq!((t.main.entries.len(), t.refused.entries.len()), (10, 0));
        assert_eq!(found(&t, 3), Some(3));
    }

    #[test]
    fn a_full_table_starts_afresh_and_counts_its_key_bytes_again() {
        let mut keys = Keys::default();
        let entry = |i: u32| Entry {
            key: with_key(i, |key| key.to_boxed()),
            hash: u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            res: Resolution::dropped(),
            replay: None,
        };
        for i in 0..4 {
            keys.insert(entry(i), 4, usize::MAX);
        }
        assert_eq!(keys.entries.len(), 4);
        keys.insert(entry(4), 4, usize::MAX);
        assert_eq!(keys.entries.len(), 1);
        assert_eq!(keys.index.len(), 1);
        assert!(with_key(4, |key| keys.get(entry(4).hash, key).is_some()));
        assert_eq!(keys.bytes, entry(4).key.len());
    }

    #[test]
    fn an_entry_stays_small() {
        // Every line probes an entry: a refusal outcome must not make it bigger than a
        // series handle's.
        assert!(
            std::mem::size_of::<Entry>() <= 88,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }
}
