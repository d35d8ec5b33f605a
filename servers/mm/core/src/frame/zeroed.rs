//! The zero pool: free frames zeroed ahead of time, while the server is idle.
//!
//! Many allocations need zeroed memory (page tables, fresh anonymous pages,
//! `kzalloc` slabs). Zeroing 4 KiB on the allocation path costs more than the
//! allocation itself, so the MM server zeroes free frames when it has
//! nothing else to do (`FrameAllocator::refill_zeroed`) and zeroing
//! allocations take one ready-made. The pool is kept per zone and per pcp
//! migratetype, each list up to a configured size, and is filled from the
//! smallest free buddy blocks of its own type, never by stealing pageblocks.
//!
//! Pool frames are free: they count against the watermarks, ordinary
//! allocations take them only when nothing else is left, and
//! `alloc_contig_range` takes them directly off the pool.

use super::list::State;
use super::types::NR_PCPTYPES;
use super::zone::Zone;

/// The largest block the pool takes from the buddy lists at once (32
/// frames).
const ZERO_BATCH_ORDER: u32 = 5;

impl Zone {
    /// Takes a zeroed frame of `mt`.
    #[inline]
    pub fn take_zeroed(&mut self, mt: u8) -> Option<u32> {
        let list = self.zeroed.get_mut(mt as usize)?;
        let idx = list.pop_front(&mut self.buddy.frames)?;
        self.nr_zeroed -= 1;
        Some(idx)
    }

    /// Takes a zeroed frame of any type.
    pub fn take_zeroed_any(&mut self) -> Option<u32> {
        (0..NR_PCPTYPES as u8).find_map(|mt| self.take_zeroed(mt))
    }

    /// Takes free frames of `mt` to be zeroed for the pool, at most `max`
    /// and no more than its list lacks: one from CPU `cpu`'s list when it
    /// has one (an order-0 frame ready to take), else a buddy block of the
    /// largest order that fits (split from the smallest free block, so a
    /// batch costs one split, not one per frame), else one frame. Returns
    /// the block's first frame and order (its frames after the first are
    /// `Tail`); `None` when the list is full or `mt` has no free frame.
    pub fn zero_candidates(&mut self, cpu: usize, mt: u8, max: usize) -> Option<(u32, u32)> {
        let room = self.zero_high[mt as usize].saturating_sub(self.zeroed[mt as usize].len);
        let want = (room as usize).min(max);
        if want == 0 {
            return None;
        }
        if let Some(pcp) = self.pcp.get_mut(cpu)
            && let Some(idx) = pcp.lists[mt as usize].pop_back(&mut self.buddy.frames)
        {
            pcp.count -= 1;
            self.nr_pcp -= 1;
            return Some((idx, 0));
        }
        let order = want.ilog2().min(ZERO_BATCH_ORDER);
        if order > 0
            && let Some(idx) = self.buddy.rmqueue_smallest(order, mt)
        {
            return Some((idx, order));
        }
        self.buddy.rmqueue_smallest(0, mt).map(|idx| (idx, 0))
    }

    /// Puts the frame `idx`, now zeroed, in the pool list `mt`.
    pub fn add_zeroed(&mut self, idx: u32, mt: u8) {
        let f = &mut self.buddy.frames[idx as usize];
        f.state = State::Zeroed;
        f.mt = mt;
        self.zeroed[mt as usize].push_front(&mut self.buddy.frames, idx);
        self.nr_zeroed += 1;
    }

    /// Unlinks the frame `idx` (state `Zeroed`) from the pool.
    pub fn zeroed_unlink(&mut self, idx: u32) {
        let mt = self.buddy.frames[idx as usize].mt;
        self.zeroed[mt as usize].remove(&mut self.buddy.frames, idx);
        self.nr_zeroed -= 1;
    }

    /// Returns every pool frame to the buddy lists.
    pub fn drain_zeroed(&mut self) {
        while let Some(idx) = self.take_zeroed_any() {
            let mt = self.buddy.pb_mt(idx);
            self.buddy.free_one(idx, 0, mt);
        }
    }
}
