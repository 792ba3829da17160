//! The handle table's index: from a key's hash to the positions of the entries that may hold
//! it.
//!
//! Written here rather than taken from hashbrown because the hot path must know where a
//! key's probe starts from its hash alone, before reading anything, to prefetch it: a packed
//! datagram's lines then have their slots, entries and series in flight together (see
//! `Worker::datagram`). hashbrown keeps its probe position private.
//!
//! Open addressing with linear probing over 64-bit slots, at most half full. A slot holds the
//! high half of the hash (its fingerprint, which also fixes the slot the probe starts at)
//! and the entry's position plus one; 0 is empty. Removal shifts the following slots back
//! (no tombstones), so a probe always ends at the first empty slot.

/// Positions are below this (the handle table's bounds keep them far below).
pub(super) const MAX_POSITION: usize = u32::MAX as usize - 1;

const EMPTY: u64 = 0;
const HIGH: u64 = !0xffff_ffff;

#[derive(Debug)]
pub(super) struct Index {
    slots: Box<[u64]>,
    /// log2 of the slot count.
    bits: u32,
    len: usize,
}

impl Default for Index {
    fn default() -> Self {
        Index::with_bits(4)
    }
}

#[inline]
fn slot_of(hash: u64, pos: usize) -> u64 {
    debug_assert!(pos <= MAX_POSITION);
    (hash & HIGH) | (pos as u64 + 1)
}

#[inline]
fn pos_in(slot: u64) -> usize {
    ((slot & !HIGH) - 1) as usize
}

impl Index {
    fn with_bits(bits: u32) -> Index {
        Index {
            slots: vec![EMPTY; 1 << bits].into_boxed_slice(),
            bits,
            len: 0,
        }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Where the probe of a hash (or of a slot, which keeps the hash's high half) starts.
    #[inline]
    fn home(&self, hash: u64) -> usize {
        // `bits` stays far below 32, so the start depends on the fingerprint only.
        (hash >> (64 - self.bits)) as usize
    }

    /// Hints the slot where the probe for `hash` starts.
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        if let Some(slot) = self.slots.get(self.home(hash)) {
            crate::prefetch::prefetch(slot);
        }
    }

    /// The first position with `hash`'s fingerprint for which `eq` holds.
    #[inline]
    pub(super) fn find(&self, hash: u64, mut eq: impl FnMut(usize) -> bool) -> Option<usize> {
        let i = self.probe(hash, |slot| (slot ^ hash) & HIGH == 0 && eq(pos_in(slot)))?;
        self.slots.get(i).map(|&slot| pos_in(slot))
    }

    /// The index of the first slot of `hash`'s run for which `hit` holds, before the run's
    /// end (an empty slot).
    #[inline]
    fn probe(&self, hash: u64, mut hit: impl FnMut(u64) -> bool) -> Option<usize> {
        let mask = self.mask();
        let mut i = self.home(hash);
        loop {
            let slot = *self.slots.get(i)?;
            if slot == EMPTY {
                return None;
            }
            if hit(slot) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `pos` under `hash`.
    pub(super) fn insert(&mut self, hash: u64, pos: usize) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.place(slot_of(hash, pos));
        self.len += 1;
    }

    fn place(&mut self, slot: u64) {
        let mask = self.mask();
        let mut i = self.home(slot);
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    fn grow(&mut self) {
        let old = std::mem::replace(self, Index::with_bits(self.bits + 1));
        // A slot keeps what its start depends on, so no hash is needed again.
        for &slot in old.slots.iter().filter(|&&s| s != EMPTY) {
            self.place(slot);
        }
        self.len = old.len;
    }

    /// Points the slot of (`hash`, `from`) at `to` instead.
    pub(super) fn renumber(&mut self, hash: u64, from: usize, to: usize) {
        if let Some(i) = self.slot_index(hash, from) {
            self.slots[i] = slot_of(hash, to);
        }
    }

    /// Removes the slot of (`hash`, `pos`).
    pub(super) fn remove(&mut self, hash: u64, pos: usize) {
        let Some(mut hole) = self.slot_index(hash, pos) else {
            return;
        };
        let mask = self.mask();
        // Backward shift: a later slot of the run moves into the hole unless its probe
        // starts after the hole (cyclically), which would put it before its own start.
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let slot = self.slots[i];
            if slot == EMPTY {
                break;
            }
            let home = self.home(slot);
            let dist_home = i.wrapping_sub(home) & mask;
            let dist_hole = i.wrapping_sub(hole) & mask;
            if dist_home >= dist_hole {
                self.slots[hole] = slot;
                hole = i;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
    }

    fn slot_index(&self, hash: u64, pos: usize) -> Option<usize> {
        let want = slot_of(hash, pos);
        self.probe(hash, |slot| slot == want)
    }

    pub(super) fn clear(&mut self) {
        self.slots.fill(EMPTY);
        self.len = 0;
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// Hashes that crowd few starting slots, so runs are long and wrap around the end.
    fn crowded(k: u16) -> u64 {
        (u64::from(k % 5) << 61) | (u64::from(k) << 32) | u64::from(k)
    }

    proptest! {
        #[test]
        fn agrees_with_a_map_under_inserts_removals_and_renumbering(
            ops in proptest::collection::vec((0u8..3, 0u16..300), 1..600),
        ) {
            // Positions are dense, as the handle table keeps them: a removal moves the last
            // position into the hole.
            let mut index = Index::default();
            let mut by_pos: Vec<u16> = Vec::new();
            let mut model: HashMap<u16, usize> = HashMap::new();
            for (op, k) in ops {
                match (op, model.get(&k).copied()) {
                    (0 | 1, None) => {
                        let pos = by_pos.len();
                        by_pos.push(k);
                        index.insert(crowded(k), pos);
                        model.insert(k, pos);
                    }
                    (2, Some(pos)) => {
                        index.remove(crowded(k), pos);
                        model.remove(&k);
                        by_pos.swap_remove(pos);
                        if let Some(&moved) = by_pos.get(pos) {
                            index.renumber(crowded(moved), by_pos.len(), pos);
                            model.insert(moved, pos);
                        }
                    }
                    _ => {}
                }
                prop_assert_eq!(index.len(), model.len());
            }
            for k in 0u16..300 {
                let found = index.find(crowded(k), |p| by_pos.get(p) == Some(&k));
                prop_assert_eq!(found, model.get(&k).copied(), "key {}", k);
            }
            // At most half full, so every probe ends.
            prop_assert!(index.len() * 2 <= index.slots.len());
        }
    }

    #[test]
    fn clearing_forgets_everything_and_keeps_working() {
        let mut index = Index::default();
        for k in 0..100u16 {
            index.insert(crowded(k), usize::from(k));
        }
        index.clear();
        assert_eq!(index.len(), 0);
        assert_eq!(index.find(crowded(7), |_| true), None);
        index.insert(crowded(7), 0);
        assert_eq!(index.find(crowded(7), |p| p == 0), Some(0));
    }
}
