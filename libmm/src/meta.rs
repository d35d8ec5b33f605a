//! The metadata heap: a small first-fit allocator for the allocator's own metadata.
//!
//! mm-core's slab keeps its metadata (page map, slab descriptors, object
//! states, cache names) in `alloc` collections. When the slab *is* the
//! process's global allocator, those collections would allocate from the
//! very allocator that is growing them. The [`GlobalHeap`] breaks the cycle
//! by sending every allocation made while its main heap is busy to this
//! heap instead: a separate region of address space (mapped demand-zero
//! from the server once, at start) managed by a deliberately simple
//! allocator that itself allocates nothing.
//!
//! # The algorithm
//!
//! Free space is a sorted list of extents held in a fixed-capacity array
//! ([`MAX_EXTENTS`]), out of band: the allocator never touches the memory it
//! manages. Allocation is first fit (lowest address first, which keeps the
//! touched part of the region compact), splitting the extent for
//! alignment; free inserts the extent back and coalesces it with its
//! neighbours. Sizes are rounded up to [`GRANULE`] bytes and the caller
//! passes the size back on free (a `GlobalAlloc` gets it from the layout),
//! so there are no headers. A free overlapping free space (a double free) is
//! refused. If the list is full, a freed extent that cannot be merged is
//! dropped and counted in [`MetaStats::lost_bytes`] rather than corrupt
//! anything; with the slab's allocation pattern (a few arrays growing
//! geometrically) the list stays short.
//!
//! The *high-water mark* is the end of the highest allocation ever made:
//! memory above it has never been handed out, so it is still zero and
//! `alloc_zeroed` needs to clear only the part of a block below the mark.
//!
//! [`GlobalHeap`]: crate::global::GlobalHeap

use heapless::Vec as FixedVec;

/// The allocation granule and smallest alignment, in bytes.
pub const GRANULE: u64 = 16;
/// The most free extents tracked.
pub const MAX_EXTENTS: usize = 256;

/// A free range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extent {
    start: u64,
    end: u64,
}

/// Accounting of a [`MetaHeap`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaStats {
    /// The region's base.
    pub base: u64,
    /// The region's length in bytes.
    pub len: u64,
    /// Bytes handed out (rounded to the granule).
    pub used_bytes: u64,
    /// The most bytes ever handed out at once.
    pub peak_bytes: u64,
    /// The high-water mark, as an offset from the base.
    pub high_water: u64,
    /// Free extents now.
    pub extents: usize,
    /// Bytes dropped because the extent list was full.
    pub lost_bytes: u64,
    /// Frees refused (outside the region, or overlapping free space).
    pub bad_frees: u64,
    /// Allocations that found no room.
    pub failures: u64,
}

/// A first-fit allocator over one region, with out-of-band free extents.
#[derive(Clone, Debug)]
pub struct MetaHeap {
    base: u64,
    end: u64,
    free: FixedVec<Extent, MAX_EXTENTS>,
    high_water: u64,
    used: u64,
    peak: u64,
    lost: u64,
    bad_frees: u64,
    failures: u64,
}

/// `value` rounded up to a multiple of `align` (a power of two), or `None`.
fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

impl MetaHeap {
    /// A heap over `[base, base + len)`; the range is trimmed inward to the
    /// granule. An empty or wrapping range gives a heap that allocates nothing.
    pub fn new(base: u64, len: u64) -> Self {
        let start = align_up(base, GRANULE).unwrap_or(u64::MAX);
        let end = base.checked_add(len).map_or(0, |e| e & !(GRANULE - 1));
        let mut free = FixedVec::new();
        // A region that is empty, wraps, or holds address 0 manages nothing.
        let end = if start < end && start != 0 {
            end
        } else {
            start
        };
        if start < end {
            // Capacity is at least one: this push cannot fail.
            let _ = free.push(Extent { start, end });
        }
        MetaHeap {
            base: start,
            end,
            free,
            high_water: start,
            used: 0,
            peak: 0,
            lost: 0,
            bad_frees: 0,
            failures: 0,
        }
    }

    /// Whether `addr` lies in the region.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end
    }

    /// The accounting.
    pub fn stats(&self) -> MetaStats {
        MetaStats {
            base: self.base,
            len: self.end - self.base,
            used_bytes: self.used,
            peak_bytes: self.peak,
            high_water: self.high_water - self.base,
            extents: self.free.len(),
            lost_bytes: self.lost,
            bad_frees: self.bad_frees,
            failures: self.failures,
        }
    }

    /// The granule-rounded size of a `size`-byte block.
    pub fn block_size(size: usize) -> Option<u64> {
        align_up((size as u64).max(1), GRANULE)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two). Returns
    /// the address and how many of its first bytes may be non-zero (those
    /// below the high-water mark), or `None` if no extent fits.
    pub fn alloc(&mut self, size: usize, align: usize) -> Option<(u64, u64)> {
        let r = self.try_alloc(size, align);
        if r.is_none() {
            self.failures += 1;
        }
        r
    }

    fn try_alloc(&mut self, size: usize, align: usize) -> Option<(u64, u64)> {
        let size = Self::block_size(size)?;
        if !align.is_power_of_two() {
            return None;
        }
        let align = (align as u64).max(GRANULE);
        let full = self.free.is_full();
        let (i, start) = self.free.iter().enumerate().find_map(|(i, e)| {
            let start = align_up(e.start, align)?;
            let fits = start.checked_add(size)? <= e.end;
            // A split that keeps both a head and a tail needs a free slot.
            let splits = start > e.start && start + size < e.end;
            (fits && !(splits && full)).then_some((i, start))
        })?;
        let e = self.free[i];
        let end = start + size;
        match (start > e.start, end < e.end) {
            (false, false) => {
                self.free.remove(i);
            }
            (false, true) => self.free[i].start = end,
            (true, false) => self.free[i].end = start,
            (true, true) => {
                self.free[i].end = start;
                // Checked above that a slot is free.
                let _ = self.free.insert(
                    i + 1,
                    Extent {
                        start: end,
                        end: e.end,
                    },
                );
            }
        }
        let dirty = self.high_water.saturating_sub(start).min(size);
        self.high_water = self.high_water.max(end);
        self.used += size;
        self.peak = self.peak.max(self.used);
        Some((start, dirty))
    }

    /// Frees the `size`-byte block at `addr`. Returns `false` (and changes
    /// nothing) for a block outside the region or overlapping free space.
    pub fn free(&mut self, addr: u64, size: usize) -> bool {
        let Some(size) = Self::block_size(size) else {
            self.bad_frees += 1;
            return false;
        };
        let Some(end) = addr.checked_add(size) else {
            self.bad_frees += 1;
            return false;
        };
        if addr < self.base || end > self.end || !addr.is_multiple_of(GRANULE) {
            self.bad_frees += 1;
            return false;
        }
        let i = self.free.partition_point(|e| e.start < addr);
        let prev = i.checked_sub(1).map(|p| self.free[p]);
        let next = self.free.get(i).copied();
        if prev.is_some_and(|p| p.end > addr) || next.is_some_and(|n| n.start < end) {
            self.bad_frees += 1;
            return false;
        }
        self.used -= size.min(self.used);
        let joins_prev = prev.is_some_and(|p| p.end == addr);
        let joins_next = next.is_some_and(|n| n.start == end);
        match (joins_prev, joins_next) {
            (true, true) => {
                self.free[i - 1].end = self.free[i].end;
                self.free.remove(i);
            }
            (true, false) => self.free[i - 1].end = end,
            (false, true) => self.free[i].start = addr,
            (false, false) => {
                if self.free.insert(i, Extent { start: addr, end }).is_err() {
                    self.lost += size;
                }
            }
        }
        true
    }

    /// Checks the extent list: sorted, disjoint, not adjacent, inside the region.
    pub fn check(&self) -> Result<(), &'static str> {
        for e in &self.free {
            if e.start >= e.end || e.start < self.base || e.end > self.end {
                return Err("extent out of range");
            }
        }
        if self.free.windows(2).any(|w| w[0].end >= w[1].start) {
            return Err("extents overlap, touch or are unsorted");
        }
        let free: u64 = self.free.iter().map(|e| e.end - e.start).sum();
        if free + self.used + self.lost != self.end - self.base {
            return Err("free + used + lost != region");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use proptest::prelude::*;

    const BASE: u64 = 0x20_0000_0000;

    #[test]
    fn first_fit_split_and_coalesce() {
        let mut h = MetaHeap::new(BASE, 1 << 20);
        let (a, dirty) = h.alloc(24, 8).unwrap();
        assert_eq!((a, dirty), (BASE, 0));
        let (b, _) = h.alloc(100, 64).unwrap();
        assert_eq!(b, BASE + 64);
        // The gap [BASE+32, BASE+64) left by the alignment is used next.
        let (c, _) = h.alloc(16, 16).unwrap();
        assert_eq!(c, BASE + 32);
        h.check().unwrap();
        assert!(h.free(b, 100));
        assert!(!h.free(b, 100), "double free");
        assert!(h.free(a, 24));
        assert!(h.free(c, 16));
        h.check().unwrap();
        assert_eq!(h.stats().extents, 1);
        assert_eq!(h.stats().used_bytes, 0);
        // Memory below the high-water mark is reported dirty.
        let (d, dirty) = h.alloc(200, 8).unwrap();
        assert_eq!(d, BASE);
        assert_eq!(dirty, 64 + 112);
    }

    #[test]
    fn refuses_what_is_not_its_own() {
        let mut h = MetaHeap::new(BASE, 4096);
        assert!(!h.free(BASE - 16, 16));
        assert!(!h.free(BASE + 4096, 16));
        assert!(!h.free(BASE + 8, 16));
        assert!(!h.free(BASE, 16), "free space");
        assert_eq!(h.stats().bad_frees, 4);
        assert_eq!(h.alloc(8192, 8), None);
        assert_eq!(h.alloc(16, 3), None);
        assert_eq!(h.stats().failures, 2);
        assert!(h.alloc(4096, 4096).is_some());
        assert_eq!(h.alloc(1, 1), None);
        let empty = MetaHeap::new(0, 4096);
        assert!(!empty.contains(0));
        assert_eq!(MetaHeap::new(u64::MAX - 15, 64).stats().len, 0);
    }

    #[test]
    fn a_full_extent_list_loses_bytes_rather_than_corrupt() {
        let mut h = MetaHeap::new(BASE, 1 << 20);
        let blocks: alloc::vec::Vec<u64> = (0..2 * MAX_EXTENTS + 4)
            .map(|_| h.alloc(16, 16).unwrap().0)
            .collect();
        // Free every other block: each becomes its own extent.
        for &b in blocks.iter().step_by(2) {
            assert!(h.free(b, 16));
        }
        h.check().unwrap();
        assert!(h.stats().lost_bytes > 0);
        // Freeing the rest merges what it can; nothing overlaps.
        for &b in blocks.iter().skip(1).step_by(2) {
            assert!(h.free(b, 16));
        }
        h.check().unwrap();
    }

    proptest! {
        /// Random allocations and frees against a model: blocks aligned,
        /// inside the region, disjoint; the bookkeeping checks out after
        /// every step; everything freed coalesces back into one extent.
        #[test]
        fn random_sequences_against_a_model(ops in prop::collection::vec((any::<bool>(), 1usize..5000, 0u32..8, any::<prop::sample::Index>()), 1..300)) {
            let mut h = MetaHeap::new(BASE, 1 << 20);
            let mut live: BTreeMap<u64, usize> = BTreeMap::new();
            for (alloc, size, align_log, pick) in ops {
                if alloc || live.is_empty() {
                    let align = 1usize << (align_log + 2);
                    if let Some((addr, dirty)) = h.alloc(size, align) {
                        prop_assert_eq!(addr % align as u64, 0);
                        prop_assert!(dirty <= MetaHeap::block_size(size).unwrap());
                        let end = addr + MetaHeap::block_size(size).unwrap();
                        prop_assert!(h.contains(addr) && end <= BASE + (1 << 20));
                        if let Some((&s, &z)) = live.range(..end).next_back() {
                            prop_assert!(s + MetaHeap::block_size(z).unwrap() <= addr);
                        }
                        live.insert(addr, size);
                    }
                } else {
                    let (&addr, &size) = live.iter().nth(pick.index(live.len())).unwrap();
                    live.remove(&addr);
                    prop_assert!(h.free(addr, size));
                }
                prop_assert_eq!(h.check(), Ok(()));
            }
            for (addr, size) in core::mem::take(&mut live) {
                prop_assert!(h.free(addr, size));
            }
            prop_assert_eq!(h.stats().used_bytes, 0);
            prop_assert_eq!(h.stats().extents, 1);
        }
    }
}
