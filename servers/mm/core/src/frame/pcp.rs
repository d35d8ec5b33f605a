//! Per-CPU page lists: order-0 frames cached in front of the buddy lists.
//!
//! Linux's `per_cpu_pages`: each CPU keeps lists of free order-0 frames, one
//! per pcp migratetype, so that most single-page allocations and frees touch
//! one list head instead of the buddy lists. An empty list is refilled with
//! `batch` frames at once (`rmqueue_bulk`); a CPU holding `high` frames gives
//! `batch` of its coldest back (`free_pcppages_bulk`). Frees go to the front
//! and allocations come from the front, so a freed frame is reused while its
//! cache lines are warm.
//!
//! A frame on a per-CPU list is free: it counts against the watermarks like
//! a buddy page, and `alloc_contig_range` takes it directly off the list.

use super::list::{List, State};
use super::types::{MigrateType, NR_PCPTYPES};
use super::zone::Zone;

/// One CPU's lists for one zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PerCpuPages {
    /// Free order-0 frames per pcp migratetype.
    pub lists: [List; NR_PCPTYPES],
    /// Frames on all lists.
    pub count: u32,
    /// Which list the next bulk free starts with.
    pub next_drain: u8,
}

impl PerCpuPages {
    /// Empty lists.
    pub fn new() -> PerCpuPages {
        PerCpuPages {
            lists: [List::EMPTY; NR_PCPTYPES],
            count: 0,
            next_drain: 0,
        }
    }
}

impl Zone {
    /// Takes a frame of `mt` from CPU `cpu`'s list, refilling it from the
    /// buddy lists (with fallback) when empty (`rmqueue_pcplist`).
    #[inline(always)]
    pub fn pcp_alloc(&mut self, cpu: usize, mt: u8) -> Option<u32> {
        let pcp = &mut self.pcp[cpu];
        let list = &mut pcp.lists[mt as usize];
        if list.is_empty() {
            // rmqueue_bulk
            for _ in 0..self.pcp_batch.max(1) {
                let Some(idx) = self.buddy.rmqueue(0, mt, false) else {
                    break;
                };
                let f = &mut self.buddy.frames[idx as usize];
                f.state = State::Pcp;
                f.mt = mt;
                f.aux = cpu as u8;
                list.push_back(&mut self.buddy.frames, idx);
                pcp.count += 1;
                self.nr_pcp += 1;
            }
        }
        let idx = list.pop_front(&mut self.buddy.frames)?;
        pcp.count -= 1;
        self.nr_pcp -= 1;
        Some(idx)
    }

    /// Takes a frame from any of CPU `cpu`'s lists, without refilling.
    pub fn pcp_alloc_any(&mut self, cpu: usize) -> Option<u32> {
        let pcp = &mut self.pcp[cpu];
        for list in &mut pcp.lists {
            if let Some(idx) = list.pop_front(&mut self.buddy.frames) {
                pcp.count -= 1;
                self.nr_pcp -= 1;
                return Some(idx);
            }
        }
        None
    }

    /// Puts the allocated order-0 frame `idx` on CPU `cpu`'s list of its
    /// pageblock's type, giving a batch back when the CPU holds `high`
    /// (`free_unref_page`). The reserve's frames go on the movable list, as
    /// in Linux; they return to their pageblock's list when drained.
    #[inline(always)]
    pub fn free_to_pcp(&mut self, cpu: usize, idx: u32) {
        let mut mt = self.buddy.pb_mt(idx);
        if mt as usize >= NR_PCPTYPES {
            mt = MigrateType::Movable as u8;
        }
        let f = &mut self.buddy.frames[idx as usize];
        f.state = State::Pcp;
        f.mt = mt;
        f.aux = cpu as u8;
        let pcp = &mut self.pcp[cpu];
        pcp.lists[mt as usize].push_front(&mut self.buddy.frames, idx);
        pcp.count += 1;
        self.nr_pcp += 1;
        if pcp.count >= self.pcp_high {
            self.free_pcppages_bulk(cpu, self.pcp_batch.max(1));
        }
    }

    /// Gives up to `count` of CPU `cpu`'s coldest frames back to the buddy
    /// lists, taking the lists in turn (`free_pcppages_bulk`).
    pub fn free_pcppages_bulk(&mut self, cpu: usize, count: u32) {
        let mut left = count.min(self.pcp[cpu].count);
        let mut which = self.pcp[cpu].next_drain as usize;
        while left > 0 {
            let pcp = &mut self.pcp[cpu];
            let Some(idx) = pcp.lists[which].pop_back(&mut self.buddy.frames) else {
                which = (which + 1) % NR_PCPTYPES;
                continue;
            };
            pcp.count -= 1;
            self.nr_pcp -= 1;
            left -= 1;
            let mt = self.buddy.pb_mt(idx);
            self.buddy.free_one(idx, 0, mt);
            if left.is_multiple_of(8) {
                which = (which + 1) % NR_PCPTYPES;
            }
        }
        self.pcp[cpu].next_drain = which as u8;
    }

    /// Empties CPU `cpu`'s lists into the buddy lists.
    pub fn drain_pcp(&mut self, cpu: usize) {
        let n = self.pcp[cpu].count;
        self.free_pcppages_bulk(cpu, n);
    }

    /// Unlinks the frame `idx` (state `Pcp`) from its list.
    pub fn pcp_unlink(&mut self, idx: u32) {
        let m = self.buddy.frames[idx as usize];
        let pcp = &mut self.pcp[m.aux as usize];
        pcp.lists[m.mt as usize].remove(&mut self.buddy.frames, idx);
        pcp.count -= 1;
        self.nr_pcp -= 1;
    }
}
