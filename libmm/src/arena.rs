//! The heap's page source: a buddy allocator over the chunks of address space the heap has mapped.
//!
//! The client-side slab takes its pages from [`ArenaPages`], which hands out
//! naturally aligned runs of `2^order` pages (order 0 to [`MAX_ORDER`], 4 KiB
//! to 4 MiB) from *chunks*: large anonymous demand-zero regions the heap
//! mapped from the MM server (each a multiple of [`BLOCK_BYTES`] and aligned
//! to it). A page of a chunk costs nothing until it is first touched, when
//! the server's fault handler backs it; so handing pages to the slab is pure
//! bookkeeping, without IPC. Only growing (mapping another chunk) and
//! trimming (giving pages back) talk to the server, and both are done by the
//! [`Heap`](crate::heap::Heap), which owns the transport.
//!
//! # Bookkeeping
//!
//! Out of band, like everything in the allocators: per chunk, one tag byte
//! and one `u32` per page of its *active* part, and per order a stack of
//! free blocks. A chunk is activated one 4 MiB block at a time, lowest
//! first, only when no free block is big enough, so the metadata and the
//! memory touched stay proportional to what the heap has used, not to the
//! chunk's size. The tag of a block's first page says whether the block is
//! free or handed out, its order, and whether it is *clean*; every other
//! page's tag is 0. The `u32` of a free block's first page is its index in
//! its order's stack, so a buddy is removed in O(1) when blocks coalesce.
//!
//! # Clean and dirty
//!
//! A block never handed out since its chunk was mapped (or since it was last
//! decommitted) is *clean*: its pages are untouched, hence zero and not
//! resident. Every freed block is *dirty*; a block merged from a dirty and a
//! clean buddy is dirty. The dirty free pages are what the heap may give
//! back to the server ([`ArenaPages::dirty_blocks`], then
//! [`ArenaPages::mark_clean`] once the server has dropped them), and a
//! clean block handed out needs no zeroing ([`ArenaPages::take_clean`]).

use alloc::vec::Vec;

use mm_core::addr::{PAGE_SHIFT, PAGE_SIZE};
use mm_core::pages::PageSource;
use mm_core::slab::KMALLOC_MAX_ORDER;

/// The largest order handed out: a block of 4 MiB, the largest kmalloc.
pub const MAX_ORDER: u32 = KMALLOC_MAX_ORDER;
/// Pages per largest block.
pub const BLOCK_PAGES: usize = 1 << MAX_ORDER;
/// Bytes per largest block: chunks are multiples of this, aligned to it.
pub const BLOCK_BYTES: u64 = PAGE_SIZE << MAX_ORDER;

/// Tag bit: the first page of a free block.
const FREE: u8 = 0x20;
/// Tag bit: the first page of a block handed out.
const USED: u8 = 0x40;
/// Tag bit (with [`FREE`]): the block is clean.
const CLEAN: u8 = 0x80;
/// Tag bits: the block's order.
const ORDER: u8 = 0x1f;

/// One chunk of address space.
#[derive(Debug)]
struct Chunk {
    base: u64,
    /// Its length in pages.
    pages: usize,
    /// Per active page: 0, or a block head's tag.
    tag: Vec<u8>,
    /// Per active page: a free block head's index in its order's stack.
    pos: Vec<u32>,
}

impl Chunk {
    /// Pages activated so far (the metadata covers them).
    fn active(&self) -> usize {
        self.tag.len()
    }

    /// The page index of `addr` if it is an active page of this chunk.
    fn page(&self, addr: u64) -> Option<usize> {
        let i = (addr.checked_sub(self.base)? >> PAGE_SHIFT) as usize;
        (i < self.active()).then_some(i)
    }
}

/// Page accounting of an [`ArenaPages`].
///
/// Conservation: `free_pages + used_pages == active_pages <= reserved_pages`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaStats {
    /// Chunks registered.
    pub chunks: usize,
    /// Pages of address space in the chunks.
    pub reserved_pages: u64,
    /// Pages activated (covered by metadata).
    pub active_pages: u64,
    /// Pages in free blocks.
    pub free_pages: u64,
    /// Pages in free blocks that may be resident (dirty).
    pub dirty_free_pages: u64,
    /// Pages handed out.
    pub used_pages: u64,
    /// Frees refused (not a block handed out with that order).
    pub bad_frees: u64,
}

/// A buddy allocator over the heap's chunks: the slab's [`PageSource`].
#[derive(Debug, Default)]
pub struct ArenaPages {
    /// Sorted by base.
    chunks: Vec<Chunk>,
    /// Per order, the free blocks' addresses.
    free: [Vec<u64>; MAX_ORDER as usize + 1],
    stats: ArenaStats,
    /// The last block handed out, if it was clean.
    last_clean: Option<u64>,
    /// Dirty free pages above which the heap should trim.
    trim_threshold: u64,
    /// Whether more dirty pages are free than the threshold (kept up to
    /// date, so that the check after every free is one byte).
    trim_wanted: bool,
}

impl ArenaPages {
    /// An empty page source (no chunks) that wants trimming once more than
    /// `trim_threshold` dirty pages are free.
    pub fn new(trim_threshold: u64) -> Self {
        ArenaPages {
            trim_threshold,
            ..ArenaPages::default()
        }
    }

    /// Registers a chunk `[base, base + len)`: both multiples of
    /// [`BLOCK_BYTES`], not overlapping another chunk. Returns `false` (and
    /// changes nothing) otherwise, or if metadata could not grow.
    pub fn add_chunk(&mut self, base: u64, len: u64) -> bool {
        let Some(end) = base.checked_add(len) else {
            return false;
        };
        if base == 0
            || len == 0
            || !base.is_multiple_of(BLOCK_BYTES)
            || !len.is_multiple_of(BLOCK_BYTES)
        {
            return false;
        }
        let at = self.chunks.partition_point(|c| c.base < base);
        let clear_before = at == 0 || {
            let c = &self.chunks[at - 1];
            c.base + ((c.pages as u64) << PAGE_SHIFT) <= base
        };
        let clear_after = self.chunks.get(at).is_none_or(|c| end <= c.base);
        if !clear_before || !clear_after || self.chunks.try_reserve(1).is_err() {
            return false;
        }
        self.chunks.insert(
            at,
            Chunk {
                base,
                pages: (len >> PAGE_SHIFT) as usize,
                tag: Vec::new(),
                pos: Vec::new(),
            },
        );
        self.stats.chunks += 1;
        self.stats.reserved_pages += len >> PAGE_SHIFT;
        true
    }

    /// Unregisters the chunk at `base` if none of its pages was ever used
    /// (undoing [`ArenaPages::add_chunk`]); returns whether it did.
    pub fn remove_chunk(&mut self, base: u64) -> bool {
        match self.chunks.iter().position(|c| c.base == base) {
            Some(i) if self.chunks[i].active() == 0 => {
                let c = self.chunks.remove(i);
                self.stats.chunks -= 1;
                self.stats.reserved_pages -= c.pages as u64;
                true
            }
            _ => false,
        }
    }

    /// Whether `addr` lies in a registered chunk.
    pub fn owns(&self, addr: u64) -> bool {
        self.chunk_index(addr).is_some()
    }

    /// The page accounting.
    pub fn stats(&self) -> ArenaStats {
        self.stats
    }

    /// Whether more dirty pages are free than the trim threshold.
    #[inline(always)]
    pub fn trim_wanted(&self) -> bool {
        self.trim_wanted
    }

    /// Recomputes [`Self::trim_wanted`] after the counters changed.
    fn update_trim_wanted(&mut self) {
        self.trim_wanted = self.stats.dirty_free_pages > self.trim_threshold;
    }

    /// The trim threshold in pages.
    pub fn trim_threshold(&self) -> u64 {
        self.trim_threshold
    }

    /// Sets the trim threshold in pages.
    pub fn set_trim_threshold(&mut self, pages: u64) {
        self.trim_threshold = pages;
        self.update_trim_wanted();
    }

    /// Whether the block just handed out at `addr` was clean (its pages
    /// untouched, hence zero); forgets it either way.
    pub fn take_clean(&mut self, addr: u64) -> bool {
        self.last_clean.take() == Some(addr)
    }

    /// Up to `out.len()` dirty free blocks as `(addr, order)`, largest first.
    /// Returns how many were written.
    pub fn dirty_blocks(&self, out: &mut [(u64, u32)]) -> usize {
        let mut n = 0;
        for order in (0..=MAX_ORDER).rev() {
            for &addr in &self.free[order as usize] {
                if n == out.len() {
                    return n;
                }
                if self.tag_of(addr).is_some_and(|t| t & CLEAN == 0) {
                    out[n] = (addr, order);
                    n += 1;
                }
            }
        }
        n
    }

    /// Marks the free block `(addr, order)` clean, after the server dropped
    /// its pages. Returns whether it was a dirty free block of that order.
    pub fn mark_clean(&mut self, addr: u64, order: u32) -> bool {
        let Some((c, i)) = self.locate(addr) else {
            return false;
        };
        let tag = &mut self.chunks[c].tag[i];
        if *tag != FREE | order as u8 {
            return false;
        }
        *tag |= CLEAN;
        self.stats.dirty_free_pages -= 1 << order;
        self.update_trim_wanted();
        true
    }

    /// The chunk holding `addr`.
    fn chunk_index(&self, addr: u64) -> Option<usize> {
        let at = self
            .chunks
            .partition_point(|c| c.base <= addr)
            .checked_sub(1)?;
        let c = &self.chunks[at];
        ((addr - c.base) >> PAGE_SHIFT < c.pages as u64).then_some(at)
    }

    /// The chunk and page index of an active page.
    fn locate(&self, addr: u64) -> Option<(usize, usize)> {
        let c = self.chunk_index(addr)?;
        Some((c, self.chunks[c].page(addr)?))
    }

    /// The tag of the page at `addr`, if active.
    fn tag_of(&self, addr: u64) -> Option<u8> {
        let (c, i) = self.locate(addr)?;
        Some(self.chunks[c].tag[i])
    }

    /// Pushes the free block `(addr, order)` with `clean`; `(c, i)` locate it.
    fn push_free(&mut self, c: usize, i: usize, addr: u64, order: u32, clean: bool) {
        let stack = &mut self.free[order as usize];
        let chunk = &mut self.chunks[c];
        chunk.tag[i] = FREE | order as u8 | if clean { CLEAN } else { 0 };
        chunk.pos[i] = stack.len() as u32;
        stack.push(addr);
        self.stats.free_pages += 1 << order;
        if !clean {
            self.stats.dirty_free_pages += 1 << order;
        }
    }

    /// Removes the free block at `(c, i)` of `order` from its stack; returns
    /// whether it was clean.
    fn unlink_free(&mut self, c: usize, i: usize, order: u32) -> bool {
        let chunk = &mut self.chunks[c];
        let clean = chunk.tag[i] & CLEAN != 0;
        let p = chunk.pos[i] as usize;
        chunk.tag[i] = 0;
        let stack = &mut self.free[order as usize];
        stack.swap_remove(p);
        if let Some(&moved) = stack.get(p)
            && let Some((mc, mi)) = self.locate(moved)
        {
            self.chunks[mc].pos[mi] = p as u32;
        }
        self.stats.free_pages -= 1 << order;
        if !clean {
            self.stats.dirty_free_pages -= 1 << order;
        }
        clean
    }

    /// Activates the next 4 MiB block of some chunk as a clean free block.
    fn activate(&mut self) -> bool {
        let Some(c) = self.chunks.iter().position(|c| c.active() < c.pages) else {
            return false;
        };
        let chunk = &mut self.chunks[c];
        let start = chunk.active();
        // Reserve everything first, so that failure changes nothing.
        if chunk.tag.try_reserve(BLOCK_PAGES).is_err()
            || chunk.pos.try_reserve(BLOCK_PAGES).is_err()
            || self.free[MAX_ORDER as usize].try_reserve(1).is_err()
        {
            return false;
        }
        chunk.tag.resize(start + BLOCK_PAGES, 0);
        chunk.pos.resize(start + BLOCK_PAGES, 0);
        let addr = chunk.base + ((start as u64) << PAGE_SHIFT);
        self.stats.active_pages += BLOCK_PAGES as u64;
        self.push_free(c, start, addr, MAX_ORDER, true);
        true
    }

    /// Reserves room in the stacks of orders `order..top` for the halves a
    /// split will push, so that a split cannot fail halfway.
    fn reserve_split(&mut self, order: u32, top: u32) -> bool {
        (order..top).all(|o| self.free[o as usize].try_reserve(1).is_ok())
    }

    /// Checks every invariant of the bookkeeping: tags tile each chunk's
    /// active part with blocks, the stacks hold exactly the free heads with
    /// the right positions, and the counters add up.
    pub fn check(&self) -> Result<(), &'static str> {
        let (mut free, mut dirty, mut used, mut active) = (0u64, 0u64, 0u64, 0u64);
        for chunk in &self.chunks {
            if chunk.active() > chunk.pages || chunk.pos.len() != chunk.active() {
                return Err("active part out of range");
            }
            active += chunk.active() as u64;
            let mut i = 0;
            while i < chunk.active() {
                let tag = chunk.tag[i];
                let order = (tag & ORDER) as u32;
                let n = 1usize << order;
                if order > MAX_ORDER || i % n != 0 || i + n > chunk.active() {
                    return Err("block misaligned or out of range");
                }
                if chunk.tag[i + 1..i + n].iter().any(|&t| t != 0) {
                    return Err("a block's inner page is tagged");
                }
                let addr = chunk.base + ((i as u64) << PAGE_SHIFT);
                if tag & FREE != 0 && tag & USED == 0 {
                    free += n as u64;
                    if tag & CLEAN == 0 {
                        dirty += n as u64;
                    }
                    if self.free[order as usize].get(chunk.pos[i] as usize) != Some(&addr) {
                        return Err("free block not at its stack position");
                    }
                } else if tag & USED != 0 && tag & (FREE | CLEAN) == 0 {
                    used += n as u64;
                } else {
                    return Err("page is not a block head");
                }
                i += n;
            }
        }
        let stacked: usize = self.free.iter().map(Vec::len).sum();
        let heads = self
            .chunks
            .iter()
            .flat_map(|c| c.tag.iter())
            .filter(|&&t| t & FREE != 0)
            .count();
        if stacked != heads {
            return Err("stacks and free heads disagree");
        }
        let s = &self.stats;
        if s.free_pages != free
            || s.dirty_free_pages != dirty
            || s.used_pages != used
            || s.active_pages != active
            || free + used != active
            || active > s.reserved_pages
        {
            return Err("counters disagree with the tags");
        }
        Ok(())
    }
}

impl PageSource for ArenaPages {
    fn alloc_pages(&mut self, order: u32) -> Option<u64> {
        self.last_clean = None;
        if order > MAX_ORDER {
            return None;
        }
        let top = loop {
            match (order..=MAX_ORDER).find(|&o| !self.free[o as usize].is_empty()) {
                Some(o) => break o,
                None if self.activate() => {}
                None => return None,
            }
        };
        if !self.reserve_split(order, top) {
            return None;
        }
        let addr = *self.free[top as usize].last()?;
        let (c, i) = self.locate(addr)?;
        let clean = self.unlink_free(c, i, top);
        for o in (order..top).rev() {
            let half = 1usize << o;
            self.push_free(c, i + half, addr + ((half as u64) << PAGE_SHIFT), o, clean);
        }
        self.chunks[c].tag[i] = USED | order as u8;
        self.stats.used_pages += 1 << order;
        if clean {
            self.last_clean = Some(addr);
        }
        self.update_trim_wanted();
        Some(addr)
    }

    fn free_pages(&mut self, addr: u64, order: u32) {
        self.last_clean = None;
        let Some((c, mut i)) = self.locate(addr) else {
            self.stats.bad_frees += 1;
            return;
        };
        if order > MAX_ORDER || self.chunks[c].tag[i] != USED | order as u8 {
            self.stats.bad_frees += 1;
            return;
        }
        // Reserve the largest push up front (coalescing only removes).
        if (order..=MAX_ORDER).any(|o| self.free[o as usize].try_reserve(1).is_err()) {
            // Keep the block rather than corrupt the stacks; it stays used.
            self.stats.bad_frees += 1;
            return;
        }
        self.chunks[c].tag[i] = 0;
        self.stats.used_pages -= 1 << order;
        let mut order = order;
        while order < MAX_ORDER {
            let buddy = i ^ (1 << order);
            let chunk = &self.chunks[c];
            if buddy >= chunk.active() || chunk.tag[buddy] & !CLEAN != FREE | order as u8 {
                break;
            }
            // A clean buddy merged with this dirty block makes a dirty block.
            let _ = self.unlink_free(c, buddy, order);
            i = i.min(buddy);
            order += 1;
        }
        let base = self.chunks[c].base + ((i as u64) << PAGE_SHIFT);
        self.push_free(c, i, base, order, false);
        self.update_trim_wanted();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use proptest::prelude::*;

    const BASE: u64 = 0x40_0000_0000;

    fn arena(blocks: u64) -> ArenaPages {
        let mut a = ArenaPages::new(0);
        assert!(a.add_chunk(BASE, blocks * BLOCK_BYTES));
        a
    }

    #[test]
    fn chunks_must_be_aligned_and_disjoint() {
        let mut a = ArenaPages::new(0);
        assert!(!a.add_chunk(BASE + PAGE_SIZE, BLOCK_BYTES));
        assert!(!a.add_chunk(BASE, BLOCK_BYTES + PAGE_SIZE));
        assert!(!a.add_chunk(0, BLOCK_BYTES));
        assert!(!a.add_chunk(u64::MAX - BLOCK_BYTES + 1, BLOCK_BYTES));
        assert!(a.add_chunk(BASE, 2 * BLOCK_BYTES));
        assert!(!a.add_chunk(BASE + BLOCK_BYTES, BLOCK_BYTES));
        assert!(!a.add_chunk(BASE - BLOCK_BYTES, 2 * BLOCK_BYTES));
        assert!(a.add_chunk(BASE - BLOCK_BYTES, BLOCK_BYTES));
        assert!(a.add_chunk(BASE + 2 * BLOCK_BYTES, BLOCK_BYTES));
        assert_eq!(a.stats().chunks, 3);
        assert_eq!(a.stats().reserved_pages, 4 * BLOCK_PAGES as u64);
        assert!(a.owns(BASE - 1));
        assert!(!a.owns(BASE + 3 * BLOCK_BYTES));
        a.check().unwrap();
        // An unused chunk can be taken back; a used one cannot.
        assert!(a.remove_chunk(BASE + 2 * BLOCK_BYTES));
        assert!(!a.remove_chunk(BASE + 2 * BLOCK_BYTES));
        let p = a.alloc_pages(0).unwrap();
        assert!(!a.remove_chunk(p));
        assert_eq!(a.stats().chunks, 2);
        a.check().unwrap();
    }

    #[test]
    fn blocks_are_naturally_aligned_and_activation_is_lazy() {
        let mut a = arena(4);
        let p = a.alloc_pages(0).unwrap();
        assert_eq!(p, BASE);
        assert_eq!(a.stats().active_pages, BLOCK_PAGES as u64);
        let q = a.alloc_pages(3).unwrap();
        assert_eq!(q % (8 * PAGE_SIZE), 0);
        let r = a.alloc_pages(MAX_ORDER).unwrap();
        assert_eq!(r, BASE + BLOCK_BYTES);
        assert_eq!(a.stats().active_pages, 2 * BLOCK_PAGES as u64);
        a.check().unwrap();
        a.free_pages(p, 0);
        a.free_pages(q, 3);
        a.free_pages(r, MAX_ORDER);
        a.check().unwrap();
        // Everything coalesced back into whole blocks.
        assert_eq!(a.free[MAX_ORDER as usize].len(), 2);
        assert_eq!(a.stats().used_pages, 0);
    }

    #[test]
    fn exhaustion_and_bad_frees() {
        let mut a = arena(1);
        let x = a.alloc_pages(MAX_ORDER).unwrap();
        assert_eq!(a.alloc_pages(0), None);
        assert_eq!(a.alloc_pages(MAX_ORDER + 1), None);
        a.free_pages(x + PAGE_SIZE, 0); // interior
        a.free_pages(x, 3); // wrong order
        a.free_pages(0x1000, 0); // outside
        assert_eq!(a.stats().bad_frees, 3);
        a.free_pages(x, MAX_ORDER);
        a.free_pages(x, MAX_ORDER); // double free
        assert_eq!(a.stats().bad_frees, 4);
        a.check().unwrap();
    }

    #[test]
    fn clean_blocks_are_reported_once_and_dirty_ones_trimmed() {
        let mut a = arena(1);
        let x = a.alloc_pages(2).unwrap();
        assert!(a.take_clean(x));
        assert!(!a.take_clean(x));
        a.free_pages(x, 2);
        // Freed pages are dirty: the merged block is too.
        assert_eq!(a.stats().dirty_free_pages, BLOCK_PAGES as u64);
        let y = a.alloc_pages(2).unwrap();
        assert!(!a.take_clean(y));
        let mut out = [(0, 0); 8];
        let n = a.dirty_blocks(&mut out);
        assert!(n > 0);
        // Largest first.
        assert!(out[..n].windows(2).all(|w| w[0].1 >= w[1].1));
        for &(addr, order) in &out[..n] {
            assert!(a.mark_clean(addr, order));
            assert!(!a.mark_clean(addr, order));
        }
        assert_eq!(a.stats().dirty_free_pages, 0);
        a.check().unwrap();
        let z = a.alloc_pages(0).unwrap();
        assert!(a.take_clean(z));
    }

    #[test]
    fn trim_wanted_follows_the_threshold() {
        let mut a = arena(1);
        a.set_trim_threshold(4);
        let x = a.alloc_pages(2).unwrap();
        let y = a.alloc_pages(0).unwrap();
        assert!(!a.trim_wanted());
        a.free_pages(y, 0);
        assert!(!a.trim_wanted(), "1 dirty page");
        a.free_pages(x, 2);
        assert!(a.trim_wanted());
    }

    proptest! {
        /// Random allocations and frees against a model of the live blocks:
        /// after every step the bookkeeping checks out, blocks are naturally
        /// aligned, inside the chunks and disjoint.
        #[test]
        fn random_sequences_keep_the_invariants(ops in prop::collection::vec((any::<bool>(), 0u32..=MAX_ORDER, any::<prop::sample::Index>()), 1..200)) {
            let mut a = ArenaPages::new(0);
            prop_assert!(a.add_chunk(BASE, 2 * BLOCK_BYTES));
            prop_assert!(a.add_chunk(BASE + 8 * BLOCK_BYTES, BLOCK_BYTES));
            let mut live: BTreeMap<u64, u32> = BTreeMap::new();
            for (alloc, order, pick) in ops {
                if alloc || live.is_empty() {
                    match a.alloc_pages(order) {
                        Some(addr) => {
                            prop_assert_eq!(addr % (PAGE_SIZE << order), 0);
                            prop_assert!(a.owns(addr) && a.owns(addr + (PAGE_SIZE << order) - 1));
                            let end = addr + (PAGE_SIZE << order);
                            if let Some((&s, &o)) = live.range(..end).next_back() {
                                prop_assert!(s + (PAGE_SIZE << o) <= addr || s >= end);
                            }
                            live.insert(addr, order);
                        }
                        None => {
                            // Only when no free block is big enough and
                            // every chunk is fully active.
                            prop_assert!((order..=MAX_ORDER).all(|o| a.free[o as usize].is_empty()));
                            prop_assert_eq!(a.stats().active_pages, a.stats().reserved_pages);
                        }
                    }
                } else {
                    let (&addr, &o) = live.iter().nth(pick.index(live.len())).unwrap();
                    live.remove(&addr);
                    a.free_pages(addr, o);
                }
                prop_assert_eq!(a.check(), Ok(()));
                let used: u64 = live.values().map(|&o| 1u64 << o).sum();
                prop_assert_eq!(a.stats().used_pages, used);
                prop_assert_eq!(a.stats().bad_frees, 0);
            }
            for (addr, o) in core::mem::take(&mut live) {
                a.free_pages(addr, o);
            }
            prop_assert_eq!(a.check(), Ok(()));
            prop_assert_eq!(a.stats().free_pages, a.stats().active_pages);
        }
    }
}
