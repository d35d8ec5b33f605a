//! A zone: its buddy system, per-CPU lists, zero pool, counters and watermarks.
//!
//! A zone covers the managed frames of one physical range class (DMA32 or
//! Normal). Its frame array spans from the lowest to the highest managed
//! frame, rounded out to `2^MAX_ORDER` frames so that buddy arithmetic on
//! indices equals buddy arithmetic on frame numbers; frames of the span that
//! were not given as free memory are holes and never become free.
//!
//! Every managed frame is in exactly one of five places: a free buddy block,
//! a per-CPU list, the zero pool (these three are "free"), an allocated
//! block, or the reserved set.

use alloc::vec::Vec;

use super::buddy::Buddy;
use super::list::{FrameMeta, List, State};
use super::pcp::PerCpuPages;
use super::types::{
    MAX_ORDER, MigrateType, NR_PCPTYPES, NR_ZONES, PAGEBLOCK_ORDER, Priority, ZoneType,
};

/// Index of the min watermark in [`Zone::wmark`].
pub(crate) const WMARK_MIN: usize = 0;
/// Index of the low watermark.
pub(crate) const WMARK_LOW: usize = 1;
/// Index of the high watermark.
pub(crate) const WMARK_HIGH: usize = 2;

/// One zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Zone {
    /// Which zone this is.
    pub kind: ZoneType,
    /// The frame number of `buddy.frames[0]` (a multiple of `2^MAX_ORDER`).
    pub base: u64,
    /// Frames, pageblocks and free lists.
    pub buddy: Buddy,
    /// Per-CPU lists, one per configured CPU.
    pub pcp: Vec<PerCpuPages>,
    /// Pages on all per-CPU lists.
    pub nr_pcp: u64,
    /// Pre-zeroed order-0 frames, per pcp migratetype.
    pub zeroed: [List; NR_PCPTYPES],
    /// Pages in the zero pool.
    pub nr_zeroed: u64,
    /// Target size of each zero-pool list.
    pub zero_high: [u32; NR_PCPTYPES],
    /// Frames given as free memory at creation (Linux's `present_pages`).
    pub present: u64,
    /// Allocated pages.
    pub nr_allocated: u64,
    /// Reserved pages.
    pub nr_reserved: u64,
    /// The lowest managed frame number.
    pub start_pfn: u64,
    /// One past the highest managed frame number.
    pub end_pfn: u64,
    /// min, low, high watermarks, in pages.
    pub wmark: [u64; 3],
    /// Pages kept from allocations whose highest zone is the index.
    pub lowmem_reserve: [u64; NR_ZONES],
    /// Pages moved per per-CPU refill or drain.
    pub pcp_batch: u32,
    /// Pages a per-CPU list may hold.
    pub pcp_high: u32,
}

impl Zone {
    /// A zone of `kind` holding the sorted, disjoint, non-adjacent frame
    /// ranges `pieces` (none empty), with `nr_cpus` per-CPU lists.
    pub fn new(kind: ZoneType, pieces: &[(u64, u64)], nr_cpus: usize, zero_high: [u32; 3]) -> Zone {
        let block = 1u64 << MAX_ORDER;
        let (base, top) = match (pieces.first(), pieces.last()) {
            (Some(f), Some(l)) => (f.0 & !(block - 1), l.1.div_ceil(block) * block),
            _ => (0, 0),
        };
        let mut buddy = Buddy::new((top - base) as usize);
        let mut present = 0;
        let movable = MigrateType::Movable as u8;
        for &(s, e) in pieces {
            present += e - s;
            for pfn in s..e {
                buddy.frames[(pfn - base) as usize] = FrameMeta::TAIL;
            }
            let mut p = s - base;
            let end = e - base;
            while p < end {
                let align = if p == 0 {
                    MAX_ORDER
                } else {
                    p.trailing_zeros().min(MAX_ORDER)
                };
                let fit = 63 - (end - p).leading_zeros();
                let order = align.min(fit);
                buddy.add_free(p as u32, order, movable, true);
                p += 1 << order;
            }
        }
        Zone {
            kind,
            base,
            buddy,
            pcp: (0..nr_cpus).map(|_| PerCpuPages::new()).collect(),
            nr_pcp: 0,
            zeroed: [List::EMPTY; NR_PCPTYPES],
            nr_zeroed: 0,
            zero_high,
            present,
            nr_allocated: 0,
            nr_reserved: 0,
            start_pfn: pieces.first().map_or(0, |p| p.0),
            end_pfn: pieces.last().map_or(0, |p| p.1),
            wmark: [0; 3],
            lowmem_reserve: [0; NR_ZONES],
            pcp_batch: 1,
            pcp_high: 0,
        }
    }

    /// Pages not reserved (Linux's `managed_pages`).
    #[inline]
    pub fn managed(&self) -> u64 {
        self.present - self.nr_reserved
    }

    /// Free pages: buddy, per-CPU lists and zero pool.
    #[inline(always)]
    pub fn nr_free(&self) -> u64 {
        self.buddy.nr_free + self.nr_pcp + self.nr_zeroed
    }

    /// Whether an allocation of `order` at `priority`, whose highest zone is
    /// `classzone`, leaves this zone at or above its watermark
    /// (`zone_watermark_ok`): low for normal, min for atomic, none for
    /// reserve; plus the lowmem reserve kept from higher zones' allocations.
    /// Free pages in the high-order atomic reserve count only for atomic ones.
    #[inline(always)]
    pub fn watermark_ok(&self, order: u32, priority: Priority, classzone: usize) -> bool {
        let mut free = self.nr_free();
        let mark = match priority {
            Priority::Reserve => return free >= 1 << order,
            Priority::Atomic => self.wmark[WMARK_MIN],
            Priority::Normal => {
                free = free.saturating_sub(self.buddy.nr_free_mt[MigrateType::HighAtomic as usize]);
                self.wmark[WMARK_LOW]
            }
        };
        let need = mark + self.lowmem_reserve[classzone] + (1 << order);
        free >= need
    }

    /// Marks `idx` the head of an allocated block.
    #[inline(always)]
    pub fn mark_alloc(&mut self, idx: u32, order: u32, mt: u8) {
        let f = &mut self.buddy.frames[idx as usize];
        f.state = State::Alloc;
        f.order = order as u8;
        f.mt = mt;
        self.nr_allocated += 1 << order;
    }

    /// Takes a block of `order` for `mt`; order 0 goes through CPU `cpu`'s
    /// list. With `want_zeroed`, an order-0 request takes a pre-zeroed frame
    /// first. Returns the head and whether it is known to be zeroed; the
    /// caller has checked the watermark.
    #[inline(always)]
    pub fn rmqueue(
        &mut self,
        order: u32,
        mt: u8,
        harder: bool,
        cpu: usize,
        want_zeroed: bool,
    ) -> Option<(u32, bool)> {
        if order == 0 {
            if want_zeroed && let Some(idx) = self.take_zeroed(mt) {
                self.mark_alloc(idx, 0, mt);
                return Some((idx, true));
            }
            if let Some(idx) = self.pcp_alloc(cpu, mt) {
                self.mark_alloc(idx, 0, mt);
                return Some((idx, false));
            }
            if harder && let Some(idx) = self.buddy.rmqueue(0, mt, true) {
                self.mark_alloc(idx, 0, mt);
                return Some((idx, false));
            }
            // Free frames of other types still on this CPU, then the pool.
            if let Some(idx) = self.pcp_alloc_any(cpu) {
                self.mark_alloc(idx, 0, mt);
                return Some((idx, false));
            }
            if let Some(idx) = self.take_zeroed_any() {
                self.mark_alloc(idx, 0, mt);
                return Some((idx, true));
            }
            return None;
        }
        let idx = self.buddy.rmqueue(order, mt, harder)?;
        self.mark_alloc(idx, order, mt);
        Some((idx, false))
    }

    /// Returns the allocated block of `order` at `idx` to the buddy lists
    /// (not the per-CPU ones). A block spanning pageblocks of different
    /// types is freed pageblock by pageblock.
    #[inline]
    pub fn free_block(&mut self, idx: u32, order: u32) {
        if order > PAGEBLOCK_ORDER {
            let first = self.buddy.pb_mt(idx);
            let n = 1u32 << (order - PAGEBLOCK_ORDER);
            let uniform = (1..n).all(|i| self.buddy.pb_mt(idx + (i << PAGEBLOCK_ORDER)) == first);
            if !uniform {
                for i in 0..n {
                    let at = idx + (i << PAGEBLOCK_ORDER);
                    if i > 0 {
                        // Give the piece its own head.
                        self.buddy.frames[at as usize].state = State::Alloc;
                    }
                    let mt = self.buddy.pb_mt(at);
                    self.buddy.free_one(at, PAGEBLOCK_ORDER, mt);
                }
                return;
            }
            self.buddy.free_one(idx, order, first);
            return;
        }
        let mt = self.buddy.pb_mt(idx);
        self.buddy.free_one(idx, order, mt);
    }

    /// Frees the run of `n` frames at `idx`, all already accounted as no
    /// longer allocated or reserved, as maximal aligned blocks.
    pub fn free_run(&mut self, idx: u32, n: u32) {
        let mut p = idx;
        let end = idx + n;
        while p < end {
            let align = if p == 0 {
                MAX_ORDER
            } else {
                p.trailing_zeros().min(MAX_ORDER)
            };
            let fit = 31 - (end - p).leading_zeros();
            let order = align.min(fit);
            for i in p + 1..p + (1 << order) {
                self.buddy.frames[i as usize].state = State::Tail;
            }
            self.free_block(p, order);
            p += 1 << order;
        }
    }

    /// Frame `idx`'s frame number.
    #[inline(always)]
    pub fn pfn(&self, idx: u32) -> u64 {
        self.base + idx as u64
    }
}
