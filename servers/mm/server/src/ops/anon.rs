//! Anonymous memory: Map (mmap), Unmap (munmap), Protect (mprotect), Populate (MAP_POPULATE / madvise), Discard (MADV_DONTNEED).

use alloc::vec::Vec;

use libmm::protocol::{Align, MapFlags, MmError, Reply};
use mm_core::addr::{LARGE_PAGE_SIZE, PAGE_SIZE, VirtAddr};
use mm_core::vm::{Placement, Prot, Region, RegionFlags, RegionKind, RegionSpec};

use super::{page_range, prot};
use crate::client::rflags;
use crate::error::{Fail, vm_error};
use crate::server::Server;

const KNOWN: u16 = MapFlags::FIXED.0
    | MapFlags::FIXED_NOREPLACE.0
    | MapFlags::POPULATE.0
    | MapFlags::HUGE.0
    | MapFlags::GUARD.0
    | MapFlags::PFNMAP.0
    | MapFlags::DMA32.0;

impl Server {
    /// `mmap(MAP_ANONYMOUS)` (see `Request::Map`): Linux's `do_mmap` +
    /// `mm_populate`, placed at a multiple of `align`. Unlike Linux, a
    /// populate that cannot be backed fails the whole call (nothing mapped)
    /// instead of leaving a partly backed region.
    pub(crate) fn map(
        &mut self,
        ci: u32,
        addr: u64,
        len: u64,
        p: libmm::protocol::Prot,
        flags: MapFlags,
        align: Align,
    ) -> Result<Reply, Fail> {
        let vprot = prot(p)?;
        let has = |f: MapFlags| flags.contains(f);
        if flags.0 & !KNOWN != 0 || (has(MapFlags::FIXED) && has(MapFlags::FIXED_NOREPLACE)) {
            return Err(MmError::InvalidArgument.into());
        }
        let align = match align.bytes() {
            Some(a) if align.within(Align::MAX_MAP) => a,
            _ => return Err(MmError::InvalidArgument.into()),
        };
        let guard = has(MapFlags::GUARD);
        let pfnmap = has(MapFlags::PFNMAP);
        if guard
            && (!vprot.is_none()
                || has(MapFlags::POPULATE)
                || has(MapFlags::HUGE)
                || pfnmap
                || has(MapFlags::DMA32))
        {
            return Err(MmError::InvalidArgument.into());
        }
        if pfnmap && (has(MapFlags::POPULATE) || has(MapFlags::HUGE) || has(MapFlags::DMA32)) {
            return Err(MmError::InvalidArgument.into());
        }
        let fixed = has(MapFlags::FIXED) || has(MapFlags::FIXED_NOREPLACE);
        if len == 0 {
            return Err(MmError::InvalidArgument.into());
        }
        if !len.is_multiple_of(PAGE_SIZE) || (fixed && !addr.is_multiple_of(align)) {
            return Err(MmError::Unaligned.into());
        }
        if addr.checked_add(len).is_none() {
            return Err(MmError::Overflow.into());
        }
        let mut rf = RegionFlags::NONE;
        if has(MapFlags::HUGE) {
            rf = rf | rflags::HUGE;
        }
        if has(MapFlags::DMA32) {
            rf = rf | rflags::DMA32;
        }
        if pfnmap {
            rf = rf | rflags::PFNMAP;
        }
        let spec = if guard {
            RegionSpec::guard(len)
        } else {
            RegionSpec::anonymous(len, vprot).with_flags(rf)
        };
        let populate = has(MapFlags::POPULATE) && !vprot.is_none();
        let pages = len / PAGE_SIZE;
        if populate && pages > self.clients[ci as usize].headroom() {
            return Err(MmError::QuotaExceeded.into());
        }
        if populate && !self.phys_can_allocate(pages) {
            return Err(MmError::NoMemory.into());
        }
        let start = if fixed {
            addr
        } else {
            let mut pl = Placement::new().with_align(align);
            if has(MapFlags::HUGE) && len >= LARGE_PAGE_SIZE {
                pl = pl.with_align(align.max(LARGE_PAGE_SIZE));
            }
            if addr != 0 && addr.is_multiple_of(pl.align) {
                pl = pl.with_hint(VirtAddr(addr));
            }
            self.clients[ci as usize]
                .regions
                .find_free(len, &pl)
                .map_err(vm_error)?
                .0
        };
        let end = start + len;
        if has(MapFlags::FIXED) {
            // Replacing: never over areas or pinned pages.
            if self.area_in(ci, start, end) || self.pinned_in(ci, start, end) {
                return Err(MmError::Busy.into());
            }
            let c = &self.clients[ci as usize];
            let w = c.regions.config();
            if start < w.lower.0 || end > w.upper.0 {
                return Err(MmError::Overflow.into());
            }
            self.split_blocks_at_edges(ci, start, end)?;
            let removed = self.clients[ci as usize]
                .regions
                .map_fixed_replace(VirtAddr(start), spec)
                .map_err(vm_error)?;
            self.zap(ci, start, end)?;
            self.release_shm_of(&removed);
        } else {
            self.clients[ci as usize]
                .regions
                .map_fixed(VirtAddr(start), spec)
                .map_err(vm_error)?;
        }
        if populate {
            let region = Region {
                start: VirtAddr(start),
                len,
                prot: vprot,
                flags: rf,
                kind: RegionKind::Anonymous,
            };
            if let Err(e) = self.fill(ci, start, end, &region) {
                let _ = self.clients[ci as usize]
                    .regions
                    .unmap(VirtAddr(start), len);
                let _ = self.zap(ci, start, end);
                return Err(e);
            }
        }
        Ok(Reply::Mapped { addr: start, len })
    }

    /// `madvise(MADV_DONTNEED)` (see `Request::Discard`): Linux's
    /// `madvise_dontneed_free` → `zap_page_range`. The regions stay; the
    /// pages go (anonymous frames freed and uncharged, shared pages
    /// unmapped from this client only). Unlike Linux, a hole is refused
    /// before anything changes, and pinned pages refuse it (Linux zaps
    /// the PTE and leaves the pin on a page no longer mapped).
    pub(crate) fn discard(&mut self, ci: u32, addr: u64, len: u64) -> Result<Reply, Fail> {
        let (start, end) = page_range(addr, len)?;
        let regions = self.covered(ci, start, end)?;
        if regions.iter().any(|r| r.flags.contains(rflags::PFNMAP)) {
            return Err(MmError::InvalidArgument.into());
        }
        if self.area_in(ci, start, end) || self.pinned_in(ci, start, end) {
            return Err(MmError::Busy.into());
        }
        self.split_blocks_at_edges(ci, start, end)?;
        self.zap(ci, start, end)?;
        Ok(Reply::Done)
    }

    /// Whether `pages` order-0 frames can be had above the low watermark
    /// (a pre-check, so that a populate does not fail half-way).
    pub(crate) fn phys_can_allocate(&self, pages: u64) -> bool {
        let mut avail = 0;
        for z in mm_core::frame::ZoneType::ALL {
            let s = self.phys.alloc.zone_stats(z);
            avail += s.free.saturating_sub(s.watermarks.low);
        }
        pages <= avail
    }

    /// `munmap` (see `Request::Unmap`): Linux's `do_vmi_munmap`. Unlike
    /// Linux, areas (made by their own calls) and pinned pages refuse it.
    pub(crate) fn unmap(&mut self, ci: u32, addr: u64, len: u64) -> Result<Reply, Fail> {
        let (start, end) = page_range(addr, len)?;
        let w = *self.clients[ci as usize].regions.config();
        if start < w.lower.0 || end > w.upper.0 {
            return Err(MmError::Overflow.into());
        }
        if self.area_in(ci, start, end) || self.pinned_in(ci, start, end) {
            return Err(MmError::Busy.into());
        }
        self.split_blocks_at_edges(ci, start, end)?;
        let removed = self.clients[ci as usize]
            .regions
            .unmap(VirtAddr(start), len)
            .map_err(vm_error)?;
        self.zap(ci, start, end)?;
        self.release_shm_of(&removed);
        Ok(Reply::Done)
    }

    /// Frees shared objects that were destroyed and that the removed
    /// regions were the last to map.
    pub(crate) fn release_shm_of(&mut self, removed: &[Region]) {
        let mut ids: Vec<u64> = removed
            .iter()
            .filter_map(|r| match r.kind {
                RegionKind::Shared { id, .. } => Some(id.0),
                _ => None,
            })
            .collect();
        ids.dedup();
        for id in ids {
            self.maybe_free_shm(id);
        }
    }

    /// Checks that `[start, end)` is covered by regions with no hole;
    /// returns them.
    pub(crate) fn covered(&self, ci: u32, start: u64, end: u64) -> Result<Vec<Region>, MmError> {
        let regions = self.regions_in(ci, start, end);
        let mut at = start;
        for r in &regions {
            if r.start.0 > at {
                return Err(MmError::NotMapped);
            }
            at = r.end().0;
        }
        if at < end {
            return Err(MmError::NotMapped);
        }
        Ok(regions)
    }

    /// `mprotect` (see `Request::Protect`): Linux's `do_mprotect_pkey`.
    /// Unlike Linux, a range with a hole is refused whole (no partial
    /// change before the hole).
    pub(crate) fn protect(
        &mut self,
        ci: u32,
        addr: u64,
        len: u64,
        p: libmm::protocol::Prot,
    ) -> Result<Reply, Fail> {
        let vprot = prot(p)?;
        let (start, end) = page_range(addr, len)?;
        let regions = self.covered(ci, start, end)?;
        for r in &regions {
            match r.kind {
                RegionKind::Guard => return Err(MmError::InvalidArgument.into()),
                RegionKind::Shared { id, .. } if !self.shm_may(ci, id.0, vprot) => {
                    return Err(MmError::PermissionDenied.into());
                }
                _ => {}
            }
        }
        self.split_blocks_at_edges(ci, start, end)?;
        self.clients[ci as usize]
            .regions
            .protect(VirtAddr(start), len, vprot)
            .map_err(vm_error)?;
        self.reprotect(ci, start, end, vprot)?;
        Ok(Reply::Done)
    }

    /// `MAP_POPULATE` after the fact (see `Request::Populate`): Linux's
    /// `madvise(MADV_WILLNEED)` / `mm_populate`, all or nothing.
    pub(crate) fn populate(&mut self, ci: u32, addr: u64, len: u64) -> Result<Reply, Fail> {
        let (start, end) = page_range(addr, len)?;
        let regions = self.covered(ci, start, end)?;
        let mut need = 0;
        for r in &regions {
            if r.kind == RegionKind::Guard {
                return Err(MmError::InvalidArgument.into());
            }
            if fillable(r) {
                let (a, b) = (r.start.0.max(start), r.end().0.min(end));
                need += self
                    .missing(ci, a, b)
                    .iter()
                    .map(|(x, y)| (y - x) / PAGE_SIZE)
                    .sum::<u64>();
            }
        }
        if need > self.clients[ci as usize].headroom() {
            return Err(MmError::QuotaExceeded.into());
        }
        if !self.phys_can_allocate(need) {
            return Err(MmError::NoMemory.into());
        }
        let mut added: Vec<(u64, u64)> = Vec::new();
        for r in &regions {
            let (a, b) = (r.start.0.max(start), r.end().0.min(end));
            let holes = self.missing(ci, a, b);
            let res = if fillable(r) {
                self.fill(ci, a, b, r).map(|_| ())
            } else if matches!(r.kind, RegionKind::Shared { .. }) && !r.prot.is_none() {
                self.shm_fill(ci, a, b, r)
            } else {
                Ok(())
            };
            if let Err(e) = res {
                for (x, y) in added {
                    let _ = self.zap(ci, x, y);
                }
                return Err(e);
            }
            added.extend(holes);
        }
        Ok(Reply::Done)
    }
}

/// Whether a region's pages are anonymous memory the server backs on demand.
pub(crate) fn fillable(r: &Region) -> bool {
    r.kind == RegionKind::Anonymous
        && !r.flags.contains(rflags::PFNMAP)
        && !r.flags.contains(rflags::AREA)
        && r.prot != Prot::NONE
}
