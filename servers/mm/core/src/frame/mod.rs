//! The physical frame allocator: zones, a buddy allocator per zone, per-CPU lists, a zero pool.
//!
//! The MM server owns every free physical frame through one
//! [`FrameAllocator`], built from the list of free physical ranges (RAM less
//! what the kernel and boot reserved). It serves Linux's page-allocator API
//! families to clients and feeds the server's own slab caches (it is a
//! [`PageSource`]):
//!
//! - [`FrameAllocator::alloc_pages`] / [`FrameAllocator::free_pages`]: blocks
//!   of `2^order` frames, order 0..=[`MAX_ORDER`] (4 MiB), with
//!   [`GfpFlags`] choosing the zone (DMA32 only, or Normal falling back to
//!   DMA32), the mobility and the priority; [`FrameAllocator::alloc_zeroed`]
//!   zeroes them through a [`MemoryAccess`], preferring pre-zeroed frames.
//! - [`FrameAllocator::alloc_pages_exact`]: an exact number of frames, the
//!   rest of the power-of-two block given back.
//! - [`FrameAllocator::alloc_contig_range`]: exactly the frames asked for, or
//!   nothing changed.
//! - watermarks ([`FrameAllocator::setup_per_zone_wmarks`]), pageblock flags
//!   ([`FrameAllocator::get_pfnblock_flags_mask`]), per-CPU list drains,
//!   statistics ([`FrameAllocator::zone_stats`], buddyinfo) and
//!   [`FrameAllocator::check_invariants`].
//!
//! Design (one module per responsibility): `list` is the per-frame
//! array and the intrusive lists threaded through it; `buddy` the free lists
//! and merging; `pageblock` migratetypes and fallback stealing; `pcp` the
//! per-CPU lists; `zeroed` the zero pool; `zone` ties them together per zone;
//! `watermark` derives watermarks; `contig` handles exact and contiguous
//! ranges; `stats` the statistics and invariant checks. Bookkeeping is 12
//! bytes per frame of a zone's span, out of band: the allocator never reads
//! or writes the memory it manages, except to zero it through the
//! [`MemoryAccess`] it is handed.
//!
//! Every operation validates its arguments before changing anything: a bad
//! frame, order or range returns a [`FrameError`] and leaves the allocator as
//! it was. Nothing here panics on caller input.

mod buddy;
mod contig;
mod list;
mod pageblock;
mod pcp;
mod stats;
mod types;
mod watermark;
mod zeroed;
mod zone;

#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use core::ops::Range;

pub use stats::{InvariantError, ZoneStats};
pub use types::{
    DEFAULT_DMA32_END, FrameConfig, FrameError, FrameRef, GfpFlags, MAX_ORDER, MigrateType,
    Mobility, NR_MIGRATETYPES, NR_ORDERS, NR_PCPTYPES, NR_ZONES, PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER, PB_ALL_FLAGS, PB_MIGRATE_SKIP, PB_MIGRATETYPE_MASK, Priority, ZoneType,
};
pub use watermark::default_min_free_kbytes;

use crate::addr::{PAGE_SHIFT, PAGE_SIZE, Pfn, PhysAddr};
use crate::memory::MemoryAccess;
use crate::pages::PageSource;
use list::State;
use zone::{WMARK_HIGH, WMARK_LOW, WMARK_MIN, Zone};

/// The min, low and high watermarks of a zone, in pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Watermarks {
    /// Atomic allocations stop here; below it only reserve allocations.
    pub min: u64,
    /// Ordinary allocations stop here.
    pub low: u64,
    /// Free memory above this is "beyond the high watermark".
    pub high: u64,
}

/// The physical frame allocator of the MM server. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameAllocator {
    zones: [Zone; NR_ZONES],
    config: FrameConfig,
    /// The first frame number of the Normal zone.
    dma32_end_pfn: u64,
    /// The CPU whose per-CPU lists serve order-0 requests.
    cpu: usize,
    /// `set_dma_reserve`.
    dma_reserve: u64,
    /// The `min_free_kbytes` in force.
    min_free_kbytes: u64,
    /// Frees through [`PageSource`] that were refused.
    page_source_errors: u64,
}

impl FrameAllocator {
    /// Creates the allocator over the free physical byte ranges `free`
    /// (each rounded inward to whole pages; empty ones ignored; they may come
    /// in any order, with holes between them, but must not overlap).
    ///
    /// Errors: [`FrameError::InvalidConfig`] for a configuration out of range
    /// (no CPU or more than 255, `dma32_end` not page aligned, a zero
    /// `pcp_batch`, a scale factor outside 1..=3000), overlapping or reversed
    /// ranges, or a zone spanning more than `2^32 - 2^MAX_ORDER` frames.
    pub fn new(
        config: FrameConfig,
        free: &[Range<PhysAddr>],
    ) -> Result<FrameAllocator, FrameError> {
        if config.nr_cpus == 0
            || config.nr_cpus > 255
            || !config.dma32_end.is_aligned(PAGE_SIZE)
            || config.pcp_batch == Some(0)
            || !(1..=3000).contains(&config.watermark_scale_factor)
        {
            return Err(FrameError::InvalidConfig);
        }
        let mut ranges: Vec<(u64, u64)> = Vec::with_capacity(free.len());
        for r in free {
            if r.start > r.end {
                return Err(FrameError::InvalidConfig);
            }
            let start = r.start.0.div_ceil(PAGE_SIZE);
            let end = r.end.0 >> PAGE_SHIFT;
            if start < end {
                ranges.push((start, end));
            }
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s < last.1 => return Err(FrameError::InvalidConfig),
                Some(last) if s == last.1 => last.1 = e,
                _ => merged.push((s, e)),
            }
        }
        let limit = config.dma32_end.0 >> PAGE_SHIFT;
        let mut pieces: [Vec<(u64, u64)>; NR_ZONES] = [Vec::new(), Vec::new()];
        for (s, e) in merged {
            if s < limit {
                pieces[0].push((s, e.min(limit)));
            }
            if e > limit {
                pieces[1].push((s.max(limit), e));
            }
        }
        for p in &pieces {
            if let (Some(f), Some(l)) = (p.first(), p.last()) {
                let block = 1u64 << MAX_ORDER;
                let span = l.1.div_ceil(block) * block - (f.0 & !(block - 1));
                if span > (u32::MAX as u64 + 1) - block {
                    return Err(FrameError::InvalidConfig);
                }
            }
        }
        let zh = config.zero_pool_high;
        let zones = [
            Zone::new(ZoneType::Dma32, &pieces[0], config.nr_cpus, zh),
            Zone::new(ZoneType::Normal, &pieces[1], config.nr_cpus, zh),
        ];
        let mut a = FrameAllocator {
            zones,
            config,
            dma32_end_pfn: limit,
            cpu: 0,
            dma_reserve: 0,
            min_free_kbytes: 0,
            page_source_errors: 0,
        };
        a.setup_per_zone_wmarks();
        Ok(a)
    }

    /// The configuration in force (with any changes made through setters).
    pub fn config(&self) -> &FrameConfig {
        &self.config
    }

    /// Finds the zone and index of a managed frame.
    #[inline(always)]
    fn locate(&self, pfn: Pfn) -> Result<(usize, u32), FrameError> {
        let (z, idx) = self.locate_span(pfn)?;
        if self.zones[z].buddy.frames[idx as usize].state == State::Hole {
            return Err(FrameError::NotManaged);
        }
        Ok((z, idx))
    }

    /// Finds the zone and index of a frame in a zone's span (maybe a hole).
    #[inline(always)]
    fn locate_span(&self, pfn: Pfn) -> Result<(usize, u32), FrameError> {
        let z = (pfn.0 >= self.dma32_end_pfn) as usize;
        let zone = &self.zones[z];
        let off = pfn.0.wrapping_sub(zone.base);
        if off >= zone.buddy.frames.len() as u64 {
            return Err(FrameError::NotManaged);
        }
        Ok((z, off as u32))
    }

    /// The zone holding frame `pfn`, if it is managed.
    pub fn zone_of(&self, pfn: Pfn) -> Option<ZoneType> {
        self.locate(pfn).ok().map(|(z, _)| ZoneType::ALL[z])
    }

    // ---- CPUs --------------------------------------------------------------

    /// The CPU whose per-CPU lists serve order-0 allocations and frees.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Makes `cpu` the current CPU. Error: [`FrameError::InvalidCpu`].
    pub fn set_cpu(&mut self, cpu: usize) -> Result<(), FrameError> {
        if cpu >= self.config.nr_cpus {
            return Err(FrameError::InvalidCpu);
        }
        self.cpu = cpu;
        Ok(())
    }

    /// Gives CPU `cpu`'s per-CPU frames in every zone back to the buddy
    /// lists (kernel-doc `drain_pages`: "drain pcplists of all zones on the
    /// indicated processor"). Error: [`FrameError::InvalidCpu`].
    pub fn drain_pages(&mut self, cpu: usize) -> Result<(), FrameError> {
        if cpu >= self.config.nr_cpus {
            return Err(FrameError::InvalidCpu);
        }
        for z in &mut self.zones {
            z.drain_pcp(cpu);
        }
        Ok(())
    }

    /// Drains every CPU's per-CPU lists (`drain_all_pages`).
    pub fn drain_all_pages(&mut self) {
        for z in &mut self.zones {
            for cpu in 0..z.pcp.len() {
                z.drain_pcp(cpu);
            }
        }
    }

    // ---- allocation --------------------------------------------------------

    /// Tries the zones allowed by `flags`, highest first, checking each
    /// zone's watermark for `priority` (`get_page_from_freelist`).
    #[inline(always)]
    fn get_page_from_freelist(
        &mut self,
        order: u32,
        flags: GfpFlags,
        priority: Priority,
        want_zeroed: bool,
    ) -> Option<(usize, u32, bool)> {
        let classzone = flags.zone.index();
        let mt = flags.mobility.migratetype() as u8;
        let harder = priority >= Priority::Atomic;
        let cpu = self.cpu;
        for z in (0..=classzone).rev() {
            let zone = &mut self.zones[z];
            if zone.present == 0 || !zone.watermark_ok(order, priority, classzone) {
                continue;
            }
            if let Some((idx, zeroed)) = zone.rmqueue(order, mt, harder, cpu, want_zeroed) {
                return Some((z, idx, zeroed));
            }
        }
        None
    }

    /// The allocation paths: a fast pass at the low watermark, then a slow
    /// pass that drains per-CPU lists (and the zero pool for order > 0),
    /// releases high-order atomic reserves and retries at the priority's own
    /// watermark (`__alloc_pages` → `__alloc_pages_slowpath`).
    fn alloc_inner(
        &mut self,
        order: u32,
        flags: GfpFlags,
        want_zeroed: bool,
    ) -> Result<(usize, u32, bool), FrameError> {
        if order > MAX_ORDER {
            return Err(FrameError::InvalidOrder);
        }
        if let Some(r) = self.get_page_from_freelist(order, flags, Priority::Normal, want_zeroed) {
            return Ok(r);
        }
        self.alloc_slowpath(order, flags, want_zeroed)
    }

    #[cold]
    #[inline(never)]
    fn alloc_slowpath(
        &mut self,
        order: u32,
        flags: GfpFlags,
        want_zeroed: bool,
    ) -> Result<(usize, u32, bool), FrameError> {
        let classzone = flags.zone.index();
        let mt = flags.mobility.migratetype() as u8;
        for zone in &mut self.zones[..=classzone] {
            for cpu in 0..zone.pcp.len() {
                zone.drain_pcp(cpu);
            }
            if order > 0 {
                zone.drain_zeroed();
            }
        }
        for force in [false, true] {
            if let Some(r) = self.get_page_from_freelist(order, flags, flags.priority, want_zeroed)
            {
                if order > 0 && flags.priority == Priority::Atomic {
                    let zone = &mut self.zones[r.0];
                    let max = zone.managed() / 100 + PAGEBLOCK_NR_PAGES;
                    zone.buddy.reserve_highatomic(r.1, max);
                }
                return Ok(r);
            }
            let mut released = false;
            for zone in &mut self.zones[..=classzone] {
                released |= zone.buddy.unreserve_highatomic(mt, force);
            }
            if released
                && let Some(r) =
                    self.get_page_from_freelist(order, flags, flags.priority, want_zeroed)
            {
                return Ok(r);
            }
        }
        Err(FrameError::NoMemory)
    }

    /// Allocates `2^order` contiguous frames, aligned to their size, and
    /// returns the first (kernel-doc `alloc_pages`). The contents are
    /// whatever was there; see [`FrameAllocator::alloc_zeroed`].
    ///
    /// Errors: [`FrameError::InvalidOrder`] above [`MAX_ORDER`];
    /// [`FrameError::NoMemory`] when no allowed zone has a free block of
    /// that order above the watermark of `flags.priority`.
    #[inline]
    pub fn alloc_pages(&mut self, order: u32, flags: GfpFlags) -> Result<Pfn, FrameError> {
        let (z, idx, _) = self.alloc_inner(order, flags, false)?;
        Ok(Pfn(self.zones[z].pfn(idx)))
    }

    /// [`FrameAllocator::alloc_pages`] with `__GFP_ZERO`: the frames read as
    /// zero. An order-0 request takes a frame from the zero pool when there
    /// is one; otherwise the frames are zeroed through `mem` (addresses
    /// physical). Error: also [`FrameError::AccessFailed`] if `mem` refuses,
    /// in which case the frames are freed again.
    pub fn alloc_zeroed(
        &mut self,
        order: u32,
        flags: GfpFlags,
        mem: &mut impl MemoryAccess,
    ) -> Result<Pfn, FrameError> {
        let (z, idx, zeroed) = self.alloc_inner(order, flags, true)?;
        let pfn = Pfn(self.zones[z].pfn(idx));
        if !zeroed && mem.zero(pfn.addr().0, PAGE_SIZE << order).is_err() {
            let zone = &mut self.zones[z];
            zone.nr_allocated -= 1 << order;
            zone.free_block(idx, order);
            return Err(FrameError::AccessFailed);
        }
        Ok(pfn)
    }

    /// Frees the block of `2^order` frames at `frame` (a [`Pfn`] or a
    /// page-aligned [`PhysAddr`]) allocated with [`FrameAllocator::alloc_pages`]
    /// (kernel-doc `__free_pages`). Order-0 frames go to the current CPU's
    /// list.
    ///
    /// Errors, with nothing changed: [`FrameError::Misaligned`] for an
    /// address inside a page; [`FrameError::InvalidOrder`];
    /// [`FrameError::NotManaged`]; [`FrameError::AlreadyFree`] for a double
    /// free; [`FrameError::Reserved`]; [`FrameError::OrderMismatch`] when the
    /// frame is not the head of an allocated block of exactly that order.
    #[inline]
    pub fn free_pages(&mut self, frame: impl FrameRef, order: u32) -> Result<(), FrameError> {
        let pfn = frame.to_pfn()?;
        if order > MAX_ORDER {
            return Err(FrameError::InvalidOrder);
        }
        let (z, idx) = self.locate(pfn)?;
        let cpu = self.cpu;
        let zone = &mut self.zones[z];
        let m = zone.buddy.frames[idx as usize];
        if m.state != State::Alloc || m.order as u32 != order {
            return Err(classify_bad_free(zone, idx));
        }
        zone.nr_allocated -= 1 << order;
        if order == 0 {
            zone.free_to_pcp(cpu, idx);
        } else {
            zone.free_block(idx, order);
        }
        Ok(())
    }

    // ---- zero pool ---------------------------------------------------------

    /// Zeroes up to `budget` free frames through `mem` (addresses physical)
    /// and keeps them in the zero pool, until each pool list reaches its
    /// configured size; Normal first, then DMA32. Call it when idle. Returns
    /// how many frames were zeroed.
    ///
    /// Error: [`FrameError::AccessFailed`] if `mem` refuses a frame; that
    /// frame goes back to the free lists, the ones zeroed before stay pooled.
    pub fn refill_zeroed(
        &mut self,
        mem: &mut impl MemoryAccess,
        budget: usize,
    ) -> Result<usize, FrameError> {
        let mut done = 0;
        let cpu = self.cpu;
        for zone in self.zones.iter_mut().rev() {
            for mt in 0..NR_PCPTYPES as u8 {
                while done < budget {
                    let Some((idx, order)) = zone.zero_candidates(cpu, mt, budget - done) else {
                        break;
                    };
                    let addr = zone.pfn(idx) << PAGE_SHIFT;
                    if mem.zero(addr, PAGE_SIZE << order).is_err() {
                        let pb = zone.buddy.pb_mt(idx);
                        zone.buddy.free_one(idx, order, pb);
                        return Err(FrameError::AccessFailed);
                    }
                    for i in idx..idx + (1 << order) {
                        zone.add_zeroed(i, mt);
                    }
                    done += 1 << order;
                }
            }
        }
        Ok(done)
    }

    /// Returns every pre-zeroed frame to the free lists.
    pub fn drain_zeroed(&mut self) {
        for z in &mut self.zones {
            z.drain_zeroed();
        }
    }

    // ---- pageblocks --------------------------------------------------------

    /// The flags of the pageblock holding `pfn`, masked with `mask`
    /// (kernel-doc `get_pfnblock_flags_mask`). `pfn` may be any frame in a
    /// zone's span. Error: [`FrameError::NotManaged`] outside every span.
    pub fn get_pfnblock_flags_mask(&self, pfn: Pfn, mask: u8) -> Result<u8, FrameError> {
        let (z, idx) = self.locate_span(pfn)?;
        Ok(self.zones[z].buddy.pageblocks[(idx >> PAGEBLOCK_ORDER) as usize] & mask)
    }

    /// Sets the bits `mask` of the flags of the pageblock holding `pfn` to
    /// those of `flags` (kernel-doc `set_pfnblock_flags_mask`). Unlike Linux,
    /// changing the migratetype bits also moves the block's free pages to the
    /// new type's lists (`set_pageblock_migratetype` + `move_freepages_block`),
    /// so free lists always match their pageblocks.
    ///
    /// Errors, nothing changed: [`FrameError::NotManaged`];
    /// [`FrameError::InvalidFlags`] if the result names no migratetype.
    pub fn set_pfnblock_flags_mask(
        &mut self,
        pfn: Pfn,
        flags: u8,
        mask: u8,
    ) -> Result<(), FrameError> {
        let (z, idx) = self.locate_span(pfn)?;
        let buddy = &mut self.zones[z].buddy;
        let pb = (idx >> PAGEBLOCK_ORDER) as usize;
        let old = buddy.pageblocks[pb];
        let mask = mask & PB_ALL_FLAGS;
        let new = (old & !mask) | (flags & mask);
        let new_mt = new & PB_MIGRATETYPE_MASK;
        if MigrateType::from_bits(new_mt).is_none() {
            return Err(FrameError::InvalidFlags);
        }
        if new_mt != old & PB_MIGRATETYPE_MASK {
            buddy.change_pageblock_mt(pb, new_mt);
        }
        buddy.pageblocks[pb] = new;
        Ok(())
    }

    /// The migratetype of the pageblock holding `pfn`
    /// (`get_pageblock_migratetype`).
    pub fn get_pageblock_migratetype(&self, pfn: Pfn) -> Result<MigrateType, FrameError> {
        let bits = self.get_pfnblock_flags_mask(pfn, PB_MIGRATETYPE_MASK)?;
        MigrateType::from_bits(bits).ok_or(FrameError::InvalidFlags)
    }

    /// Sets the migratetype of the pageblock holding `pfn`, moving its free
    /// pages (`set_pageblock_migratetype` + `move_freepages_block`).
    pub fn set_pageblock_migratetype(
        &mut self,
        pfn: Pfn,
        mt: MigrateType,
    ) -> Result<(), FrameError> {
        self.set_pfnblock_flags_mask(pfn, mt as u8, PB_MIGRATETYPE_MASK)
    }

    // ---- watermarks --------------------------------------------------------

    /// Recomputes every zone's watermarks, lowmem reserves and per-CPU list
    /// sizes (kernel-doc `setup_per_zone_wmarks`, with
    /// `setup_per_zone_lowmem_reserve` and `zone_pcp_update`). Called by
    /// every setter and whenever reserving changes a zone's managed size.
    pub fn setup_per_zone_wmarks(&mut self) {
        self.min_free_kbytes =
            watermark::setup_zones(&mut self.zones, &self.config, self.dma_reserve);
    }

    /// The `min_free_kbytes` in force (configured, or Linux's default).
    pub fn min_free_kbytes(&self) -> u64 {
        self.min_free_kbytes
    }

    /// Sets `vm.min_free_kbytes` (`None`: Linux's default) and recomputes
    /// the watermarks.
    pub fn set_min_free_kbytes(&mut self, kbytes: Option<u64>) {
        self.config.min_free_kbytes = kbytes;
        self.setup_per_zone_wmarks();
    }

    /// Sets `vm.watermark_scale_factor` (1..=3000) and recomputes the
    /// watermarks. Error: [`FrameError::InvalidConfig`] out of range.
    pub fn set_watermark_scale_factor(&mut self, factor: u32) -> Result<(), FrameError> {
        if !(1..=3000).contains(&factor) {
            return Err(FrameError::InvalidConfig);
        }
        self.config.watermark_scale_factor = factor;
        self.setup_per_zone_wmarks();
        Ok(())
    }

    /// Accounts `pages` of DMA32 as taken by unfreeable allocations for the
    /// purpose of watermarks and per-CPU list sizes (kernel-doc
    /// `set_dma_reserve`: "the effect will be lower watermarks and smaller
    /// per-cpu batchsize"). Linux reads it once at boot; here it may be set at
    /// any time and the watermarks are recomputed.
    pub fn set_dma_reserve(&mut self, pages: u64) {
        self.dma_reserve = pages;
        self.setup_per_zone_wmarks();
    }

    /// The current DMA reserve, in pages.
    pub fn dma_reserve(&self) -> u64 {
        self.dma_reserve
    }

    /// A zone's watermarks.
    pub fn watermarks(&self, zone: ZoneType) -> Watermarks {
        let w = &self.zones[zone.index()].wmark;
        Watermarks {
            min: w[WMARK_MIN],
            low: w[WMARK_LOW],
            high: w[WMARK_HIGH],
        }
    }

    /// The managed pages beyond the high watermark of every zone an
    /// allocation whose highest zone is `zone` may use (kernel-doc
    /// `nr_free_zone_pages`: "count number of pages beyond high watermark
    /// within all zones"). As in Linux this is managed − high, a measure of
    /// the memory usable for caches, not of what is free right now.
    pub fn nr_free_zone_pages(&self, zone: ZoneType) -> u64 {
        self.zones[..=zone.index()]
            .iter()
            .map(|z| z.managed().saturating_sub(z.wmark[WMARK_HIGH]))
            .sum()
    }

    /// [`FrameAllocator::nr_free_zone_pages`] for page-cache allocations,
    /// which may use every zone (kernel-doc `nr_free_pagecache_pages`).
    pub fn nr_free_pagecache_pages(&self) -> u64 {
        self.nr_free_zone_pages(ZoneType::Normal)
    }

    /// Free pages in all zones (buddy, per-CPU lists and zero pool).
    pub fn nr_free_pages(&self) -> u64 {
        self.zones.iter().map(Zone::nr_free).sum()
    }

    /// How many frees through the [`PageSource`] interface were refused
    /// (that interface cannot return an error).
    pub fn page_source_errors(&self) -> u64 {
        self.page_source_errors
    }

    /// A [`PageSource`] allocating with `flags` (e.g. [`GfpFlags::RECLAIMABLE`]
    /// for a reclaimable slab cache, [`GfpFlags::DMA32`] for DMA pools).
    pub fn source(&mut self, flags: GfpFlags) -> FrameSource<'_> {
        FrameSource { alloc: self, flags }
    }
}

/// Why freeing the frame at `idx` as a block of some order is refused.
#[cold]
fn classify_bad_free(zone: &Zone, idx: u32) -> FrameError {
    let m = zone.buddy.frames[idx as usize];
    match m.state {
        State::Free | State::Pcp | State::Zeroed => FrameError::AlreadyFree,
        State::Reserved => FrameError::Reserved,
        State::Hole => FrameError::NotManaged,
        State::Alloc => FrameError::OrderMismatch,
        State::Tail => match zone
            .buddy
            .find_head(idx)
            .map(|h| zone.buddy.frames[h as usize].state)
        {
            Some(State::Free) => FrameError::AlreadyFree,
            _ => FrameError::OrderMismatch,
        },
    }
}

/// The allocator as a [`PageSource`] with chosen flags; see
/// [`FrameAllocator::source`]. Addresses are physical.
#[derive(Debug)]
pub struct FrameSource<'a> {
    alloc: &'a mut FrameAllocator,
    flags: GfpFlags,
}

impl PageSource for FrameSource<'_> {
    fn alloc_pages(&mut self, order: u32) -> Option<u64> {
        self.alloc
            .alloc_pages(order, self.flags)
            .ok()
            .map(|p| p.addr().0)
    }

    fn free_pages(&mut self, addr: u64, order: u32) {
        PageSource::free_pages(self.alloc, addr, order);
    }
}

/// The allocator feeds slab caches with `GFP_KERNEL` pages (unmovable, any
/// zone); addresses are physical. A refused free is counted in
/// [`FrameAllocator::page_source_errors`] and changes nothing.
impl PageSource for FrameAllocator {
    fn alloc_pages(&mut self, order: u32) -> Option<u64> {
        FrameAllocator::alloc_pages(self, order, GfpFlags::KERNEL)
            .ok()
            .map(|p| p.addr().0)
    }

    fn free_pages(&mut self, addr: u64, order: u32) {
        if FrameAllocator::free_pages(self, PhysAddr(addr), order).is_err() {
            self.page_source_errors += 1;
        }
    }
}
