//! Exact-size and exact-place allocations: `alloc_pages_exact`, `alloc_contig_range`, reserving.
//!
//! These hand out runs of individual order-0 frames rather than one buddy
//! block, so that any part of a run can be freed on its own, as Linux's
//! `split_page` allows. A run is freed again as maximal aligned blocks, so a
//! 2 MiB run goes back as one order-9 block, not 512 frees.
//!
//! `alloc_contig_range` checks the whole range first — every frame managed,
//! in one zone, and free (in a buddy block, on a per-CPU list or in the zero
//! pool) — and only then takes it: free blocks straddling the range's ends
//! are split and their outer parts stay free, per-CPU and pooled frames are
//! unlinked where they are. A busy frame fails the call with nothing changed.
//! Unlike Linux, nothing is migrated out of the way.

use super::FrameAllocator;
use super::list::{FrameMeta, State};
use super::types::{FrameError, FrameRef, GfpFlags, MAX_ORDER};
use super::zone::Zone;
use crate::addr::{PAGE_SIZE, Pfn};
use crate::memory::MemoryAccess;

impl Zone {
    /// Whether every frame of `[s, e)` is free; the first offending frame's
    /// error otherwise.
    fn check_range_free(&self, s: u32, e: u32) -> Result<(), FrameError> {
        let b = &self.buddy;
        let mut p = b.find_head(s).ok_or(FrameError::Busy)?;
        while p < e {
            let m = b.frames[p as usize];
            p = match m.state {
                State::Free => p + (1 << m.order),
                State::Pcp | State::Zeroed => p + 1,
                State::Hole => return Err(FrameError::NotManaged),
                State::Alloc | State::Reserved | State::Tail => return Err(FrameError::Busy),
            };
        }
        Ok(())
    }

    /// Takes the free frames `[s, e)` (checked by `check_range_free`),
    /// leaving each an order-0 frame in `state`, allocated as its
    /// pageblock's type.
    fn take_range(&mut self, s: u32, e: u32, state: State) {
        let mut p = self.buddy.find_head(s).unwrap_or(s);
        while p < e {
            let m = self.buddy.frames[p as usize];
            match m.state {
                State::Free => {
                    self.buddy.del_free(p);
                    self.carve(p, m.order as u32, m.mt, s, e);
                    p += 1 << m.order;
                }
                State::Pcp => {
                    self.pcp_unlink(p);
                    p += 1;
                }
                State::Zeroed => {
                    self.zeroed_unlink(p);
                    p += 1;
                }
                _ => p += 1,
            }
        }
        for i in s..e {
            let mt = self.buddy.pb_mt(i);
            self.buddy.frames[i as usize] = FrameMeta {
                state,
                mt,
                ..FrameMeta::TAIL
            };
        }
    }

    /// Frees the parts of the unlinked free block `(head, order)` of list
    /// `mt` that lie outside `[s, e)`, as the largest aligned blocks.
    fn carve(&mut self, head: u32, order: u32, mt: u8, s: u32, e: u32) {
        let mut stack = [(0u32, 0u32); MAX_ORDER as usize + 2];
        let mut n = 1;
        stack[0] = (head, order);
        while n > 0 {
            n -= 1;
            let (b, o) = stack[n];
            let end = b + (1 << o);
            if b >= s && end <= e {
                continue;
            }
            if end <= s || b >= e {
                self.buddy.add_free(b, o, mt, false);
                continue;
            }
            stack[n] = (b, o - 1);
            stack[n + 1] = (b + (1 << (o - 1)), o - 1);
            n += 2;
        }
    }

    /// Whether every frame of `[s, e)` is an order-0 frame in `want`.
    fn check_run(&self, s: u32, e: u32, want: State) -> Result<(), FrameError> {
        for i in s..e {
            let m = self.buddy.frames[i as usize];
            if m.state == want && m.order == 0 {
                continue;
            }
            return Err(match m.state {
                State::Hole => FrameError::NotManaged,
                State::Free | State::Pcp | State::Zeroed => FrameError::AlreadyFree,
                State::Reserved => FrameError::Reserved,
                State::Tail => match self
                    .buddy
                    .find_head(i)
                    .map(|h| self.buddy.frames[h as usize].state)
                {
                    Some(State::Free) => FrameError::AlreadyFree,
                    _ => FrameError::OrderMismatch,
                },
                State::Alloc => FrameError::OrderMismatch,
            });
        }
        Ok(())
    }
}

impl FrameAllocator {
    /// The zone and index range of `n` frames from `start`, all in one zone's span.
    fn locate_run(&self, start: Pfn, n: u64) -> Result<(usize, u32, u32), FrameError> {
        if n == 0 {
            return Err(FrameError::InvalidRange);
        }
        let last = start.0.checked_add(n - 1).ok_or(FrameError::InvalidRange)?;
        let (z, s) = self.locate_span(start)?;
        let (z2, l) = self.locate_span(Pfn(last))?;
        if z != z2 {
            return Err(FrameError::InvalidRange);
        }
        Ok((z, s, l + 1))
    }

    /// Allocates exactly `count` contiguous frames, aligned to the
    /// power-of-two block they were cut from; the rest of that block goes
    /// back to the free lists (kernel-doc `alloc_pages_exact`). Each frame
    /// is an order-0 allocation of its own: free them all with
    /// [`FrameAllocator::free_pages_exact`], or any part of the run.
    ///
    /// Errors: [`FrameError::InvalidCount`] for 0 or more than `2^MAX_ORDER`;
    /// [`FrameError::NoMemory`].
    pub fn alloc_pages_exact(&mut self, count: u64, flags: GfpFlags) -> Result<Pfn, FrameError> {
        self.alloc_exact_inner(count, flags, false).map(|(p, _)| p)
    }

    fn alloc_exact_inner(
        &mut self,
        count: u64,
        flags: GfpFlags,
        want_zeroed: bool,
    ) -> Result<(Pfn, bool), FrameError> {
        if count == 0 || count > 1 << MAX_ORDER {
            return Err(FrameError::InvalidCount);
        }
        let order = count.next_power_of_two().trailing_zeros();
        let (z, idx, zeroed) = self.alloc_inner(order, flags, want_zeroed)?;
        let zone = &mut self.zones[z];
        let count = count as u32;
        let mt = flags.mobility.migratetype() as u8;
        for i in idx + 1..idx + count {
            zone.buddy.frames[i as usize] = FrameMeta {
                state: State::Alloc,
                mt,
                ..FrameMeta::TAIL
            };
        }
        zone.buddy.frames[idx as usize].order = 0;
        let tail = (1u32 << order) - count;
        if tail > 0 {
            zone.nr_allocated -= tail as u64;
            zone.free_run(idx + count, tail);
        }
        Ok((Pfn(zone.pfn(idx)), zeroed))
    }

    /// [`FrameAllocator::alloc_pages_exact`] with the frames zeroed through
    /// `mem` (a single frame may come from the zero pool). Error: also
    /// [`FrameError::AccessFailed`], the frames being freed again.
    pub fn alloc_pages_exact_zeroed(
        &mut self,
        count: u64,
        flags: GfpFlags,
        mem: &mut impl MemoryAccess,
    ) -> Result<Pfn, FrameError> {
        let (pfn, zeroed) = self.alloc_exact_inner(count, flags, true)?;
        if !zeroed && mem.zero(pfn.addr().0, count * PAGE_SIZE).is_err() {
            // Cannot fail: the run was just allocated.
            let _ = self.free_pages_exact(pfn, count);
            return Err(FrameError::AccessFailed);
        }
        Ok(pfn)
    }

    /// Frees `count` frames from `frame`, each allocated as an order-0 frame
    /// (by [`FrameAllocator::alloc_pages_exact`],
    /// [`FrameAllocator::alloc_contig_range`] or order-0 `alloc_pages`)
    /// (kernel-doc `free_pages_exact`, counting pages instead of bytes).
    ///
    /// Errors, nothing changed: [`FrameError::Misaligned`] for an address
    /// inside a page; [`FrameError::InvalidRange`] for 0 frames or a run
    /// crossing zones; [`FrameError::NotManaged`]; [`FrameError::AlreadyFree`];
    /// [`FrameError::Reserved`]; [`FrameError::OrderMismatch`] for a frame
    /// that is part of a larger allocated block.
    pub fn free_pages_exact(&mut self, frame: impl FrameRef, count: u64) -> Result<(), FrameError> {
        let start = frame.to_pfn()?;
        let (z, s, e) = self.locate_run(start, count)?;
        let zone = &mut self.zones[z];
        zone.check_run(s, e, State::Alloc)?;
        zone.nr_allocated -= (e - s) as u64;
        zone.free_run(s, e - s);
        Ok(())
    }

    /// Allocates exactly the frames `[start, end)` (kernel-doc
    /// `alloc_contig_range`, without migration: every frame must be free).
    /// Watermarks are not checked, as in Linux. Each frame becomes an order-0
    /// allocation; free with [`FrameAllocator::free_contig_range`].
    ///
    /// Errors, nothing changed: [`FrameError::InvalidRange`] for an empty
    /// range or one crossing zones; [`FrameError::NotManaged`] if a frame is
    /// outside managed memory; [`FrameError::Busy`] if a frame is allocated
    /// or reserved.
    pub fn alloc_contig_range(&mut self, start: Pfn, end: Pfn) -> Result<(), FrameError> {
        self.take_contig(start, end, State::Alloc)
    }

    fn take_contig(&mut self, start: Pfn, end: Pfn, state: State) -> Result<(), FrameError> {
        if end.0 <= start.0 {
            return Err(FrameError::InvalidRange);
        }
        let (z, s, e) = self.locate_run(start, end.0 - start.0)?;
        let zone = &mut self.zones[z];
        zone.check_range_free(s, e)?;
        zone.take_range(s, e, state);
        let n = (e - s) as u64;
        if state == State::Reserved {
            zone.nr_reserved += n;
        } else {
            zone.nr_allocated += n;
        }
        Ok(())
    }

    /// Frees `nr_pages` frames from `start` taken by
    /// [`FrameAllocator::alloc_contig_range`] (kernel-doc
    /// `free_contig_range`); any sub-range may be freed. Errors as
    /// [`FrameAllocator::free_pages_exact`].
    pub fn free_contig_range(&mut self, start: Pfn, nr_pages: u64) -> Result<(), FrameError> {
        self.free_pages_exact(start, nr_pages)
    }

    /// Reserves the free frames `[start, end)`: they leave the allocator's
    /// managed pages until [`FrameAllocator::free_reserved_range`] (like
    /// `memblock_reserve` after boot, or `PageReserved`). Watermarks are
    /// recomputed. Errors as [`FrameAllocator::alloc_contig_range`].
    pub fn reserve_range(&mut self, start: Pfn, end: Pfn) -> Result<(), FrameError> {
        self.take_contig(start, end, State::Reserved)?;
        self.setup_per_zone_wmarks();
        Ok(())
    }

    /// Gives the reserved frames `[start, end)` back to the free lists
    /// (kernel-doc `free_reserved_area`). Errors, nothing changed:
    /// [`FrameError::InvalidRange`], [`FrameError::NotManaged`], and
    /// [`FrameError::AlreadyFree`] / [`FrameError::OrderMismatch`] for a
    /// frame that is not reserved.
    pub fn free_reserved_range(&mut self, start: Pfn, end: Pfn) -> Result<(), FrameError> {
        if end.0 <= start.0 {
            return Err(FrameError::InvalidRange);
        }
        let (z, s, e) = self.locate_run(start, end.0 - start.0)?;
        let zone = &mut self.zones[z];
        zone.check_run(s, e, State::Reserved)?;
        zone.nr_reserved -= (e - s) as u64;
        zone.free_run(s, e - s);
        self.setup_per_zone_wmarks();
        Ok(())
    }
}
