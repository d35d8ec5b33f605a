//! One zone's buddy system: free lists per order and migratetype, merging, splitting.
//!
//! The free lists are intrusive (see [`super::list`]): a free block is its
//! first frame's [`FrameMeta`] linked into `lists[order][mt]`, and a bitmask
//! per migratetype records which orders have a non-empty list, so finding the
//! smallest free block of at least an order is one `trailing_zeros`.
//! Allocation is Linux's `__rmqueue_smallest` + `expand`; freeing is
//! `__free_one_page`, merging with the buddy while it is free at the same
//! order. Pageblock migratetypes and fallback stealing live in
//! [`super::pageblock`], which extends [`Buddy`].
//!
//! The invariant kept here: every free block sits on the list of its
//! pageblock's migratetype, and no two free buddies of equal order and
//! mergeable migratetypes coexist (they would have been merged).

use alloc::vec;
use alloc::vec::Vec;

use super::list::{FrameMeta, List, State};
use super::types::{
    MAX_ORDER, MigrateType, NR_MIGRATETYPES, NR_ORDERS, NR_PCPTYPES, PAGEBLOCK_ORDER,
    PB_MIGRATETYPE_MASK,
};

/// A zone's frames, pageblock flags and free lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Buddy {
    /// One entry per frame of the zone's span (a multiple of `2^MAX_ORDER`).
    pub frames: Vec<FrameMeta>,
    /// One flags byte per pageblock (migratetype in the low 3 bits).
    pub pageblocks: Vec<u8>,
    /// `lists[order][mt]`: free blocks of `order` in pageblocks of `mt`.
    pub lists: [[List; NR_MIGRATETYPES]; NR_ORDERS],
    /// Per migratetype, bit `order` set when `lists[order][mt]` is non-empty.
    pub nonempty: [u16; NR_MIGRATETYPES],
    /// Pages in free blocks.
    pub nr_free: u64,
    /// Pages in free blocks, by migratetype.
    pub nr_free_mt: [u64; NR_MIGRATETYPES],
    /// Pages in pageblocks of the high-order atomic reserve.
    pub nr_reserved_highatomic: u64,
}

/// Whether free blocks of `mt` may merge with blocks of another migratetype.
#[inline(always)]
pub(crate) fn mergeable(mt: u8) -> bool {
    (mt as usize) < NR_PCPTYPES
}

impl Buddy {
    /// A buddy system for `nr_frames` frames (a multiple of `2^MAX_ORDER`),
    /// all holes, every pageblock movable.
    pub fn new(nr_frames: usize) -> Buddy {
        Buddy {
            frames: vec![FrameMeta::HOLE; nr_frames],
            pageblocks: vec![MigrateType::Movable as u8; nr_frames >> PAGEBLOCK_ORDER],
            lists: [[List::EMPTY; NR_MIGRATETYPES]; NR_ORDERS],
            nonempty: [0; NR_MIGRATETYPES],
            nr_free: 0,
            nr_free_mt: [0; NR_MIGRATETYPES],
            nr_reserved_highatomic: 0,
        }
    }

    /// The migratetype of the pageblock holding frame `idx`.
    #[inline(always)]
    pub fn pb_mt(&self, idx: u32) -> u8 {
        self.pageblocks[(idx >> PAGEBLOCK_ORDER) as usize] & PB_MIGRATETYPE_MASK
    }

    /// Marks `idx` the head of a free block and links it onto its list.
    #[inline(always)]
    pub fn add_free(&mut self, idx: u32, order: u32, mt: u8, to_tail: bool) {
        let f = &mut self.frames[idx as usize];
        f.state = State::Free;
        f.order = order as u8;
        f.mt = mt;
        let list = &mut self.lists[order as usize][mt as usize];
        if to_tail {
            list.push_back(&mut self.frames, idx);
        } else {
            list.push_front(&mut self.frames, idx);
        }
        self.nonempty[mt as usize] |= 1 << order;
        self.nr_free += 1 << order;
        self.nr_free_mt[mt as usize] += 1 << order;
    }

    /// Unlinks the free block headed by `idx` from its list. The caller
    /// gives the frame its new state.
    #[inline(always)]
    pub fn del_free(&mut self, idx: u32) {
        let m = self.frames[idx as usize];
        debug_assert_eq!(m.state, State::Free);
        let list = &mut self.lists[m.order as usize][m.mt as usize];
        list.remove(&mut self.frames, idx);
        if list.is_empty() {
            self.nonempty[m.mt as usize] &= !(1 << m.order);
        }
        self.nr_free -= 1 << m.order;
        self.nr_free_mt[m.mt as usize] -= 1 << m.order;
    }

    /// Whether `idx` heads a free block of exactly `order`
    /// (`page_is_buddy`).
    #[inline(always)]
    fn is_free_at(&self, idx: u32, order: u32) -> bool {
        match self.frames.get(idx as usize) {
            Some(m) => m.state == State::Free && m.order as u32 == order,
            None => false,
        }
    }

    /// Frees the block of `order` at `idx` onto the lists of `mt`, merging
    /// it with free buddies (`__free_one_page`). The frames after the head
    /// must already be [`State::Tail`].
    #[inline]
    pub fn free_one(&mut self, idx: u32, order: u32, mt: u8) {
        self.free_one_inner(idx, order, mt, true);
    }

    /// [`Buddy::free_one`]; with `convert` false, blocks of pageblock order
    /// and above merge only with buddies of the same migratetype.
    #[inline(always)]
    pub fn free_one_inner(&mut self, mut idx: u32, mut order: u32, mt: u8, convert: bool) {
        while order < MAX_ORDER {
            let buddy = idx ^ (1 << order);
            if !self.is_free_at(buddy, order) {
                break;
            }
            if order >= PAGEBLOCK_ORDER {
                // Pageblocks of the reserve do not merge with others; other
                // types do, the buddy's pageblocks taking ours (Linux 6.9).
                let bmt = self.frames[buddy as usize].mt;
                if bmt != mt {
                    if !convert || !mergeable(mt) || !mergeable(bmt) {
                        break;
                    }
                    self.del_free(buddy);
                    self.set_range_mt(buddy, order, mt);
                } else {
                    self.del_free(buddy);
                }
            } else {
                self.del_free(buddy);
            }
            // The higher of the pair stops being a head.
            self.frames[(idx | buddy) as usize].state = State::Tail;
            idx &= buddy;
            order += 1;
        }
        // If the parent's buddy is free, this block's buddy is likely to be
        // freed soon: queue the block at the tail so it is allocated last
        // (`buddy_merge_likely`).
        let to_tail = order + 2 <= MAX_ORDER
            && self.is_free_at((idx & !(1 << order)) ^ (2 << order), order + 1);
        self.add_free(idx, order, mt, to_tail);
    }

    /// Splits the free block of order `high` at `idx` (already unlinked)
    /// down to order `low`, freeing the upper halves onto `mt` (`expand`).
    #[inline(always)]
    pub fn expand(&mut self, idx: u32, low: u32, mut high: u32, mt: u8) {
        while high > low {
            high -= 1;
            self.add_free(idx + (1 << high), high, mt, false);
        }
    }

    /// Takes a block of `order` from the smallest non-empty list of `mt`
    /// (`__rmqueue_smallest`). The caller marks the head.
    #[inline(always)]
    pub fn rmqueue_smallest(&mut self, order: u32, mt: u8) -> Option<u32> {
        let mask = self.nonempty[mt as usize] >> order;
        if mask == 0 {
            return None;
        }
        let current = order + mask.trailing_zeros();
        let idx = self.lists[current as usize][mt as usize].head;
        self.del_free(idx);
        self.expand(idx, order, current, mt);
        Some(idx)
    }

    /// The head of the block containing frame `idx`, if it is in one
    /// (`Tail` frames are looked up; other frames are their own heads).
    pub fn find_head(&self, idx: u32) -> Option<u32> {
        let m = self.frames.get(idx as usize)?;
        if m.state != State::Tail {
            return Some(idx);
        }
        for o in 1..=MAX_ORDER {
            let h = idx & !((1 << o) - 1);
            let hm = self.frames[h as usize];
            if hm.state != State::Tail {
                let is_block = matches!(hm.state, State::Free | State::Alloc);
                return (is_block && hm.order as u32 >= o).then_some(h);
            }
        }
        None
    }

    /// Sets the migratetype of every pageblock touched by the block of
    /// `order` at `idx`, keeping the reserve's page count.
    pub fn set_range_mt(&mut self, idx: u32, order: u32, mt: u8) {
        let first = idx >> PAGEBLOCK_ORDER;
        let last = (idx + (1 << order) - 1) >> PAGEBLOCK_ORDER;
        for pb in first..=last {
            self.set_pb_mt(pb as usize, mt);
        }
    }

    /// Sets one pageblock's migratetype bits, keeping the reserve's page count.
    pub fn set_pb_mt(&mut self, pb: usize, mt: u8) {
        let old = self.pageblocks[pb] & PB_MIGRATETYPE_MASK;
        let ha = MigrateType::HighAtomic as u8;
        if old == ha && mt != ha {
            self.nr_reserved_highatomic -= 1 << PAGEBLOCK_ORDER;
        } else if old != ha && mt == ha {
            self.nr_reserved_highatomic += 1 << PAGEBLOCK_ORDER;
        }
        self.pageblocks[pb] = (self.pageblocks[pb] & !PB_MIGRATETYPE_MASK) | mt;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_free_range(n: usize, start: u32, end: u32) -> Buddy {
        let mut b = Buddy::new(n);
        for i in start..end {
            b.frames[i as usize] = FrameMeta::TAIL;
        }
        for i in start..end {
            b.free_one(i, 0, MigrateType::Movable as u8);
        }
        b
    }

    #[test]
    fn freeing_every_page_merges_to_max_order() {
        let b = with_free_range(2048, 0, 2048);
        assert_eq!(b.nr_free, 2048);
        assert_eq!(b.lists[MAX_ORDER as usize][1].len, 2);
        assert_eq!(b.nonempty[1], 1 << MAX_ORDER);
    }

    #[test]
    fn holes_stop_merging() {
        let b = with_free_range(1024, 1, 8);
        // 1, 2..4, 4..8
        assert_eq!(b.lists[0][1].len, 1);
        assert_eq!(b.lists[1][1].len, 1);
        assert_eq!(b.lists[2][1].len, 1);
        assert_eq!(b.nr_free, 7);
    }

    #[test]
    fn smallest_block_is_split() {
        let mut b = with_free_range(1024, 0, 1024);
        let idx = b.rmqueue_smallest(0, 1).unwrap();
        assert_eq!(idx, 0);
        for o in 0..MAX_ORDER as usize {
            assert_eq!(b.lists[o][1].len, 1, "order {o}");
        }
        assert_eq!(b.nr_free, 1023);
        assert_eq!(b.rmqueue_smallest(0, 0), None);
        b.frames[0].state = State::Alloc;
        assert_eq!(b.find_head(700), Some(512));
        assert_eq!(b.find_head(0), Some(0));
    }

    #[test]
    fn reserve_blocks_do_not_merge_with_others() {
        let mut b = Buddy::new(1024);
        for f in &mut b.frames {
            *f = FrameMeta::TAIL;
        }
        b.set_pb_mt(1, MigrateType::HighAtomic as u8);
        assert_eq!(b.nr_reserved_highatomic, 512);
        b.free_one(0, 9, 1);
        b.free_one(512, 9, MigrateType::HighAtomic as u8);
        assert_eq!(b.lists[9][1].len, 1);
        assert_eq!(b.lists[9][3].len, 1);
        assert_eq!(b.lists[10][1].len, 0);
    }

    #[test]
    fn mergeable_types_merge_and_take_our_type() {
        let mut b = Buddy::new(1024);
        for f in &mut b.frames {
            *f = FrameMeta::TAIL;
        }
        b.set_pb_mt(1, MigrateType::Unmovable as u8);
        b.free_one(512, 9, 0);
        b.free_one(0, 9, 1);
        assert_eq!(b.lists[10][1].len, 1);
        assert_eq!(b.pb_mt(512), 1);
    }
}
