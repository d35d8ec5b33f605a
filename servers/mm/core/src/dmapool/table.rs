//! The chunk table: from a virtual address to the chunk of a pool that holds it, in O(1).
//!
//! `dma_pool_free(vaddr)` must find the block's chunk without reading the
//! memory at `vaddr` (Linux 6.3+ reads the free-list link stored in the
//! block; we keep everything out of band). Each pool keeps an
//! open-addressing hash table keyed by the granule number `vaddr >> gshift`,
//! where the granule is the pool's chunk alignment: a chunk covers whole
//! granules and no two chunks of a pool share one, so every granule of a
//! chunk maps to it. Fibonacci hashing, linear probing, a load factor of at
//! most one half; entries are only ever added (a pool keeps its chunks until
//! it is destroyed, as in Linux 6.3+), so there are no tombstones. Growth is
//! fallible (`try_reserve`), never an abort.

use alloc::vec::Vec;

/// An empty slot's key: no granule number reaches it (`gshift` ≥ 12).
const EMPTY: u64 = u64::MAX;
/// 2⁶⁴ / φ, the multiplier of Fibonacci hashing.
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;
/// The smallest capacity.
const MIN_CAPACITY: usize = 8;

/// One slot: a granule number and its chunk's index in the pool.
#[derive(Clone, Copy, Debug)]
struct Slot {
    key: u64,
    chunk: u32,
}

/// The metadata could not grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TableFull;

/// Granule number → chunk index.
#[derive(Debug, Default)]
pub(super) struct ChunkTable {
    slots: Vec<Slot>,
    len: usize,
    /// `64 - log2(capacity)`.
    shift: u32,
}

impl ChunkTable {
    /// An empty table (allocates nothing).
    pub const fn new() -> Self {
        ChunkTable {
            slots: Vec::new(),
            len: 0,
            shift: 64,
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The chunk of granule `key`.
    #[inline(always)]
    pub fn get(&self, key: u64) -> Option<u32> {
        let mask = self.slots.len().wrapping_sub(1);
        let mut i = (key.wrapping_mul(MUL) >> (self.shift & 63)) as usize;
        // At least half the slots are empty, so the probe ends well before
        // this bound; the bound only makes termination obvious.
        for _ in 0..self.slots.len() {
            let slot = self.slots.get(i & mask)?;
            if slot.key == key {
                return Some(slot.chunk);
            }
            if slot.key == EMPTY {
                return None;
            }
            i = i.wrapping_add(1);
        }
        None
    }

    /// Makes room for `additional` more entries without exceeding half the capacity.
    pub fn reserve(&mut self, additional: usize) -> Result<(), TableFull> {
        let need = self
            .len
            .checked_add(additional)
            .and_then(|n| n.checked_mul(2))
            .ok_or(TableFull)?;
        if need <= self.slots.len() {
            return Ok(());
        }
        let capacity = need
            .max(MIN_CAPACITY)
            .checked_next_power_of_two()
            .ok_or(TableFull)?;
        let mut slots = Vec::new();
        slots.try_reserve_exact(capacity).map_err(|_| TableFull)?;
        slots.resize(
            capacity,
            Slot {
                key: EMPTY,
                chunk: 0,
            },
        );
        let old = core::mem::replace(&mut self.slots, slots);
        self.shift = 64 - capacity.trailing_zeros();
        self.len = 0;
        for slot in old.into_iter().filter(|s| s.key != EMPTY) {
            self.insert(slot.key, slot.chunk);
        }
        Ok(())
    }

    /// Adds `key → chunk`; room must have been reserved and `key` must be
    /// absent (a present key is overwritten).
    pub fn insert(&mut self, key: u64, chunk: u32) {
        let mask = self.slots.len().wrapping_sub(1);
        let mut i = (key.wrapping_mul(MUL) >> (self.shift & 63)) as usize;
        for _ in 0..self.slots.len() {
            if let Some(slot) = self.slots.get_mut(i & mask)
                && (slot.key == EMPTY || slot.key == key)
            {
                if slot.key == EMPTY {
                    self.len += 1;
                }
                *slot = Slot { key, chunk };
                return;
            }
            i = i.wrapping_add(1);
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.key != EMPTY)
            .map(|s| (s.key, s.chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_inserted_and_nothing_else() {
        let mut t = ChunkTable::new();
        assert_eq!(t.get(5), None);
        for k in 0..1000u64 {
            t.reserve(1).unwrap();
            t.insert(k * 7 + 3, k as u32);
            assert!(t.slots.len() >= 2 * t.len());
        }
        assert_eq!(t.len(), 1000);
        for k in 0..1000u64 {
            assert_eq!(t.get(k * 7 + 3), Some(k as u32));
            assert_eq!(t.get(k * 7 + 4), None);
        }
        assert_eq!(t.iter().count(), 1000);
    }

    #[test]
    fn overwrite_keeps_len() {
        let mut t = ChunkTable::new();
        t.reserve(2).unwrap();
        t.insert(9, 1);
        t.insert(9, 2);
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(9), Some(2));
    }

    #[test]
    fn absurd_reservation_fails_cleanly() {
        let mut t = ChunkTable::new();
        assert_eq!(t.reserve(usize::MAX), Err(TableFull));
        assert_eq!(t.reserve(usize::MAX / 4), Err(TableFull));
        assert_eq!(t.len(), 0);
    }
}
