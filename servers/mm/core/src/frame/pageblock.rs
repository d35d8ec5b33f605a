//! Pageblocks: 2 MiB groups of frames with a migratetype, and stealing between them.
//!
//! Every pageblock has a flags byte ([`super::types::PB_MIGRATETYPE_MASK`]
//! bits hold its migratetype). A free block always sits on the free list of
//! its pageblock's migratetype, so allocations of one mobility are served from
//! pageblocks of that mobility, and order-0 unmovable churn stays in a few
//! pageblocks instead of breaking up every 2 MiB block.
//!
//! When a migratetype runs out, [`Buddy::rmqueue_fallback`] steals as Linux
//! does (`__rmqueue_fallback`, with the claim rules of Linux 6.9's
//! `try_to_claim_block`): it takes the largest free block of a fallback
//! type; a whole free pageblock changes type outright, a partial one is
//! claimed (all its free pages move to the new type) when at least half of it
//! is free or already used by the new type, and otherwise a single block is
//! taken without changing the pageblock. The high-order atomic reserve
//! (`MigrateType::HighAtomic`) is never a fallback: pageblocks enter it when
//! a high-order atomic allocation succeeds and leave it when an allocation
//! would otherwise fail (`reserve_highatomic_pageblock`,
//! `unreserve_highatomic_pageblock`).

use super::buddy::Buddy;
use super::list::State;
use super::types::{
    MAX_ORDER, MigrateType, NR_PCPTYPES, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, PB_MIGRATETYPE_MASK,
};

/// The types each pcp type falls back to, in order (Linux's `fallbacks`).
const FALLBACKS: [[u8; 2]; NR_PCPTYPES] = [
    [MigrateType::Reclaimable as u8, MigrateType::Movable as u8],
    [MigrateType::Reclaimable as u8, MigrateType::Unmovable as u8],
    [MigrateType::Unmovable as u8, MigrateType::Movable as u8],
];

const HIGHATOMIC: u8 = MigrateType::HighAtomic as u8;

impl Buddy {
    /// Splits a free block larger than a pageblock that covers pageblock
    /// `pb` into pageblock-sized free blocks, so the pageblock can change type
    /// alone.
    pub fn split_covering(&mut self, pb: usize) {
        let start = (pb as u32) << PAGEBLOCK_ORDER;
        for o in PAGEBLOCK_ORDER + 1..=MAX_ORDER {
            let h = start & !((1 << o) - 1);
            let m = self.frames[h as usize];
            if m.state == State::Free && m.order as u32 == o {
                self.del_free(h);
                self.expand(h, PAGEBLOCK_ORDER, o, m.mt);
                self.add_free(h, PAGEBLOCK_ORDER, m.mt, false);
                return;
            }
        }
    }

    /// Moves every free block of pageblock `pb` onto the lists of `mt`
    /// (`move_freepages_block`); returns the pages moved. The pageblock's own
    /// flags are the caller's business.
    pub fn move_freepages_block(&mut self, pb: usize, mt: u8) -> u64 {
        self.split_covering(pb);
        let mut idx = (pb as u32) << PAGEBLOCK_ORDER;
        let end = idx + PAGEBLOCK_NR_PAGES as u32;
        let mut moved = 0;
        while idx < end {
            let m = self.frames[idx as usize];
            match m.state {
                State::Free => {
                    let order = m.order as u32;
                    if m.mt != mt {
                        self.del_free(idx);
                        if order >= PAGEBLOCK_ORDER {
                            // A whole free pageblock may now merge with a
                            // buddy pageblock of the same type.
                            self.free_one_inner(idx, order, mt, false);
                        } else {
                            self.add_free(idx, order, mt, false);
                        }
                    }
                    moved += 1 << order;
                    idx += 1 << order;
                }
                State::Alloc => idx += 1 << m.order,
                _ => idx += 1,
            }
        }
        moved
    }

    /// Gives pageblock `pb` migratetype `mt` and moves its free pages with it.
    pub fn change_pageblock_mt(&mut self, pb: usize, mt: u8) {
        self.split_covering(pb);
        self.set_pb_mt(pb, mt);
        self.move_freepages_block(pb, mt);
    }

    /// Free pages (buddy, per-CPU or zeroed) in pageblock `pb`, and pages
    /// allocated there as `mt`.
    fn count_block(&self, pb: usize, mt: u8) -> (u64, u64) {
        let mut idx = (pb as u32) << PAGEBLOCK_ORDER;
        let end = idx + PAGEBLOCK_NR_PAGES as u32;
        let (mut free, mut alike) = (0, 0);
        while idx < end {
            let m = self.frames[idx as usize];
            match m.state {
                State::Free => {
                    free += 1 << m.order;
                    idx += 1 << m.order;
                }
                State::Alloc => {
                    if m.mt == mt {
                        alike += 1 << m.order;
                    }
                    idx += 1 << m.order;
                }
                State::Pcp | State::Zeroed => {
                    free += 1;
                    idx += 1;
                }
                _ => idx += 1,
            }
        }
        (free, alike)
    }

    /// The first fallback type of `mt` with a free block of exactly `order`.
    #[inline]
    fn find_suitable_fallback(&self, order: u32, mt: u8) -> Option<u8> {
        FALLBACKS[mt as usize]
            .into_iter()
            .find(|&f| self.nonempty[f as usize] & (1 << order) != 0)
    }

    /// Whether a block of `order` taken for `start_mt` may claim its whole
    /// pageblock (`can_steal_fallback`).
    fn can_steal(order: u32, start_mt: u8) -> bool {
        order >= PAGEBLOCK_ORDER / 2 || start_mt != MigrateType::Movable as u8
    }

    /// Takes a block of `order` for `start_mt` from another type's lists
    /// (`__rmqueue_fallback`). The caller marks the head.
    pub fn rmqueue_fallback(&mut self, order: u32, start_mt: u8) -> Option<u32> {
        // Steal the largest block, so that whole pageblocks change type
        // rather than many getting mixed.
        let mut found = None;
        for current in (order..=MAX_ORDER).rev() {
            if let Some(f) = self.find_suitable_fallback(current, start_mt) {
                found = Some((current, f));
                break;
            }
        }
        let (mut current, mut fallback) = found?;
        if current > order && current < PAGEBLOCK_ORDER && !Self::can_steal(current, start_mt) {
            // A movable allocation that cannot claim the pageblock takes the
            // smallest block instead: it does no lasting harm there.
            let smallest = (order..=current)
                .find_map(|c| self.find_suitable_fallback(c, start_mt).map(|f| (c, f)));
            if let Some(found) = smallest {
                (current, fallback) = found;
            }
        }
        let idx = self.lists[current as usize][fallback as usize].head;
        if current >= PAGEBLOCK_ORDER {
            // Whole free pageblocks: they change type outright.
            self.del_free(idx);
            self.set_range_mt(idx, current, start_mt);
            self.expand(idx, order, current, start_mt);
            return Some(idx);
        }
        if Self::can_steal(current, start_mt) {
            let pb = (idx >> PAGEBLOCK_ORDER) as usize;
            let (free, alike) = self.count_block(pb, start_mt);
            if free + alike >= PAGEBLOCK_NR_PAGES / 2 {
                self.change_pageblock_mt(pb, start_mt);
                return self.rmqueue_smallest(order, start_mt);
            }
        }
        // Take the one block; its remainder stays with its pageblock's type.
        self.del_free(idx);
        self.expand(idx, order, current, fallback);
        Some(idx)
    }

    /// Takes a block of `order` for `mt` (`__rmqueue`): its own lists, then
    /// fallback stealing; `harder` allocations (atomic, reserve) may also
    /// use the high-order atomic reserve, first when `order > 0`.
    #[inline]
    pub fn rmqueue(&mut self, order: u32, mt: u8, harder: bool) -> Option<u32> {
        if harder
            && order > 0
            && let Some(idx) = self.rmqueue_smallest(order, HIGHATOMIC)
        {
            return Some(idx);
        }
        if let Some(idx) = self.rmqueue_smallest(order, mt) {
            return Some(idx);
        }
        if let Some(idx) = self.rmqueue_fallback(order, mt) {
            return Some(idx);
        }
        if harder {
            return self.rmqueue_smallest(order, HIGHATOMIC);
        }
        None
    }

    /// After a high-order atomic allocation at `idx`, moves its pageblock
    /// into the reserve unless the reserve already holds `max_pages`
    /// (`reserve_highatomic_pageblock`).
    pub fn reserve_highatomic(&mut self, idx: u32, max_pages: u64) {
        if self.nr_reserved_highatomic >= max_pages {
            return;
        }
        let pb = (idx >> PAGEBLOCK_ORDER) as usize;
        if self.pageblocks[pb] & PB_MIGRATETYPE_MASK == HIGHATOMIC {
            return;
        }
        self.change_pageblock_mt(pb, HIGHATOMIC);
    }

    /// Gives one reserve pageblock with free pages back to `mt`; unless
    /// `force`, keeps the last one (`unreserve_highatomic_pageblock`).
    /// Returns whether a pageblock was released.
    pub fn unreserve_highatomic(&mut self, mt: u8, force: bool) -> bool {
        if !force && self.nr_reserved_highatomic <= PAGEBLOCK_NR_PAGES {
            return false;
        }
        let mask = self.nonempty[HIGHATOMIC as usize];
        if mask == 0 {
            return false;
        }
        let order = mask.trailing_zeros();
        let idx = self.lists[order as usize][HIGHATOMIC as usize].head;
        let pb = (idx >> PAGEBLOCK_ORDER) as usize;
        self.change_pageblock_mt(pb, mt);
        if order > PAGEBLOCK_ORDER {
            // A free block larger than a pageblock spans more reserve blocks.
            let last = ((idx + (1 << order) - 1) >> PAGEBLOCK_ORDER) as usize;
            for p in pb + 1..=last {
                self.change_pageblock_mt(p, mt);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::list::FrameMeta;
    use super::*;

    fn all_free(n: usize) -> Buddy {
        let mut b = Buddy::new(n);
        for f in &mut b.frames {
            *f = FrameMeta::TAIL;
        }
        for i in (0..n as u32).step_by(1 << MAX_ORDER) {
            b.free_one(i, MAX_ORDER, MigrateType::Movable as u8);
        }
        b
    }

    fn take(b: &mut Buddy, order: u32, mt: u8) -> u32 {
        let idx = b.rmqueue(order, mt, false).unwrap();
        let f = &mut b.frames[idx as usize];
        f.state = State::Alloc;
        f.order = order as u8;
        f.mt = mt;
        idx
    }

    #[test]
    fn unmovable_steals_a_whole_pageblock_then_stays_in_it() {
        let mut b = all_free(4096);
        let first = take(&mut b, 0, 0);
        let pb = first >> PAGEBLOCK_ORDER;
        assert_eq!(b.pb_mt(first), 0);
        for _ in 0..200 {
            let idx = take(&mut b, 0, 0);
            assert_eq!(idx >> PAGEBLOCK_ORDER, pb, "unmovable pages stay grouped");
        }
        // The stolen order-10 block changed both its pageblocks, as Linux's
        // change_pageblock_range does.
        let movable_pbs = (0..8).filter(|&p| b.pageblocks[p] == 1).count();
        assert_eq!(movable_pbs, 6);
    }

    #[test]
    fn small_movable_fallback_does_not_claim() {
        let mut b = all_free(1024);
        // Make pageblock 0 unmovable, nearly full of unmovable pages.
        b.change_pageblock_mt(0, 0);
        b.change_pageblock_mt(1, 0);
        let mut v = alloc::vec::Vec::new();
        for _ in 0..1024 {
            v.push(take(&mut b, 0, 0));
        }
        // Free one page: a movable allocation takes it without claiming.
        let f = v[10];
        b.frames[f as usize] = FrameMeta::TAIL;
        b.free_one(f, 0, b.pb_mt(f));
        let got = take(&mut b, 0, 1);
        assert_eq!(got, f);
        assert_eq!(b.pb_mt(f), 0);
    }

    #[test]
    fn reserve_and_unreserve() {
        let mut b = all_free(2048);
        let idx = take(&mut b, 3, 1);
        b.reserve_highatomic(idx, 10_000);
        assert_eq!(b.nr_reserved_highatomic, 512);
        assert_eq!(b.pb_mt(idx), HIGHATOMIC);
        assert_eq!(b.nr_free_mt[HIGHATOMIC as usize], 504);
        assert!(!b.unreserve_highatomic(1, false), "the last block is kept");
        assert!(b.unreserve_highatomic(1, true));
        assert_eq!(b.nr_reserved_highatomic, 0);
        assert_eq!(b.nr_free_mt[HIGHATOMIC as usize], 0);
    }
}
